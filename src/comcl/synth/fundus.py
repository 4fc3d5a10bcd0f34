"""Synthetic colour fundus photographs with pixel-exact lesion and optic-disc masks.

Layout convention: images are oriented as a fundus camera shows them (not inverted), so the optic
disc, which is nasal, lies on the image's right for a right eye and on its left for a left eye.
The fovea lies about 2.5 disc diameters temporal of the disc and slightly below it, and the two
temporal vessel arcades arch around it.

Every lesion (and the optic disc) is a soft alpha map composited as
``alpha * colour + (1 - alpha) * background``; its mask is exactly ``alpha >= 0.5``. Lesions never
overlap lesions of another kind, the disc or the rim of the field of view, so a mask pixel always
shows its own lesion's colour. Every length is a fraction of the image height, so a rendering
looks the same at any resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.signal import lfilter

LESION_KINDS: tuple[str, ...] = ("MA", "HE", "EX", "SE")
EYES = ("left", "right")

_BLOCKED = len(LESION_KINDS) + 1
_SUPPORT = 0.02
_STRICT_TRIES = 40
_SHARED_TRIES = 40
_SHIFT = 2


@dataclass(frozen=True)
class Lesion:
    """One rendered lesion; ``box`` (x, y, w, h) bounds exactly its own mask pixels."""

    kind: str
    box: tuple[int, int, int, int]


@dataclass
class FundusRendering:
    """RGB uint8 image, boolean FOV, boolean masks for every lesion kind and "OD", and the lesions."""

    image: np.ndarray
    fov_mask: np.ndarray
    masks: dict[str, np.ndarray]
    lesions: list[Lesion]


@dataclass(frozen=True)
class _Anatomy:
    """Where things are, in pixels; ``side`` is +1 when nasal is the image's right."""

    height: int
    width: int
    cx: float
    cy: float
    radius: float
    side: int
    disc_x: float
    disc_y: float
    disc_r: float
    disc_aspect: float
    fovea_x: float
    fovea_y: float
    lesion_unit: float  # the length lesion sizes are fractions of: the image height times the lesion scale


@dataclass(frozen=True)
class _Vessel:
    points: np.ndarray
    widths: np.ndarray
    artery: bool


@dataclass(frozen=True)
class _Patch:
    x0: int
    y0: int
    alpha: np.ndarray


def _anatomy(height: int, width: int, eye: str, rng: np.random.Generator, lesion_scale: float = 1.0) -> _Anatomy:
    """Draw the field of view, disc and fovea; the disc diameter is 1/6-1/8 of the FOV diameter."""
    size = min(height, width)
    radius = rng.uniform(0.46, 0.49) * size
    cx = np.clip(width / 2 + rng.uniform(-0.015, 0.015) * size, radius, width - radius)
    cy = np.clip(height / 2 + rng.uniform(-0.015, 0.015) * size, radius, height - radius)
    side = 1 if eye == "right" else -1
    disc_r = radius / rng.uniform(6.0, 8.0)
    disc_x = cx + side * rng.uniform(0.3, 0.4) * radius
    disc_y = cy + rng.uniform(-0.06, 0.04) * radius
    fovea_x = disc_x - side * rng.uniform(2.3, 2.7) * 2 * disc_r
    fovea_y = disc_y + rng.uniform(0.1, 0.5) * disc_r
    return _Anatomy(
        height,
        width,
        float(cx),
        float(cy),
        float(radius),
        side,
        float(disc_x),
        float(disc_y),
        float(disc_r),
        float(rng.uniform(1.04, 1.14)),
        float(fovea_x),
        float(fovea_y),
        height * lesion_scale,
    )


def _smooth_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with ``cells`` features across the image height, upsampled cheaply."""
    grid_h = cells + 3
    grid_w = max(2, round(cells * width / height)) + 3
    coarse = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return field / max(float(field.std()), 1e-6)


def _grid(height: int, width: int, cx: float, cy: float, extent: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of the window of half-size ``extent`` around (cx, cy), clipped."""
    x0 = min(width, max(0, int(np.floor(cx - extent))))
    y0 = min(height, max(0, int(np.floor(cy - extent))))
    x1 = min(width, max(x0, int(np.ceil(cx + extent)) + 1))
    y1 = min(height, max(y0, int(np.ceil(cy + extent)) + 1))
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    return x0, y0, xx, yy


