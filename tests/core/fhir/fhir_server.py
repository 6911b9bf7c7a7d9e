"""A small real FHIR R4 search server on loopback, for the client and pull tests.

It serves recorded resources (dicts of R4 JSON) as searchset Bundles the way a FHIR server does:
``GET {base}/{type}?...`` with ``_lastUpdated`` (``gt``/``ge``/``lt``/``le``), ``patient``,
``date``, ``_sort=_lastUpdated`` and ``_count`` paging through ``next`` links (``_getpagesoffset``
as HAPI names it). Beside that it can misbehave on purpose, one fault per request, in the order
injected:

* ``"503"`` / ``"500"``: a server error with an OperationOutcome, ``"429"`` with ``Retry-After``;
* ``"drop"``: the connection is closed without an answer;
* ``"html"``: a 200 with ``text/html`` (a proxy's login page);
* ``"foreign-next"``: the page's ``next`` link points to another host; ``"loop-next"``: back to page 0.

A bearer token can be required and expired after N accepted requests (``on_expire`` then runs: the
test rewrites the token file there, as a token refresher would). Every request is logged.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

JSON = dict[str, Any]
FAULTS = ("503", "500", "429", "drop", "html", "foreign-next", "loop-next")
#: Search parameter of an ``_include`` -> the element it follows (R4 names).
_INCLUDE_PATHS = {
    "subject": "subject",
    "patient": "subject",
    "derived-from": "derivedFrom",
    "part-of": "partOf",
    "related": "context.related",
}
_DATE_FIELDS = ("effectiveDateTime", "onsetDateTime", "performedDateTime", "date", "started", "issued")


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the server saw it, with the status it answered (0: connection dropped)."""

    resource_type: str
    query: Mapping[str, list[str]]
    authorization: str | None
    status: int
    page: int


@dataclass
class _State:
    resources: dict[tuple[str, str], JSON]
    token: str | None
    token_uses_left: int | None = None
    on_expire: Callable[[], str] | None = None
    faults: dict[tuple[str, int], deque[str]] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _compare(prefix: str, left: datetime, right: datetime) -> bool:
    return {
        "gt": left > right,
        "ge": left >= right,
        "lt": left < right,
        "le": left <= right,
        "eq": left == right,
    }[prefix]


def _split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in ("gt", "ge", "lt", "le", "eq"):
        return value[:2], value[2:]
    return "eq", value


def _date_value(value: str) -> datetime:
    """A FHIR date or dateTime as an aware instant (a bare date is its midnight UTC)."""
    return _instant(value) if "T" in value else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _references(resource: JSON, path: str) -> list[str]:
    """Literal ``Type/id`` references at ``path`` (dotted; lists followed)."""
    values: list[Any] = [resource]
    for part in path.split("."):
        values = [v.get(part) for v in values if isinstance(v, dict)]
        values = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return [v["reference"] for v in values if isinstance(v, dict) and isinstance(v.get("reference"), str)]


