"""One frozen :class:`Settings` object, read at the edges (the CLI, ``ui.resources``) only.

Precedence, lowest first: built-in defaults, the TOML file named by ``VIGIL_CONFIG``,
then ``VIGIL_HOME`` and ``VIGIL_DATABASE_URL``. Core modules receive the resulting
object (or plain values from it); they never read the environment themselves.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError, PacsConfigError, PathNotFoundError

__all__ = [
    "PACS_AUTH_KINDS",
    "PACS_URL_MAX_CHARS",
    "PacsEndpoint",
    "Settings",
    "load_settings",
    "REPO_ROOT",
    "SAMPLE_DATA_DIR",
]

#: The source checkout (editable install); bundled sample data lives beside ``core``.
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = REPO_ROOT / "sample_data"

#: How Vigil authenticates to a site's DICOMweb service: nothing, HTTP Basic, or a bearer token.
PACS_AUTH_KINDS: Final = ("none", "basic", "bearer")
#: The longest DICOMweb base URL: the store keys what each pull has seen by it (``pacs_seen.endpoint``).
PACS_URL_MAX_CHARS: Final = 512


@dataclass(frozen=True, slots=True)
class PacsEndpoint:
    """One site's DICOMweb service (a ``[pacs.SITE]`` table of ``vigil.toml``).

    Attributes
    ----------
    site : str
        The registered site whose studies this PACS holds (studies pulled from it are ingested there).
    url : str
        The DICOMweb base URL (``https://pacs.example.org/dicom-web``); never holds a credential.
    auth : str
        One of :data:`PACS_AUTH_KINDS`.
    username : str
        For ``basic``.
    secret_env : str
        The name of the environment variable holding the password (``basic``) or the token
        (``bearer``): the secret itself is never written to the configuration or the database.
    timeout_s : float
        Seconds to wait for the server to connect and to answer each request.
    max_attempts : int
        Tries of one request when the server is unreachable or answers 408, 429 or 5xx.
    page_size : int
        Results asked for per QIDO-RS page (``limit``).
    auto_push : bool
        Send the result SR and the Grad-CAM objects of a study back to this PACS after a reader
        records a verdict on it (``core.services.pacs_auto_push``); off unless the table says ``true``.
    allow_insecure_http : bool
        Send credentials over plain ``http`` to a host other than this machine; off unless the
        table says ``true`` (the client refuses such a site otherwise).
    """

    site: str
    url: str
    auth: str = "none"
    username: str = ""
    secret_env: str = ""
    timeout_s: float = 30.0
    max_attempts: int = 4
    page_size: int = 100
    auto_push: bool = False
    allow_insecure_http: bool = False

    def secret(self, environ: Mapping[str, str]) -> str:
        """The password or token, read from ``environ`` (``os.environ`` at the edge); ``""`` for ``none``.

        Raises
        ------
        PacsConfigError
            The variable named by :attr:`secret_env` is unset or empty (its value is never shown).
        """
        if self.auth == "none":
            return ""
        value = environ.get(self.secret_env, "")
        if not value:
            raise PacsConfigError(self.site, f"environment variable {self.secret_env} ({self.auth} secret) is not set")
        return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable about one Vigil installation.

    Attributes
    ----------
    home : Path
        Artifacts (explanations, trained weights, exports) and the default SQLite file.
    database_url : str
        Any SQLAlchemy URL; SQLite under ``home`` when not configured.
    sample_data_dir : Path
        The cohort ``vigil init`` loads.
    num_threads : int
        Intra-op threads for torch on the CPU; pinned once at start-up.
    batch_size : int
        Studies per forward pass in ``vigil predict``.
    max_file_mb : int
        The largest file ``vigil ingest`` reads, in MiB (default 512: far above any radiograph);
        a larger file is rejected unread.
    audit_checkpoint_dir : Path or None
        Where signed audit checkpoints are appended (``audit-checkpoints.jsonl``) outside the
        database; ``home/var`` when not configured. Point it at storage the database admin
        cannot rewrite (a WORM mount, another host's share).
    audit_checkpoint_every : int
        A signed checkpoint is made without being asked once this many entries are unsigned
        (after a command that writes, on a page load, or by ``vigil audit checkpoint --if-due``).
    audit_checkpoint_minutes : int
        ... or once the oldest unsigned entry is this many minutes old.
    change_control_plan : Path or None
        The change-control plan (TOML) ``vigil validate-change`` and the Deployment page judge
        challengers by; the bundled plan (``core/registry/default_plan.toml``) when not configured.
    pacs : tuple of PacsEndpoint
        Each site's DICOMweb service, from the ``[pacs.SITE]`` tables (none when not configured).
    display_timezone : str
        The IANA zone the pages show times in (``"Europe/Berlin"``); the store and the audit log
        keep UTC whatever this says. ``"UTC"`` when not configured.
    per_site_deployment : bool
        Whether a promotion may name sites (``vigil deploy promote --site``). Off by default: the
        worklist, case review, explanations, feedback and monitoring still read the fleet-wide
        version's predictions, so a site switched on its own would show its readers no AI result.
    """

    home: Path
    database_url: str
    sample_data_dir: Path = SAMPLE_DATA_DIR
    num_threads: int = 2
    batch_size: int = 16
    max_file_mb: int = 512
    audit_checkpoint_dir: Path | None = None
    audit_checkpoint_every: int = 1000
    audit_checkpoint_minutes: int = 60
    change_control_plan: Path | None = None
    pacs: tuple[PacsEndpoint, ...] = field(default=())
    display_timezone: str = "UTC"
    per_site_deployment: bool = False

    def pacs_endpoint(self, site: str) -> PacsEndpoint:
        """The PACS of ``site``.

        Raises
        ------
        PacsConfigError
            No ``[pacs.SITE]`` table names it.
        """
        for endpoint in self.pacs:
            if endpoint.site == site:
                return endpoint
        known = ", ".join(e.site for e in self.pacs) or "none"
        raise PacsConfigError(site, f"no [pacs.{site}] table in the configuration (sites with a PACS: {known})")

    @property
    def display_zone(self) -> ZoneInfo:
        """:attr:`display_timezone` as a zone (checked when the settings were loaded)."""
        return ZoneInfo(self.display_timezone)

    @property
    def max_file_bytes(self) -> int:
        """:attr:`max_file_mb` in bytes."""
        return self.max_file_mb * 1024 * 1024

    @property
    def audit_checkpoint_file(self) -> Path:
        """The external append-only file of signed audit checkpoints (JSON lines)."""
        folder = self.audit_checkpoint_dir if self.audit_checkpoint_dir is not None else self.home / "var"
        return folder / "audit-checkpoints.jsonl"

    @property
    def audit_signing_key_file(self) -> Path:
        """The raw 32-byte Ed25519 private key that signs audit checkpoints (created 0600)."""
        return self.home / "secrets" / "audit-signing.key"

    @property
    def artifacts_dir(self) -> Path:
        """Content-addressed artifacts (explanation arrays and the like)."""
        return self.home / "artifacts"


_TUNABLE = frozenset(
    {
        "sample_data_dir",
        "num_threads",
        "batch_size",
        "max_file_mb",
        "audit_checkpoint_dir",
        "audit_checkpoint_every",
        "audit_checkpoint_minutes",
        "change_control_plan",
        "pacs",
        "display_timezone",
        "per_site_deployment",
    }
)
#: The longest ``audit_checkpoint_minutes`` accepted (one week): entries should not wait longer unsigned.
MAX_CHECKPOINT_MINUTES = 7 * 24 * 60
#: The largest ``audit_checkpoint_every`` accepted.
MAX_CHECKPOINT_EVERY = 10_000_000
#: The largest ``max_file_mb`` accepted (64 GiB): a bigger bound is a typo, not a radiograph.
MAX_FILE_MB_LIMIT = 64 * 1024


def _default_url(home: Path) -> str:
    return f"sqlite:///{(home / 'vigil.db').resolve()}"


def load_settings(environ: Mapping[str, str], *, cwd: Path | None = None) -> Settings:
    """Build :class:`Settings` from an environment mapping (``os.environ`` at the edge).

    Parameters
    ----------
    environ : Mapping[str, str]
        Reads ``VIGIL_CONFIG``, ``VIGIL_HOME`` and ``VIGIL_DATABASE_URL``.
    cwd : Path, optional
        Base for relative paths; the current directory when omitted.

    Raises
    ------
    PathNotFoundError
        ``VIGIL_CONFIG`` names a file that does not exist.
    ConfigError
        The TOML file is malformed or holds an unknown key.
    """
    base = cwd or Path.cwd()
    values: dict[str, object] = {}
    if cfg := environ.get("VIGIL_CONFIG"):
        values = _read_toml(base / cfg)
    home = Path(environ.get("VIGIL_HOME") or str(values.pop("home", "var")))
    home = home if home.is_absolute() else base / home
    url = environ.get("VIGIL_DATABASE_URL") or str(values.pop("database_url", "")) or _default_url(home)
    unknown = sorted(set(values) - _TUNABLE)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {cfg}: {', '.join(unknown)}")
    return replace(Settings(home=home, database_url=url), **_tuned(values, base))


#: Integer settings and their upper bounds (None: no bound beyond being positive).
_INTEGERS: Final[Mapping[str, int | None]] = {
    "num_threads": None,
    "batch_size": None,
    "max_file_mb": MAX_FILE_MB_LIMIT,
    "audit_checkpoint_every": MAX_CHECKPOINT_EVERY,
    "audit_checkpoint_minutes": MAX_CHECKPOINT_MINUTES,
}
#: Path settings resolved against the working directory (``sample_data_dir`` is taken as written).
_RESOLVED_PATHS: Final = ("audit_checkpoint_dir", "change_control_plan")


def _tuned(values: Mapping[str, object], base: Path) -> dict[str, Any]:
    """The tunable settings ``values`` holds, checked and converted."""
    tuned: dict[str, Any] = {}
    for key, value in values.items():
        if key in _INTEGERS:
            tuned[key] = _positive_int(key, value, _INTEGERS[key])
        elif key in _RESOLVED_PATHS:
            tuned[key] = _resolve(base, Path(str(value)))
        elif key == "pacs":
            tuned[key] = _pacs_endpoints(value)
        elif key == "display_timezone":
            tuned[key] = _zone_name(value)
        elif key == "per_site_deployment":
            if not isinstance(value, bool):
                raise ConfigError(f"per_site_deployment must be true or false, got {value!r}")
            tuned[key] = value
        else:  # sample_data_dir
            tuned[key] = Path(str(value))
    return tuned


def _zone_name(value: object) -> str:
    """An IANA zone name the tz database knows (``Europe/Berlin``), or a ConfigError naming it."""
    problem = ConfigError(f"display_timezone must be an IANA time zone such as 'Europe/Berlin', got {value!r}")
    if not isinstance(value, str):
        raise problem
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise problem from exc
    return value


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def _read_toml(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise PathNotFoundError(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    section = data.get("vigil", data)
    return dict(section)


def _positive_int(key: str, value: object, limit: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    if limit is not None and value > limit:
        raise ConfigError(f"{key} must be at most {limit}, got {value!r}")
    return value


#: The keys of a ``[pacs.SITE]`` table and what each must be; the secret is named, never given.
_PACS_KEYS: Final[Mapping[str, type]] = {
    "url": str,
    "auth": str,
    "username": str,
    "password_env": str,
    "token_env": str,
    "timeout_s": float,
    "max_attempts": int,
    "page_size": int,
    "auto_push": bool,
    "allow_insecure_http": bool,
}
#: Upper bounds of the numeric PACS settings (a larger value is a typo, not a need).
_PACS_LIMITS: Final[Mapping[str, float]] = {"timeout_s": 600.0, "max_attempts": 10, "page_size": 10_000}


def _pacs_endpoints(value: object) -> tuple[PacsEndpoint, ...]:
    """The ``[pacs]`` table: one :class:`PacsEndpoint` per site sub-table, checked, sorted by site."""
    if not isinstance(value, dict):
        raise ConfigError(f"pacs must be a table of [pacs.SITE] tables, got {value!r}")
    return tuple(_pacs_endpoint(str(site), table) for site, table in sorted(value.items()))


def _pacs_endpoint(site: str, table: object) -> PacsEndpoint:
    if not isinstance(table, dict):
        raise PacsConfigError(site, f"[pacs.{site}] must be a table, got {table!r}")
    unknown = sorted(set(table) - set(_PACS_KEYS))
    if unknown:
        raise PacsConfigError(site, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(_PACS_KEYS)})")
    values = {key: _pacs_value(site, key, raw) for key, raw in table.items()}
    auth = values.get("auth", "none")
    if auth not in PACS_AUTH_KINDS:
        raise PacsConfigError(site, f"auth must be one of {', '.join(PACS_AUTH_KINDS)}, got {auth!r}")
    secret_key = {"basic": "password_env", "bearer": "token_env"}.get(str(auth))
    other = {"password_env", "token_env"} - {secret_key}
    if secret_key is not None and not values.get(secret_key):
        raise PacsConfigError(site, f"auth {auth!r} needs {secret_key} (the environment variable holding the secret)")
    if misplaced := sorted(other & set(values)):
        raise PacsConfigError(site, f"{', '.join(misplaced)} does not go with auth {auth!r}")
    if auth == "basic" and not values.get("username"):
        raise PacsConfigError(site, "auth 'basic' needs a username")
    numbers: dict[str, Any] = {key: values[key] for key in _PACS_LIMITS if key in values}
    return PacsEndpoint(
        site=site,
        url=_pacs_url(site, values.get("url")),
        auth=str(auth),
        username=str(values.get("username", "")),
        secret_env=str(values.get(secret_key, "")) if secret_key else "",
        auto_push=bool(values.get("auto_push", False)),
        allow_insecure_http=bool(values.get("allow_insecure_http", False)),
        **numbers,
    )


def _pacs_value(site: str, key: str, raw: object) -> object:
    """One value of a ``[pacs.SITE]`` table, of the type :data:`_PACS_KEYS` names and within its bound."""
    wanted = _PACS_KEYS[key]
    if wanted is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if not isinstance(raw, wanted) or (isinstance(raw, bool) and wanted is not bool):  # TOML true is no number
        raise PacsConfigError(site, f"{key} must be a {wanted.__name__}, got {raw!r}")
    limit = _PACS_LIMITS.get(key)
    if limit is not None and not 0 < raw <= limit:  # type: ignore[operator]
        raise PacsConfigError(site, f"{key} must be above 0 and at most {limit:g}, got {raw!r}")
    return raw


def _pacs_url(site: str, url: object) -> str:
    """A DICOMweb base URL: http(s), a host, and no user name or password in it."""
    parts = urlsplit(str(url or ""))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsConfigError(site, f"url must be an http(s) URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise PacsConfigError(site, "url must not hold credentials: name them with username and password_env")
    if len(base := str(url).rstrip("/")) > PACS_URL_MAX_CHARS:
        raise PacsConfigError(
            site, f"url is {len(base)} characters long, more than {PACS_URL_MAX_CHARS}: {base[:60]!r}…"
        )
    return base
