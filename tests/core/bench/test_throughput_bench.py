"""The throughput suite at a tiny size: its cases, guards and recorded figures (not timings)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from core.bench import throughput
from core.bench.films import enlarge_film
from core.bench.suites import SUITES, run_suite
from core.errors import BadInputError
from core.imaging.gate import check_file
from core.sampledata import SITES, generate_cohort


def test_a_tiny_run_records_four_guarded_figures() -> None:
    # Execute: 7 studies (at least one per site) enlarged to 128², one worker, batches of 3, two lone studies
    config = throughput.ThroughputConfig(studies=7, workers=1, batch_size=3, lone=2, film_size=128)
    results = throughput.run(config, rounds=1)
    # Assert
    records = [json.loads(json.dumps(r.to_dict())) for r in results]
    end, ingest, idle, backfill = records
    assert all(r["guard_ok"] is True and r["ratio"] > 0 for r in records)
    assert end["target"] == ingest["target"] == 1.25 and idle["target"] == throughput.IDLE_TARGET_S
    assert backfill["target"] == 1.0 and "1 workers" in backfill["name"]
    figures = end["absolutes"]
    assert figures["studies"] == 7 and figures["workers"] == 1 and figures["model_device"] == "cpu"
    assert figures["film_pixels"] == "128x128"
    assert figures["floor_studies_per_s"] > 0 and figures["end_to_end_studies_per_s"] > 0
    assert 0 < figures["latency_p50_s"] <= figures["latency_p95_s"]
    assert figures["peak_rss_main_mib"] > 0 and figures["peak_rss_workers_mib"] > 0
    assert figures["forward_s"] > 0 and figures["peak_in_flight"] <= 3 + 4
    assert ingest["absolutes"]["ingest_only_studies_per_s"] > 0
    assert idle["absolutes"]["p50_s"] <= idle["absolutes"]["p95_s"] <= idle["absolutes"]["max_s"]
    fills = backfill["absolutes"]
    assert fills["rounds"] == 1 and fills["in_process_studies_per_s"] > 0 and fills["workers_studies_per_s"] > 0


def test_the_suite_is_registered_and_sized_only_for_itself(tmp_path: object) -> None:
    assert "throughput" in SUITES
    with pytest.raises(BadInputError, match="throughput"):
        run_suite("metrics", sample_dir=tmp_path, rounds=1, throughput_config=throughput.ThroughputConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["studies", "batch_size", "lone"])
def test_sizes_below_one_are_refused(field: str) -> None:
    with pytest.raises(BadInputError, match="got"):
        throughput.ThroughputConfig(**{field: 0})  # type: ignore[arg-type]


def test_an_enlarged_film_passes_the_gate_with_its_identity_and_field_of_view(tmp_path: Path) -> None:
    # Prepare: one film per site, so every transfer syntax the generator writes is covered
    generate_cohort(tmp_path, seed=5, studies_per_site={site.name: 1 for site in SITES})
    files = sorted(tmp_path.rglob("*.dcm"))
    before = {p: check_file(p).meta for p in files}
    # Execute
    for path in files:
        enlarge_film(path, 400)
    # Assert
    for path in files:
        old, new = before[path], check_file(path).meta
        assert (new.rows, new.columns) == (400, 400)
        assert (new.sop_instance_uid, new.transfer_syntax_uid) == (old.sop_instance_uid, old.transfer_syntax_uid)
        assert old.pixel_spacing_mm is not None and new.pixel_spacing_mm is not None
        assert new.pixel_spacing_mm[0] * 400 == pytest.approx(old.pixel_spacing_mm[0] * old.rows, rel=1e-4)


@pytest.mark.parametrize("size", [63, 4097])
def test_a_film_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(BadInputError, match=str(size)):
        throughput.ThroughputConfig(film_size=size)


def test_the_rss_sampler_sees_a_peak_freed_before_the_kernel_counter_was_reset() -> None:
    # Prepare: 200 MiB held then freed inside the block, after which the kernel's counter is reset
    # (as each forward pass resets it)
    with throughput.RssSampler(interval=0.005) as sampler:
        before = throughput._status_bytes("self", "VmRSS")
        block = np.ones(200 * 2**20, dtype=np.uint8)
        time.sleep(0.1)
        del block
        throughput.reset_peak_rss()
        time.sleep(0.05)
    # Assert: the sampler saw the 200 MiB, though the kernel's counter no longer holds them
    assert sampler.peak_bytes - before >= 190 * 2**20
