"""A promotion signed from the shell by a person the identity provider manages.

``vigil deploy promote --signer NAME``, where NAME signs in only at the identity provider: the
same steps as the Deployment page's signature (``core.services.provider_signature``), with the
device authorization grant (``core.services.device_grant``) in place of the browser's redirect:

1. the provider's endpoints are read first, so a provider that cannot do this leaves no trace;
2. the request is kept and audited (``signature_requested``), after every check a promotion
   makes before its signature;
3. the person opens the provider's address in any browser, enters the code shown and signs in;
4. the ID token is verified, and :func:`core.services.deployment.promote_signed_at_provider_as`
   switches only when it names the signer and its ``auth_time`` follows the request.

Whatever stops the command before the switch (a refusal at the provider, an expired code, a
signature refused, Ctrl-C) withdraws the request (``signature_withdrawn``), so no request is
left waiting for the web app to offer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import requests

from core.errors import VigilError
from core.services import auth, deployment, device_grant
from core.services.device_grant import DeviceGrant, ProviderClient
from core.services.permissions import SignedInUser
from core.store.deployments import DeploymentRecord
from core.store.engine import SessionFactory
from core.store.signature_requests import SignatureRequestRecord

__all__ = ["promote_signed_from_shell"]


def promote_signed_from_shell(  # noqa: PLR0913 - the signer, the version and the provider, then keywords
    session_factory: SessionFactory,
    signer: str,
    version: str,
    client: ProviderClient,
    *,
    show: Callable[[DeviceGrant], None],
    models_dir: Path,
    now: Callable[[], datetime],
    sites: Sequence[str] = (),
    per_site_allowed: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[DeploymentRecord, ...]:
    """Promote ``version``, signed by ``signer`` re-authenticating at the provider through a device code.

    Parameters
    ----------
    session_factory : SessionFactory
    signer : str
        An account the identity provider manages, whose role may approve deployments.
    version : str
    client : ProviderClient
        The section of Streamlit's secrets that signatures go through.
    show : callable
        Called once with the started grant: tell the person where to go and which code to enter.
    models_dir, now, sites, per_site_allowed
        As :func:`core.services.deployment.promote`.
    sleep : callable
        Waits between polls of the provider (seconds).

    Raises
    ------
    IdentityProviderError
        The provider cannot be reached or cannot do device authorization, the person refused,
        or the code expired; the request is withdrawn.
    SignatureFailedError
        The token does not sign (another person, an old ``auth_time``, a role that may not
        approve); audited, and the request is withdrawn.
    PermissionDeniedError, BadInputError, DeploymentRefusedError, UnknownModelVersionError, UnknownSiteError
        As :func:`core.services.deployment.promote`; nothing is kept.
    """
    user = auth.provider_signer(session_factory, signer)
    with requests.Session() as http:
        endpoints = device_grant.discover(client, http=http)
        ours = deployment.request_promotion_signature_as(
            session_factory,
            user,
            version,
            models_dir=models_dir,
            now=now,
            sites=sites,
            per_site_allowed=per_site_allowed,
        )
        try:
            grant = device_grant.start(client, endpoints, http=http)
            show(grant)
            token = device_grant.wait_for_id_token(client, endpoints, grant, http=http, sleep=sleep)
            proof = device_grant.verify_id_token(token, client, endpoints, http=http)
            return deployment.promote_signed_at_provider_as(
                session_factory, user, proof, models_dir=models_dir, now=now, per_site_allowed=per_site_allowed
            )
        except BaseException:
            with contextlib.suppress(VigilError):  # the first failure is the one to report
                _withdraw(session_factory, user, ours, now=now)
            raise


def _withdraw(
    session_factory: SessionFactory, user: SignedInUser, ours: SignatureRequestRecord, *, now: Callable[[], datetime]
) -> None:
    """Withdraw the request this command made, not one the signer made since on the Deployment page."""
    if deployment.pending_signature_as(session_factory, user, now=now()) == ours:
        deployment.withdraw_signature_as(session_factory, user, now=now)
