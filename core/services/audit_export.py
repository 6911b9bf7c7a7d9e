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

**De-identified by default.** The package leaves the site, so the entries it carries are
de-identified (:mod:`core.services.evidence_deid`): instance UIDs become the keyed UIDs ``vigil
deid`` gives the same images, local paths are removed, patient and accession identifiers become
keyed pseudonyms. The export's own ledger entry, ``export.json``, ``summary.html`` and
``README.txt`` record that, the method, the key's id and how many entries were changed; the
entry also records the SHA-256 of the changed lines, which the standalone verifier checks (their
content can no longer be checked against their hashes; their place in the chain still is). An
identified package is an explicit opt-out (:class:`IdentifiedExport`, ``vigil audit export
--identified REASON``): refused unless the site's settings allow it (``[vigil.deid]
identified_exports``), and its reason and its exporter are recorded in the export's own entry.

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
from core.errors import AuditChainError, BadInputError, UnusablePathError
from core.services import evidence_deid
from core.services.audit_checkpoints import (
    CheckpointPlaces,
    make_checkpoint,
    public_key,
    read_external,
    verify_checkpoints,
)
from core.services.deidentify import deid_secret_at
from core.services.deidentify import key_id as deid_key_id
from core.services.evidence_summary import ExportFacts, render_readme, render_summary
from core.store import audit_log, explain_reports, model_versions
from core.store import checkpoints as checkpoint_store
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = ["MAX_REASON_CHARS", "ExportSummary", "IdentifiedExport", "export_evidence", "installation_deid_key"]

#: ``export.json``'s ``format``: changes when the package layout does.
FORMAT: Final = "vigil-evidence/1"
#: What the package says about predetermined change control plans, which Vigil does not record yet.
NO_CHANGE_CONTROL: Final = (
    "none: this version of Vigil does not record predetermined change control plans; "
    "the package holds no change-control documents"
)
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
#: The longest reason an identified export may give (it is stored in the ledger).
MAX_REASON_CHARS: Final = 500
#: The de-identification key's file name, beside the checkpoint-signing key in ``VIGIL_HOME/secrets``.
_DEID_KEY_NAME: Final = "dicom-deid.key"


@dataclass(frozen=True, slots=True)
class IdentifiedExport:
    """An explicit opt-out of de-identification for one evidence package.

    Attributes
    ----------
    reason : str
        Why the package must carry identifiers (a regulator's request, a legal hold); recorded in
        the export's own ledger entry. 1 to :data:`MAX_REASON_CHARS` characters.
    allowed : bool
        The site's settings allow identified exports (``Settings.deid.identified_exports_allowed()``);
        the export is refused when False.
    """

    reason: str
    allowed: bool

    def check(self) -> str:
        """The reason, stripped, once the opt-out may go ahead.

        Raises
        ------
        BadInputError
            The settings do not allow it, or the reason is empty or too long; nothing is written.
        """
        if not self.allowed:
            raise BadInputError(
                "an identified evidence export is not allowed at this installation: set identified_exports = true "
                "in [vigil.deid] (and false for no site) to allow it; nothing was exported"
            )
        reason = self.reason.strip()
        if not reason or len(reason) > MAX_REASON_CHARS:
            raise BadInputError(
                f"an identified export needs a reason of 1 to {MAX_REASON_CHARS} characters, got {len(reason)}"
            )
        return reason


def installation_deid_key(places: CheckpointPlaces) -> bytes:
    """The de-identification key ``vigil deid`` uses: ``VIGIL_HOME/secrets/dicom-deid.key`` (made on first use).

    It lives beside the checkpoint-signing key (:attr:`core.config.Settings.audit_signing_key_file`),
    so the evidence export finds it from the places it already has.

    Raises
    ------
    PseudonymKeyError
        The file exists but is not a private regular file of 32 bytes.
    """
    return deid_secret_at(places.key_file.with_name(_DEID_KEY_NAME))


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
    deidentified : bool
        The entries were de-identified (the default); False for an :class:`IdentifiedExport`.
    deidentified_entries : int
        Exported entries whose content de-identification changed.
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
    deidentified: bool = True
    deidentified_entries: int = 0

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
            "deidentified": self.deidentified,
            "deidentified_entries": self.deidentified_entries,
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
    deidentified: int = 0

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
    identified: IdentifiedExport | None = None,
    deid_key: Callable[[], bytes] | None = None,
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
    identified : IdentifiedExport, optional
        Export the entries as stored, identifiers included. De-identified when omitted.
    deid_key : callable, optional
        Returns the de-identification key; :func:`installation_deid_key` when omitted. Not
        called for an identified export.

    Returns
    -------
    ExportSummary
        ``verified`` False when the ledger failed verification: the package is written all the same.

    Raises
    ------
    BadInputError
        ``identified`` is not allowed, or gives no reason; raised before anything is written.
    UnusablePathError
        ``out_dir`` is a file, a link or a non-empty folder, or its parent cannot take a new folder;
        raised before anything is written.
    AuditKeyError
        The signing key file is unusable.
    PseudonymKeyError
        The de-identification key file is unusable; nothing is written.
    """
    reason = identified.check() if identified is not None else None
    staging = _staging_dir(out_dir)
    try:
        secret = None if identified is not None else (deid_key or (lambda: installation_deid_key(places)))()
        privacy = _Privacy(secret, reason)
        summary = _export(session_factory, places, out_dir, staging, privacy, actor=actor, now=now)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


@dataclass(frozen=True, slots=True)
class _Privacy:
    """How one export treats identifiers: de-identified under ``secret``, or identified for ``reason``."""

    secret: bytes | None
    reason: str | None

    def record(self, lines: int, digest: str) -> JSONObject:
        """What the export's ledger entry, ``export.json`` and the summary say about de-identification."""
        if self.secret is None:
            return {"deidentified": False, "reason": self.reason}
        return {
            "deidentified": True,
            "method": evidence_deid.METHOD,
            "description": evidence_deid.METHOD_TEXT,
            "key_id": deid_key_id(self.secret),
            "entries": lines,
            "sha256": digest,
        }


