"""Property: no command line, whatever its values, makes ``vigil`` crash or break its output contract.

Every leaf command is found by walking ``core.cli.build_parser()``, and its arguments by reading
the leaf's argparse actions, so a command added later is covered without touching this file.
Each argument is given values an operator or a script can produce by mistake: huge and negative
whole numbers, NaN and infinities, unicode, control characters, empty strings, text that is not
UTF-8, devices (``/dev/null``, ``/dev/zero``, ``/dev/full``), a FIFO, regular files where folders
are expected and the reverse, paths under a regular file, unwritable places, dangling and looping
links, a name too long for the filesystem; plus a few values that are valid, so that the success
paths run too. Per run (``core.cli.main`` in-process, one throwaway VIGIL_HOME per module):

- the exit code is 0, 1 or 2, and nothing raises;
- on exit 2: exactly one line on stderr, nothing on stdout, no audit entry and no file written;
- with ``--json`` on exit 0 or 1: stdout is exactly one JSON object on one line.

The long-running commands (:data:`LONG`: ``init``, ``train``, ``bench``) get the same values with
their work replaced by a sentinel: a run must exit 2 before the work starts, or reach it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.cli import build_parser, main
from core.config import Settings
from core.services import models
from core.services.store import open_store, utc_now
from core.store import studies
from tests.factories import RANDOM_VERSION, write_random_model

REPO: Final = Path(__file__).resolve().parents[1]
#: Commands whose work takes minutes: only their argument checking is exercised (see ``no_work``).
LONG: Final = frozenset({"init", "train", "bench", "fl"})
#: Subcommands of a long command that only read the store: they run to the end like quick ones.
READ_ONLY: Final = frozenset({("fl", "list"), ("fl", "show")})


def _is_long(words: list[str] | tuple[str, ...]) -> bool:
    return words[0] in LONG and tuple(words[:2]) not in READ_ONLY


#: Options every run of a command gets, drawn from these values only: ``sample-data`` without
#: ``--studies`` writes the full cohort (about 1,300 studies) and a large valid count is minutes of
#: honest work, so its valid counts here are small; the bad ones are all here.
PINNED_VALID: Final = ("1", "2")
PINNED: Final = {
    ("sample-data", "--studies"): (*PINNED_VALID, "0", "-1", "5001", "100000000", "9" * 23, "", "two", "nan", "\x00"),
}
#: The site registered in the module's store, so that site-scoped commands can succeed.
SITE: Final = "NORTH"
PASSWORD: Final = "correct-Horse-battery-staple-42"

SETTINGS: Final = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class WorkStarted(Exception):  # noqa: N818 - a sentinel, not an error
    """Raised in place of a long command's work: every argument was accepted."""


class RunawayWork(AssertionError):
    """A command accepted a count that would keep it writing for hours (the fuse in ``vigil_home``)."""


# --- the command tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One runnable command: its words (``("alert", "ack")``), its parser and that parser's arguments."""

    words: tuple[str, ...]
    parser: argparse.ArgumentParser
    actions: tuple[argparse.Action, ...]

    @property
    def name(self) -> str:
        return " ".join(self.words)


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[Leaf]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        own = tuple(a for a in parser._actions if not isinstance(a, argparse._HelpAction) and a.dest != "json")
        yield Leaf(words, parser, own)
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, (*words, name))


LEAVES: Final = tuple(_leaves(build_parser()))
QUICK: Final = tuple(leaf for leaf in LEAVES if not _is_long(leaf.words))
SLOW: Final = tuple(leaf for leaf in LEAVES if _is_long(leaf.words))


# --- values ---------------------------------------------------------------------------------------

