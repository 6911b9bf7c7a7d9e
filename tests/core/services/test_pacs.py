"""PACS pull and push against a real Orthanc: once per study, predictions on arrival, bad input, outages."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from core.audit.events import AuditAction
from core.config import PACS_URL_MAX_CHARS, DeidSettings, DeidSite, PacsEndpoint
from core.errors import BadInputError, PacsAuthError, PacsConfigError, PacsServerError, PacsUnreachableError
from core.imaging.deid import pseudonymous_uid
from core.imaging.dicomweb import (
    MAX_SEARCH_RESULTS,
    DicomwebAuth,
    DicomwebClient,
    RetryPolicy,
    StudyHit,
    StudyQuery,
    UnreadableStudy,
)
from core.sampledata import generate_cohort
from core.services import pacs, sites
from core.services.deidentify import ingest_deid
from core.services.pacs_auto_push import push_study
from core.store import audit_log, pacs_seen, predictions, studies
from core.store.engine import SessionFactory
from core.store.tables import Base, PacsSeenRow
from tests.core.services.conftest import Env
from tests.pacs_server import OrthancServer, ScriptedDicomweb, orthanc, qido_pages, start_orthanc, study_item

__all__ = ["orthanc"]

SITE = "benchmark"


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=5, studies_per_site={"benchmark": 4})
    return sorted((out / "dicom" / "benchmark").glob("*.dcm"))


@pytest.fixture
def pacs_server(orthanc: OrthancServer, cohort_files: list[Path]) -> OrthancServer:
    orthanc.clear()
    orthanc.upload(cohort_files)
    return orthanc


def _client(server: OrthancServer, sleeps: list[float] | None = None) -> DicomwebClient:
    return DicomwebClient(
        server.dicomweb_url,
        auth=DicomwebAuth("basic", server.username, server.password),
        timeout_s=5,
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.01),
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )


def _pull(env: Env, server: OrthancServer, *, predict: bool = True) -> pacs.SitePull:
    predictor = (
        pacs.make_predictor(env.sf, models_dir=env.models_dir, batch_size=4, actor="t", now=env.now)
        if predict
        else None
    )
    with _client(server) as client:
        return pacs.pull_site(
            env.sf,
            client,
            site=SITE,
            query=StudyQuery(),
            home=env.settings.home,
            actor="t",
            now=env.now,
            predict=predictor,
        )


def _sop_uids(sf: SessionFactory) -> list[str]:
    with sf() as session:
        return sorted(
            i.sop_instance_uid
            for s in studies.list_studies(session)
            for i in studies.list_instances(session, s.study_uid)
        )


def _non_image(study: Dataset) -> bytes:
    """A Basic Text SR in ``study``: a real DICOM object the gate must refuse (no pixels)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        setattr(ds, keyword, study.data_element(keyword).value)
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), "SR", 77, 1
    path_like = pydicom.filebase.DicomBytesIO()
    ds.save_as(path_like, enforce_file_format=True)
    return path_like.getvalue()


def _study_uids(files: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in files}


def _staged(env: Env) -> list[Path]:
    return [p for p in (env.settings.home / pacs.STAGING_DIR).rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_every_study_arrives_once_and_is_predicted(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare
    n_studies, n_instances = len(_study_uids(cohort_files)), len(cohort_files)

    # Execute
    first = _pull(env, pacs_server)
    second = _pull(env, pacs_server)

    # Assert: every study stored and scored; the second pull retrieves nothing
    expected = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in cohort_files)
    assert _sop_uids(env.sf) == expected
    assert (first.studies_found, first.retrieved, first.stored, first.rejected) == (
        n_studies,
        n_instances,
        n_instances,
        (),
    )
    assert first.predicted == n_studies
    assert (second.studies_found, second.studies_complete, second.retrieved, second.predicted) == (
        n_studies,
        n_studies,
        0,
        0,
    )
    with env.sf() as session:
        assert predictions.count_predictions(session) == n_studies
        assert len(pacs_seen.list_seen(session, pacs_server.dicomweb_url)) == n_instances
        pulled = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.PACS_STUDY_PULLED]
    assert len(pulled) == n_studies
    assert _staged(env) == []  # no staged file left


