"""Pull new studies from a site's PACS over DICOMweb through the ingest gate, once, and predict them on arrival.

For each study a QIDO-RS search finds, the instances not yet dealt with from that endpoint
(``core.store.pacs_seen``) are retrieved one at a time over WADO-RS, written to the endpoint's
staging folder under ``VIGIL_HOME`` and ingested by :func:`core.services.ingestion.ingest_paths`:
the same strict gate, the same content-addressed store, the same audit entries and the same
rejections as ``vigil ingest``. Only after that ingest has committed is the instance marked as
seen, in a transaction of its own. So a pull killed at any point (``kill -9`` included) resumes
on its next run with exactly the instances it has not finished:

- an instance ingested but not yet marked is found in the store by its SOP Instance UID and
  marked without being retrieved again;
- an instance refused by the gate but not yet marked is retrieved and refused once more (a second
  ``ingest_rejected`` audit entry; the store is unchanged);
- an instance the PACS could not serve is reported, never marked, and tried again next pull.

**One pull per endpoint.** A pull holds an exclusive ``flock`` on its endpoint's lock file for
its whole run: a second pull of the same PACS (another ``vigil pacs pull``, a ``watch``, the
app) fails at once with a message saying so, and fetches nothing. The kernel drops the lock when
its holder dies, even by ``kill -9``, so a crashed pull never blocks the next. The lock also
guards the endpoint's staging folder: whoever holds it owns the folder, and empties it of a
killed run's leftovers before starting (no process ids, which the system reuses).

**What the search says is checked.** A study whose UID, date or instance count cannot be read
is rejected with the bad value named, and the pull goes on. Studies whose every instance is
marked (``NumberOfStudyRelatedInstances`` says how many; a count of 0 or none is no proof) are
skipped without listing their instances. After each study with new instances, and once at the
end of each site's pull (which catches a resumed run's leftovers), pending studies are scored by
the serving model.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.config import PacsEndpoint, Settings
from core.errors import BadInputError, PacsAuthError, PacsServerError, PacsUnreachableError
from core.imaging.deid import pseudonymous_uid
from core.imaging.dicomweb import DicomwebClient, InstanceHit, StudyHit, StudyQuery, UnreadableStudy
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.imaging.gate import is_dicom_uid
from core.services import ingestion
from core.services.deidentify import IngestDeid, ingest_deid
from core.store import audit_log, pacs_seen, sites, studies
from core.store.engine import SessionFactory, write_with_retries
from core.types import JSONObject

if TYPE_CHECKING:
    from core.models.loading import LoadedModel

__all__ = [
    "STAGING_DIR",
    "PacsRejection",
    "Predictor",
    "PullReport",
    "SiteFailure",
    "SitePull",
    "make_predictor",
    "pull_lock",
    "pull_site",
    "pull_sites",
    "watch",
]

#: Where retrieved instances wait for the gate, under ``VIGIL_HOME``: one lock file and one
#: staging folder per endpoint, both named by a digest of its URL.
STAGING_DIR: Final = "pacs-staging"

Predictor = Callable[[str], int]
"""Scores the site's pending studies and returns how many it scored."""


@dataclass(frozen=True, slots=True)
class PacsRejection:
    """An instance (or a whole study, ``sop_instance_uid=""``) not stored, and why.

    ``reason`` is the gate's sentence, why the PACS could not serve it, or the search result's
    value that cannot be read.
    """

    study_uid: str
    sop_instance_uid: str
    reason: str


