"""Re-authentication at the identity provider from a shell: the OAuth 2.0 device authorization grant.

A person who signs in only through the identity provider has no Vigil password, so a signature
from the command line (``vigil deploy promote --signer NAME``) re-authenticates them at the
provider, as the Deployment page does in the browser, through the device authorization grant
(RFC 8628) of the section that signs (``[vigil.oidc] signature_provider``):

1. :func:`read_client`: the client's id, secret and metadata URL, from the ``[auth]`` or
   ``[auth.NAME]`` section of Streamlit's ``secrets.toml`` (the same section the page uses);
2. :func:`discover`: the provider's issuer, device authorization, token and key endpoints;
3. :func:`start`: a device code for the shell and a user code for the person, who opens the
   verification address in any browser, enters the code and signs in there;
4. :func:`wait_for_id_token`: the token endpoint, polled at the interval the provider asks
   for, until the person has signed in, refused, or the code expired;
5. :func:`verify_id_token`: the ID token's RS256 signature against the provider's keys, its
   issuer, audience and expiry; its ``sub`` and ``auth_time`` then go to
   :func:`core.services.provider_signature.verify`, which decides whether it signs.

Nothing here decides who may sign: it only turns the provider's answer into a checked
:class:`~core.services.provider_signature.ProviderReauthentication`.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from core.errors import BadInputError, ConfigError, UnusablePathError
from core.files import read_regular_file
from core.imaging.dicomweb import is_loopback_url
from core.services.provider_signature import ProviderReauthentication

__all__ = [
    "DEVICE_CODE_GRANT",
    "DeviceGrant",
    "IdentityProviderError",
    "ProviderClient",
    "ProviderEndpoints",
    "discover",
    "read_client",
    "start",
    "verify_id_token",
    "wait_for_id_token",
]

#: The token endpoint's grant type for a device code (RFC 8628 section 3.4).
DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
#: Seconds one HTTP exchange with the provider may take.
HTTP_TIMEOUT_S: Final = 15.0
#: Added to the polling interval each time the provider answers ``slow_down`` (RFC 8628 section 3.5).
SLOW_DOWN_S: Final = 5.0
#: Clock difference allowed on the ID token's ``exp`` and ``iat``.
LEEWAY_S: Final = 30
#: The largest secrets file read (a real one is a few hundred bytes).
MAX_SECRETS_BYTES: Final = 1 << 20


class IdentityProviderError(BadInputError):
    """The identity provider could not be reached, answered something unusable, or refused."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"identity provider: {detail}")
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ProviderClient:
    """Vigil's registration at the provider, as one section of Streamlit's secrets holds it.

    ``section`` is where it was read (``auth`` or ``auth.NAME``), for messages.
    """

    section: str
    client_id: str
    client_secret: str
    metadata_url: str


