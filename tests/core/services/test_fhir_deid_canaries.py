"""The de-identification guarantee, end to end: no planted identifier reaches a stored byte.

The sample cohort's SYNTHETIC EMR outcomes are generated with a unique canary string in every
identifying value and every free-text field (``core.sampledata.fhir_outcomes``, ``canaries=True``),
ingested the way ``vigil init`` and ``vigil fhir ingest`` do into a fresh SQLite store under
``VIGIL_HOME``, and then every byte of every file there (the database, its write-ahead log, the
DICOM copies, the key) is searched for each canary: as UTF-8, lower-cased, and as UTF-16.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.config import Settings
from core.sampledata import MANIFEST_NAME, read_manifest
from core.sampledata.fhir_outcomes import SampleOutcomes, write_outcomes
from core.services import fhir_ingest, ingestion, sites
from core.services.fhir_ingest import IngestReport
from core.services.store import open_store
from core.store import emr


def clock() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, small_cohort: Path
) -> tuple[Path, Path, SampleOutcomes, list[IngestReport]]:
    """VIGIL_HOME after ingesting the cohort and its canary-laden outcomes, the outcomes folder, what was planted."""
    root = tmp_path_factory.mktemp("canaries")
    rows = read_manifest(small_cohort / MANIFEST_NAME)
    made = write_outcomes(root / "input", rows, seed=11, canaries=True)
    home = root / "home"
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")
    sf = open_store(settings)
    for site in sorted({r.site for r in rows}):
        sites.add_site(sf, site, benchmark=site == "benchmark", actor="t", now=clock)
        files = [small_cohort / r.path for r in rows if r.site == site]
        ingestion.ingest_paths(sf, files, site=site, dicom_dir=home / "dicom", actor="t", now=clock)
    secret = fhir_ingest.site_secret(settings)
    folder = root / "input" / "outcomes"
    payloads = sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".ndjson"))
    reports = [
        fhir_ingest.ingest_payload(sf, p.read_bytes(), name=p.name, secret=secret, actor="t", now=clock)
        for p in payloads
    ]
    with sf() as session:
        assert any(e.evidence.text for e in emr.list_evidence(session)), "no note text was stored: nothing tested"
    return home, folder, made, reports


def _stored_bytes(home: Path) -> bytes:
    files = sorted(p for p in home.rglob("*") if p.is_file())
    assert any(p.name == "vigil.db" for p in files)
    return b"\n".join(p.read_bytes() for p in files)


def _decoded(value: object) -> Iterator[str]:
    """Every string of a JSON value, with base64 attachment data decoded (notes travel that way)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "data" and isinstance(item, str):
                yield base64.b64decode(item).decode("utf-8", errors="replace")
            else:
                yield from _decoded(item)
    elif isinstance(value, list):
        for item in value:
            yield from _decoded(item)
    elif isinstance(value, str):
        yield value


def test_the_planted_canaries_are_in_the_input(ingested: tuple[Path, Path, SampleOutcomes, list[IngestReport]]) -> None:
    # A control: every canary is in what was ingested, so the searches below would find a stored one.
    _, _, made, reports = ingested
    given = "\n".join(_decoded([*made.bundles.values(), *made.bulk_notes]))
    assert len(made.canaries) > 20
    assert [c for c in made.canaries if c not in given] == []
    assert sum(r.evidence for r in reports) > 0 and sum(r.patients for r in reports) > 0


def test_no_canary_reaches_any_stored_byte(ingested: tuple[Path, Path, SampleOutcomes, list[IngestReport]]) -> None:
    # Prepare
    home, _, made, _ = ingested
    stored = _stored_bytes(home)
    lowered = stored.lower()

    # Execute
    found = [
        c
        for c in made.canaries
        if c.encode() in stored or c.lower().encode() in lowered or c.encode("utf-16-le") in stored
    ]

    # Assert
    assert found == []


def test_no_fragment_of_a_canary_is_stored(ingested: tuple[Path, Path, SampleOutcomes, list[IngestReport]]) -> None:
    # Every canary starts and ends with the same markers: a partly scrubbed one (a name cut in two)
    # would still carry one of them.
    home, _, made, _ = ingested
    assert all(c.startswith("CANARY-") and c.endswith("-ZQX") for c in made.canaries)
    stored = _stored_bytes(home).lower()
    assert b"canary-" not in stored
    assert b"-zqx" not in stored