@dataclass(frozen=True, slots=True)
class SitePull:
    """What one pull from one site's PACS did.

    Attributes
    ----------
    studies_found : int
        Studies the search matched (unreadable ones included: they are in ``rejected``).
    studies_complete : int
        Of those, studies skipped because every instance had been dealt with before.
    retrieved : int
        Instances retrieved over WADO-RS in this run.
    stored, duplicates : int
        Instances the gate accepted and stored, and those the store already held.
    rejected : tuple of PacsRejection
        Refused by the gate (marked seen), not served by the PACS, or unreadable in the search
        (both tried again next pull).
    predicted : int
        Studies scored on arrival.
    stopped : bool
        True when asked to stop (SIGTERM, Ctrl-C) before the search was exhausted.
    """

    site: str
    endpoint: str
    studies_found: int
    studies_complete: int
    retrieved: int
    stored: int
    duplicates: int
    rejected: tuple[PacsRejection, ...]
    predicted: int
    stopped: bool = False

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "site": self.site,
            "endpoint": self.endpoint,
            "studies_found": self.studies_found,
            "studies_complete": self.studies_complete,
            "retrieved": self.retrieved,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": [
                {"study_uid": r.study_uid, "sop_instance_uid": r.sop_instance_uid, "reason": r.reason}
                for r in self.rejected
            ],
            "predicted": self.predicted,
            "stopped": self.stopped,
        }


@dataclass(frozen=True, slots=True)
class SiteFailure:
    """A site whose PACS could not be pulled, with the error that stopped it (its message names the endpoint)."""

    site: str
    error: BadInputError

    @property
    def reason(self) -> str:
        """The error's message, as it is printed: once."""
        return str(self.error)


@dataclass(frozen=True, slots=True)
class PullReport:
    """A pull over one or more sites."""

    sites: tuple[SitePull, ...]
    failures: tuple[SiteFailure, ...] = ()

    def to_dict(self) -> JSONObject:
        """JSON-ready (what ``vigil pacs pull --json`` prints)."""
        return {
            "sites": [s.to_dict() for s in self.sites],
            "failures": [{"site": f.site, "reason": f.reason} for f in self.failures],
            "stored": sum(s.stored for s in self.sites),
            "retrieved": sum(s.retrieved for s in self.sites),
            "rejected": sum(len(s.rejected) for s in self.sites),
        }

    def summary(self) -> str:
        """One line per site, one per rejection and one per failed site."""
        lines = [
            f"{s.site}: {s.studies_found} studies found ({s.studies_complete} already complete), "
            f"{s.retrieved} instances retrieved, {s.stored} stored, {s.duplicates} duplicates, "
            f"{len(s.rejected)} rejected, {s.predicted} predicted from {s.endpoint}"
            + (" (stopped)" if s.stopped else "")
            for s in self.sites
        ]
        lines += [f"  rejected {r.study_uid} {r.sop_instance_uid}: {r.reason}" for s in self.sites for r in s.rejected]
        lines += [f"{f.site}: FAILED: {f.reason}" for f in self.failures]
        return "\n".join(lines) or "no site has a PACS configured"


@dataclass(frozen=True, slots=True)
class _Run:
    """What every instance of one site's pull shares."""

    sf: SessionFactory
    client: DicomwebClient
    site: str
    site_id: int
    staging: Path
    dicom_dir: Path
    actor: str
    now: Callable[[], datetime]
    max_file_bytes: int
    deid: IngestDeid | None = None

    def key(self, uid: str) -> str:
        """The form of the PACS's ``uid`` that Vigil stores: itself, or its keyed UID at a de-identifying site."""
        return uid if self.deid is None else pseudonymous_uid(self.deid.secret, uid)


@dataclass
class _Tally:
    """Running counts of one site's pull (frozen into a :class:`SitePull` at the end)."""

    found: int = 0
    complete: int = 0
    retrieved: int = 0
    stored: int = 0
    duplicates: int = 0
    predicted: int = 0
    rejected: list[PacsRejection] = field(default_factory=list)

    def report(self, site: str, endpoint: str, *, stopped: bool) -> SitePull:
        """The counts so far, frozen."""
        return SitePull(
            site,
            endpoint,
            self.found,
            self.complete,
            self.retrieved,
            self.stored,
            self.duplicates,
            tuple(self.rejected),
            self.predicted,
            stopped,
        )


