"""De-identification at ingest (issue 17 item 3): what is stored, what is refused, and EMR linkage kept.

The DICOM files are the SYNTHETIC cohort's phantoms; the FHIR payloads are SYNTHETIC resources
built here, naming the patients' original MRNs, accession numbers and StudyInstanceUIDs exactly as
a hospital's EMR would, although the store holds none of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pydicom
import pytest

from core.config import DeidSettings, DeidSite, Settings, load_settings
from core.errors import ConfigError
from core.fhir import pseudonym
from core.imaging.deid import pseudonymous_uid
from core.imaging.dicom import read_header
from core.imaging.image import DicomMeta
from core.pipeline import FlowLimits, StreamingPipeline
from core.sampledata import MANIFEST_NAME, read_manifest
from core.sampledata.fhir_outcomes import SampleOutcomes, write_outcomes
from core.services import fhir_ingest, ingestion, sites
from core.services.deidentify import IngestDeid, ingest_deid
from core.services.fhir_ingest import site_secret
from core.services.outcomes import resolve_labels
from core.services.store import open_store
from core.store import audit_log, outcomes, studies
from core.store.engine import SessionFactory

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
NODULE = "786838002"  # SNOMED CT: nodule of lung (a confirmed finding in the bundled mapping)
_CLOCK = count()


def clock() -> datetime:
    """One minute later per call, so later rows are later."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_CLOCK))


@dataclass(frozen=True)
class Store:
    settings: Settings
    sf: SessionFactory

    @property
    def dicom_dir(self) -> Path:
        return self.settings.home / "dicom"

    @property
    def secret(self) -> bytes:
        return site_secret(self.settings)

    def ingest(self, paths: list[Path], site: str = "north") -> ingestion.IngestReport:
        return ingestion.ingest_paths(
            self.sf,
            paths,
            site=site,
            dicom_dir=self.dicom_dir,
            actor="t",
            now=clock,
            deid=ingest_deid(self.settings, site),
        )


def _store(root: Path, *, installation: bool = False, north: bool | None = True) -> Store:
    deid = DeidSettings(deidentify_at_ingest=installation, sites=(DeidSite("north", deidentify_at_ingest=north),))
    settings = Settings(home=root / "home", database_url=f"sqlite:///{root / 'v.db'}", deid=deid)
    sf = open_store(settings)
    for site in ("north", "south"):
        sites.add_site(sf, site, benchmark=False, actor="t", now=clock)
    return Store(settings, sf)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return _store(tmp_path)


def _files(cohort: Path) -> list[Path]:
    return sorted((cohort / "dicom").rglob("*.dcm"))


# --- the setting --------------------------------------------------------------------------------


def test_the_setting_is_per_site_over_the_installation_default(tmp_path: Path) -> None:
    # Prepare
    on_by_site = _store(tmp_path / "a", installation=False, north=True)
    off_by_site = _store(tmp_path / "b", installation=True, north=False)

    # Execute / Assert: a site's own value wins; others follow the installation
    assert isinstance(ingest_deid(on_by_site.settings, "north"), IngestDeid)
    assert ingest_deid(on_by_site.settings, "south") is None
    assert ingest_deid(off_by_site.settings, "north") is None
    assert isinstance(ingest_deid(off_by_site.settings, "south"), IngestDeid)
    assert Settings(home=tmp_path, database_url="sqlite://").deid.deidentify_at_ingest is False


def test_the_setting_is_read_from_vigil_toml(tmp_path: Path) -> None:
    # Prepare
    config = tmp_path / "vigil.toml"
    config.write_text(
        "[vigil.deid]\ndeidentify_at_ingest = true\n[vigil.deid.sites.north]\ndeidentify_at_ingest = false\n"
    )
    environ = {"VIGIL_CONFIG": str(config), "VIGIL_HOME": str(tmp_path / "home")}

    # Execute
    settings = load_settings(environ)

    # Assert
    assert settings.deid.deidentify_at_ingest_for("north") is False
    assert settings.deid.deidentify_at_ingest_for("riverside") is True
    config.write_text('[vigil.deid]\ndeidentify_at_ingest = "yes"\n')
    with pytest.raises(ConfigError, match=r"deid.deidentify_at_ingest must be true or false, got 'yes'"):
        load_settings(environ)


# --- what is stored -----------------------------------------------------------------------------


