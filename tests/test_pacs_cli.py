"""``vigil pacs`` against a real Orthanc: pull, kill -9 and resume, watch and SIGTERM, push, bad input."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from core.audit.events import AuditAction
from core.config import PACS_URL_MAX_CHARS, Settings, load_settings
from core.errors import ConfigError, PacsConfigError
from core.sampledata import generate_cohort
from core.services import models, sites
from core.services.store import open_store, utc_now
from core.store import audit_log, explanations, pacs_seen, predictions, studies
from core.store.engine import SessionFactory
from tests.cli_home import run_json
from tests.factories import write_random_model
from tests.pacs_server import OrthancServer, orthanc

__all__ = ["orthanc"]

SITE = "benchmark"
SECRET_ENV = "VIGIL_TEST_PACS_PASSWORD"
VIGIL = str(Path(sys.executable).parent / "vigil")


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=9, studies_per_site={"benchmark": 12})
    return sorted((out / "dicom" / "benchmark").glob("*.dcm"))


@dataclass(frozen=True)
class Home:
    """A Vigil installation whose benchmark site's PACS is the test Orthanc."""

    root: Path
    env: dict[str, str]
    sf: SessionFactory

    def sop_uids(self) -> list[str]:
        with self.sf() as session:
            return [
                i.sop_instance_uid
                for s in studies.list_studies(session)
                for i in studies.list_instances(session, s.study_uid)
            ]

    def seen(self) -> int:
        with self.sf() as session:
            return len(pacs_seen.list_seen(session))


