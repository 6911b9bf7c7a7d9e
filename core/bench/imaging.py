"""Benchmarks of ``core.imaging``: pixel loading against a raw-bytes floor, header scan against pydicom."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from core.bench.harness import BenchResult, interleaved_medians
from core.imaging.baseline import PixelLayout, pixel_layout, plain_header_scan
from core.imaging.dicom import read_dicom, read_header
from core.types import FloatArray

__all__ = ["LOAD_TARGET", "SCAN_TARGET", "bench_header_scan", "bench_load", "run"]

#: ``read_dicom`` may take at most this many times the raw-bytes floor.
LOAD_TARGET: Final = 10.0
#: ``read_header`` may take at most this many times a bare ``dcmread(stop_before_pixels=True)``.
SCAN_TARGET: Final = 1.3


def run(files: Sequence[Path], *, rounds: int = 5) -> list[BenchResult]:
    """Both imaging benchmark cases over ``files``.

    Parameters
    ----------
    files : sequence of Path
        DICOM files that pass the ingest gate (e.g. the sample cohort); the load case uses those
        whose pixels are native or deflated (not encapsulated), the header case uses all of them.
    rounds : int
        Interleaved timing rounds per case.

    Returns
    -------
    list of BenchResult
        ``[load, header scan]``.
    """
    return [bench_load(files, rounds=rounds), bench_header_scan(files, rounds=rounds)]


def bench_load(files: Sequence[Path], *, rounds: int = 5) -> BenchResult:
    """``read_dicom`` over the native files against reading their bytes and viewing the pixels.

    The floor is ``path.read_bytes()`` plus ``np.frombuffer`` at the pixel offset found beforehand
    (after inflating, for a deflated transfer syntax): what any reader must at least do. The guard
    checks that ``read_dicom`` gives exactly the floor's values after rescale (and MONOCHROME1
    negation) in float32.
    """
    layouts = {path: layout for path in files if (layout := pixel_layout(path)) is not None}
    if not layouts:
        raise ValueError("bench_load needs at least one native single-frame greyscale DICOM file")
    paths = list(layouts)
    guard_ok = all(np.array_equal(read_dicom(p).pixels, _rescaled(_floor(p, layouts[p]), layouts[p])) for p in paths)
    medians = interleaved_medians(
        {
            "read_dicom": lambda: [read_dicom(p) for p in paths],
            "floor": lambda: [_floor(p, layouts[p]) for p in paths],
        },
        rounds=rounds,
    )
    pixels = sum(layout.shape[0] * layout.shape[1] for layout in layouts.values())
    return BenchResult(
        name="DICOM load (read_dicom) / raw bytes + np.frombuffer",
        ratio=medians["read_dicom"] / medians["floor"],
        target=LOAD_TARGET,
        guard="read_dicom pixels equal the raw stored values after slope/intercept in float32",
        guard_ok=guard_ok,
        absolutes={
            "read_dicom_s": medians["read_dicom"],
            "floor_s": medians["floor"],
            "files": len(paths),
            "megapixels": round(pixels / 1e6, 3),
        },
    )


def bench_header_scan(files: Sequence[Path], *, rounds: int = 5) -> BenchResult:
    """``read_header`` over every file against a bare ``dcmread(stop_before_pixels=True)`` loop.

    The guard checks that both read the same SOPInstanceUIDs in the same order.
    """
    paths = list(files)
    if not paths:
        raise ValueError("bench_header_scan needs at least one DICOM file")
    guard_ok = [read_header(p).sop_instance_uid for p in paths] == plain_header_scan(paths)
    medians = interleaved_medians(
        {
            "read_header": lambda: [read_header(p) for p in paths],
            "dcmread": lambda: plain_header_scan(paths),
        },
        rounds=rounds,
    )
    return BenchResult(
        name="header scan (read_header) / dcmread(stop_before_pixels=True)",
        ratio=medians["read_header"] / medians["dcmread"],
        target=SCAN_TARGET,
        guard="read_header and dcmread give the same SOPInstanceUIDs in the same order",
        guard_ok=guard_ok,
        absolutes={"read_header_s": medians["read_header"], "dcmread_s": medians["dcmread"], "files": len(paths)},
    )


def _floor(path: Path, layout: PixelLayout) -> np.ndarray:
    data = path.read_bytes()
    if layout.deflate_from is not None:
        data = zlib.decompress(data[layout.deflate_from :], -zlib.MAX_WBITS)
    count = layout.shape[0] * layout.shape[1]
    return np.frombuffer(data, dtype=layout.dtype, count=count, offset=layout.offset).reshape(layout.shape)


def _rescaled(stored: np.ndarray, layout: PixelLayout) -> FloatArray:
    pixels = stored.astype(np.float32)
    if layout.slope != 1.0:
        pixels *= np.float32(layout.slope)
    if layout.intercept != 0.0:
        pixels += np.float32(layout.intercept)
    return pixels * np.float32(layout.sign) if layout.sign < 0 else pixels
