"""Streamlit's endpoints that Vigil closes, as paths and as a served app."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.streamlit_server import serve
from tests.ui.installation import Installation
from ui.endpoints import is_closed


@pytest.mark.parametrize(
    "path",
    [
        "/_stcore/metrics",
        "/_stcore/metrics/",
        "//_stcore//metrics",
        "/vigil/_stcore/metrics",
        "/_stcore/agent/interact",
        "/_stcore/agent/openapi.json",
        "/_stcore/agent/mcp",
        "/_stcore/agent",
    ],
)
def test_these_paths_are_closed(path: str) -> None:
    assert is_closed(path)


@pytest.mark.parametrize(
    "path", ["/", "/_stcore/health", "/_stcore/stream", "/_stcore/metricsx", "/media/abc.png", "/review", "/metrics"]
)
def test_these_paths_stay_open(path: str) -> None:
    assert not is_closed(path)


def _status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a loopback URL the test built
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.browser
def test_the_served_app_refuses_metrics_and_the_agent_api_and_still_serves_its_pages(
    installation: Installation, tmp_path: Path
) -> None:
    with serve(installation, tmp_path / "streamlit.log") as url:
        closed = {
            path: _status(url + path, method)
            for path, method in [
                ("/_stcore/metrics", "GET"),
                ("/_stcore/metrics?families=cache_memory_bytes", "GET"),
                ("//_stcore/metrics/", "GET"),
                ("/_stcore/metrics", "OPTIONS"),
                ("/_stcore/agent/openapi.json", "GET"),
                ("/_stcore/agent/interact", "POST"),
            ]
        }
        health, page = _status(url + "/_stcore/health"), _status(url + "/")
    assert set(closed.values()) == {404}, closed
    assert (health, page) == (200, 200)
