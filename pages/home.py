"""Home: greeting, the role's purpose, the demonstration notice and where to start."""

from __future__ import annotations

from ui import auth
from ui.components import frame, home

user = auth.require_page()
home.render(user)
frame.demo_notice()
