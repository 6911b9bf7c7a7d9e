"""The display time zone: read from the configuration, checked at start-up, used only for showing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.config import load_settings
from core.errors import ConfigError
from ui.localtime import duration_text, local_text


def _settings(tmp_path: Path, line: str):  # type: ignore[no-untyped-def]
    (tmp_path / "vigil.toml").write_text(line + "\n", encoding="utf-8")
    return load_settings({"VIGIL_CONFIG": "vigil.toml", "VIGIL_HOME": str(tmp_path)}, cwd=tmp_path)


def test_the_zone_comes_from_the_configuration_and_defaults_to_utc(tmp_path: Path) -> None:
    assert _settings(tmp_path, 'display_timezone = "Europe/Berlin"').display_zone == ZoneInfo("Europe/Berlin")
    assert load_settings({"VIGIL_HOME": str(tmp_path)}, cwd=tmp_path).display_timezone == "UTC"


@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "../../etc/passwd", "", 3])
def test_an_unknown_zone_is_refused_with_its_name(tmp_path: Path, bad: object) -> None:
    value = f'"{bad}"' if isinstance(bad, str) else str(bad)
    with pytest.raises(ConfigError, match="display_timezone must be an IANA time zone") as err:
        _settings(tmp_path, f"display_timezone = {value}")
    assert repr(bad) in str(err.value)


def test_a_utc_moment_is_shown_in_local_time_with_its_zone() -> None:
    moment = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    assert local_text(moment, ZoneInfo("Europe/Berlin")) == "2025-07-01 14:00 CEST"
    assert local_text(moment.replace(month=1), ZoneInfo("Europe/Berlin")) == "2025-01-01 13:00 CET"
    with pytest.raises(ValueError, match="naive datetime"):
        local_text(datetime(2025, 7, 1, 12, 0), ZoneInfo("UTC"))


def test_durations_read_as_a_reader_says_them() -> None:
    assert duration_text(timedelta(seconds=59)) == "0 min"
    assert duration_text(timedelta(hours=2, minutes=5)) == "2 h 05 min"
    assert duration_text(timedelta(days=3, hours=4, minutes=59)) == "3 d 4 h"
    assert duration_text(timedelta(minutes=-5)) == "0 min"


def test_the_users_page_shows_account_creation_in_the_display_zone(
    app,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: vigil.toml says Europe/Berlin; the store keeps UTC
    from core.services.permissions import Role

    config = tmp_path / "vigil.toml"
    config.write_text('display_timezone = "Europe/Berlin"\n', encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))

    # Execute
    at = app(Role.ADMIN).switch_page("pages/users.py").run()

    # Assert: before, the column read "Created (UTC)" with bare UTC times
    assert not at.exception
    created = list(at.dataframe[0].value["Created"])
    assert created and all(t.endswith(("CET", "CEST")) for t in created)
