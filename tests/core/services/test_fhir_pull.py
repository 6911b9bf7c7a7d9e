"""Resumable pulls from a real loopback FHIR server into a real store, with the sample cohort's SYNTHETIC outcomes."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.errors import BadInputError, FhirServerError
from core.fhir.client import FhirClient, RetryPolicy
from core.sampledata import MANIFEST_NAME, read_manifest
from core.sampledata.fhir_outcomes import build_outcomes
from core.services.fhir_ingest import ingest_payload
from core.services.fhir_pull import PULL_ORDER, PullReport, pull
from core.services.store import open_store
from core.store import emr
from core.store.engine import SessionFactory
from tests.core.fhir.fhir_server import FhirTestServer, serve, server_resources, stamp

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data"
SECRET = b"pull-test-key-0123456789abcdefgh"
PAGE = 4


def clock() -> datetime:
    return datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def recorded() -> list[dict[str, Any]]:
    """The SYNTHETIC outcomes of 16 deployment-site studies of the committed sample cohort, as a server holds them."""
    rows = [r for r in read_manifest(SAMPLE / MANIFEST_NAME) if not r.is_benchmark][:16]
    made = build_outcomes(rows, seed=3)
    return server_resources(list(made.bundles.values()))


@pytest.fixture
def sf(tmp_path: Path) -> SessionFactory:
    home = tmp_path / "home"
    return open_store(Settings(home=home, database_url=f"sqlite:///{tmp_path / 'vigil.db'}"))


@dataclass
class Puller:
    sf: SessionFactory
    server: FhirTestServer

    def __call__(
        self, *, attempts: int = 3, since: str | None = None, types: tuple[str, ...] = PULL_ORDER
    ) -> PullReport:
        client = FhirClient(self.server.url, retry=RetryPolicy(max_attempts=attempts), sleep=lambda _s: None)
        with client:
            return pull(
                self.sf,
                client,
                resource_types=types,
                since=since,
                secret=SECRET,
                actor="t",
                now=clock,
                page_size=PAGE,
            )


@pytest.fixture
def puller(sf: SessionFactory, recorded: list[dict[str, Any]]) -> Iterator[Puller]:
    with serve(recorded) as server:
        yield Puller(sf, server)


def _evidence_keys(sf: SessionFactory) -> list[tuple[str, str]]:
    with sf.begin() as session:
        return [(r.evidence.ref, r.evidence.version) for r in emr.list_evidence(session)]


def _marks(sf: SessionFactory, server: str) -> dict[str, str | None]:
    with sf.begin() as session:
        return {t: emr.get_pull_mark(session, server, t) for t in PULL_ORDER}


def _latest(resources: list[dict[str, Any]], resource_type: str) -> str:
    stamps = [r["meta"]["lastUpdated"] for r in resources if r["resourceType"] == resource_type]
    return max(stamps, key=lambda s: datetime.fromisoformat(s))


def _reference_ingest(tmp_path: Path, resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The same resources ingested in one collection Bundle into a fresh store: what a pull must end with."""
    sf = open_store(Settings(home=tmp_path / "ref", database_url=f"sqlite:///{tmp_path / 'ref.db'}"))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    ingest_payload(sf, json.dumps(bundle).encode(), name="reference", secret=SECRET, actor="t", now=clock)
    return _evidence_keys(sf)


