"""The audit-ledger benchmark (issue 15): append, verify, scaling, and ``vigil audit verify`` as a command.

Four ratios, each side by side in interleaved rounds on temporary SQLite stores (migrated once,
copied per round; neither migration nor copying is timed):

1. *Append*: ``n`` entries appended with :func:`core.store.audit_log.append` in one transaction
   (``session_factory.begin()``, whose SQLite ``BEGIN IMMEDIATE`` already excludes other writers;
   on PostgreSQL ``append`` takes the head advisory lock, a no-op here), as a service that records
   a batch does, over one plain Core ``INSERT`` per row of the same canonical rows in one
   transaction. The executemany variant of the baseline is recorded beside it. Guard: both tables
   hold the same rows byte for byte and the appended ledger verifies.
2. *Verify*: :func:`core.store.audit_log.verify` of ``n`` stored entries (the hash chain only:
   no checkpoints) over SHA-256 of the same canonical bodies held in memory, each hash compared
   to the stored one. Guard: both confirm all ``n``, and verify names the one entry changed in a
   tampered copy of the store.
3. *Scaling*: verify of a ten-times-larger ledger over verify of the small one.
4. *Command*: ``vigil audit verify --json`` in a fresh interpreter over ``n`` entries (chain
   **and** a signed checkpoint covering them all, plus the record checks the command runs) over a
   standalone Python script that reads the same table with ``sqlite3`` and recomputes the chain
   the plain way (``json.loads``, ``json.dumps(sort_keys=True)``, ``hashlib.sha256``). Guard: both
   say the chain verifies and count the same entries.

The entries are SYNTHETIC, generated in code (actor ``bench:synthetic``): a fixed rotation of
the payloads services write (a study ingested, an explanation viewed, a file rejected at the gate;
actions whose records ``vigil audit verify`` does not cross-check against other tables) with
identifiers derived from the index, so every run hashes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Table, insert, select

from core.audit.chain import canonical_json, link, to_recorded_at
from core.audit.events import AuditAction, AuditEntry
from core.bench.harness import BenchResult
from core.config import Settings
from core.services.audit_checkpoints import CheckpointPlaces, make_checkpoint
from core.services.store import open_store
from core.store import audit_log
from core.store.engine import SessionFactory
from core.store.tables import AuditEntryRow
from core.types import JSONObject, JSONValue

__all__ = ["QUICK_SIZES", "SIZES", "TARGETS", "Sizes", "run", "synthetic_entries"]


@dataclass(frozen=True, slots=True)
class Sizes:
    """Ledger sizes of each ratio (``scale_large`` is ``scale_small`` times ten in the issue)."""

    append: int
    verify: int
    scale_small: int
    scale_large: int
    command: int


#: The issue's sizes.
SIZES: Final = Sizes(append=20_000, verify=100_000, scale_small=20_000, scale_large=200_000, command=50_000)
#: Seconds-long sizes for tests of the suite's record (ratios at these sizes mean little).
QUICK_SIZES: Final = Sizes(append=200, verify=500, scale_small=100, scale_large=1000, command=300)
TARGETS: Final = {"append": 2.0, "verify": 4.0, "scale": 12.0, "command": 2.0}

_ACTOR: Final = "bench:synthetic"
_START: Final = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
_TABLE: Final[Table] = AuditEntryRow.__table__  # type: ignore[assignment]

#: The standalone chain check of ratio 4: what someone would write without Vigil.
STANDALONE_SCRIPT: Final = """
import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
prev, n, ok = "0" * 64, 0, True
rows = db.execute("SELECT seq, recorded_at, actor, action, subject, payload_json, prev_hash, entry_hash "
                  "FROM audit_entry ORDER BY seq")
for seq, at, actor, action, subject, payload, prev_hash, entry_hash in rows:
    body = {"seq": seq, "recorded_at": at, "actor": actor, "action": action, "subject": subject,
            "payload": json.loads(payload), "prev_hash": prev_hash}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if seq != n or prev_hash != prev or hashlib.sha256(text.encode("utf-8")).hexdigest() != entry_hash:
        ok = False
        break
    prev, n = entry_hash, n + 1
