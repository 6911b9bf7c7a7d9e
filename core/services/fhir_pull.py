"""Pull EMR outcomes from a FHIR server, resumably: each page is ingested, then a high-water mark advances.

For each resource type, in dependency order (Patient, ImagingStudy, then the evidence), the pull
searches ``_lastUpdated=gt<mark>`` sorted by ``_lastUpdated``, where the mark is ``since`` or the
one stored for this server and type. Every page is ingested on its own with
:func:`core.services.fhir_ingest.ingest_payload` (its own transaction and audit entry); only after
that commit does the mark move, in a second short transaction. A crash between the two re-reads
the page on the next run, and ingest is idempotent (a stored resource version writes nothing), so
an interrupted pull that is run again resumes where it stopped and stores nothing twice.

How far the mark may move after a page, so that resuming never skips a resource:

* Resources that share the page's greatest ``lastUpdated`` may continue on the next page, and a
  resume with ``gt`` that instant would skip those. So on a page with a ``next`` link the mark
  moves only to the greatest instant *below* the page's greatest (those resources are read again
  on resume, harmlessly); the last page moves it to its greatest.
* A server that ignores ``_sort`` returns instants out of order; then no page's instant bounds
  what is left, and the mark moves once, to the greatest instant seen, when the search has ended.
* The mark never moves backwards (``since`` earlier than the stored mark re-reads, it does not
  rewind).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from core.errors import BadInputError
from core.fhir import OutcomeMapping, load_mapping
from core.fhir.client import FhirClient, search_params
from core.services.fhir_ingest import IngestReport, ingest_payload
from core.store import emr
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = ["DEFAULT_PAGE_SIZE", "INCLUDES", "PULL_ORDER", "PullReport", "TypePull", "pull", "pull_order"]

#: The resource types Vigil reads, in the order a pull fetches them: patients and studies first, so
#: that evidence arriving after them links at once.
PULL_ORDER: Final = (
    "Patient",
    "ImagingStudy",
    "Procedure",
    "DiagnosticReport",
    "Observation",
    "Condition",
    "DocumentReference",
)
#: What each search brings along (``_include``, R4 search parameter names): the patient a resource is
#: about and the study it was derived from, so that a page links on its own; a page of one type
#: does not carry the resources it references otherwise. R4 has no DiagnosticReport search
#: parameter for ``imagingStudy``: a report links through its patient and date, or through an
#: ImagingStudy identifier written into the reference itself.
INCLUDES: Final[dict[str, tuple[str, ...]]] = {
    "ImagingStudy": ("ImagingStudy:subject",),
    "Procedure": ("Procedure:subject",),
    "DiagnosticReport": ("DiagnosticReport:subject",),
    "Observation": ("Observation:subject", "Observation:derived-from", "Observation:part-of"),
    "Condition": ("Condition:subject",),
    "DocumentReference": ("DocumentReference:subject", "DocumentReference:related"),
}
#: Resources asked for per page; one page is one ingest transaction.
DEFAULT_PAGE_SIZE: Final = 200


@dataclass(frozen=True, slots=True)
class TypePull:
    """What the pull of one resource type read and stored.

    Attributes
    ----------
    pages : int
        Searchset pages read and ingested.
    resources : int
        Resources of this type the search matched on those pages.
    included : int
        Resources the pages brought along (``_include``: patients, studies).
    accepted, rejected : int
        Entries (matches and includes) that passed validation, and those reported bad
        (``rejected_paths`` says where).
    evidence : int
        New evidence rows (resource versions not stored before).
    already_stored : int
        Evidence read again that was stored before (a resumed or repeated pull).
    start_mark, final_mark : str or None
        The ``_lastUpdated`` high-water mark before and after (None: never pulled).
    """

    resource_type: str
    pages: int
    resources: int
    included: int
    accepted: int
    rejected: int
    evidence: int
    already_stored: int
    start_mark: str | None
    final_mark: str | None
    rejected_paths: tuple[str, ...] = ()

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "pages": self.pages,
            "resources": self.resources,
            "included": self.included,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_paths": list(self.rejected_paths),
            "evidence": self.evidence,
            "already_stored": self.already_stored,
            "start_mark": self.start_mark,
            "final_mark": self.final_mark,
        }


@dataclass(frozen=True, slots=True)
class PullReport:
    """A whole pull: one :class:`TypePull` per resource type, in the order pulled."""

    server: str
    types: tuple[TypePull, ...]

    @property
    def pages(self) -> int:
        """Pages ingested over all types."""
        return sum(t.pages for t in self.types)

    @property
    def resources(self) -> int:
        """Entries read over all types."""
        return sum(t.resources for t in self.types)

    @property
    def accepted(self) -> int:
        """Entries accepted over all types."""
        return sum(t.accepted for t in self.types)

    @property
    def rejected(self) -> int:
        """Entries rejected over all types."""
        return sum(t.rejected for t in self.types)

    @property
    def marks(self) -> dict[str, str | None]:
        """The final high-water mark of each type."""
        return {t.resource_type: t.final_mark for t in self.types}

    def summary(self) -> str:
        """What ``vigil fhir pull`` prints: one line for the pull, one per resource type."""
        lines = [f"pulled {self.resources} resources in {self.pages} pages from {self.server}"]
        lines += [
            f"  {t.resource_type:<18} {t.pages:>4} pages  {t.accepted:>6} accepted  {t.rejected:>4} rejected  "
            f"{t.evidence:>5} new evidence  mark {t.final_mark or '-'}"
            for t in self.types
        ]
        lines += [f"  rejected {t.resource_type} {path}" for t in self.types for path in t.rejected_paths]
        return "\n".join(lines)

    def to_dict(self) -> JSONObject:
        """JSON-ready (what ``vigil fhir pull --json`` prints)."""
        return {
            "server": self.server,
            "pages": self.pages,
            "resources": self.resources,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "evidence": sum(t.evidence for t in self.types),
            "already_stored": sum(t.already_stored for t in self.types),
            "marks": dict(self.marks),
            "types": {t.resource_type: t.to_dict() for t in self.types},
        }


def pull_order(resource_types: Sequence[str]) -> tuple[str, ...]:
    """``resource_types`` deduplicated and sorted into :data:`PULL_ORDER`.

    Raises
    ------
    BadInputError
        None given, or a type Vigil does not read (named).
    """
    unknown = [t for t in resource_types if t not in PULL_ORDER]
    if unknown:
        raise BadInputError(f"Vigil does not pull {unknown[0]!r} (choose from {', '.join(PULL_ORDER)})")
    if not resource_types:
        raise BadInputError("no resource types to pull")
    return tuple(t for t in PULL_ORDER if t in resource_types)


def pull(  # noqa: PLR0913 - keyword-only; the ingest inputs, the server and its paging
    sf: SessionFactory,
    client: FhirClient,
    *,
    resource_types: Sequence[str] = PULL_ORDER,
    since: str | None,
    secret: bytes,
    actor: str,
    now: Callable[[], datetime],
    mapping: OutcomeMapping | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> PullReport:
    """Pull every changed resource of ``resource_types`` from ``client``'s server into the store.

    Parameters
    ----------
    sf : SessionFactory
    client : FhirClient
        The server; its base URL keys the stored marks.
    resource_types : sequence of str
        Any of :data:`PULL_ORDER`; pulled in that order.
    since : str, optional
        A FHIR instant to start from instead of the stored marks (a backfill); None resumes.
    secret : bytes
        The site's pseudonym key.
    actor : str
        Who pulls (audit entries of the ingests).
    now : callable
        Clock for stored timestamps.
    mapping : OutcomeMapping, optional
        The code mapping (the bundled one when None), loaded once for every page.
    page_size : int
        ``_count`` asked for.

    Raises
    ------
    BadInputError
        A type Vigil does not pull or a malformed ``since``, before any request.
    FhirServerError
        The server failed after retries: the pages ingested so far stay, with their marks, and a
        rerun resumes after them.
    FhirPayloadError
        A page Vigil cannot read at all; the marks stay before it.
    """
    order = pull_order(resource_types)
    search_params(last_updated_gt=since, count=page_size)  # checks both before any request
    the_mapping = mapping or load_mapping()
    types = []
    for resource_type in order:
        types.append(
            _pull_type(
                sf,
                client,
                resource_type,
                since=since,
                ingest=lambda page, name: ingest_payload(
                    sf, page, name=name, secret=secret, actor=actor, now=now, mapping=the_mapping
                ),
                now=now,
                page_size=page_size,
            )
        )
    return PullReport(client.base_url, tuple(types))


@dataclass
class _Tally:
    """Running counts of one type's pull (mutable while it runs; frozen into a TypePull at the end)."""

    pages: int = 0
    resources: int = 0
    included: int = 0
    accepted: int = 0
    evidence: int = 0
    already_stored: int = 0
    rejected: list[str] = field(default_factory=list)

    def add(self, report: IngestReport, page: int, matches: int) -> None:
        self.pages += 1
        self.resources += matches
        self.included += report.n_entries - matches
        self.accepted += report.accepted
        self.evidence += report.evidence
        self.already_stored += report.already_stored
        self.rejected += [f"page[{page}].{e.path}" for e in report.rejected]


