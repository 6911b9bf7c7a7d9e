"""The ``vigil`` command: argument parsing and dispatch only; the work is in ``core.services``.

Every command takes ``--json`` and then prints exactly one JSON object on stdout. Exit codes:
0 success, 1 a check failed, 2 bad input (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli import commands
from core.cli._output import emit, exit_code_for
from core.errors import VigilError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"vigil: error: {message}\n")
        raise SystemExit(2)


def _add(sub: argparse._SubParsersAction[_Parser], name: str, help_: str) -> _Parser:
    p = sub.add_parser(name, help=help_, description=help_)
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    return p


def build_parser() -> _Parser:
    """The full command tree; each leaf sets ``handler`` to a function in ``core.cli.commands``."""
    parser = _Parser(prog="vigil", description="Vigil: review and vigilance for deployed imaging AI.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.register(sub, _add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vigil`` console script."""
    args = build_parser().parse_args(argv)
    try:
        outcome = args.handler(args)
    except VigilError as exc:
        code = exit_code_for(exc)
        sys.stderr.write(f"vigil: error: {exc}\n")
        return code
    except KeyboardInterrupt:
        sys.stderr.write("vigil: interrupted\n")
        return 130
    return emit(outcome, as_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
