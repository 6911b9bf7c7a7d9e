"""Chest phantoms as material thickness maps: soft tissue, bone and metal along each ray (mm).

A phantom is a frontal chest projected onto the detector grid: body outline with neck and
shoulders, two lungs whose air replaces tissue (domed diaphragm, right side higher), heart and
mediastinum, spine, posterior and anterior ribs, clavicles, scapulae (over the lungs when the
patient is supine for a portable AP film), breast and nipple shadows, lung texture with vessel-like
ridges that thin out towards the periphery, calcified granulomas, support devices (ECG electrodes
with their metal snaps and wires, an endotracheal tube, a central line) and, for positives, one
solid or part-solid pulmonary nodule with its binary lesion mask.

Coordinates are millimetres with the origin at the patient's centre, x to the image right
(the patient's left on a frontal film as displayed) and y downwards. Rendering is vectorized numpy
and deterministic: :func:`sample_patient` draws every random choice from the generator it is given,
and :func:`render_phantom` is a pure function of the patient and the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from core.types import BoolArray, FloatArray

__all__ = [
    "NODULE_CONSPICUITY",
    "Grid",
    "Line",
    "Nodule",
    "Patient",
    "Phantom",
    "Spot",
    "render_phantom",
    "sample_patient",
]

_F32 = np.float32

#: Factor on every nodule's projected contrast. Real 5-15 mm nodules are subtle: their contrast is a
#: few per cent of a processed film's grey range, radiologists miss many below 10 mm, and detection
#: models learn them from tens of thousands of films. The demonstration network, trained from scratch
#: on a few hundred phantoms in minutes, learned nothing from lesion crops at 1x, 2x, 3x or 4x (crop
#: AUC ~0.5; from whole films alone it learned nothing even at 8x); at 8x the median nodule's
#: band-pass peak is ~4x the standard deviation of the lung background and crop training takes off.
#: The factor was set by that learnability check, not by any target figure, and no site parameter
#: depends on it. Anatomy, noise and every site difference stay at physical scale; the nodules look
#: like dense (partly calcified) nodules.
NODULE_CONSPICUITY: Final = 8.0


def _f32(a: object) -> FloatArray:
    """``a`` as a float32 array (typed for mypy, which cannot follow numpy's ufunc results)."""
    return np.asarray(a, dtype=_F32)


@dataclass(frozen=True, slots=True)
class Grid:
    """The stored pixel grid: ``size x size`` pixels of ``spacing_mm``."""

    size: int
    spacing_mm: float

    def axes(self, centre_x_mm: float, centre_y_mm: float) -> tuple[FloatArray, FloatArray]:
        """Pixel-centre coordinates relative to the patient centre.

        Returns
        -------
        x : ndarray of shape (1, size), mm
        y : ndarray of shape (size, 1), mm
        """
        c = (np.arange(self.size, dtype=_F32) + 0.5 - self.size / 2) * _F32(self.spacing_mm)
        return (c - _F32(centre_x_mm))[None, :], (c - _F32(centre_y_mm))[:, None]


@dataclass(frozen=True, slots=True)
class Spot:
    """A small round object at ``(x_mm, y_mm)`` (granuloma, ECG electrode, nipple)."""

    x_mm: float
    y_mm: float
    radius_mm: float


@dataclass(frozen=True, slots=True)
class Line:
    """A polyline device (tube, catheter, wire) through ``points`` (mm), ``width_mm`` wide."""

    points: tuple[tuple[float, float], ...]
    width_mm: float
    soft_mm: float
    metal_mm: float


@dataclass(frozen=True, slots=True)
class Nodule:
    """A pulmonary nodule before placement.

    Attributes
    ----------
    diameter_mm : float
        5 to 15 mm.
    density : float
        Relative to water: 0.9 to 1.1 for solid nodules (80 %), 0.55 to 0.8 for part-solid ones.
    lobulation : float
        Relative amplitude of the radius modulation (0 = a sphere).
    lobes : int
        Number of lobes around the circumference.
    phase : float
        Angle of the first lobe (radians).
    place_u, place_v : float
        Uniform draws in [0, 1) that pick the position among lung-interior pixels, so that placement
        needs no generator and the phantom stays a pure function of the patient.
    """

    diameter_mm: float
    density: float
    lobulation: float
    lobes: int
    phase: float
    place_u: float
    place_v: float


@dataclass(frozen=True, slots=True)
class Patient:
    """Everything random about one patient and one positioning (mm unless stated)."""

    female: bool
    age: int
    supine_ap: bool
    half_width: float
    depth: float
    centre_x: float
    centre_y: float
    lung_half_height: float
    lung_density: float
    heart_scale: float
    rib_spacing: float
    breasts: bool
    nipples: tuple[Spot, ...]
    granulomas: tuple[tuple[float, float, float], ...]  # (place_u, place_v, radius_mm)
    electrodes: tuple[Spot, ...]
    lines: tuple[Line, ...]
    texture_seed: int
    nodule: Nodule | None


@dataclass(frozen=True, slots=True)
class Phantom:
    """Material thickness maps on the stored grid.

    Attributes
    ----------
    soft_mm, bone_mm, metal_mm : ndarray of shape (size, size), float32
        Water-equivalent soft tissue, cortical-bone and metal path lengths (mm).
    lesion_mask : ndarray of shape (size, size), bool
        Pixels whose centre lies inside the nodule's outline; all False without a nodule.
    nodule_centre_px : tuple of float or None
        ``(row, column)`` of the nodule centre in pixel units.
    """

    soft_mm: FloatArray
    bone_mm: FloatArray
    metal_mm: FloatArray
    lesion_mask: BoolArray
    nodule_centre_px: tuple[float, float] | None


def sample_patient(
    rng: np.random.Generator, *, female: bool, age: int, supine_ap: bool, positive: bool, granuloma_rate: float
) -> Patient:
    """Draw one patient's anatomy, positioning, devices and (when ``positive``) nodule.

    Sizes follow adult chest dimensions: half body width ~150-165 mm, antero-posterior depth
    ~195-215 mm, lung half height ~120-128 mm at full inspiration. Supine AP patients breathe in
    less (shorter, denser lungs) and their heart is magnified by the short source distance.
    ``granuloma_rate`` is the expected number of calcified granulomas at age 60 (it grows with age).
    """
    w = rng.normal(148.0 if female else 163.0, 10.0)
    hh = rng.normal(120.0 if female else 128.0, 8.0) * (0.88 if supine_ap else 1.0)
    return Patient(
        female=female,
        age=age,
        supine_ap=supine_ap,
        half_width=float(w),
        depth=float(rng.normal(195.0 if female else 215.0, 15.0)),
        centre_x=float(rng.normal(0.0, 8.0)),
        centre_y=float(rng.normal(10.0, 10.0)),
        lung_half_height=float(hh),
        lung_density=float(rng.uniform(0.18, 0.26) + (0.06 if supine_ap else 0.0)),
        heart_scale=float(rng.normal(1.0, 0.07) * (1.15 if supine_ap else 1.0)),
        rib_spacing=float(2.0 * hh / 10.5 * rng.normal(1.0, 0.04)),
        breasts=female,
        nipples=_sample_nipples(rng, w, hh, female),
        granulomas=_sample_granulomas(rng, age, granuloma_rate),
        electrodes=_sample_electrodes(rng, w, hh, supine_ap),
        lines=_sample_lines(rng, w, hh, supine_ap),
        texture_seed=int(rng.integers(0, 2**62)),
        nodule=_sample_nodule(rng) if positive else None,
    )


def _sample_nodule(rng: np.random.Generator) -> Nodule:
    solid = rng.random() < 0.8
    return Nodule(
        diameter_mm=float(rng.uniform(5.0, 15.0)),
        density=float(rng.uniform(0.9, 1.1) if solid else rng.uniform(0.55, 0.8)),
        lobulation=float(rng.uniform(0.0, 0.15)),
        lobes=int(rng.integers(3, 6)),
        phase=float(rng.uniform(0.0, 2 * np.pi)),
        place_u=float(rng.random()),
        place_v=float(rng.random()),
    )


def _sample_nipples(rng: np.random.Generator, w: float, hh: float, female: bool) -> tuple[Spot, ...]:
    if rng.random() > (0.6 if female else 0.35):
        return ()
    y = hh * 0.45 + rng.normal(0.0, 10.0)
    dx = w * rng.uniform(0.45, 0.6)
    r = rng.uniform(4.0, 6.0)
    return Spot(-dx, y + rng.normal(0, 4), r), Spot(dx, y + rng.normal(0, 4), r)


def _sample_granulomas(rng: np.random.Generator, age: int, rate: float) -> tuple[tuple[float, float, float], ...]:
    n = int(rng.poisson(rate * max(age, 18) / 60.0))
    return tuple((float(rng.random()), float(rng.random()), float(rng.uniform(1.0, 2.0))) for _ in range(n))


def _sample_electrodes(rng: np.random.Generator, w: float, hh: float, supine_ap: bool) -> tuple[Spot, ...]:
    # Monitored (portable) patients carry 3-5 ECG electrodes over the chest; outpatients rarely do.
    if rng.random() > (0.85 if supine_ap else 0.03):
        return ()
    n = int(rng.integers(3, 6))
    xs = rng.uniform(-0.95 * w, 0.95 * w, n)
    ys = rng.uniform(-1.1 * hh, 1.0 * hh, n)
    return tuple(Spot(float(x), float(y), 9.0) for x, y in zip(xs, ys, strict=True))


def _sample_lines(rng: np.random.Generator, w: float, hh: float, supine_ap: bool) -> tuple[Line, ...]:
    if not supine_ap:
        return ()
    lines: list[Line] = []
    if rng.random() < 0.5:  # endotracheal tube down the midline to above the carina
        tip = -0.35 * hh + rng.normal(0, 10)
        lines.append(Line(((rng.normal(0, 4), -2.0 * hh), (rng.normal(0, 4), tip)), 7.0, 4.0, 0.0))
    if rng.random() < 0.4:  # right internal jugular or subclavian central venous line into the SVC
        x0 = -0.55 * w + rng.normal(0, 10)
        pts = ((x0, -1.6 * hh), (-0.25 * w, -0.9 * hh), (-0.06 * w, -0.1 * hh + rng.normal(0, 10)))
        lines.append(Line(pts, 2.5, 2.0, 0.4))
    return tuple(lines)


def render_phantom(patient: Patient, grid: Grid) -> Phantom:
    """Project ``patient`` onto ``grid``.

    Returns
    -------
    Phantom
        Thickness maps of shape (grid.size, grid.size) and the lesion mask.
    """
    x, y = grid.axes(patient.centre_x, patient.centre_y)
    rng = np.random.default_rng(patient.texture_seed)
    lung_top = -patient.lung_half_height
    soft = _body(x, y, patient, lung_top)
    air, interior = _lungs(x, y, patient)
    soft -= (1.0 - patient.lung_density) * air
    soft += _lung_texture(rng, grid, x, y, patient, air)
    bone = _spine(x, y) + _ribs(x, y, patient, lung_top) + _clavicles(x, y, patient, lung_top)
    bone += _scapulae(x, y, patient)
    soft += _breasts(x, y, patient) + sum((_disc(x, y, s, 7.0) for s in patient.nipples), _zeros(grid))
    metal = _zeros(grid)
    _add_devices(x, y, patient, soft, metal)
    for place_u, place_v, radius in patient.granulomas:
        gx, gy = _place(x, y, interior, place_u, place_v, grid)
        bone += 0.8 * _sphere(x, y, gx, gy, radius)
    mask = np.zeros((grid.size, grid.size), dtype=bool)
    centre_px = None
    if patient.nodule is not None:
        centre_px = _add_nodule(x, y, patient, interior, soft, mask, grid)
    return Phantom(soft.astype(_F32), bone.astype(_F32), metal.astype(_F32), mask, centre_px)


def _zeros(grid: Grid) -> FloatArray:
    return np.zeros((grid.size, grid.size), dtype=_F32)


def _sigmoid(z: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


def _body(x: FloatArray, y: FloatArray, p: Patient, lung_top: float) -> FloatArray:
    # Shoulders a little wider than the chest just above the apices, then the neck.
    neck = 0.35 * p.half_width
    shoulders = p.half_width * (1.0 + 0.08 * np.exp(-(((y - lung_top + 20.0) / 30.0) ** 2)))
    half = neck + (shoulders - neck) * _sigmoid((y - (lung_top - 55.0)) / 9.0)
    return _f32(p.depth * np.sqrt(np.maximum(1.0 - (x / half) ** 2, 0.0)))


def _lungs(x: FloatArray, y: FloatArray, p: Patient) -> tuple[FloatArray, BoolArray]:
    """Air path length through both lungs (mm) and the lung interior where nodules may sit."""
    w, hh = p.half_width, p.lung_half_height
    depth = 0.72 * p.depth
    air = np.zeros((y.shape[0], x.shape[1]), dtype=_F32)
    for side in (-1.0, 1.0):  # -1: the patient's right lung, on the image left
        cx = side * 0.47 * w
        v = y / hh
        half_w = 0.35 * w * (1.0 + 0.22 * v)  # wider at the base than at the apex
        r2 = ((x - cx) / half_w) ** 2 + v**2
        dome = hh * (0.8 + 0.2 * ((x - cx) / (0.35 * w)) ** 2) - (12.0 if side < 0 else 0.0)
        below = _sigmoid((dome - y) / 3.0)  # the diaphragm is a sharp, domed edge
        air += depth * np.sqrt(np.maximum(1.0 - r2, 0.0)) * below
    heart = _heart(x, y, p)
    air *= 1.0 - 0.8 * heart
    interior = (air > 0.45 * depth) & (heart < 0.2)
    return air.astype(_F32), interior


def _heart(x: FloatArray, y: FloatArray, p: Patient) -> FloatArray:
    w, hh, s = p.half_width, p.lung_half_height, p.heart_scale
    # Tilted ellipse: the apex points down and to the patient's left (image right).
    u, v = (x - 0.15 * w) / (0.36 * w * s), (y - 0.42 * hh) / (0.36 * hh * s)
    body = (0.9 * u + 0.35 * v) ** 2 + (0.9 * v - 0.35 * u) ** 2
    knob = ((x - 0.12 * w) / 22.0) ** 2 + ((y + 0.3 * hh) / 22.0) ** 2
    medi = np.broadcast_to((x / (0.13 * w)) ** 2, body.shape)
    parts = [_sigmoid((1.0 - body) / 0.08), _sigmoid((1.0 - knob) / 0.15), _sigmoid((1.0 - medi) / 0.3)]
    return _f32(np.maximum.reduce(parts))


def _lung_texture(
    rng: np.random.Generator, grid: Grid, x: FloatArray, y: FloatArray, p: Patient, air: FloatArray
) -> FloatArray:
    """Parenchymal texture and vessel-like ridges, in mm of water-equivalent tissue.

    The zero level set of a smooth random field is a set of curvy lines; a narrow function of the
    field draws them as vessels. They are denser and wider near the hila and fade to the periphery.
    """
    frac = air / max(float(air.max()), 1e-6)
    background = _fractal(rng, grid, beta=3.0)
    field = _fractal(rng, grid, beta=3.6)
    hilum = np.exp(
        -(((np.abs(x) - 0.22 * p.half_width) / (0.45 * p.half_width)) ** 2 + (y / (0.7 * p.lung_half_height)) ** 2)
    )
    vessels = np.exp(-((field / (0.1 + 0.15 * hilum)) ** 2)) * (0.3 + hilum)
    return ((1.5 * background + 2.0 * vessels) * frac).astype(_F32)


def _fractal(rng: np.random.Generator, grid: Grid, *, beta: float) -> FloatArray:
    """Unit-variance Gaussian field with power spectrum ~ 1/f^beta (f in cycles/mm), low-cut at 1/100 mm."""
    n = grid.size
    f = np.sqrt(np.fft.fftfreq(n, grid.spacing_mm)[:, None] ** 2 + np.fft.rfftfreq(n, grid.spacing_mm)[None, :] ** 2)
    amp = (np.maximum(f, 0.01) ** (-beta / 2.0)).astype(_F32)
    # Single precision halves the FFT cost; the field is normalized afterwards anyway.
    spec = (rng.standard_normal(amp.shape, dtype=_F32) + 1j * rng.standard_normal(amp.shape, dtype=_F32)) * amp
    field = np.fft.irfft2(spec.astype(np.complex64), s=(n, n))
    return _f32((field - field.mean()) / max(float(field.std()), 1e-12))


def _spine(x: FloatArray, y: FloatArray) -> FloatArray:
    # Vertebral bodies ~27 mm apart; denser end plates show as a faint periodic banding.
    column = np.sqrt(np.maximum(1.0 - (x / 20.0) ** 2, 0.0))
    return _f32(12.0 * column * (0.7 + 0.3 * np.cos(np.pi * y / 27.0) ** 2))


def _band(d: FloatArray, half: float) -> FloatArray:
    """Bone path length (mm) across a tube of radius ``half`` at distance ``d`` from its axis.

    A cortical shell around marrow of 30 % cortical density: the edges project denser than the
    middle, which is why rib and clavicle outlines look sharp on a radiograph.
    """
    inner = 0.7 * half
    outer_chord = 2.0 * np.sqrt(np.maximum(half**2 - d**2, 0.0))
    inner_chord = 2.0 * np.sqrt(np.maximum(inner**2 - d**2, 0.0))
    return _f32(outer_chord - 0.7 * inner_chord)


def _ribs(x: FloatArray, y: FloatArray, p: Patient, lung_top: float) -> FloatArray:
    w = p.half_width
    ax = np.abs(x)
    out = np.zeros((y.shape[0], x.shape[1]), dtype=_F32)
    lateral = (ax > 18.0) & (ax < 0.97 * w)
    anterior_span = (ax > 0.3 * w) & (ax < 0.9 * w)
    posterior_shape = -0.1 * ax + 0.5 * ax**2 / w  # rises from the spine, then curves down laterally
    anterior_shape = 0.31 * w + 0.45 * (0.9 * w - ax)  # anterior ribs slope down towards the sternum
    for k in range(11):
        y0 = lung_top + 6.0 + k * p.rib_spacing
        _add_rib(out, y, y0 + posterior_shape, 5.0, 0.4 * lateral)
        _add_rib(out, y, y0 + anterior_shape, 4.5, 0.2 * anterior_span)
    return out


def _add_rib(out: FloatArray, y: FloatArray, centre: FloatArray, half: float, weight: FloatArray) -> None:
    """Add one rib whose axis is ``centre`` (shape (1, n), mm), computing only the rows it crosses."""
    lo, hi = float(centre.min()) - half, float(centre.max()) + half
    rows = np.nonzero((y[:, 0] >= lo) & (y[:, 0] <= hi))[0]
    if rows.size:
        band = slice(int(rows[0]), int(rows[-1]) + 1)
        out[band] += weight * _band(y[band] - centre, half)


def _clavicles(x: FloatArray, y: FloatArray, p: Patient, lung_top: float) -> FloatArray:
    ax = np.abs(x)
    t = np.clip((ax - 20.0) / (0.8 * p.half_width - 20.0), 0.0, 1.0)
    # Supine AP films project the clavicles higher over the apices.
    centre = lung_top + (-5.0 if p.supine_ap else 10.0) - 28.0 * t + 6.0 * np.sin(np.pi * t)
    span = (ax > 20.0) & (ax < 0.8 * p.half_width)
    return (0.8 * _band(y - centre, 6.5) * span).astype(_F32)


def _scapulae(x: FloatArray, y: FloatArray, p: Patient) -> FloatArray:
    # PA positioning rotates the scapulae off the lungs; a supine AP film leaves them over the lateral fields.
    cx = (0.75 if p.supine_ap else 0.9) * p.half_width
    weight = 1.0 if p.supine_ap else 0.35
    r2 = ((np.abs(x) - cx) / 30.0) ** 2 + ((y + 0.35 * p.lung_half_height) / 75.0) ** 2
    return (weight * 5.0 * np.sqrt(np.maximum(1.0 - r2, 0.0))).astype(_F32)


def _breasts(x: FloatArray, y: FloatArray, p: Patient) -> FloatArray:
    if not p.breasts:
        return np.zeros((y.shape[0], x.shape[1]), dtype=_F32)
    r2 = ((np.abs(x) - 0.5 * p.half_width) / (0.45 * p.half_width)) ** 2 + ((y - 0.6 * p.lung_half_height) / 60.0) ** 2
    return (35.0 * np.sqrt(np.maximum(1.0 - r2, 0.0))).astype(_F32)


def _disc(x: FloatArray, y: FloatArray, s: Spot, thickness: float) -> FloatArray:
    r2 = ((x - s.x_mm) ** 2 + (y - s.y_mm) ** 2) / s.radius_mm**2
    return (thickness * _sigmoid((1.0 - r2) / 0.1)).astype(_F32)


def _sphere(x: FloatArray, y: FloatArray, cx: float, cy: float, radius: float) -> FloatArray:
    return (2.0 * np.sqrt(np.maximum(radius**2 - (x - cx) ** 2 - (y - cy) ** 2, 0.0))).astype(_F32)


def _segment_distance(x: FloatArray, y: FloatArray, a: tuple[float, float], b: tuple[float, float]) -> FloatArray:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = np.clip(((x - a[0]) * dx + (y - a[1]) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return np.sqrt((x - a[0] - t * dx) ** 2 + (y - a[1] - t * dy) ** 2)


def _add_devices(x: FloatArray, y: FloatArray, p: Patient, soft: FloatArray, metal: FloatArray) -> None:
    for e in p.electrodes:
        soft += _disc(x, y, e, 3.0)  # foam pad and gel
        metal += _disc(x, y, Spot(e.x_mm, e.y_mm, 2.5), 1.0)  # the snap: small, round and very dense
        side = 1.0 if e.x_mm >= 0 else -1.0
        wire = _segment_distance(x, y, (e.x_mm, e.y_mm), (side * 400.0, e.y_mm + 150.0))
        metal += 0.08 * (wire < 0.8)
    for line in p.lines:
        d = np.min(
            [_segment_distance(x, y, a, b) for a, b in zip(line.points[:-1], line.points[1:], strict=True)], axis=0
        )
        inside = np.maximum(1.0 - (2.0 * d / line.width_mm) ** 2, 0.0)
        soft += line.soft_mm * np.sqrt(inside)
        metal += line.metal_mm * (d < 0.6)  # radio-opaque stripe


def _place(x: FloatArray, y: FloatArray, interior: BoolArray, u: float, v: float, grid: Grid) -> tuple[float, float]:
    """Centre (mm) of the interior pixel picked by ``u``, moved by ``v`` within the pixel."""
    rows, cols = np.nonzero(interior)
    if rows.size == 0:  # a lung too small for the grid: fall back to the right mid-lung field
        return float(-0.4 * np.abs(x).max()), 0.0
    i = min(int(u * rows.size), rows.size - 1)
    jitter = (v - 0.5) * grid.spacing_mm
    return float(x[0, cols[i]]) + jitter, float(y[rows[i], 0]) - jitter


def _add_nodule(
    x: FloatArray, y: FloatArray, p: Patient, interior: BoolArray, soft: FloatArray, mask: BoolArray, grid: Grid
) -> tuple[float, float]:
    """Add the nodule to ``soft`` and ``mask`` in place; return its centre in pixels (row, column)."""
    assert p.nodule is not None
    n = p.nodule
    cx, cy = _place(x, y, interior, n.place_u, n.place_v, grid)
    dx, dy = x - cx, y - cy
    rho = np.hypot(dx, dy)
    radius = 0.5 * n.diameter_mm * (1.0 + n.lobulation * np.cos(n.lobes * np.arctan2(dy, dx) + n.phase))
    chord = 2.0 * np.sqrt(np.maximum(radius**2 - rho**2, 0.0))
    # The nodule displaces aerated lung, so its contrast is its density above the lung's.
    soft += NODULE_CONSPICUITY * (n.density - p.lung_density) * chord
    mask |= rho <= radius
    col = (cx + p.centre_x) / grid.spacing_mm + grid.size / 2 - 0.5
    row = (cy + p.centre_y) / grid.spacing_mm + grid.size / 2 - 0.5
    return float(row), float(col)
