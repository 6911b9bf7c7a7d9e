"""The DICOMweb client against a real Orthanc: search and paging, retrieve, store, retries, credentials."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pydicom
import pytest

from core.errors import BadInputError, PacsAuthError, PacsServerError, PacsUnreachableError
from core.imaging.dicomweb import DicomwebAuth, DicomwebClient, RetryPolicy, StudyHit, StudyQuery
from core.sampledata import generate_cohort
from tests.pacs_server import OrthancServer, orthanc, start_orthanc

__all__ = ["orthanc"]  # the session fixture, imported so pytest finds it here


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=11, studies_per_site={"riverside": 5})
    return sorted((out / "dicom" / "riverside").glob("*.dcm"))


@pytest.fixture
def pacs(orthanc: OrthancServer, cohort_files: list[Path]) -> OrthancServer:
    orthanc.clear()
    orthanc.upload(cohort_files)
    return orthanc


def _client(server: OrthancServer, *, password: str | None = None, sleeps: list[float] | None = None) -> DicomwebClient:
    auth = DicomwebAuth("basic", server.username, server.password if password is None else password)
    recorder = sleeps.append if sleeps is not None else (lambda _s: None)
    return DicomwebClient(
        server.dicomweb_url, auth=auth, timeout_s=5, retry=RetryPolicy(max_attempts=3), sleep=recorder
    )


def test_search_walks_every_page(pacs: OrthancServer, cohort_files: list[Path]) -> None:
    # Prepare
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in cohort_files}

    # Execute
    with _client(pacs) as client:
        hits = list(client.search_studies(StudyQuery(), page_size=2))

    # Assert: every study once (over several pages), each with its instance count
    assert sorted(h.study_uid for h in hits) == sorted(expected)
    assert all(isinstance(h, StudyHit) and h.n_instances == 1 and h.modalities == ("DX",) for h in hits)


def test_search_filters_by_date_accession_and_patient(pacs: OrthancServer, cohort_files: list[Path]) -> None:
    # Prepare
    first = pydicom.dcmread(cohort_files[0], stop_before_pixels=True)
    day = date(int(first.StudyDate[:4]), int(first.StudyDate[4:6]), int(first.StudyDate[6:]))

    with _client(pacs) as client:
        # Execute
        by_accession = list(client.search_studies(StudyQuery(accession_number=str(first.AccessionNumber))))
        by_patient = list(client.search_studies(StudyQuery(patient_id=str(first.PatientID))))
        on_day = list(client.search_studies(StudyQuery(date_from=day, date_to=day, modality="DX")))
        later = list(client.search_studies(StudyQuery(date_from=date(2999, 1, 1))))

    # Assert
    assert [h.study_uid for h in by_accession] == [first.StudyInstanceUID]
    assert [h.study_uid for h in by_patient] == [first.StudyInstanceUID]
    assert first.StudyInstanceUID in {h.study_uid for h in on_day}
    assert all(isinstance(h, StudyHit) and h.study_date == first.StudyDate for h in on_day)
    assert later == []


def test_retrieve_gives_back_the_stored_file_byte_for_byte(pacs: OrthancServer, cohort_files: list[Path]) -> None:
    # Prepare
    source = cohort_files[0]
    study_uid = str(pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID)

    with _client(pacs) as client:
        # Execute
        (instance,) = client.search_instances(study_uid)
        one = client.retrieve_instance(instance)
        whole = client.retrieve_study(study_uid)

    # Assert: the gate will hash what the modality sent
    assert hashlib.sha256(one).hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()
    assert whole == [one]


def test_an_instance_larger_than_the_answer_limit_is_refused(pacs: OrthancServer, cohort_files: list[Path]) -> None:
    # Prepare: a limit one byte below the instance's size
    source = cohort_files[0]
    study_uid = str(pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID)
    limit = source.stat().st_size - 1

    with _client(pacs) as client:
        (instance,) = client.search_instances(study_uid)
    auth = DicomwebAuth("basic", pacs.username, pacs.password)

    # Execute
    with DicomwebClient(pacs.dicomweb_url, auth=auth, max_response_bytes=limit) as client:
        with pytest.raises(PacsServerError) as caught:
            client.retrieve_instance(instance)

    # Assert
    assert f"limit of {limit} bytes" in str(caught.value) and instance.sop_instance_uid in str(caught.value)


def test_store_files_and_datasets_into_a_study(pacs: OrthancServer, cohort_files: list[Path]) -> None:
    # Prepare: a Secondary Capture-like object of the first study, built in memory
    source = pydicom.dcmread(cohort_files[0])
    extra = source.copy()
    extra.SOPInstanceUID = pydicom.uid.generate_uid()
    extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID
    extra.SeriesInstanceUID = pydicom.uid.generate_uid()

    # Execute
    with _client(pacs) as client:
        result = client.store([extra], study_uid=str(source.StudyInstanceUID))

    # Assert
    assert result.stored == (extra.SOPInstanceUID,) and result.failed == ()
    held = {i["MainDicomTags"]["SOPInstanceUID"] for i in pacs.study_instances(str(source.StudyInstanceUID))}  # type: ignore[index]
    assert extra.SOPInstanceUID in held


def test_store_refuses_an_object_of_another_study_and_sends_nothing(
    pacs: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare
    ds = pydicom.dcmread(cohort_files[1])

    # Execute / Assert
    with _client(pacs) as client, pytest.raises(BadInputError, match="not 1.2.3"):
        client.store([ds], study_uid="1.2.3")


def test_wrong_password_is_refused_at_once_naming_the_endpoint(pacs: OrthancServer) -> None:
    # Prepare
    sleeps: list[float] = []

    # Execute
    with _client(pacs, password="wrong", sleeps=sleeps) as client, pytest.raises(PacsAuthError) as caught:
        client.check()

    # Assert: a refusal is not retried, and the secret is nowhere in the message
    assert pacs.dicomweb_url in str(caught.value) and caught.value.status == 401
    assert "wrong" not in str(caught.value)
    assert sleeps == []


def test_a_stopped_server_is_retried_a_bounded_number_of_times() -> None:
    # Prepare: a server that ran, then stopped
    server = start_orthanc()
    server.stop()
    sleeps: list[float] = []

    # Execute
    with _client(server, sleeps=sleeps) as client, pytest.raises(PacsUnreachableError) as caught:
        list(client.search_studies(StudyQuery()))

    # Assert: three tries, two pauses growing exponentially, the endpoint named
    assert caught.value.attempts == 3
    assert sleeps == [0.5, 1.0]
    assert server.dicomweb_url in str(caught.value)


def test_retry_pauses_grow_and_stay_bounded() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=4.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    with pytest.raises(BadInputError):
        RetryPolicy(max_attempts=0)


def test_query_filters() -> None:
    query = StudyQuery(date_from=date(2024, 5, 1), modality="DX", accession_number="A1", patient_id="P9")
    assert query.filters() == {
        "StudyDate": "20240501-",
        "ModalitiesInStudy": "DX",
        "AccessionNumber": "A1",
        "PatientID": "P9",
    }
    assert StudyQuery(date_to=date(2024, 5, 2)).filters() == {"StudyDate": "-20240502"}
    assert StudyQuery().filters() == {}


def test_the_secret_stays_out_of_repr() -> None:
    assert "hunter2" not in repr(DicomwebAuth("bearer", secret="hunter2"))


def test_a_non_dicom_file_is_refused_before_sending(tmp_path: Path, orthanc: OrthancServer) -> None:
    # Prepare
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")

    # Execute / Assert
    with _client(orthanc) as client, pytest.raises(BadInputError, match="junk.dcm"):
        client.store([junk], study_uid="1.2.3")
