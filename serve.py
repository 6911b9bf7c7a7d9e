"""What ``streamlit run serve.py`` serves: Vigil's pages (``app.py``) behind Vigil's own middleware.

Streamlit runs this file as an ASGI app (it finds ``app`` below) on the address and port in
``.streamlit/config.toml`` or on the command line, exactly as ``streamlit run app.py`` would, but
with the endpoints in :mod:`ui.endpoints` closed.
"""

from __future__ import annotations

import streamlit as st
from starlette.middleware import Middleware
from streamlit.runtime.pages_manager import PagesManager

from ui.endpoints import ClosedEndpoints

# app.py routes every page with st.navigation (sign-in first). Streamlit otherwise starts a fresh
# server in its pages-directory mode until app.py has run once: a first visitor opening a page URL
# (a deep link such as /case_review?study=UID) would run pages/case_review.py alone, without sign-in.
PagesManager.uses_pages_directory = False
app = st.App("app.py", middleware=[Middleware(ClosedEndpoints)])
