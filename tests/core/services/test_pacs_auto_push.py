"""Auto-push after a reader's verdict, against a real Orthanc: sent after the commit, never failing the verdict.

Also the ``auto_push`` key of a ``[pacs.SITE]`` table: off by default, a clear error for a bad value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest

from core.audit.events import AuditAction
from core.config import PacsEndpoint, Settings, load_settings
from core.errors import PacsConfigError
from core.imaging.dicomweb import DicomwebClient, StudyQuery
from core.sampledata import generate_cohort
from core.services import auth, feedback, pacs, pacs_auto_push, review
from core.services.feedback import FeedbackForm, FeedbackRecord, Finding
from core.services.pacs_auto_push import AutoPush, PushOutcome
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from tests.child_server import free_port
from tests.core.services.conftest import Env
from tests.pacs_server import OrthancServer, orthanc

__all__ = ["orthanc"]

SITE = "benchmark"
SECRET_ENV = "PACS_PASSWORD"
READER = SignedInUser("reader", Role.RADIOLOGIST)
Hook = Callable[[FeedbackRecord], AutoPush]


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, seed=11, studies_per_site={"benchmark": 2})
    return sorted((out / "dicom" / "benchmark").glob("*.dcm"))


@pytest.fixture
def pulled(env: Env, orthanc: OrthancServer, cohort_files: list[Path]) -> OrthancServer:
    """The site's studies pulled from Orthanc and scored, and a reader's account."""
    orthanc.clear()
    orthanc.upload(cohort_files)
    predictor = pacs.make_predictor(env.sf, models_dir=env.models_dir, batch_size=4, actor="t", now=env.now)
    with pacs.client_for(_endpoint(orthanc), orthanc.password) as client:
        pacs.pull_site(
            env.sf,
            client,
            site=SITE,
            query=StudyQuery(),
            home=env.settings.home,
            actor="t",
            now=env.now,
            predict=predictor,
        )
    auth.add_user(env.sf, READER.username, "radiologist", "a long enough password", actor="t", now=env.now)
    return orthanc


def _endpoint(server: OrthancServer, **changes: object) -> PacsEndpoint:
    base = PacsEndpoint(SITE, server.dicomweb_url, "basic", server.username, SECRET_ENV, timeout_s=5, max_attempts=2)
    return replace(base, **changes)  # type: ignore[arg-type]


def _hook(env: Env, endpoint: PacsEndpoint, secrets: dict[str, str]) -> Hook:
    """What the case review page passes as ``after_commit``: the PACS auto-push, its secret from ``secrets``."""

    def clients(e: PacsEndpoint) -> DicomwebClient:
        return pacs.client_for(e, e.secret(secrets), sleep=lambda _s: None)

    settings = replace(env.settings, pacs=(endpoint,))
    return lambda record: pacs_auto_push.push_after_verdict(
        env.sf, settings, record.study_uid, clients=clients, actor=READER.username, now=env.now
    )


def _form(env: Env, study_uid: str, key: str | None = None) -> FeedbackForm:
    info = review.open_case(env.sf, READER, study_uid)
    assert info.prediction is not None
    return FeedbackForm(
        study_uid=study_uid,
        prediction_id=info.prediction.prediction_id,
        agrees=True,
        finding=Finding.ABSENT,
        confidence=4,
        explanation=None,
        comment="",
        time_on_case_s=12.0,
        idempotency_key=key or feedback.new_idempotency_key(),
    )


def _study(files: list[Path], n: int = 0) -> str:
    return str(pydicom.dcmread(files[n], stop_before_pixels=True).StudyInstanceUID)


def _actions(env: Env) -> list[str]:
    with env.sf() as session:
        return [str(e.action) for e in audit_log.iter_entries(session)]


def test_a_verdict_sends_the_result_and_gradcam_to_the_pacs_after_it_committed(
    env: Env, pulled: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare
    study_uid = _study(cohort_files)
    hook = _hook(env, _endpoint(pulled, auto_push=True), {SECRET_ENV: pulled.password})
    held_before = len(pulled.study_instances(study_uid))

    # Execute
    saved, pushed = review.record_verdict(env.sf, READER, _form(env, study_uid), now=env.now, after_commit=hook)

    # Assert: the SR, the Secondary Capture and the Segmentation are under the study in Orthanc,
    # and the ledger holds the verdict before the push
    assert saved.created and pushed is not None
    assert (pushed.outcome, pushed.site, len(pushed.stored)) == (PushOutcome.PUSHED, SITE, 3)
    held = {str(i["MainDicomTags"]["SOPInstanceUID"]) for i in pulled.study_instances(study_uid)}  # type: ignore[index]
    assert set(pushed.stored) <= held and len(held) == held_before + 3
    actions = _actions(env)
    assert actions.index(AuditAction.FEEDBACK_RECORDED) < actions.index(AuditAction.PACS_PUSHED)
    assert "sent to the PACS of benchmark" in pushed.message()


def test_auto_push_is_off_unless_the_site_turns_it_on(
    env: Env, pulled: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: the site's PACS configured without auto_push
    study_uid = _study(cohort_files)
    hook = _hook(env, _endpoint(pulled), {SECRET_ENV: pulled.password})

    # Execute
    _, pushed = review.record_verdict(env.sf, READER, _form(env, study_uid), now=env.now, after_commit=hook)

    # Assert: nothing sent, nothing audited about a push
    assert pushed is not None and pushed.outcome is PushOutcome.OFF and pushed.message() == ""
    assert len(pulled.study_instances(study_uid)) == 1
    assert AuditAction.PACS_PUSHED not in _actions(env)


def test_an_unreachable_pacs_fails_the_push_not_the_verdict(
    env: Env, pulled: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: the site's PACS is down (nothing listens on its port)
    study_uid = _study(cohort_files)
    down = _endpoint(pulled, url=f"http://127.0.0.1:{free_port()}/dicom-web", auto_push=True)

    # Execute
    saved, pushed = review.record_verdict(
        env.sf, READER, _form(env, study_uid), now=env.now, after_commit=_hook(env, down, {SECRET_ENV: "x"})
    )

    # Assert: the verdict is stored; the failure is returned, audited, and open for a retry
    assert saved.created and feedback.feedback_history(env.sf, READER, study_uid)[-1].id == saved.record.id
    assert pushed is not None and pushed.outcome is PushOutcome.FAILED
    assert "unreachable" in pushed.error and f"vigil pacs push {study_uid}" in pushed.message()
    with env.sf() as session:
        (entry,) = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.PACS_PUSH_FAILED]
    assert entry.subject == study_uid and entry.actor == READER.username and entry.payload["site"] == SITE
    (failure,) = pacs_auto_push.open_failures(env.sf, replace(env.settings, pacs=(down,)))
    assert (failure.study_uid, failure.site) == (study_uid, SITE) and "unreachable" in failure.error


def test_a_failed_push_is_retried_by_the_next_verdict_and_a_pushed_study_is_not_sent_twice(
    env: Env, pulled: OrthancServer, cohort_files: list[Path]
) -> None:
    # Prepare: the first verdict's push is refused (wrong password)
    study_uid = _study(cohort_files, 1)
    endpoint = _endpoint(pulled, auto_push=True)
    secrets = {SECRET_ENV: "wrong-password"}
    hook = _hook(env, endpoint, secrets)
    _, first = review.record_verdict(env.sf, READER, _form(env, study_uid), now=env.now, after_commit=hook)
    settings = replace(env.settings, pacs=(endpoint,))
    open_before = pacs_auto_push.open_failures(env.sf, settings)

    # Execute: the password fixed, a correction and then a repeated submission of it
    secrets[SECRET_ENV] = pulled.password
    previous = feedback.feedback_history(env.sf, READER, study_uid)[-1]
    correction = replace(_form(env, study_uid), supersedes_id=previous.id)
    _, second = review.record_verdict(env.sf, READER, correction, now=env.now, after_commit=hook)
    _, repeated = review.record_verdict(env.sf, READER, correction, now=env.now, after_commit=hook)
    another = SignedInUser("reader2", Role.RADIOLOGIST)
    auth.add_user(env.sf, another.username, "radiologist", "a long enough password", actor="t", now=env.now)
    _, third = review.record_verdict(env.sf, another, _form(env, study_uid), now=env.now, after_commit=hook)

    # Assert
    assert first is not None and first.outcome is PushOutcome.FAILED and "credentials refused" in first.error
    assert "wrong-password" not in first.error
    assert [f.study_uid for f in open_before] == [study_uid]
    assert second is not None and second.outcome is PushOutcome.PUSHED
    assert repeated is None  # the same form again: no second verdict, no second push
    assert third is not None and third.outcome is PushOutcome.ALREADY
    assert len(pulled.study_instances(study_uid)) == 1 + 3
    assert pacs_auto_push.open_failures(env.sf, settings) == ()


def test_a_refused_verdict_runs_no_push(env: Env, pulled: OrthancServer, cohort_files: list[Path]) -> None:
    # Prepare: a form naming a prediction that is not the study's
    calls: list[FeedbackRecord] = []
    bad = replace(_form(env, _study(cohort_files)), prediction_id=999_999)

    # Execute
    with pytest.raises(Exception, match="prediction"):
        review.record_verdict(env.sf, READER, bad, now=env.now, after_commit=calls.append)

    # Assert
    assert calls == []


# --- the auto_push setting ----------------------------------------------------------------------


def _load(tmp_path: Path, extra: str) -> Settings:
    (tmp_path / "v.toml").write_text(
        f'[pacs.{SITE}]\nurl = "https://pacs.example.org/dicom-web"\n{extra}', encoding="utf-8"
    )
    return load_settings({"VIGIL_CONFIG": str(tmp_path / "v.toml")}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("extra", "expected"), [("", False), ("auto_push = true\n", True), ("auto_push = false\n", False)]
)
def test_auto_push_is_read_from_the_site_table_and_off_by_default(tmp_path: Path, extra: str, expected: bool) -> None:
    assert _load(tmp_path, extra).pacs_endpoint(SITE).auto_push is expected


@pytest.mark.parametrize("value", ['"yes"', "1", '"true"'])
def test_a_bad_auto_push_value_is_refused_naming_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(PacsConfigError, match=f"auto_push must be a bool, got {value.replace(chr(34), chr(39))}"):
        _load(tmp_path, f"auto_push = {value}\n")


@pytest.mark.parametrize(
    ("deid", "refused"),
    [
        ("[deid]\ndeidentify_at_ingest = true\n", True),
        (f"[deid.sites.{SITE}]\ndeidentify_at_ingest = true\n", True),
        ("[deid]\ndeidentify_at_ingest = true\n" + f"[deid.sites.{SITE}]\ndeidentify_at_ingest = false\n", False),
        ("[deid.sites.elsewhere]\ndeidentify_at_ingest = true\n", False),
    ],
)
def test_auto_push_at_a_site_that_deidentifies_is_refused_when_the_file_is_read(
    tmp_path: Path, deid: str, refused: bool
) -> None:
    # A push there could never be filed into the PACS's study (keyed UIDs): a mistake named at load.
    extra = f"auto_push = true\n{deid}"
    if refused:
        with pytest.raises(PacsConfigError, match=rf"'{SITE}'.*auto_push = true, but the site de-identifies"):
            _load(tmp_path, extra)
    else:
        assert _load(tmp_path, extra).pacs_endpoint(SITE).auto_push is True
