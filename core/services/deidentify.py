"""De-identify a folder of DICOM files into an output folder, for images that leave the site.

Each file is read (regular files only, bounded: ``core.imaging.files``), parsed strictly,
de-identified to the PS3.15 Basic Profile (``core.imaging.deid``) under the site's
de-identification key, and written as ``OUT/<new SOPInstanceUID>.dcm``. Output names never reuse
the input's names, which can themselves be identifying (``DOE_JOHN/1.dcm``).

- Nothing is half-written: each file goes to a hidden temporary file in ``OUT``
  (``.deid-*.part``, created 0600 whatever the umask: its content derives from PHI) and is
  renamed into place, so a crash, even ``kill -9``, leaves whole files or none. A crash can leave
  a ``.part`` file behind; the next run into ``OUT`` removes every one before it writes, and its
  audit entry counts them, and the outputs it replaced (files an interrupted, unaudited run had
  already renamed into place: the same input always gives the same name and bytes).
- Quarantined files (burned-in annotation risk) are only **listed**, never copied: ``OUT`` is what
  leaves the site, and a quarantined file still holds identifying pixels.
- Files that are not DICOM, or are damaged, are skipped and listed with one sentence each.
- One audit entry (``deid_exported``) records the run: counts, actions by kind, the table's version
  and SHA-256, the options, the private allow-list and the key's id; never a path, a file name or
  a value of a file.

The key is made on first use (32 random bytes, file mode 0600 in a 0700 folder) under
``VIGIL_HOME/secrets/dicom-deid.key`` and never shown; its id is a hash of it, so two runs can be
seen to have used the same key. Losing it means the same study gets new UIDs in later exports.
A key file that group or others may read is refused (:func:`core.services.keyfile.read_key_file`).

De-identification at ingest (``[vigil.deid] deidentify_at_ingest``, per site) is the other use:
:func:`ingest_deid` says how a site's ingest de-identifies, and :func:`deidentify_for_ingest`
turns one gated file into the copy the store keeps. It uses the site's *pseudonym* key (the one
FHIR ingest hashes MRNs and accession numbers with), not this module's export key, so that
outcomes from the EMR still link to the stored studies (``core.services.linkage``).

``OUT`` is created 0700 when missing. A symbolic link as ``OUT`` is followed when it points to a
folder (the checks that keep ``OUT`` apart from ``SRC`` compare the resolved folders); a dangling
link, or one to anything but a folder, is refused, as is an ``OUT`` that is a file, a FIFO or a
device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from core.audit.chain import to_recorded_at
from core.audit.events import AuditAction
from core.config import PrivateTag, Settings
from core.errors import BadInputError, DicomRejectedError, PathNotFoundError, UnusablePathError
from core.fhir import pseudonym
from core.files import file_kind
from core.imaging.deid import PrivateElement, ProfileOption, deidentify_bytes, load_profile
from core.imaging.files import DEFAULT_MAX_FILE_BYTES, read_regular_file
from core.imaging.image import DicomMeta
from core.imaging.scan import iter_dicom_paths
from core.services.fhir_ingest import site_secret
from core.services.keyfile import install_key_file, read_key_file
from core.store import audit_log, sites
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = [
    "INGEST_OPTIONS",
    "KEY_BYTES",
    "DeidJob",
    "DeidReport",
    "DeidentifiedFile",
    "IngestDeid",
    "Listed",
    "Written",
    "check_folders",
    "check_request",
    "deid_key_path",
    "deid_secret",
    "deid_secret_at",
    "deidentify_folder",
    "deidentify_for_ingest",
    "ingest_deid",
    "key_id",
    "private_elements",
]

#: Length of the de-identification key, in bytes.
KEY_BYTES: Final = 32
#: The audit subject of a run not tied to a registered site.
NO_SITE: Final = "-"
#: Temporary files of a run, in ``OUT``: ``.deid-<random>.part``; stale ones are removed by the next run.
PART_PREFIX: Final = ".deid-"
PART_SUFFIX: Final = ".part"
#: Outputs and temporary files are private to the account that runs Vigil (PHI-derived).
FILE_MODE: Final = 0o600
OUT_MODE: Final = 0o700
#: Profile options on at ingest. Full dates are kept: linkage's patient-and-date rule, every chart
#: over time (drift, a scanner's dated software update) and "which version served at T" need the
#: real study date, and the EMR evidence beside the studies keeps its dates too.
INGEST_OPTIONS: Final = (ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES,)


@dataclass(frozen=True, slots=True)
class Written:
    """A file de-identified: where it came from and the output file's name (inside ``OUT``)."""

    path: str
    output: str


