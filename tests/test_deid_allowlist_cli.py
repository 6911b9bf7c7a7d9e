"""The private-tag allow-list setting (``[vigil.deid]``): checked when read, used by ``vigil deid``, recorded.

An allow-listed private element survives ``vigil deid`` for the site that lists it; every other
private element goes, and the canary scan still finds none of the values planted elsewhere.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pydicom
import pytest

from core.config import PrivateTag, load_settings
from core.errors import ConfigError
from core.imaging.deid import load_profile
from core.sampledata import MANIFEST_NAME, read_manifest
from tests.cli_home import point_vigil_at, run_json
from tests.core.imaging.deid.canaries import Planter, found, plant_all, searchable

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")

KEPT_VALUE = "KEPT-DOSE-INDEX-42"
ALLOWLIST = """
[vigil.deid]
private_allowlist = [{ tag = "(0029,xx01)", creator = "OTHER VENDOR" }]

[vigil.deid.sites.benchmark]
private_allowlist = [{ tag = "(0019,xx05)", creator = "ACME 1.1" }]
"""


def _config(tmp_path: Path, text: str) -> dict[str, str]:
    (tmp_path / "vigil.toml").write_text(text)
    return {"VIGIL_CONFIG": "vigil.toml", "VIGIL_HOME": str(tmp_path / "home")}


def test_the_setting_is_read_per_site(tmp_path: Path) -> None:
    # Execute
    deid = load_settings(_config(tmp_path, ALLOWLIST), cwd=tmp_path).deid
    # Assert
    assert deid.allowlist_for("benchmark") == (PrivateTag(0x0019, "ACME 1.1", 0x05),)
    assert deid.allowlist_for("riverside") == (PrivateTag(0x0029, "OTHER VENDOR", 0x01),)
    assert deid.allowlist_for(None) == (PrivateTag(0x0029, "OTHER VENDOR", 0x01),)
    assert not deid.identified_exports_allowed()


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ('{ tag = "(0018,xx05)", creator = "ACME" }', "'(0018,xx05)' is not private"),
        ('{ tag = "(0019,0005)", creator = "ACME" }', "names a creator slot"),
        ('{ tag = "0019,xx05", creator = "ACME" }', "tag must be written (gggg,xxee)"),
        ('{ tag = "(0019,xx05)", creator = "" }', "creator must be the Private Creator text"),
        ('{ tag = "(0019,xx05)" }', 'must be { tag = "(gggg,xxee)", creator = "..." }'),
        ('"0019,ACME,05"', 'must be { tag = "(gggg,xxee)", creator = "..." }'),
    ],
    ids=["even-group", "creator-slot", "no-parentheses", "empty-creator", "no-creator", "a-string"],
)
def test_a_bad_entry_is_named(tmp_path: Path, entry: str, needle: str) -> None:
    # Prepare
    text = f'[vigil.deid.sites.north]\nprivate_allowlist = [{{ tag = "(0019,xx01)", creator = "OK" }}, {entry}]\n'
    # Execute
    with pytest.raises(ConfigError) as caught:
        load_settings(_config(tmp_path, text), cwd=tmp_path)
    # Assert
    assert "deid.sites.north.private_allowlist[1]" in str(caught.value)
    assert needle in str(caught.value)


def test_a_duplicate_entry_and_an_unknown_key_are_refused(tmp_path: Path) -> None:
    entries = '{ tag = "(0019,xx05)", creator = "A" }, { tag = "(0019,1005)", creator = "A" }'
    twice = f"[vigil.deid]\nprivate_allowlist = [{entries}]\n"
    with pytest.raises(ConfigError, match=r"private_allowlist\[1\]: \(0019,xx05\) A is listed twice"):
        load_settings(_config(tmp_path, twice), cwd=tmp_path)
    with pytest.raises(ConfigError, match="deid: unknown key"):
        load_settings(_config(tmp_path, "[vigil.deid]\nkeep_private = true\n"), cwd=tmp_path)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    point_vigil_at(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vigil.toml").write_text(ALLOWLIST)
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "vigil.toml"))
    return tmp_path


@pytest.fixture
def planted(home: Path) -> list[str]:
    """Two sample files with canaries everywhere, plus one allow-listed and one unlisted ACME element."""
    from core.config import SAMPLE_DATA_DIR

    folder = home / "src"
    folder.mkdir()
    profile, planter = load_profile(), Planter()
    for row in read_manifest(SAMPLE_DATA_DIR / MANIFEST_NAME)[:2]:
        ds = pydicom.dcmread(SAMPLE_DATA_DIR / row.path)
        plant_all(ds, planter, profile)
        block = ds.private_block(0x0019, "ACME 1.1", create=True)
        block.add_new(0x05, "LO", KEPT_VALUE)
        block.add_new(0x06, "LO", planter.value("LO"))  # same creator, not listed: removed
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        (folder / Path(row.path).name).write_bytes(buffer.getvalue())
    return planter.canaries


def test_vigil_deid_keeps_the_sites_allow_listed_element_and_nothing_else(
    home: Path, planted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    code, _, err = run_json(capsys, "site", "add", "benchmark")
    assert code == 0, err
    # Execute
    code, out, err = run_json(capsys, "deid", str(home / "src"), str(home / "out"), "--site", "benchmark")
    # Assert
    assert code == 0, err
    assert out["written"] == 2 and out["private_allowlist"] == ["(0019,xx05) ACME 1.1"]
    outputs = sorted((home / "out").glob("*.dcm"))
    for path in outputs:
        ds = pydicom.dcmread(path)
        private = [(int(e.tag), str(e.value)) for e in ds.iterall() if e.tag.is_private]
        assert sorted(v for _, v in private) == ["ACME 1.1", KEPT_VALUE], private
        method = list(ds.DeidentificationMethod)
        assert method[-1].startswith("Vigil private allow-list: 1 element(s), ")
        assert "113111" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    haystack = b"".join(searchable(p.read_bytes()) for p in outputs)
    leaked = [c for c in planted if found(c, haystack)]
    assert len(planted) > 1000 and leaked == []
    assert _deid_payloads()[-1]["private_allowlist"] == ["(0019,xx05) ACME 1.1"]


def test_without_a_site_the_installation_list_applies(
    home: Path, planted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code, out, err = run_json(capsys, "deid", str(home / "src"), str(home / "out"))
    # Assert: the installation lists another vendor's element, so ACME's go too
    assert code == 0, err
    assert out["private_allowlist"] == ["(0029,xx01) OTHER VENDOR"]
    for path in (home / "out").glob("*.dcm"):
        assert not [e for e in pydicom.dcmread(path).iterall() if e.tag.is_private]


def _deid_payloads() -> list[dict[str, object]]:
    from core.services.store import open_store
    from core.store import audit_log

    with open_store(load_settings(os.environ))() as session:
        return [dict(e.payload) for e in audit_log.iter_entries(session) if e.action == "deid_exported"]
