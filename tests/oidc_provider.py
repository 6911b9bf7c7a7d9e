"""A small OpenID Connect provider on loopback, for sign-on tests: real HTTP, real RS256 ID tokens.

It implements what ``st.login`` (Authlib's client) uses and checks what a real provider checks:

- ``/.well-known/openid-configuration``: discovery, with S256 PKCE and an ``end_session_endpoint``;
- ``/authorize``: GET shows a login form (every time: the provider keeps no session of its own,
  as with ``prompt=login``), POST checks the password and redirects back with a single-use code
  bound to the client, redirect URI, nonce and PKCE challenge; ``auth_time`` is that moment;
- ``/token``: the authorization-code grant with client authentication (HTTP Basic or form) and
  the PKCE verifier; answers an access token and an ID token signed RS256 with the test's key;
- ``/jwks``: the public key as a JWK;
- ``/logout``: RP-initiated logout, back to a registered ``post_logout_redirect_uri``;
- ``/device_authorization`` and ``/device``: the device authorization grant (RFC 8628) for a
  signature from a shell. The shell gets a device code and a user code; the person opens
  ``/device``, enters the code and their password (or refuses), and the token endpoint answers
  ``authorization_pending`` until then, ``access_denied`` after a refusal and ``expired_token``
  after :attr:`OidcProvider.device_lifetime_s`. ``device_flow=False`` leaves it out of discovery.

The key is generated per provider with ``cryptography``, and tokens are signed here by hand
(``header.payload.signature``), so the client's verification is checked against an independent
implementation of JWS, not against the library that verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["Account", "OidcProvider", "running_provider"]

CODE_LIFETIME_S = 60.0
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_LIFETIME_S = 300


@dataclass(frozen=True)
class Account:
    """A person the provider knows: their password and the claims their ID token carries."""

    password: str
    sub: str
    name: str
    groups: tuple[str, ...]


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    username: str
    expires: float
    authenticated_at: int


@dataclass
class _Device:
    """A device authorization: who signed in with its user code (and when), or that they refused."""

    client_id: str
    user_code: str
    expires: float
    username: str | None = None
    authenticated_at: int = 0
    denied: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(number: int) -> str:
    return _b64(number.to_bytes((number.bit_length() + 7) // 8, "big"))


@dataclass
class OidcProvider:
    """The provider's state: its issuer URL, one registered client, accounts, key and grants."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    accounts: Mapping[str, Account]
    issuer: str = ""
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    grants: dict[str, _Grant] = field(default_factory=dict)
    #: Every request path seen, in order (``/token`` and ``/jwks`` prove the server-side exchange).
    seen: list[str] = field(default_factory=list)
    #: Code exchanges whose PKCE verifier matched its challenge.
    pkce_verified: int = 0
    #: The ``prompt`` parameter of each authorization request shown ("" when absent).
    prompts: list[str] = field(default_factory=list)
    #: Whether discovery offers the device authorization grant.
    device_flow: bool = True
    #: Seconds a device code lives, and the polling interval the provider asks for.
    device_lifetime_s: float = 120.0
    device_interval_s: int = 1
    devices: dict[str, _Device] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- documents ---------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider Metadata document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code"],
        } | (
            {
                "device_authorization_endpoint": f"{self.issuer}/device_authorization",
                "grant_types_supported": ["authorization_code", DEVICE_CODE_GRANT],
            }
            if self.device_flow
            else {}
        )

    def jwks(self) -> dict[str, Any]:
        """The public key set."""
        numbers = self.key.public_key().public_numbers()
        jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _uint(numbers.n),
            "e": _uint(numbers.e),
        }
        return {"keys": [jwk]}

    def id_token(self, username: str, nonce: str | None, auth_time: int | None = None) -> str:
        """A compact JWS (RS256) of the account's claims; ``auth_time`` is when the password was checked."""
        account = self.accounts[username]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": account.sub,
            "aud": self.client_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "auth_time": now if auth_time is None else auth_time,
            "preferred_username": username,
            "name": account.name,
            "email": f"{username}@hospital.example.org",
            "groups": list(account.groups),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode("ascii")
        signature = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode('ascii')}.{_b64(signature)}"

    # -- the authorization-code flow ---------------------------------------------------------

    def check_authorize(self, query: Mapping[str, str]) -> str | None:
        """Why an authorization request is refused (None: it is acceptable)."""
        if query.get("response_type") != "code":
            return "unsupported response_type"
        if query.get("client_id") != self.client_id:
            return "unknown client_id"
        if query.get("redirect_uri") not in self.redirect_uris:
            return "redirect_uri not registered"
        if "openid" not in query.get("scope", "").split():
            return "scope must include openid"
        if query.get("code_challenge") and query.get("code_challenge_method") != "S256":
            return "only S256 PKCE"
        return None

    def grant(self, query: Mapping[str, str], username: str) -> str:
        """A fresh single-use code for ``username``, bound to the request."""
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.grants[code] = _Grant(
                client_id=query["client_id"],
                redirect_uri=query["redirect_uri"],
                nonce=query.get("nonce"),
                challenge=query.get("code_challenge"),
                username=username,
                expires=time.monotonic() + CODE_LIFETIME_S,
                authenticated_at=int(time.time()),
            )
        return code

    # -- the device authorization grant ------------------------------------------------------

    def authorize_device(self, form: Mapping[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The device authorization endpoint: a device code for the shell, a user code for the person."""
        client_id, secret = _client_credentials(form, authorization)
        if client_id != self.client_id or not secrets.compare_digest(secret or "", self.client_secret):
            return 401, {"error": "invalid_client"}
        if "openid" not in form.get("scope", "").split():
            return 400, {"error": "invalid_scope"}
        device_code = secrets.token_urlsafe(24)
        letters = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(8))
        user_code = f"{letters[:4]}-{letters[4:]}"
        with self.lock:
            self.devices[device_code] = _Device(client_id, user_code, time.monotonic() + self.device_lifetime_s)
        return 200, {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": f"{self.issuer}/device",
            "verification_uri_complete": f"{self.issuer}/device?{urlencode({'user_code': user_code})}",
            "expires_in": int(self.device_lifetime_s),
            "interval": self.device_interval_s,
        }

    def answer_device(self, form: Mapping[str, str]) -> str:
        """The person's answer at ``/device``: what the page then says."""
        with self.lock:
            device = next((d for d in self.devices.values() if d.user_code == form.get("user_code", "")), None)
            if device is None or device.expires < time.monotonic():
                return "Unknown or expired code."
            if form.get("action") == "deny":
                device.denied = True
                return "Refused. You may close this window."
            username = form.get("username", "")
            account = self.accounts.get(username)
            if account is None or not secrets.compare_digest(account.password, form.get("password", "")):
                return "Wrong username or password."
            device.username, device.authenticated_at = username, int(time.time())
        return "Signed in. You may close this window and return to the command line."

    def _device_token(self, client_id: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            device = self.devices.get(form.get("device_code", ""))
            if device is None or device.client_id != client_id:
                return 400, {"error": "invalid_grant"}
            if device.expires < time.monotonic():
                return 400, {"error": "expired_token"}
            if device.denied:
                return 400, {"error": "access_denied"}
            if device.username is None:
                return 400, {"error": "authorization_pending"}
            del self.devices[form["device_code"]]  # single use
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "id_token": self.id_token(device.username, None, device.authenticated_at),
        }

    def exchange(self, form: Mapping[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint: (HTTP status, JSON body)."""
        client_id, secret = _client_credentials(form, authorization)
        if client_id != self.client_id or not secrets.compare_digest(secret or "", self.client_secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") == DEVICE_CODE_GRANT and self.device_flow:
            return self._device_token(client_id, form)
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.grants.pop(form.get("code", ""), None)  # single use: gone even when refused below
        if grant is None or grant.expires < time.monotonic() or grant.client_id != client_id:
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            if _b64(hashlib.sha256(verifier.encode("ascii")).digest()) != grant.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            with self.lock:
                self.pkce_verified += 1
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "scope": "openid profile email",
            "id_token": self.id_token(grant.username, grant.nonce, grant.authenticated_at),
        }


def _client_credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str | None, str | None]:
    if authorization and authorization.startswith("Basic "):
        raw = base64.b64decode(authorization[6:]).decode()
        client_id, _, secret = raw.partition(":")
        return unquote_plus(client_id), unquote_plus(secret)  # RFC 6749 2.3.1: form-encoded, then Basic
    return form.get("client_id"), form.get("client_secret")


def _login_form(query: Mapping[str, str], error: str = "") -> bytes:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
    )
    problem = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return (
        "<!doctype html><html><head><title>Hospital sign-in</title></head><body>"
        f"<h1>Hospital identity provider</h1>{problem}"
        f'<form method="post" action="/authorize">{hidden}'
        '<label>Username <input name="username" autocomplete="username"></label>'
        '<label>Password <input name="password" type="password"></label>'
        '<button type="submit">Continue</button></form></body></html>'
    ).encode()


def _device_form(user_code: str, message: str = "") -> bytes:
    said = f'<p role="status">{html.escape(message)}</p>' if message else ""
    return (
        "<!doctype html><html><head><title>Hospital sign-in: device</title></head><body>"
        f"<h1>Hospital identity provider</h1>{said}"
        '<form method="post" action="/device">'
        f'<label>Code <input name="user_code" value="{html.escape(user_code)}"></label>'
        '<label>Username <input name="username" autocomplete="username"></label>'
        '<label>Password <input name="password" type="password"></label>'
        '<button type="submit" name="action" value="allow">Continue</button>'
        '<button type="submit" name="action" value="deny">Refuse</button></form></body></html>'
    ).encode()


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    location: str | None = None

    @classmethod
    def json(cls, status: int, body: object) -> _Response:
        return cls(status, json.dumps(body).encode(), "application/json")

    @classmethod
    def page(cls, body: bytes) -> _Response:
        return cls(200, body, "text/html; charset=utf-8")


def _get(provider: OidcProvider, path: str, query: Mapping[str, str]) -> _Response:
    """The GET endpoints."""
    if path == "/.well-known/openid-configuration":
        return _Response.json(200, provider.discovery())
    if path == "/jwks":
        return _Response.json(200, provider.jwks())
    if path == "/authorize":
        with provider.lock:
            provider.prompts.append(query.get("prompt", ""))
        problem = provider.check_authorize(query)
        return _Response(400, problem.encode()) if problem else _Response.page(_login_form(query))
    if path == "/device":
        return _Response.page(_device_form(query.get("user_code", "")))
    if path == "/logout":
        back = query.get("post_logout_redirect_uri", "")
        return _Response(302, location=back) if back in provider.redirect_uris else _Response(200, b"Signed out.")
    return _Response(404, b"not found")


def _post(provider: OidcProvider, path: str, form: dict[str, str], authorization: str | None) -> _Response:
    """The POST endpoints: the token exchange, and the login form's submission."""
    if path == "/token":
        return _Response.json(*provider.exchange(form, authorization))
    if path == "/device_authorization" and provider.device_flow:
        return _Response.json(*provider.authorize_device(form, authorization))
    if path == "/device":
        return _Response.page(_device_form(form.get("user_code", ""), provider.answer_device(form)))
    if path != "/authorize":
        return _Response(404, b"not found")
    username, password = form.pop("username", ""), form.pop("password", "")
    if problem := provider.check_authorize(form):
        return _Response(400, problem.encode())
    account = provider.accounts.get(username)
    if account is None or not secrets.compare_digest(account.password, password):
        return _Response.page(_login_form(form, "Wrong username or password."))
    answer = {"code": provider.grant(form, username)} | ({"state": form["state"]} if "state" in form else {})
    return _Response(302, location=f"{form['redirect_uri']}?{urlencode(answer)}")


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass  # quiet: the test reads provider.seen instead

        def _send(self, response: _Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            if response.location is not None:
                self.send_header("Location", response.location)
            self.end_headers()
            self.wfile.write(response.body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            provider.seen.append(parts.path)
            self._send(_get(provider, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}))

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path
            provider.seen.append(path)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            form = {k: v[0] for k, v in parse_qs(raw).items()}
            self._send(_post(provider, path, form, self.headers.get("Authorization")))

    return Handler


@contextmanager
def running_provider(
    *, client_id: str, client_secret: str, redirect_uris: tuple[str, ...], accounts: Mapping[str, Account]
) -> Iterator[OidcProvider]:
    """Serve a provider on a free loopback port until the block ends; yields it (``issuer`` set)."""
    provider = OidcProvider(client_id, client_secret, redirect_uris, accounts)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