def pull_site(  # noqa: PLR0913 - keyword-only; the ingest inputs, the search and the hooks
    sf: SessionFactory,
    client: DicomwebClient,
    *,
    site: str,
    query: StudyQuery,
    home: Path,
    actor: str,
    now: Callable[[], datetime],
    predict: Predictor | None = None,
    stop: threading.Event | None = None,
    page_size: int = 100,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    deid: IngestDeid | None = None,
) -> SitePull:
    """Retrieve every new instance of the studies ``query`` finds on ``client``'s PACS into ``site``.

    Parameters
    ----------
    home : Path
        ``VIGIL_HOME``: the DICOM store is ``home/dicom``, the lock and staging ``home/pacs-staging``.
    predict : callable, optional
        Scores ``site``'s pending studies (see the module docstring); None skips prediction.
    stop : threading.Event, optional
        Set (by a SIGTERM handler) to stop after the instance in hand; give the client the same
        event, so that a retry pause ends with it too. A request ended by it gives a report with
        ``stopped`` True, not an error.
    deid : IngestDeid, optional
        The site's de-identification at ingest (:func:`core.services.deidentify.ingest_deid`):
        stores the de-identified copy and keeps only keyed UIDs (see the module docstring).
        None stores instances as they come.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered; nothing is asked of the PACS.
    BadInputError
        The endpoint URL is too long to be recorded; nothing is asked of the PACS.
    PacsServerError
        Another pull of this endpoint is running (nothing is asked of the PACS), or the search
        itself failed (an instance the PACS cannot serve is reported, not raised).
    PacsUnreachableError, PacsAuthError
        The PACS cannot be reached after the retries, or refuses the credentials: what was
        ingested before stays, marked, and the next pull resumes after it.
    """
    pacs_seen.check_endpoint(client.base_url)
    with sf() as session:
        site_id = sites.get_site(session, site).id
    tally = _Tally()
    with pull_lock(home / STAGING_DIR, client.base_url) as staging:
        run = _Run(sf, client, site, site_id, staging, home / "dicom", actor, now, max_file_bytes, deid)
        try:
            _pull_search(run, query, tally, predict, stop, page_size)
        except PacsServerError:
            if stop is None or not stop.is_set():
                raise
        stopped = stop is not None and stop.is_set()
    if predict is not None and not stopped:
        tally.predicted += predict(site)  # a resumed run's stored-but-unscored studies
    return tally.report(site, client.base_url, stopped=stopped)


def _pull_search(  # noqa: PLR0913 - the run, its query and its hooks
    run: _Run,
    query: StudyQuery,
    tally: _Tally,
    predict: Predictor | None,
    stop: threading.Event | None,
    page_size: int,
) -> None:
    for hit in run.client.search_studies(query, page_size=page_size):
        if stop is not None and stop.is_set():
            return
        tally.found += 1
        if isinstance(hit, UnreadableStudy):  # reported, never marked: the next pull reads it again
            tally.rejected.append(PacsRejection(hit.study_uid, "", f"the PACS search result: {hit.reason}"))
            continue
        stored_before = tally.stored
        if _pull_study(run, hit, tally, stop) and predict is not None and tally.stored > stored_before:
            tally.predicted += predict(run.site)


def _pull_study(run: _Run, hit: StudyHit, tally: _Tally, stop: threading.Event | None) -> bool:
    """Deal with every unseen instance of one study; False when it was complete already."""
    with run.sf() as session:
        seen = pacs_seen.seen_uids(session, run.client.base_url, run.key(hit.study_uid))
    if hit.counted and hit.n_instances is not None and len(seen) >= hit.n_instances:
        tally.complete += 1
        return False
    before = (tally.retrieved, tally.stored, tally.duplicates, len(tally.rejected))
    for instance in run.client.search_instances(hit.study_uid):
        if stop is not None and stop.is_set():
            break
        if run.key(instance.sop_instance_uid) not in seen:
            _pull_instance(run, instance, tally)
    _audit_study(run, hit.study_uid, before, tally)
    return True


