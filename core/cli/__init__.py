"""The ``vigil`` command: argument parsing and dispatch only; the work is in ``core.services``.

Every command takes ``--json`` and then prints exactly one JSON object on stdout. Exit codes:
0 success, 1 a check failed, 2 bad input (one line on stderr, nothing written). Numbers, database
ids and paths are checked while parsing (``core.cli._args``), so a bad one stops before any work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli import commands
from core.cli._output import emit, exit_code_for, one_line
from core.cli.audit import checkpoint_after
from core.cli.deid import register_deid
from core.cli.fl import register_fl
from core.cli.pacs import register_pacs
from core.errors import VigilError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        _write_error(message)
        raise SystemExit(2)


def _write_error(message: str) -> None:
    """Write ``message`` as the command's one-line error on stderr."""
    sys.stderr.write(f"vigil: error: {one_line(message)}\n")


def _add(sub: argparse._SubParsersAction[_Parser], name: str, help_: str) -> _Parser:
    p = sub.add_parser(name, help=help_, description=help_)
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    return p


def build_parser() -> _Parser:
    """The full command tree; each leaf sets ``handler`` to a function in ``core.cli.commands``."""
    parser = _Parser(prog="vigil", description="Vigil: review and vigilance for deployed imaging AI.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.register(sub, _add)
    register_deid(sub, _add)
    register_pacs(sub, _add)
    register_fl(sub, _add)
    return parser


def _not_utf8(argv: Sequence[str]) -> str | None:
    """The first argument that is not UTF-8 text (Python keeps its undecodable bytes as lone surrogates)."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg
    return None


def _exit_status(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else int(exc.code is not None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vigil`` console script; returns the exit code (parsing errors and ``--help`` too)."""
    words = sys.argv[1:] if argv is None else list(argv)
    # Every value may end up in the database, the audit trail or a JSON reply, all of them UTF-8.
    if (bad := _not_utf8(words)) is not None:
        _write_error(f"argument is not valid UTF-8 text: {bad!r}")
        return 2
    try:
        args = build_parser().parse_args(words)
    except SystemExit as exc:  # a usage error (already reported on one line) or --help
        return _exit_status(exc)
    try:
        outcome = args.handler(args)
    except VigilError as exc:
        code = exit_code_for(exc)
        _write_error(str(exc))
        return code
    except KeyboardInterrupt:
        sys.stderr.write("vigil: interrupted\n")
        return 130
    code = emit(outcome, as_json=args.json)
    if (warning := checkpoint_after(args.command)) is not None:
        sys.stderr.write(f"vigil: warning: {one_line(warning)}\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
