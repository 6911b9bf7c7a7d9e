"""``retain_freed_memory``: freed blocks are reused instead of faulted in again (glibc, own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Allocate and touch 64 MiB twice with a free in between; report the page faults of the second
# round. Run in a child process: the setting is process-wide and would change how every later
# test in this process measures resident memory.
_PROBE = """
import json, resource, sys
import numpy as np
from core.models.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else False
np.ones(64 << 17)  # 64 MiB of float64, touched, then freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(64 << 17)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _second_round_faults(mode: str) -> dict[str, int]:
    # numpy backs large arrays with 2 MiB pages where it can; count 4 KiB pages instead.
    env = os.environ | {"NUMPY_MADVISE_HUGEPAGE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, timeout=60, env=env
    )
    result: dict[str, int] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_block_is_reused_without_page_faults() -> None:
    # Execute
    default, retained = _second_round_faults("default"), _second_round_faults("retain")
    # Assert: 64 MiB is 16384 pages of 4 KiB; glibc maps a block that large on its own (above its
    # 32 MiB ceiling for the adaptive threshold), unmaps it on free and faults every page in again
    assert retained["applied"]
    assert default["faults"] >= 8000
    assert retained["faults"] < 1000


def test_reports_whether_it_applied() -> None:
    # In a child: the setting is process-wide.
    out = subprocess.run(
        [sys.executable, "-c", "from core.models.allocator import retain_freed_memory as r; print(r())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == str(sys.platform.startswith("linux"))