def test_stored_files_and_rows_hold_pseudonyms_only(store: Store, small_cohort: Path) -> None:
    # Prepare
    files = _files(small_cohort)[:3]
    originals = [read_header(f) for f in files]

    # Execute
    report = store.ingest(files)

    # Assert: every file stored, under its keyed UIDs
    secret = store.secret
    assert len(report.ingested) == 3 and not report.rejected
    assert sorted(report.ingested) == sorted(pseudonymous_uid(secret, m.sop_instance_uid) for m in originals)
    with store.sf() as s:
        rows = {r.study_uid: r for r in studies.list_studies(s, limit=10)}
        for m in originals:
            row = rows[pseudonymous_uid(secret, m.study_instance_uid)]
            assert row.patient_id == pseudonym(secret, "patient", m.patient_id)
            assert row.accession_number == pseudonym(secret, "accession", m.accession_number)
            assert row.study_date is not None and row.study_date.strftime("%Y%m%d") == m.study_date  # kept: option
            assert row.institution_name == "" and row.station_name == ""  # the profile removes them
            (inst,) = studies.list_instances(s, row.study_uid)
            ds = pydicom.dcmread(inst.path)
            assert ds.PatientIdentityRemoved == "YES"
            assert "Basic Application Confidentiality Profile" in ds.DeidentificationMethod[0]
            codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
            assert codes == {"113100", "113106"}  # the profile and its full-dates option
            assert ds.PatientID == row.patient_id and ds.AccessionNumber == "" and ds.PatientName == ""
            assert ds.StudyInstanceUID == row.study_uid and ds.SOPInstanceUID == inst.sop_instance_uid
            assert ds.file_meta.MediaStorageSOPInstanceUID == inst.sop_instance_uid


def test_the_audit_entry_names_the_source_by_hash_not_path(store: Store, small_cohort: Path) -> None:
    # Prepare
    (path,) = _files(small_cohort)[:1]

    # Execute
    store.ingest([path])

    # Assert
    with store.sf() as s:
        entry = audit_log.last_entry(s)
    assert entry is not None and entry.action == "study_ingested"
    assert "source_path" not in entry.payload and str(path) not in json.dumps(entry.payload)
    assert entry.payload["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    detail = entry.payload["deidentified"]
    assert isinstance(detail, dict) and detail["options"] == ["retain_longitudinal_full_dates"]


def test_a_site_without_the_setting_stores_files_as_they_came(store: Store, small_cohort: Path) -> None:
    # Prepare
    (path,) = _files(small_cohort)[:1]
    original = read_header(path)

    # Execute
    report = store.ingest([path], site="south")

    # Assert
    assert report.ingested == [original.sop_instance_uid]
    with store.sf() as s:
        (row,) = studies.list_studies(s, limit=10)
    assert (row.study_uid, row.patient_id) == (original.study_instance_uid, original.patient_id)


def test_ingesting_the_same_files_again_is_idempotent(store: Store, small_cohort: Path) -> None:
    # Prepare
    files = _files(small_cohort)
    first = store.ingest(files)
    with store.sf() as s:
        before = (studies.count_studies(s), sorted(p.name for p in store.dicom_dir.rglob("*.dcm")))

    # Execute
    again = store.ingest(files)

    # Assert: the same bytes under the same UIDs, so every file is a duplicate
    assert len(first.ingested) == len(files)
    assert again.ingested == [] and again.rejected == [] and len(again.duplicates) == len(files)
    with store.sf() as s:
        assert (studies.count_studies(s), sorted(p.name for p in store.dicom_dir.rglob("*.dcm"))) == before


def test_burned_in_annotation_is_quarantined_not_stored(store: Store, small_cohort: Path, tmp_path: Path) -> None:
    # Prepare: a phantom that says its pixels hold text
    ds = pydicom.dcmread(_files(small_cohort)[0])
    ds.BurnedInAnnotation = "YES"
    risky = tmp_path / "risky.dcm"
    ds.save_as(risky, enforce_file_format=True)

    # Execute
    report = store.ingest([risky])

    # Assert
    assert report.ingested == [] and [r.path for r in report.rejected] == [str(risky)]
    assert report.rejected[0].reason == (
        "quarantined by de-identification at ingest, not stored: "
        "BurnedInAnnotation is YES: text burned into the pixels can identify the patient."
    )
    with store.sf() as s:
        assert studies.count_studies(s) == 0
        entry = audit_log.last_entry(s)
    assert entry is not None and entry.action == "ingest_rejected"
    assert not list(store.dicom_dir.rglob("*.dcm"))


def test_the_streaming_pipeline_stores_the_same_copies(store: Store, small_cohort: Path, tmp_path: Path) -> None:
    # Prepare: the serial path's copies, in a second store with the same key
    files = _files(small_cohort)[:2]
    serial = store.ingest(files)
    other = _store(tmp_path / "other")
    (other.settings.home / "secrets").mkdir(parents=True)
    fhir_ingest.install_site_secret(other.settings, store.secret)

    # Execute
    with StreamingPipeline(
        other.sf, dicom_dir=other.dicom_dir, model=None, limits=FlowLimits.for_workers(1, 2), actor="t", now=clock
    ) as pipe:
        piped = pipe.run(files, site="north", deid=ingest_deid(other.settings, "north"))

    # Assert
    assert sorted(piped.ingest.ingested) == sorted(serial.ingested)
    assert sorted(p.name for p in other.dicom_dir.rglob("*.dcm")) == sorted(
        p.name for p in store.dicom_dir.rglob("*.dcm")
    )


# --- EMR linkage --------------------------------------------------------------------------------


def _patient(pid: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"type": {"coding": [{"system": V2, "code": "MR"}]}, "value": mrn}],
    }


