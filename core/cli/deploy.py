"""``vigil deploy``, ``vigil model tag`` and ``vigil holdout``: blue-green switches, tags, the locked hold-out."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli._args import aware_time, finite_float, seed
from core.cli._output import Outcome
from core.cli._signals import interruptible_sleep, stop_on_signals
from core.config import Settings, load_settings
from core.errors import BadInputError, ConfigError

if TYPE_CHECKING:
    from core.services.deployment import Served
    from core.services.device_grant import DeviceGrant
    from core.store.deployments import DeploymentRecord
    from core.store.engine import SessionFactory

__all__ = ["register_deploy"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]
#: The longest rollback reason kept (it lands in the history and the audit trail).
MAX_REASON = 2000


def _settings() -> Settings:
    return load_settings(os.environ)


def _store(settings: Settings) -> SessionFactory:
    from core.services.store import open_store

    return open_store(settings)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_deploy(sub: Any, add: AddParser) -> None:
    """Attach ``deploy`` (promote, rollback, history, status) and ``holdout`` (lock, show)."""
    p = add(sub, "deploy", "blue-green deployment: promote a validated version, roll back, history")
    dsub = p.add_subparsers(dest="deploy_command", required=True, parser_class=type(p))
    pr = add(
        dsub,
        "promote",
        "switch the serving version to VERSION: needs a passing change-control gate against the serving "
        "version and the approver's electronic signature (password entered again; an identity provider's "
        "account signs in there again with a code)",
    )
    pr.add_argument("version", metavar="VERSION")
    pr.add_argument("--signer", required=True, help="the approver's username (a role that may approve deployments)")
    pr.add_argument("--password-stdin", action="store_true", help="read the signer's password from stdin's first line")
    pr.add_argument(
        "--secrets",
        type=Path,
        default=Path(".streamlit") / "secrets.toml",
        metavar="FILE",
        help="Streamlit's secrets, whose [auth] section names the identity provider: read only when the signer "
        "signs in there, who then signs by entering a code at the provider (default: .streamlit/secrets.toml)",
    )
    pr.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="SITE",
        dest="sites",
        help="switch only this registered site (repeat for several); without it, every site without a switch "
        "of its own",
    )
    pr.set_defaults(handler=_promote)
    rb = add(dsub, "rollback", "return at once to the version that served before the newest switch (of a site)")
    rb.add_argument("--reason", required=True, help="why (kept in the history and the audit trail)")
    rb.add_argument("--site", default=None, help="roll back this site's own newest switch (default: the fleet's)")
    rb.set_defaults(handler=_rollback)
    hi = add(
        dsub,
        "history",
        "every switch; with --site, those that applied to it; with --at too, which version and site "
        "calibrator served it at that time",
    )
    hi.add_argument("--site", default=None, help="a registered site")
    hi.add_argument("--at", type=aware_time, default=None, metavar="TIME", help="ISO-8601 time with a zone")
    hi.set_defaults(handler=_history)
    add(dsub, "status", "the serving version, its slot and the version a rollback returns to").set_defaults(
        handler=_status
    )
    h = add(sub, "holdout", "the locked hold-out the change-control gate evaluates on (never trained on)")
    hsub = h.add_subparsers(dest="holdout_command", required=True, parser_class=type(h))
    lk = add(hsub, "lock", "lock a site- and label-stratified share of the labelled studies no version trained on")
    lk.add_argument(
        "--fraction",
        type=finite_float(0.0, 1.0, above=True),
        default=0.3,
        help="share of each site's labelled positives and negatives, in (0, 1) (default 0.3)",
    )
    lk.add_argument("--seed", type=seed, default=0, help="which studies are drawn (default 0)")
    lk.set_defaults(handler=_holdout_lock)
    add(hsub, "show", "the hold-out's studies per site and label").set_defaults(handler=_holdout_show)


def register_model_tag(msub: Any, add: AddParser) -> None:
    """Attach ``model tag VERSION TAG`` to the ``model`` subcommands."""
    t = add(msub, "tag", "add a tag to a registered version (e.g. a clearance number); tags are never removed")
    t.add_argument("version", metavar="VERSION")
    t.add_argument("tag", metavar="TAG")
    t.set_defaults(handler=_tag)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadInputError("no terminal to prompt for the signer's password: pass --password-stdin and pipe it in")
    return getpass.getpass("Signer's password (electronic signature, 'approved for clinical use'): ")


def _switches(records: Sequence[DeploymentRecord]) -> Outcome:
    """The switches a promotion made, as ``{"deployments": [...]}`` and one line each."""
    from core.services.deployment import deployment_dict

    return Outcome({"deployments": [deployment_dict(r) for r in records]}, "\n".join(_switch_text(r) for r in records))


def _switch_text(d: DeploymentRecord) -> str:
    signed = f", signed by {d.signer_name} ({d.signer}; {d.signature_meaning})" if d.signer else ""
    return (
        f"{d.action}: {d.version} serves {d.scope} from slot {d.slot} since {d.switched_at.isoformat()}"
        f" (was {d.previous_version or 'nothing'}){signed}"
    )


def _promote(args: argparse.Namespace) -> Outcome:
    from core.services import auth, deployment
    from core.services.store import utc_now

    settings = _settings()
    store = _store(settings)
    if auth.provider_issuer(store, args.signer) is not None:
        return _promote_at_provider(args, settings, store)
    password = _read_password(args.password_stdin)
    records = deployment.promote(
        store,
        args.version,
        signer=args.signer,
        password=password,
        models_dir=settings.home / "models",
        actor=_actor(),
        now=utc_now,
        sites=args.sites,
        per_site_allowed=settings.per_site_deployment,
    )
    return _switches(records)


def _promote_at_provider(args: argparse.Namespace, settings: Settings, store: SessionFactory) -> Outcome:
    """The signer signs in only at the identity provider: they re-authenticate there with a device code."""
    from core.services import device_grant, oidc, shell_signature
    from core.services.store import utc_now

    policy = oidc.configured_policy(settings)
    if policy is None:
        raise ConfigError(
            f"signer {args.signer!r} signs in through an identity provider, but this installation configures "
            "none ([vigil.oidc] in vigil.toml): nothing can re-authenticate them"
        )
    if args.password_stdin:
        raise BadInputError(
            f"signer {args.signer!r} signs in at the identity provider, where no password from here can go: "
            "leave out --password-stdin, and enter the code the command shows at the provider"
        )
    client = device_grant.read_client(args.secrets, policy.signing_provider)
    with stop_on_signals() as stop:  # Ctrl-C or SIGTERM while the signer is away: withdrawn, exit 130
        records = shell_signature.promote_signed_from_shell(
            store,
            args.signer,
            args.version,
            client,
            show=_show_code,
            models_dir=settings.home / "models",
            now=utc_now,
            sites=args.sites,
            per_site_allowed=settings.per_site_deployment,
            sleep=interruptible_sleep(stop),
        )
    return _switches(records)


def _show_code(grant: DeviceGrant) -> None:
    """Tell the signer, on stderr (stdout stays the result), where to sign in and with which code."""
    from core.services.deployment import SIGNATURE_MEANING

    where = grant.verification_uri_complete or grant.verification_uri
    sys.stderr.write(
        f"To sign ({SIGNATURE_MEANING!r}), open {where} in a browser, enter the code {grant.user_code} and "
        f"sign in there. Waiting up to {grant.expires_in / 60:.0f} minutes; Ctrl-C withdraws the request.\n"
    )
    sys.stderr.flush()


def _rollback(args: argparse.Namespace) -> Outcome:
    from core.services import deployment
    from core.services.store import utc_now

    reason = args.reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise BadInputError(f"--reason must be 1 to {MAX_REASON} characters, got {len(reason)}")
    settings = _settings()
    record = deployment.rollback(
        _store(settings),
        reason=reason,
        models_dir=settings.home / "models",
        actor=_actor(),
        now=utc_now,
        site=args.site,
    )
    return Outcome(deployment.deployment_dict(record), _switch_text(record))


def _history(args: argparse.Namespace) -> Outcome:
    from core.services import deployment

    if args.at is not None and args.site is None:
        raise BadInputError("give --site and --at together (which version served SITE at TIME)")
    sf = _store(_settings())
    if args.at is not None:
        served = deployment.served_at(sf, site=args.site, at=args.at)
        return Outcome(served.to_dict(), _served_text(served))
    records = deployment.deployment_history(sf, args.site)
    lines = [_switch_text(r) for r in records] or ["no switches recorded"]
    return Outcome({"deployments": [deployment.deployment_dict(r) for r in records]}, "\n".join(lines))


def _served_text(served: Served) -> str:
    d, c = served.deployment, served.calibrator
    head = f"{served.site} at {served.at.isoformat()}"
    if d is None:
        return f"{head}: no version was serving yet"
    how = "its own switch" if d.site is not None else "fleet-wide"
    calibrated = (
        "no site calibrator"
        if c is None
        else f"site calibrator #{c.id} (revision {c.revision}, {c.method}, approved {c.approved_at})"
    )
    return f"{head}: {d.version} (since {d.switched_at.isoformat()}, {d.action}, {how}); {calibrated}"


def _status(args: argparse.Namespace) -> Outcome:
    from core.services import deployment, retrain

    sf = _store(_settings())
    now, per_site = deployment.serving_now(sf)
    if now is None:
        return Outcome({"serving": None, "slot": None, "rollback_to": None}, "no version serving (run `vigil init`)")
    rollback_to = None if now.action == "rollback" else now.previous_version
    proposals = retrain.retrain_proposals(sf)
    data = {
        "serving": now.version,
        "slot": now.slot,
        "since": now.switched_at.isoformat(),
        "rollback_to": rollback_to,
        "sites": {
            s.site: {
                "serving": None if s.deployment is None else s.deployment.version,
                "slot": None if s.deployment is None else s.deployment.slot,
                "own_switch": s.own,
                "rollback_to": s.rollback_to,
            }
            for s in per_site
        },
        "retrain_proposals": [p.to_dict() for p in proposals],
    }
    lines = [f"{now.version} serves from slot {now.slot}; a rollback returns to {rollback_to or 'nothing'}"]
    lines += [
        f"  {s.site}: {s.deployment.version} from slot {s.deployment.slot} (its own switch; a rollback of it "
        f"returns to {s.rollback_to or 'nothing'})"
        for s in per_site
        if s.own and s.deployment is not None
    ]
    lines += [
        f"proposed: retrain {p.parent} for confirmed incident {p.incident_id} ({p.site}, {p.family}): "
        f"vigil train --from {p.parent} --version NAME --for-incident {p.incident_id}"
        for p in proposals
    ]
    return Outcome(data, "\n".join(lines))


def _tag(args: argparse.Namespace) -> Outcome:
    from core.services import deployment
    from core.services.store import utc_now

    added = deployment.add_tag(_store(_settings()), args.version, args.tag, actor=_actor(), now=utc_now)
    verb = "tagged" if added else "already tagged"
    return Outcome({"version": args.version, "tag": args.tag, "added": added}, f"{verb} {args.version}: {args.tag}")


def _holdout_lock(args: argparse.Namespace) -> Outcome:
    from core.services import holdout
    from core.services.store import utc_now

    lock = holdout.lock_holdout(
        _store(_settings()), fraction=args.fraction, seed=args.seed, actor=_actor(), now=utc_now
    )
    added = ", ".join(f"{site} {n}" for site, n in lock.added.items()) or "none (nothing new is labelled)"
    return Outcome(lock.to_dict(), f"locked into the hold-out: {added}; {lock.total} studies locked in all")


def _holdout_show(args: argparse.Namespace) -> Outcome:
    from collections import Counter

    from core.services import holdout

    cases = holdout.holdout_cases(_store(_settings()))
    counts = Counter((c.site, c.label) for c in cases)
    per_site = {
        site: {"n": counts[(site, 0)] + counts[(site, 1)], "positives": counts[(site, 1)]}
        for site in sorted({c.site for c in cases})
    }
    data = {"n": len(cases), "sha256": holdout.holdout_sha256(c.study_uid for c in cases), "per_site": per_site}
    lines = [f"{site:<16} {v['n']:>5} studies, {v['positives']} positive" for site, v in per_site.items()]
    return Outcome(data, "\n".join(lines) or "the hold-out is empty: run `vigil holdout lock`")