@pytest.fixture
def home(
    tmp_path: Path, orthanc: OrthancServer, cohort_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Home]:
    orthanc.clear()
    orthanc.upload(cohort_files)
    config = tmp_path / "vigil.toml"
    config.write_text(
        f"""[pacs.{SITE}]
url = "{orthanc.dicomweb_url}"
auth = "basic"
username = "{orthanc.username}"
password_env = "{SECRET_ENV}"
max_attempts = 2
""",
        encoding="utf-8",
    )
    env = {
        "VIGIL_HOME": str(tmp_path / "home"),
        "VIGIL_DATABASE_URL": f"sqlite:///{tmp_path / 'vigil.db'}",
        "VIGIL_CONFIG": str(config),
        SECRET_ENV: orthanc.password,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(home=tmp_path / "home", database_url=env["VIGIL_DATABASE_URL"])
    sf = open_store(settings)
    card = write_random_model(tmp_path / "model")
    models.register_model(
        sf, card, source_dir=tmp_path / "model", models_dir=settings.home / "models", actor="t", now=utc_now
    )
    sites.add_site(sf, SITE, benchmark=True, actor="t", now=utc_now)
    yield Home(tmp_path, env, sf)


def _study_uids(files: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in files}


def _vigil(home: Home, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [VIGIL, *argv],
        env={**os.environ, **home.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _maps_per_score(home: Home) -> set[int]:
    """How many stored Grad-CAM maps each scored prediction has (a study outside the intended use has none)."""
    with home.sf() as session:
        scored = [p for p in predictions.list_predictions(session) if p.score is not None]
        return {len(explanations.list_explanations(session, p.id)) for p in scored}


def test_pull_stores_every_study_once_predicts_and_a_second_pull_fetches_nothing(
    home: Home, capsys: pytest.CaptureFixture[str], cohort_files: list[Path]
) -> None:
    # Execute
    code, first, _ = run_json(capsys, "pacs", "pull", "--since", "1900-01-01", "--site", SITE)
    code2, second, _ = run_json(capsys, "pacs", "pull", "--since", "1900-01-01", "--site", SITE)

    # Assert
    n_studies, n_instances = len(_study_uids(cohort_files)), len(cohort_files)
    assert code == code2 == 0
    assert (first["stored"], first["retrieved"], first["rejected"]) == (n_instances, n_instances, 0)
    assert first["sites"][0]["predicted"] == n_studies  # type: ignore[index]
    assert (second["stored"], second["retrieved"]) == (0, 0)
    assert second["sites"][0]["studies_complete"] == n_studies  # type: ignore[index]
    assert sorted(home.sop_uids()) == sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in cohort_files)
    with home.sf() as session:
        assert predictions.count_predictions(session) == n_studies
    assert _maps_per_score(home) == {1}  # each pulled study opens with its Grad-CAM map made


def test_a_pull_killed_midway_resumes_with_nothing_duplicated_and_nothing_missing(
    home: Home, cohort_files: list[Path]
) -> None:
    # Prepare: a pull that predicts on arrival (slow enough to be caught midway)
    n_studies, n_instances = len(_study_uids(cohort_files)), len(cohort_files)
    pull = _vigil(home, "pacs", "pull", "--since", "1900-01-01", "--site", SITE, "--json")
    deadline = time.monotonic() + 120
    while home.seen() < 2 and pull.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)

    # Execute: kill -9, then run again
    pull.send_signal(signal.SIGKILL)
    pull.wait()
    at_kill = len(home.sop_uids())
    rerun = _vigil(home, "pacs", "pull", "--since", "1900-01-01", "--site", SITE, "--json")
    out, err = rerun.communicate(timeout=300)

    # Assert: the kill came midway; afterwards every instance is stored, audited and scored exactly once
    assert pull.returncode == -signal.SIGKILL and 2 <= at_kill < n_instances, at_kill
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["stored"] + report["sites"][0]["duplicates"] >= n_instances - at_kill
    uids = home.sop_uids()
    assert len(uids) == len(set(uids)) == n_instances
    with home.sf() as session:
        ingested = Counter(
            e.payload["sop_instance_uid"]
            for e in audit_log.iter_entries(session)
            if e.action == AuditAction.STUDY_INGESTED
        )
        assert predictions.count_predictions(session) == n_studies
    assert set(ingested.values()) == {1} and len(ingested) == n_instances
    assert _maps_per_score(home) == {1}
    assert home.seen() == n_instances


def test_watch_polls_until_sigterm_and_stops_cleanly(home: Home, cohort_files: list[Path]) -> None:
    # Prepare
    n_instances = len(cohort_files)
    watch = _vigil(home, "pacs", "watch", "--interval", "1", "--since", "1900-01-01", "--no-predict", "--json")
    deadline = time.monotonic() + 120
    while home.seen() < n_instances and watch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # at least one more (empty) poll

    # Execute
    watch.send_signal(signal.SIGTERM)
    out, err = watch.communicate(timeout=60)

    # Assert
    assert watch.returncode == 0, err
    totals = json.loads(out)
    assert totals["cycles"] >= 2 and totals["stored"] == n_instances and totals["failures"] == 0
    assert len(home.sop_uids()) == n_instances


def test_wrong_credentials_exit_2_naming_the_endpoint(
    home: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, orthanc: OrthancServer
) -> None:
    # Prepare
    monkeypatch.setenv(SECRET_ENV, "not-the-password")

    # Execute
    code, data, err = run_json(capsys, "pacs", "pull", "--since", "1900-01-01", "--site", SITE)

    # Assert
    assert code == 2 and data == {}
    assert err.count(orthanc.dicomweb_url) == 1 and "401" in err and "not-the-password" not in err  # said once
    assert home.sop_uids() == []


def test_a_token_no_http_header_can_carry_exits_2_without_showing_it(
    home: Home,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    orthanc: OrthancServer,
) -> None:
    # Prepare: a bearer token read from a file with its line break kept
    config = tmp_path / "bearer.toml"
    table = f'[pacs.{SITE}]\nurl = "{orthanc.dicomweb_url}"\nauth = "bearer"\ntoken_env = "{SECRET_ENV}"\n'
    config.write_text(table, encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    monkeypatch.setenv(SECRET_ENV, "hunter2-token\n")

    # Execute
    code, _, err = run_json(capsys, "pacs", "pull", "--since", "1900-01-01", "--site", SITE)

    # Assert
    assert code == 2 and SECRET_ENV in err and SITE in err and "hunter2" not in err


def test_credentials_over_plain_http_to_another_host_exit_2_naming_the_site_and_url(
    home: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: a remote PACS over http with a password (a reserved address: never asked)
    url = "http://192.0.2.10:8042/dicom-web"
    config = tmp_path / "remote.toml"
    table = f'[pacs.{SITE}]\nurl = "{url}"\nauth = "basic"\nusername = "u"\npassword_env = "{SECRET_ENV}"\n'
    config.write_text(table, encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))

    # Execute
    code, _, err = run_json(capsys, "pacs", "pull", "--since", "1900-01-01", "--site", SITE)
    config.write_text(table + "allow_insecure_http = true\nmax_attempts = 1\ntimeout_s = 0.2\n", encoding="utf-8")
    code_allowed, _, err_allowed = run_json(capsys, "pacs", "pull", "--since", "1900-01-01", "--site", SITE)

    # Assert: refused before any request; allowed when the site says so (then unreachable here)
    assert code == 2 and repr(SITE) in err and url in err and "allow_insecure_http" in err
    assert code_allowed == 2 and "unreachable" in err_allowed


def test_a_missing_secret_exits_2_naming_the_variable(
    home: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    code, _, err = run_json(capsys, "pacs", "pull", "--since", "1900-01-01")
    assert code == 2 and SECRET_ENV in err


def test_check_reports_each_site(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    code, data, _ = run_json(capsys, "pacs", "check")
    assert code == 0 and [row["ok"] for row in data["sites"]] == [True]  # type: ignore[union-attr]


def test_push_sends_the_result_report_and_the_gradcam_objects_under_the_study(
    home: Home, capsys: pytest.CaptureFixture[str], orthanc: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare
    run_json(capsys, "pacs", "pull", "--since", "1900-01-01", "--site", SITE)
    study_uid = str(pydicom.dcmread(cohort_files[3], stop_before_pixels=True).StudyInstanceUID)

    # Execute
    code, data, err = run_json(capsys, "pacs", "push", study_uid)

    # Assert
    assert code == 0, err
    assert len(data["stored"]) == 3 and data["failed"] == [] and data["site"] == SITE  # type: ignore[arg-type]
    instances = orthanc.study_instances(study_uid)
    held = {str(i["MainDicomTags"]["SOPInstanceUID"]): str(i["ID"]) for i in instances}  # type: ignore[index]
    assert set(data["stored"]) <= set(held)  # type: ignore[arg-type]
    pushed = [pydicom.dcmread(io.BytesIO(orthanc.instance_file(held[uid]))) for uid in data["stored"]]  # type: ignore[union-attr]
    reports = [d for d in pushed if d.Modality == "SR"]
    assert len(reports) == 1 and reports[0].StudyInstanceUID == study_uid
    assert not list((home.root / "home").glob("pacs-outbox-*"))


def test_push_of_an_unknown_study_exits_2(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_json(capsys, "pacs", "push", "1.2.3.999")
    assert code == 2 and "1.2.3.999" in err


# --- configuration ------------------------------------------------------------------------------


def test_allow_insecure_http_is_read_per_site(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        '[pacs.north]\nurl = "http://10.0.0.5/dw"\nallow_insecure_http = true\n[pacs.south]\nurl = "https://x"\n',
    )
    assert settings.pacs_endpoint("north").allow_insecure_http is True
    assert settings.pacs_endpoint("south").allow_insecure_http is False


def _settings(tmp_path: Path, table: str) -> Settings:
    (tmp_path / "v.toml").write_text(table, encoding="utf-8")
    return load_settings({"VIGIL_CONFIG": str(tmp_path / "v.toml"), "VIGIL_HOME": str(tmp_path)})


def test_pacs_tables_are_read_per_site(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        '[pacs.north]\nurl = "https://pacs.north.example/dicom-web/"\nauth = "bearer"\ntoken_env = "NORTH_TOKEN"\n'
        'timeout_s = 10\n[pacs.south]\nurl = "http://10.0.0.5:8042/dicom-web"\n',
    )
    north = settings.pacs_endpoint("north")
    assert (north.url, north.auth, north.secret_env, north.timeout_s) == (
        "https://pacs.north.example/dicom-web",
        "bearer",
        "NORTH_TOKEN",
        10.0,
    )
    assert north.secret({"NORTH_TOKEN": "t0k"}) == "t0k"
    assert settings.pacs_endpoint("south").secret({}) == ""
    with pytest.raises(PacsConfigError, match="NORTH_TOKEN"):
        north.secret({})
    with pytest.raises(PacsConfigError, match="east"):
        settings.pacs_endpoint("east")


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('[pacs.n]\nurl = "ftp://x"\n', "ftp://x"),
        ('[pacs.n]\nurl = "https://user:pw@x/dw"\n', "credentials"),
        ('[pacs.n]\nurl = "https://x"\nauth = "kerberos"\n', "kerberos"),
        ('[pacs.n]\nurl = "https://x"\nauth = "basic"\nusername = "u"\n', "password_env"),
        ('[pacs.n]\nurl = "https://x"\npassword = "secret"\n', "password"),
        ('[pacs.n]\nurl = "https://x"\nmax_attempts = 0\n', "max_attempts"),
        ('[pacs.n]\nurl = "https://x"\ntimeout_s = "slow"\n', "timeout_s"),
        ('[pacs.n]\nurl = "https://x"\nallow_insecure_http = "yes"\n', "allow_insecure_http"),
        (f'[pacs.n]\nurl = "https://x/{"d" * PACS_URL_MAX_CHARS}"\n', f"more than {PACS_URL_MAX_CHARS}"),
    ],
)
def test_bad_pacs_tables_are_refused_naming_the_value(tmp_path: Path, table: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _settings(tmp_path, table)
