"""Synthetic frontal (PA) chest radiographs with the eight ChestX-ray8 findings.

The renderer works in attenuation, not in grey levels: every structure adds (bone, heart, fluid,
tumour) or removes (air in the lungs, trachea and stomach) water-equivalent path length, in cm, and
a film curve maps the total to grey. That is what makes ribs fade over the heart, an effusion look
like the soft tissue below the diaphragm and a pneumothorax look black, as on a real film, without
a grey level to tune per structure.

Geometry is in fractions of the image side (x to the right, y down), so every size shows the same
chest. The patient faces the viewer: the patient's right lung (``RIGHT``) is on the image's left,
and the heart bulges to the image's right. The anatomy is drawn from ``rng`` first and each finding
then gets its own stream, so adding a finding to the list leaves the rest of the image as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

CHEST_FINDINGS: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax")

RIGHT, LEFT = -1, 1
# The generator writes a 360 mm field of view; lesion thicknesses in cm follow from their diameters.
FIELD_OF_VIEW_CM = 36.0
_AA = 16  # sub-pixel precision of OpenCV drawing (4 fractional bits)


@dataclass(frozen=True)
class Finding:
    name: str
    box: tuple[float, float, float, float]


@dataclass
class ChestRendering:
    image: np.ndarray
    body_mask: np.ndarray
    findings: list[Finding]


@dataclass(frozen=True)
class _Anatomy:
    """One patient's drawn proportions, in thorax units (scaled by ``sx``/``sy`` onto the image)."""

    cx: float
    top: float
    sx: float
    sy: float
    widths: tuple[float, float]
    domes: tuple[float, float]
    torso: float
    neck: float
    shoulder: float
    thickness: float
    air: float
    ctr: float
    heart_right: float
    heart_tilt: float
    heart_aspect: float
    rib_top: float
    rib_step: float
    clavicle: float
    bubble: float
    vessels: np.ndarray
    texture: np.ndarray
    collapse: tuple[int, float, float] | None = None
    volume_loss: int | None = None


@dataclass(frozen=True)
class _Geometry:
    """Outlines in image fractions, derived from an anatomy once its findings have reshaped it."""

    outlines: dict[int, np.ndarray]
    collapsed: dict[int, np.ndarray]
    pleural_line: np.ndarray | None
    heart: tuple[float, float, float, float, float]
    hila: dict[int, tuple[float, float]]


@dataclass
class _Scene:
    size: int
    x: np.ndarray
    y: np.ndarray
    body: np.ndarray
    lungs: np.ndarray
    depth: np.ndarray
    aerated: np.ndarray
    pneumothorax: np.ndarray
    heart_box: tuple[float, float, float, float]


