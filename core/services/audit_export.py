"""Evidence export (``vigil audit export``): the ledger, its signed checkpoints and the records they vouch for.

One folder a reviewer can take away and check on a machine without Vigil:

- ``entries.jsonl``: every audit entry as stored, one canonical-JSON object per line;
- ``checkpoints.jsonl``: the signed checkpoints, in the external file's form;
- ``public-key.hex``: the installation's checkpoint-signing public key (a reviewer should compare
  it with the key they hold);
- ``model-cards/<version>.json``: every registered model card, byte for byte as stored;
- ``reports/explanations/``: every stored faithfulness and sanity report, byte for byte;
  ``reports/validation/seq-<n>.json``: each pilot-validation verdict (the payload of its
  ``validation_reported`` entry, the only form in which Vigil keeps it);
- ``export.json``, ``summary.html``, ``README.txt``, ``verify_evidence.py`` (the standalone
  verifier, :mod:`core.audit.verify_evidence` copied verbatim) and ``MANIFEST.sha256``.

Order, so that the package is self-consistent: the ledger is verified as it stands; the export's
own ``audit_exported`` entry is appended, recording the SHA-256 of every model card and
explanation report (read under the ledger's head lock, in the same transaction); a checkpoint is
signed over the ledger including that entry; then exactly the entries that checkpoint covers are
written. So the newest exported checkpoint covers every exported entry, the export covers its own
entry, and the cards and reports are vouched for by a signature, not only by the (unsigned)
manifest. Everything is written into a hidden sibling folder and renamed to ``out_dir`` at the
end, so a failed export leaves no half-written package (its ledger entry remains, as the record
of the attempt).

A ledger that fails verification is still exported, marked FAILED in ``summary.html``,
``README.txt`` and ``export.json``, and no checkpoint is signed over it: a reviewer (21 CFR Part
11.10(b)) must get accurate and complete copies of the records, and a broken ledger is exactly
what they need to see; signing it would launder the tampering.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import IO, Final

from sqlalchemy.orm import Session

from core.audit import verify_evidence
from core.audit.chain import canonical_json, to_recorded_at
from core.audit.checkpoint import SignedCheckpoint, key_id
from core.audit.events import AuditAction, AuditEntry
from core.errors import AuditChainError, UnusablePathError
from core.services.audit_checkpoints import (
    CheckpointPlaces,
    make_checkpoint,
    public_key,
    read_external,
    verify_checkpoints,
)
from core.services.evidence_summary import ExportFacts, render_readme, render_summary
from core.store import audit_log, explain_reports, model_versions
from core.store import checkpoints as checkpoint_store
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = ["ExportSummary", "export_evidence"]

#: ``export.json``'s ``format``: changes when the package layout does.
FORMAT: Final = "vigil-evidence/1"
#: What the package says about predetermined change control plans, which Vigil does not record yet.
NO_CHANGE_CONTROL: Final = (
    "none: this version of Vigil does not record predetermined change control plans; "
    "the package holds no change-control documents"
)
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What :func:`export_evidence` wrote.

    Attributes
    ----------
    out_dir : Path
        The package folder.
    export_id : str
        Random id the export's ``audit_exported`` entry and ``export.json`` share.
    export_seq : int
        ``seq`` of that entry.
    entries, checkpoints : int
        Entries and signed checkpoints in the package.
    checkpoint : dict or None
        The newest exported checkpoint (external-file form), None when there is none.
    verified : bool
        The ledger verified at export time (chain and checkpoints) and a checkpoint covers it all.
    reason : str or None
        Why not, when not ``verified``.
    package_verified : bool
        The standalone verifier, run on the package before it was published, passed.
    package_report : tuple of str
        Its report, line by line.
    files : tuple of str
        Every file of the package, relative to ``out_dir``.
    """

    out_dir: Path
    export_id: str
    export_seq: int
    entries: int
    checkpoints: int
    checkpoint: dict[str, int | str] | None
    verified: bool
    reason: str | None
    package_verified: bool
    package_report: tuple[str, ...]
    files: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """The ledger verified and so does the package."""
        return self.verified and self.package_verified

    def to_dict(self) -> dict[str, object]:
        """JSON form for ``vigil audit export --json``."""
        return {
            "ok": self.ok,
            "out_dir": str(self.out_dir),
            "export_id": self.export_id,
            "export_seq": self.export_seq,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "checkpoint": self.checkpoint,
            "verified": self.verified,
            "reason": self.reason,
            "package_verified": self.package_verified,
            "package_report": list(self.package_report),
            "files": list(self.files),
        }


