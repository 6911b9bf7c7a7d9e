"""Read one file offered to the gate: :func:`core.files.read_regular_file`, worded for ingest.

A path typed by a careless operator can name anything: ``/dev/zero`` (endless), a named FIFO, a
socket, a folder, or a file far larger than any radiograph. Each is refused by the neutral reader
before a byte of it is parsed; here the refusal becomes the gate's :class:`DicomRejectedError`,
naming the ingest limit and the setting that raises it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from core import files
from core.errors import DicomRejectedError, UnusablePathError

__all__ = ["DEFAULT_MAX_FILE_BYTES", "read_regular_file"]

#: The default largest file the gate reads: far above a large radiograph (a 4,300 × 4,300
#: 16-bit film is about 37 MB uncompressed) and well below the machine's memory.
DEFAULT_MAX_FILE_BYTES: Final = 512 * 1024 * 1024


def read_regular_file(path: Path, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """:func:`core.files.read_regular_file` (same parameters and checks), refusals as the gate's.

    Raises
    ------
    DicomRejectedError
        Whatever :func:`core.files.read_regular_file` refuses, in the gate's words: an oversized
        file names the ingest limit and the ``max_file_mb`` setting.
    """
    try:
        return files.read_regular_file(path, max_bytes=max_bytes)
    except files.FileTooLargeError as exc:
        grew, over = (" (it grew while being read)", "over ") if exc.growing else ("", "")
        raise DicomRejectedError(
            path,
            f"the file is larger than the ingest limit{grew}: {over}{exc.size} bytes, "
            f"limit {max_bytes} bytes (setting max_file_mb).",
        ) from exc
    except UnusablePathError as exc:
        raise DicomRejectedError(path, exc.reason) from exc
