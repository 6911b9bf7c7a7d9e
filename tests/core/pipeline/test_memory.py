"""``release_freed_memory`` hands pages freed below live heap chunks back to the kernel.

Run in a fresh interpreter so the heap's layout is the one the test builds: buffers the size
of a batch's files interleaved with small survivors, as the pipeline's batches and the
store's rows are. Freed, the buffers stay resident (``free`` can only shrink the heap's top);
released, they leave.
"""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = """
import json

from core.pipeline.memory import release_freed_memory


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

buffers, survivors = [], []
for _ in range(1500):  # 100 kB each: under glibc's mmap threshold, so they come from the heap
    buffers.append(bytearray(100_000))
    survivors.append(bytearray(1024))
held = rss_mib()
buffers.clear()
freed = rss_mib()
released = release_freed_memory()
print(json.dumps({"held": held, "freed": freed, "released": released, "after": rss_mib()}))
"""


def test_buffers_freed_below_survivors_leave_the_process_once_released() -> None:
    # Execute
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True).stdout
    rss = json.loads(out)

    # Assert: freed alone, the ~150 MiB of buffers stay resident; released, they go
    assert rss["freed"] > rss["held"] - 20, rss
    assert rss["released"] is True
    assert rss["after"] < rss["freed"] - 120, rss