@dataclass(frozen=True, slots=True)
class _Records:
    """Model cards and explanation reports, as the package will hold them (name -> bytes)."""

    cards: dict[str, bytes]
    explain: dict[str, bytes]
    versions: tuple[model_versions.ModelVersionRecord, ...]

    def hashes(self) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in {**self.cards, **self.explain}.items()}


@dataclass(slots=True)
class _Tally:
    """Counts gathered while the entries stream out."""

    entries: int = 0
    first_at: str | None = None
    last_at: str | None = None
    actions: Counter[str] = field(default_factory=Counter)
    actors: Counter[str] = field(default_factory=Counter)
    unreadable: str | None = None

    def add(self, entry: AuditEntry) -> None:
        self.entries += 1
        self.first_at = self.first_at or entry.recorded_at
        self.last_at = entry.recorded_at
        self.actions[str(entry.action)] += 1
        self.actors[entry.actor] += 1


def export_evidence(
    session_factory: SessionFactory,
    places: CheckpointPlaces,
    out_dir: Path,
    *,
    actor: str,
    now: Callable[[], datetime],
) -> ExportSummary:
    """Write the evidence package of the whole ledger into ``out_dir`` (new, or an empty folder).

    Parameters
    ----------
    session_factory : SessionFactory
        The store.
    places : CheckpointPlaces
        The signing key and external checkpoint file.
    out_dir : Path
        Where the package appears, complete, at the end.
    actor : str
        Who exports (recorded in the ``audit_exported`` entry).
    now : callable
        The clock.

    Returns
    -------
    ExportSummary
        ``verified`` False when the ledger failed verification: the package is written all the same.

    Raises
    ------
    UnusablePathError
        ``out_dir`` is a file, a link or a non-empty folder, or its parent cannot take a new folder;
        raised before anything is written.
    AuditKeyError
        The signing key file is unusable.
    """
    staging = _staging_dir(out_dir)
    try:
        summary = _export(session_factory, places, out_dir, staging, actor=actor, now=now)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _export(
    sf: SessionFactory,
    places: CheckpointPlaces,
    out_dir: Path,
    staging: Path,
    *,
    actor: str,
    now: Callable[[], datetime],
) -> ExportSummary:
    reason = _ledger_problem(sf, places)
    export_id = uuid.uuid4().hex
    records, export_seq = _record_export(sf, out_dir, export_id, reason, actor=actor, now=now)
    newest: SignedCheckpoint | None = None
    if reason is None:
        try:
            newest = make_checkpoint(sf, places, now=now).signed
        except AuditChainError as exc:  # changed between the check and the checkpoint
            reason = str(exc)
    limit = None if newest is None else newest.checkpoint.tree_size
    key = public_key(places)
    with sf() as session:
        tally = _write_entries(session, staging, limit)
        signed = _exported_checkpoints(session, places, limit)
    if reason is None and tally.unreadable is not None:
        reason = tally.unreadable
    facts = ExportFacts(
        export_id=export_id,
        export_seq=export_seq,
        created_at=to_recorded_at(now()),
        actor=actor,
        verified=reason is None,
        reason=reason,
        entries=tally.entries,
        first_at=tally.first_at,
        last_at=tally.last_at,
        actions=tuple(sorted(tally.actions.items())),
        actors=tuple(sorted(tally.actors.items())),
        checkpoints=tuple(s.to_dict() for s in signed),
        key_hex=key.hex(),
        key_id=key_id(key),
        models=tuple(_model_row(v) for v in records.versions),
        reports=tuple(sorted([*records.explain, *_validation_names(staging)])),
        change_control=NO_CHANGE_CONTROL,
    )
    _write_package(staging, records, signed, facts)
    report: list[str] = []
    package_ok = verify_evidence.verify(staging, None, report)
    return ExportSummary(
        out_dir=out_dir,
        export_id=export_id,
        export_seq=export_seq,
        entries=tally.entries,
        checkpoints=len(signed),
        checkpoint=signed[-1].to_dict() if signed else None,
        verified=reason is None,
        reason=reason,
        package_verified=package_ok,
        package_report=tuple(line.replace(str(staging), str(out_dir)) for line in report),
        files=tuple(_all_files(staging)),
    )


