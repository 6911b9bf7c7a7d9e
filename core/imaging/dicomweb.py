"""A DICOMweb client for a site's PACS: QIDO-RS search, WADO-RS retrieve and STOW-RS store.

Built on the maintained ``dicomweb-client`` package, which speaks the protocol (query strings,
multipart bodies, DICOM JSON). What this module adds is what an unattended hospital service needs
around it:

- **bounded retries**: a request that cannot reach the server (refused, reset, timed out) or
  that the server answers with 408, 429 or 5xx is tried again after an exponentially growing
  pause (:class:`RetryPolicy`), at most ``max_attempts`` times; then a typed error names the
  endpoint. The library's own retrying (status codes only, no connection errors) is turned off so
  that one policy governs every request;
- **a stop event**: the pauses between tries wait on it, so SIGTERM or Ctrl-C ends a pull at
  once instead of after the backoff; every request has a timeout, so none blocks for ever;
- **authentication** from configuration (HTTP Basic or a bearer token). The secret is never
  part of a URL, a message or a ``repr``: a secret no HTTP header can carry is refused before
  any request, and any text a server sends back is scrubbed of it. Credentials never travel
  over plain ``http`` to a host other than this machine unless the site allows it;
- **bounded answers**: every response body is streamed and counted, and refused once it passes
  ``max_response_bytes`` (a ``Content-Length`` above it is refused before the body is read);
- **paging**: searches walk ``limit``/``offset`` pages until an *empty* page, since a server
  may cap its pages below the ``limit`` asked for. A page that brings no new result (a server
  that ignores ``offset``) ends the search with an error naming the endpoint, and a search
  stops with an error past :data:`MAX_SEARCH_RESULTS` results;
- **checked results**: a study whose UID, date or instance count cannot be read is handed back
  as an :class:`UnreadableStudy` naming the bad value, so the caller rejects that study and goes on;
- **bytes for the gate**: a retrieved instance is handed back as the bytes of a DICOM file,
  which the ingest gate checks like any file (pydicom writes back the file it read unchanged,
  so the bytes are the PACS's own and an instance pulled here and the same file ingested from
  a folder have one SHA-256).

Why dicomweb-client and not hand-written requests: multipart/related parsing and DICOM JSON are
easy to get subtly wrong, and the package is maintained against many PACS (Orthanc, DCM4CHEE,
Google Healthcare).
"""

from __future__ import annotations

import base64
import functools
import io
import ipaddress
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from core.errors import BadInputError, PacsAuthError, PacsServerError, PacsUnreachableError
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.imaging.gate import is_dicom_uid

__all__ = [
    "MAX_SEARCH_RESULTS",
    "DicomwebAuth",
    "DicomwebClient",
    "InstanceHit",
    "Outgoing",
    "RetryPolicy",
    "StoreResult",
    "StudyHit",
    "StudyQuery",
    "UnreadableStudy",
    "is_loopback_url",
    "read_study",
]

#: What :meth:`DicomwebClient.store` sends: a dataset built in memory, or a DICOM file on disk.
Outgoing: TypeAlias = Dataset | Path
#: A QIDO-RS result: one DICOM JSON object (tag -> {"vr": ..., "Value": [...]}).
JsonItem: TypeAlias = dict[str, Any]