print(json.dumps({"ok": ok, "checked": n}))
"""


def _uid(i: int, salt: str) -> str:
    return "2.25." + str(int.from_bytes(hashlib.sha256(f"{salt}{i}".encode()).digest()[:16], "big"))


def _payload(i: int) -> tuple[AuditAction, str, dict[str, JSONValue]]:
    """The ``i``-th SYNTHETIC entry's action, subject and payload, in the shape services write them."""
    study = _uid(i // 3, "study")
    kind = i % 3
    if kind == 0:
        return (
            AuditAction.STUDY_INGESTED,
            study,
            {
                "sop_instance_uid": _uid(i, "sop"),
                "sha256": hashlib.sha256(f"file{i}".encode()).hexdigest(),
                "site": ("north", "south", "riverside")[i % 3],
                "source_path": f"/data/incoming/batch{i // 500:04d}/{i:07d}.dcm",
                "instance_id": i // 3 + 1,
            },
        )
    if kind == 1:
        return (
            AuditAction.EXPLANATION_VIEWED,
            study,
            {
                "explanation_id": i // 3 + 1,
                "method": ("gradcam", "gradientshap", "kernelshap")[i % 3],
                "model_version": "cxr-nodule-1.0.0",
                "sha256": hashlib.sha256(f"map{i}".encode()).hexdigest(),
                "username": f"reader{i % 7}",
            },
        )
    return (
        AuditAction.INGEST_REJECTED,
        f"/data/incoming/batch{i // 500:04d}/{i:07d}.dcm",
        {
            "path": f"/data/incoming/batch{i // 500:04d}/{i:07d}.dcm",
            "site": ("north", "south", "riverside")[i % 3],
            "reason": "the file is not DICOM: no DICM prefix at byte 128",
        },
    )


def _recorded_at(i: int) -> str:
    return to_recorded_at(_START + timedelta(seconds=i, microseconds=(i * 37) % 1_000_000))


def synthetic_entries(n: int) -> list[AuditEntry]:
    """A valid SYNTHETIC ledger of ``n`` entries, linked with :func:`core.audit.chain.link`."""
    entries: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(n):
        action, subject, payload = _payload(i)
        prev = link(prev, recorded_at=_recorded_at(i), actor=_ACTOR, action=action, subject=subject, payload=payload)
        entries.append(prev)
    return entries


def _row(e: AuditEntry) -> dict[str, Any]:
    """The row :func:`core.store.audit_log.append` stores for ``e``."""
    return {
        "seq": e.seq,
        "recorded_at": e.recorded_at,
        "actor": e.actor,
        "action": str(e.action),
        "subject": e.subject,
        "payload_json": canonical_json(e.payload).decode("utf-8"),
        "prev_hash": e.prev_hash,
        "entry_hash": e.entry_hash,
    }


def _body(e: AuditEntry) -> bytes:
    """The bytes :func:`core.audit.chain.compute_entry_hash` hashes for ``e``."""
    fields = {k: v for k, v in _row(e).items() if k not in ("payload_json", "entry_hash")}
    return canonical_json({**fields, "payload": e.payload})


class _Stores:
    """Migrated SQLite stores under one folder: one template, copied for each store asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._template = self._open("template")
        self._template.kw["bind"].dispose()
        self._count = 0

    def _settings(self, label: str) -> Settings:
        return Settings(home=self.root / label, database_url=f"sqlite:///{(self.root / f'{label}.db').resolve()}")

    def _open(self, label: str) -> SessionFactory:
        return open_store(self._settings(label))

    def fresh(self, rows: Sequence[dict[str, Any]] = ()) -> tuple[SessionFactory, Settings]:
        """A copy of the migrated template, holding ``rows`` (bulk-inserted, untimed)."""
        self._count += 1
        label = f"s{self._count}"
        shutil.copyfile(self.root / "template.db", self.root / f"{label}.db")
        sf = self._open(label)
        if rows:
            with sf.begin() as session:
                session.execute(insert(_TABLE), list(rows))
        return sf, self._settings(label)


def _dispose(sf: SessionFactory) -> None:
    sf.kw["bind"].dispose()


def _rows_of(sf: SessionFactory) -> list[tuple[Any, ...]]:
    with sf() as session:
        return [tuple(r) for r in session.execute(select(_TABLE).order_by(_TABLE.c.seq))]


def _verify(sf: SessionFactory) -> tuple[bool, int, int | None]:
    with sf() as session:
        check = audit_log.verify(session)
    return check.ok, check.checked, check.first_bad_seq


def _interleave(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each callable, A, B, A, B, ... after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _ratio_stats(num: list[float], den: list[float]) -> tuple[float, JSONObject]:
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return statistics.median(num) / statistics.median(den), {
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def _appended(
    stores: _Stores, specs: list[tuple[tuple[AuditAction, str, dict[str, JSONValue]], str]]
) -> tuple[float, SessionFactory]:
    """Seconds to append ``specs`` in one transaction into a fresh store (the copy is not timed), and the store."""
    sf, _ = stores.fresh()
    t0 = time.perf_counter()
    with sf.begin() as session:
        for (action, subject, payload), at in specs:
            audit_log.append(session, actor=_ACTOR, action=action, subject=subject, payload=payload, recorded_at=at)
    return time.perf_counter() - t0, sf


def _inserted(stores: _Stores, rows: list[dict[str, Any]], *, many: bool) -> tuple[float, SessionFactory]:
    """Seconds to insert ``rows`` in one transaction (one statement per row, or one executemany), and the store."""
    sf, _ = stores.fresh()
    statement = insert(_TABLE)
    t0 = time.perf_counter()
    with sf.begin() as session:
        if many:
            session.execute(statement, rows)
        else:
            for row in rows:
                session.execute(statement, row)
    return time.perf_counter() - t0, sf


def _append_ratio(stores: _Stores, n: int, rounds: int) -> BenchResult:
    rows = [_row(e) for e in synthetic_entries(n)]
    specs = [(_payload(i), _recorded_at(i)) for i in range(n)]
    times: dict[str, list[float]] = {"append": [], "insert": [], "many": []}
    last: dict[str, SessionFactory] = {}
    for r in range(rounds + 1):  # round 0 warms up and is not counted
        for name, (seconds, sf) in (
            ("append", _appended(stores, specs)),
            ("insert", _inserted(stores, rows, many=False)),
            ("many", _inserted(stores, rows, many=True)),
        ):
            if r:
                times[name].append(seconds)
            if name in last:
                _dispose(last[name])
            last[name] = sf
    _append_time, _insert_time, _many_time = times["append"], times["insert"], times["many"]
    guard_ok = _rows_of(last["append"]) == _rows_of(last["insert"]) and _verify(last["append"]) == (True, n, None)
    for sf in last.values():
        _dispose(sf)
    ratio, spread = _ratio_stats(_append_time, _insert_time)
    return BenchResult(
        f"append {n:,} entries (audit_log.append, one transaction) / one plain INSERT per row of the same rows",
        ratio,
        TARGETS["append"],
        "both tables hold the same rows byte for byte; the appended ledger verifies",
        guard_ok,
        {
            "entries": n,
            "rounds": rounds,
            "append_median_s": round(statistics.median(_append_time), 4),
            "insert_per_row_median_s": round(statistics.median(_insert_time), 4),
            "insert_executemany_median_s": round(statistics.median(_many_time), 4),
            "ratio_against_executemany": round(statistics.median(_append_time) / statistics.median(_many_time), 3),
            "append_us_per_entry": round(statistics.median(_append_time) / n * 1e6, 1),
            **spread,
        },
    )


def _verify_ratio(stores: _Stores, n: int, rounds: int) -> BenchResult:
    entries = synthetic_entries(n)
    rows = [_row(e) for e in entries]
    bodies = [_body(e) for e in entries]
    hashes = [e.entry_hash for e in entries]
    sf, _ = stores.fresh(rows)
    bad = n - max(1, n // 10)  # an entry near the end: a check that stops early does not find it
    tampered_rows = [dict(r) for r in rows]
    tampered_rows[bad]["payload_json"] = tampered_rows[bad]["payload_json"].replace(":", ": ", 1)
    tampered_rows[bad]["payload_json"] = tampered_rows[bad]["payload_json"].replace('"', "'", 2)  # not JSON now
    tampered, _ = stores.fresh(tampered_rows)
    confirmed: list[int] = []

    def in_memory() -> None:
        confirmed.append(sum(hashlib.sha256(b).hexdigest() == h for b, h in zip(bodies, hashes, strict=True)))

    times = _interleave({"verify": lambda: _verify(sf), "sha256": in_memory}, rounds)
    guard_ok = _verify(sf) == (True, n, None) and set(confirmed) == {n} and _verify(tampered)[2] == bad
    _dispose(sf)
    _dispose(tampered)
    ratio, spread = _ratio_stats(times["verify"], times["sha256"])
    return BenchResult(
        f"verify {n:,} stored entries (audit_log.verify, chain only) / SHA-256 of the same bytes in memory",
        ratio,
        TARGETS["verify"],
        f"both confirm all {n:,} hashes; verify names the one entry changed in a tampered copy",
        guard_ok,
        {
            "entries": n,
            "rounds": rounds,
            "mean_body_bytes": round(statistics.mean(len(b) for b in bodies), 1),
            "verify_median_s": round(statistics.median(times["verify"]), 4),
            "sha256_in_memory_median_s": round(statistics.median(times["sha256"]), 4),
            "verify_us_per_entry": round(statistics.median(times["verify"]) / n * 1e6, 2),
            "checkpoints_included": False,
            **spread,
        },
    )


def _scale_ratio(stores: _Stores, small: int, large: int, rounds: int) -> BenchResult:
    entries = synthetic_entries(large)
    rows = [_row(e) for e in entries]
    big, _ = stores.fresh(rows)
    little, _ = stores.fresh(rows[:small])
    times = _interleave({"large": lambda: _verify(big), "small": lambda: _verify(little)}, rounds)
    guard_ok = _verify(big) == (True, large, None) and _verify(little) == (True, small, None)
    _dispose(big)
    _dispose(little)
    ratio, spread = _ratio_stats(times["large"], times["small"])
    return BenchResult(
        f"verify time({large:,}) / time({small:,}) (audit_log.verify, chain only)",
        ratio,
        TARGETS["scale"],
        "both ledgers verify in full",
        guard_ok,
        {
            "rounds": rounds,
            "large_median_s": round(statistics.median(times["large"]), 4),
            "small_median_s": round(statistics.median(times["small"]), 4),
            **spread,
        },
    )


def _run_json(command: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    try:
        out = json.loads(done.stdout)
    except json.JSONDecodeError:
        out = {"stderr": done.stderr[-500:]}
    return done.returncode, out


def _command_ratio(stores: _Stores, n: int, rounds: int) -> BenchResult:
    rows = [_row(e) for e in synthetic_entries(n)]
    sf, settings = stores.fresh(rows)
    made = make_checkpoint(sf, CheckpointPlaces.from_settings(settings), now=lambda: datetime.now(UTC))
    _dispose(sf)
    db = settings.database_url.removeprefix("sqlite:///")
    # Only the store's place: the command reads nothing else from the environment.
    env = {"VIGIL_HOME": str(settings.home), "VIGIL_DATABASE_URL": settings.database_url}
    entry_point = "import sys; from core.cli import main; sys.exit(main())"  # what the `vigil` script runs
    vigil = [sys.executable, "-c", entry_point, "audit", "verify", "--json"]
    standalone = [sys.executable, "-c", STANDALONE_SCRIPT, db]
    outs: dict[str, tuple[int, dict[str, Any]]] = {}

    def side(name: str, command: list[str]) -> Callable[[], None]:
        def call() -> None:
            outs[name] = _run_json(command, env)

        return call

    times = _interleave({"vigil": side("vigil", vigil), "standalone": side("standalone", standalone)}, rounds)
    (vigil_code, v), (script_code, s) = outs["vigil"], outs["standalone"]
    guard_ok = (
        vigil_code == 0
        and script_code == 0
        and v.get("chain_ok") is True
        and v.get("checkpoints_ok") is True
        and v.get("checked") == s.get("checked") == n
        and s.get("ok") is True
        and v.get("covered") == made.signed.checkpoint.tree_size == n
    )
    ratio, spread = _ratio_stats(times["vigil"], times["standalone"])
    return BenchResult(
        f"`vigil audit verify` over {n:,} entries (chain + 1 checkpoint + record checks) / standalone chain script",
        ratio,
        TARGETS["command"],
        "both say the chain verifies and count the same entries; the checkpoint covers them all",
        guard_ok,
        {
            "entries": n,
            "rounds": rounds,
            "vigil_median_s": round(statistics.median(times["vigil"]), 4),
            "standalone_median_s": round(statistics.median(times["standalone"]), 4),
            "checkpoints_included": True,
            **spread,
        },
    )


def run(*, rounds: int = 5, sizes: Sizes = SIZES) -> list[BenchResult]:
    """The suite: append, verify, scaling and command ratios over ``rounds`` interleaved rounds each."""
    with tempfile.TemporaryDirectory(prefix="vigil-bench-audit-") as tmp:
        stores = _Stores(Path(tmp))
        return [
            _append_ratio(stores, sizes.append, rounds),
            _verify_ratio(stores, sizes.verify, rounds),
            _scale_ratio(stores, sizes.scale_small, sizes.scale_large, rounds),
            _command_ratio(stores, sizes.command, rounds),
        ]