def _add_gaussian(field: np.ndarray, x: float, y: float, sigma: float, amplitude: float) -> None:
    """Add a Gaussian bump in place, evaluated only within 4 sigma where it is not negligible."""
    x0, y0, xx, yy = _grid(field.shape[0], field.shape[1], x, y, 4 * sigma)
    bump = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    field[y0 : y0 + bump.shape[0], x0 : x0 + bump.shape[1]] += amplitude * bump


def _retina(anat: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    """The lesion-free background: orange-red, vignetted, textured, darker at the macula."""
    h, w = anat.height, anat.width
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    red = 212.0 * rng.uniform(0.85, 1.1)
    colour = np.array([red, red * rng.uniform(0.4, 0.55), red * rng.uniform(0.17, 0.3)], np.float32)

    shift = rng.uniform(-0.12, 0.12, size=2) * anat.radius
    rim = ((xx - anat.cx - shift[0]) ** 2 + (yy - anat.cy - shift[1]) ** 2) / anat.radius**2
    depth, power = rng.uniform(0.35, 0.55), rng.uniform(1.1, 1.5)
    vignette = np.clip(1.0 - depth * rim**power, 0.2, 1.0)

    shade = 1.0 + 0.035 * _smooth_noise(h, w, 3, rng) + 0.02 * _smooth_noise(h, w, 16, rng)
    shade += 0.012 * _smooth_noise(h, w, max(8, h // 5), rng)
    macula = np.zeros((h, w), np.float32)
    _add_gaussian(macula, anat.fovea_x, anat.fovea_y, 1.6 * anat.disc_r, rng.uniform(0.18, 0.3))
    _add_gaussian(macula, anat.fovea_x, anat.fovea_y, 0.5 * anat.disc_r, rng.uniform(0.04, 0.08))
    _add_gaussian(shade, anat.fovea_x, anat.fovea_y, 0.08 * anat.disc_r, rng.uniform(0.05, 0.12))
    _add_gaussian(shade, anat.disc_x, anat.disc_y, 1.0 * anat.disc_r, 0.05)
    shade -= macula
    # Green and blue fall off faster than red towards the rim, as in real photographs, and the
    # macular pigment absorbs short wavelengths, so the macula is browner rather than just darker.
    brown = shade - 0.4 * macula
    return np.stack([colour[0] * vignette * shade, colour[1] * vignette**1.3 * brown, colour[2] * vignette**1.4 * brown], axis=-1)


def _disc(anat: _Anatomy) -> tuple[_Patch, np.ndarray]:
    """Soft alpha of the disc ellipse (0.5 exactly on its rim) and its normalised radius, in a window
    wide enough to keep lesions a little clear of it."""
    a, b = anat.disc_r, anat.disc_r * anat.disc_aspect
    x0, y0, xx, yy = _grid(anat.height, anat.width, anat.disc_x, anat.disc_y, 1.6 * b + 2)
    q = np.sqrt(((xx - anat.disc_x) / a) ** 2 + ((yy - anat.disc_y) / b) ** 2)
    edge = max(0.8, 0.08 * a)
    return _Patch(x0, y0, np.clip(0.5 + (1.0 - q) * a / edge, 0.0, 1.0)), q


def _paint_disc(image: np.ndarray, anat: _Anatomy, disc: _Patch, rng: np.random.Generator) -> None:
    """Composite an orange-yellow neuroretinal rim around a paler cup shifted temporally."""
    h, w = disc.alpha.shape
    yy = np.arange(disc.y0, disc.y0 + h, dtype=np.float32)[:, None]
    xx = np.arange(disc.x0, disc.x0 + w, dtype=np.float32)[None, :]
    cup_x = anat.disc_x - anat.side * rng.uniform(0.05, 0.2) * anat.disc_r
    cup_r = rng.uniform(0.3, 0.5) * anat.disc_r
    cup = np.exp(-((xx - cup_x) ** 2 + (yy - anat.disc_y) ** 2) / (2 * cup_r**2))[..., None]
    rim = np.array([234, 158, 98], np.float32) * rng.uniform(0.9, 1.05)
    pale = np.array([248, 224, 176], np.float32)
    a = disc.alpha[..., None]
    region = image[disc.y0 : disc.y0 + h, disc.x0 : disc.x0 + w]
    region[:] = a * (rim + (pale - rim) * cup) + (1.0 - a) * region


def _walk(
    start: np.ndarray,
    heading: float,
    target: float,
    turn: float,
    wiggle: float,
    steps: int,
    step: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random walk whose heading relaxes towards ``target``; returns points and headings.

    The heading follows h[k+1] = h[k] + turn * (target - h[k]) + noise, an AR(1) recursion, so
    the whole path comes from one filter call rather than a per-step loop.
    """
    k = np.arange(steps, dtype=np.float64)
    decay = (1.0 - turn) ** k
    noise = lfilter([wiggle], [1.0, -(1.0 - turn)], rng.standard_normal(steps))
    angles = target + (heading - target) * decay + noise
    moves = step * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = start + np.concatenate([np.zeros((1, 2)), np.cumsum(moves, axis=0)])
    return points, np.concatenate([angles[:1], angles])


def _to_image(anat: _Anatomy, uv: np.ndarray) -> np.ndarray:
    """Map the disc-centred frame (u temporal, v up) to image x, y."""
    return np.stack([anat.disc_x - anat.side * uv[:, 0], anat.disc_y - uv[:, 1]], axis=1)


def _fovea_uv(anat: _Anatomy) -> np.ndarray:
    return np.array([anat.side * (anat.disc_x - anat.fovea_x), anat.disc_y - anat.fovea_y])


def _keep(anat: _Anatomy, uv: np.ndarray, points: np.ndarray, widths: np.ndarray) -> int:
    """How many leading points to draw: a vessel ends at the FOV rim, in the foveal avascular zone,
    when it gets too thin to see, or when it would cross the horizontal raphe temporal of the fovea
    (retinal vessels never do)."""
    rim = np.hypot(points[:, 0] - anat.cx, points[:, 1] - anat.cy) > 0.985 * anat.radius
    faz = np.hypot(points[:, 0] - anat.fovea_x, points[:, 1] - anat.fovea_y) < 0.7 * anat.disc_r
    fovea = _fovea_uv(anat)
    reach = float(np.hypot(*fovea))
    along = uv @ fovea / reach
    across = (fovea[0] * uv[:, 1] - fovea[1] * uv[:, 0]) / reach
    clear = np.abs(across) > 0.3 * anat.disc_r
    side = np.sign(across[np.argmax(clear)]) if clear.any() else 0.0
    raphe = (along > 0.8 * reach) & (np.sign(across) == -side)
    stop = rim | faz | raphe | (widths < max(0.3, 0.02 * anat.disc_r))
    return int(np.argmax(stop)) if stop.any() else len(points)


def _vessel(
    anat: _Anatomy,
    start_uv: np.ndarray,
    heading: float,
    target: float,
    turn: float,
    wiggle: float,
    length: float,
    width: float,
    taper: float,
    artery: bool,
    rng: np.random.Generator,
) -> tuple[_Vessel, np.ndarray] | None:
    """One vessel, with its path in the disc frame (u, v, heading, width) for branching off it."""
    step = 0.025 * anat.radius
    steps = max(2, int(length / step))
    uv, headings = _walk(start_uv, heading, target, turn, wiggle, steps, step, rng)
    widths = width * np.exp(-taper * np.arange(steps + 1) / steps)
    points = _to_image(anat, uv)
    n = _keep(anat, uv, points, widths)
    if n < 3:
        return None
    return _Vessel(points[:n], widths[:n], artery), np.column_stack([uv[:n], headings[:n], widths[:n]])


def _branches(anat: _Anatomy, path: np.ndarray, artery: bool, generation: int, rng: np.random.Generator) -> list[_Vessel]:
    """Side branches leave the parent at 25-70 degrees, thinner, wander, and branch again."""
    if generation > 2:
        return []
    outside = np.flatnonzero(np.hypot(path[:, 0], path[:, 1]) > 1.3 * anat.disc_r)
    n_branches = min(len(outside), int(rng.integers(*((2, 6), (1, 3), (0, 2))[generation])))
    vessels: list[_Vessel] = []
    for index in np.sort(rng.choice(outside, size=n_branches, replace=False)):
        u, v, parent_heading, parent_width = path[index]
        heading = parent_heading + rng.choice([-1.0, 1.0]) * np.radians(rng.uniform(25, 70))
        grown = _vessel(
            anat,
            np.array([u, v]),
            heading,
            heading + np.radians(rng.uniform(-30, 30)),
            0.04,
            0.1,
            rng.uniform(0.25, 0.6) * anat.radius / (1 + 0.4 * generation),
            parent_width * rng.uniform(0.55, 0.8),
            rng.uniform(1.0, 2.0),
            artery,
            rng,
        )
        if grown is not None:
            vessels.append(grown[0])
            vessels.extend(_branches(anat, grown[1], artery, generation + 1, rng))
    return vessels


def _vessel_tree(anat: _Anatomy, rng: np.random.Generator) -> list[_Vessel]:
    """Veins and arteries for the four arcades plus small macular vessels, all from the disc.

    Headings are in the disc-centred frame (0 = temporal, 90 degrees = up). The temporal arcades
    leave the disc almost vertically and relax towards the horizontal raphe over ~3 disc radii,
    which makes them arch around the macula.
    """
    r = anat.disc_r
    vein_width = rng.uniform(0.17, 0.21) * r
    fovea = _fovea_uv(anat)
    fovea_heading = float(np.degrees(np.arctan2(fovea[1], fovea[0])))
    trunks: list[tuple[float, float, float, float, float, float]] = []
    for sign in (1.0, -1.0):
        arcade = (sign * rng.uniform(65, 95), -sign * rng.uniform(5, 25), r * rng.uniform(2.5, 3.5), 1.1 * anat.radius)
        nasal = (sign * rng.uniform(100, 125), sign * rng.uniform(150, 175), r * rng.uniform(3, 5), 0.8 * anat.radius)
        macular = fovea_heading + sign * rng.uniform(10, 30)
        small = (macular, macular - sign * 10, 3 * r, 0.35 * anat.radius)
        trunks += [(*arcade, 1.0, sign), (*nasal, 0.85, sign), (*small, 0.35, sign)]
    vessels: list[_Vessel] = []
    for heading, target, bend, length, scale, sign in trunks:
        for artery in (False, True):
            spread = rng.uniform(-12, 12) if artery else 0.0
            # Superior vessels leave the upper half of the disc, inferior ones the lower half.
            start = np.array([rng.uniform(-0.25, 0.05), sign * rng.uniform(0.0, 0.15)]) * r
            width = vein_width * scale * (rng.uniform(0.68, 0.78) if artery else 1.0)
            grown = _vessel(
                anat,
                start,
                np.radians(heading + spread),
                np.radians(target),
                0.025 * anat.radius / bend,
                0.04,
                length,
                width,
                0.9,
                artery,
                rng,
            )
            if grown is not None:
                vessels.append(grown[0])
                vessels.extend(_branches(anat, grown[1], artery, 0, rng))
    return vessels


def _draw_vessels(vessels: list[_Vessel], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Vein and artery coverage in [0, 1], drawn supersampled so sub-pixel widths come out right."""
    scale = int(np.clip(np.ceil(1024 / height), 2, 4))
    canvases = {artery: np.zeros((height * scale, width * scale), np.uint8) for artery in (False, True)}
    for vessel in vessels:
        canvas_xy = scale * (vessel.points + 0.5) - 0.5
        points = np.rint(canvas_xy * (1 << _SHIFT)).astype(np.int32)
        thickness = np.maximum(1, np.rint(vessel.widths[:-1] * scale)).astype(int)
        cuts = np.flatnonzero(np.diff(thickness)) + 1
        for first, last in zip(np.r_[0, cuts], np.r_[cuts, len(thickness)], strict=True):
            cv2.polylines(
                canvases[vessel.artery], [points[first : last + 1]], False, 255, int(thickness[first]), cv2.LINE_AA, _SHIFT
            )
    vein, artery = (
        cv2.resize(canvases[a], (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0 for a in (False, True)
    )
    return vein, artery


def _paint_vessels(image: np.ndarray, vein: np.ndarray, artery: np.ndarray, rng: np.random.Generator) -> None:
    """Vessels absorb green most, so they are multiplicative, darker red; arteries are lighter."""
    vein_colour = np.array([0.68, 0.42, 0.42], np.float32) * rng.uniform(0.92, 1.05)
    artery_colour = np.array([0.86, 0.64, 0.62], np.float32) * rng.uniform(0.95, 1.05)
    image *= (1.0 - vein[..., None] * (1.0 - vein_colour)) * (1.0 - artery[..., None] * (1.0 - artery_colour))


def _ellipse(
    xx: np.ndarray,
    yy: np.ndarray,
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle: float,
    wobble: np.ndarray,
    edge: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Alpha of an irregular ellipse: its radius is modulated by angular harmonics 2, 3, ... with
    amplitudes ``wobble``; 0.5 on the (wobbly) outline, ramping over ``edge`` pixels."""
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / a
    v = (-(xx - cx) * s + (yy - cy) * c) / b
    q = np.sqrt(u**2 + v**2)
    if wobble.size:
        phases = rng.uniform(0, 2 * np.pi, size=wobble.size)
        phi = np.arctan2(v, u)
        harmonics = np.arange(2, 2 + wobble.size, dtype=np.float32)[:, None, None]
        q = q / (1.0 + (wobble[:, None, None] * np.cos(harmonics * phi + phases[:, None, None])).sum(axis=0))
    return np.clip(0.5 + (1.0 - q) * b / edge, 0.0, 1.0).astype(np.float32)


def _wobble(amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Harmonic amplitudes falling as 1/k, so outlines look lumpy rather than polygonal."""
    return rng.uniform(0, amplitude, size=3) / np.array([1.0, 2.0, 3.0])


def _microaneurysm(anat: _Anatomy, cx: float, cy: float, rng: np.random.Generator) -> _Patch:
    r = max(1.0, rng.uniform(0.004, 0.008) * anat.lesion_unit)
    x0, y0, xx, yy = _grid(anat.height, anat.width, cx, cy, r + 2)
    return _Patch(x0, y0, _ellipse(xx, yy, cx, cy, r, r, 0.0, np.zeros(0), max(0.6, 0.3 * r), rng))


def _haemorrhage(anat: _Anatomy, cx: float, cy: float, rng: np.random.Generator) -> _Patch:
    """Dot-blot haemorrhages are roundish; flame ones are elongated along the nerve fibres.

    The nerve fibres run roughly radially from the disc, so flames point at it.
    """
    a = max(1.2, rng.uniform(0.01, 0.03) * anat.lesion_unit)
    if rng.random() < 0.4:
        aspect, angle = rng.uniform(2.0, 3.5), float(np.arctan2(cy - anat.disc_y, cx - anat.disc_x))
    else:
        aspect, angle = rng.uniform(1.0, 1.5), rng.uniform(0, np.pi)
    b = max(1.0, a / aspect)
    edge = max(0.7, 0.25 * b)
    x0, y0, xx, yy = _grid(anat.height, anat.width, cx, cy, 1.3 * a + edge + 2)
    return _Patch(x0, y0, _ellipse(xx, yy, cx, cy, a, b, angle, _wobble(0.12, rng), edge, rng))


def _hard_exudate(anat: _Anatomy, cx: float, cy: float, rng: np.random.Generator) -> _Patch:
    """A sharp-edged cluster of small blobs, scattered or along a circinate ring."""
    spread = rng.uniform(0.01, 0.04) * anat.lesion_unit
    n = int(rng.integers(3, 11))
    radii = np.maximum(0.8, spread * rng.uniform(0.12, 0.3, size=n))
    if rng.random() < 0.35:
        angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, rng.uniform(np.pi, 2 * np.pi), n) + rng.normal(0, 0.1, n)
        offsets = spread * rng.uniform(0.85, 1.1, size=(n, 1)) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    else:
        offsets = rng.normal(0, 0.45 * spread, size=(n, 2))
    x0, y0, xx, yy = _grid(anat.height, anat.width, cx, cy, spread * 2.2 + radii.max() + 2)
    centres = np.array([cx, cy]) + offsets
    d = np.sqrt((xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2)
    alpha = np.clip(0.5 + (radii[:, None, None] - d) / 0.6, 0.0, 1.0).max(axis=0)
    return _Patch(x0, y0, alpha.astype(np.float32))


def _soft_exudate(anat: _Anatomy, cx: float, cy: float, rng: np.random.Generator) -> _Patch:
    """Cotton-wool spots: a few overlapping fuzzy lobes, semi-opaque, with a wide soft edge."""
    a = rng.uniform(0.02, 0.04) * anat.lesion_unit
    x0, y0, xx, yy = _grid(anat.height, anat.width, cx, cy, 2.2 * a + 2)
    alpha = np.zeros((yy.shape[0], xx.shape[1]), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        lobe = a * rng.uniform(0.45, 0.75)
        ox, oy = rng.normal(0, 0.35 * a, size=2)
        aspect, angle = rng.uniform(1.0, 1.5), rng.uniform(0, np.pi)
        shape = _ellipse(xx, yy, cx + ox, cy + oy, lobe, lobe / aspect, angle, _wobble(0.2, rng), 0.6 * lobe, rng)
        alpha = np.maximum(alpha, shape)
    return _Patch(x0, y0, alpha * rng.uniform(0.8, 0.95))


_SHAPES: dict[str, Callable[[_Anatomy, float, float, np.random.Generator], _Patch]] = {
    "MA": _microaneurysm,
    "HE": _haemorrhage,
    "EX": _hard_exudate,
    "SE": _soft_exudate,
}


def _lesion_colour(kind: str, local: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Red lesions are a darker, redder version of the local retina; exudates are their own colour
    dimmed by the local vignetting, so they stay plausible near the rim."""
    light = float(np.clip(local[0] / 200.0, 0.85, 1.05))
    if kind == "MA":
        return local * np.array([0.55, 0.28, 0.32], np.float32) * rng.uniform(0.85, 1.05)
    if kind == "HE":
        return local * np.array([0.62, 0.32, 0.36], np.float32) * rng.uniform(0.88, 1.05)
    if kind == "EX":
        return np.array([252, 214, 98], np.float32) * light * rng.uniform(0.92, 1.0)
    return np.array([232, 210, 182], np.float32) * light * rng.uniform(0.9, 1.0)


def _centre(kind: str, anat: _Anatomy, anchors: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Haemorrhages and cotton-wool spots favour vessels, exudates and microaneurysms the macula."""
    favoured = rng.random() < 0.5
    if kind in ("HE", "SE") and favoured and len(anchors):
        x, y = anchors[rng.integers(len(anchors))]
        offset = rng.normal(0, 0.04 * anat.height, size=2)
        return float(x + offset[0]), float(y + offset[1])
    if kind in ("EX", "MA") and favoured:
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 3.0) * 2 * anat.disc_r
        return float(anat.fovea_x + dist * np.cos(angle)), float(anat.fovea_y + dist * np.sin(angle))
    angle, dist = rng.uniform(0, 2 * np.pi), 0.9 * anat.radius * np.sqrt(rng.random())
    return float(anat.cx + dist * np.cos(angle)), float(anat.cy + dist * np.sin(angle))


def _place(
    kind: str, code: int, anat: _Anatomy, owner: np.ndarray, anchors: np.ndarray, rng: np.random.Generator
) -> _Patch | None:
    """Draw a lesion clear of everything else; after ``_STRICT_TRIES`` it may touch its own kind."""
    for attempt in range(_STRICT_TRIES + _SHARED_TRIES):
        patch = _SHAPES[kind](anat, *_centre(kind, anat, anchors, rng), rng)
        h, w = patch.alpha.shape
        taken = owner[patch.y0 : patch.y0 + h, patch.x0 : patch.x0 + w]
        clash = taken[patch.alpha > _SUPPORT]
        allowed = (clash == 0) if attempt < _STRICT_TRIES else (clash == 0) | (clash == code)
        if allowed.all() and (patch.alpha >= 0.5).any():
            return patch
    return None


def _lesions(
    image: np.ndarray,
    retina: np.ndarray,
    anat: _Anatomy,
    owner: np.ndarray,
    counts: Mapping[str, int],
    anchors: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], list[Lesion]]:
    masks = {kind: np.zeros((anat.height, anat.width), bool) for kind in LESION_KINDS}
    lesions: list[Lesion] = []
    for code, kind in enumerate(LESION_KINDS, start=1):
        for _ in range(int(counts.get(kind, 0))):
            patch = _place(kind, code, anat, owner, anchors, rng)
            if patch is None:
                continue
            h, w = patch.alpha.shape
            rows, cols = slice(patch.y0, patch.y0 + h), slice(patch.x0, patch.x0 + w)
            colour = _lesion_colour(kind, retina[rows, cols].reshape(-1, 3).mean(axis=0), rng)
            a = patch.alpha[..., None]
            image[rows, cols] = a * colour + (1.0 - a) * image[rows, cols]
            inside = patch.alpha >= 0.5
            masks[kind][rows, cols] |= inside
            owner[rows, cols][patch.alpha > _SUPPORT] = code
            ys, xs = np.nonzero(inside)
            x, y = patch.x0 + int(xs.min()), patch.y0 + int(ys.min())
            lesions.append(Lesion(kind, (x, y, int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1)))
    return masks, lesions


def _check(height: int, width: int, counts: Mapping[str, int], eye: str) -> None:
    if eye not in EYES:
        raise ValueError(f"eye must be one of {EYES}, got {eye!r}")
    if height < 32 or width < 32:
        raise ValueError(f"image must be at least 32 x 32 pixels, got {height} x {width}")
    unknown = set(counts) - set(LESION_KINDS)
    if unknown:
        raise ValueError(f"unknown lesion kinds {sorted(unknown)}; valid kinds are {LESION_KINDS}")
    negative = {kind: n for kind, n in counts.items() if n < 0}
    if negative:
        raise ValueError(f"lesion counts must be >= 0, got {negative}")


def render_fundus(
    height: int, width: int, counts: Mapping[str, int], eye: str, rng: np.random.Generator, lesion_scale: float = 1.0
) -> FundusRendering:
    """Render one fundus photograph with ``counts[kind]`` lesions of each kind, ``lesion_scale`` times their usual
    size (a dataset made to be read at a small input size can keep its lesions several pixels wide there).

    A lesion that cannot be placed clear of the others (only in very crowded images) is left out,
    so ``lesions`` and the masks, not ``counts``, are the ground truth.
    """
    _check(height, width, counts, eye)
    anat = _anatomy(height, width, eye, rng, lesion_scale)
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    centre2 = (xx - anat.cx) ** 2 + (yy - anat.cy) ** 2
    fov = centre2 <= anat.radius**2

    retina = _retina(anat, rng)
    image = retina.copy()
    disc, disc_q = _disc(anat)
    _paint_disc(image, anat, disc, rng)
    vessels = _vessel_tree(anat, rng)
    _paint_vessels(image, *_draw_vessels(vessels, height, width), rng)

    disc_rows = slice(disc.y0, disc.y0 + disc.alpha.shape[0])
    disc_cols = slice(disc.x0, disc.x0 + disc.alpha.shape[1])
    owner = np.where(centre2 > (anat.radius - max(2.0, 0.01 * height)) ** 2, _BLOCKED, 0).astype(np.int8)
    owner[disc_rows, disc_cols][disc_q < 1.35] = _BLOCKED
    anchors = np.concatenate([v.points for v in vessels if not v.artery] or [np.zeros((0, 2))])
    anchors = anchors[np.hypot(anchors[:, 0] - anat.disc_x, anchors[:, 1] - anat.disc_y) > 2 * anat.disc_r]
    masks, lesions = _lesions(image, retina, anat, owner, counts, anchors, rng)
    masks["OD"] = np.zeros((height, width), bool)
    masks["OD"][disc_rows, disc_cols] = disc.alpha >= 0.5
    masks["OD"] &= fov

    image += (1.2 * rng.standard_normal((height, width, 1))).astype(np.float32)
    background = rng.integers(0, 4, size=(height, width, 3), dtype=np.uint8)
    pixels = np.rint(np.clip(image, 0, 255)).astype(np.uint8)
    return FundusRendering(np.where(fov[..., None], pixels, background), fov, masks, lesions)
