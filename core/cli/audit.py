"""``vigil audit``: verify the ledger (chain and signed checkpoints), checkpoint it, prove an entry, export the key.

Wired into the command tree by ``register_audit(sub, add)``. The services (sqlalchemy,
cryptography) are imported inside the handlers, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli._args import MAX_ID, bounded_int, input_file, output_dir
from core.cli._output import Outcome
from core.cli._paths import check_input_file
from core.config import Settings, load_settings

if TYPE_CHECKING:
    from core.audit.chain import ChainCheck
    from core.services.audit_checkpoints import CheckpointCheck
    from core.services.audit_records import RecordCheck

__all__ = ["register_audit"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]


def _settings() -> Settings:
    return load_settings(os.environ)


def register_audit(sub: Any, add: AddParser) -> None:
    """Attach ``audit verify``, ``checkpoint``, ``prove``, ``public-key`` and ``export`` to ``sub``."""
    p = add(sub, "audit", "audit ledger: verify the chain and signed checkpoints, checkpoint, prove an entry")
    asub = p.add_subparsers(dest="audit_command", required=True, parser_class=type(p))
    v = add(
        asub,
        "verify",
        "recompute every hash and link, and check every signed checkpoint against the ledger, "
        "its signature, the one before it and the external file; exit 1 naming the first failure",
    )
    v.add_argument(
        "--public-key",
        type=input_file,
        default=None,
        metavar="FILE",
        help="the exported public key to trust (default: the installation's own signing key)",
    )
    v.set_defaults(handler=_verify)
    c = add(
        asub, "checkpoint", "sign the ledger's current Merkle tree head; store it and append it to the external file"
    )
    c.add_argument(
        "--if-due",
        action="store_true",
        help="sign only when the configured policy says one is due (audit_checkpoint_every entries or "
        "audit_checkpoint_minutes unsigned); for a service manager's timer",
    )
    c.set_defaults(handler=_checkpoint)
    g = add(asub, "prove", "inclusion proof of one entry against the newest signed checkpoint")
    g.add_argument("seq", type=bounded_int(0, MAX_ID), metavar="SEQ", help="the entry's seq")
    g.set_defaults(handler=_prove)
    add(
        asub, "public-key", "print the checkpoint-signing public key (hex), creating the key on first use"
    ).set_defaults(handler=_public_key)
    x = add(
        asub,
        "export",
        "write an evidence package (entries, signed checkpoints, public key, model cards, reports, summary.html "
        "and a standalone verifier) into a new or empty folder, its entries de-identified; exit 1 when the "
        "ledger fails verification",
    )
    x.add_argument("--out", type=output_dir, required=True, metavar="DIR", help="the package folder: new, or empty")
    x.add_argument(
        "--identified",
        default=None,
        metavar="REASON",
        help="export the entries as stored, identifiers included (refused unless [vigil.deid] identified_exports "
        "allows it); REASON is recorded in the export's audit entry",
    )
    x.set_defaults(handler=_export)


def _verify(args: argparse.Namespace) -> Outcome:
    from core.services import audit as audit_service
    from core.services import audit_checkpoints, audit_records
    from core.services.store import open_store

    trusted = None
    if args.public_key is not None:
        check_input_file(args.public_key)
        trusted = audit_checkpoints.read_public_key_file(Path(args.public_key))
    settings = _settings()
    sf = open_store(settings)
    places = audit_checkpoints.CheckpointPlaces.from_settings(settings)
    chain = audit_service.verify_ledger(sf)
    cps = audit_checkpoints.verify_checkpoints(sf, places, trusted_key=trusted)
    records = audit_records.crosscheck_records(sf)
    ok = chain.ok and cps.ok and records.ok
    data = {
        "ok": ok,
        "checked": chain.checked,
        "first_bad_seq": chain.first_bad_seq,
        "reason": chain.reason if not chain.ok else cps.reason if not cps.ok else records.reason,
        "chain_ok": chain.ok,
        "checkpoints_ok": cps.ok,
        "checkpoints": cps.checkpoints,
        "covered": cps.covered,
        "uncovered": cps.uncovered,
        "failed_checkpoint": cps.failed_tree_size,
        "checkpoint_reason": cps.reason,
        "external_file": str(places.external_file),
        **records.to_dict(),
    }
    return Outcome(data, _verify_text(chain, cps, records), ok=ok)


def _verify_text(chain: ChainCheck, cps: CheckpointCheck, records: RecordCheck) -> str:
    lines = [
        f"audit chain verifies: {chain.checked} entries"
        if chain.ok
        else f"audit chain BROKEN at seq {chain.first_bad_seq}: {chain.reason}"
    ]
    if cps.ok:
        lines.append(f"checkpoints verify: {cps.checkpoints} signed, covering {cps.covered} entries")
    else:
        lines.append(f"checkpoints FAIL at tree size {cps.failed_tree_size}: {cps.reason}")
    if cps.uncovered:
        lines.append(
            f"{cps.uncovered} newest entries are not yet covered by a checkpoint: they chain, but no signature "
            "vouches for them (run `vigil audit checkpoint`)"
        )
    lines.append(_records_line(records))
    return "\n".join(lines)


def _records_line(records: RecordCheck) -> str:
    if not records.ok:
        return f"records FAIL ({records.problems} problems), first: {records.reason}"
    counts = ", ".join(f"{n} {kind}" for kind, n in records.checked.items())
    line = f"records match their audit entries: {counts}"
    unverifiable = sum(records.unverifiable.values())
    if unverifiable:
        line += f"; {unverifiable} written before record hashes cannot be cross-checked"
    return line


def _checkpoint(args: argparse.Namespace) -> Outcome:
    from core.services import audit_checkpoints
    from core.services.store import open_store, utc_now

    settings = _settings()
    places = audit_checkpoints.CheckpointPlaces.from_settings(settings)
    data: dict[str, object]
    if args.if_due:
        policy = audit_checkpoints.checkpoint_policy(settings)
        due = audit_checkpoints.checkpoint_if_due(open_store(settings), places, policy, now=utc_now)
        if due is None:
            data = {"created": False, "due": False, "every": policy.every, "minutes": policy.minutes}
            return Outcome(data, f"no checkpoint due (every {policy.every} entries or {policy.minutes:g} minutes)")
        made = due
    else:
        made = audit_checkpoints.make_checkpoint(open_store(settings), places, now=utc_now)
    data = {
        **made.signed.to_dict(),
        "created": made.created,
        "external_file": str(places.external_file),
    }
    c = made.signed.checkpoint
    verb = "signed" if made.created else "already signed"
    return Outcome(data, f"checkpoint {verb}: {c.tree_size} entries, root {c.root_hash}, key {c.key_id}")


def _prove(args: argparse.Namespace) -> Outcome:
    from core.services import audit_checkpoints
    from core.services.store import open_store

    settings = _settings()
    proof = audit_checkpoints.prove(
        open_store(settings), audit_checkpoints.CheckpointPlaces.from_settings(settings), args.seq
    )
    c = proof.checkpoint.checkpoint
    if proof.ok:
        text = f"seq {proof.seq} is included in checkpoint {c.tree_size} (root {c.root_hash}); path:\n" + "\n".join(
            proof.path
        )
    else:
        why = proof.signature_problem or "the path does not lead to the signed root"
        text = f"seq {proof.seq} does NOT verify against checkpoint {c.tree_size}: {why}"
    return Outcome(proof.to_dict(), text, ok=proof.ok)


def _public_key(args: argparse.Namespace) -> Outcome:
    from core.audit.checkpoint import key_id
    from core.services import audit_checkpoints

    places = audit_checkpoints.CheckpointPlaces.from_settings(_settings())
    key = audit_checkpoints.public_key(places)
    data = {"algorithm": "Ed25519", "public_key": key.hex(), "key_id": key_id(key), "key_file": str(places.key_file)}
    return Outcome(data, key.hex())


def _export(args: argparse.Namespace) -> Outcome:
    import getpass

    from core.services import audit_checkpoints, audit_export
    from core.services.deidentify import deid_secret
    from core.services.store import open_store, utc_now

    settings = _settings()
    identified = None
    if args.identified is not None:
        identified = audit_export.IdentifiedExport(args.identified, settings.deid.identified_exports_allowed())
    summary = audit_export.export_evidence(
        open_store(settings),
        audit_checkpoints.CheckpointPlaces.from_settings(settings),
        args.out,
        actor=f"cli:{getpass.getuser()}",
        now=utc_now,
        identified=identified,
        deid_key=lambda: deid_secret(settings),
    )
    newest = summary.checkpoint
    lines = [
        f"evidence package written to {summary.out_dir}: {summary.entries} entries, "
        f"{summary.checkpoints} signed checkpoint(s)"
        + (f", the newest covering {newest['tree_size']} (root {newest['root_hash']})" if newest else ""),
        "ledger verified at export: " + ("PASSED" if summary.verified else f"FAILED: {summary.reason}"),
        (
            f"de-identified: {summary.deidentified_entries} entries carried identifiers and were pseudonymised"
            if summary.deidentified
            else "IDENTIFIED: the entries are exported as stored (the reason is recorded in the export's audit entry)"
        ),
        "package check: " + summary.package_report[-1] if summary.package_report else "package check: not run",
        f"verify it elsewhere: python {summary.out_dir / 'verify_evidence.py'} --public-key KEY.hex "
        "(the key you obtained with `vigil audit public-key`)",
    ]
    return Outcome(summary.to_dict(), "\n".join(lines), ok=summary.ok)


#: Top-level commands that append to the ledger; after one succeeds a due checkpoint is signed.
WRITING_COMMANDS = frozenset(
    {
        "init",
        "site",
        "ingest",
        "predict",
        "explain",
        "train",
        "validate",
        "calibrator",
        "outcomes",
        "fhir",
        "drift",
        "alert",
        "incident",
        "users",
        "explain-report",
        "model",
        "deploy",
        "holdout",
        "validate-change",
        "deid",
        "pacs",
    }
)


def checkpoint_after(command: str) -> str | None:
    """Sign a checkpoint if one is due after ``command`` wrote to the ledger.

    Returns a warning to print when a due checkpoint could not be signed (the command itself
    succeeded and stays committed), None otherwise.
    """
    if command not in WRITING_COMMANDS:
        return None
    from core.errors import VigilError
    from core.services import audit_checkpoints
    from core.services.store import open_store, utc_now

    settings = _settings()
    try:
        audit_checkpoints.checkpoint_if_due(
            open_store(settings),
            audit_checkpoints.CheckpointPlaces.from_settings(settings),
            audit_checkpoints.checkpoint_policy(settings),
            now=utc_now,
        )
    except VigilError as exc:
        return f"an audit checkpoint was due but not signed: {exc}"
    return None