@dataclass(frozen=True, slots=True)
class ProviderEndpoints:
    """What the provider's discovery document says a device grant needs."""

    issuer: str
    device_authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    """A started device authorization.

    Attributes
    ----------
    device_code : str
        The shell's secret for polling; never shown.
    user_code : str
        What the person enters at ``verification_uri``.
    verification_uri, verification_uri_complete : str, str or None
        Where the person goes; the complete form carries the code already.
    expires_in : float
        Seconds the codes stay valid, from when the provider answered.
    interval : float
        Seconds between polls the provider asks for.
    """

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def read_client(secrets_file: Path, provider: str | None) -> ProviderClient:
    """The client of section ``[auth.provider]`` (``[auth]`` for None) of ``secrets_file``.

    Raises
    ------
    ConfigError
        The file is missing or not TOML, or the section or one of its keys is missing (named).
    """
    section = "auth" if provider is None else f"auth.{provider}"
    try:
        secrets = tomllib.loads(read_regular_file(secrets_file, max_bytes=MAX_SECRETS_BYTES).decode("utf-8"))
    except UnusablePathError as exc:
        if not isinstance(exc.__cause__, FileNotFoundError):
            raise ConfigError(f"cannot read the Streamlit secrets {secrets_file}: {exc.reason}") from None
        raise ConfigError(
            f"no Streamlit secrets at {secrets_file}: the [{section}] section names the identity provider "
            "(pass --secrets with the app's .streamlit/secrets.toml)"
        ) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the Streamlit secrets {secrets_file}: {exc}") from None
    table: object = secrets.get("auth")
    if provider is not None and isinstance(table, dict):
        table = table.get(provider)
    if not isinstance(table, dict):
        raise ConfigError(f"{secrets_file} has no [{section}] section (the identity provider signatures go through)")
    values = {key: table.get(key) for key in ("client_id", "client_secret", "server_metadata_url")}
    for key, value in values.items():
        if not isinstance(value, str) or not value.strip():
            shown = f"a {type(value).__name__}" if key == "client_secret" else repr(value)  # never echo a secret
            raise ConfigError(f"[{section}] {key} in {secrets_file} must be a non-empty string, got {shown}")
    return ProviderClient(
        section, str(values["client_id"]), str(values["client_secret"]), str(values["server_metadata_url"])
    )


