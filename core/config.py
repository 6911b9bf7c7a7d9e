"""One frozen :class:`Settings` object, read at the edges (the CLI, ``ui.resources``) only.

Precedence, lowest first: built-in defaults, the TOML file named by ``VIGIL_CONFIG``,
then ``VIGIL_HOME`` and ``VIGIL_DATABASE_URL``. Core modules receive the resulting
object (or plain values from it); they never read the environment themselves.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError, PacsConfigError, PathNotFoundError

__all__ = [
    "PACS_AUTH_KINDS",
    "DeidSettings",
    "DeidSite",
    "PrivateTag",
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
class PrivateTag:
    """One private element a site keeps through de-identification: ``(gggg,xxee)`` under a creator.

    A private element is named by its odd group, the Private Creator that reserved its block and
    its offset in the block (PS3.5 7.8.1); the block number (``xx``) is whatever a file assigned.

    Attributes
    ----------
    group : int
        Odd, from 0x0009 to 0xFFFF.
    creator : str
        The Private Creator value (surrounding spaces removed), 1 to 64 characters.
    offset : int
        The element's low byte, 0x00 to 0xFF.
    """

    group: int
    creator: str
    offset: int

    def __str__(self) -> str:
        return f"({self.group:04X},xx{self.offset:02X}) {self.creator}"


@dataclass(frozen=True, slots=True)
class DeidSite:
    """One ``[vigil.deid.sites.SITE]`` table: what a site sets for itself (None: the installation's)."""

    site: str
    private_allowlist: tuple[PrivateTag, ...] | None = None
    identified_exports: bool | None = None
    deidentify_at_ingest: bool | None = None


@dataclass(frozen=True, slots=True)
class DeidSettings:
    """The ``[vigil.deid]`` table: de-identification of data that leaves the site.

    Attributes
    ----------
    private_allowlist : tuple of PrivateTag
        Private elements ``vigil deid`` keeps; every other private element is removed. Empty by default.
    identified_exports : bool
        Whether an evidence package may be exported with its identifiers (``vigil audit export
        --identified REASON``). False by default: exports are de-identified, and an identified one
        is refused.
    sites : tuple of DeidSite
        Per-site settings, sorted by site. A site's allow-list replaces the installation's for that
        site's files; a site that sets ``identified_exports = false`` refuses identified exports
        even when the installation allows them (the ledger exported holds every site's entries).
        A site's ``deidentify_at_ingest`` replaces the installation's for that site.
    deidentify_at_ingest : bool
        Whether ``vigil ingest`` applies the Basic Profile to each file before it is stored, with
        the patient ID and accession number replaced by the keyed pseudonyms FHIR ingest computes
        (``core.services.deidentify.ingest_deid``). False by default: the store stays inside the
        site, and its readers must be able to tell which patient a study belongs to.
    """

    private_allowlist: tuple[PrivateTag, ...] = ()
    identified_exports: bool = False
    sites: tuple[DeidSite, ...] = ()
    deidentify_at_ingest: bool = False

    def allowlist_for(self, site: str | None) -> tuple[PrivateTag, ...]:
        """The private allow-list for files of ``site`` (the installation's when it sets none)."""
        for entry in self.sites:
            if entry.site == site and entry.private_allowlist is not None:
                return entry.private_allowlist
        return self.private_allowlist

    def deidentify_at_ingest_for(self, site: str) -> bool:
        """Whether files ingested into ``site`` are de-identified first (the installation's when it sets nothing)."""
        for entry in self.sites:
            if entry.site == site and entry.deidentify_at_ingest is not None:
                return entry.deidentify_at_ingest
        return self.deidentify_at_ingest

    def identified_exports_allowed(self) -> bool:
        """True when the installation allows identified exports and no site refuses them."""
        return self.identified_exports and all(s.identified_exports is not False for s in self.sites)


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
    deid : DeidSettings
        The ``[vigil.deid]`` table: the private-tag allow-list, whether identified exports are
        allowed and whether ingest de-identifies, per site. Exports are de-identified and no
        private element is kept when not configured.
    per_site_deployment : bool
        Whether a promotion may name sites (``vigil deploy promote --site``). On by default: every
        reader (worklist, case review, explanations, feedback, adjudication, result reports, PACS
        push, monitoring) follows the version serving each study's site. An installation that wants
        one version everywhere sets it to false.
    oidc : Mapping or None
        The ``[vigil.oidc]`` table as written: single sign-on through the identity provider of
        Streamlit's ``[auth]`` secrets, the role claim and its mapping to Vigil roles, and whether
        local accounts may still sign in. ``core.services.oidc.parse_policy`` checks it; None (no
        single sign-on, local accounts only) when not configured.
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
    deid: DeidSettings = field(default=DeidSettings())
    oidc: Mapping[str, object] | None = None
    per_site_deployment: bool = True

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
        "oidc",
        "deid",
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
    settings = replace(Settings(home=home, database_url=url), **_tuned(values, base))
    _check_auto_push(settings)
    return settings


def _check_auto_push(settings: Settings) -> None:
    """Refuse ``auto_push`` at a site that de-identifies at ingest, when the file is read.

    Such a site's studies are held under keyed UIDs its PACS does not know, so every push would
    fail (``core.services.pacs_auto_push.refuse_deidentified``), once per verdict; the
    combination is a configuration mistake, named here before anything runs.
    """
    for endpoint in settings.pacs:
        if endpoint.auto_push and settings.deid.deidentify_at_ingest_for(endpoint.site):
            raise PacsConfigError(
                endpoint.site,
                "auto_push = true, but the site de-identifies at ingest ([vigil.deid] deidentify_at_ingest): "
                "its studies are held under keyed UIDs its PACS does not know, so no result could be filed "
                "there; turn one of the two off",
            )


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
        elif key == "oidc":
            tuned[key] = _table(key, value)
        elif key == "deid":
            tuned[key] = _deid_settings(value)
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


def _table(key: str, value: object) -> Mapping[str, object]:
    """A TOML table kept as written (read-only); its own module checks its keys."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table ([vigil.{key}]), got {value!r}")
    return MappingProxyType(dict(value))


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


#: ``(gggg,xxee)`` or ``(gggg,bbee)``: a private element's group, block (``xx``: any) and offset, in hex.
_PRIVATE_TAG: Final = re.compile(r"\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{2}|[xX]{2})([0-9A-Fa-f]{2})\s*\)")
#: The longest Private Creator value: it is an LO element (PS3.5 6.2).
_CREATOR_MAX_CHARS: Final = 64
_DEID_KEYS: Final = frozenset({"private_allowlist", "identified_exports", "sites", "deidentify_at_ingest"})
_DEID_SITE_KEYS: Final = frozenset({"private_allowlist", "identified_exports", "deidentify_at_ingest"})


def _deid_settings(value: object) -> DeidSettings:
    """The ``[vigil.deid]`` table, checked: every bad entry is named in the error."""
    if not isinstance(value, dict):
        raise ConfigError(f"deid must be a table ([vigil.deid]), got {value!r}")
    if unknown := sorted(set(value) - _DEID_KEYS):
        raise ConfigError(f"deid: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_DEID_KEYS))})")
    sites = value.get("sites", {})
    if not isinstance(sites, dict):
        raise ConfigError(f"deid.sites must be a table of [vigil.deid.sites.SITE] tables, got {sites!r}")
    return DeidSettings(
        private_allowlist=_private_allowlist("deid.private_allowlist", value.get("private_allowlist", [])),
        identified_exports=_flag("deid.identified_exports", value.get("identified_exports", False)),
        sites=tuple(_deid_site(str(site), table) for site, table in sorted(sites.items())),
        deidentify_at_ingest=_flag("deid.deidentify_at_ingest", value.get("deidentify_at_ingest", False)),
    )


def _deid_site(site: str, table: object) -> DeidSite:
    where = f"deid.sites.{site}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {table!r}")
    if unknown := sorted(set(table) - _DEID_SITE_KEYS):
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_DEID_SITE_KEYS))})")
    allowlist = table.get("private_allowlist")
    identified = table.get("identified_exports")
    at_ingest = table.get("deidentify_at_ingest")
    return DeidSite(
        site=site,
        private_allowlist=None if allowlist is None else _private_allowlist(f"{where}.private_allowlist", allowlist),
        identified_exports=None if identified is None else _flag(f"{where}.identified_exports", identified),
        deidentify_at_ingest=None if at_ingest is None else _flag(f"{where}.deidentify_at_ingest", at_ingest),
    )


def _flag(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _private_allowlist(where: str, value: object) -> tuple[PrivateTag, ...]:
    """A list of ``{ tag = "(gggg,xxee)", creator = "..." }`` tables; duplicates are refused."""
    if not isinstance(value, list):
        raise ConfigError(f'{where} must be a list of {{ tag = "(gggg,xxee)", creator = "..." }} tables, got {value!r}')
    tags = tuple(_private_tag(f"{where}[{i}]", entry) for i, entry in enumerate(value))
    seen: set[PrivateTag] = set()
    for i, tag in enumerate(tags):
        if tag in seen:
            raise ConfigError(f"{where}[{i}]: {tag} is listed twice")
        seen.add(tag)
    return tags


def _private_tag(where: str, entry: object) -> PrivateTag:
    """One allow-list entry: an odd group, a private block's element and its creator."""
    if not isinstance(entry, dict) or set(entry) != {"tag", "creator"}:
        raise ConfigError(f'{where} must be {{ tag = "(gggg,xxee)", creator = "..." }}, got {entry!r}')
    tag, creator = entry["tag"], entry["creator"]
    found = _PRIVATE_TAG.fullmatch(tag.strip()) if isinstance(tag, str) else None
    if found is None:
        raise ConfigError(f"{where}: tag must be written (gggg,xxee) in hex, got {tag!r}")
    group, block, offset = int(found[1], 16), found[2], int(found[3], 16)
    if group % 2 == 0 or group < 0x0009:
        raise ConfigError(f"{where}: tag {tag!r} is not private: its group must be odd, from 0009 to FFFF")
    if block.lower() != "xx" and int(block, 16) < 0x10:
        raise ConfigError(f"{where}: tag {tag!r} names a creator slot, not an element of a block (10 to FF, or xx)")
    if not isinstance(creator, str) or not creator.strip() or len(creator.strip()) > _CREATOR_MAX_CHARS:
        raise ConfigError(f"{where}: creator must be the Private Creator text, 1 to 64 characters, got {creator!r}")
    if "\\" in creator:
        raise ConfigError(f"{where}: creator {creator!r} holds a backslash, which a DICOM creator value cannot")
    return PrivateTag(group, creator.strip(), offset)
