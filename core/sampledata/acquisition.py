"""From material thickness maps to stored pixel values: exposure, detector, vendor processing.

The chain follows a radiograph's physics in the order it happens:

1. **Attenuation** with kVp-dependent coefficients: bone (and metal) contrast rises steeply as
   the tube voltage falls, soft tissue's barely (photo-electric versus Compton dominance).
2. **Scatter**: a smooth veil proportional to the low-passed primary; an anti-scatter grid
   removes most of it. Scatter lowers contrast and adds quanta that carry no signal.
3. **Quantum noise**: Poisson statistics of the detected quanta (Gaussian approximation), set by
   the detector's quanta per mm², the pixel area and the study's exposure.
4. **Detector blur**: light spread in the scintillator or phosphor blurs signal and noise together.
5. **Log transform**, then the **vendor's processing** (noise reduction, dynamic range
   compression, edge enhancement, sigmoid tone curve) that changes texture more than anatomy.
6. **Quantization** to the stored bit depth, inverted for MONOCHROME1 writers.

Pure numpy/scipy; every random draw comes from the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.sampledata.anatomy import Phantom
from core.sampledata.sites import Detector, Processing, Technique
from core.types import FloatArray, IntArray

__all__ = ["Exposure", "StoredImage", "expose", "process", "quantize", "sample_exposure"]

_F32 = np.float32
#: Low-pass scale (mm) of the scatter veil and of dynamic range compression.
_SCATTER_MM = 50.0
_RANGE_MM = 25.0


def _f32(a: object) -> FloatArray:
    """``a`` as a float32 array (typed for mypy, which cannot follow numpy's ufunc results)."""
    return np.asarray(a, dtype=_F32)


@dataclass(frozen=True, slots=True)
class Exposure:
    """The technique of one study.

    Attributes
    ----------
    view : str
        ``"PA"`` (departmental, erect) or ``"AP"`` (portable, supine).
    kvp : float
        Tube voltage (kV).
    mas : float
        Tube current-time product (mAs), as the generator recorded it.
    dose_factor : float
        Detector dose relative to the site's nominal exposure (log-normal around 1).
    grid : bool
        Anti-scatter grid in place.
    distance_mm : float
        Source to detector distance: 1800 mm erect PA, ~1000 mm portable AP.
    """

    view: str
    kvp: float
    mas: float
    dose_factor: float
    grid: bool
    distance_mm: float


@dataclass(frozen=True, slots=True)
class StoredImage:
    """Pixel values as written to the file and the window a viewer should open them with.

    Attributes
    ----------
    pixels : ndarray of shape (rows, columns), uint16
        Stored values (before rescale slope and intercept), inverted for MONOCHROME1.
    window_center, window_width : float
        In modality units (after rescale), as DICOM defines them.
    """

    pixels: IntArray
    window_center: float
    window_width: float


def sample_exposure(rng: np.random.Generator, technique: Technique, *, supine_ap: bool, depth_mm: float) -> Exposure:
    """Draw the technique of one study.

    Automatic exposure control scales mAs with patient thickness and keeps detector dose close to
    nominal for PA studies; portable AP studies use a manual technique and vary far more.
    """
    spread = technique.dose_spread_ap if supine_ap else technique.dose_spread_pa
    dose = float(np.exp(rng.normal(0.0, spread)))
    kvp = technique.kvp_ap if supine_ap else technique.kvp_pa
    # ~2.5 mAs at 120 kV for a 210 mm chest; each 30 mm of tissue doubles it; lower kV needs more.
    mas = 2.5 * dose * 2.0 ** ((depth_mm - 210.0) / 30.0) * (120.0 / kvp) ** 3
    return Exposure(
        view="AP" if supine_ap else "PA",
        kvp=float(kvp),
        mas=round(float(mas), 2),
        dose_factor=dose,
        grid=technique.grid_ap if supine_ap else technique.grid_pa,
        distance_mm=1000.0 if supine_ap else 1800.0,
    )


def _coefficients(kvp: float) -> tuple[float, float, float]:
    """Linear attenuation (1/mm) of water, cortical bone and metal at the beam's effective energy."""
    r = 120.0 / kvp
    return 0.020 * r**0.5, 0.050 * r**1.5, 0.8 * r**2.0


def _fft_gaussian(image: FloatArray, sigma_px: float) -> FloatArray:
    # Large kernels (scatter, range compression) are cheaper in the Fourier domain; edges wrap, which
    # only matters in the air around the patient.
    spectrum = ndimage.fourier_gaussian(np.fft.rfft2(image), sigma=sigma_px, n=image.shape[1])
    return np.fft.irfft2(spectrum, s=image.shape).astype(_F32)


def expose(phantom: Phantom, exposure: Exposure, detector: Detector, rng: np.random.Generator) -> FloatArray:
    """Simulate the detector signal and return the log image.

    Returns
    -------
    ndarray of shape (size, size), float32
        ``-ln(signal)``: line integral of attenuation plus scatter and noise; bright = attenuating.
    """
    mu_w, mu_b, mu_m = _coefficients(exposure.kvp)
    primary = np.exp(-(mu_w * phantom.soft_mm + mu_b * phantom.bone_mm + mu_m * phantom.metal_mm))
    spacing = detector.pixel_spacing_mm
    scatter_to_primary = 0.15 if exposure.grid else 0.8
    signal = primary + scatter_to_primary * _fft_gaussian(primary, _SCATTER_MM / spacing)
    quanta = detector.quanta_per_mm2 * spacing**2 * exposure.dose_factor
    noisy = signal + np.sqrt(np.maximum(signal, 0.0) / quanta) * rng.standard_normal(signal.shape)
    blurred = ndimage.gaussian_filter(noisy, detector.blur_mm / spacing, mode="nearest")
    return _f32(-np.log(np.clip(blurred, 1e-4, None)))


def process(log_image: FloatArray, processing: Processing, spacing_mm: float) -> FloatArray:
    """Apply a vendor's processing and tone curve.

    Returns
    -------
    ndarray of shape (size, size), float32, values in [0, 1]
    """
    img = log_image.astype(_F32, copy=True)
    if processing.noise_reduction_mm > 0 and processing.noise_reduction_weight > 0:
        smooth = ndimage.gaussian_filter(img, processing.noise_reduction_mm / spacing_mm, mode="nearest")
        img = (1.0 - processing.noise_reduction_weight) * img + processing.noise_reduction_weight * smooth
    img = img - processing.range_compression * _fft_gaussian(img, _RANGE_MM / spacing_mm)
    if processing.edge_gain > 0:
        img = img + processing.edge_gain * (
            img - ndimage.gaussian_filter(img, processing.edge_mm / spacing_mm, mode="nearest")
        )
    lo, hi = np.percentile(img, [0.5, 99.5])
    x = (img - lo) / max(float(hi - lo), 1e-6)
    half = processing.contrast / 2.0
    lo_s, hi_s = 1.0 / (1.0 + np.exp(half)), 1.0 / (1.0 + np.exp(-half))
    tone = 1.0 / (1.0 + np.exp(-processing.contrast * (np.clip(x, -1.0, 2.0) - 0.5)))
    return _f32(np.clip((tone - lo_s) / (hi_s - lo_s), 0.0, 1.0))


def quantize(image01: FloatArray, detector: Detector) -> StoredImage:
    """Map [0, 1] to the stored bit depth (4 % head room at each end), inverting for MONOCHROME1."""
    top = 2**detector.bits_stored - 1
    stored = np.rint(0.04 * top + image01 * 0.92 * top).astype(np.uint16)
    if detector.photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)
    modality = stored.astype(np.float64) * detector.rescale_slope + detector.rescale_intercept
    lo, hi = np.percentile(modality, [1.0, 99.0])
    return StoredImage(
        pixels=stored, window_center=round(float((lo + hi) / 2), 1), window_width=round(float(hi - lo), 1)
    )
