"""A client for a FHIR R4 REST server: searches that page through ``next`` links, with a bearer token and retries.

This is the one module of Vigil that talks HTTP to an EMR. It returns each searchset page as the
raw bytes the server sent (parsing and validation are :func:`core.fhir.parse_payload`'s job), and
it is careful about what it will follow and what it will hold:

* only ``http`` and ``https`` base URLs, without credentials in them, and ``next`` links only to
  the same origin (scheme, host, port) as the base URL: a server that points the client elsewhere
  would otherwise receive the bearer token too;
* a bearer token read from a :class:`TokenFile` on first use and read again on a 401 (a token
  that a sidecar refreshes on disk has then been replaced); a second 401 for the same request is
  a :class:`~core.errors.FhirAuthError` that names the URL, never the token;
* retries with exponential backoff and jitter on connection errors, timeouts, 429 (waiting at
  least ``Retry-After`` seconds) and 5xx; every other status is an error at once;
* a size cap on each response and a JSON content type.

URLs in errors have the values of patient-identifying search parameters masked (``patient=***``).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from core.errors import BadInputError, FhirAuthError, FhirServerError, FhirUrlError, OutOfRangeError, PathNotFoundError

__all__ = [
    "ACCEPTED_CONTENT_TYPES",
    "DEFAULT_MAX_BYTES",
    "FhirClient",
    "RetryPolicy",
    "Timeouts",
    "TokenFile",
    "TokenSource",
    "backoff_delay",
    "mask_url",
    "search_params",
]

#: Media types a FHIR JSON response may carry (R4 3.1.0.1.7: the server may answer plain JSON).
ACCEPTED_CONTENT_TYPES: Final = frozenset({"application/fhir+json", "application/json"})
#: 64 MiB: a searchset page of a few hundred resources with notes is well under 10 MiB.
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
#: The largest ``_count`` asked for; servers cap pages anyway, and one page is one transaction.
MAX_COUNT: Final = 1000
#: Search parameters whose values identify a patient; masked wherever a URL is shown.
_IDENTIFYING_PARAMS: Final = frozenset(
    {"patient", "subject", "identifier", "_id", "name", "family", "given", "birthdate", "telecom", "phone", "email"}
)
_RESOURCE_TYPE: Final = re.compile(r"[A-Z][A-Za-z]{1,63}")
# FHIR date, dateTime or instant (R4 2.24.0.3), optionally behind a search prefix.
_FHIR_DATE: Final = re.compile(
    r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?"
    r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_TOKEN_CHARS: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CHUNK: Final = 64 * 1024


class TokenSource(Protocol):
    """Something that returns the current bearer token each time it is called (it may read a file)."""

    def __call__(self) -> str:
        """Return the token to send now."""
        ...


@dataclass(frozen=True, slots=True)
class TokenFile:
    """A bearer token kept in a file, read afresh on every call (so a refreshed token is picked up).

    The file holds the token alone; surrounding whitespace is ignored. Errors name the file, never
    its content.
    """

    path: Path

    def __call__(self) -> str:
        """Read the token now."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise PathNotFoundError(self.path) from None
        except OSError as exc:
            raise BadInputError(f"cannot read the token file {self.path}: {exc.strerror}") from None
        try:
            token = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise BadInputError(f"token file {self.path} is not ASCII; a bearer token is") from None
        if not _TOKEN_CHARS.fullmatch(token):
            raise BadInputError(
                f"token file {self.path} does not hold one bearer token (empty, spaces or odd characters)"
            )
        return token


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a request is retried.

    Attributes
    ----------
    max_attempts : int
        Tries per request, the first included (a re-read token after a 401 does not count).
    base_delay : float
        Seconds before the second try; it doubles on each further try, up to ``max_delay``.
    max_delay : float
        Cap of one backoff wait, in seconds.
    max_retry_after : float
        The longest ``Retry-After`` honoured, in seconds; a server asking for more is an error
        rather than a silent stall.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 20:
            raise OutOfRangeError("max_attempts", self.max_attempts, 1, 20)
        if not 0 <= self.base_delay <= self.max_delay:
            raise BadInputError(
                f"backoff delays must satisfy 0 <= base <= max, got {self.base_delay}, {self.max_delay}"
            )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for the connection, and for each read from the socket (not the whole body)."""

    connect: float = 5.0
    read: float = 60.0


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait after failed try number ``attempt`` (1-based): exponential, with "equal jitter".

    Half of ``min(max_delay, base_delay * 2**(attempt-1))`` is fixed and the other half uniform at
    random, so clients that failed together do not retry together yet never retry sooner than half
    the nominal wait.
    """
    nominal = min(policy.max_delay, policy.base_delay * 2.0 ** (attempt - 1))
    return nominal / 2 + rng.uniform(0.0, nominal / 2)


