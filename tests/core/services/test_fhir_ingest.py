"""EMR outcomes into the store: linkage, idempotency, bad payloads, delayed outcomes and the label of record.

The payloads are SYNTHETIC: small FHIR R4 resources built here (made-up ids and identifiers, real
SNOMED CT and LOINC codes of the mapping file), and the sample cohort's outcomes written by
``core.sampledata.fhir_outcomes``.
"""

from __future__ import annotations

import base64
import json
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit.events import AuditAction
from core.config import Settings
from core.errors import FhirPayloadError, PseudonymKeyError
from core.sampledata import MANIFEST_NAME, read_manifest
from core.sampledata.fhir_outcomes import SampleOutcomes, write_outcomes
from core.services import fhir_ingest, ingestion, sites
from core.services.fhir_ingest import IngestReport
from core.services.linkage import WINDOW, LinkMethod, LinkTarget, StudyIndex, StudyKeys, link
from core.services.outcomes import LabelSource, resolve_labels
from core.services.outcomes_overview import outcomes_overview
from core.services.store import open_store
from core.store import audit_log, emr, outcomes, studies
from core.store import sites as site_store
from core.store.engine import SessionFactory
from core.store.outcomes import OutcomeSource
from core.store.tables import (
    AuditEntryRow,
    EmrEvidenceRow,
    EmrIngestRunRow,
    EmrPatientRow,
    EmrUnmappedCodeRow,
    OutcomeRow,
)
from tests.core.store.conftest import instance_in, study_in

SECRET = b"s" * 32
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
STUDY_DATE = date(2024, 3, 1)


# --- SYNTHETIC resources -------------------------------------------------------------------------


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _patient(pid: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"type": {"coding": [{"system": V2, "code": "MR"}]}, "value": mrn}],
        "gender": "female",
        "birthDate": "1960-02-01",
    }


def _report(
    rid: str, *, pid: str, code: str, conclusion: str | None, day: str, version: str = "1", uid: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "meta": {"versionId": version},
        "status": "final",
        "code": _concept(LOINC, code),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"{day}T10:00:00Z",
    }
    if conclusion is not None:
        out["conclusionCode"] = [_concept(SNOMED, conclusion)]
    if uid is not None:
        out["imagingStudy"] = [{"reference": f"ImagingStudy/is-{rid}"}]
    return out


def _imaging_study(rid: str, pid: str, uid: str) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": f"is-{rid}",
        "status": "available",
        "subject": {"reference": f"Patient/{pid}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
    }


def _note(did: str, *, pid: str, text: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": did,
        "status": "current",
        "type": _concept(LOINC, "11506-3"),
        "subject": {"reference": f"Patient/{pid}"},
        "date": f"{day}T09:00:00Z",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }


