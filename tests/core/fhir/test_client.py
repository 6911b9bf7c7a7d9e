"""The FHIR REST client against a real loopback FHIR server: paging, retries, tokens, and what it refuses."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import BadInputError, FhirAuthError, FhirServerError, FhirUrlError, OutOfRangeError, PathNotFoundError
from core.fhir.client import (
    FhirClient,
    RetryPolicy,
    TokenFile,
    backoff_delay,
    mask_url,
    search_params,
)
from tests.core.fhir.fhir_server import FhirTestServer, filler_resources, serve

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
N = 23


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with serve(filler_resources(N, start=T0)) as s:
        yield s


@pytest.fixture
def sleeps() -> list[float]:
    return []


def _client(url: str, sleeps: list[float], **kwargs: object) -> FhirClient:
    return FhirClient(url, sleep=sleeps.append, rng=random.Random(0), **kwargs)  # type: ignore[arg-type]


def _ids(pages: list[bytes]) -> list[str]:
    return [e["resource"]["id"] for p in pages for e in json.loads(p).get("entry", [])]


def _all_ids() -> list[str]:
    return [f"obs-{i:05d}" for i in range(N)]


# --- paging -------------------------------------------------------------------------------------


def test_search_follows_every_next_link(server: FhirTestServer, sleeps: list[float]) -> None:
    with _client(server.url, sleeps) as client:
        pages = list(client.search("Observation", search_params(sort="_lastUpdated", count=5)))
    assert len(pages) == 5  # 23 resources, 5 a page
    assert _ids(pages) == _all_ids()
    assert [r.page for r in server.log] == [0, 1, 2, 3, 4]
    assert all(r.status == 200 for r in server.log)
    assert sleeps == []


def test_last_updated_patient_and_date_searches_reach_the_server(server: FhirTestServer, sleeps: list[float]) -> None:
    mark = (T0 + timedelta(minutes=19)).isoformat().replace("+00:00", "Z")
    with _client(server.url, sleeps) as client:
        newer = list(client.search("Observation", search_params(last_updated_gt=mark, sort="_lastUpdated")))
        dated = list(client.search("Observation", search_params(date=("ge2026-03-01", "lt2026-03-02"))))
        none = list(client.search("Observation", search_params(patient="Patient/p-nobody")))
    assert _ids(newer) == ["obs-00020", "obs-00021", "obs-00022"]
    assert len(_ids(dated)) == N
    assert _ids(none) == []
    assert server.log[0].query["_lastUpdated"] == [f"gt{mark}"]
    assert server.log[1].query["date"] == ["ge2026-03-01", "lt2026-03-02"]


# --- retries ------------------------------------------------------------------------------------


def test_a_page_that_fails_once_is_retried_with_backoff(server: FhirTestServer, sleeps: list[float]) -> None:
    server.inject("Observation", 2, "503")
    with _client(server.url, sleeps) as client:
        pages = list(client.search("Observation", search_params(sort="_lastUpdated", count=5)))
    assert _ids(pages) == _all_ids()
    assert [(r.page, r.status) for r in server.log] == [(0, 200), (1, 200), (2, 503), (2, 200), (3, 200), (4, 200)]
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5  # first backoff: half fixed, half jitter of 0.5 s


def test_429_waits_at_least_retry_after_and_a_dropped_connection_is_retried(
    server: FhirTestServer, sleeps: list[float]
) -> None:
    server.inject("Observation", 0, "429")
    server.inject("Observation", 1, "drop", "500")
    with _client(server.url, sleeps) as client:
        pages = list(client.search("Observation", search_params(count=10)))
    assert _ids(pages) == _all_ids()
    assert sleeps[0] >= 2.0  # the server's Retry-After
    assert [(r.page, r.status) for r in server.log] == [(0, 429), (0, 200), (1, 0), (1, 500), (1, 200), (2, 200)]
    assert sleeps[1] < sleeps[2]  # exponential: the second wait of a request doubles the first's nominal


def test_retries_exhausted_is_a_server_error_naming_url_and_status(server: FhirTestServer, sleeps: list[float]) -> None:
    server.inject("Observation", 0, "503", "503", "503")
    with (
        _client(server.url, sleeps, retry=RetryPolicy(max_attempts=3)) as client,
        pytest.raises(FhirServerError) as info,
    ):
        list(client.search("Observation", search_params(count=5)))
    assert info.value.status == 503
    assert f"{server.url}/Observation" in str(info.value)
    assert len(server.log) == 3 and len(sleeps) == 2


def test_a_retry_after_beyond_the_limit_is_an_error_not_a_stall(server: FhirTestServer, sleeps: list[float]) -> None:
    server.inject("Observation", 0, "429")
    policy = RetryPolicy(max_retry_after=1.0)
    with _client(server.url, sleeps, retry=policy) as client, pytest.raises(FhirServerError, match="retry after 2 s"):
        list(client.search("Observation"))
    assert sleeps == []


# --- tokens -------------------------------------------------------------------------------------


def test_an_expired_token_is_read_again_from_the_file_and_the_request_retried(
    tmp_path: Path, sleeps: list[float]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n", encoding="ascii")

    def refresh() -> str:  # what a token refresher beside Vigil does when the old one expires
        token_file.write_text("second-token", encoding="ascii")
        return "second-token"

    with serve(filler_resources(N, start=T0), token="first-token") as server:
        server.expire_token_after(2, refresh)
        with _client(server.url, sleeps, token=TokenFile(token_file)) as client:
            pages = list(client.search("Observation", search_params(count=5)))
        log = server.log
    assert _ids(pages) == _all_ids()
    assert [(r.page, r.status) for r in log] == [(0, 200), (1, 200), (2, 401), (2, 200), (3, 200), (4, 200)]
    assert [r.authorization for r in log[2:4]] == ["Bearer first-token", "Bearer second-token"]
    assert sleeps == []  # a re-read token is not a backoff


def test_a_wrong_token_is_an_auth_error_that_does_not_show_it(tmp_path: Path, sleeps: list[float]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token", encoding="ascii")
    with serve(filler_resources(3, start=T0), token="right-token") as server:
        with _client(server.url, sleeps, token=TokenFile(token_file)) as client, pytest.raises(FhirAuthError) as info:
            list(client.search("Observation"))
        assert [r.status for r in server.log] == [401, 401]  # read again once, then refused
        assert server.url in str(info.value)
    assert "not-the-token" not in str(info.value)
    assert info.value.status == 401


def test_no_token_where_one_is_needed_is_an_auth_error(sleeps: list[float]) -> None:
    with serve(filler_resources(3, start=T0), token="right-token") as server:
        with _client(server.url, sleeps) as client, pytest.raises(FhirAuthError, match="needs a bearer token"):
            list(client.search("Observation"))
        assert len(server.log) == 1


def test_token_file_problems_name_the_file_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(PathNotFoundError):
        TokenFile(tmp_path / "absent")()
    bad = tmp_path / "bad"
    bad.write_text("two words secret", encoding="ascii")
    with pytest.raises(BadInputError) as info:
        TokenFile(bad)()
    assert str(bad) in str(info.value) and "secret" not in str(info.value)


# --- what the client refuses -------------------------------------------------------------------


def test_a_next_link_to_another_host_is_refused(server: FhirTestServer, sleeps: list[float]) -> None:
    server.inject("Observation", 0, "foreign-next")
    pages: list[bytes] = []
    with _client(server.url, sleeps) as client, pytest.raises(FhirUrlError, match="evil.example.org"):
        for page in client.search("Observation", search_params(count=5)):
            pages.append(page)
    assert len(pages) == 1 and len(server.log) == 1


def test_a_next_link_back_to_a_page_already_read_stops_the_search(server: FhirTestServer, sleeps: list[float]) -> None:
    server.inject("Observation", 1, "loop-next")
    with _client(server.url, sleeps) as client, pytest.raises(FhirServerError, match="paging loop"):
        list(client.search("Observation", search_params(count=5)))
    # Page 0 again under a new URL (with an explicit offset) is read once; its next link then repeats.
    assert [r.page for r in server.log] == [0, 1, 0]


def test_a_non_json_content_type_is_refused(server: FhirTestServer, sleeps: list[float]) -> None:
    server.inject("Observation", 0, "html")
    with _client(server.url, sleeps) as client, pytest.raises(FhirServerError, match="'text/html' is not FHIR JSON"):
        list(client.search("Observation"))


def test_a_response_over_the_size_cap_is_refused(server: FhirTestServer, sleeps: list[float]) -> None:
    with _client(server.url, sleeps, max_bytes=1000) as client, pytest.raises(FhirServerError, match="1000-byte cap"):
        list(client.search("Observation", search_params(count=20)))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://emr.example.org/fhir", "'ftp' is not http or https"),
        ("file:///etc/passwd", "'file' is not http or https"),
        ("emr.example.org/fhir", "'(none)' is not http or https"),
        ("http:///fhir", "no host"),
        ("https://emr.example.org/fhir?x=1", "no query"),
        ("https://emr.example.org:99999/fhir", "port"),
    ],
)
def test_base_urls_other_than_http_s_are_refused_naming_the_value(url: str, why: str) -> None:
    with pytest.raises(FhirUrlError) as info:
        FhirClient(url)
    assert why in str(info.value)


def test_credentials_in_the_url_are_refused_without_echoing_the_password() -> None:
    with pytest.raises(FhirUrlError, match="credentials") as info:
        FhirClient("https://alice:hunter2@emr.example.org/fhir")
    assert "hunter2" not in str(info.value)


def test_search_values_are_checked() -> None:
    with pytest.raises(BadInputError, match="'yesterday'"):
        search_params(last_updated_gt="yesterday")
    with pytest.raises(BadInputError, match="'2026/01/01'"):
        search_params(date=("2026/01/01",))
    with pytest.raises(OutOfRangeError):
        search_params(count=0)
    with pytest.raises(BadInputError, match="'Observation;drop'"):
        FhirClient("http://127.0.0.1:9/fhir").search("Observation;drop").__next__()


# --- pure helpers -------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(1)
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        waits = [backoff_delay(attempt, policy, rng) for _ in range(200)]
        assert all(nominal / 2 <= w <= nominal for w in waits)
        assert max(waits) - min(waits) > nominal / 4  # jitter is real


def test_patient_values_are_masked_in_urls() -> None:
    masked = mask_url("https://emr/fhir/Observation?patient=Patient/MRN123&_count=5&subject:Patient=x")
    assert "MRN123" not in masked and "patient=***" in masked and "_count=5" in masked
    assert "subject:Patient=***" in masked
