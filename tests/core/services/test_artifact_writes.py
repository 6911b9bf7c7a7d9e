"""Explanation artifacts written by several writers at once: each renames its own file into place."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from core.services.explanation import array_sha256, write_artifact


def test_writers_of_the_same_map_at_once_all_succeed_and_leave_one_whole_file(tmp_path: Path) -> None:
    # Prepare: the same map, written by 6 threads released together, in 60 fresh folders
    cells = np.random.default_rng(0).random((56, 56)).astype(np.float16)
    digest = array_sha256(cells)
    failures: list[BaseException] = []

    def write(folder: Path, start: threading.Barrier) -> None:
        start.wait()
        try:
            write_artifact(folder, digest, cells)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    # Execute
    for n in range(60):
        folder, start = tmp_path / str(n), threading.Barrier(6)
        threads = [threading.Thread(target=write, args=(folder, start)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # Assert: no writer failed, every file holds the map, and no temporary file is left
    assert failures == []
    for n in range(60):
        (only,) = (tmp_path / str(n) / "explanations").iterdir()
        with np.load(only) as data:
            assert np.array_equal(data["heatmap"], cells)