def _bundle(resources: list[dict[str, Any]], kind: str = "collection") -> bytes:
    entries = []
    for r in resources:
        entry: dict[str, Any] = {"resource": r}
        if kind in ("transaction", "batch"):
            entry["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        entries.append(entry)
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": entries}).encode()


# --- a small store with one study per patient ---------------------------------------------------


_CLOCK = count()


def clock() -> datetime:
    """A clock that moves one minute per call, so later rows are later."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_CLOCK))


@pytest.fixture
def store(tmp_path: Path) -> SessionFactory:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'v.db'}")
    sf = open_store(settings)
    sites.add_site(sf, "north", benchmark=False, actor="t", now=clock)
    for n in range(2):
        _add_study(sf, n)
    return sf


def _add_study(sf: SessionFactory, n: int, *, study_date: date = STUDY_DATE) -> int:
    with sf.begin() as session:
        site = sites_by_name(session)["north"]
        header = replace(study_in(n), patient_id=f"MRN-{n}", accession_number=f"ACC-{n}", study_date=study_date)
        return studies.add_study_with_instance(
            session, site_id=site, study=header, instance=instance_in(n, study=n), now=clock()
        ).study.id


def sites_by_name(session: Session) -> dict[str, int]:
    return {s.name: s.id for s in site_store.list_sites(session)}


def _ingest(sf: SessionFactory, payload: bytes, name: str = "p.json") -> IngestReport:
    return fhir_ingest.ingest_payload(sf, payload, name=name, secret=SECRET, actor="t", now=clock)


def _label(sf: SessionFactory, study_id: int) -> tuple[int, str] | None:
    with sf() as session:
        resolution = resolve_labels(outcomes.list_outcomes(session), [])
    found = resolution.labels.get(study_id)
    return None if found is None else (found.label, found.detail)


def _counts(sf: SessionFactory) -> dict[str, int]:
    tables = (EmrIngestRunRow, EmrEvidenceRow, EmrPatientRow, EmrUnmappedCodeRow, OutcomeRow, AuditEntryRow)
    with sf() as session:
        return {t.__tablename__: session.scalars(select(func.count()).select_from(t)).one() for t in tables}


def _study_id(sf: SessionFactory, n: int) -> int:
    with sf() as session:
        return outcomes.study_ids_by_uid(session)[study_in(n).study_uid]


# --- linkage rules (pure) -----------------------------------------------------------------------


INDEX = StudyIndex(
    [
        StudyKeys(1, "1.2.3.1", "acc-1", "pat-a", date(2024, 1, 10)),
        StudyKeys(2, "1.2.3.2", "acc-2", "pat-a", date(2024, 6, 1)),
        StudyKeys(3, "1.2.3.3", "acc-dup", "pat-b", date(2024, 2, 1)),
        StudyKeys(4, "1.2.3.4", "acc-dup", "pat-b", date(2024, 2, 1)),
    ]
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (LinkTarget("1.2.3.2", "acc-1", "pat-a", date(2024, 2, 1)), (2, LinkMethod.STUDY_UID, False)),
        (LinkTarget("9.9.9", "acc-1", "pat-a", date(2024, 7, 1)), (1, LinkMethod.ACCESSION, False)),
        (LinkTarget(None, None, "pat-a", date(2024, 5, 31)), (1, LinkMethod.PATIENT_DATE, False)),
        (LinkTarget(None, None, "pat-a", date(2024, 6, 1)), (2, LinkMethod.PATIENT_DATE, False)),
        (LinkTarget(None, None, "pat-a", date(2024, 6, 1) + WINDOW + timedelta(days=1)), (None, None, False)),
        (LinkTarget(None, None, "pat-a", date(2023, 12, 31)), (None, None, False)),
        (LinkTarget(None, None, "pat-a", None), (None, None, False)),
        (LinkTarget(None, "acc-dup", None, None), (None, None, True)),
        (LinkTarget(None, None, "pat-b", date(2024, 3, 1)), (None, None, True)),
        (LinkTarget(None, None, "pat-z", date(2024, 3, 1)), (None, None, False)),
    ],
    ids=[
        "uid-first",
        "accession-next",
        "nearest-earlier-study",
        "same-day-study",
        "after-the-window",
        "before-any-study",
        "no-date",
        "ambiguous-accession",
        "two-studies-same-day",
        "unknown-patient",
    ],
)
def test_linkage_rules(target: LinkTarget, expected: tuple[int | None, LinkMethod | None, bool]) -> None:
    # Execute
    result = link(target, INDEX)

    # Assert
    assert (result.study_id, result.method, result.ambiguous) == expected


# --- the sample cohort's outcomes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(
    tmp_path_factory: pytest.TempPathFactory, small_cohort: Path
) -> Iterator[tuple[SessionFactory, Path, SampleOutcomes, list[IngestReport]]]:
    """The small cohort's DICOM and its SYNTHETIC EMR outcomes ingested into one store (shared, read-only)."""
    root = tmp_path_factory.mktemp("fhir-sample")
    rows = read_manifest(small_cohort / MANIFEST_NAME)
    made = write_outcomes(root, rows, seed=7)
    settings = Settings(home=root / "home", database_url=f"sqlite:///{root / 'v.db'}")
    sf = open_store(settings)
    for site in sorted({r.site for r in rows}):
        sites.add_site(sf, site, benchmark=site == "benchmark", actor="t", now=clock)
        files = [small_cohort / r.path for r in rows if r.site == site]
        ingestion.ingest_paths(sf, files, site=site, dicom_dir=root / "home" / "dicom", actor="t", now=clock)
    paths = sorted(p for p in (root / "outcomes").rglob("*") if p.suffix in (".json", ".ndjson"))
    reports = [_ingest(sf, p.read_bytes(), p.name) for p in paths]
    yield sf, root / "outcomes", made, reports


def test_sample_outcomes_label_most_deployment_studies_as_planned(
    sample: tuple[SessionFactory, Path, SampleOutcomes, list[IngestReport]],
) -> None:
    # Prepare
    sf, _, made, reports = sample

    # Execute
    with sf() as session:
        resolution = resolve_labels(outcomes.list_outcomes(session), [])
        ids = outcomes.study_ids_by_uid(session)
    planned = [p for p in made.plans if p.expected is not None]
    labels = {p.study_uid: resolution.labels.get(ids[p.study_uid]) for p in planned}

    # Assert: most deployment studies carry an EMR label, and it is what the evidence says
    assert sum(label is not None for label in labels.values()) >= 0.8 * len(planned)
    assert all(
        label.source is LabelSource.EMR and label.label == int(p.expected == "finding_confirmed")
        for p in planned
        if (label := labels[p.study_uid]) is not None
    )
    assert {m for r in reports for m in r.linked} == {"study_uid", "accession", "patient_date"}
    assert all(not r.rejected for r in reports)


def test_ingesting_the_same_payloads_again_writes_nothing(
    sample: tuple[SessionFactory, Path, SampleOutcomes, list[IngestReport]],
) -> None:
    # Prepare
    sf, folder, _, first = sample
    before = _counts(sf)

    # Execute
    again = [_ingest(sf, p.read_bytes(), p.name) for p in sorted(folder.rglob("*")) if p.suffix in (".json", ".ndjson")]

    # Assert
    assert _counts(sf) == before
    assert [r.run_id for r in again] == [None] * len(first)
    assert [r.already_stored for r in again] == [r.evidence for r in first]


def test_unmapped_codes_are_counted_for_an_admin(
    sample: tuple[SessionFactory, Path, SampleOutcomes, list[IngestReport]],
) -> None:
    # Execute
    codes = fhir_ingest.unmapped_codes(sample[0])

    # Assert: the laboratory results the generator plants, never guessed into an outcome
    assert {(c.system, c.code) for c in codes} <= {(LOINC, "2345-7"), (LOINC, "718-7")}
    assert sum(c.count for c in codes) == sum(r.unmapped for r in sample[3])


# --- bad payloads -------------------------------------------------------------------------------


def test_a_transaction_with_one_bad_entry_is_rejected_whole(store: SessionFactory) -> None:
    # Prepare
    bad = _report("r3", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-05")
    bad["status"] = "finished"  # not in the R4 value set
    resources = [
        _patient("p0", "MRN-0"),
        _report("r1", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-05"),
        _patient("p1", "MRN-1"),
        bad,
    ]
    before = _counts(store)

    # Execute
    with pytest.raises(FhirPayloadError) as caught:
        _ingest(store, _bundle(resources, "transaction"), "tx.json")

    # Assert: the path names the entry, and nothing was written (not even a run row or an audit entry)
    assert "entry[3].resource.status" in str(caught.value) and "tx.json" in str(caught.value)
    assert _counts(store) == before


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"\xff\xfe\x00garbage", b'{"resourceType": "Medication", "id": "m1"}', b""],
    ids=["malformed-json", "undecodable", "unread-resource-type", "empty"],
)
def test_malformed_payloads_are_refused_with_nothing_written(store: SessionFactory, payload: bytes) -> None:
    # Prepare
    before = _counts(store)

    # Execute / Assert
    with pytest.raises(FhirPayloadError, match="bad.json"):
        _ingest(store, payload, "bad.json")
    assert _counts(store) == before


def test_a_collection_stores_the_good_resources_and_reports_each_bad_one(store: SessionFactory) -> None:
    # Prepare
    bad_status = _report("r2", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-05")
    bad_status["status"] = "finished"
    bad_gender = _patient("p1", "MRN-1") | {"gender": "femme"}
    resources = [
        _patient("p0", "MRN-0"),
        _report("r1", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-05"),
        bad_status,
        bad_gender,
    ]

    # Execute
    report = _ingest(store, _bundle(resources), "c.json")

    # Assert
    assert [e.path for e in report.rejected] == ["entry[2].resource.status", "entry[3].resource.gender"]
    assert (report.accepted, report.evidence, report.outcomes) == (2, 1, 1)
    with store() as session:
        (run,) = emr.list_runs(session)
    assert (run.run.n_entries, run.run.n_accepted, run.run.n_rejected) == (4, 2, 2)
    assert _label(store, _study_id(store, 0)) is not None


# --- labels of record ---------------------------------------------------------------------------


def test_a_delayed_outcome_changes_the_label_of_record_and_keeps_the_earlier_one(store: SessionFactory) -> None:
    # Prepare: a note says no nodule, weeks later the pathology report confirms one
    note = _note("n1", pid="p0", text="No evidence of pulmonary nodule.", day="2024-03-03")
    pathology = _report("path1", pid="p0", code="11526-1", conclusion="363358000", day="2024-04-20")
    study = _study_id(store, 0)

    # Execute
    _ingest(store, _bundle([_patient("p0", "MRN-0"), note]), "note.json")
    early = _label(store, study)
    _ingest(store, _bundle([_patient("p0", "MRN-0"), pathology]), "pathology.json")
    late = _label(store, study)

    # Assert
    assert early == (0, "note_mention:patient_date (1 agree)")
    assert late == (1, "histopathology:patient_date (1 agree)")
    with store() as session:
        rows = outcomes.list_outcomes(session, source=OutcomeSource.EMR)
        actions = [e.action for e in audit_log.iter_entries(session)]
    assert [(r.label, r.detail) for r in rows] == [
        (False, "note_mention:patient_date"),
        (True, "histopathology:patient_date"),
    ]
    assert actions.count(AuditAction.OUTCOMES_INGESTED) == 2


def test_a_note_never_outranks_a_coded_result(store: SessionFactory) -> None:
    # Prepare: the coded CT report excludes the nodule; a later note affirms one
    ct = _report("ct1", pid="p0", code="24627-2", conclusion="260385009", day="2024-03-10")
    note = _note("n2", pid="p0", text="There is a pulmonary nodule in the right upper lobe.", day="2024-05-01")

    # Execute
    _ingest(store, _bundle([_patient("p0", "MRN-0"), ct]), "ct.json")
    _ingest(store, _bundle([_patient("p0", "MRN-0"), note]), "note.json")

    # Assert
    assert _label(store, _study_id(store, 0)) == (0, "follow_up_imaging:patient_date (1 agree)")


def test_a_new_version_of_a_report_replaces_its_earlier_version(store: SessionFactory) -> None:
    # Prepare
    v1 = _report("ct1", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-10")
    v2 = _report("ct1", pid="p0", code="24627-2", conclusion="260385009", day="2024-03-10", version="2")

    # Execute
    first = _ingest(store, _bundle([_patient("p0", "MRN-0"), v1]))
    second = _ingest(store, _bundle([_patient("p0", "MRN-0"), v2]))

    # Assert: new evidence, a new row, and the corrected version decides
    assert (first.evidence, second.evidence, second.outcomes) == (1, 1, 1)
    assert _label(store, _study_id(store, 0)) == (0, "follow_up_imaging:patient_date (1 agree)")


def test_equally_strong_evidence_that_disagrees_settles_nothing(store: SessionFactory) -> None:
    # Prepare
    yes = _report("ct1", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-10")
    no = _report("xr1", pid="p0", code="36643-5", conclusion="260385009", day="2024-03-12")

    # Execute
    _ingest(store, _bundle([_patient("p0", "MRN-0"), yes, no]))
    with store() as session:
        resolution = resolve_labels(outcomes.list_outcomes(session), [])

    # Assert
    assert _study_id(store, 0) not in resolution.labels
    assert resolution.conflicts == {"emr": 1}


def test_evidence_links_by_study_uid_first(store: SessionFactory) -> None:
    # Prepare: the patient is MRN-0, but the report names study 1's UID
    uid = study_in(1).study_uid
    resources = [
        _patient("p0", "MRN-0"),
        _imaging_study("ct1", "p0", uid),
        _report("ct1", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-10", uid=uid),
    ]

    # Execute
    report = _ingest(store, _bundle(resources))

    # Assert
    assert report.linked == {"study_uid": 1}
    assert _label(store, _study_id(store, 1)) == (1, "follow_up_imaging:study_uid (1 agree)")


def test_evidence_waits_for_its_study_and_links_when_it_arrives(store: SessionFactory) -> None:
    # Prepare: MRN-5 has no study yet
    report = _ingest(
        store,
        _bundle(
            [_patient("p5", "MRN-5"), _report("ct5", pid="p5", code="24627-2", conclusion="10828004", day="2024-03-10")]
        ),
    )
    nothing = fhir_ingest.relink(store, secret=SECRET, actor="t", now=clock)
    study = _add_study(store, 5)

    # Execute
    relinked = fhir_ingest.relink(store, secret=SECRET, actor="t", now=clock)

    # Assert
    assert (report.unlinked, report.outcomes, nothing.outcomes) == (1, 0, 0)
    assert (relinked.linked, relinked.outcomes) == ({"patient_date": 1}, 1)
    assert _label(store, study) == (1, "follow_up_imaging:patient_date (1 agree)")
    with store() as session:
        assert [e.action for e in audit_log.iter_entries(session)][-1] == AuditAction.EMR_RELINKED


def test_indeterminate_evidence_is_stored_but_decides_nothing(store: SessionFactory) -> None:
    # Prepare
    note = _note("n3", pid="p0", text="Possible small pulmonary nodule in the left lower lobe.", day="2024-03-03")

    # Execute
    report = _ingest(store, _bundle([_patient("p0", "MRN-0"), note]))

    # Assert
    with store() as session:
        (stored,) = emr.list_evidence(session)
    assert (report.evidence, report.outcomes, stored.evidence.outcome) == (1, 0, "indeterminate")
    assert _label(store, _study_id(store, 0)) is None


# --- the site's pseudonym key -------------------------------------------------------------------


def test_the_site_key_is_created_private_once_and_kept(tmp_path: Path) -> None:
    # Prepare
    settings = Settings(home=tmp_path / "home", database_url="sqlite://")

    # Execute
    first = fhir_ingest.site_secret(settings)
    second = fhir_ingest.site_secret(settings)

    # Assert
    path = tmp_path / "home" / "secrets" / "pseudonym.key"
    assert first == second and len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["pseudonym.key"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b"short"), "holds 5 bytes, expected 32"),
        (lambda p: p.mkdir(), "not a regular file"),
    ],
    ids=["wrong-size", "a-folder"],
)
def test_an_unusable_site_key_is_refused(tmp_path: Path, make: Callable[[Path], object], reason: str) -> None:
    # Prepare
    settings = Settings(home=tmp_path, database_url="sqlite://")
    (tmp_path / "secrets").mkdir()
    make(tmp_path / "secrets" / "pseudonym.key")

    # Execute / Assert
    with pytest.raises(PseudonymKeyError, match=reason):
        fhir_ingest.site_secret(settings)


# --- the Outcomes page's overview ---------------------------------------------------------------


def test_the_overview_counts_linkage_backlog_delay_and_sources_per_site(
    sample: tuple[SessionFactory, Path, SampleOutcomes, list[IngestReport]],
) -> None:
    # Prepare
    sf, _, made, reports = sample

    # Execute
    view = outcomes_overview(sf)

    # Assert
    by_site = {s.site: s for s in view.sites}
    planned = Counter(p.site for p in made.plans if p.expected is not None)
    assert len(view.runs) == len(reports) and view.n_unlinked == sum(r.unlinked for r in reports)
    assert by_site["benchmark"].n_linked_studies == 0  # the generator writes no EMR outcomes there
    for site, n in planned.items():
        s = by_site[site]
        assert 0 < s.n_linked_studies <= s.n_studies and s.n_labelled + s.n_waiting == s.n_studies
        assert s.by_source.get("emr", 0) == s.n_labelled <= n
        assert s.n_delay == s.n_labelled and s.delay_median_days is not None and s.delay_p90_days is not None
        assert 0 <= s.delay_median_days <= s.delay_p90_days <= 366
    assert {u.code for u in view.unmapped} == {c.code for c in fhir_ingest.unmapped_codes(sf)}


# --- vigil init on the committed sample cohort --------------------------------------------------


def test_init_loads_the_sample_outcomes_and_labels_most_deployment_studies(
    initialized_sample: tuple[Settings, SessionFactory],
) -> None:
    # Prepare
    settings, sf = initialized_sample
    payloads = [p for p in (settings.sample_data_dir / "outcomes").rglob("*") if p.suffix in (".json", ".ndjson")]

    # Execute: the labels a deployment would see (the fixture adds every site's synthetic truth on top)
    with sf() as session:
        records = [r for r in outcomes.list_outcomes(session) if r.source is not OutcomeSource.GROUND_TRUTH]
        site_of = outcomes.study_sites(session)
        truth_loads = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.GROUND_TRUTH_LOADED]
    labels = resolve_labels(records, []).labels
    view = outcomes_overview(sf)

    # Assert
    deployment = [sid for sid, site in site_of.items() if site != "benchmark"]
    assert len(view.runs) == len(payloads) > 0
    assert sum(sid in labels for sid in deployment) >= 0.8 * len(deployment)
    assert {labels[sid].source for sid in deployment if sid in labels} == {LabelSource.EMR}
    assert all(s.linkage_rate is not None and s.linkage_rate >= 0.7 for s in view.sites if s.site != "benchmark")
    manifest = read_manifest(settings.sample_data_dir / MANIFEST_NAME)
    assert truth_loads[0].payload["in_manifest"] == sum(r.site == "benchmark" for r in manifest)  # init's own


def test_a_study_identifier_that_is_no_dicom_uid_is_neither_stored_nor_linked(store: SessionFactory) -> None:
    # Prepare: free text where the StudyInstanceUID belongs
    resources = [
        _patient("p0", "MRN-0"),
        _imaging_study("ct1", "p0", "Jane Roe 1960"),
        _report("ct1", pid="p0", code="24627-2", conclusion="10828004", day="2024-03-10", uid="Jane Roe 1960"),
    ]

    # Execute
    report = _ingest(store, _bundle(resources))

    # Assert: it still links, by patient and date
    with store() as session:
        (stored,) = emr.list_evidence(session)
    assert stored.evidence.study_uid is None
    assert report.linked == {"patient_date": 1}