def mask_url(url: str) -> str:
    """``url`` with the values of patient-identifying query parameters replaced by ``***``, for errors and logs."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked = [(k, "***" if k.split(":")[0] in _IDENTIFYING_PARAMS else v) for k, v in pairs]
    return urlunsplit(parts._replace(query=urlencode(masked, safe="*:,")))


def search_params(
    *,
    patient: str | None = None,
    date: Sequence[str] = (),
    last_updated_gt: str | None = None,
    sort: str | None = None,
    count: int | None = None,
) -> tuple[tuple[str, str], ...]:
    """The query of a FHIR search, checked: by patient, by date, changed since a mark, sorted, paged.

    Parameters
    ----------
    patient : str, optional
        A patient reference (``Patient/123``) or id.
    date : sequence of str
        ``date`` search values with their prefix, e.g. ``("ge2024-01-01", "lt2024-07-01")``.
    last_updated_gt : str, optional
        A FHIR instant: only resources changed after it (``_lastUpdated=gt...``).
    sort : str, optional
        ``_sort`` value, e.g. ``"_lastUpdated"``.
    count : int, optional
        Page size asked for, 1 to :data:`MAX_COUNT`.

    Returns
    -------
    tuple of (name, value)
        In the order given; a name may repeat (two ``date`` bounds).
    """
    params: list[tuple[str, str]] = []
    if patient is not None:
        if not patient or any(c.isspace() for c in patient):
            raise BadInputError(f"patient search value {patient!r} is empty or has spaces")
        params.append(("patient", patient))
    for value in date:
        params.append(("date", _checked_date(value)))
    if last_updated_gt is not None:
        if not _FHIR_DATE.fullmatch(last_updated_gt) or last_updated_gt[:2].isalpha():
            raise BadInputError(f"_lastUpdated mark {last_updated_gt!r} is not a FHIR instant")
        params.append(("_lastUpdated", f"gt{last_updated_gt}"))
    if sort is not None:
        params.append(("_sort", sort))
    if count is not None:
        if not 1 <= count <= MAX_COUNT:
            raise OutOfRangeError("_count", count, 1, MAX_COUNT)
        params.append(("_count", str(count)))
    return tuple(params)


def _checked_date(value: str) -> str:
    if not _FHIR_DATE.fullmatch(value):
        raise BadInputError(f"date search value {value!r} is not a FHIR date with an optional prefix (ge2024-01-01)")
    return value


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> _Origin:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise FhirUrlError(mask_url(url), "the port is not a number from 0 to 65535") from None
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme.lower(), (parts.hostname or "").lower(), port or default)


def _checked_base(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise FhirUrlError(url, f"scheme {parts.scheme or '(none)'!r} is not http or https")
    if not parts.hostname:
        raise FhirUrlError(url, "no host")
    if parts.username is not None or parts.password is not None:
        # Do not echo the password back; the token belongs in --token-file.
        raise FhirUrlError(url.replace(parts.netloc, parts.hostname), "credentials in the URL; use a token file")
    if parts.query or parts.fragment:
        raise FhirUrlError(url, "a base URL has no query or fragment")
    _Origin.of(url)  # the port parses
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


class FhirClient:
    """Searches on one FHIR server, page by page.

    Parameters
    ----------
    base_url : str
        The server's service base, e.g. ``https://emr.example.org/fhir`` (http or https).
    token : TokenSource, optional
        Bearer token source; without one, requests carry no ``Authorization`` header.
    retry : RetryPolicy
    timeouts : Timeouts
    max_bytes : int
        Largest response body accepted, in bytes.
    sleep : callable
        Waits between tries (``time.sleep``; tests pass a recorder).
    rng : random.Random, optional
        Jitter source (seed it for reproducible waits).
    session : requests.Session, optional
        Connection pool to use; the client closes only a session it created.

    Raises
    ------
    FhirUrlError
        ``base_url`` is not an http(s) URL with a host, or carries credentials.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSource | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._base = _checked_base(base_url)
        self._origin = _Origin.of(self._base)
        self._token_source = token
        self._token: str | None = None
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        if max_bytes < 1:
            raise BadInputError(f"max_bytes must be positive, got {max_bytes}")
        self._max_bytes = max_bytes
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._owns_session = session is None
        self._session = session or requests.Session()
        #: Requests sent, retries and token re-reads included (a counter for reports and tests).
        self.requests_sent = 0

    @property
    def base_url(self) -> str:
        """The service base, without a trailing slash: the key under which pull marks are kept."""
        return self._base

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool if this client opened it."""
        if self._owns_session:
            self._session.close()

    # --- searching -------------------------------------------------------------------------------

    def search(self, resource_type: str, params: Sequence[tuple[str, str]] | Mapping[str, str] = ()) -> Iterator[bytes]:
        """Yield each page of a search as the raw searchset Bundle bytes, following ``next`` links.

        Parameters
        ----------
        resource_type : str
            e.g. ``"Observation"``.
        params : sequence of (name, value) or mapping
            The query (see :func:`search_params`).

        Raises
        ------
        FhirServerError
            A page failed after retries, is not a searchset Bundle, or its ``next`` link repeats.
        FhirUrlError
            A ``next`` link leaves the server's origin (it is not followed).
        FhirAuthError
            The token was refused twice.
        """
        if not _RESOURCE_TYPE.fullmatch(resource_type):
            raise BadInputError(f"{resource_type!r} is not a FHIR resource type name")
        pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
        url: str | None = f"{self._base}/{resource_type}" + (f"?{urlencode(pairs)}" if pairs else "")
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            page = self.get(url)
            yield page
            url = self._next_link(url, page)
            if url is not None and url in seen:
                raise FhirServerError(mask_url(url), "the next link repeats a page already read (a paging loop)")

    def _next_link(self, url: str, page: bytes) -> str | None:
        """The absolute URL of the page after ``page``, checked to stay on this server; None on the last page."""
        try:
            bundle = json.loads(page)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FhirServerError(mask_url(url), f"the page is not JSON ({exc})") from None
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            kind = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
            raise FhirServerError(mask_url(url), f"expected a searchset Bundle, got {kind!r}")
        if bundle.get("type") != "searchset":
            raise FhirServerError(mask_url(url), f"expected a searchset Bundle, got type {bundle.get('type')!r}")
        links = bundle.get("link") or []
        nexts = [link.get("url") for link in links if isinstance(link, dict) and link.get("relation") == "next"]
        if not nexts:
            return None
        target = nexts[0]
        if not isinstance(target, str) or not target:
            raise FhirServerError(mask_url(url), f"the next link's url is {target!r}")
        absolute = urljoin(url, target)
        if _Origin.of(absolute) != self._origin:
            raise FhirUrlError(mask_url(absolute), f"the next link leaves the server {self._base}; not followed")
        return absolute

    # --- one request -----------------------------------------------------------------------------

    def get(self, url: str) -> bytes:
        """GET ``url`` (on this server) with the token, retries and checks; return the body.

        Raises
        ------
        FhirUrlError
            ``url`` is on another origin.
        FhirAuthError
            401 twice (the token re-read between), or 403.
        FhirServerError
            Any other error status, retries exhausted, too large, or not JSON.
        """
        if _Origin.of(url) != self._origin:
            raise FhirUrlError(mask_url(url), f"not on the server {self._base}")
        reread = False
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._send(url)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if isinstance(exc, requests.exceptions.SSLError):
                    raise FhirServerError(mask_url(url), f"TLS failed: {type(exc).__name__}") from None
                self._wait_or_give_up(url, attempt, f"{type(exc).__name__} after {attempt} tries", None, None)
                continue
            with resp:
                status = resp.status_code
                if status == 401 and self._token_source is not None and not reread:
                    # An expired token: read the file again (a refresher may have replaced it) and retry once.
                    reread = True
                    attempt -= 1
                    self._token = None
                    continue
                if status in (401, 403):
                    raise FhirAuthError(mask_url(url), _auth_detail(status, self._token_source is not None), status)
                if status == 429 or status >= 500:
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                    self._wait_or_give_up(
                        url, attempt, f"{resp.reason or 'error'} after {attempt} tries", status, retry_after
                    )
                    continue
                if status != 200:
                    raise FhirServerError(mask_url(url), resp.reason or "unexpected status", status)
                try:
                    return self._body(url, resp)
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                    # urllib3 reports a read timeout or a dropped connection inside the body this way.
                    self._wait_or_give_up(
                        url, attempt, f"{type(exc).__name__} mid-body after {attempt} tries", None, None
                    )

    def _send(self, url: str) -> requests.Response:
        headers = {"Accept": "application/fhir+json"}
        if self._token_source is not None:
            if self._token is None:
                self._token = self._token_source()
            headers["Authorization"] = f"Bearer {self._token}"
        self.requests_sent += 1
        response: requests.Response = self._session.get(
            url,
            headers=headers,
            timeout=(self._timeouts.connect, self._timeouts.read),
            stream=True,
            allow_redirects=False,  # a redirect could carry the token to another host
        )
        return response

    def _wait_or_give_up(
        self, url: str, attempt: int, detail: str, status: int | None, retry_after: float | None
    ) -> None:
        if attempt >= self._retry.max_attempts:
            raise FhirServerError(mask_url(url), detail, status)
        if retry_after is not None and retry_after > self._retry.max_retry_after:
            raise FhirServerError(
                mask_url(url),
                f"asked to retry after {retry_after:g} s, more than {self._retry.max_retry_after:g} s",
                status,
            )
        delay = backoff_delay(attempt, self._retry, self._rng)
        self._sleep(max(delay, retry_after or 0.0))

    def _body(self, url: str, resp: requests.Response) -> bytes:
        media = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media not in ACCEPTED_CONTENT_TYPES:
            raise FhirServerError(
                mask_url(url), f"content type {media or '(none)'!r} is not FHIR JSON", resp.status_code
            )
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise FhirServerError(mask_url(url), f"{declared} bytes is over the {self._max_bytes}-byte cap", 200)
        body = bytearray()
        for chunk in resp.iter_content(chunk_size=_CHUNK):
            body += chunk
            if len(body) > self._max_bytes:
                raise FhirServerError(mask_url(url), f"response over the {self._max_bytes}-byte cap", 200)
        return bytes(body)


def _auth_detail(status: int, has_token: bool) -> str:
    if status == 403:
        return "the token is not allowed to read this (403)"
    if has_token:
        return "the bearer token was refused, also after reading the token file again"
    return "the server needs a bearer token (give a token file)"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