def _pull_type(
    sf: SessionFactory,
    client: FhirClient,
    resource_type: str,
    *,
    since: str | None,
    ingest: Callable[[bytes, str], IngestReport],
    now: Callable[[], datetime],
    page_size: int,
) -> TypePull:
    with sf.begin() as session:
        stored = emr.get_pull_mark(session, client.base_url, resource_type)
    start = since if since is not None else stored
    params = search_params(last_updated_gt=start, sort="_lastUpdated", count=page_size) + tuple(
        ("_include", spec) for spec in INCLUDES.get(resource_type, ())
    )
    tally = _Tally()
    mark = _Mark(stored)
    for page_no, page in enumerate(client.search(resource_type, params)):
        instants, has_next, matches = _page_facts(page, resource_type)
        if matches:  # an empty page (nothing changed) is not an ingest run
            tally.add(ingest(page, f"{client.base_url}/{resource_type} page {page_no}"), page_no, matches)
        if mark.observe(instants, last_page=not has_next):
            _save_mark(sf, client.base_url, resource_type, mark, now)
    if mark.finish():
        _save_mark(sf, client.base_url, resource_type, mark, now)
    return TypePull(
        resource_type,
        tally.pages,
        tally.resources,
        tally.included,
        tally.accepted,
        len(tally.rejected),
        tally.evidence,
        tally.already_stored,
        start,
        mark.value,
        tuple(tally.rejected),
    )


