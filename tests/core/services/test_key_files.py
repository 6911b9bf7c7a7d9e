"""Every secret key Vigil creates is created on first use, private to its owner (0600), whatever the umask.

The list below is the inventory of key files: a new kind of key must be added here, and the test
that walks ``VIGIL_HOME`` after making every key fails on a file it does not know.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.federated.signing import generate_site_key
from core.services import deidentify, fhir_ingest
from core.services.audit_checkpoints import load_or_create_signing_key
from core.services.federated import key_path


def _settings(home: Path) -> Settings:
    return Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")


def _fl_key(home: Path) -> None:
    # What `vigil fl keys SITE` writes (core.services.federated.register_site_key), without the store.
    generate_site_key(key_path(home / "fl-keys", "northfield"))


#: Every key file Vigil creates: (name, how it is made on first use, where it lands under VIGIL_HOME).
KEYS: list[tuple[str, Callable[[Path], object], str]] = [
    ("DICOM de-identification key", lambda h: deidentify.deid_secret(_settings(h)), "secrets/dicom-deid.key"),
    ("FHIR pseudonym key", lambda h: fhir_ingest.site_secret(_settings(h)), "secrets/pseudonym.key"),
    (
        "audit checkpoint signing key (Ed25519)",
        lambda h: load_or_create_signing_key(_settings(h).audit_signing_key_file),
        "secrets/audit-signing.key",
    ),
    ("federated update signing key (Ed25519)", _fl_key, "fl-keys/northfield.ed25519.pem"),
]


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: any restriction seen must come from Vigil's own code."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
@pytest.mark.parametrize(("name", "make", "where"), KEYS, ids=[k[0] for k in KEYS])
def test_each_key_is_created_0600(tmp_path: Path, name: str, make: Callable[[Path], object], where: str) -> None:
    # Prepare
    home = tmp_path / "home"
    # Execute
    make(home)
    # Assert
    path = home / where
    info = path.lstat()
    assert stat.S_ISREG(info.st_mode), f"{name}: {where} is not a regular file"
    assert stat.S_IMODE(info.st_mode) == 0o600, f"{name}: {where} has mode {stat.S_IMODE(info.st_mode):04o}"


@pytest.mark.usefixtures("open_umask")
def test_key_folders_are_0700_and_hold_only_listed_keys(tmp_path: Path) -> None:
    # Prepare
    home = tmp_path / "home"
    # Execute
    for _, make, _ in KEYS:
        make(home)
    # Assert
    for folder in ("secrets", "fl-keys"):  # a folder others may write lets them swap a key
        assert stat.S_IMODE((home / folder).stat().st_mode) == 0o700, folder
    found = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    assert found == sorted(where for _, _, where in KEYS), "a key file not in this test's inventory"


@pytest.mark.usefixtures("open_umask")
@pytest.mark.parametrize(("name", "make", "where"), KEYS[:3], ids=[k[0] for k in KEYS[:3]])
def test_a_second_use_keeps_the_key(tmp_path: Path, name: str, make: Callable[[Path], object], where: str) -> None:
    # Prepare
    home = tmp_path / "home"
    make(home)
    before = (home / where).read_bytes()
    # Execute
    make(home)
    # Assert
    assert (home / where).read_bytes() == before, f"{name} was rewritten"
