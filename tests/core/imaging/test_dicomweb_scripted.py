"""The DICOMweb client against a scripted loopback server: paging, malformed results, bounded answers, stop, secrets."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterable

import pytest

from core.errors import BadInputError, PacsServerError, PacsUnreachableError
from core.imaging.dicomweb import (
    DicomwebAuth,
    DicomwebClient,
    RetryPolicy,
    StudyHit,
    StudyQuery,
    UnreadableStudy,
    read_study,
)
from tests.pacs_server import Answer, ScriptedDicomweb, json_answer, qido_pages, study_item

#: Seven studies: more than one page at every page size the tests use.
STUDIES = [study_item(f"1.2.826.0.1.{n}") for n in range(7)]
UIDS = [f"1.2.826.0.1.{n}" for n in range(7)]


def _uids(client: DicomwebClient, *, page_size: int) -> list[str]:
    return [hit.study_uid for hit in client.search_studies(StudyQuery(), page_size=page_size)]


def test_a_server_that_caps_its_pages_below_the_limit_is_paged_to_the_end() -> None:
    # Prepare: the server answers at most 3 results whatever the limit (QidoRsMaxResults-style)
    with ScriptedDicomweb(qido_pages(STUDIES, cap=3)) as server, DicomwebClient(server.url) as client:
        # Execute
        found = _uids(client, page_size=5)

        # Assert: every study, once; the walk ended on an empty page
        offsets = [int(query["offset"]) for _, _, query in server.requests]
    assert found == UIDS
    assert offsets == [0, 3, 6, 7]


def test_a_server_that_ignores_offset_ends_the_search_with_an_error_naming_the_endpoint() -> None:
    # Prepare: every page is the first one
    with (
        ScriptedDicomweb(qido_pages(STUDIES, cap=3, ignore_offset=True)) as server,
        DicomwebClient(server.url) as client,
    ):
        # Execute
        with pytest.raises(PacsServerError) as caught:
            _uids(client, page_size=5)

    # Assert: stopped at the first repeated page, not looping, not silently short
    assert server.url in str(caught.value) and "offset" in str(caught.value)
    assert len(server.requests) == 2


def test_a_search_past_the_result_cap_is_an_error() -> None:
    with ScriptedDicomweb(qido_pages(STUDIES)) as server, DicomwebClient(server.url) as client:
        with pytest.raises(PacsServerError, match="more than 4 results"):
            list(client.search_studies(StudyQuery(), page_size=2, max_results=4))


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        (study_item("1.2.3", count="²"), "'²'"),  # int() of it raises ValueError: it crashed the pull
        (study_item("1.2.3", count="3x"), "'3x'"),
        (study_item("1.2.3", count=-1), "'-1'"),
        (study_item("1.2.3", count="9" * 5000), "NumberOfStudyRelatedInstances"),
        (study_item("1.2.abc"), "'1.2.abc'"),
        (study_item("../../etc"), "'../../etc'"),
        ({"00201208": {"vr": "IS", "Value": [1]}}, "StudyInstanceUID ''"),
        (study_item("1.2.3", day="20241345"), "'20241345'"),
        (study_item("1.2.3", day="2024-01-05"), "'2024-01-05'"),
    ],
)
def test_an_unreadable_search_result_names_the_bad_value(item: dict[str, object], needle: str) -> None:
    # Execute
    hit = read_study(item)

    # Assert
    assert isinstance(hit, UnreadableStudy)
    assert needle in hit.reason


@pytest.mark.parametrize(("count", "expected"), [(4, 4), ("4", 4), (" 12 ", 12), (0, 0), (None, None)])
def test_a_readable_instance_count(count: object, expected: int | None) -> None:
    hit = read_study(study_item("1.2.3", count=count))
    assert isinstance(hit, StudyHit) and hit.n_instances == expected
    assert hit.counted == (expected is not None and expected > 0)  # 0 or none proves nothing complete


def test_unreadable_results_come_back_beside_the_good_ones() -> None:
    # Prepare
    items = [study_item("1.2.3", count="²"), *STUDIES[:2]]

    # Execute
    with ScriptedDicomweb(qido_pages(items)) as server, DicomwebClient(server.url) as client:
        hits = list(client.search_studies(StudyQuery(), page_size=10))

    # Assert
    assert [type(h).__name__ for h in hits] == ["UnreadableStudy", "StudyHit", "StudyHit"]


def _padding(total: int) -> Iterable[bytes]:
    yield b"["
    for _ in range(total // 65536):
        yield b" " * 65536
    yield b"]"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_an_answer_past_the_size_limit_is_refused(declared: bool) -> None:
    # Prepare: an 8 MiB answer, with or without saying so up front
    size = 8 * 1024 * 1024

    def script(*_request: object) -> Answer:
        headers = {"Content-Type": "application/dicom+json"}
        if declared:
            headers["Content-Length"] = str(size + 2)
        return 200, headers, _padding(size)

    # Execute
    with ScriptedDicomweb(script) as server, DicomwebClient(server.url, max_response_bytes=1024 * 1024) as client:
        with pytest.raises(PacsServerError) as caught:
            list(client.search_studies(StudyQuery()))

    # Assert
    assert f"limit of {1024 * 1024} bytes" in str(caught.value) and server.url in str(caught.value)


def test_a_stop_ends_the_retry_pause_at_once() -> None:
    # Prepare: a server that keeps answering 503, and a stop (Ctrl-C) arriving during the first request
    stop = threading.Event()

    def script(*_request: object) -> Answer:
        stop.set()
        return json_answer({"error": "busy"}, status=503)

    retry = RetryPolicy(max_attempts=5, base_delay_s=30.0, max_delay_s=30.0)

    # Execute
    started = time.monotonic()
    with ScriptedDicomweb(script) as server, DicomwebClient(server.url, retry=retry, stop=stop) as client:
        with pytest.raises(PacsUnreachableError, match="stopped") as caught:
            client.check()

    # Assert: no 30 s pause, no second try
    assert time.monotonic() - started < 5.0
    assert caught.value.attempts == 1 and len(server.requests) == 1


def test_an_error_body_that_echoes_the_credentials_is_scrubbed() -> None:
    # Prepare: a server that quotes the Authorization header in its error
    def script(_method: str, _path: str, _query: dict[str, str], headers: dict[str, str]) -> Answer:
        return 400, {"Content-Type": "text/plain"}, [f"bad request, Authorization: {headers['Authorization']}".encode()]

    with ScriptedDicomweb(script) as server:
        for auth in (DicomwebAuth("basic", "vigil", "hunter2-basic"), DicomwebAuth("bearer", secret="hunter2-token")):
            # Execute
            with DicomwebClient(server.url, auth=auth) as client, pytest.raises(PacsServerError) as caught:
                client.check()

            # Assert
            message = str(caught.value)
            encoded = base64.b64encode(f"{auth.username}:{auth.secret}".encode()).decode()
            assert "Authorization" in message and auth.secret not in message and encoded not in message


@pytest.mark.parametrize(
    ("kind", "secret"),
    [("bearer", "tok\nen-hunter2"), ("bearer", "tok\ren-hunter2"), ("bearer", "hunter2-☃"), ("basic", "hunter2-☃")],
)
def test_a_secret_http_cannot_carry_is_refused_without_showing_it(kind: str, secret: str) -> None:
    # Execute: requests would quote the whole header, token included, in its error
    with pytest.raises(BadInputError) as caught:
        DicomwebClient("http://127.0.0.1:1/dicom-web", auth=DicomwebAuth(kind, "u", secret)).check()

    # Assert
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "auth", "allowed"),
    [
        ("http://pacs.example.org/dicom-web", DicomwebAuth("basic", "u", "hunter2"), False),
        ("http://10.0.0.5:8042/dicom-web", DicomwebAuth("bearer", secret="t"), False),
        ("http://pacs.example.org/dicom-web", DicomwebAuth(), True),
        ("https://pacs.example.org/dicom-web", DicomwebAuth("basic", "u", "hunter2"), True),
        ("http://127.0.0.1:8042/dicom-web", DicomwebAuth("basic", "u", "hunter2"), True),
        ("http://localhost:8042/dicom-web", DicomwebAuth("basic", "u", "hunter2"), True),
        ("http://[::1]:8042/dicom-web", DicomwebAuth("basic", "u", "hunter2"), True),
    ],
)
def test_credentials_over_plain_http_to_another_host_are_refused(url: str, auth: DicomwebAuth, allowed: bool) -> None:
    if allowed:
        DicomwebClient(url, auth=auth).close()
    else:
        with pytest.raises(BadInputError, match="allow_insecure_http") as caught:
            DicomwebClient(url, auth=auth)
        assert url in str(caught.value) and "hunter2" not in str(caught.value)
        DicomwebClient(url, auth=auth, allow_insecure_http=True).close()  # the site's explicit choice