def _pull_instance(run: _Run, instance: InstanceHit, tally: _Tally) -> None:
    """Retrieve, gate and store one instance, then mark it seen (see the module docstring for the order)."""
    uid = instance.sop_instance_uid
    for name, value in (("SeriesInstanceUID", instance.series_uid), ("SOPInstanceUID", uid)):
        if not is_dicom_uid(value):  # it names a staging file and a WADO-RS path
            reason = f"the PACS search result: {name} {value[:80]!r} is not a valid UID"
            tally.rejected.append(PacsRejection(instance.study_uid, uid, reason))
            return
    with run.sf() as session:
        stored = studies.find_instance_by_uid(session, run.key(uid)) is not None
    if stored:  # ingested by an earlier, interrupted pull (or from a file): no need to fetch it
        tally.duplicates += 1
        _mark(run, instance, "duplicate")
        return
    try:
        data = run.client.retrieve_instance(instance)
    except (PacsUnreachableError, PacsAuthError):
        raise
    except PacsServerError as exc:  # this instance only; the rest of the study goes on
        tally.rejected.append(PacsRejection(instance.study_uid, uid, f"the PACS could not serve it: {exc.detail}"))
        return
    tally.retrieved += 1
    report = _ingest_bytes(run, instance, data)
    if report.ingested:
        tally.stored += 1
        _mark(run, instance, "stored")
    elif report.duplicates:
        tally.duplicates += 1
        _mark(run, instance, "duplicate")
    else:
        reason = report.rejected[0].reason if report.rejected else "refused by the ingest gate"
        tally.rejected.append(PacsRejection(instance.study_uid, uid, reason))
        _mark(run, instance, "rejected", reason)


def _ingest_bytes(run: _Run, instance: InstanceHit, data: bytes) -> ingestion.IngestReport:
    """Stage the bytes as ``<study>/<sop>.dcm`` and put them through the file ingest (same gate, same audit)."""
    folder = run.staging / instance.study_uid
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{instance.sop_instance_uid}.dcm"
    path.write_bytes(data)
    try:
        return ingestion.ingest_paths(
            run.sf,
            [path],
            site=run.site,
            dicom_dir=run.dicom_dir,
            actor=run.actor,
            now=run.now,
            max_file_bytes=run.max_file_bytes,
            deid=run.deid,
        )
    finally:
        path.unlink(missing_ok=True)


def _mark(run: _Run, instance: InstanceHit, outcome: str, reason: str = "") -> None:
    write_with_retries(
        run.sf,
        lambda session: pacs_seen.mark_seen(
            session,
            endpoint=run.client.base_url,
            site_id=run.site_id,
            study_uid=run.key(instance.study_uid),
            sop_instance_uid=run.key(instance.sop_instance_uid),
            outcome=outcome,
            reason=reason,
            now=run.now(),
        ),
    )


def _audit_study(run: _Run, study_uid: str, before: tuple[int, int, int, int], tally: _Tally) -> None:
    """One ``pacs_study_pulled`` entry per study this run did something for."""
    after = (tally.retrieved, tally.stored, tally.duplicates, len(tally.rejected))
    if after == before:
        return
    retrieved, stored, duplicates, rejected = (a - b for a, b in zip(after, before, strict=True))
    with run.sf.begin() as session:
        audit_log.append(
            session,
            actor=run.actor,
            action=AuditAction.PACS_STUDY_PULLED,
            subject=run.key(study_uid),
            payload={
                "endpoint": run.client.base_url,
                "site": run.site,
                "retrieved": retrieved,
                "stored": stored,
                "duplicates": duplicates,
                "rejected": rejected,
            },
            recorded_at=run.now().isoformat(),
        )


