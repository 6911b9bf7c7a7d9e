"""``vigil users list|add|set-password``: local accounts from the shell.

The operator at the shell is trusted (they can read the database file anyway); every change is
audited with ``cli:<login>`` as the actor. Passwords are read from a prompt (asked twice) or,
for scripts, from the first line of standard input with ``--password-stdin``; never from an
argument, where ``ps`` and shell history would keep them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.cli._output import Outcome
from core.config import Settings, load_settings
from core.errors import BadInputError
from core.services.permissions import Role  # an enum: no store, no sqlalchemy

if TYPE_CHECKING:  # sqlalchemy and argon2: imported by the handlers, not by the parser
    from core.store.engine import SessionFactory

__all__ = ["register_users"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]


def _settings() -> Settings:
    # The edge: the CLI reads the environment here and nowhere else in this module. Not cached:
    # main() may run many times in one process (tests, scripts), each with its own environment.
    return load_settings(os.environ)


def _store() -> SessionFactory:
    from core.services.store import open_store

    return open_store(_settings())


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_users(sub: Any, add: AddParser) -> None:
    """Attach ``users`` and its subcommands to the subparsers ``sub``."""
    p = add(sub, "users", "local accounts: list, add, set a password")
    usub = p.add_subparsers(dest="users_command", required=True, parser_class=type(p))
    add(usub, "list", "list accounts and their roles").set_defaults(handler=_list)
    a = add(usub, "add", "create an account (the password is prompted for, or read with --password-stdin)")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=[r.value for r in Role], help="the account's role")
    a.add_argument(
        "--full-name",
        required=True,
        metavar="NAME",
        help="the person's full name, printed on their electronic signatures (21 CFR 11.50)",
    )
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    a.set_defaults(handler=_add)
    s = add(usub, "set-password", "replace an account's password")
    s.add_argument("username")
    s.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    s.set_defaults(handler=_set_password)


def _list(args: argparse.Namespace) -> Outcome:
    from core.services import auth

    infos = auth.list_users(_store())
    rows = [
        {"username": u.username, "full_name": u.full_name, "role": u.role, "created_at": u.created_at.isoformat()}
        for u in infos
    ]
    lines = [f"{r['username']:<24} {r['role']:<14} {r['full_name']}" for r in rows]
    text = "\n".join(lines) or "no users (run `vigil init`)"
    return Outcome({"users": rows}, text)


def _add(args: argparse.Namespace) -> Outcome:
    from core.services import auth
    from core.services.store import utc_now

    full_name = auth.check_full_name(args.full_name)  # before the password prompt: nothing asked in vain
    local = _local_sign_in()
    password = _read_password(args.password_stdin)
    info = auth.add_user(_store(), args.username, args.role, password, actor=_actor(), now=utc_now, full_name=full_name)
    return Outcome(
        {"username": info.username, "full_name": info.full_name, "role": info.role, "local_sign_in": local},
        f"created user {info.username} ({info.full_name}, {info.role})" + _unless_local(local, info.username),
    )


def _set_password(args: argparse.Namespace) -> Outcome:
    from core.services import auth
    from core.services.store import utc_now

    local = _local_sign_in()
    password = _read_password(args.password_stdin)
    auth.set_password(_store(), args.username, password, actor=_actor(), now=utc_now)
    name = args.username.strip()
    return Outcome(
        {"username": name, "password_changed": True, "local_sign_in": local},
        f"password changed for {name}" + _unless_local(local, name),
    )


def _local_sign_in() -> bool:
    """Whether the app's password form is offered; checks ``[vigil.oidc]`` before any password is asked for.

    A table that does not parse shuts both ways into the app until it is fixed, so the shell says
    so here, naming the key, rather than leaving the administrator to find it at the sign-in screen.
    """
    from core.services import oidc

    policy = oidc.configured_policy(_settings())
    return policy is None or policy.local_sign_in


def _unless_local(local: bool, username: str) -> str:
    if local:
        return ""
    return (
        f"; note: local sign-in is off ([vigil.oidc] local_sign_in = false), so {username} cannot sign in to "
        "the app with this password until an administrator turns it back on"
    )


def _read_password(from_stdin: bool) -> str:
    """The new password, from stdin's first line or an interactive prompt asked twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadInputError("no terminal to prompt for a password: pass --password-stdin and pipe it in")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise BadInputError("the two passwords differ; nothing was changed")
    return first
