"""The README's reliability figures are the tests' own lines, and the role-matrix figure is produced here.

Each figure is printed by the test that measures it, through a function of that test's module
(``kill_9_figure``, ``concurrency_figure``, ``fuzz_figure``, the canary scan's ``_figure`` and
:func:`role_matrix_figure`). The README quotes those lines from a run; the last test here holds
the quotes to the same formats and to the parts that are invariants: nothing lost, no duplicate,
no crash, no leak, no mismatch, and the trial, thread and cell counts the tests use. Counts that
vary from run to run (acknowledged writes, fuzz executions) are checked for form only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from core.errors import PermissionDeniedError, VigilError
from core.services.permissions import ACTIONS, ROLE_PERMISSIONS, Role, SignedInUser
from core.store.engine import make_engine, make_session_factory, migrate
from tests.conftest import NewDatabase
from tests.core.imaging.deid import test_canary_scan as canary
from tests.core.services import test_audit_crash as crash
from tests.core.services import test_concurrency as concurrency
from tests.fuzz import test_fuzz as fuzz
from tests.ui.test_role_matrix import CALLS

README: Final = Path(__file__).resolve().parents[1] / "README.md"
SECTION: Final = "## Reliability figures"
BACKEND_NAMES: Final = ("sqlite", "postgresql")


def role_matrix_figure(backend: str, cells: int, mismatches: int) -> str:
    """The line the role-matrix sweep prints, which the README's reliability section quotes."""
    return f"role matrix [{backend}]: cells checked {cells}, mismatches {mismatches}"


def test_the_role_matrix_sweep_finds_no_mismatch(backend: str, new_database: NewDatabase, tmp_path: Path) -> None:
    # Prepare: one migrated store; every call stops at a refusal or at the empty installation
    engine = make_engine(new_database(backend, migrated=True))
    migrate(engine)
    sf = make_session_factory(engine)

    # Execute: every action as every role, at the service its page calls
    mismatches: list[str] = []
    for action, call in sorted(CALLS.items()):
        for role in Role:
            may = bool(ACTIONS[action] & ROLE_PERMISSIONS[role])
            try:
                call(sf, SignedInUser(f"a-{role.value}", role), tmp_path)
                refused = False
            except PermissionDeniedError:
                refused = True
            except VigilError:
                refused = False  # allowed, then stopped by the empty installation
            if refused == may:
                mismatches.append(f"{role.value} {'refused' if may else 'let through'}: {action}")
    engine.dispose()

    # Assert
    print("\n" + role_matrix_figure(engine.dialect.name, len(CALLS) * len(Role), len(mismatches)))
    assert mismatches == []


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n#", start + len(SECTION))
    return text[start : end if end > 0 else len(text)]


def _pattern(example: str) -> re.Pattern[str]:
    """A pattern for lines shaped like ``example``: its counts (numbers after a space) and its backend become groups."""
    escaped = re.escape(example)
    counts = re.sub(r"(?<=\\ )\d+", lambda _: r"(\d+)", escaped)
    return re.compile(re.sub(r"\\\[\w+\\\]", lambda _: r"\[(\w+)\]", counts))


def _quoted(example: str) -> list[tuple[str, ...]]:
    return _pattern(example).findall(_section())


def test_the_readme_quotes_the_figures_the_tests_print() -> None:
    # Kill -9: per backend, the trial count the test runs, nothing lost, no duplicate
    kill = _quoted(crash.kill_9_figure("sqlite", 1, 2, 3, 4, 5))
    assert sorted(k[0] for k in kill) == sorted(BACKEND_NAMES), kill
    assert all(int(t) == crash.KILL_TRIALS and int(a) > 0 and lost == dup == "0" for _, t, a, lost, _, dup in kill)

    # Concurrent writers: deterministic, so word for word per backend
    attempted = concurrency.WRITERS * concurrency.FORMS_PER_WRITER
    entries = attempted + concurrency.SITE_WRITERS * concurrency.SITES_PER_WRITER
    threads = concurrency.WRITERS + concurrency.SITE_WRITERS
    for name in BACKEND_NAMES:
        line = concurrency.concurrency_figure(name, threads, attempted, attempted, 0, entries, entries)
        assert line in _section(), line

    # Fuzzing: some executions, no crash
    fuzzed = _quoted(fuzz.fuzz_figure(1, 2))
    assert len(fuzzed) == 1 and int(fuzzed[0][0]) > 0 and fuzzed[0][1] == "0", fuzzed

    # Canary scan: the de-identification test holds the exact line; here, nothing leaked
    leaks = _quoted(canary._figure(1, 2))
    assert len(leaks) == 1 and int(leaks[0][0]) > 0 and leaks[0][1] == "0", leaks

    # Role matrix: per backend, every cell of the table, no mismatch
    cells = _quoted(role_matrix_figure("sqlite", 1, 2))
    assert sorted(c[0] for c in cells) == sorted(BACKEND_NAMES), cells
    assert all(int(n) == len(CALLS) * len(Role) and m == "0" for _, n, m in cells), cells