#: Statuses that say "try again later" rather than "no".
RETRIABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
#: The most results one search hands back (studies of a date range, or instances of a study). A
#: search matching more ends with an error: narrow it (a later ``--since``) rather than walk an
#: unbounded listing. Far above a day's studies at any hospital, or the instances of any study.
MAX_SEARCH_RESULTS: Final = 100_000
#: Retrieve instances in the transfer syntax the PACS holds them in (no transcoding: the gate
#: judges what the modality sent).
_AS_STORED: Final = (("application/dicom", "*"),)
#: QIDO-RS attribute tags (DICOM JSON keys) read from search results.
_STUDY_UID, _SERIES_UID, _SOP_UID, _SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"
_STUDY_DATE, _ACCESSION, _PATIENT_ID = "00080020", "00080050", "00100020"
_MODALITIES, _N_INSTANCES = "00080061", "00201208"
#: The longest instance count read (an IS value has at most 12 characters, PS3.5 6.2).
_MAX_COUNT_CHARS: Final = 12
#: How much of a bad value a message quotes.
_SHOWN_CHARS: Final = 80
#: Host names that always mean this machine.
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DicomwebAuth:
    """How to authenticate: ``kind`` is ``"none"``, ``"basic"`` (``username``, ``secret``) or ``"bearer"`` (``secret``).

    The secret is left out of ``repr`` so that it never reaches a log or a traceback.

    Raises
    ------
    BadInputError
        Credentials HTTP cannot carry: a bearer token with a line break, a control character or
        a character outside Latin-1 (the HTTP library would quote the whole header, token
        included, in its error), or Basic credentials outside Latin-1 or a user name with ``:``.
        The message never shows the secret.
    """

    kind: str = "none"
    username: str = ""
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.kind == "bearer" and not _header_safe(self.secret):
            raise BadInputError(
                "the bearer token cannot be sent in an HTTP header: it holds a line break, a control "
                "character or a character outside Latin-1 (its value is not shown)"
            )
        if self.kind == "basic" and not _latin1(self.secret):
            raise BadInputError("the basic password holds a character outside Latin-1 (its value is not shown)")
        if self.kind == "basic" and (":" in self.username or not _latin1(self.username)):
            raise BadInputError(f"user name {self.username!r} cannot be sent with HTTP Basic (':' or not Latin-1)")

    def apply(self, session: requests.Session) -> None:
        """Make every request of ``session`` carry these credentials.

        Raises
        ------
        BadInputError
            An unknown ``kind``.
        """
        if self.kind == "basic":
            session.auth = requests.auth.HTTPBasicAuth(self.username, self.secret)
        elif self.kind == "bearer":
            session.auth = _BearerAuth(self.secret)
        elif self.kind != "none":
            raise BadInputError(f"unknown DICOMweb authentication {self.kind!r} (none, basic or bearer)")

    @property
    def sends_credentials(self) -> bool:
        """Whether requests carry a secret."""
        return self.kind != "none" and bool(self.secret)

    def disguises(self) -> tuple[str, ...]:
        """Every form in which the secret can appear on the wire (to scrub from server text), longest first."""
        if not self.secret:
            return ()
        pair = f"{self.username}:{self.secret}"
        forms = {self.secret, pair, base64.b64encode(pair.encode("latin-1", "replace")).decode("ascii")}
        return tuple(sorted(forms, key=len, reverse=True))


def _latin1(text: str) -> bool:
    return all(c <= "\xff" for c in text)


