"""Evidence export over a real SQLite ledger, checked by the standalone verifier on a Python without Vigil.

The verifier (``core/audit/verify_evidence.py``) is an independent re-implementation of Vigil's
hashing; these tests show the two agree on exports Vigil makes, and that each kind of tampering
with a package fails naming what was changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, update

from core.audit import verify_evidence
from core.audit.checkpoint import Checkpoint, key_id, sign
from core.audit.events import AuditAction
from core.errors import UnusablePathError
from core.services.audit_checkpoints import CheckpointPlaces, make_checkpoint, public_key, verify_checkpoints
from core.services.audit_export import export_evidence
from core.store import audit_log, explain_reports, model_versions
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.tables import AuditEntryRow
from tests.core.audit.bare_python import make_bare_python, run_bare
from tests.core.audit.insider import drop_audit_guards

START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
VERSION = "demo-1.0"
CARD = {"version": VERSION, "weights": {"path": "w.pt", "sha256": "ab" * 32}, "labels": ["nodule"], "note": "Ä ü 结节"}


def _clock() -> datetime:
    return START + timedelta(days=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'vigil.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sf(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def places(tmp_path: Path) -> CheckpointPlaces:
    return CheckpointPlaces(
        key_file=tmp_path / "secrets" / "audit-signing.key", external_file=tmp_path / "worm" / "cp.jsonl"
    )


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bare_python(tmp_path_factory.mktemp("bare"))


def _append(sf: SessionFactory, action: AuditAction, subject: str, payload: dict[str, object], minute: int) -> None:
    with sf.begin() as session:
        audit_log.append(
            session,
            actor="Dr. Müller <script>",
            action=action,
            subject=subject,
            payload=payload,  # type: ignore[arg-type]
            recorded_at=(START + timedelta(minutes=minute)).isoformat(),
        )


def _seed(sf: SessionFactory, places: CheckpointPlaces) -> None:
    """A ledger with every kind of record the package carries, one checkpoint, and entries after it."""
    _append(sf, AuditAction.SITE_ADDED, "north", {"is_benchmark": True, "x": 0.1, "tiny": 1e-300, "neg": -0.0}, 0)
    with sf.begin() as session:
        mv = model_versions.register(session, version=VERSION, card=CARD, weights_sha256="ab" * 32, now=START)
        audit_log.append(
            session,
            actor="system",
            action=AuditAction.MODEL_REGISTERED,
            subject=VERSION,
            payload={"weights_sha256": "ab" * 32, "serving": True, "parent_version": None},
            recorded_at=START.isoformat(),
        )
        rec = explain_reports.add_report(
            session,
            model_version_id=mv.id,
            report={"methods": [{"name": "gradcam", "auc": 0.75}]},
            created_by="t",
            now=START,
        )
        audit_log.append(
            session,
            actor="t",
            action=AuditAction.EXPLAIN_REPORT_CREATED,
            subject=VERSION,
            payload={"report_id": rec.id, "report_sha256": rec.report_sha256},
            recorded_at=START.isoformat(),
        )
    make_checkpoint(sf, places, now=_clock)
    _append(sf, AuditAction.VALIDATION_REPORTED, VERSION, {"passed": False, "gaps": {"south": 0.125}, "big": 2**70}, 5)
    _append(sf, AuditAction.SITE_ADDED, "süd 🏥", {"list": [1, 2.5, "é", None, True]}, 6)


def _export(sf: SessionFactory, places: CheckpointPlaces, out: Path) -> Path:
    summary = export_evidence(sf, places, out, actor="auditor", now=_clock)
    assert summary.ok, summary.package_report
    return out


def _verify_bare(python: Path, package: Path, *extra: str) -> tuple[int, str]:
    proc = run_bare(python, str(package / "verify_evidence.py"), *extra, cwd=package.parent)
    return proc.returncode, proc.stdout + proc.stderr


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _rewrite_manifest(package: Path) -> None:
    """What an insider who edits a file does next: recompute the (unsigned) manifest."""
    names = sorted(
        p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256"
    )
    lines = [f"{hashlib.sha256((package / n).read_bytes()).hexdigest()}  {n}\n" for n in names]
    (package / "MANIFEST.sha256").write_text("".join(lines))


# --- what is exported --------------------------------------------------------------------------------


def test_export_holds_the_whole_ledger_and_its_own_entry(
    sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path
) -> None:
    # Prepare
    _seed(sf, places)

    # Execute
    summary = export_evidence(sf, places, tmp_path / "evidence", actor="auditor", now=_clock)

    # Assert
    out = tmp_path / "evidence"
    entries = [json.loads(line) for line in _lines(out / "entries.jsonl")]
    checkpoints = [json.loads(line) for line in _lines(out / "checkpoints.jsonl")]
    with sf() as session:
        stored = list(audit_log.iter_entries(session))
    assert summary.ok and summary.verified and summary.package_verified
    assert [e["entry_hash"] for e in entries] == [e.entry_hash for e in stored]  # exactly as stored
    assert entries[-1]["action"] == "audit_exported" and entries[-1]["seq"] == summary.export_seq
    assert entries[-1]["payload"]["files"] == {
        f"model-cards/{VERSION}.json": hashlib.sha256((out / f"model-cards/{VERSION}.json").read_bytes()).hexdigest(),
        "reports/explanations/demo-1.0-report-1.json": hashlib.sha256(
            (out / "reports/explanations/demo-1.0-report-1.json").read_bytes()
        ).hexdigest(),
    }
    assert [c["tree_size"] for c in checkpoints] == [3, len(entries)]  # the newest covers the export's entry
    assert json.loads((out / f"model-cards/{VERSION}.json").read_text()) == CARD
    assert json.loads((out / "reports/validation/seq-3.json").read_text())["gaps"] == {"south": 0.125}
    assert (out / "public-key.hex").read_text().strip() == public_key(places).hex()
    assert (out / "verify_evidence.py").read_bytes() == Path(verify_evidence.__file__).read_bytes()
    assert (
        set(summary.files) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        and "MANIFEST.sha256" in summary.files
    )
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # the staging folder was renamed
    assert verify_checkpoints(sf, places).ok  # the installation's own verify agrees


def test_summary_html_is_escaped_and_says_what_is_missing(
    sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path
) -> None:
    # Prepare
    _seed(sf, places)

    # Execute
    out = _export(sf, places, tmp_path / "evidence")

    # Assert
    html = (out / "summary.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "Dr. Müller &lt;script&gt;" in html
    assert "PASSED" in html and "change control plans" in html and VERSION in html
    assert "<td>site_added</td><td>2</td>" in html
    assert "python verify_evidence.py --public-key key.hex" in (out / "README.txt").read_text()


# --- the standalone verifier, on a Python without Vigil ----------------------------------------------


def test_bare_python_cannot_import_vigil(bare_python: Path, tmp_path: Path) -> None:
    # Execute
    proc = run_bare(bare_python, "-c", "import core", cwd=tmp_path)
    crypto = run_bare(bare_python, "-c", "import cryptography.hazmat.primitives.asymmetric.ed25519", cwd=tmp_path)

    # Assert
    assert proc.returncode != 0 and "No module named 'core'" in proc.stderr
    assert crypto.returncode == 0, crypto.stderr


def test_standalone_verifier_accepts_an_export(
    sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path, bare_python: Path
) -> None:
    # Prepare
    _seed(sf, places)
    out = _export(sf, places, tmp_path / "evidence")
    key = tmp_path / "key.hex"
    key.write_text(public_key(places).hex() + "\n")

    # Execute
    code, report = _verify_bare(bare_python, out, "--public-key", str(key))
    default_code, default_report = _verify_bare(bare_python, out)

    # Assert
    assert code == 0, report
    assert "VERIFIED" in report and "6 entries" in report and "2 signed checkpoint(s)" in report
    assert default_code == 0 and "pass the key you obtained" in default_report


def _edit_entry_byte(out: Path) -> None:
    lines = _lines(out / "entries.jsonl")
    lines[2] = lines[2].replace('"t"', '"u"', 1)  # the actor of seq 2, one byte
    (out / "entries.jsonl").write_text("\n".join(lines) + "\n")


def _drop_tail(out: Path) -> None:
    (out / "entries.jsonl").write_text("\n".join(_lines(out / "entries.jsonl")[:-1]) + "\n")


def _append_forged_entry(out: Path) -> None:
    last = json.loads(_lines(out / "entries.jsonl")[-1])
    forged = {**last, "seq": last["seq"] + 1, "action": "site_added", "payload": {}, "prev_hash": last["entry_hash"]}
    forged["entry_hash"] = verify_evidence.entry_hash(forged)
    with (out / "entries.jsonl").open("a") as handle:
        handle.write(json.dumps(forged) + "\n")


def _edit_checkpoint(out: Path) -> None:
    text = (out / "checkpoints.jsonl").read_text()
    (out / "checkpoints.jsonl").write_text(text.replace("2024-05-02T09:30:00+00:00", "2024-05-02T09:31:00+00:00", 1))


def _edit_card(out: Path) -> None:
    card = out / f"model-cards/{VERSION}.json"
    card.write_text(card.read_text().replace('"nodule"', '"mass"'))


def _edit_summary(out: Path) -> None:
    page = out / "summary.html"
    page.write_text(page.read_text().replace("PASSED", "PASSED!"))


@pytest.mark.parametrize(
    ("tamper", "rewrite_manifest", "needles"),
    [
        (_edit_entry_byte, False, ("entries.jsonl line 3 (seq 2)", "entry_hash does not match")),
        (_drop_tail, True, ("tree size 6", "tail truncated")),
        (_append_forged_entry, True, ("entries seq 6 to 6", "not covered by any signed checkpoint")),
        (_edit_checkpoint, True, ("checkpoints.jsonl line 1 (tree size 3)", "signature does not match")),
        (_edit_card, False, (f"model-cards/{VERSION}.json", "SHA-256 differs")),
        (_edit_card, True, (f"model-cards/{VERSION}.json", "export's ledger entry (seq 5)")),
        (_edit_summary, False, ("summary.html", "MANIFEST.sha256")),
    ],
    ids=["entry-byte", "tail-line", "forged-tail", "checkpoint", "card", "card-and-manifest", "summary"],
)
def test_standalone_verifier_names_what_was_tampered_with(
    sf: SessionFactory,
    places: CheckpointPlaces,
    tmp_path: Path,
    bare_python: Path,
    tamper: object,
    rewrite_manifest: bool,
    needles: tuple[str, ...],
) -> None:
    # Prepare
    _seed(sf, places)
    out = _export(sf, places, tmp_path / "evidence")
    tamper(out)  # type: ignore[operator]
    if rewrite_manifest:
        _rewrite_manifest(out)

    # Execute
    code, report = _verify_bare(bare_python, out)

    # Assert
    assert code == 1, report
    failed = report.splitlines()[-1]
    assert failed.startswith("FAILED: ") and all(n in failed for n in needles), report


def test_standalone_verifier_refuses_a_swapped_public_key(
    sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path, bare_python: Path
) -> None:
    # Prepare: an insider re-signs every checkpoint with their own key and ships that key
    _seed(sf, places)
    out = _export(sf, places, tmp_path / "evidence")
    trusted = tmp_path / "key.hex"
    trusted.write_text(public_key(places).hex())
    forger = Ed25519PrivateKey.generate()
    forged_key = forger.public_key().public_bytes_raw()
    resigned = []
    for line in _lines(out / "checkpoints.jsonl"):
        cp = json.loads(line)
        checkpoint = Checkpoint(cp["tree_size"], cp["root_hash"], cp["timestamp"], key_id(forged_key))
        resigned.append(json.dumps(sign(checkpoint, forger).to_dict()))
    (out / "checkpoints.jsonl").write_text("\n".join(resigned) + "\n")
    (out / "public-key.hex").write_text(forged_key.hex() + "\n")
    _rewrite_manifest(out)

    # Execute
    code, report = _verify_bare(bare_python, out, "--public-key", str(trusted))
    naive_code, _ = _verify_bare(bare_python, out)

    # Assert
    assert code == 1 and "FAILED: public-key.hex" in report and "not the key you trust" in report
    assert naive_code == 0  # why the reviewer must bring their own key


# --- a broken ledger, and bad folders ----------------------------------------------------------------


def test_a_broken_ledger_is_exported_marked_failed_and_not_signed(
    engine: Engine, sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path, bare_python: Path
) -> None:
    # Prepare: an insider edits entry 1 without re-hashing
    _seed(sf, places)
    drop_audit_guards(engine)
    with sf.begin() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 1).values(subject="demo-9.9"))
    external_before = places.external_file.read_text()

    # Execute
    summary = export_evidence(sf, places, tmp_path / "evidence", actor="auditor", now=_clock)
    code, report = _verify_bare(bare_python, tmp_path / "evidence")

    # Assert
    out = tmp_path / "evidence"
    assert not summary.ok and not summary.verified and not summary.package_verified
    assert "seq 1" in str(summary.reason)
    assert places.external_file.read_text() == external_before  # no checkpoint signed over it
    assert "FAILED: audit chain broken at seq 1" in (out / "summary.html").read_text()
    assert json.loads((out / "export.json").read_text())["verified_at_export"] is False
    assert code == 1 and "FAILED: entries.jsonl line 2 (seq 1)" in report


def test_refuses_a_non_empty_folder_or_a_file_before_writing_anything(
    sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path
) -> None:
    # Prepare
    _seed(sf, places)
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.txt").write_text("x")
    afile = tmp_path / "afile"
    afile.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "empty", target_is_directory=True)
    with sf() as session:
        before = audit_log.count_entries(session)

    # Execute / Assert
    for bad, needle in ((full, "not empty"), (afile, "not a folder"), (link, "symbolic link")):
        with pytest.raises(UnusablePathError, match=str(bad)) as info:
            export_evidence(sf, places, bad, actor="auditor", now=_clock)
        assert needle in str(info.value)
    with sf() as session:
        assert audit_log.count_entries(session) == before
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name) == []


def test_an_empty_existing_folder_is_used(sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path) -> None:
    # Prepare
    _seed(sf, places)
    (tmp_path / "empty").mkdir()

    # Execute
    summary = export_evidence(sf, places, tmp_path / "empty", actor="auditor", now=_clock)

    # Assert
    assert summary.ok and (tmp_path / "empty" / "MANIFEST.sha256").is_file()


def test_two_exports_each_verify(sf: SessionFactory, places: CheckpointPlaces, tmp_path: Path) -> None:
    # Prepare
    _seed(sf, places)
    first = _export(sf, places, tmp_path / "one")

    # Execute
    second = export_evidence(sf, places, tmp_path / "two", actor="auditor", now=_clock)

    # Assert
    report: list[str] = []
    assert verify_evidence.verify(first, None, report), report
    assert second.ok and second.export_seq == json.loads((first / "export.json").read_text())["export_seq"] + 1
    assert second.checkpoints == 3
