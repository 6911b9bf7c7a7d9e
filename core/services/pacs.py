"""A site's PACS over DICOMweb: the client of a configured endpoint, and the public names of pull and push.

Pulling lives in :mod:`core.services.pacs_pull` (search, retrieve through the ingest gate,
once per instance, one pull per endpoint at a time) and pushing in
:mod:`core.services.pacs_push` (STOW-RS of the result SR and the Grad-CAM objects). Callers
import both through this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.config import PacsEndpoint
from core.errors import BadInputError, PacsConfigError
from core.imaging.dicomweb import DicomwebAuth, DicomwebClient, RetryPolicy
from core.imaging.files import DEFAULT_MAX_FILE_BYTES
from core.services.pacs_pull import (
    STAGING_DIR,
    PacsRejection,
    Predictor,
    PullReport,
    SiteFailure,
    SitePull,
    make_predictor,
    pull_site,
    pull_sites,
    watch,
)
from core.services.pacs_push import PushReport, explanation_objects, push_objects, study_site

__all__ = [
    "STAGING_DIR",
    "PacsRejection",
    "Predictor",
    "PullReport",
    "PushReport",
    "SiteFailure",
    "SitePull",
    "client_for",
    "explanation_objects",
    "make_predictor",
    "pull_site",
    "pull_sites",
    "push_objects",
    "study_site",
    "watch",
]


def client_for(
    endpoint: PacsEndpoint,
    secret: str,
    *,
    stop: threading.Event | None = None,
    sleep: Callable[[float], object] | None = None,
    max_response_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> DicomwebClient:
    """The DICOMweb client of a configured endpoint, given its secret (read from the environment at the edge).

    Parameters
    ----------
    stop : threading.Event, optional
        Ends the client's retry pauses (the SIGTERM/Ctrl-C event of a pull or watch).
    sleep : callable, optional
        Pauses instead (tests pass one that skips or records them).
    max_response_bytes : int
        The largest answer read (``Settings.max_file_bytes``).

    Raises
    ------
    PacsConfigError
        The secret cannot travel in an HTTP header, or the site would send credentials over
        plain http to another host without ``allow_insecure_http``; it names the site, the URL
        or the variable, never the secret.
    """
    try:
        auth = DicomwebAuth(endpoint.auth, endpoint.username, secret)
    except BadInputError as exc:
        raise PacsConfigError(endpoint.site, f"{exc} (environment variable {endpoint.secret_env})") from None
    try:
        return DicomwebClient(
            endpoint.url,
            auth=auth,
            timeout_s=endpoint.timeout_s,
            retry=RetryPolicy(max_attempts=endpoint.max_attempts),
            stop=stop,
            sleep=sleep,
            max_response_bytes=max_response_bytes,
            allow_insecure_http=endpoint.allow_insecure_http,
        )
    except BadInputError as exc:
        raise PacsConfigError(endpoint.site, str(exc)) from None