def _header_safe(text: str) -> bool:
    """Whether ``text`` can travel in an HTTP header value: printable Latin-1, no line breaks."""
    return all(" " <= c <= "~" or "\xa0" <= c <= "\xff" for c in text)


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request (the token never enters the URL)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: pause ``base_delay_s * 2**(n-1)`` (at most ``max_delay_s``) after try ``n``.

    The longest a request can take is therefore bounded: ``max_attempts`` timeouts plus the
    pauses between them.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise BadInputError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise BadInputError(f"retry delays must not be negative, got {self.base_delay_s}, {self.max_delay_s}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class StudyQuery:
    """QIDO-RS study search criteria; ``None`` leaves a criterion out.

    Attributes
    ----------
    date_from, date_to : date or None
        Inclusive StudyDate range (either end may be open).
    modality : str or None
        Matched against ModalitiesInStudy (``"DX"``).
    accession_number : str or None
    patient_id : str or None
        The PatientID the PACS holds: the hospital's identifier, or the pseudonym where the PACS
        serves de-identified studies.
    """

    date_from: date | None = None
    date_to: date | None = None
    modality: str | None = None
    accession_number: str | None = None
    patient_id: str | None = None

    def filters(self) -> dict[str, str]:
        """The QIDO-RS query keys and values (a date range as ``YYYYMMDD-YYYYMMDD``)."""
        found: dict[str, str] = {}
        if self.date_from is not None or self.date_to is not None:
            found["StudyDate"] = f"{_da(self.date_from)}-{_da(self.date_to)}"
        for key, value in (
            ("ModalitiesInStudy", self.modality),
            ("AccessionNumber", self.accession_number),
            ("PatientID", self.patient_id),
        ):
            if value is not None:
                found[key] = value
        return found


def _da(day: date | None) -> str:
    return day.strftime("%Y%m%d") if day is not None else ""


@dataclass(frozen=True, slots=True)
class StudyHit:
    """One study a search found; ``n_instances`` is None when the server does not say."""

    study_uid: str
    study_date: str
    accession_number: str
    patient_id: str
    modalities: tuple[str, ...]
    n_instances: int | None

    @property
    def counted(self) -> bool:
        """Whether the server said how many instances the study has (0 is taken as "not said")."""
        return self.n_instances is not None and self.n_instances > 0


@dataclass(frozen=True, slots=True)
class UnreadableStudy:
    """A search result that cannot be used: ``study_uid`` as the server sent it (maybe ``""``), and why.

    ``reason`` names the bad value, quoted and shortened.
    """

    study_uid: str
    reason: str


def read_study(item: JsonItem) -> StudyHit | UnreadableStudy:
    """One QIDO-RS study result, checked: a valid UID, a ``YYYYMMDD`` date (or none), a whole instance count (or none).

    A missing ``NumberOfStudyRelatedInstances`` gives ``n_instances=None``; a present but
    unreadable one (``"3x"``, ``"²"``, ``-1``, ``2.5``) makes the study unreadable.
    """
    uid = _first(item, _STUDY_UID)
    if not is_dicom_uid(uid):
        return UnreadableStudy(uid, f"StudyInstanceUID {_shown(uid)} is not a valid UID")
    day = _first(item, _STUDY_DATE)
    if day and not _is_da(day):
        return UnreadableStudy(uid, f"StudyDate {_shown(day)} is not a date YYYYMMDD")
    count = _first(item, _N_INSTANCES).strip()
    if count and not (len(count) <= _MAX_COUNT_CHARS and count.isascii() and count.isdigit()):
        return UnreadableStudy(uid, f"NumberOfStudyRelatedInstances {_shown(count)} is not a whole number")
    return StudyHit(
        study_uid=uid,
        study_date=day,
        accession_number=_first(item, _ACCESSION),
        patient_id=_first(item, _PATIENT_ID),
        modalities=tuple(str(v) for v in _values(item, _MODALITIES)),
        n_instances=int(count) if count else None,
    )


def _is_da(text: str) -> bool:
    if len(text) != 8 or not (text.isascii() and text.isdigit()):
        return False
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return True


def _shown(value: str) -> str:
    """``value`` quoted for a message, shortened: a server's bad value can be arbitrarily long."""
    return repr(value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "…")


@dataclass(frozen=True, slots=True)
class InstanceHit:
    """One instance of a study, as QIDO-RS lists it."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What a STOW-RS store did: the SOP Instance UIDs stored, and ``(uid, reason)`` of those refused."""

    stored: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]