def discover(client: ProviderClient, *, http: requests.Session) -> ProviderEndpoints:
    """Read the provider's discovery document.

    Raises
    ------
    IdentityProviderError
        Unreachable, not JSON, without a device authorization endpoint (named: such a provider
        signs only in the browser), or an address over plain http on another machine.
    """
    _require_https(client.metadata_url, "its discovery document")
    document = _json(_send(http, "GET", client.metadata_url), client.metadata_url)
    fields = ("issuer", "device_authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [f for f in fields if not isinstance(document.get(f), str) or not document[f]]
    if "device_authorization_endpoint" in missing:
        raise IdentityProviderError(
            f"{client.metadata_url} offers no device authorization (RFC 8628), so it cannot re-authenticate "
            "a signer at a shell: sign on the Deployment page instead"
        )
    if missing:
        raise IdentityProviderError(f"{client.metadata_url} does not name its {', '.join(missing)}")
    endpoints = ProviderEndpoints(*(str(document[f]) for f in fields))
    for url, what in (
        (endpoints.device_authorization_endpoint, "the client secret"),
        (endpoints.token_endpoint, "the client secret"),
        (endpoints.jwks_uri, "the keys that vouch for its tokens"),
    ):
        _require_https(url, what)
    return endpoints


def _require_https(url: str, what: str) -> None:
    """Refuse plain http to another machine: the client secret would travel in clear, and keys could be forged."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and is_loopback_url(url)):
        return
    raise IdentityProviderError(
        f"refusing {url} for {what}: use https (plain http is accepted only for a provider on this machine)"
    )


def start(client: ProviderClient, endpoints: ProviderEndpoints, *, http: requests.Session) -> DeviceGrant:
    """Ask the provider for a device code and a user code (``openid`` scope).

    Raises
    ------
    IdentityProviderError
        Unreachable, refused (its ``error`` named), or an answer without the codes.
    """
    url = endpoints.device_authorization_endpoint
    body = _json(_send(http, "POST", url, data={"scope": "openid"}, auth=_basic(client)), url)
    device_code, user_code, uri = body.get("device_code"), body.get("user_code"), body.get("verification_uri")
    if not all(isinstance(v, str) and v for v in (device_code, user_code, uri)):
        raise IdentityProviderError(f"{url} answered without device_code, user_code and verification_uri")
    complete = body.get("verification_uri_complete")
    return DeviceGrant(
        device_code=str(device_code),
        user_code=str(user_code),
        verification_uri=str(uri),
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_in=_seconds(body.get("expires_in"), default=600.0),
        interval=_seconds(body.get("interval"), default=5.0),
    )


def wait_for_id_token(  # noqa: PLR0913 - the grant and its endpoints, then the clock's two halves
    client: ProviderClient,
    endpoints: ProviderEndpoints,
    grant: DeviceGrant,
    *,
    http: requests.Session,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll the token endpoint until the person has signed in; their ID token (compact JWS).

    Raises
    ------
    IdentityProviderError
        The person refused (``access_denied``), the code expired before they signed in, or the
        provider answered an error or no ID token.
    """
    deadline, interval = clock() + grant.expires_in, grant.interval
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": grant.device_code}
    while True:
        sleep(interval)
        if clock() > deadline:
            raise IdentityProviderError(f"the code {grant.user_code} expired before anyone signed in with it")
        response = _send(http, "POST", endpoints.token_endpoint, data=form, auth=_basic(client))
        body = _json(response, endpoints.token_endpoint, errors_ok=True)
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_S
            continue
        if error == "access_denied":
            raise IdentityProviderError(f"sign-in with the code {grant.user_code} was refused at the provider")
        if error == "expired_token":
            raise IdentityProviderError(f"the code {grant.user_code} expired before anyone signed in with it")
        if error is not None or response.status_code != 200:
            raise IdentityProviderError(f"{endpoints.token_endpoint} refused the device code: {_describe(body)}")
        token = body.get("id_token")
        if not isinstance(token, str) or not token:
            raise IdentityProviderError(f"{endpoints.token_endpoint} answered without an ID token (scope openid)")
        return token


def verify_id_token(
    id_token: str, client: ProviderClient, endpoints: ProviderEndpoints, *, http: requests.Session
) -> ProviderReauthentication:
    """Check the ID token against the provider's keys, issuer, audience and expiry.

    Returns
    -------
    ProviderReauthentication
        Its issuer, subject and ``auth_time``, for
        :func:`core.services.provider_signature.verify` to judge.

    Raises
    ------
    IdentityProviderError
        The keys cannot be read, or the token's signature, issuer, audience or expiry is wrong (named).
    """
    keys = _json(_send(http, "GET", endpoints.jwks_uri), endpoints.jwks_uri)
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=["RS256"])  # type: ignore[arg-type]
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY_S,
            iss={"essential": True, "value": endpoints.issuer},
            aud={"essential": True, "value": client.client_id},
            exp={"essential": True},
            sub={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise IdentityProviderError(f"the ID token does not verify: {exc}") from None
    return ProviderReauthentication.from_claims(token.claims)


def _send(http: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One exchange with the provider; a network failure is an :class:`IdentityProviderError` naming ``url``."""
    try:
        return http.request(method, url, timeout=HTTP_TIMEOUT_S, allow_redirects=False, **kwargs)
    except requests.RequestException as exc:
        raise IdentityProviderError(f"cannot reach {url}: {exc}") from None


def _basic(client: ProviderClient) -> tuple[str, str]:
    return (client.client_id, client.client_secret)


def _json(response: requests.Response, url: str, *, errors_ok: bool = False) -> Mapping[str, Any]:
    """The JSON object of ``response``; an HTTP error is refused unless ``errors_ok`` (OAuth errors are 400s)."""
    if not errors_ok and response.status_code != 200:
        raise IdentityProviderError(f"{url} answered HTTP {response.status_code}: {response.text[:200]!r}")
    try:
        body = response.json()
    except ValueError:
        raise IdentityProviderError(f"{url} answered HTTP {response.status_code} without JSON") from None
    if not isinstance(body, dict):
        raise IdentityProviderError(f"{url} answered {type(body).__name__} JSON, not an object")
    return body


def _describe(body: Mapping[str, Any]) -> str:
    description = body.get("error_description")
    return f"{body.get('error')!r}" + (f" ({description})" if isinstance(description, str) else "")


def _seconds(value: object, *, default: float) -> float:
    """A positive number of seconds from the provider; ``default`` when absent or unusable."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 86_400:
        return float(value)
    return default