def _report(rid: str, pid: str, day: str, study: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "24627-2"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"{day}T10:00:00Z",
        "conclusionCode": [{"coding": [{"system": SNOMED, "code": NODULE}]}],
    }
    if study is not None:
        imaging = {"resourceType": "ImagingStudy", "id": f"is-{rid}", "status": "available"}
        out.append({**imaging, "subject": {"reference": f"Patient/{pid}"}, **study})
        report["imagingStudy"] = [{"reference": f"ImagingStudy/is-{rid}"}]
    return [*out, report]


def _bundle(resources: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    ).encode()


def test_outcomes_naming_original_identifiers_link_by_every_rule(store: Store, small_cohort: Path) -> None:
    # Prepare: three studies of three patients stored de-identified
    files = _files(small_cohort)
    metas = {f: read_header(f) for f in files}
    chosen: list[DicomMeta] = []
    for meta in metas.values():
        if meta.patient_id not in {m.patient_id for m in chosen} and meta.accession_number and meta.study_date:
            chosen.append(meta)
    by_uid, by_accession, by_patient = chosen[:3]
    store.ingest(files)
    day = datetime.strptime(by_patient.study_date, "%Y%m%d").date() + timedelta(days=10)
    payload = _bundle(
        [
            _patient("p1", by_uid.patient_id),
            *_report(
                "r1",
                "p1",
                "2030-01-01",
                {"identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{by_uid.study_instance_uid}"}]},
            ),
            _patient("p2", by_accession.patient_id),
            *_report(
                "r2",
                "p2",
                "2030-01-01",
                {
                    "identifier": [
                        {"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "value": by_accession.accession_number}
                    ]
                },
            ),
            _patient("p3", by_patient.patient_id),
            *_report("r3", "p3", day.isoformat()),
        ]
    )

    # Execute
    report = fhir_ingest.ingest_payload(store.sf, payload, name="emr.json", secret=store.secret, actor="t", now=clock)

    # Assert: each piece of evidence on its own study, by the rule it offers
    secret = store.secret
    assert report.linked == {"study_uid": 1, "accession": 1, "patient_date": 1} and report.unlinked == 0, report
    with store.sf() as s:
        ids = outcomes.study_ids_by_uid(s)
        labelled = {o.study_id: o.detail for o in outcomes.list_outcomes(s)}
    for meta, rule in ((by_uid, "study_uid"), (by_accession, "accession"), (by_patient, "patient_date")):
        assert labelled[ids[pseudonymous_uid(secret, meta.study_instance_uid)]].endswith(f":{rule}")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, small_cohort: Path) -> Iterator[tuple[Store, SampleOutcomes]]:
    """The small cohort stored de-identified at every site, and its SYNTHETIC EMR outcomes ingested."""
    root = tmp_path_factory.mktemp("deid-sample")
    rows = read_manifest(small_cohort / MANIFEST_NAME)
    made = write_outcomes(root, rows, seed=7)
    settings = Settings(
        home=root / "home", database_url=f"sqlite:///{root / 'v.db'}", deid=DeidSettings(deidentify_at_ingest=True)
    )
    sf = open_store(settings)
    st = Store(settings, sf)
    for site in sorted({r.site for r in rows}):
        sites.add_site(sf, site, benchmark=site == "benchmark", actor="t", now=clock)
        st.ingest([small_cohort / r.path for r in rows if r.site == site], site=site)
    for p in sorted(p for p in (root / "outcomes").rglob("*") if p.suffix in (".json", ".ndjson")):
        fhir_ingest.ingest_payload(sf, p.read_bytes(), name=p.name, secret=st.secret, actor="t", now=clock)
    yield st, made


def test_the_sample_outcomes_label_the_deidentified_studies_as_planned(sample: tuple[Store, SampleOutcomes]) -> None:
    # Prepare
    st, made = sample
    secret = st.secret

    # Execute
    with st.sf() as s:
        resolution = resolve_labels(outcomes.list_outcomes(s), [])
        ids = outcomes.study_ids_by_uid(s)
    planned = [p for p in made.plans if p.expected is not None]
    labels = {p.study_uid: resolution.labels.get(ids[pseudonymous_uid(secret, p.study_uid)]) for p in planned}

    # Assert: as many labels as identified ingest gives (test_fhir_ingest), each the evidence's
    assert sum(label is not None for label in labels.values()) >= 0.8 * len(planned)
    assert all(label.label == int(p.expected == "finding_confirmed") for p in planned if (label := labels[p.study_uid]))