class _TooLargeError(Exception):
    """A response body passed the client's limit (turned into a :class:`PacsServerError` by ``_call``)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        said = f" (it declares {declared} bytes)" if declared is not None else ""
        super().__init__(f"the answer is larger than the limit of {limit} bytes{said}; refused unread")


class _CappedBody:
    """A response's raw stream that raises :class:`_TooLargeError` once more than ``limit`` bytes are read.

    ``requests`` reads a body through ``raw.stream`` (decoded: the count is of what would sit in
    memory, so a compressed bomb is caught too); everything else is the wrapped stream's.
    """

    def __init__(self, raw: Any, limit: int) -> None:
        self._raw, self._limit = raw, limit

    def stream(self, amt: int | None = None, decode_content: bool | None = None) -> Iterator[bytes]:
        read = 0
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            read += len(chunk)
            if read > self._limit:
                self._raw.close()  # the rest of the body is never read
                raise _TooLargeError(self._limit)
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class DicomwebClient:
    """One DICOMweb service, with retries, timeouts, bounded answers and authentication (see the module docstring).

    Parameters
    ----------
    url : str
        The DICOMweb base URL (QIDO, WADO and STOW under one root, as Orthanc and DCM4CHEE serve them).
    auth : DicomwebAuth
    timeout_s : float
        Seconds to connect, and to wait for each read of an answer.
    retry : RetryPolicy
    stop : threading.Event, optional
        The pauses between tries wait on it; once set, no further try is made (the request
        ends with :class:`PacsUnreachableError` saying it was stopped).
    sleep : callable, optional
        Pauses instead of waiting on ``stop`` (tests pass a recorder); ``stop`` is still
        looked at after each pause.
    max_response_bytes : int
        The largest answer read, in bytes (the configured ``max_file_mb``): a bigger one is
        refused with :class:`PacsServerError`, after reading at most this much of it.
    allow_insecure_http : bool
        Send credentials over plain ``http`` to a host other than this machine (off: refused).

    Raises
    ------
    BadInputError
        A URL the library cannot use, an unknown authentication kind, a limit below 1, or
        credentials over plain ``http`` to another host without ``allow_insecure_http``.
    """

    def __init__(  # noqa: PLR0913 - keyword-only; each is one documented knob
        self,
        url: str,
        *,
        auth: DicomwebAuth | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], object] | None = None,
        max_response_bytes: int = DEFAULT_MAX_FILE_BYTES,
        allow_insecure_http: bool = False,
    ) -> None:
        auth = auth or DicomwebAuth()
        self.base_url = url.rstrip("/")
        if not timeout_s > 0:
            raise BadInputError(f"timeout_s must be above 0, got {timeout_s!r}")
        if max_response_bytes < 1:
            raise BadInputError(f"max_response_bytes must be at least 1, got {max_response_bytes!r}")
        insecure = urlsplit(self.base_url).scheme == "http" and not is_loopback_url(self.base_url)
        if insecure and auth.sends_credentials and not allow_insecure_http:
            raise BadInputError(
                f"refusing to send {auth.kind} credentials over plain http to {self.base_url}: use https, "
                "or set allow_insecure_http = true for this site"
            )
        self.retry = retry or RetryPolicy()
        self.max_response_bytes = max_response_bytes
        self._stop = stop if stop is not None else threading.Event()
        self._pause: Callable[[float], object] = sleep if sleep is not None else self._stop.wait
        self._disguises = auth.disguises()
        self._session = requests.Session()
        auth.apply(self._session)
        self._session.hooks["response"].append(self._cap)
        try:
            self._client = DICOMwebClient(self.base_url, session=self._session, timeout=timeout_s)
        except ValueError as exc:
            raise BadInputError(f"cannot use DICOMweb URL {url!r}: {exc}") from exc
        self._client.set_http_retry_params(retry=False)  # one policy for every request: ours

    def close(self) -> None:
        """Release the connection pool."""
        self._session.close()

    def __enter__(self) -> DicomwebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cap(self, response: requests.Response, *_args: object, **_kwargs: object) -> requests.Response:
        """Response hook: refuse a declared length over the limit, and count the body as it is read.

        ``requests`` runs response hooks before it reads the body, so the body is only ever
        read through :class:`_CappedBody`.
        """
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_response_bytes:
            response.close()
            raise _TooLargeError(self.max_response_bytes, int(declared))
        response.raw = _CappedBody(response.raw, self.max_response_bytes)
        return response

    # --- QIDO-RS ---------------------------------------------------------------------------------

    def check(self) -> None:
        """Ask the server for one study: proves it answers and accepts the credentials.

        Raises
        ------
        PacsUnreachableError, PacsAuthError, PacsServerError
        """
        self._call("search for studies", lambda: self._client.search_for_studies(limit=1))

    def search_studies(
        self, query: StudyQuery, *, page_size: int = 100, max_results: int = MAX_SEARCH_RESULTS
    ) -> Iterator[StudyHit | UnreadableStudy]:
        """Every study matching ``query``, page by page (``limit``/``offset``), in the server's order.

        A result whose UID, date or instance count cannot be read comes as an
        :class:`UnreadableStudy` (see :func:`read_study`); the search goes on.

        Raises
        ------
        PacsUnreachableError, PacsAuthError
        PacsServerError
            An error status, an unreadable page, a server that ignores ``offset``, or more than
            ``max_results`` studies.
        """
        fields = ("StudyDate", "AccessionNumber", "PatientID", "ModalitiesInStudy", "NumberOfStudyRelatedInstances")
        for item in self._pages(
            "search for studies",
            lambda limit, offset: self._client.search_for_studies(
                limit=limit, offset=offset, fields=fields, search_filters=query.filters()
            ),
            key=_STUDY_UID,
            page_size=page_size,
            max_results=max_results,
        ):
            yield read_study(item)

    def search_instances(
        self, study_uid: str, *, page_size: int = 1000, max_results: int = MAX_SEARCH_RESULTS
    ) -> list[InstanceHit]:
        """Every instance of ``study_uid``, sorted by series and SOP Instance UID (the UIDs as the server sends them).

        Raises
        ------
        PacsUnreachableError, PacsAuthError, PacsServerError
        """
        found = [
            InstanceHit(study_uid, _first(item, _SERIES_UID), _first(item, _SOP_UID), _first(item, _SOP_CLASS))
            for item in self._pages(
                f"search for instances of study {study_uid}",
                lambda limit, offset: self._client.search_for_instances(study_uid, limit=limit, offset=offset),
                key=_SOP_UID,
                page_size=page_size,
                max_results=max_results,
            )
        ]
        return sorted(found, key=lambda hit: (hit.series_uid, hit.sop_instance_uid))

    def _pages(
        self,
        what: str,
        search: Callable[[int, int], object],
        *,
        key: str,
        page_size: int,
        max_results: int,
    ) -> Iterator[JsonItem]:
        """Walk ``search(limit, offset)`` until an empty page; each result once (told apart by the tag ``key``).

        A server may answer fewer than ``limit`` results per page (its own cap), so only an
        empty page ends the walk. A page with nothing new means the server ignores ``offset``:
        walking on would never end, and stopping quietly would miss studies, so it is an error.
        """
        if page_size < 1 or max_results < 1:
            raise BadInputError(f"page size and result cap must be at least 1, got {page_size}, {max_results}")
        seen: set[str] = set()
        offset = 0
        while True:
            page = _json_page(self.base_url, what, self._call(what, functools.partial(search, page_size, offset)))
            if not page:
                return
            fresh = [(name, item) for item in page if (name := _identity(item, key)) not in seen]
            if not fresh:
                raise PacsServerError(
                    self.base_url,
                    f"{what}: the page at offset {offset} repeats results already listed; the server "
                    "seems to ignore 'offset', so the search cannot be completed",
                )
            for name, item in fresh:
                if len(seen) >= max_results:
                    raise PacsServerError(
                        self.base_url, f"{what}: more than {max_results} results; narrow the search (a later date)"
                    )
                seen.add(name)
                yield item
            offset += len(page)

    # --- WADO-RS ---------------------------------------------------------------------------------

    def retrieve_instance(self, hit: InstanceHit) -> bytes:
        """The DICOM file of one instance, as the PACS stores it.

        Raises
        ------
        PacsUnreachableError, PacsAuthError
        PacsServerError
            The server refuses the instance, sends something that is not DICOM, or an answer
            larger than ``max_response_bytes``.
        """
        dataset = self._call(
            f"retrieve instance {hit.sop_instance_uid} of study {hit.study_uid}",
            lambda: self._client.retrieve_instance(
                hit.study_uid, hit.series_uid, hit.sop_instance_uid, media_types=_AS_STORED
            ),
        )
        return _file_bytes(dataset)

    def retrieve_study(self, study_uid: str) -> list[bytes]:
        """Every instance of ``study_uid`` in one WADO-RS request, as DICOM files (one answer: one size limit).

        Raises
        ------
        PacsUnreachableError, PacsAuthError, PacsServerError
        """
        datasets = self._call(
            f"retrieve study {study_uid}", lambda: self._client.retrieve_study(study_uid, media_types=_AS_STORED)
        )
        return [_file_bytes(ds) for ds in datasets]

    # --- STOW-RS ---------------------------------------------------------------------------------

    def store(self, objects: Sequence[Outgoing], *, study_uid: str) -> StoreResult:
        """Send ``objects`` into ``study_uid`` on the server in one STOW-RS request.

        Parameters
        ----------
        objects : sequence of Dataset or Path
            Each must belong to ``study_uid`` (the server refuses others).
        study_uid : str

        Raises
        ------
        BadInputError
            A file cannot be read as DICOM, or an object of another study; nothing is sent.
        PacsUnreachableError, PacsAuthError, PacsServerError
        """
        datasets = [_outgoing(obj) for obj in objects]
        for ds in datasets:
            if str(ds.get("StudyInstanceUID", "")) != study_uid:
                raise BadInputError(
                    f"object {ds.get('SOPInstanceUID', '?')} belongs to study {ds.get('StudyInstanceUID', '?')}, "
                    f"not {study_uid}; nothing sent"
                )
        reply = self._call(
            f"store {len(datasets)} instance(s) in study {study_uid}",
            lambda: self._client.store_instances(datasets, study_instance_uid=study_uid),
        )
        stored = tuple(str(item.ReferencedSOPInstanceUID) for item in reply.get("ReferencedSOPSequence", []))
        failed = tuple(
            (str(item.get("ReferencedSOPInstanceUID", "?")), _failure_reason(item))
            for item in reply.get("FailedSOPSequence", [])
        )
        return StoreResult(stored, failed)

    # --- retries ---------------------------------------------------------------------------------

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """Run ``request`` under :attr:`retry`; turn every failure into a typed error naming the endpoint.

        Text from the server is scrubbed of the secret before it reaches a message.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return request()
            except _TooLargeError as exc:
                raise PacsServerError(self.base_url, f"{what}: {exc}") from None
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (401, 403):
                    raise PacsAuthError(self.base_url, f"{what}: credentials refused", status) from None
                if status not in RETRIABLE_STATUS or attempt >= self.retry.max_attempts:
                    raise PacsServerError(
                        self.base_url, self._scrub(f"{what}: {_body(exc.response)}"), status
                    ) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if attempt >= self.retry.max_attempts:
                    raise PacsUnreachableError(self.base_url, attempt, f"{what}: {type(exc).__name__}") from exc
            except (ValueError, KeyError, AttributeError, OSError, InvalidDicomError) as exc:  # an undecodable body
                # Not chained: such an error can quote a header, and so the secret, in its text.
                detail = self._scrub(f"{what}: unreadable answer ({type(exc).__name__}: {str(exc)[:200]})")
                raise PacsServerError(self.base_url, detail) from None
            # Waiting on the stop event: SIGTERM or Ctrl-C ends the pause, and the request, at once.
            self._pause(self.retry.delay(attempt))
            if self._stop.is_set():
                raise PacsUnreachableError(self.base_url, attempt, f"{what}: stopped before the next try")

    def _scrub(self, text: str) -> str:
        """``text`` without any form of the secret (a server may echo the request's headers)."""
        for disguise in self._disguises:
            text = text.replace(disguise, "***")
        return text