@dataclass(frozen=True, slots=True)
class Listed:
    """A file quarantined or skipped, with one sentence saying why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeidReport:
    """One run of :func:`deidentify_folder` (the ``vigil deid --json`` contract).

    Paths are the site's own (shown to the operator, never audited). ``stale_parts_removed``
    counts the temporary files an interrupted run had left in ``OUT``; ``replaced`` names the
    outputs that were already in ``OUT`` (from an interrupted or earlier run) and were rewritten.
    """

    site: str | None
    out_dir: str
    profile_version: str
    table_sha256: str
    options: tuple[str, ...]
    key_id: str
    private_allowlist: tuple[str, ...] = ()
    written: list[Written] = field(default_factory=list)
    quarantined: list[Listed] = field(default_factory=list)
    skipped: list[Listed] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    stale_parts_removed: int = 0
    replaced: list[str] = field(default_factory=list)

    def to_dict(self) -> JSONObject:
        """JSON-ready, for the command line."""
        return {
            "site": self.site,
            "out": self.out_dir,
            "written": len(self.written),
            "replaced": len(self.replaced),
            "stale_parts_removed": self.stale_parts_removed,
            "quarantined": [{"path": q.path, "reason": q.reason} for q in self.quarantined],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "actions": dict(sorted(self.actions.items())),
            "profile_version": self.profile_version,
            "table_sha256": self.table_sha256,
            "options": list(self.options),
            "private_allowlist": list(self.private_allowlist),
            "key_id": self.key_id,
        }

    def audit_payload(self, *, completed: bool) -> JSONObject:
        """Counts only: no path, file name or value of a file (the audit trail holds no PHI)."""
        reasons = Counter(q.reason for q in self.quarantined)  # constant sentences, no file values
        return {
            "completed": completed,
            "files": len(self.written) + len(self.quarantined) + len(self.skipped),
            "written": len(self.written),
            "replaced": len(self.replaced),
            "stale_parts_removed": self.stale_parts_removed,
            "quarantined": len(self.quarantined),
            "skipped": len(self.skipped),
            "quarantine_reasons": dict(sorted(reasons.items())),
            "actions": dict(sorted(self.actions.items())),
            "profile_version": self.profile_version,
            "table_sha256": self.table_sha256,
            "options": list(self.options),
            # Tags and vendors' creator names, never a value of a file: what the site chose to keep.
            "private_allowlist": list(self.private_allowlist),
            "key_id": self.key_id,
        }


def private_elements(tags: Iterable[PrivateTag]) -> tuple[PrivateElement, ...]:
    """The configured allow-list (``Settings.deid.allowlist_for(site)``) as the de-identifier takes it.

    Raises
    ------
    BadInputError
        An entry out of range (``core.config`` has already checked entries read from a file).
    """
    return tuple(PrivateElement(t.group, t.creator, t.offset) for t in tags)


def _allowlist_text(elements: Iterable[PrivateElement]) -> tuple[str, ...]:
    return tuple(sorted(f"({e.group:04X},xx{e.offset:02X}) {e.creator}" for e in elements))


def deid_key_path(settings: Settings) -> Path:
    """``VIGIL_HOME/secrets/dicom-deid.key``."""
    return settings.home / "secrets" / "dicom-deid.key"


def deid_secret(settings: Settings) -> bytes:
    """The installation's de-identification key, created (0600, folder 0700) on first use.

    Atomic against a concurrent first use (:func:`core.services.keyfile.install_key_file`).

    Raises
    ------
    PseudonymKeyError
        The key file exists but is not a regular file of :data:`KEY_BYTES` bytes.
    """
    return deid_secret_at(deid_key_path(settings))


def deid_secret_at(path: Path) -> bytes:
    """The de-identification key stored at ``path``, created there (0600, folder 0700) on first use.

    Raises
    ------
    PseudonymKeyError
        As :func:`deid_secret`.
    """
    return read_key_file(path, KEY_BYTES) or install_key_file(path, secrets.token_bytes(KEY_BYTES))


def key_id(secret: bytes) -> str:
    """16 hex digits naming a key without revealing it (SHA-256 over a label and the key)."""
    return hashlib.sha256(b"vigil-deid-key-id\x1f" + secret).hexdigest()[:16]


def check_folders(src: Path, out: Path) -> None:
    """Refuse a source that is not a folder, and an output that is not (or cannot be) one, before any work.

    Raises
    ------
    PathNotFoundError
        ``src`` does not exist.
    UnusablePathError
        ``src`` is not a folder (a file, a FIFO, a device); ``out`` is a file, a FIFO, a device, a
        dangling symbolic link, or lies under a file; or ``out`` is ``src``, inside it
        (de-identified copies would mix with, and be read back as, the files they came from), or
        holds it (``out`` is what leaves the site, and the originals would leave with it).
    """
    try:
        info = src.stat()
    except FileNotFoundError:
        raise PathNotFoundError(src) from None
    except OSError as exc:
        raise UnusablePathError(src, exc.strerror or str(exc)) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UnusablePathError(src, f"it is {file_kind(info.st_mode)}; the source must be a folder of DICOM files")
    _check_out(out)
    src_r, out_r = src.resolve(), out.resolve()
    if out_r == src_r or src_r in out_r.parents:
        raise UnusablePathError(out, f"it is inside the source folder {src}; choose an output folder outside it")
    if out_r in src_r.parents:  # the identified originals would leave the site with it
        raise UnusablePathError(out, f"it holds the source folder {src}; choose an output folder outside it")


def _check_out(out: Path) -> None:
    """``out`` is a folder, a link to one, or nothing yet under a folder."""
    for place in (out, *out.parents):
        try:
            info = place.stat()  # follows a symbolic link: a link to a folder is that folder
        except (FileNotFoundError, NotADirectoryError):  # nothing there, or a file above it (found next)
            if place.is_symlink():
                raise UnusablePathError(
                    out, f"{_where(place, out)} a symbolic link to {os.readlink(place)!r}, which does not exist"
                ) from None
            continue  # created by the run
        except OSError as exc:
            raise UnusablePathError(out, exc.strerror or str(exc)) from exc
        if not stat.S_ISDIR(info.st_mode):
            kind = file_kind(info.st_mode)
            raise UnusablePathError(out, f"{_where(place, out)} {kind}; the output must be a folder")
        return


def _where(place: Path, out: Path) -> str:
    return "it is" if place == out else f"{place}, above it, is"


@dataclass(frozen=True, slots=True)
class DeidJob:
    """What to de-identify, where to, and how.

    Attributes
    ----------
    src : Path
        A folder, searched recursively (:func:`core.imaging.scan.iter_dicom_paths`).
    out : Path
        Created if needed; not ``src`` nor inside it. A file of the same name is replaced.
    site : str or None
        A registered site the files come from; the audit entry's subject.
    options : tuple of ProfileOption
        Profile options to turn on (none by default).
    private_allowlist : tuple of PrivateElement
        Private elements to keep (none by default); the CLI passes the site's configured list
        (``[vigil.deid]``, :func:`private_elements`). Listed in the report and the audit entry, and
        named in each output's DeidentificationMethod.
    max_file_bytes : int
        Larger files are skipped unread (``Settings.max_file_bytes``).
    """

    src: Path
    out: Path
    site: str | None = None
    options: tuple[ProfileOption, ...] = ()
    private_allowlist: tuple[PrivateElement, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


def check_request(session_factory: SessionFactory, job: DeidJob) -> str | None:
    """Every check that can refuse a run, made before the key is read or made and before any file.

    Returns
    -------
    str or None
        The site's registered name, or None when no site was named.

    Raises
    ------
    PathNotFoundError, UnusablePathError
        As :func:`check_folders`.
    UnknownSiteError
        ``job.site`` is not registered.
    """
    check_folders(job.src, job.out)
    if job.site is None:
        return None
    with session_factory() as session:
        return sites.get_site(session, job.site).name


def deidentify_folder(
    session_factory: SessionFactory,
    job: DeidJob,
    *,
    key: Callable[[], bytes],
    actor: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
) -> DeidReport:
    """De-identify every file under ``job.src`` into ``job.out`` and audit the run once.

    Parameters
    ----------
    job : DeidJob
    key : callable
        Returns the de-identification key (``lambda: deid_secret(settings)``); called only after
        every check of :func:`check_request` passed, so that a refused run never makes a key.
    now : callable
        Clock for the audit entry (UTC).
    progress : callable, optional
        Called with 1 after each file.

    Returns
    -------
    DeidReport

    Raises
    ------
    PathNotFoundError, UnusablePathError, UnknownSiteError
        As :func:`check_request`; nothing is read or written, and ``key`` is not called.
    PseudonymKeyError
        As :func:`deid_secret`, from ``key``; nothing is written.
    """
    site = check_request(session_factory, job)
    secret = key()
    table = load_profile()
    options = tuple(sorted(set(job.options)))
    files = iter_dicom_paths([job.src])
    job.out.mkdir(mode=OUT_MODE, parents=True, exist_ok=True)
    stale = _remove_stale_parts(job.out)
    report = DeidReport(
        site,
        str(job.out),
        table.version,
        table.sha256,
        tuple(o.value for o in options),
        key_id(secret),
        private_allowlist=_allowlist_text(job.private_allowlist),
        stale_parts_removed=stale,
    )
    run = _Run(job.out, secret, options, job.private_allowlist, job.max_file_bytes)
    try:
        _process(run, files, report, progress)
    except BaseException:
        _audit(session_factory, report, actor=actor, now=now, completed=False)
        raise
    _audit(session_factory, report, actor=actor, now=now, completed=True)
    return report


@dataclass(frozen=True, slots=True)
class _Run:
    """What every file of one run shares."""

    out: Path
    secret: bytes
    options: tuple[ProfileOption, ...]
    allowlist: tuple[PrivateElement, ...]
    max_file_bytes: int


def _remove_stale_parts(out: Path) -> int:
    """Remove the temporary files a killed run left in ``out``; return how many.

    Only regular files named like this module's temporary files go (never through a link); a run
    into ``OUT`` is the only writer of such names there.
    """
    removed = 0
    for part in out.glob(f"{PART_PREFIX}*{PART_SUFFIX}"):
        if stat.S_ISREG(part.lstat().st_mode):
            part.unlink(missing_ok=True)
            removed += 1
    return removed


def _process(run: _Run, files: list[Path], report: DeidReport, progress: Callable[[int], None] | None) -> None:
    first: dict[str, str] = {}  # output name -> the source written under it in this run
    for path in files:
        _one(run, path, report, first)
        if progress is not None:
            progress(1)


def _one(run: _Run, path: Path, report: DeidReport, first: dict[str, str]) -> None:
    try:
        data = read_regular_file(path, max_bytes=run.max_file_bytes)
        result = deidentify_bytes(data, path, secret=run.secret, options=run.options, private_allowlist=run.allowlist)
    except DicomRejectedError as exc:
        report.skipped.append(Listed(str(path), exc.reason))
        return
    if result.data is None:
        report.quarantined.append(Listed(str(path), result.quarantine_reason or "quarantined."))
        return
    name = f"{result.sop_instance_uid}.dcm"
    if name in first:
        report.skipped.append(Listed(str(path), f"it has the SOPInstanceUID of {first[name]}, already written."))
        return
    if _write_atomically(run.out / name, result.data):
        report.replaced.append(name)
    first[name] = str(path)
    report.written.append(Written(str(path), name))
    report.actions.update(result.actions)


def _write_atomically(target: Path, data: bytes) -> bool:
    """Write a private (0600) temporary file beside ``target``, flush it to disk, rename it into place.

    Returns
    -------
    bool
        True when ``target`` was already there (an earlier, interrupted or repeated, run's output).
    """
    tmp = target.with_name(f"{PART_PREFIX}{secrets.token_hex(8)}{PART_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits from the mode os.open was given
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        existed = os.path.lexists(target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return existed


def _audit(
    session_factory: SessionFactory,
    report: DeidReport,
    *,
    actor: str,
    now: Callable[[], datetime],
    completed: bool,
) -> None:
    with session_factory.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.DEID_EXPORTED,
            subject=report.site or NO_SITE,
            payload=report.audit_payload(completed=completed),
            recorded_at=to_recorded_at(now()),
        )


@dataclass(frozen=True, slots=True)
class IngestDeid:
    """How one ingest run de-identifies its files before they are stored.

    Attributes
    ----------
    secret : bytes
        The site's pseudonym key (:func:`core.services.fhir_ingest.site_secret`): PatientID and
        AccessionNumber become ``core.fhir.pseudonym`` of their values under it, UIDs
        :func:`core.imaging.deid.pseudonymous_uid` of theirs.
    private_allowlist : tuple of PrivateElement
        Private elements kept (the site's ``[vigil.deid]`` allow-list).
    """

    secret: bytes = field(repr=False)
    private_allowlist: tuple[PrivateElement, ...] = ()

    @property
    def key_id(self) -> str:
        """Names the key in the audit trail without revealing it."""
        return key_id(self.secret)


def ingest_deid(settings: Settings, site: str) -> IngestDeid | None:
    """How ingest into ``site`` de-identifies, or None when it stores files as they come.

    Reads (and on first use creates) the pseudonym key only when the site de-identifies.

    Raises
    ------
    PseudonymKeyError
        As :func:`core.services.fhir_ingest.site_secret`.
    """
    if not settings.deid.deidentify_at_ingest_for(site):
        return None
    return IngestDeid(site_secret(settings), private_elements(settings.deid.allowlist_for(site)))


@dataclass(frozen=True, slots=True)
class DeidentifiedFile:
    """A gated file's de-identified copy, as the store takes it (a ``core.services.ingestion.GatedFile``).

    Attributes
    ----------
    path : Path
        Where the original was read from (shown to the operator, never audited).
    sha256 : str
        Hex SHA-256 of :attr:`data`: the content address it is stored under.
    data : bytes
        The de-identified DICOM file.
    meta : DicomMeta
        Its header, except ``accession_number``: the keyed pseudonym of the original (see
        :func:`deidentify_for_ingest`).
    source_sha256 : str
        Hex SHA-256 of the original bytes: what the audit trail names the source by.
    profile_version, table_sha256 : str
        The table applied (with :data:`INGEST_OPTIONS`).
    key_id : str
        :func:`key_id` of the pseudonym key.
    """

    path: Path
    sha256: str
    data: bytes = field(repr=False)
    meta: DicomMeta
    source_sha256: str
    profile_version: str
    table_sha256: str
    key_id: str

    def audit_source(self) -> JSONObject:
        """The audit entry's account of the source: hashes and how the copy was made, never a path.

        Folder and file names are often the patient's; the original's SHA-256 still lets an
        operator holding the file match it.
        """
        return {
            "source_sha256": self.source_sha256,
            "deidentified": {
                "profile_version": self.profile_version,
                "table_sha256": self.table_sha256,
                "options": [o.value for o in INGEST_OPTIONS],
                "key_id": self.key_id,
            },
        }


def deidentify_for_ingest(data: bytes, path: Path, meta: DicomMeta, deid: IngestDeid) -> DeidentifiedFile:
    """The copy of a gated file that ingest stores: the Basic Profile with :data:`INGEST_OPTIONS`.

    PatientID becomes ``pseudonym(secret, "patient", PatientID)`` in the file and the row, exactly
    the key FHIR ingest gives the patient's MRN. The accession number's pseudonym (32 characters)
    does not fit AccessionNumber (SH, 16), so the file's AccessionNumber is emptied as the profile
    says and only the row keeps ``pseudonym(secret, "accession", AccessionNumber)``. An empty value
    stays empty. Deterministic: the same file gives the same bytes, so ingesting it again is a
    duplicate.

    Parameters
    ----------
    data : bytes
        The bytes the gate accepted.
    path : Path
        Names the file in a rejection.
    meta : DicomMeta
        The gate's reading of ``data`` (the values pseudonymized are the ones the identified
        store would have kept).

    Raises
    ------
    DicomRejectedError
        The file is quarantined for burned-in annotation risk (nothing of it is stored), or it
        cannot be de-identified; the reason never quotes a value of the file.
    """
    patient = pseudonym(deid.secret, "patient", meta.patient_id) if meta.patient_id else ""
    accession = pseudonym(deid.secret, "accession", meta.accession_number) if meta.accession_number else ""
    try:
        result = deidentify_bytes(
            data,
            path,
            secret=deid.secret,
            options=INGEST_OPTIONS,
            private_allowlist=deid.private_allowlist,
            replacements={"PatientID": patient},
        )
    except DicomRejectedError:
        raise
    except BadInputError as exc:  # e.g. nested too deep for the copy the profile works on
        raise DicomRejectedError(path, f"it could not be de-identified at ingest: {exc}") from exc
    if result.data is None or result.meta is None:
        reason = result.quarantine_reason or "quarantined."
        raise DicomRejectedError(path, f"quarantined by de-identification at ingest, not stored: {reason}")
    return DeidentifiedFile(
        path=path,
        sha256=hashlib.sha256(result.data).hexdigest(),
        data=result.data,
        meta=dataclasses.replace(result.meta, accession_number=accession),
        source_sha256=hashlib.sha256(data).hexdigest(),
        profile_version=result.profile_version,
        table_sha256=result.table_sha256,
        key_id=deid.key_id,
    )