def _save_mark(sf: SessionFactory, server: str, resource_type: str, mark: _Mark, now: Callable[[], datetime]) -> None:
    assert mark.value is not None
    with sf.begin() as session:
        emr.set_pull_mark(session, server, resource_type, mark.value, now=now())


class _Mark:
    """The high-water mark of one type as pages arrive (see the module docstring for the rules)."""

    def __init__(self, stored: str | None) -> None:
        self.value = stored
        self._at = _instant(stored) if stored is not None else None
        self._greatest: tuple[datetime, str] | None = None
        self._ordered = True
        self._dirty = False

    def observe(self, instants: Sequence[tuple[datetime, str]], *, last_page: bool) -> bool:
        """Take one ingested page's ``lastUpdated`` instants; True when the mark moved (save it now)."""
        for item in instants:
            if self._greatest is not None and item[0] < self._greatest[0]:
                self._ordered = False
            if self._greatest is None or item[0] > self._greatest[0]:
                self._greatest = item
        if not self._ordered or not instants:
            self._dirty = self._dirty or bool(instants)
            return False
        top = max(instants)
        below = [i for i in instants if i[0] < top[0]]
        candidate = top if last_page else (max(below) if below else None)
        return candidate is not None and self._advance(candidate)

    def finish(self) -> bool:
        """After the last page of an unordered search: move to the greatest instant seen; True when moved."""
        if self._ordered or not self._dirty or self._greatest is None:
            return False
        return self._advance(self._greatest)

    def _advance(self, candidate: tuple[datetime, str]) -> bool:
        if self._at is not None and candidate[0] <= self._at:
            return False
        self._at, self.value = candidate
        return True


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _page_facts(page: bytes, resource_type: str) -> tuple[list[tuple[datetime, str]], bool, int]:
    """A page's ``resource_type`` instants (parsed, as sent), whether a next page follows, and its matches.

    Entries of other types (``_include``, an OperationOutcome) and instants that do not parse do
    not move the mark; ingest reports what is wrong with them.
    """
    bundle = json.loads(page)  # the client has checked it is a searchset Bundle
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        entries = [entries]  # ingest reports the malformed page
    instants = list(_instants(entries, resource_type))
    has_next = any(isinstance(x, dict) and x.get("relation") == "next" for x in bundle.get("link") or [])
    return instants, has_next, sum(_resource_type(e) == resource_type for e in entries)


def _resource_type(entry: object) -> object:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    return resource.get("resourceType") if isinstance(resource, dict) else None


def _instants(entries: list[object], resource_type: str) -> Iterator[tuple[datetime, str]]:
    for entry in entries:
        if _resource_type(entry) != resource_type:
            continue
        assert isinstance(entry, dict)
        resource = entry["resource"]
        meta = resource.get("meta")
        raw = meta.get("lastUpdated") if isinstance(meta, dict) else None
        if not isinstance(raw, str):
            continue
        try:
            when = _instant(raw)
        except ValueError:
            continue
        if when.tzinfo is not None:  # an instant has a zone; a naive value cannot be compared safely
            yield when, raw
