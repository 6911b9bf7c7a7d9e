"""The audit-ledger benchmark at tiny sizes: its SYNTHETIC ledger and the shape of its record (not timings)."""

from __future__ import annotations

import json

from core.audit.chain import verify_chain
from core.bench import audit
from core.bench.suites import SUITES


def test_the_synthetic_ledger_is_valid_and_reproducible() -> None:
    # Execute
    entries = audit.synthetic_entries(30)

    # Assert
    assert verify_chain(entries).ok
    assert [e.entry_hash for e in audit.synthetic_entries(30)] == [e.entry_hash for e in entries]
    assert {e.actor for e in entries} == {"bench:synthetic"}


def test_a_tiny_run_records_four_guarded_ratios() -> None:
    # Execute
    results = audit.run(rounds=1, sizes=audit.QUICK_SIZES)

    # Assert
    records = [json.loads(json.dumps(r.to_dict())) for r in results]
    assert [r["target"] for r in records] == list(audit.TARGETS.values())
    assert all(r["guard_ok"] is True and r["ratio"] > 0 for r in records)
    append, verify, scale, command = (r["absolutes"] for r in records)
    assert append["entries"] == audit.QUICK_SIZES.append and append["insert_executemany_median_s"] > 0
    assert verify["checkpoints_included"] is False and verify["entries"] == audit.QUICK_SIZES.verify
    assert scale["large_median_s"] > 0 and scale["small_median_s"] > 0
    assert command["checkpoints_included"] is True and command["entries"] == audit.QUICK_SIZES.command


def test_the_suite_is_registered() -> None:
    assert "audit" in SUITES