@contextmanager
def pull_lock(root: Path, endpoint: str) -> Iterator[Path]:
    """Hold ``endpoint``'s pull lock; yield its staging folder, emptied of a killed run's leftovers.

    Parameters
    ----------
    root : Path
        ``VIGIL_HOME/pacs-staging``: holds ``<digest>.lock`` and the folder ``<digest>/``.
    endpoint : str
        The DICOMweb base URL; the digest is the first 16 hex digits of its SHA-256.

    Raises
    ------
    PacsServerError
        Another process or thread holds the lock (a pull of the same PACS is running); nothing
        is touched. The lock is not waited for: a pull that waited would find nothing new.
    """
    key = hashlib.sha256(endpoint.encode("utf-8")).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f"{key}.lock"
    with lock.open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PacsServerError(
                endpoint, f"another pull from this PACS is running (it holds {lock}); this one fetched nothing"
            ) from None
        staging = root / key
        try:
            # Holding the lock, no other pull of this endpoint is alive: what is here is a dead run's.
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def pull_sites(  # noqa: PLR0913 - keyword-only; the pull inputs and its hooks
    settings: Settings,
    sf: SessionFactory,
    clients: Callable[[PacsEndpoint], DicomwebClient],
    *,
    sites_: Sequence[str],
    since: date,
    actor: str,
    now: Callable[[], datetime],
    predict: Predictor | None = None,
    stop: threading.Event | None = None,
) -> PullReport:
    """Pull studies dated ``since`` or later from the PACS of each of ``sites_``; a failing site does not stop the rest.

    A site fails with any typed bad-input error (the PACS unreachable, refusing the credentials
    or answering what cannot be read, another pull of it running, the site not registered): the
    error goes into the report and the next site is pulled.

    Raises
    ------
    PacsConfigError
        A site has no PACS configured, its secret is not set or cannot be used, or it would send
        credentials over plain http; nothing is asked of any PACS.
    PseudonymKeyError
        A site de-identifies at ingest and its pseudonym key cannot be read or made; nothing is
        asked of any PACS.
    """
    endpoints = [settings.pacs_endpoint(site) for site in sites_]
    # Every secret and pseudonym key is read before any request.
    made = [(endpoint, clients(endpoint), ingest_deid(settings, endpoint.site)) for endpoint in endpoints]
    pulls, failures = [], []
    for endpoint, client, deid in made:
        if stop is not None and stop.is_set():
            break
        try:
            with client:
                pulls.append(
                    pull_site(
                        sf,
                        client,
                        site=endpoint.site,
                        query=StudyQuery(date_from=since),
                        home=settings.home,
                        actor=actor,
                        now=now,
                        predict=predict,
                        stop=stop,
                        page_size=endpoint.page_size,
                        max_file_bytes=settings.max_file_bytes,
                        deid=deid,
                    )
                )
        except BadInputError as exc:
            failures.append(SiteFailure(endpoint.site, exc))
    return PullReport(tuple(pulls), tuple(failures))


def watch(
    cycle: Callable[[], PullReport],
    *,
    interval_s: float,
    stop: threading.Event,
    on_cycle: Callable[[PullReport], None],
) -> int:
    """Run ``cycle`` every ``interval_s`` seconds until ``stop`` is set; returns the number of cycles run.

    A cycle's PACS failures are in its report (the next cycle tries again); ``stop`` ends the wait
    between cycles at once, and a cycle at the instance in hand (or the retry pause in hand).
    """
    cycles = 0
    while not stop.is_set():
        report = cycle()
        cycles += 1
        on_cycle(report)
        stop.wait(interval_s)
    return cycles


def make_predictor(  # noqa: PLR0913 - keyword-only; predict_serving's inputs
    sf: SessionFactory,
    *,
    models_dir: Path,
    batch_size: int,
    actor: str,
    now: Callable[[], datetime],
    maps_dir: Path | None = None,
) -> Predictor:
    """A :data:`Predictor` that scores with the version serving the site, as ``vigil predict`` does.

    The model is loaded on the first call and kept; a promotion or rollback mid-pull makes the
    next batch load the version that serves then (see :func:`core.services.prediction.predict_serving`).
    With ``maps_dir`` (``Settings.artifacts_dir``) each new score's Grad-CAM map is stored with it,
    so a study pulled from the PACS opens in the viewer with its map made. Calling it raises
    ``BadInputError`` when no model version is serving.
    """
    from core.services import models as model_service  # torch: only when a pull predicts
    from core.services import prediction

    loaded: dict[str, LoadedModel] = {}

    def load(version: str) -> LoadedModel:
        # Kept across polls; a promotion or rollback makes the next pass ask for another version.
        if version not in loaded:
            loaded.clear()
            loaded[version] = model_service.load_named(sf, version, models_dir=models_dir)
        return loaded[version]

    def predict(site: str) -> int:
        reports = prediction.predict_serving(
            sf, load, site=site, batch_size=batch_size, actor=actor, now=now, maps_dir=maps_dir
        )
        return sum(r.scored for r in reports)

    return predict