def _json_page(endpoint: str, what: str, page: object) -> list[JsonItem]:
    """A QIDO-RS answer as a list of DICOM JSON objects.

    Raises
    ------
    PacsServerError
        Anything else (a string, a list of numbers): the server's answer cannot be read.
    """
    if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
        raise PacsServerError(endpoint, f"{what}: unreadable answer (not a list of DICOM JSON objects)")
    return page


def _identity(item: JsonItem, tag: str) -> str:
    """What tells one result from another: its UID, or (without one) the whole object."""
    return _first(item, tag) or json.dumps(item, sort_keys=True, default=str)


def _first(item: JsonItem, tag: str) -> str:
    """The first value of ``tag`` in a DICOM JSON object as text; ``""`` when absent."""
    values = _values(item, tag)
    return str(values[0]) if values else ""


def _values(item: JsonItem, tag: str) -> list[object]:
    element = item.get(tag) or {}
    values = element.get("Value") if isinstance(element, dict) else None
    return list(values) if isinstance(values, list) else []


def _file_bytes(dataset: Dataset) -> bytes:
    """``dataset`` written back as the DICOM file it was read from (preamble and file meta included)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset)
    return buffer.getvalue()


def _outgoing(obj: Outgoing) -> Dataset:
    if isinstance(obj, Dataset):
        return obj
    try:
        return dcmread(obj)
    except (OSError, ValueError, InvalidDicomError) as exc:
        raise BadInputError(f"cannot read {obj} as DICOM to send it: {exc}") from exc


def _failure_reason(item: Dataset) -> str:
    reason = item.get("FailureReason")
    return f"failure reason 0x{int(reason):04X}" if reason is not None else "refused without a reason"


def _body(response: requests.Response | None) -> str:
    """The first line of an error body (servers explain a refusal there), bounded."""
    if response is None:
        return "no response"
    text = (response.text or "").strip().splitlines()
    return (text[0][:200] if text else response.reason or "error").strip()