def test_a_pull_reads_every_type_page_by_page_and_stores_what_one_ingest_would(
    puller: Puller, recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    report = puller()
    counts = Counter(r["resourceType"] for r in recorded)
    by_type = {t.resource_type: t for t in report.types}
    assert [t.resource_type for t in report.types] == list(PULL_ORDER)
    for resource_type, n in counts.items():
        assert by_type[resource_type].pages == -(-n // PAGE), resource_type
        assert by_type[resource_type].resources == n
        assert by_type[resource_type].rejected == 0
    assert report.rejected == 0 and report.resources == len(recorded)
    assert by_type["DiagnosticReport"].included > 0  # the reports' patients came along
    stored = _evidence_keys(puller.sf)
    assert len(stored) == len(set(stored)) > 0
    assert sorted(stored) == sorted(_reference_ingest(tmp_path, recorded))
    assert report.marks == {t: (_latest(recorded, t) if counts[t] else None) for t in PULL_ORDER}
    assert _marks(puller.sf, puller.server.url) == report.marks
    # Patients came along with each page (_include), so evidence carries its patient's pseudonym.
    with puller.sf.begin() as session:
        assert all(r.evidence.patient for r in emr.list_evidence(session))
    assert json.loads(json.dumps(report.to_dict()))["marks"] == report.marks


def test_an_interrupted_pull_resumes_from_its_marks_and_stores_nothing_twice(
    puller: Puller, recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    # The server drops the connection on page 2 of the reports on every try of the first run.
    puller.server.inject("DiagnosticReport", 2, "drop", "drop")
    with pytest.raises(FhirServerError, match="DiagnosticReport"):
        puller(attempts=2)
    marks = _marks(puller.sf, puller.server.url)
    assert marks["Patient"] == _latest(recorded, "Patient")  # finished types are marked complete
    assert marks["Condition"] is None  # not reached
    report_mark = marks["DiagnosticReport"]
    assert report_mark is not None and report_mark < _latest(recorded, "DiagnosticReport")
    first = _evidence_keys(puller.sf)
    requests_before = len(puller.server.log)

    report = puller()
    resumed = puller.server.log[requests_before:]
    # Patients, studies and procedures were complete: one (empty) search each, nothing ingested.
    for t in ("Patient", "ImagingStudy", "Procedure"):
        assert [r.status for r in resumed if r.resource_type == t] == [200]
        assert next(x for x in report.types if x.resource_type == t).pages == 0
    assert [r.query["_lastUpdated"] for r in resumed if r.resource_type == "DiagnosticReport"][0] == [
        f"gt{report_mark}"
    ]
    stored = _evidence_keys(puller.sf)
    assert len(stored) == len(set(stored))
    assert set(first) < set(stored)
    assert sorted(stored) == sorted(_reference_ingest(tmp_path, recorded))
    # Only what shared the last committed page's greatest instant was read again.
    assert sum(t.already_stored for t in report.types) <= 2

    again = puller()
    assert again.pages == 0 and again.resources == 0
    assert _evidence_keys(puller.sf) == stored


def _conditions(n: int, when: list[datetime]) -> list[dict[str, Any]]:
    """``n`` SYNTHETIC patients, each with one coded Condition (Nodule of lung) updated at ``when[i]``."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append(
            stamp(
                {
                    "resourceType": "Patient",
                    "id": f"pt-{i}",
                    "identifier": [
                        {
                            "type": {
                                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                            },
                            "system": "https://vigil.example/mrn",
                            "value": f"SYN{i:04d}",
                        }
                    ],
                    "gender": "female",
                },
                when[0] - timedelta(days=1),
            )
        )
        out.append(
            stamp(
                {
                    "resourceType": "Condition",
                    "id": f"cond-{i}",
                    "clinicalStatus": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                        ]
                    },
                    "verificationStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                "code": "confirmed",
                            }
                        ]
                    },
                    "code": {
                        "coding": [
                            {"system": "http://snomed.info/sct", "code": "786838002", "display": "Nodule of lung"}
                        ]
                    },
                    "subject": {"reference": f"Patient/pt-{i}"},
                    "recordedDate": when[i].date().isoformat(),
                },
                when[i],
            )
        )
    return out


@pytest.mark.parametrize("sort", [True, False], ids=["sorted", "server-ignores-sort"])
def test_resources_sharing_an_instant_across_a_page_break_are_not_skipped_on_resume(
    sf: SessionFactory, sort: bool
) -> None:
    t = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    # Pages of 4: the instant t+1 spans pages 0 and 1, t+2 spans pages 1 and 2.
    when = [t] * 2 + [t + timedelta(seconds=1)] * 4 + [t + timedelta(seconds=2)] * 4
    if not sort:
        random.Random(5).shuffle(when)
    resources = _conditions(len(when), when)
    with serve(resources) as server:
        server.honour_sort = sort
        server.inject("Condition", 2, "drop")
        puller = Puller(sf, server)
        with pytest.raises(FhirServerError):
            puller(attempts=1, types=("Patient", "Condition"))
        mark = _marks(sf, server.url)["Condition"]
        if sort:
            assert mark == stamp({}, t + timedelta(seconds=1))["meta"]["lastUpdated"]
        else:
            assert mark is None  # unordered pages bound nothing until the search ends
        puller(types=("Patient", "Condition"))
    stored = _evidence_keys(sf)
    assert len(stored) == len(set(stored)) == len(when)


def test_a_crash_between_a_page_commit_and_its_mark_reads_the_page_again_harmlessly(
    sf: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.services.fhir_pull as fhir_pull

    t = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    resources = _conditions(10, [t + timedelta(seconds=i) for i in range(10)])
    real_save = fhir_pull._save_mark

    def crash(sf_: SessionFactory, server: str, resource_type: str, *args: Any) -> None:
        if resource_type == "Condition":
            raise KeyboardInterrupt  # the process dies after page 0 of the conditions committed
        real_save(sf_, server, resource_type, *args)

    with serve(resources) as server:
        puller = Puller(sf, server)
        monkeypatch.setattr(fhir_pull, "_save_mark", crash)
        with pytest.raises(KeyboardInterrupt):
            puller(types=("Patient", "Condition"))
        assert len(_evidence_keys(sf)) == PAGE and _marks(sf, server.url)["Condition"] is None
        monkeypatch.setattr(fhir_pull, "_save_mark", real_save)
        report = puller(types=("Patient", "Condition"))
    condition = report.types[1]
    assert (condition.already_stored, condition.evidence) == (PAGE, 10 - PAGE)
    stored = _evidence_keys(sf)
    assert len(stored) == len(set(stored)) == 10


def test_since_overrides_the_stored_mark_but_never_moves_it_back(
    puller: Puller, recorded: list[dict[str, Any]]
) -> None:
    puller(types=("Patient", "Condition"))
    latest = _latest(recorded, "Condition")
    report = puller(since="2000-01-01T00:00:00Z", types=("Condition",))
    (condition,) = report.types
    assert condition.start_mark == "2000-01-01T00:00:00Z"
    assert condition.evidence == 0 and condition.already_stored > 0  # read again, nothing new
    assert _marks(puller.sf, puller.server.url)["Condition"] == latest


def test_bad_types_and_marks_are_refused_before_any_request(puller: Puller) -> None:
    with pytest.raises(BadInputError, match="'Encounter'"):
        puller(types=("Patient", "Encounter"))
    with pytest.raises(BadInputError, match="'last week'"):
        puller(since="last week")
    assert puller.server.log == []


# --- `vigil fhir pull`, end to end -----------------------------------------------------------------


@pytest.fixture
def vigil_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    return Settings(home=tmp_path / "cli-home", database_url=f"sqlite:///{tmp_path / 'cli.db'}")


def _vigil(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, str]:
    from core.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_vigil_fhir_pull_with_an_expiring_token(
    vigil_env: Settings, recorded: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("token-one\n", encoding="ascii")

    def refresh() -> str:
        token_file.write_text("token-two\n", encoding="ascii")
        return "token-two"

    with serve(recorded, token="token-one") as server:
        server.expire_token_after(3, refresh)
        code, data, err = _vigil(capsys, "fhir", "pull", "--url", server.url, "--token-file", str(token_file), "--json")
        assert code == 0, err
        assert data is not None
        assert data["rejected"] == 0 and data["evidence"] > 0
        assert data["marks"]["DiagnosticReport"] == _latest(recorded, "DiagnosticReport")
        assert 401 in [r.status for r in server.log]  # the token did expire on the way

        code, data, err = _vigil(capsys, "fhir", "pull", "--url", server.url, "--token-file", str(token_file), "--json")
        assert code == 0, err
        assert data is not None and data["pages"] == 0 and data["evidence"] == 0

        token_file.write_text("revoked", encoding="ascii")  # a token the server never issued
        code, data, err = _vigil(capsys, "fhir", "pull", "--url", server.url, "--token-file", str(token_file))
    assert code == 2 and data is None
    assert "bearer token was refused" in err and "revoked" not in err and "token-two" not in err
    with open_store(vigil_env).begin() as session:
        assert len(emr.list_evidence(session)) == len(_reference_ingest(tmp_path, recorded))


def test_vigil_fhir_pull_refuses_a_non_http_url(vigil_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, data, err = _vigil(capsys, "fhir", "pull", "--url", "ftp://emr.example.org/fhir", "--json")
    assert code == 2 and data is None
    assert "'ftp://emr.example.org/fhir'" in err and len(err.strip().splitlines()) == 1
