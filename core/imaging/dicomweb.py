"""A DICOMweb client for a site's PACS: QIDO-RS search, WADO-RS retrieve and STOW-RS store.

Built on the maintained ``dicomweb-client`` package, which speaks the protocol (query strings,
multipart bodies, DICOM JSON). What this module adds is what an unattended hospital service needs
around it:

- **bounded retries**: a request that cannot reach the server (refused, reset, timed out) or
  that the server answers with 408, 429 or 5xx is tried again after an exponentially growing
  pause (:class:`RetryPolicy`), at most ``max_attempts`` times; then a typed error names the
  endpoint. The library's own retrying (status codes only, no connection errors) is turned off so
  that one policy governs every request;
- **timeouts** on every request, and **authentication** from configuration (HTTP Basic or a
  bearer token; the secret is never part of a URL, a message or a ``repr``);
- **paging**: searches walk ``limit``/``offset`` pages until a short page;
- **bytes for the gate**: a retrieved instance is handed back as the bytes of a DICOM file,
  which the ingest gate checks like any file (pydicom writes back the file it read unchanged,
  so the bytes are the PACS's own and an instance pulled here and the same file ingested from
  a folder have one SHA-256).

Why dicomweb-client and not hand-written requests: multipart/related parsing and DICOM JSON are
easy to get subtly wrong, and the package is maintained against many PACS (Orthanc, DCM4CHEE,
Google Healthcare).
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from core.errors import BadInputError, PacsAuthError, PacsServerError, PacsUnreachableError

__all__ = [
    "DicomwebAuth",
    "DicomwebClient",
    "InstanceHit",
    "Outgoing",
    "RetryPolicy",
    "StoreResult",
    "StudyHit",
    "StudyQuery",
]

#: What :meth:`DicomwebClient.store` sends: a dataset built in memory, or a DICOM file on disk.
Outgoing: TypeAlias = Dataset | Path

#: Statuses that say "try again later" rather than "no".
RETRIABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
#: Retrieve instances in the transfer syntax the PACS holds them in (no transcoding: the gate
#: judges what the modality sent).
_AS_STORED: Final = (("application/dicom", "*"),)
#: QIDO-RS attribute tags (DICOM JSON keys) read from search results.
_STUDY_UID, _SERIES_UID, _SOP_UID, _SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"
_STUDY_DATE, _ACCESSION, _PATIENT_ID = "00080020", "00080050", "00100020"
_MODALITIES, _N_INSTANCES = "00080061", "00201208"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DicomwebAuth:
    """How to authenticate: ``kind`` is ``"none"``, ``"basic"`` (``username``, ``secret``) or ``"bearer"`` (``secret``).

    The secret is left out of ``repr`` so that it never reaches a log or a traceback.
    """

    kind: str = "none"
    username: str = ""
    secret: str = field(default="", repr=False)

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


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request (the token never enters the URL)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


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


class DicomwebClient:
    """One DICOMweb service, with retries, timeouts and authentication (see the module docstring).

    Parameters
    ----------
    url : str
        The DICOMweb base URL (QIDO, WADO and STOW under one root, as Orthanc and DCM4CHEE serve them).
    auth : DicomwebAuth
    timeout_s : float
        Seconds to connect, and to wait for each answer.
    retry : RetryPolicy
    sleep : callable
        How to pause between tries (``time.sleep``; tests pass a recorder).

    Raises
    ------
    BadInputError
        A URL the library cannot use, or an unknown authentication kind.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: DicomwebAuth | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._session = requests.Session()
        (auth or DicomwebAuth()).apply(self._session)
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

    # --- QIDO-RS ---------------------------------------------------------------------------------

    def check(self) -> None:
        """Ask the server for one study: proves it answers and accepts the credentials.

        Raises
        ------
        PacsUnreachableError, PacsAuthError, PacsServerError
        """
        self._call("search for studies", lambda: self._client.search_for_studies(limit=1))

    def search_studies(self, query: StudyQuery, *, page_size: int = 100) -> Iterator[StudyHit]:
        """Every study matching ``query``, page by page (``limit``/``offset``), in the server's order.

        Raises
        ------
        PacsUnreachableError, PacsAuthError, PacsServerError
        """
        fields = ("StudyDate", "AccessionNumber", "PatientID", "ModalitiesInStudy", "NumberOfStudyRelatedInstances")
        for item in self._pages(
            "search for studies",
            lambda limit, offset: self._client.search_for_studies(
                limit=limit, offset=offset, fields=fields, search_filters=query.filters()
            ),
            page_size,
        ):
            n = _first(item, _N_INSTANCES)
            yield StudyHit(
                study_uid=_first(item, _STUDY_UID),
                study_date=_first(item, _STUDY_DATE),
                accession_number=_first(item, _ACCESSION),
                patient_id=_first(item, _PATIENT_ID),
                modalities=tuple(str(v) for v in _values(item, _MODALITIES)),
                n_instances=int(n) if n.isdigit() else None,
            )

    def search_instances(self, study_uid: str, *, page_size: int = 1000) -> list[InstanceHit]:
        """Every instance of ``study_uid``, sorted by series and SOP Instance UID.

        Raises
        ------
        PacsUnreachableError, PacsAuthError, PacsServerError
        """
        found = [
            InstanceHit(study_uid, _first(item, _SERIES_UID), _first(item, _SOP_UID), _first(item, _SOP_CLASS))
            for item in self._pages(
                f"search for instances of study {study_uid}",
                lambda limit, offset: self._client.search_for_instances(study_uid, limit=limit, offset=offset),
                page_size,
            )
        ]
        return sorted(found, key=lambda hit: (hit.series_uid, hit.sop_instance_uid))

    def _pages(
        self, what: str, search: Callable[[int, int], list[dict[str, dict[str, object]]]], page_size: int
    ) -> Iterator[dict[str, dict[str, object]]]:
        """Walk ``search(limit, offset)`` until a page comes back shorter than ``page_size``."""
        if page_size < 1:
            raise BadInputError(f"page size must be at least 1, got {page_size}")
        offset = 0
        while True:
            page = self._call(what, functools.partial(search, page_size, offset))
            yield from page
            if len(page) < page_size:
                return
            offset += len(page)

    # --- WADO-RS ---------------------------------------------------------------------------------

    def retrieve_instance(self, hit: InstanceHit) -> bytes:
        """The DICOM file of one instance, as the PACS stores it.

        Raises
        ------
        PacsUnreachableError, PacsAuthError
        PacsServerError
            The server refuses the instance or sends something that is not DICOM.
        """
        dataset = self._call(
            f"retrieve instance {hit.sop_instance_uid} of study {hit.study_uid}",
            lambda: self._client.retrieve_instance(
                hit.study_uid, hit.series_uid, hit.sop_instance_uid, media_types=_AS_STORED
            ),
        )
        return _file_bytes(dataset)

    def retrieve_study(self, study_uid: str) -> list[bytes]:
        """Every instance of ``study_uid`` in one WADO-RS request, as DICOM files.

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
        """Run ``request`` under :attr:`retry`; turn every failure into a typed error naming the endpoint."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return request()
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (401, 403):
                    raise PacsAuthError(self.base_url, f"{what}: credentials refused", status) from exc
                if status not in RETRIABLE_STATUS or attempt >= self.retry.max_attempts:
                    raise PacsServerError(self.base_url, f"{what}: {_body(exc.response)}", status) from exc
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if attempt >= self.retry.max_attempts:
                    raise PacsUnreachableError(self.base_url, attempt, f"{what}: {type(exc).__name__}") from exc
            except (ValueError, KeyError, AttributeError, OSError, InvalidDicomError) as exc:  # an undecodable body
                raise PacsServerError(
                    self.base_url, f"{what}: unreadable answer ({type(exc).__name__}: {exc})"
                ) from exc
            self._sleep(self.retry.delay(attempt))


def _first(item: dict[str, dict[str, object]], tag: str) -> str:
    """The first value of ``tag`` in a DICOM JSON object as text; ``""`` when absent."""
    values = _values(item, tag)
    return str(values[0]) if values else ""


def _values(item: dict[str, dict[str, object]], tag: str) -> list[object]:
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
