"""What ``streamlit run serve.py`` serves: Vigil's pages (``app.py``) behind Vigil's own middleware.

Streamlit runs this file as an ASGI app (it finds ``app`` below) on the address and port in
``.streamlit/config.toml`` or on the command line, exactly as ``streamlit run app.py`` would, but
with the endpoints in :mod:`ui.endpoints` closed.
"""

from __future__ import annotations

import streamlit as st
from starlette.middleware import Middleware

from ui.endpoints import ClosedEndpoints

app = st.App("app.py", middleware=[Middleware(ClosedEndpoints)])