class FhirTestServer:
    """The loopback server; use :func:`serve` to start and stop it."""

    def __init__(self, resources: Sequence[JSON], *, token: str | None = None, base_path: str = "/fhir") -> None:
        self._state = _State({(r["resourceType"], r["id"]): r for r in resources}, token)
        self._base_path = base_path
        #: False: answer in storage order whatever ``_sort`` asks (some servers ignore it).
        self.honour_sort = True
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for one, and every test stops a server.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self._base_path}"

    # --- what the tests control ------------------------------------------------------------------

    def inject(self, resource_type: str, page: int, *faults: str) -> None:
        """Answer the next requests for ``page`` (0-based) of ``resource_type`` searches with ``faults``, in order."""
        unknown = set(faults) - set(FAULTS)
        assert not unknown, f"unknown faults {unknown}"
        with self._state.lock:
            self._state.faults.setdefault((resource_type, page), deque()).extend(faults)

    def expire_token_after(self, requests: int, on_expire: Callable[[], str]) -> None:
        """Accept the current token for ``requests`` more requests; then ``on_expire()`` returns the new one."""
        with self._state.lock:
            self._state.token_uses_left = requests
            self._state.on_expire = on_expire

    def put(self, resource: JSON) -> None:
        """Store a resource (a new version if its id exists) as the server would on a client's update."""
        with self._state.lock:
            self._state.resources[(resource["resourceType"], resource["id"])] = resource

    @property
    def log(self) -> list[LoggedRequest]:
        with self._state.lock:
            return list(self._state.log)

    # --- serving ---------------------------------------------------------------------------------

    def _authorize(self, authorization: str | None) -> bool:
        state = self._state
        if state.token is None:
            return True
        if authorization != f"Bearer {state.token}":
            return False
        if state.token_uses_left is not None:
            if state.token_uses_left == 0:
                assert state.on_expire is not None
                state.token = state.on_expire()
                state.token_uses_left = None
                return False
            state.token_uses_left -= 1
        return True

    def _matches(self, resource: JSON, query: Mapping[str, list[str]]) -> bool:
        for raw in query.get("_lastUpdated", []):
            prefix, value = _split_prefix(raw)
            if not _compare(prefix, _instant(resource["meta"]["lastUpdated"]), _instant(value)):
                return False
        for patient in query.get("patient", []):
            ref = (resource.get("subject") or resource.get("patient") or {}).get("reference")
            own = f"Patient/{resource['id']}" if resource["resourceType"] == "Patient" else None
            if patient not in (ref, own) and f"Patient/{patient}" not in (ref, own):
                return False
        for raw in query.get("date", []):
            prefix, value = _split_prefix(raw)
            when = next((resource[f] for f in _DATE_FIELDS if f in resource), None)
            if when is None or not _compare(prefix, _date_value(when), _date_value(value)):
                return False
        return True

    def search(self, resource_type: str, query: Mapping[str, list[str]], *, next_fault: str | None = None) -> JSON:
        with self._state.lock:
            hits = [r for (t, _), r in self._state.resources.items() if t == resource_type and self._matches(r, query)]
        if query.get("_sort") == ["_lastUpdated"] and self.honour_sort:
            hits.sort(key=lambda r: (_instant(r["meta"]["lastUpdated"]), r["id"]))
        count = int(query.get("_count", ["50"])[0])
        offset = int(query.get("_getpagesoffset", ["0"])[0])
        page = hits[offset : offset + count]
        included = self._included(page, query.get("_include", []))
        links = [{"relation": "self", "url": self._page_url(resource_type, query, offset)}]
        if offset + count < len(hits):
            nxt = self._page_url(resource_type, query, offset + count)
            if next_fault == "loop-next":
                nxt = self._page_url(resource_type, query, 0)
            if next_fault == "foreign-next":
                nxt = nxt.replace("127.0.0.1", "evil.example.org", 1)
            links.append({"relation": "next", "url": nxt})
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(hits),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{self.url}/{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in page
            ]
            + [
                {
                    "fullUrl": f"{self.url}/{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "include"},
                }
                for r in included
            ],
        }

    def _included(self, page: Sequence[JSON], includes: Sequence[str]) -> list[JSON]:
        """The resources ``_include=Type:param`` names for ``page``, each once, none of the matches."""
        keys: dict[str, None] = {}
        for spec in includes:
            source, _, param = spec.partition(":")
            for resource in page:
                if resource["resourceType"] == source:
                    keys.update(dict.fromkeys(_references(resource, _INCLUDE_PATHS[param])))
        own = {f"{r['resourceType']}/{r['id']}" for r in page}
        with self._state.lock:
            found = [self._state.resources.get(tuple(k.split("/", 1))) for k in keys if k not in own]  # type: ignore[arg-type]
        return [r for r in found if r is not None]

    def _page_url(self, resource_type: str, query: Mapping[str, list[str]], offset: int) -> str:
        pairs = [(k, v) for k, vs in query.items() if k != "_getpagesoffset" for v in vs]
        pairs.append(("_getpagesoffset", str(offset)))
        return f"{self.url}/{resource_type}?{urlencode(pairs)}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        resource_type = parts.path.removeprefix(self._base_path).strip("/")
        page = int(query.get("_getpagesoffset", ["0"])[0]) // int(query.get("_count", ["50"])[0])
        authorization = request.headers.get("Authorization")
        with self._state.lock:
            fault_queue = self._state.faults.get((resource_type, page))
            fault = fault_queue.popleft() if fault_queue else None
            authorized = self._authorize(authorization)
        answer = self._answer(resource_type, query, fault=fault, authorized=authorized)
        # Logged before the answer leaves: a client that has its answer finds the request in the log.
        with self._state.lock:
            self._state.log.append(LoggedRequest(resource_type, query, authorization, answer.status, page))
        if answer.status == 0:
            request.close_connection = True
            return
        request.send_response(answer.status)
        request.send_header("Content-Type", answer.content_type)
        request.send_header("Content-Length", str(len(answer.body)))
        for k, v in answer.headers.items():
            request.send_header(k, v)
        request.end_headers()
        request.wfile.write(answer.body)

    def _answer(
        self, resource_type: str, query: Mapping[str, list[str]], *, fault: str | None, authorized: bool
    ) -> _Answer:
        if fault == "drop":
            return _Answer(0)
        if not authorized:
            return _Answer.json(401, _outcome("security", "token missing, wrong or expired"), WWW_Authenticate="Bearer")
        if fault in ("503", "500"):
            return _Answer.json(int(fault), _outcome("transient", "try again"))
        if fault == "429":
            return _Answer.json(429, _outcome("throttled", "slow down"), Retry_After="2")
        if fault == "html":
            return _Answer(200, b"<html>sign in</html>", "text/html")
        return _Answer.json(200, self.search(resource_type, query, next_fault=fault))


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the server sends back; status 0 closes the connection without an answer."""

    status: int
    body: bytes = b""
    content_type: str = "application/fhir+json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, body: JSON, **headers: str) -> _Answer:
        return cls(status, json.dumps(body).encode(), headers={k.replace("_", "-"): v for k, v in headers.items()})


def _outcome(code: str, text: str) -> JSON:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def _handler(server: FhirTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            server.handle(self)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            pass

    return Handler


@contextmanager
def serve(resources: Sequence[JSON], *, token: str | None = None) -> Iterator[FhirTestServer]:
    """Start a server on a free loopback port for the ``with`` block."""
    server = FhirTestServer(resources, token=token)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- recorded resources ------------------------------------------------------------------------------


def stamp(resource: JSON, when: datetime, version: int = 1) -> JSON:
    """``resource`` with ``meta.versionId`` and ``meta.lastUpdated`` set (a copy)."""
    out = dict(resource)
    out["meta"] = {"versionId": str(version), "lastUpdated": when.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    return out


def filler_resources(n: int, *, start: datetime, step: timedelta = timedelta(minutes=1)) -> list[JSON]:
    """``n`` minimal synthetic Observations with distinct ``lastUpdated`` (what the client tests page through)."""
    return [
        stamp(
            {
                "resourceType": "Observation",
                "id": f"obs-{i:05d}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                "effectiveDateTime": (start + i * step).date().isoformat(),
            },
            start + i * step,
        )
        for i in range(n)
    ]


def server_resources(bundles: Sequence[JSON]) -> list[JSON]:
    """The resources of collection Bundles as a server stores them: ``urn:uuid`` references become ``Type/id``.

    (The sample generator writes bundles whose entries reference each other by ``fullUrl``; on a
    server each resource has its own id and is referenced by it.)
    """
    resources = [e["resource"] for b in bundles for e in b.get("entry", [])]
    by_urn = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for b in bundles
        for e in b.get("entry", [])
    }

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (by_urn.get(v, v) if k == "reference" else rewrite(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    return [rewrite(r) for r in resources]
