"""Streamlit's HTTP endpoints that Vigil closes: answered 404 before Streamlit sees the request.

Streamlit serves ``/_stcore/metrics`` to anyone who can reach the port, with no setting to turn it
off; its counters describe the cached case views. The agent API under ``/_stcore/agent/`` drives
the app without a browser; it is off in ``.streamlit/config.toml`` and closed here as well, so
turning it on by mistake opens nothing. Everything else passes through unchanged (the health
check stays open for load balancers).
"""

from __future__ import annotations

import re
from typing import Final

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CLOSED_PREFIXES", "ClosedEndpoints", "is_closed"]

#: Paths (after the base URL) refused for every method, and everything below them.
CLOSED_PREFIXES: Final = ("_stcore/metrics", "_stcore/agent")
_SLASHES: Final = re.compile(r"/+")


def is_closed(path: str) -> bool:
    """Whether a request path (decoded, as in the ASGI scope) reaches a closed endpoint.

    Repeated and trailing slashes are ignored, and so is any base URL in front
    (``/vigil/_stcore/metrics`` is closed too).
    """
    normal = _SLASHES.sub("/", f"/{path}/")
    return any(f"/{prefix}/" in normal for prefix in CLOSED_PREFIXES)


class ClosedEndpoints:
    """ASGI middleware answering 404 for :data:`CLOSED_PREFIXES`, over HTTP and WebSocket."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a closed path here; pass anything else to the wrapped app."""
        if scope["type"] in {"http", "websocket"} and is_closed(scope.get("path", "")):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await PlainTextResponse("Not found", status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)