NUMBERS: Final = (
    "0", "1", "2", "-1", "-0", "7", " 3 ", "1_000", "1e3", "0x10", "٣",
    str(2**31), str(2**32), str(2**63 - 1), str(2**63), str(-(2**63) - 1), "9" * 23, "9" * 5000,
    "nan", "inf", "-inf", "1e308", "1e-320", "0.5", "0.03", "1.5", "5000", "5001",
)  # fmt: skip
TEXTS: Final = (
    "", " ", "\t", "\n", "a\nb", "\r\n", "\x1b[31mred", "\x00", "nul\x00byte", "\u2028", "\x85", "é",
    "日本語", "🙂", "\u202eevil", "\udcff", "x" * 300, "-x", "--json", "-h", "--help", "a,b", "'", '"',
    SITE, "NO-SUCH-SITE", "open", "open,acknowledged", "nope", "day", "studies:5", "studies:0",
    "studies:-1", "studies:99999999999999999999", "gradcam", "gradientshap", "kernelshap", "lime",
    "platt", "isotonic", "auto", "cxr-nodule-1.0.0", "radiologist", "1.2.3.999",
)  # fmt: skip
#: A real radiograph of the committed cohort (ingested by the module's fixture) and its study.
SAMPLE_DICOM: Final = min((REPO / "sample_data" / "dicom" / "benchmark").glob("*.dcm"))
#: Plausible values of plain-text arguments, by argparse ``dest``.
PLAUSIBLE_BY_NAME: Final[dict[str, tuple[str, ...]]] = {
    "site": (SITE,),
    "name": ("EAST", SITE),
    "method": ("gradcam", "auto"),  # explain's and calibrator fit's; the others are among TEXTS
    "model": (RANDOM_VERSION,),
    "version": ("cxr-nodule-1.0.0",),  # not the registered one: its explain-report takes minutes
    "status": ("open", "open,acknowledged", "resolved"),
    "window": ("day", "studies:5"),
    "distance_window": ("studies:25", "studies:5"),
    "note": ("checked the detector",),
    "username": ("alice",),
}
#: Numbers no argument of ``vigil`` accepts (every count, id, seed, limit and weight is finite, at least
#: 0 and below 2**63): the sweep gives each to each numeric argument and expects exit 2.
REFUSED_NUMBERS: Final = ("-1", str(2**63), "9" * 23, "nan", "inf", "")
#: Fixed paths outside the throwaway folder: devices and places nobody may create entries in.
SYSTEM_PATHS: Final = (
    "/dev/null", "/dev/zero", "/dev/full", "/dev/null/x", "/proc/vigil-x", "/proc/sys/vigil-x",
    "/sys/vigil-x", "/nonexistent/vigil/x",
)  # fmt: skip


@dataclass(frozen=True)
class Zoo:
    """Paths of every awkward kind, made once per module under a throwaway folder, and the stored study."""

    root: Path
    study_uid: str = "1.2.3.999"

    def paths(self) -> tuple[str, ...]:
        r = self.root
        made = (
            r, r / "file", r / "file" / "sub", r / "file" / "x.npy", r / "dir", r / "dir.npy", r / "fifo",
            r / "fifo.npy", r / "readonly", r / "readonly" / "x", r / "readonly" / "x.npy", r / "loop",
            r / "dangling", r / "binary.csv", r / ("n" * 300), r / "new", r / "new.npy", r / "new.md",
            r / "new" / "deeper" / "x.npy", r / "dir" / "out.npy", r / "cohort",
        )  # fmt: skip
        real = (REPO / "sample_data" / "manifest.csv", SAMPLE_DICOM)
        return (*SYSTEM_PATHS, *(str(p) for p in (*made, *real)))

    def awkward_paths(self) -> tuple[str, ...]:
        """The paths no command may crash on, for the sweep."""
        r = self.root
        made = (
            r / "file", r / "file" / "sub", r / "file" / "x.npy", r / "dir.npy", r / "fifo", r / "readonly" / "x",
            r / "loop", r / "dangling", r / ("n" * 300), r / "binary.csv", r / "cohort",
        )  # fmt: skip
        return (*SYSTEM_PATHS[:6], "", "\x00", *(str(p) for p in made))

    def plausible(self, kind: str, dest: str) -> tuple[str, ...]:
        """Paths that suit an argument of the ``core.cli._args`` type named ``kind``; the stored study's UID."""
        if dest == "study_uid":
            return (self.study_uid,)
        r = self.root
        by_kind = {
            "output_file": (r / "new.npy", r / "dir" / "out.npy", r / "new.md"),
            "output_dir": (r / "new", r / "dir", r / "new" / "deeper"),
            "input_file": (REPO / "sample_data" / "manifest.csv", r / "binary.csv"),
            "input_dir": (r / "dir", r / "cohort", REPO / "sample_data"),
            "existing_path": (SAMPLE_DICOM, r / "dir", r / "file", r / "fifo", Path("/dev/zero")),
        }
        return tuple(str(p) for p in by_kind.get(kind, ()))


def _make_zoo(root: Path) -> Zoo:
    root.mkdir()
    (root / "file").write_text("not a folder\n")
    (root / "binary.csv").write_bytes(b"\xff\xfe\x00\x81study_uid,label\n\xc3\x28\n")
    (root / "cohort").mkdir()  # a cohort folder whose manifest and masks are garbage
    (root / "cohort" / "manifest.csv").write_bytes((root / "binary.csv").read_bytes())
    (root / "cohort" / "masks.npz").write_bytes(b"PK\x03\x04 not a zip")
    (root / "dir").mkdir()
    (root / "dir.npy").mkdir()
    os.mkfifo(root / "fifo")
    (root / "readonly").mkdir()
    (root / "readonly").chmod(stat.S_IRUSR | stat.S_IXUSR)  # root ignores it; /proc/sys covers that case
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "nowhere")
    return Zoo(root)


