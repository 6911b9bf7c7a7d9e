"""The store suite at a tiny size: its cases, guards and recorded figures (not timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from core.bench import store
from core.bench.suites import SUITES, run_suite
from core.errors import BadInputError
from core.store import reviews
from core.store.tables import FeedbackRow, OutcomeRow, StudyRow
from tests.postgres import PostgresServer


def test_a_tiny_run_records_three_guarded_ratios() -> None:
    # Execute
    results = store.run(store.StoreConfig(small=120, large=600), rounds=1)
    # Assert
    records = [json.loads(json.dumps(r.to_dict())) for r in results]
    page, validate, drift = records
    assert all(r["guard_ok"] is True and r["ratio"] > 0 for r in records), [r["guard"] for r in records]
    assert page["target"] == store.PAGE_TARGET and validate["target"] == drift["target"] == store.SCAN_TARGET
    assert page["absolutes"]["rows_small"] == 120 and page["absolutes"]["rows_large"] == 600
    assert all(r["absolutes"]["data"] == "SYNTHETIC" and r["absolutes"]["seconds_large"] > 0 for r in records)


def test_generated_rows_are_synthetic_labelled_and_read(tmp_path: Path) -> None:
    # Execute
    sf, seconds = store.build_store(tmp_path, rows=300)
    # Assert
    with sf() as s:
        marks = s.scalars(select(StudyRow.institution_name).distinct()).all()
        n_labels = s.scalar(select(func.count()).select_from(OutcomeRow))
        n_reads = s.scalar(select(func.count()).select_from(FeedbackRow))
    assert marks == [reviews.SYNTHETIC_MARK] and seconds > 0
    assert n_labels == 300 // store.LABEL_EVERY and n_reads == 300 // (2 * store.LABEL_EVERY)


def test_sizes_are_checked_and_the_suite_is_sized_only_for_itself(tmp_path: Path) -> None:
    assert "store" in SUITES
    assert store.StoreConfig.for_rows(1_000_000) == store.StoreConfig(small=10_000, large=1_000_000)
    assert store.StoreConfig.for_rows(5_000) == store.StoreConfig(small=500, large=5_000)
    with pytest.raises(BadInputError, match="at least 100 rows, got 50"):
        store.StoreConfig(small=50, large=500)
    with pytest.raises(BadInputError, match="--rows"):
        run_suite("metrics", sample_dir=tmp_path, rounds=1, store_config=store.StoreConfig())


def test_rows_option_sizes_only_the_store_suite() -> None:
    from argparse import Namespace

    from core.cli import commands

    assert commands._store_config(Namespace(rows=None, suite="metrics")) is None
    assert commands._store_config(Namespace(rows=20_000, suite="store")) == store.StoreConfig(2_000, 20_000)
    with pytest.raises(BadInputError, match="--rows configures the store suite, not 'metrics'"):
        commands._store_config(Namespace(rows=20_000, suite="metrics"))


def test_store_reads_choose_what_is_timed_and_bad_names_are_named(tmp_path: Path) -> None:
    from argparse import Namespace

    from core.cli import commands

    # A million rows with only the page: drift at that size takes most of an hour.
    config = commands._store_config(Namespace(rows=1_000_000, store_reads="page", suite="store"))
    assert config == store.StoreConfig(small=10_000, large=1_000_000, reads=("page",))
    assert commands._store_config(Namespace(rows=None, store_reads="page, drift", suite="store")) == store.StoreConfig(
        reads=("page", "drift")
    )
    for bad in ("pages", "page,page", ""):
        with pytest.raises(BadInputError, match="store reads must be distinct names"):
            commands._store_config(Namespace(rows=None, store_reads=bad, suite="store"))
    with pytest.raises(BadInputError, match="--store-reads configures the store suite"):
        commands._store_config(Namespace(rows=None, store_reads="page", suite="metrics"))
    results = store.run(store.StoreConfig(small=120, large=600, reads=("page",)), rounds=1)
    assert [r.name.split(":")[0] for r in results] == ["worklist page"]


def test_a_record_keeps_the_command_that_measured_it_and_the_markdown_quotes_it(tmp_path: Path) -> None:
    from argparse import Namespace

    from core.bench.harness import BenchResult
    from core.bench.report import render_markdown
    from core.bench.suites import SuiteRun, record
    from core.cli import commands

    args = Namespace(suite="store", rounds=5, rows=1_000_000, store_reads="page", studies=None, film_size=None)
    command = commands._bench_command(args)
    env = {"device": "cpu", "processor": "x86_64", "cpu_count": 2, "torch_threads": 2, "versions": {}}
    run = SuiteRun("store", [BenchResult("worklist page", 2.0, 3.0, "a full page", True)], env, "2026-12-06")

    record(run, tmp_path, command=command)

    assert command == "vigil bench --suite store --rounds 5 --rows 1000000 --store-reads page --record benchmarks"
    assert f"Command: `{command}`." in render_markdown(tmp_path)


def _scratch_names(server: PostgresServer) -> list[str]:
    engine = create_engine(server.admin_url)
    try:
        with engine.connect() as c:
            return list(c.scalars(text("SELECT datname FROM pg_database WHERE datname LIKE 'vigil_bench_%'")))
    finally:
        engine.dispose()


def test_on_postgresql_each_store_is_a_scratch_database_dropped_after(postgres_server: PostgresServer) -> None:
    # Prepare
    url = postgres_server.admin_url.render_as_string(hide_password=False)
    # Execute
    results = store.run(store.StoreConfig(small=120, large=600, server=url), rounds=1)
    # Assert: the same guarded reads, said to be PostgreSQL's, and no database left behind
    assert [r.name.split(":")[0] for r in results] == ["worklist page", "vigil validate", "vigil drift"]
    assert all(r.guard_ok and "(PostgreSQL, SYNTHETIC)" in r.name for r in results), [r.guard for r in results]
    assert {r.absolutes["backend"] for r in results} == {"postgresql"}
    assert _scratch_names(postgres_server) == []


def test_a_store_server_that_is_not_postgresql_or_not_there_is_named_without_its_password() -> None:
    from core.store.scratch import scratch_database

    with pytest.raises(BadInputError, match="names a PostgreSQL server, got 'sqlite:///x.db'"):
        with scratch_database("sqlite:///x.db"):
            pass
    with pytest.raises(BadInputError, match="is not a database URL"):
        with scratch_database("not a url"):
            pass
    with pytest.raises(BadInputError, match=r"cannot create a scratch database on .*127\.0\.0\.1:9") as caught:
        with scratch_database("postgresql+psycopg://bench:s3cret@127.0.0.1:9/postgres"):
            pass
    assert "s3cret" not in str(caught.value)


def test_the_recorded_command_names_the_server_but_never_its_url() -> None:
    from argparse import Namespace

    from core.cli import commands

    args = Namespace(suite="store", rounds=1, rows=1000, store_reads=None, store_server="postgresql://u:pw@h/db")
    assert commands._bench_command(args).endswith("--rows 1000 --store-server URL --record benchmarks")
    assert "pw" not in commands._bench_command(args)
    with pytest.raises(BadInputError, match="--store-server configures the store suite, not 'metrics'"):
        commands._store_config(Namespace(rows=None, store_server="postgresql://h/db", suite="metrics"))
