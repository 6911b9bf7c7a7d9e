"""Pure helpers of the UI components: the verbatim metadata table."""

from __future__ import annotations

import pytest

from ui.components.case import _escape, _shorten


@pytest.mark.parametrize(
    "header_text",
    ["![x](http://example.org/t.png)", "<img src=x onerror=alert(1)>", "**bold** | col", ":smile: $x^2$", "a\nb"],
)
def test_dicom_text_is_escaped_so_markdown_never_interprets_it(header_text: str) -> None:
    escaped = _escape(header_text)
    for special in "![]()<>*|:$":
        assert f"{special}" not in escaped.replace(f"\\{special}", "")
    assert "\n" not in escaped


def test_long_values_are_cut_in_the_middle() -> None:
    uid = "1.2.826.0.1.3680043.8.498.47565146035298412895090936552417492436"
    short = _shorten(uid)
    assert len(short) <= 36 and short.startswith("1.2.826") and short.endswith("17492436")
    assert _shorten("short") == "short" and _escape("") == "—"