def _relative_text() -> st.SearchStrategy[str]:
    # Random text doubles as a relative path: never one that could leave the throwaway working
    # folder (as root, `sample-data --out /x` would write at the filesystem's root).
    return st.text(max_size=12).filter(lambda s: not s.startswith("/") and ".." not in s)


def _plausible(action: argparse.Action, zoo: Zoo) -> tuple[str, ...]:
    """Values that could be right for ``action``, from its choices, its type's name or its name.

    Mostly-plausible command lines reach past the first check into the services; an argument
    this table does not know gets only the wild values, which is still a test.
    """
    if action.choices:
        return tuple(str(c) for c in action.choices)
    kind = getattr(action.type, "__name__", "")
    if kind in {"float", "finite_float"}:
        return ("0.03", "0.5", "0.95", "2", "1000")
    if kind.startswith("int"):
        return ("1", "2", "3", "5", "20", "0")  # the first is the sweep's baseline: valid for an id too
    return zoo.plausible(kind, action.dest) or PLAUSIBLE_BY_NAME.get(action.dest, ())


def _edges(action: argparse.Action, zoo: Zoo) -> tuple[str, ...]:
    """The awkward values of the argument's own kind: numbers for a number, paths for a path, text otherwise."""
    kind = getattr(action.type, "__name__", "")
    if kind.startswith("int") or kind in {"float", "finite_float"}:
        return NUMBERS
    if kind in {"output_file", "output_dir", "input_file", "input_dir", "existing_path", "Path"}:
        return zoo.paths()
    return TEXTS


def _value(action: argparse.Action, zoo: Zoo) -> st.SearchStrategy[str]:
    """A value for one argument: plausible six times in ten, an awkward one of its kind two, anything two."""
    anything = st.one_of(
        st.sampled_from(NUMBERS), st.sampled_from(TEXTS), st.sampled_from(zoo.paths()), _relative_text()
    )
    edges = st.sampled_from(_edges(action, zoo))
    plausible = _plausible(action, zoo)
    if not plausible:
        return st.one_of(edges, anything)
    return st.integers(0, 9).flatmap(lambda k: st.sampled_from(plausible) if k < 6 else (edges if k < 8 else anything))


@st.composite
def _command_line(draw: st.DrawFn, leaf: Leaf, zoo: Zoo) -> tuple[list[str], bool]:
    """A command line for ``leaf`` and whether it asks for ``--json``."""
    options: list[str] = []
    pinned: list[str] = []
    positionals: list[str] = []
    for action in leaf.actions:
        option = action.option_strings[-1] if action.option_strings else ""
        if not option:
            count = 1 if action.nargs is None else draw(st.integers(1, 3))
            positionals += [draw(_value(action, zoo)) for _ in range(count)]
        elif action.nargs == 0:  # a flag
            if draw(st.booleans()):
                options.append(option)
        elif (values := PINNED.get((leaf.name, option))) is not None:
            pinned.append(f"{option}={draw(st.sampled_from(values))}")
        elif action.required or draw(st.integers(0, 2)) == 0:
            # --name=VALUE: a value that starts with "-" stays a value
            options.append(f"{option}={draw(_value(action, zoo))}")
    if draw(st.integers(0, 15)) == 0 and options:  # now and then, a missing required option
        options.pop(draw(st.integers(0, len(options) - 1)))
    options += pinned
    as_json = draw(st.integers(0, 3)) > 0
    # "--" ends the options, so that a positional such as "-h" or "-5" stays a value.
    tail = ["--", *positionals] if positionals else []
    return [*leaf.words, *options, *(["--json"] if as_json else []), *tail], as_json


# --- running one command line ---------------------------------------------------------------------


