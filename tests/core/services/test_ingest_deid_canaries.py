"""The canary scan of de-identification at ingest: nothing planted in a file reaches the store.

Unique canaries are planted (``tests/core/imaging/deid/canaries.py``) in every text and UID element
the profile touches, in private blocks (creators too) and two sequence levels deep, in the SYNTHETIC
cohort's phantoms of every site. The files go through ``ingest_paths`` with de-identification on;
then every stored DICOM file (its inflated data set too) and every byte of the database's files are
searched for every canary, as ASCII/Latin-1, lower-cased and UTF-16.

Not planted, because ingest keeps them on purpose: the dates and times that the Retain Longitudinal
Temporal Information Full Dates option keeps (``core.services.deidentify.INGEST_OPTIONS``; linkage
and every chart over time need them). A canary is a string, not a date, so planting one there would
test only that the option works.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pydicom
import pytest

from core.config import DeidSettings, Settings
from core.imaging.deid import Action, Profile, load_profile
from core.services import ingestion, sites
from core.services.deidentify import INGEST_OPTIONS, ingest_deid
from core.services.store import open_store
from tests.core.imaging.deid.canaries import Planter, plant_all, present, searchable

# Canaries are not valid dates, times or numbers, on purpose: pydicom warns as they are planted.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")

_CLOCK = count()
_DATE_VRS = frozenset({"DA", "DT", "TM"})


def clock() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_CLOCK))


def _planting_profile() -> Profile:
    """The table without the rows ingest keeps (full dates), and without unlisted dates (kept too)."""
    table = load_profile()
    options = frozenset(INGEST_OPTIONS)
    rules = {tag: rule for tag, rule in table.rules.items() if rule.action_under(options) is not Action.KEEP}
    return dataclasses.replace(table, rules=rules, remove_unlisted_vrs=table.remove_unlisted_vrs - _DATE_VRS)


@dataclass(frozen=True)
class Scan:
    canaries: list[str]
    given: list[bytes]  # the planted files, searchable
    stored: list[bytes]  # the stored DICOM files, searchable
    database: bytes  # every file of the SQLite database
    ingested: int
    rejected: list[str]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory, small_cohort: Path) -> Iterator[Scan]:
    # Prepare: every phantom with its canaries, in a folder of its own
    root = tmp_path_factory.mktemp("ingest-canaries")
    profile = _planting_profile()
    planter = Planter()
    given = []
    for i, path in enumerate(sorted((small_cohort / "dicom").rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        plant_all(ds, planter, profile)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        (root / "in").mkdir(exist_ok=True)
        (root / "in" / f"{i:03d}.dcm").write_bytes(buffer.getvalue())
        given.append(searchable(buffer.getvalue()))
    settings = Settings(
        home=root / "home", database_url=f"sqlite:///{root / 'vigil.db'}", deid=DeidSettings(deidentify_at_ingest=True)
    )
    sf = open_store(settings)
    sites.add_site(sf, "north", benchmark=False, actor="t", now=clock)

    # Execute
    report = ingestion.ingest_paths(
        sf,
        [root / "in"],
        site="north",
        dicom_dir=settings.home / "dicom",
        actor="t",
        now=clock,
        deid=ingest_deid(settings, "north"),
    )
    sf.kw["bind"].dispose()  # every connection closed, so the database's files are all there is

    # Assert (in the tests)
    stored = [searchable(p.read_bytes()) for p in sorted((settings.home / "dicom").rglob("*.dcm"))]
    database = b"".join(p.read_bytes() for p in sorted(root.glob("vigil.db*")))
    yield Scan(planter.canaries, given, stored, database, len(report.ingested), [r.reason for r in report.rejected])


def test_every_planted_file_is_stored(scan: Scan) -> None:
    # A control: a rejected file would leak nothing and prove nothing.
    assert scan.rejected == []
    assert scan.ingested == len(scan.given) == len(scan.stored) > 0


def test_every_canary_is_in_the_planted_files(scan: Scan) -> None:
    # A control: the search would find each canary had it survived.
    haystack = b"\n".join(scan.given)
    assert set(scan.canaries) - present(scan.canaries, haystack) == set()
    assert len(set(scan.canaries)) == len(scan.canaries)


def test_no_canary_reaches_the_stored_files_or_the_database(scan: Scan, record_property: pytest.RecordProperty) -> None:
    # Execute
    in_files = b"\n".join(scan.stored)
    leaked_files = sorted(present(scan.canaries, in_files))
    leaked_db = sorted(present(scan.canaries, scan.database))

    # Assert
    record_property("ingest_deid_canaries_planted", len(scan.canaries))
    record_property("ingest_deid_canaries_leaked", len(set(leaked_files) | set(leaked_db)))
    print(  # noqa: T201 - the figure the README quotes
        f"\nde-identification at ingest canary scan: planted {len(scan.canaries)}, "
        f"leaked {len(set(leaked_files) | set(leaked_db))} (stored files and database)"
    )
    assert len(scan.canaries) > 3000  # a floor against a planter that silently plants nothing
    assert leaked_files == []
    assert leaked_db == []