def _smoothstep(edge0: float, edge1: float, value: np.ndarray) -> np.ndarray:
    t = np.clip((value - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _spline(points: Sequence[tuple[float, float]], per_segment: int = 8) -> np.ndarray:
    """Catmull-Rom curve through control points, so outlines are smooth without hand-set tangents."""
    p = np.asarray(points, dtype=np.float64)
    q = np.vstack([p[:1], p, p[-1:]])
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[None, :, None]
    p0, p1, p2, p3 = (q[i : len(q) - 3 + i, None, :] for i in range(4))
    curve = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    return np.vstack([curve.reshape(-1, 2), p[-1:]])


def _bezier(points: Sequence[tuple[float, float]], n: int = 24) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]


def _to_image(a: _Anatomy, side: int, points: np.ndarray) -> np.ndarray:
    """Thorax units (distance from the midline, height) to image fractions on one side."""
    width = a.widths[0 if side == RIGHT else 1]
    return np.column_stack([a.cx + side * points[:, 0] * a.sx * width, a.top + points[:, 1] * a.sy])


def _pixels(points: np.ndarray, size: int) -> np.ndarray:
    return np.round((points * size - 0.5) * _AA).astype(np.int32)


def _fill(polygons: Sequence[np.ndarray], size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [_pixels(p, size) for p in polygons], 255, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _draw(size: int, lines: Sequence[np.ndarray], width: float, value: float = 1.0) -> np.ndarray:
    """Anti-aliased polylines of ``width`` (image fractions) as a float canvas."""
    canvas = np.zeros((size, size), np.uint8)
    thickness = max(1, round(width * size))
    cv2.polylines(canvas, [_pixels(line, size) for line in lines], False, round(255 * value), thickness, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image


# --- anatomy -----------------------------------------------------------------------------------


def _vessel_tree(rng: np.random.Generator, hilum: tuple[float, float], side: int) -> np.ndarray:
    """Branching pulmonary vessels from a hilum, rows (x0, y0, x1, y1, width, weight).

    Each generation is shorter, thinner and fainter, which is how markings fade to the periphery.
    """
    angles = np.deg2rad([-110.0, -72.0, -40.0, -10.0, 20.0, 50.0, 80.0]) + rng.normal(0.0, 0.12, 7)
    tips = np.tile(np.asarray(hilum), (len(angles), 1))
    length, width, weight = 0.07, 0.009, 1.0
    segments = []
    for _ in range(5):
        lengths = length * rng.uniform(0.7, 1.25, len(angles))
        ends = tips + np.column_stack([side * np.cos(angles), np.sin(angles)]) * lengths[:, None]
        segments.append(np.column_stack([tips, ends, np.full(len(angles), width), np.full(len(angles), weight)]))
        spread = rng.uniform(0.2, 0.55, (len(angles), 2)) * np.array([-1.0, 1.0])
        angles = (angles[:, None] + spread).ravel()
        tips = np.repeat(ends, 2, axis=0)
        length, width, weight = 0.74 * length, 0.7 * width, 0.8 * weight
    return np.vstack(segments)


def _hila(cx: float, top: float, sx: float, sy: float) -> dict[int, tuple[float, float]]:
    """The left hilum sits higher than the right, as on a normal film."""
    return {RIGHT: (cx - 0.092 * sx, top + 0.425 * sy), LEFT: (cx + 0.088 * sx, top + 0.395 * sy)}


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    cx, top = 0.5 + rng.normal(0.0, 0.012), rng.uniform(-0.03, 0.02)
    sx, sy = rng.uniform(0.93, 1.04), rng.uniform(0.93, 1.04)
    dome_right = rng.uniform(0.6, 0.66)
    hila = _hila(cx, top, sx, sy)
    vessels = np.vstack([_vessel_tree(rng, hila[side], side) for side in (RIGHT, LEFT)])
    return _Anatomy(
        cx=cx,
        top=top,
        sx=sx,
        sy=sy,
        widths=(rng.uniform(0.97, 1.03), rng.uniform(0.97, 1.03)),
        domes=(dome_right, dome_right + rng.uniform(0.012, 0.035)),
        torso=rng.uniform(0.43, 0.46),
        neck=rng.uniform(0.07, 0.085),
        shoulder=rng.uniform(0.02, 0.06),
        thickness=rng.uniform(19.0, 23.0),
        air=rng.uniform(0.62, 0.7),
        ctr=rng.uniform(0.39, 0.47),
        heart_right=rng.uniform(0.28, 0.36),
        heart_tilt=rng.uniform(0.35, 0.6),
        heart_aspect=rng.uniform(0.72, 0.84),
        rib_top=rng.uniform(0.1, 0.125),
        rib_step=rng.uniform(0.054, 0.06),
        clavicle=rng.uniform(0.135, 0.165),
        bubble=rng.uniform(0.0, 3.5),
        vessels=vessels,
        texture=rng.standard_normal((40, 40)).astype(np.float32),
    )


def _lung_outline(a: _Anatomy, side: int) -> np.ndarray:
    """Closed outline from the medial base along the diaphragm dome, up the lateral wall, over the
    apex and down the medial border; the costophrenic angle stays a corner."""
    dome = a.domes[0 if side == RIGHT else 1]
    cp, base = dome + 0.115, dome + 0.05
    diaphragm = [(0.046, base), (0.09, dome + 0.016), (0.17, dome), (0.25, dome + 0.02), (0.32, dome + 0.058), (0.375, cp)]
    wall = [(0.375, cp), (0.384, cp - 0.11), (0.374, 0.5), (0.347, 0.36), (0.302, 0.25), (0.245, 0.17), (0.185, 0.128)]
    wall += [(0.13, 0.117), (0.085, 0.14), (0.06, 0.2), (0.05, 0.32), (0.046, 0.45), (0.046, base)]
    return _to_image(a, side, np.vstack([_spline(diaphragm), _spline(wall)[1:-1]]))


def _heart(a: _Anatomy, outlines: dict[int, np.ndarray]) -> tuple[float, float, float, float, float]:
    """A tilted ellipse, sized so that its width over the thorax's inner width is ``ctr`` and sitting
    on the left hemidiaphragm: (centre x, centre y, semi-axis a, semi-axis b, tilt)."""
    thorax = outlines[LEFT][:, 0].max() - outlines[RIGHT][:, 0].min()
    width = a.ctr * thorax
    cos, sin = np.cos(a.heart_tilt), np.sin(a.heart_tilt)
    semi_a = 0.5 * width / np.sqrt(cos**2 + (a.heart_aspect * sin) ** 2)
    semi_b = a.heart_aspect * semi_a
    half_height = np.sqrt((semi_a * sin) ** 2 + (semi_b * cos) ** 2)
    base = a.top + (a.domes[1] + 0.035) * a.sy
    return a.cx + width * (0.5 - a.heart_right), base - 0.58 * half_height, semi_a, semi_b, a.heart_tilt


def _collapse(outline: np.ndarray, hilum: tuple[float, float], side: int, depth: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pull the apical and lateral outline towards the hilum, as a lung shrinks away from the chest
    wall; returns the new outline and its displaced stretch (where the pleural line shows)."""
    offset = outline - np.asarray(hilum)
    unit = offset / np.linalg.norm(offset, axis=1, keepdims=True)
    weight = np.clip(unit @ np.array([side * np.cos(angle), -np.sin(angle)]), 0.0, 1.0) ** 2
    moved = outline - depth * weight[:, None] * unit
    shown = np.flatnonzero(weight > 0.08)
    return moved, moved[shown.min() : shown.max() + 1]


def _geometry(a: _Anatomy) -> _Geometry:
    outlines = {side: _lung_outline(a, side) for side in (RIGHT, LEFT)}
    hila = _hila(a.cx, a.top, a.sx, a.sy)
    collapsed, line = dict(outlines), None
    if a.collapse is not None:
        side, depth, angle = a.collapse
        collapsed[side], line = _collapse(outlines[side], hila[side], side, depth, angle)
    return _Geometry(outlines, collapsed, line, _heart(a, outlines), hila)


def _ellipse(x: np.ndarray, y: np.ndarray, heart: tuple[float, float, float, float, float]) -> np.ndarray:
    """Squared normalised radius of the heart ellipse."""
    hx, hy, semi_a, semi_b, tilt = heart
    cos, sin = np.float32(np.cos(tilt)), np.float32(np.sin(tilt))
    dx, dy = x - np.float32(hx), y - np.float32(hy)
    return ((dx * cos + dy * sin) / np.float32(semi_a)) ** 2 + ((dy * cos - dx * sin) / np.float32(semi_b)) ** 2


def _mediastinum(a: _Anatomy, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """The upper mediastinum: superior vena cava on the right, aortic knob and pulmonary trunk on
    the left, as a soft band with a one-pixel edge."""
    t = (y - a.top) / a.sy
    right = 0.058 + 0.02 * _smoothstep(0.2, 0.36, t)
    left = 0.052 + 0.04 * np.exp(-(((t - 0.28) / 0.035) ** 2)) + 0.03 * _smoothstep(0.3, 0.4, t)
    d = (x - a.cx) / a.sx
    edge = size * a.sx
    return np.clip((left - d) * edge + 0.5, 0, 1) * np.clip((d + right) * edge + 0.5, 0, 1)


def _body(a: _Anatomy, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Water-equivalent thickness of the torso: an elliptic cross-section under a neck and sloping
    shoulders, with the arms filling the top corners."""
    t = (y - a.top) / a.sy
    d = np.abs(x - a.cx) / a.sx
    half = a.torso + 0.14 * _smoothstep(0.34, 0.1, t)
    over = d - a.neck
    shoulder_line = a.shoulder + 0.3 * 0.5 * (np.sqrt(over**2 + 0.03**2) + over)
    edge = 0.5 * size
    inside = np.maximum(np.clip((a.neck - d) * edge + 0.5, 0, 1), np.clip((t - shoulder_line) * edge + 0.5, 0, 1))
    inside = inside * np.clip((half - d) * edge + 0.5, 0, 1)
    profile = np.clip(1.0 - (d / half) ** 2, 0.0, 1.0) ** 0.4
    neck = 0.55 + 0.45 * _smoothstep(a.shoulder - 0.04, a.shoulder + 0.1, t)
    return (a.thickness * (0.9 + 0.15 * np.clip(t, 0, 1)) * neck * profile * inside).astype(np.float32)


def _ribs(a: _Anatomy, g: _Geometry, size: int) -> np.ndarray:
    """Posterior ribs (arcs rising from the spine and turning down at the chest wall, with brighter
    cortical edges) and fainter anterior ribs sloping down towards the sternum."""
    posterior, anterior = [], []
    for side in (RIGHT, LEFT):
        outline = g.outlines[side]
        wall = np.abs(outline[:, 0] - a.cx) / (a.sx * a.widths[0 if side == RIGHT else 1])
        heights = (outline[:, 1] - a.top) / a.sy
        for i in range(10):
            y0 = a.rib_top + i * a.rib_step * (1 + 0.025 * i)
            near = np.abs(heights - (y0 + 0.03)) < 0.03
            reach = (wall[near].max() if near.any() else wall.max()) + 0.02
            back = _bezier([(0.03, y0), (0.3 * reach, y0 - 0.05), (reach + 0.03, y0 - 0.025), (reach, y0 + 0.07)])
            front = _bezier([(reach, y0 + 0.07), (reach - 0.02, y0 + 0.13), (0.72 * reach, y0 + 0.17), (0.42 * reach, y0 + 0.185)])
            posterior.append(_to_image(a, side, back))
            anterior.append(_to_image(a, side, front))
    width = 0.021 * a.sy
    cortex = _draw(size, posterior, width) - 0.45 * _draw(size, posterior, 0.45 * width)
    return cortex + 0.35 * _draw(size, anterior, 1.25 * width)


def _shoulder_girdle(a: _Anatomy, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Clavicles (S-shaped bars from the sternum to the acromion) and the humeral heads."""
    clavicles = [
        _to_image(a, side, _spline([(0.03, a.clavicle + 0.05), (0.12, a.clavicle + 0.02), (0.24, a.clavicle - 0.012), (0.34, a.clavicle - 0.005)]))
        for side in (RIGHT, LEFT)
    ]
    bone = _draw(size, clavicles, 0.024) - 0.35 * _draw(size, clavicles, 0.01)
    for side in (RIGHT, LEFT):
        hx, hy = a.cx + side * 0.45 * a.sx, a.top + (a.clavicle + 0.05) * a.sy
        bone += 1.2 * np.sqrt(np.clip(1.0 - ((x - hx) ** 2 + (y - hy) ** 2) / 0.062**2, 0, 1))
    return bone


def _spine(a: _Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vertebral bodies separated by discs, with paired pedicles, growing down the column."""
    t = (y - a.top) / a.sy
    half = 0.03 * a.sx * (1 + 0.2 * t)
    d = np.abs(x - a.cx) / half
    column = np.sqrt(np.clip(1.0 - d**2, 0, 1))
    phase = 2 * np.pi * (t + 0.2 * t**2) / 0.036
    vertebrae = 0.7 + 0.3 * np.clip(3.0 * np.cos(phase), -1, 1)
    pedicles = np.exp(-(((d - 0.72) / 0.16) ** 2)) * np.clip(np.cos(phase - 0.6), 0, 1)
    return column * vertebrae + 0.6 * pedicles


def _airways(a: _Anatomy, size: int) -> np.ndarray:
    """Trachea down to the carina and the two main bronchi, the right one steeper."""
    carina = (a.cx + 0.004, a.top + 0.31 * a.sy)
    trachea = np.array([(a.cx, 0.0), carina])
    bronchi = [np.array([carina, (a.cx - 0.045 * a.sx, carina[1] + 0.06 * a.sy)]), np.array([carina, (a.cx + 0.06 * a.sx, carina[1] + 0.045 * a.sy)])]
    canvas = _draw(size, [trachea], 0.038) + _draw(size, bronchi, 0.024)
    return _blur(np.minimum(canvas, 1.0), 0.006 * size)


def _vessels(a: _Anatomy, size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    points = np.round((a.vessels[:, :4] * size - 0.5) * _AA).astype(np.int32)
    for (x0, y0, x1, y1), width, weight in zip(points, a.vessels[:, 4], a.vessels[:, 5], strict=True):
        cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), round(255 * weight), max(1, round(width * size)), cv2.LINE_AA, shift=4)
    return _blur(canvas.astype(np.float32) / 255.0, 0.002 * size)


def _rasterise(a: _Anatomy, g: _Geometry, size: int) -> _Scene:
    x = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :]
    y = x.T.copy()
    body = _body(a, x, y, size)
    r2 = _ellipse(x, y, g.heart)
    heart = np.clip((1.0 - np.sqrt(r2)) * size * min(g.heart[2], g.heart[3]) + 0.5, 0, 1)
    solid = 1.0 - np.maximum(heart, _mediastinum(a, x, y, size))
    lungs = _fill(list(g.outlines.values()), size) * solid
    inside = cv2.distanceTransform((lungs > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    depth = lungs * np.clip((inside + 0.5) / (0.07 * size), 0, 1) ** 0.5
    aerated = _fill(list(g.collapsed.values()), size) * solid
    hx, hy, semi_a, semi_b, tilt = g.heart
    half_w = np.sqrt((semi_a * np.cos(tilt)) ** 2 + (semi_b * np.sin(tilt)) ** 2)
    half_h = np.sqrt((semi_a * np.sin(tilt)) ** 2 + (semi_b * np.cos(tilt)) ** 2)
    bottom = min(hy + half_h, a.top + (a.domes[1] + 0.04) * a.sy)
    box = ((hx - half_w) * size, (hy - half_h) * size, 2 * half_w * size, (bottom - hy + half_h) * size)
    return _Scene(size, x, y, body, lungs, depth, aerated, np.clip(lungs - aerated, 0, 1), box)


# --- findings ----------------------------------------------------------------------------------


def _row_span(g: _Geometry, a: _Anatomy, side: int, y: float) -> tuple[float, float]:
    """Medial and lateral x of a lung at height ``y``, the medial edge pushed out by the
    mediastinum and the heart."""
    p0 = g.outlines[side]
    p1 = np.roll(p0, -1, axis=0)
    crossing = (p0[:, 1] - y) * (p1[:, 1] - y) < 0
    if not crossing.any():
        return a.cx + side * 0.1, a.cx + side * 0.2
    f = (y - p0[crossing, 1]) / (p1[crossing, 1] - p0[crossing, 1])
    xs = p0[crossing, 0] + f * (p1[crossing, 0] - p0[crossing, 0])
    medial, lateral = (xs.max(), xs.min()) if side == RIGHT else (xs.min(), xs.max())
    probe = np.linspace(medial, lateral, 64, dtype=np.float32)[None, :]
    row = np.full((1, 1), y, np.float32)
    free = (_ellipse(probe, row, g.heart) > 1.0) & (_mediastinum(a, probe, row, 10_000) < 0.5)
    if free.any():
        medial = float(probe[0, np.argmax(free[0])])
    return medial, lateral


def _lung_point(g: _Geometry, a: _Anatomy, side: int, zone: tuple[float, float], rng: np.random.Generator, margin: float) -> tuple[float, float]:
    """A point ``margin`` inside one lung, ``zone`` giving the height range as fractions from the
    apex (0) to the dome (1)."""
    outline = g.outlines[side]
    apex = outline[:, 1].min()
    dome = a.top + a.domes[0 if side == RIGHT else 1] * a.sy
    y = apex + rng.uniform(*zone) * (dome - apex)
    medial, lateral = _row_span(g, a, side, y)
    inner, outer = medial + side * margin, lateral - side * margin
    u = rng.uniform(0.0, 1.0)
    x = inner + u * (outer - inner) if side * (outer - inner) > 0 else 0.5 * (medial + lateral)
    return float(x), float(y)


def _side(rng: np.random.Generator, right_share: float = 0.5) -> int:
    return RIGHT if rng.random() < right_share else LEFT


def _window(scene: _Scene, cx: float, cy: float, radius: float) -> tuple[slice, slice]:
    size = scene.size
    x0, x1 = max(0, int((cx - radius) * size)), min(size, int(np.ceil((cx + radius) * size)) + 1)
    y0, y1 = max(0, int((cy - radius) * size)), min(size, int(np.ceil((cy + radius) * size)) + 1)
    return slice(y0, y1), slice(x0, x1)


def _box_of(values: np.ndarray, window: tuple[slice, slice], threshold: float) -> tuple[float, float, float, float]:
    rows, cols = np.flatnonzero((values > threshold).any(axis=1)), np.flatnonzero((values > threshold).any(axis=0))
    if len(rows) == 0:
        rows, cols = np.arange(values.shape[0]), np.arange(values.shape[1])
    y0, x0 = window[0].start + rows[0], window[1].start + cols[0]
    return float(x0), float(y0), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def _noise_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random texture with ``cells`` features across, whatever the pixel size."""
    field = cv2.resize(rng.standard_normal((cells, cells)).astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return field / max(float(field.std()), 1e-6)


@dataclass
class _Layers:
    """What the findings add: ``fill`` replaces lung air by fluid or tissue (0..1), ``density``
    adds path length (cm) and ``lucency`` removes it."""

    fill: np.ndarray
    density: np.ndarray
    lucency: np.ndarray


def _round_lesion(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator, diameter: tuple[float, float], lobulation: float, density: tuple[float, float]) -> tuple[float, float, float, float]:
    """A sphere of tissue (its projected thickness), its outline lobulated by low harmonics."""
    side = _side(rng)
    radius = 0.5 * rng.uniform(*diameter)
    cx, cy = _lung_point(g, a, side, (0.15, 0.85), rng, radius)
    amplitudes, phases = rng.uniform(0.0, lobulation, 3), rng.uniform(0.0, 2 * np.pi, 3)
    thickness = 2 * radius * FIELD_OF_VIEW_CM * rng.uniform(*density)
    reach = radius * (1 + amplitudes.sum())
    window = _window(scene, cx, cy, reach)
    dx, dy = scene.x[:, window[1]] - cx, scene.y[window[0], :] - cy
    angle = np.arctan2(dy, dx)
    edge = radius * (1 + sum(amp * np.cos(k * angle + ph) for k, amp, ph in zip((2, 3, 4), amplitudes, phases, strict=True)))
    rho = np.sqrt(dx**2 + dy**2) / edge
    sphere = np.sqrt(np.clip(1.0 - rho**2, 0, 1)) * np.clip((1.0 - rho) * edge * scene.size + 0.5, 0, 1)
    layers.density[window] += thickness * sphere
    size = scene.size
    x0, y0 = max(0.0, (cx - reach) * size), max(0.0, (cy - reach) * size)
    x1, y1 = min(float(size), (cx + reach) * size), min(float(size), (cy + reach) * size)
    return x0, y0, x1 - x0, y1 - y0


def _mass(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Over 3 cm: 0.08-0.14 of a 36 cm field of view, well defined, often lobulated."""
    return _round_lesion(scene, a, g, layers, rng, (0.08, 0.14), 0.07, (0.9, 1.1))


def _nodule(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Under 3 cm and smooth; denser than a mass of its size, as many are partly calcified."""
    return _round_lesion(scene, a, g, layers, rng, (0.02, 0.05), 0.02, (1.3, 2.0))


def _infiltration(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Patchy, ill-defined air-space opacity: thresholded smooth noise under a soft envelope."""
    side = _side(rng)
    radius = rng.uniform(0.05, 0.1)
    cx, cy = _lung_point(g, a, side, (0.1, 0.9), rng, 0.5 * radius)
    strength = rng.uniform(0.3, 0.5)
    window = _window(scene, cx, cy, 1.6 * radius)
    shape = (window[0].stop - window[0].start, window[1].stop - window[1].start)
    texture = _noise_field(rng, shape, 8) + 0.7 * _noise_field(rng, shape, 18)
    dx, dy = scene.x[:, window[1]] - cx, scene.y[window[0], :] - cy
    envelope = np.exp(-1.5 * (dx**2 + dy**2) / radius**2)
    fill = strength * _smoothstep(-0.8, 1.6, texture) * envelope * scene.lungs[window]
    layers.fill[window] = np.maximum(layers.fill[window], fill)
    return _box_of(fill, window, 0.12)


def _pneumonia(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Dense lobar consolidation in a lower or middle zone with air bronchograms; a right middle
    lobe one stops sharply at the horizontal fissure."""
    side = _side(rng, 0.6)
    middle = rng.random() < 0.4
    zone = (0.45, 0.62) if middle else (0.72, 0.9)
    rx, ry = rng.uniform(0.09, 0.14), rng.uniform(0.07, 0.11)
    cx, cy = _lung_point(g, a, side, zone, rng, 0.5 * rx)
    strength = rng.uniform(0.8, 0.95)
    window = _window(scene, cx, cy, 1.4 * max(rx, ry))
    shape = (window[0].stop - window[0].start, window[1].stop - window[1].start)
    dx, dy = scene.x[:, window[1]] - cx, scene.y[window[0], :] - cy
    rho = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) + 0.18 * _noise_field(rng, shape, 6)
    fill = _smoothstep(1.15, 0.7, rho)
    if middle and side == RIGHT:
        fill = fill * np.clip((dy + 0.55 * ry) * scene.size + 0.5, 0, 1)
    start = np.array([cx - side * 0.8 * rx, cy - 0.3 * ry])
    angles = rng.uniform(-0.6, 0.9, 4)
    lengths = rng.uniform(0.5, 0.9, 4) * rx
    bronchi = [np.array([start, start + length * np.array([side * np.cos(t), np.sin(t)])]) for t, length in zip(angles, lengths, strict=True)]
    branches = [np.array([b[1], b[1] + 0.4 * rx * np.array([side * np.cos(t + 0.5), np.sin(t + 0.5)])]) for b, t in zip(bronchi, angles, strict=True)]
    airways = _blur(_draw(scene.size, bronchi + branches, 0.005)[window], 0.002 * scene.size)
    fill = strength * fill * (1.0 - 0.35 * airways) * scene.lungs[window]
    layers.fill[window] = np.maximum(layers.fill[window], fill)
    return _box_of(fill, window, 0.25)


def _effusion(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Fluid layering at a lung base, its surface climbing the lateral wall (the meniscus) and
    blunting the costophrenic angle; small ones fill only the angle."""
    side = _side(rng, 0.55)
    dome = a.top + a.domes[0 if side == RIGHT else 1] * a.sy
    level = dome + rng.uniform(-0.14, -0.01)
    meniscus = rng.uniform(0.04, 0.1)
    medial, lateral = _row_span(g, a, side, dome - 0.02)
    half = slice(0, int(a.cx * scene.size)) if side == RIGHT else slice(int(a.cx * scene.size), scene.size)
    window = (slice(max(0, int((level - meniscus - 0.05) * scene.size)), scene.size), half)
    share = np.clip((scene.x[:, half] - medial) / (lateral - medial), 0, 1)
    surface = level - meniscus * share**2
    fill = rng.uniform(0.88, 0.97) * np.clip((scene.y[window[0], :] - surface) / 0.03, 0, 1) * scene.lungs[window]
    layers.fill[window] = np.maximum(layers.fill[window], fill)
    return _box_of(fill, window, 0.15)


def _atelectasis_shape(a: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    """Volume loss: the hemidiaphragm of the collapsing side rises."""
    side = _side(rng)
    lift = rng.uniform(0.015, 0.03)
    domes = (a.domes[0] - lift, a.domes[1]) if side == RIGHT else (a.domes[0], a.domes[1] - lift)
    return replace(a, domes=domes, volume_loss=side)


def _atelectasis(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A plate-like band in the lower zone, on the side whose dome rose."""
    assert a.volume_loss is not None
    side = a.volume_loss
    length, width = rng.uniform(0.1, 0.18), rng.uniform(0.012, 0.035)
    tilt = rng.uniform(-0.3, 0.3)
    cx, cy = _lung_point(g, a, side, (0.72, 0.9), rng, 0.25 * length)
    window = _window(scene, cx, cy, 0.6 * length)
    dx, dy = scene.x[:, window[1]] - cx, scene.y[window[0], :] - cy
    along, across = dx * np.cos(tilt) + dy * np.sin(tilt), dy * np.cos(tilt) - dx * np.sin(tilt)
    band = np.exp(-((2 * along / length) ** 6) - (2 * across / width) ** 2)
    fill = rng.uniform(0.7, 0.9) * band * scene.lungs[window]
    layers.fill[window] = np.maximum(layers.fill[window], fill)
    return _box_of(fill, window, 0.15)


def _cardiomegaly_shape(a: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    return replace(a, ctr=rng.uniform(0.55, 0.66), heart_right=rng.uniform(0.26, 0.33))


def _cardiomegaly(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    x, y, w, h = scene.heart_box
    x0, y0 = max(0.0, x), max(0.0, y)
    return x0, y0, min(float(scene.size), x + w) - x0, min(float(scene.size), y + h) - y0


def _pneumothorax_shape(a: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    """Air in the pleural space, largest at the apex or along the lateral wall."""
    return replace(a, collapse=(_side(rng), rng.uniform(0.035, 0.085), rng.uniform(np.deg2rad(40), np.deg2rad(85))))


def _pneumothorax(scene: _Scene, a: _Anatomy, g: _Geometry, layers: _Layers, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """The region between the chest wall and the displaced lung edge: more air, no markings (those
    follow the collapsed lung), and the visceral pleura as a thin white line."""
    assert g.pleural_line is not None
    line = _draw(scene.size, [g.pleural_line], 0.004)
    layers.density += rng.uniform(1.5, 2.2) * line * scene.lungs
    layers.lucency += rng.uniform(0.4, 0.8) * scene.pneumothorax * scene.body / a.thickness
    whole = (slice(0, scene.size), slice(0, scene.size))
    return _box_of(np.maximum(scene.pneumothorax, line * scene.lungs), whole, 0.3)


_Lesion = Callable[[_Scene, _Anatomy, _Geometry, _Layers, np.random.Generator], tuple[float, float, float, float]]
_SHAPES: dict[str, Callable[[_Anatomy, np.random.Generator], _Anatomy]] = {
    "Atelectasis": _atelectasis_shape,
    "Cardiomegaly": _cardiomegaly_shape,
    "Pneumothorax": _pneumothorax_shape,
}
_LESIONS: dict[str, _Lesion] = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": _cardiomegaly,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
}


# --- film ---------------------------------------------------------------------------------------


def _attenuation(a: _Anatomy, g: _Geometry, scene: _Scene, layers: _Layers) -> np.ndarray:
    """Total water-equivalent path length through each pixel (cm)."""
    size, x, y = scene.size, scene.x, scene.y
    kept = 1.0 - layers.fill
    air = scene.depth * a.air * kept
    air = air + 0.12 * scene.pneumothorax * np.clip(scene.depth * 4, 0, 1)
    total = scene.body * (1.0 - air)
    texture = cv2.resize(a.texture, (size, size), interpolation=cv2.INTER_CUBIC)
    parenchyma = (2.6 * _vessels(a, size) + 0.35 * texture * scene.depth) * scene.aerated * kept
    hila = sum(np.exp(-(((x - hx) / 0.028) ** 2) - ((y - hy) / 0.045) ** 2) for hx, hy in g.hila.values())
    bubble = np.sqrt(np.clip(1.0 - ((x - a.cx - 0.15 * a.sx) / 0.05) ** 2 - ((y - a.top - (a.domes[1] + 0.075) * a.sy) / 0.03) ** 2, 0, 1))
    bones = 1.8 * _ribs(a, g, size) + 2.4 * _shoulder_girdle(a, x, y, size) + 3.2 * _spine(a, x, y)
    heart = np.sqrt(np.clip(1.0 - _ellipse(x, y, g.heart), 0, 1))
    total = total + parenchyma + 1.8 * hila * (scene.lungs + 0.3) + 1.2 * heart + bones
    total = total - 3.0 * _airways(a, size) - a.bubble * bubble + layers.density - layers.lucency
    return np.maximum(total, 0.0).astype(np.float32)


def _film(attenuation: np.ndarray, thickness: float, rng: np.random.Generator) -> np.ndarray:
    """Grey nearly linear in path length (as the log-domain processing of digital radiography
    gives) up to a soft shoulder at the mediastinum, where detail such as the ribs fades; then a
    faint low-frequency mottle, unsharp masking and fine grain."""
    size = attenuation.shape[0]
    saturation = thickness * rng.uniform(1.0, 1.15)
    gamma = rng.uniform(0.9, 1.15)
    low, high = rng.uniform(8.0, 22.0), rng.uniform(240.0, 252.0)
    mottle = 1.0 + 0.03 * _noise_field(rng, (size, size), 5)
    x = attenuation * mottle / saturation
    grey = low + (high - low) * (x / (1.0 + x**4) ** 0.25) ** gamma
    grey = grey + rng.uniform(0.5, 0.9) * (grey - _blur(grey, 0.015 * size))
    return grey + rng.uniform(0.4, 0.9) * rng.standard_normal((size, size), dtype=np.float32)


def _collimate(image: np.ndarray, body: np.ndarray, rng: np.random.Generator) -> None:
    """Sometimes the collimator blades show as bright unexposed borders; the body ends at them."""
    size = image.shape[0]
    present = rng.random() < 0.35
    widths = (rng.uniform(0.0, 0.035, 4) * rng.integers(0, 2, 4) * size).astype(int)
    level = rng.uniform(205.0, 235.0)
    if not present:
        return
    top, bottom, left, right = widths
    for region in (np.s_[:top, :], np.s_[size - bottom :, :], np.s_[:, :left], np.s_[:, size - right :]):
        image[region] = level
        body[region] = False


def _validate(findings: Sequence[str]) -> list[str]:
    names = [str(name) for name in findings]
    unknown = sorted(set(names) - set(CHEST_FINDINGS))
    if unknown:
        raise ValueError(f"unknown chest finding(s) {unknown}; valid names are {list(CHEST_FINDINGS)} (an empty list is 'No Finding')")
    if len(set(names)) != len(names):
        raise ValueError(f"chest findings listed more than once: {names}")
    return names


def render_chest(size: int, findings: Sequence[str], rng: np.random.Generator) -> ChestRendering:
    """Render one ``size`` x ``size`` radiograph showing ``findings`` (empty: a normal chest), with
    the patient's body mask and one box per finding (x, y, w, h in pixels)."""
    names = _validate(findings)
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    anatomy = _draw_anatomy(rng)
    seeds = rng.integers(0, np.iinfo(np.int64).max, size=len(CHEST_FINDINGS) + 1)
    streams = {name: np.random.default_rng(seed) for name, seed in zip((*CHEST_FINDINGS, "film"), seeds, strict=True)}
    for name in CHEST_FINDINGS:
        if name in names and name in _SHAPES:
            anatomy = _SHAPES[name](anatomy, streams[name])
    geometry = _geometry(anatomy)
    scene = _rasterise(anatomy, geometry, size)
    layers = _Layers(*(np.zeros((size, size), np.float32) for _ in range(3)))
    boxes = {name: _LESIONS[name](scene, anatomy, geometry, layers, streams[name]) for name in CHEST_FINDINGS if name in names}
    grey = _film(_attenuation(anatomy, geometry, scene, layers), anatomy.thickness, streams["film"])
    body_mask = scene.body > 0.02 * anatomy.thickness
    _collimate(grey, body_mask, streams["film"])
    image = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return ChestRendering(image, body_mask, [Finding(name, boxes[name]) for name in names])
