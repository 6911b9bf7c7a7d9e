"""The test identity provider keeps the protocol: PKCE, single-use codes, client authentication, RS256.

``tests/oidc_provider.py`` signs its ID tokens by hand; here joserfc (an independent JOSE
implementation) verifies them against the provider's JWKS, and the refusals a real provider
makes are checked over real HTTP on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc_provider import Account, OidcProvider, running_provider

REDIRECT = "http://127.0.0.1:1/oauth2callback"
SECRET = "client-secret-for-the-test"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _call(
    url: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    data = None if form is None else urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Location", "")


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    account = Account(password="pw", sub="sub-1", name="Rita Reader", groups=("rad-readers",))
    with running_provider(
        client_id="vigil", client_secret=SECRET, redirect_uris=(REDIRECT,), accounts={"rita": account}
    ) as running:
        yield running


def _code(provider: OidcProvider, verifier: str, nonce: str = "n-1") -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": "vigil",
        "redirect_uri": REDIRECT,
        "scope": "openid profile",
        "state": "s-1",
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    status, body, _ = _call(f"{provider.issuer}/authorize?{urlencode(query)}")
    assert status == 200 and b'name="password"' in body
    status, _, location = _call(f"{provider.issuer}/authorize", query | {"username": "rita", "password": "pw"})
    assert status == 302 and location.startswith(REDIRECT)
    answer = parse_qs(urlsplit(location).query)
    assert answer["state"] == ["s-1"]
    return answer["code"][0]


def _basic(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"vigil:{secret}".encode()).decode()}


def _exchange(provider: OidcProvider, code: str, verifier: str, secret: str = SECRET) -> tuple[int, dict[str, object]]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    status, body, _ = _call(f"{provider.issuer}/token", form, _basic(secret))
    return status, json.loads(body)


def test_a_code_becomes_an_rs256_id_token_that_an_independent_library_verifies(provider: OidcProvider) -> None:
    # Prepare
    verifier = secrets.token_urlsafe(48)
    status, discovery, _ = _call(f"{provider.issuer}/.well-known/openid-configuration")
    assert status == 200 and json.loads(discovery)["code_challenge_methods_supported"] == ["S256"]

    # Execute
    status, tokens = _exchange(provider, _code(provider, verifier), verifier)

    # Assert
    assert status == 200
    keys = KeySet.import_key_set(json.loads(_call(f"{provider.issuer}/jwks")[1]))
    token = jwt.decode(str(tokens["id_token"]), keys, algorithms=["RS256"])
    assert token.header["alg"] == "RS256" and token.header["kid"] == provider.kid
    claims = token.claims
    assert (claims["iss"], claims["aud"], claims["sub"], claims["nonce"]) == (provider.issuer, "vigil", "sub-1", "n-1")
    assert claims["groups"] == ["rad-readers"] and claims["name"] == "Rita Reader"
    assert claims["exp"] > claims["iat"]


def test_a_wrong_verifier_a_wrong_secret_and_a_reused_code_are_refused(provider: OidcProvider) -> None:
    verifier = secrets.token_urlsafe(48)
    assert _exchange(provider, _code(provider, verifier), "another-verifier-" + "x" * 30)[0] == 400
    assert _exchange(provider, _code(provider, verifier), verifier, secret="wrong")[0] == 401
    code = _code(provider, verifier)
    assert _exchange(provider, code, verifier)[0] == 200
    assert _exchange(provider, code, verifier) == (400, {"error": "invalid_grant"})


def test_an_unregistered_redirect_and_a_wrong_password_get_no_code(provider: OidcProvider) -> None:
    query = {"response_type": "code", "client_id": "vigil", "redirect_uri": "http://evil.example/cb", "scope": "openid"}
    assert _call(f"{provider.issuer}/authorize?{urlencode(query)}")[0] == 400
    good = query | {"redirect_uri": REDIRECT}
    status, body, location = _call(f"{provider.issuer}/authorize", good | {"username": "rita", "password": "nope"})
    assert status == 200 and b"Wrong username or password" in body and not location