@dataclass(frozen=True)
class Home:
    """The module's throwaway VIGIL_HOME and database, and the awkward paths."""

    home: Path
    db: Path
    zoo: Zoo
    scratch: Path


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def _invoke(argv: list[str]) -> Run:
    out, err = io.StringIO(), io.StringIO()
    stdin = io.StringIO(PASSWORD + "\n")  # for --password-stdin; a prompt sees no terminal and refuses
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _swap_stdin(stdin):
        try:
            code = main(argv)
        except SystemExit as exc:  # what the console script would turn into its exit status
            code = exc.code if isinstance(exc.code, int) else 1
    return Run(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _swap_stdin(replacement: io.StringIO) -> Iterator[None]:
    saved, sys.stdin = sys.stdin, replacement
    try:
        yield
    finally:
        sys.stdin = saved


def _audit_count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return int(con.execute("SELECT count(*) FROM audit_entry").fetchone()[0])


def _tree(*roots: Path) -> set[tuple[str, int]]:
    """Every entry under ``roots`` with its size, to see that a refused command wrote nothing."""
    found: set[tuple[str, int]] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                path = Path(dirpath, name)
                found.add((str(path), path.lstat().st_size if not path.is_dir() else 0))
    return found


def _check(run: Run, argv: list[str], as_json: bool) -> None:
    shown = f"vigil {argv!r} exited {run.code}\nstdout: {run.out[:400]!r}\nstderr: {run.err[:400]!r}"
    assert run.code in (0, 1, 2), shown
    assert "Traceback" not in run.err, shown
    if run.code == 2:
        assert run.out == "", shown
        assert run.err.startswith("vigil: error: ") and run.err.endswith("\n"), shown
        assert len(run.err.splitlines()) == 1, shown
    elif as_json:
        assert run.out.endswith("\n") and run.out.count("\n") == 1, shown
        assert isinstance(json.loads(run.out), dict), shown


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vigil_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A store with a random-weight serving model, one site and one scored study; the zoo; a working folder."""
    base = tmp_path_factory.mktemp("cli-properties")
    zoo = _make_zoo(base / "zoo")
    home = Home(base / "home", base / "vigil.db", zoo, base / "cwd")
    home.scratch.mkdir()
    settings = Settings(home=home.home, database_url=f"sqlite:///{home.db}")
    sf = open_store(settings)
    card = write_random_model(base / "model")
    models.register_model(sf, card, source_dir=base / "model", models_dir=home.home / "models", actor="t", now=utc_now)
    with pytest.MonkeyPatch.context() as mp:
        _fuse(mp)
        mp.setenv("VIGIL_HOME", str(home.home))
        mp.setenv("VIGIL_DATABASE_URL", settings.database_url)
        mp.delenv("VIGIL_CONFIG", raising=False)
        mp.chdir(home.scratch)  # a relative path value lands here, never in the repository
        for argv in (["site", "add", SITE, "--benchmark"], ["ingest", str(SAMPLE_DICOM), "--site", SITE], ["predict"]):
            assert _invoke(argv).code == 0, argv
        with sf() as session:
            uid = studies.list_studies(session, limit=1)[0].study_uid
        yield replace(home, zoo=replace(zoo, study_uid=uid))
    (zoo.root / "readonly").chmod(stat.S_IRWXU)  # let pytest remove it


def _fuse(mp: pytest.MonkeyPatch) -> None:
    """Fail at once, rather than fill the disk, if ``sample-data`` ever accepts a large count again."""
    import core.sampledata

    generate = core.sampledata.generate_cohort

    def guarded(out_dir: Path, *, studies_per_site: Any = None, **kwargs: Any) -> Any:
        if not isinstance(studies_per_site, int) or studies_per_site > max(map(int, PINNED_VALID)):
            raise RunawayWork(f"sample-data was let through with studies_per_site={studies_per_site!r}")
        return generate(out_dir, studies_per_site=studies_per_site, **kwargs)

    mp.setattr(core.sampledata, "generate_cohort", guarded)


@pytest.fixture(scope="module")
def no_work() -> Iterator[None]:
    """Replace the long commands' work with :class:`WorkStarted` (and the allocator tweak with nothing)."""
    from core.bench import suites
    from core.models import allocator, training
    from core.services import setup

    def started(*_args: Any, **_kwargs: Any) -> Any:
        raise WorkStarted

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train_model", started)
        mp.setattr(allocator, "retain_freed_memory", lambda *_a, **_k: False)
        mp.setattr(suites, "run_suite", started)
        mp.setattr(setup, "initialize", started)
        yield


# --- the properties -------------------------------------------------------------------------------


def test_the_walk_finds_every_command() -> None:
    # Assert: the walk reaches the leaves (a broken walk would make the properties below vacuous)
    names = {leaf.name for leaf in LEAVES}
    assert {"sample-data", "calibrator approve", "alert ack", "explain", "ingest", "train", "bench"} <= names
    assert all(callable(leaf.parser.get_default("handler")) for leaf in LEAVES)
    assert set(QUICK) | set(SLOW) == set(LEAVES) and len(QUICK) > 20


def _run_and_check(home: Home, argv: list[str], as_json: bool, *, must_refuse: bool = False) -> None:
    """Run ``argv`` and check the contract; a long command must refuse its values or reach its work."""
    audit_before = _audit_count(home.db)
    files_before = _tree(home.zoo.root, home.scratch, home.home)
    try:
        run = _invoke(argv)
    except WorkStarted:
        assert _is_long(argv) and not must_refuse, f"vigil {argv!r} started its work instead of refusing"
        return  # every value was accepted and the long work began
    _check(run, argv, as_json)
    if must_refuse or _is_long(argv):
        assert run.code == 2, f"vigil {argv!r} did not refuse its values (exit {run.code})"
    if run.code == 2:
        assert _audit_count(home.db) == audit_before, f"vigil {argv!r} exited 2 after an audit entry"
        assert _tree(home.zoo.root, home.scratch, home.home) == files_before, f"vigil {argv!r} exited 2 after writing"


@pytest.mark.parametrize("leaf", QUICK, ids=lambda leaf: leaf.name)
@SETTINGS
@given(data=st.data())
def test_any_values_keep_the_contract(vigil_home: Home, leaf: Leaf, data: st.DataObject) -> None:
    # Prepare
    argv, as_json = data.draw(_command_line(leaf, vigil_home.zoo), label="argv")

    # Execute / Assert
    _run_and_check(vigil_home, argv, as_json)


@pytest.mark.parametrize("leaf", SLOW, ids=lambda leaf: leaf.name)
@SETTINGS
@given(data=st.data())
def test_long_commands_refuse_bad_values_before_any_work(
    vigil_home: Home, no_work: None, leaf: Leaf, data: st.DataObject
) -> None:
    # Prepare
    argv, as_json = data.draw(_command_line(leaf, vigil_home.zoo), label="argv")

    # Execute / Assert
    _run_and_check(vigil_home, argv, as_json)


def _is_number(action: argparse.Action) -> bool:
    kind = getattr(action.type, "__name__", "")
    return kind.startswith("int") or kind in {"float", "finite_float"}


def _sweep_values(action: argparse.Action, zoo: Zoo) -> tuple[str, ...]:
    kind = getattr(action.type, "__name__", "")
    if _is_number(action):
        return REFUSED_NUMBERS
    if kind in {"output_file", "output_dir", "input_file", "input_dir", "existing_path", "Path"}:
        return zoo.awkward_paths()
    return ()  # plain text: the random properties' TEXTS cover it


def _swept(leaf: Leaf) -> list[argparse.Action]:
    """The arguments of ``leaf`` the sweep tries: numbers and paths (plain text is left to the random runs)."""
    return [a for a in leaf.actions if a.nargs != 0 and _sweep_values(a, Zoo(Path())) != ()]


def _baseline(leaf: Leaf, zoo: Zoo, swept: argparse.Action, value: str) -> list[str]:
    """``leaf`` with every positional and required option at its first plausible value, ``swept`` at ``value``."""
    options: list[str] = []
    positionals: list[str] = []
    for action in leaf.actions:
        option = action.option_strings[-1] if action.option_strings else ""
        pinned = PINNED.get((leaf.name, option))
        if action is swept:
            chosen = value
        elif action.nargs == 0 or not (action.required or not option or pinned):
            continue
        else:
            chosen = pinned[0] if pinned else next(iter(_plausible(action, zoo)), "x")
        if option:
            options.append(f"{option}={chosen}")
        else:
            positionals.append(chosen)
    return [*leaf.words, *options, "--json", *(["--", *positionals] if positionals else [])]


@pytest.mark.parametrize(
    ("leaf", "action"),
    [(leaf, a) for leaf in LEAVES for a in _swept(leaf)],
    ids=lambda x: x.name if isinstance(x, Leaf) else x.dest,
)
def test_each_awkward_value_alone_keeps_the_contract(
    vigil_home: Home, no_work: None, leaf: Leaf, action: argparse.Action
) -> None:
    # Deterministic companion of the random properties: every argument of every command, in turn,
    # gets each awkward value of its kind while the others are plausible, so that a check missing
    # on one argument (an id past 2**63, an --out under a file) cannot hide behind another's error.
    # A number in REFUSED_NUMBERS must be refused by whichever command takes it, long ones included.
    for value in _sweep_values(action, vigil_home.zoo):
        argv = _baseline(leaf, vigil_home.zoo, action, value)
        _run_and_check(vigil_home, argv, as_json=True, must_refuse=_is_number(action))