def _export(
    sf: SessionFactory,
    places: CheckpointPlaces,
    out_dir: Path,
    staging: Path,
    privacy: _Privacy,
    *,
    actor: str,
    now: Callable[[], datetime],
) -> ExportSummary:
    reason = _ledger_problem(sf, places)
    export_id = uuid.uuid4().hex
    records, export_seq, deid = _record_export(sf, out_dir, export_id, reason, privacy, actor=actor, now=now)
    newest: SignedCheckpoint | None = None
    if reason is None:
        try:
            newest = make_checkpoint(sf, places, now=now).signed
        except AuditChainError as exc:  # changed between the check and the checkpoint
            reason = str(exc)
    limit = None if newest is None else newest.checkpoint.tree_size
    key = public_key(places)
    with sf() as session:
        tally = _write_entries(session, staging, limit, privacy.secret)
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
        deidentification={**deid, "entries_exported": tally.deidentified},
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
        deidentified=privacy.secret is not None,
        deidentified_entries=tally.deidentified,
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


def _record_export(  # noqa: PLR0913 - keyword-only clock and actor; one argument per input of the entry
    sf: SessionFactory,
    out_dir: Path,
    export_id: str,
    problem: str | None,
    privacy: _Privacy,
    *,
    actor: str,
    now: Callable[[], datetime],
) -> tuple[_Records, int, JSONObject]:
    """Read the records and append the export's entry in one transaction, under the ledger's head lock.

    The entry records how the package treats identifiers; for a de-identified one, how many of the
    entries before it de-identification changed and the SHA-256 of those lines as exported.
    """
    with sf.begin() as session:
        # Held until commit: no model or report can be registered between the read and the entry.
        audit_log.lock_head(session)
        records = _read_records(session)
        deid = privacy.record(*_deidentified_digest(session, privacy.secret))
        payload: JSONObject = {
            "export_id": export_id,
            "out_dir": str(out_dir.absolute()),
            "format": FORMAT,
            "ledger_verified": problem is None,
            "problem": problem,
            "files": dict(records.hashes()),
            "deidentification": deid,
        }
        entry = audit_log.append(
            session,
            actor=actor,
            action=AuditAction.AUDIT_EXPORTED,
            subject=export_id,
            payload=payload,
            recorded_at=to_recorded_at(now()),
        )
    return records, entry.seq, deid


def _deidentified_digest(session: Session, secret: bytes | None) -> tuple[int, str]:
    """How many stored entries de-identification changes, and the SHA-256 of their exported lines in order."""
    digest, count = hashlib.sha256(), 0
    if secret is None:
        return 0, digest.hexdigest()
    tally = _Tally()  # a payload that no longer parses ends the count where the export's lines end
    for entry in _entries(session, None, tally):
        line, changed = evidence_deid.exported_line(entry, secret)
        if changed:
            digest.update(canonical_json(line) + b"\n")
            count += 1
        tally.entries += 1
    return count, digest.hexdigest()


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


def _write_entries(session: Session, staging: Path, limit: int | None, secret: bytes | None) -> _Tally:
    """Stream ``entries.jsonl`` (and each validation verdict) to disk, de-identified under ``secret``; count."""
    tally = _Tally()
    with (staging / verify_evidence.ENTRIES).open("wb") as out:
        for entry in _entries(session, limit, tally):
            line, changed = evidence_deid.exported_line(entry, secret)
            out.write(canonical_json(line) + b"\n")
            tally.add(entry)
            tally.deidentified += changed
            if entry.action == AuditAction.VALIDATION_REPORTED:
                # The verifier compares the report with the payload of the line exported.
                _write(staging, f"reports/validation/seq-{entry.seq}.json", canonical_json(line["payload"]))
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