def test_a_non_image_instance_is_reported_with_its_study_and_the_rest_goes_on(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: a report in the first study
    study = pydicom.dcmread(cohort_files[0], stop_before_pixels=True)
    pacs_server.upload_bytes(_non_image(study))

    # Execute
    first = _pull(env, pacs_server, predict=False)
    second = _pull(env, pacs_server, predict=False)

    # Assert: the image instances are stored; the report is refused once, with its study and the gate's reason
    assert first.stored == len(cohort_files)
    (rejection,) = first.rejected
    assert rejection.study_uid == study.StudyInstanceUID
    assert "pixel" in rejection.reason.lower() or "report" in rejection.reason.lower()
    assert second.retrieved == 0 and second.rejected == ()
    with env.sf() as session:
        refused = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.INGEST_REJECTED]
    assert len(refused) == 1


def test_an_interrupted_pull_resumes_without_duplicates(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: a pull asked to stop after its first study (as SIGTERM does)
    import threading

    stop = threading.Event()
    with _client(pacs_server) as client:
        searched = client.search_studies

        def stop_after_first(
            query: StudyQuery, *, page_size: int = 100, max_results: int = MAX_SEARCH_RESULTS
        ) -> Iterator[StudyHit | UnreadableStudy]:
            for n, hit in enumerate(searched(query, page_size=page_size, max_results=max_results)):
                if n == 1:
                    stop.set()
                yield hit

        client.search_studies = stop_after_first  # type: ignore[method-assign]
        partial = pacs.pull_site(
            env.sf, client, site=SITE, query=StudyQuery(), home=env.settings.home, actor="t", now=env.now, stop=stop
        )

    # Execute
    rest = _pull(env, pacs_server, predict=False)

    # Assert
    n = len(cohort_files)
    assert partial.stopped and partial.stored == 1
    assert rest.stored == n - 1 and rest.retrieved == n - 1
    assert len(_sop_uids(env.sf)) == len(set(_sop_uids(env.sf))) == n


def test_a_stopped_pacs_is_a_clear_error_and_nothing_is_half_written(env: Env) -> None:
    # Prepare: a PACS that ran, then stopped
    server = start_orthanc()
    server.stop()
    sleeps: list[float] = []

    # Execute
    with _client(server, sleeps) as client, pytest.raises(PacsUnreachableError) as caught:
        pacs.pull_site(env.sf, client, site=SITE, query=StudyQuery(), home=env.settings.home, actor="t", now=env.now)

    # Assert: bounded retries, the endpoint named, no row, no staged file
    assert len(sleeps) == 2 and server.dicomweb_url in str(caught.value)
    assert _sop_uids(env.sf) == []
    with env.sf() as session:
        assert pacs_seen.list_seen(session) == []
    assert _staged(env) == []


def test_pull_sites_reports_a_failing_pacs_and_goes_on(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: a second site whose PACS answers with the wrong password
    from dataclasses import replace

    sites.add_site(env.sf, "north", benchmark=False, actor="t", now=env.now)
    good = PacsEndpoint(SITE, pacs_server.dicomweb_url, "basic", pacs_server.username, "GOOD", max_attempts=2)
    bad = PacsEndpoint("north", pacs_server.dicomweb_url, "basic", pacs_server.username, "BAD", max_attempts=2)
    settings = replace(env.settings, pacs=(good, bad))
    secrets = {"GOOD": pacs_server.password, "BAD": "wrong"}

    # Execute
    report = pacs.pull_sites(
        settings,
        env.sf,
        lambda e: pacs.client_for(e, e.secret(secrets)),
        sites_=[SITE, "north"],
        since=date(1900, 1, 1),
        actor="t",
        now=env.now,
    )

    # Assert
    assert [s.site for s in report.sites] == [SITE] and report.sites[0].stored == len(cohort_files)
    (failure,) = report.failures
    assert failure.site == "north" and isinstance(failure.error, PacsAuthError) and failure.error.status == 401
    assert failure.reason.count(pacs_server.dicomweb_url) == 1  # said once, not wrapped twice


def test_unreadable_search_results_are_rejected_naming_the_value_and_the_other_sites_go_on(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: a second site whose PACS lists studies with values that cannot be read
    from dataclasses import replace

    sites.add_site(env.sf, "north", benchmark=False, actor="t", now=env.now)
    bad = [study_item("1.2.826.0.7", count="²"), study_item("1.2.abc"), study_item("1.2.826.0.8", day="20241345")]
    with ScriptedDicomweb(qido_pages(bad)) as north:
        endpoints = (
            PacsEndpoint("north", north.url, max_attempts=1),
            PacsEndpoint(SITE, pacs_server.dicomweb_url, "basic", pacs_server.username, "GOOD", max_attempts=2),
        )
        settings = replace(env.settings, pacs=endpoints)

        # Execute
        report = pacs.pull_sites(
            settings,
            env.sf,
            lambda e: pacs.client_for(e, e.secret({"GOOD": pacs_server.password})),
            sites_=["north", SITE],
            since=date(1900, 1, 1),
            actor="t",
            now=env.now,
        )

    # Assert: each bad study rejected with its value named; the other site pulled in full
    assert report.failures == ()
    by_site = {s.site: s for s in report.sites}
    reasons = [r.reason for r in by_site["north"].rejected]
    assert len(reasons) == 3 and "'²'" in reasons[0] and "'1.2.abc'" in reasons[1] and "'20241345'" in reasons[2]
    assert by_site["north"].studies_found == 3 and by_site["north"].retrieved == 0
    assert by_site[SITE].stored == len(cohort_files)


def test_a_study_whose_instance_count_is_zero_or_missing_is_not_taken_as_complete(env: Env) -> None:
    # Prepare: a PACS that says "0 instances" for one study and nothing for another
    items = [study_item("1.2.826.0.10", count=0), study_item("1.2.826.0.11", count=None)]

    # Execute
    with ScriptedDicomweb(qido_pages(items)) as server, DicomwebClient(server.url) as client:
        pulled = pacs.pull_site(
            env.sf, client, site=SITE, query=StudyQuery(), home=env.settings.home, actor="t", now=env.now
        )
        listed = [path for _, path, _ in server.requests if path.endswith("/instances")]

    # Assert: both studies' instances were asked for
    assert (pulled.studies_found, pulled.studies_complete) == (2, 0)
    assert sorted(listed) == [f"/dicom-web/studies/{uid}/instances" for uid in ("1.2.826.0.10", "1.2.826.0.11")]


_HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from core.services.pacs_pull import pull_lock
with pull_lock(Path(sys.argv[1]), sys.argv[2]) as staging:
    (staging / "1.2.3").mkdir()
    (staging / "1.2.3" / "1.2.3.4.dcm").write_bytes(b"half a file")
    print(staging, flush=True)
    time.sleep(600)
"""


def test_one_pull_per_endpoint_and_a_killed_pulls_staging_is_cleared_by_the_next(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: another process pulling from the same PACS, holding the lock with a file staged
    root = env.settings.home / pacs.STAGING_DIR
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_LOCK, str(root), pacs_server.dicomweb_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        staged = Path(other.stdout.readline().strip())  # type: ignore[union-attr]

        # Execute: a pull while it runs, then (after kill -9) a pull again
        with pytest.raises(PacsServerError) as caught:
            _pull(env, pacs_server, predict=False)
        assert (staged / "1.2.3" / "1.2.3.4.dcm").exists()  # the live pull's staging is left alone
    finally:
        other.kill()
        other.wait()
    after = _pull(env, pacs_server, predict=False)

    # Assert: the busy pull fetched nothing and said why; the next one ran and cleared the dead run's file
    assert "another pull" in str(caught.value) and pacs_server.dicomweb_url in str(caught.value)
    assert after.stored == len(cohort_files)
    assert _staged(env) == []


def test_an_endpoint_url_longer_than_the_store_keeps_is_refused_before_any_request(env: Env) -> None:
    # Prepare: a URL the pacs_seen column cannot hold (PostgreSQL would refuse the row mid-pull)
    url = "http://127.0.0.1:1/" + "d" * PACS_URL_MAX_CHARS

    # Execute
    with DicomwebClient(url, retry=RetryPolicy(max_attempts=1)) as client, pytest.raises(BadInputError) as caught:
        pacs.pull_site(env.sf, client, site=SITE, query=StudyQuery(), home=env.settings.home, actor="t", now=env.now)

    # Assert: refused for its length, not after trying to reach it
    assert not isinstance(caught.value, PacsServerError)
    assert str(PACS_URL_MAX_CHARS) in str(caught.value)
    assert PacsSeenRow.__table__.c.endpoint.type.length == PACS_URL_MAX_CHARS  # type: ignore[attr-defined]


def test_an_instance_past_the_answer_limit_is_reported_and_tried_again(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: answers limited to less than the smallest instance
    limit = min(p.stat().st_size for p in cohort_files) - 1
    auth = DicomwebAuth("basic", pacs_server.username, pacs_server.password)

    # Execute
    with DicomwebClient(pacs_server.dicomweb_url, auth=auth, max_response_bytes=limit) as client:
        pulled = pacs.pull_site(
            env.sf, client, site=SITE, query=StudyQuery(), home=env.settings.home, actor="t", now=env.now
        )

    # Assert: each instance refused with the limit named, none stored or marked (the next pull tries again)
    assert pulled.stored == 0 and len(pulled.rejected) == len(cohort_files)
    assert all(f"limit of {limit} bytes" in r.reason for r in pulled.rejected)
    with env.sf() as session:
        assert pacs_seen.list_seen(session) == []


def test_push_sends_the_explanation_objects_into_the_study(
    env: Env, pacs_server: OrthancServer, tmp_path: Path, cohort_files: list[Path]
) -> None:
    # Prepare: a pulled, predicted study and its Grad-CAM exports
    _pull(env, pacs_server)
    study_uid = str(pydicom.dcmread(cohort_files[0], stop_before_pixels=True).StudyInstanceUID)
    objects = pacs.explanation_objects(
        env.sf, env.settings, study_uid, out_dir=tmp_path / "out", actor="t", now=env.now
    )

    # Execute
    with _client(pacs_server) as client:
        report = pacs.push_objects(env.sf, client, study_uid, objects, actor="t", now=env.now)

    # Assert: Orthanc files both under the source study, and they re-read with pydicom
    assert len(report.stored) == 2 and report.failed == ()
    held = {str(i["MainDicomTags"]["SOPInstanceUID"]): str(i["ID"]) for i in pacs_server.study_instances(study_uid)}  # type: ignore[index]
    assert set(report.stored) <= set(held)
    for uid in report.stored:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(pacs_server.instance_file(held[uid])))
        assert ds.StudyInstanceUID == study_uid and ds.SOPInstanceUID == uid
    with env.sf() as session:
        (entry,) = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.PACS_PUSHED]
    assert entry.subject == study_uid and sorted(entry.payload["stored"]) == sorted(report.stored)  # type: ignore[arg-type]


def _deidentifying(env: Env) -> Env:
    """``env`` with its benchmark site de-identifying at ingest."""
    deid = DeidSettings(sites=(DeidSite(SITE, deidentify_at_ingest=True),))
    return dataclasses.replace(env, settings=dataclasses.replace(env.settings, deid=deid))


def _every_stored_value(sf: SessionFactory) -> str:
    """Every value of every row of every table, as one string (what a dump of the database would show)."""
    with sf() as session:
        return "\n".join(
            repr(tuple(row)) for table in Base.metadata.sorted_tables for row in session.execute(table.select())
        )


def test_a_deidentifying_site_pulls_its_pacs_into_keyed_uids_only(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: the site de-identifies and has this PACS; the originals' identifiers, as the PACS holds them
    env = _deidentifying(env)
    endpoint = PacsEndpoint(site=SITE, url=pacs_server.dicomweb_url, auth="basic", username="u", secret_env="S")
    env = dataclasses.replace(env, settings=dataclasses.replace(env.settings, pacs=(endpoint,)))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in cohort_files]
    originals = {str(h.SOPInstanceUID) for h in headers} | {str(h.StudyInstanceUID) for h in headers}
    originals |= {str(h.SeriesInstanceUID) for h in headers} | {str(h.PatientID) for h in headers}
    secret = ingest_deid(env.settings, SITE).secret  # type: ignore[union-attr]

    # Execute: the pull through pull_sites (what `vigil pacs pull` runs), twice
    def pull() -> pacs.SitePull:
        report = pacs.pull_sites(
            env.settings,
            env.sf,
            lambda _endpoint: _client(pacs_server),
            sites_=[SITE],
            since=date(1900, 1, 1),
            actor="t",
            now=env.now,
        )
        assert report.failures == ()
        return report.sites[0]

    first, second = pull(), pull()

    # Assert: stored under keyed UIDs, with the de-identified copy's bytes, and no original anywhere
    keyed = sorted(pseudonymous_uid(secret, str(h.SOPInstanceUID)) for h in headers)
    assert _sop_uids(env.sf) == keyed
    assert (first.stored, first.rejected) == (len(cohort_files), ())
    assert (second.retrieved, second.studies_complete) == (0, first.studies_found)  # the seen-table still works
    dump = _every_stored_value(env.sf)
    assert [uid for uid in originals if uid in dump] == []
    for path in env.dicom_dir.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES" and str(ds.SOPInstanceUID) in keyed
    with env.sf() as session:
        subjects = {e.subject for e in audit_log.iter_entries(session) if e.action == AuditAction.PACS_STUDY_PULLED}
    assert subjects == {pseudonymous_uid(secret, str(h.StudyInstanceUID)) for h in headers}


def test_results_are_not_pushed_to_the_pacs_of_a_deidentifying_site(
    env: Env, pacs_server: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: a study pulled and scored while the site kept identifiers; then the site de-identifies
    _pull(env, pacs_server)
    study_uid = str(pydicom.dcmread(cohort_files[0], stop_before_pixels=True).StudyInstanceUID)
    env = _deidentifying(env)

    # Execute / Assert: refused naming the site and why, before anything is sent or audited
    with _client(pacs_server) as client, pytest.raises(PacsConfigError, match=r"'benchmark'.*keyed UIDs"):
        push_study(env.sf, env.settings, client, study_uid, actor="t", now=env.now)
    with env.sf() as session:
        assert not [e for e in audit_log.iter_entries(session) if e.action == AuditAction.PACS_PUSHED]


def test_mark_seen_is_once_per_endpoint_and_instance(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    from core.store import sites as site_store

    with session_factory.begin() as session:
        site_id = site_store.add_site(session, "north", now=now).id

    # Execute
    with session_factory.begin() as session:
        marks = [
            pacs_seen.mark_seen(
                session, endpoint=e, site_id=site_id, study_uid="1.2", sop_instance_uid=u, outcome="stored", now=now
            )
            for e, u in (("http://a", "1.2.3"), ("http://a", "1.2.3"), ("http://a", "1.2.4"), ("http://b", "1.2.3"))
        ]

    # Assert
    assert marks == [True, False, True, True]
    with session_factory() as session:
        assert pacs_seen.seen_uids(session, "http://a", "1.2") == {"1.2.3", "1.2.4"}
        assert pacs_seen.counts_by_study(session, "http://a", ["1.2", "9.9"]) == {"1.2": 2}
        assert [s.site for s in pacs_seen.list_seen(session, "http://b")] == ["north"]
    with pytest.raises(BadInputError), session_factory.begin() as session:
        pacs_seen.mark_seen(
            session, endpoint="http://a", site_id=site_id, study_uid="1", sop_instance_uid="1", outcome="lost", now=now
        )