# --- the folder -----------------------------------------------------------------------------------


def _staging_dir(out_dir: Path) -> Path:
    """Refuse an unusable ``out_dir``; create the hidden sibling the package is written into."""
    if out_dir.is_symlink():
        raise UnusablePathError(out_dir, "it is a symbolic link; name the folder itself")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UnusablePathError(out_dir, "it is not a folder")
        if any(out_dir.iterdir()):
            raise UnusablePathError(out_dir, "the folder is not empty; an export goes only into a new or empty folder")
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as exc:
        raise UnusablePathError(out_dir, f"cannot create a folder beside it ({exc.strerror or exc})") from exc


def _publish(staging: Path, out_dir: Path) -> None:
    _fsync_dir(staging)
    try:
        # rename(2) replaces an empty folder atomically and refuses one that is no longer empty.
        os.rename(staging, out_dir)
    except OSError as exc:
        raise UnusablePathError(out_dir, f"cannot publish the export there ({exc.strerror or exc})") from exc
    _fsync_dir(out_dir.absolute().parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(staging: Path, name: str, data: bytes) -> None:
    path = staging / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _all_files(staging: Path) -> list[str]:
    return sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())


# --- the ledger -----------------------------------------------------------------------------------


def _ledger_problem(sf: SessionFactory, places: CheckpointPlaces) -> str | None:
    """None when the chain and every checkpoint verify; else one sentence naming the first failure."""
    with sf() as session:
        chain = audit_log.verify(session)
    if not chain.ok:
        return f"audit chain broken at seq {chain.first_bad_seq}: {chain.reason}"
    cps = verify_checkpoints(sf, places)
    if not cps.ok:
        return f"checkpoint {cps.failed_tree_size}: {cps.reason}"
    return None


def _record_export(
    sf: SessionFactory,
    out_dir: Path,
    export_id: str,
    problem: str | None,
    *,
    actor: str,
    now: Callable[[], datetime],
) -> tuple[_Records, int]:
    """Read the records and append the export's entry in one transaction, under the ledger's head lock."""
    with sf.begin() as session:
        # Held until commit: no model or report can be registered between the read and the entry.
        audit_log.lock_head(session)
        records = _read_records(session)
        payload: JSONObject = {
            "export_id": export_id,
            "out_dir": str(out_dir.absolute()),
            "format": FORMAT,
            "ledger_verified": problem is None,
            "problem": problem,
            "files": dict(records.hashes()),
        }
        entry = audit_log.append(
            session,
            actor=actor,
            action=AuditAction.AUDIT_EXPORTED,
            subject=export_id,
            payload=payload,
            recorded_at=to_recorded_at(now()),
        )
    return records, entry.seq


