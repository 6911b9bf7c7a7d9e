"""``vigil fhir``: ingest FHIR R4 payloads (files or a server), list unmapped codes, re-link evidence.

Wired into the command tree by ``register_fhir(sub, add)``. fhir.resources and requests are
imported inside the handlers, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from core.cli._args import existing_path, input_file
from core.cli._output import Outcome
from core.cli._paths import check_existing_path, check_input_file
from core.config import Settings, load_settings
from core.errors import BadInputError

__all__ = ["register_fhir"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]

#: What a folder given to ``vigil fhir ingest`` contributes: Bundles and bulk-export files.
SUFFIXES: Final = (".json", ".ndjson")
#: Largest payload file read, bytes. Every file is parsed before the first is stored, and a parsed
#: resource takes about ten times its JSON in memory; bulk-export servers split larger exports.
MAX_FILE_BYTES: Final = 256 * 2**20
#: The resource types ``vigil fhir pull`` searches when ``--types`` is not given.
DEFAULT_TYPES: Final = (
    "Patient",
    "ImagingStudy",
    "DiagnosticReport",
    "Observation",
    "Condition",
    "Procedure",
    "DocumentReference",
)


def _settings() -> Settings:
    return load_settings(os.environ)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_fhir(sub: Any, add: AddParser) -> None:
    """Attach ``fhir ingest``, ``fhir pull``, ``fhir unmapped`` and ``fhir relink`` to the subparsers ``sub``."""
    p = add(sub, "fhir", "EMR outcomes from FHIR R4: ingest, pull, unmapped codes, re-link")
    fsub = p.add_subparsers(dest="fhir_command", required=True, parser_class=type(p))
    g = add(fsub, "ingest", "ingest FHIR Bundles (.json) or bulk-export NDJSON (.ndjson), files or folders")
    g.add_argument("paths", nargs="+", type=existing_path, metavar="FILE")
    g.set_defaults(handler=_ingest)
    g = add(fsub, "pull", "search a FHIR server for new resources since the last pull and ingest them")
    g.add_argument("--url", required=True, help="the server's FHIR base URL (http or https)")
    g.add_argument(
        "--since", type=_instant, default=None, metavar="INSTANT", help="only resources updated after this FHIR instant"
    )
    g.add_argument("--token-file", type=input_file, default=None, metavar="FILE", help="a file holding a bearer token")
    g.add_argument(
        "--types",
        type=_resource_types,
        default=DEFAULT_TYPES,
        metavar="TYPE,...",
        help=f"resource types to search (default: {','.join(DEFAULT_TYPES)})",
    )
    g.set_defaults(handler=_pull)
    add(fsub, "unmapped", "codes the outcome mapping does not know, with counts, for an admin to map").set_defaults(
        handler=_unmapped
    )
    add(fsub, "relink", "link stored EMR evidence to studies that have arrived since").set_defaults(handler=_relink)


def _resource_types(text: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in text.split(","))
    if not types or any(t not in DEFAULT_TYPES for t in types):
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of {', '.join(DEFAULT_TYPES)}; got {text!r}")
    return types


def _instant(text: str) -> str:
    from core.fhir.client import search_params  # requests: only when the argument is given

    try:
        search_params(last_updated_gt=text)
    except BadInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def payload_files(paths: Iterable[Path]) -> list[Path]:
    """The files to ingest: each file as given, each folder's ``.json``/``.ndjson`` files (sorted, recursive).

    Raises
    ------
    PathNotFoundError, UnusablePathError
        A path is missing, or a file is not a readable regular file (a FIFO or device is refused).
    BadInputError
        A folder holds no payload file, or a file is over :data:`MAX_FILE_BYTES`.
    """
    files: list[Path] = []
    for path in paths:
        check_existing_path(path)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and not p.name.startswith("."))
            if not found:
                raise BadInputError(f"folder {path} holds no .json or .ndjson file")
            files += found
        else:
            files.append(path)
    for file in files:
        check_input_file(file)
        if (size := file.stat().st_size) > MAX_FILE_BYTES:
            raise BadInputError(
                f"{file} is {size:,} bytes; a payload file may hold at most {MAX_FILE_BYTES:,} (split the export)"
            )
    return files


def _ingest(args: argparse.Namespace) -> Outcome:
    from core.fhir import load_mapping
    from core.services import fhir_ingest
    from core.services.store import open_store, utc_now

    files = payload_files(args.paths)
    settings = _settings()
    existing = fhir_ingest.read_site_secret(settings)
    secret = existing or secrets.token_bytes(fhir_ingest.KEY_BYTES)
    mapping = load_mapping()

    def prepare(key: bytes) -> list[fhir_ingest.PreparedPayload]:
        return [fhir_ingest.prepare_payload(f.read_bytes(), name=str(f), secret=key, mapping=mapping) for f in files]

    # Every file is checked before anything is written (the first run's key included): a bad one
    # exits 2 with nothing written.
    prepared = prepare(secret)
    if existing is None and (installed := fhir_ingest.install_site_secret(settings, secret)) != secret:
        secret, prepared = installed, prepare(installed)  # another process made the key meanwhile
    sf = open_store(settings)
    reports = [fhir_ingest.ingest_prepared(sf, p, secret=secret, actor=_actor(), now=utc_now) for p in prepared]
    data = {"files": [r.to_dict() for r in reports], "mapping_version": mapping.version}
    lines = []
    for r in reports:
        linked = ", ".join(f"{k} {v}" for k, v in sorted(r.linked.items())) or "none"
        lines.append(
            f"{r.name}: {r.kind}, {r.n_entries} entries, {r.accepted} accepted, {len(r.rejected)} rejected, "
            f"{r.unmapped} unmapped codes; evidence {r.evidence} new ({r.already_stored} already stored); "
            f"linked: {linked}; {r.unlinked} waiting for their study; {r.outcomes} outcomes"
        )
        lines += [f"  rejected {e.path}: {e.message}" for e in r.rejected]
    return Outcome(data, "\n".join(lines))


def _pull(args: argparse.Namespace) -> Outcome:
    from core.fhir.client import FhirClient, TokenFile
    from core.services import fhir_ingest
    from core.services.fhir_pull import pull
    from core.services.store import open_store, utc_now

    if args.token_file is not None:
        check_input_file(args.token_file)
    settings = _settings()
    token = TokenFile(args.token_file) if args.token_file is not None else None
    with FhirClient(args.url, token=token) as client:  # checks the URL before the key is made
        report = pull(
            open_store(settings),
            client,
            resource_types=args.types,
            since=args.since,
            secret=fhir_ingest.site_secret(settings),
            actor=_actor(),
            now=utc_now,
        )
    return Outcome(report.to_dict(), report.summary())


def _unmapped(args: argparse.Namespace) -> Outcome:
    from core.services import fhir_ingest
    from core.services.store import open_store

    codes = fhir_ingest.unmapped_codes(open_store(_settings()))
    data = {
        "codes": [
            {
                "system": c.system,
                "code": c.code,
                "resource_type": c.resource_type,
                "count": c.count,
                "first_seen": c.first_seen.isoformat(),
                "last_seen": c.last_seen.isoformat(),
            }
            for c in codes
        ]
    }
    if not codes:
        return Outcome(data, "every code seen so far is mapped")
    lines = [f"{len(codes)} codes the outcome mapping does not know (map them in core/fhir/outcome_codes.json):"]
    lines += [f"  {c.count:>6}  {c.resource_type:<18} {c.system}|{c.code}" for c in codes]
    return Outcome(data, "\n".join(lines))


def _relink(args: argparse.Namespace) -> Outcome:
    from core.services import fhir_ingest
    from core.services.store import open_store, utc_now

    settings = _settings()
    report = fhir_ingest.relink(
        open_store(settings), secret=fhir_ingest.site_secret(settings), actor=_actor(), now=utc_now
    )
    linked = ", ".join(f"{k} {v}" for k, v in sorted(report.linked.items())) or "none"
    text = (
        f"{report.examined} unlinked evidence examined; linked: {linked}; {report.ambiguous} ambiguous; "
        f"{report.outcomes} outcomes written"
    )
    return Outcome(report.to_dict(), text)