def _read_records(session: Session) -> _Records:
    versions = tuple(model_versions.list_versions(session))
    cards: dict[str, bytes] = {}
    explain: dict[str, bytes] = {}
    for v in versions:
        stem = v.version if _SAFE_NAME.fullmatch(v.version) else f"model-{v.id}"
        cards[f"model-cards/{stem}.json"] = v.card_json.encode("utf-8")
        for r in explain_reports.list_reports(session, v.id):
            explain[f"reports/explanations/{stem}-report-{r.id}.json"] = r.report_json.encode("utf-8")
    return _Records(cards, explain, versions)


def _entries(session: Session, limit: int | None, tally: _Tally) -> Iterator[AuditEntry]:
    try:
        for entry in audit_log.iter_entries(session):
            if limit is not None and entry.seq >= limit:
                return
            yield entry
    except ValueError as exc:  # a row whose payload no longer parses (edited outside Vigil)
        tally.unreadable = f"entry seq {tally.entries} cannot be read and is not exported: {exc}"


def _write_entries(session: Session, staging: Path, limit: int | None) -> _Tally:
    """Stream ``entries.jsonl`` (and each validation verdict) to disk; count as it goes."""
    tally = _Tally()
    with (staging / verify_evidence.ENTRIES).open("wb") as out:
        for entry in _entries(session, limit, tally):
            line = {
                "seq": entry.seq,
                "recorded_at": entry.recorded_at,
                "actor": entry.actor,
                "action": str(entry.action),
                "subject": entry.subject,
                "payload": dict(entry.payload),
                "prev_hash": entry.prev_hash,
                "entry_hash": entry.entry_hash,
            }
            out.write(canonical_json(line) + b"\n")
            tally.add(entry)
            if entry.action == AuditAction.VALIDATION_REPORTED:
                _write(staging, f"reports/validation/seq-{entry.seq}.json", canonical_json(dict(entry.payload)))
        out.flush()
        os.fsync(out.fileno())
    return tally


def _exported_checkpoints(session: Session, places: CheckpointPlaces, limit: int | None) -> list[SignedCheckpoint]:
    """The database's checkpoints up to ``limit`` entries; the external file's when those are unreadable."""
    try:
        found = checkpoint_store.list_all(session)
    except ValueError:
        try:
            found = read_external(places.external_file)
        except ValueError:
            found = []
    return [s for s in found if limit is None or s.checkpoint.tree_size <= limit]


def _validation_names(staging: Path) -> list[str]:
    folder = staging / "reports" / "validation"
    return [p.relative_to(staging).as_posix() for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _model_row(v: model_versions.ModelVersionRecord) -> tuple[str, str, str, bool]:
    return (v.version, v.created_at.isoformat(), v.weights_sha256, v.is_serving)


# --- the package ----------------------------------------------------------------------------------


def _write_package(staging: Path, records: _Records, signed: Sequence[SignedCheckpoint], facts: ExportFacts) -> None:
    _write(staging, verify_evidence.CHECKPOINTS, b"".join(canonical_json(s.to_dict()) + b"\n" for s in signed))
    _write(staging, verify_evidence.PUBLIC_KEY, (facts.key_hex + "\n").encode("ascii"))
    for name, data in {**records.cards, **records.explain}.items():
        _write(staging, name, data)
    _write(staging, verify_evidence.EXPORT, json.dumps(facts.export_json(), indent=2, sort_keys=True).encode("utf-8"))
    _write(staging, "summary.html", render_summary(facts).encode("utf-8"))
    _write(staging, "README.txt", render_readme(facts).encode("utf-8"))
    script = resources.files("core.audit").joinpath("verify_evidence.py").read_bytes()
    _write(staging, "verify_evidence.py", script)
    _write_manifest(staging)


def _write_manifest(staging: Path) -> None:
    lines = []
    for name in _all_files(staging):
        with (staging / name).open("rb") as handle:
            lines.append(f"{_sha256(handle)}  {name}\n")
    _write(staging, verify_evidence.MANIFEST, "".join(lines).encode("utf-8"))


def _sha256(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()
