"""Synthetic frontal (PA) chest radiographs with the eight ChestX-ray8 findings.

The renderer works in attenuation, not in grey levels: every structure adds (bone, heart, fluid,
tumour) or removes (air in the lungs, trachea and stomach) water-equivalent path length, in cm, and
a model of the detector maps the total to grey. That is what makes the ribs fade over the heart,
an effusion look like the soft tissue below the diaphragm and a pneumothorax look black, as on a
real film, without a grey level to tune per structure.

Geometry is in fractions of the image side (x to the right, y down), so every size shows the same
chest. The patient faces the viewer: the patient's right lung (``_RIGHT``) is on the image's left,
and the heart bulges to the image's right. The anatomy is drawn from ``rng`` first, then each
finding and the film get a stream of their own, so adding a finding to the list leaves the rest
of the image as it was, and ``rng`` is advanced by the same amount whatever the findings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from comcl.datasets.chestxray14 import TASK_FINDINGS

CHEST_FINDINGS: tuple[str, ...] = TASK_FINDINGS

_RIGHT, _LEFT = -1, 1
# The generator writes a 360 mm field of view; lesion thicknesses in cm follow from their diameters.
_FIELD_OF_VIEW_CM = 36.0
_AA = 16  # sub-pixel precision of OpenCV drawing (4 fractional bits)

_Box = tuple[float, float, float, float]
_Window = tuple[slice, slice]


@dataclass(frozen=True)
class Finding:
    name: str  # one of CHEST_FINDINGS
    box: tuple[float, float, float, float]  # x, y, w, h in pixels: the region a radiologist would box


@dataclass
class ChestRendering:
    image: np.ndarray  # size x size uint8 grayscale
    body_mask: np.ndarray  # size x size bool: the patient, not the air around nor a collimated border
    findings: list[Finding]


@dataclass(frozen=True)
class _Anatomy:
    """One patient's drawn proportions, in thorax units (mapped onto the image by ``_to_image``)."""

    cx: float  # midline
    top: float  # image y of the thorax frame's origin
    sx: float  # width and height scales of the thorax
    sy: float
    widths: tuple[float, float]  # extra width scale of each lung (right, left)
    domes: tuple[float, float]  # heights of the diaphragm domes (right, left)
    torso: float  # half-width of the torso
    neck: float  # half-width of the neck
    shoulder: float  # height where the shoulders leave the neck
    thickness: float  # water-equivalent thickness of the chest (cm)
    air: float  # share of that path which is air in the middle of a lung
    ctr: float  # cardiothoracic ratio
    heart_right: float  # share of the heart's width right of the midline
    heart_tilt: float
    heart_aspect: float
    rib_top: float
    rib_step: float
    ribs: np.ndarray  # (side, rib, [height shift, rise, strength])
    clavicle: float
    bubble: float  # gas in the stomach (cm)
    breasts: float  # soft tissue over the lower lungs (cm)
    vessels: np.ndarray  # branch segments, see _branches
    texture: np.ndarray  # lung parenchyma noise
    collapse: tuple[int, float, float] | None = None  # pneumothorax: side, depth, direction
    volume_loss: int | None = None  # atelectasis: the side whose dome rose


@dataclass(frozen=True)
class _Geometry:
    """Outlines in image fractions, derived from an anatomy once its findings have reshaped it."""

    outlines: dict[int, np.ndarray]
    collapsed: dict[int, np.ndarray]
    pleural_line: np.ndarray | None
    heart: tuple[float, float, float, float, float]  # centre x, centre y, semi-axes a and b, tilt
    hila: dict[int, tuple[float, float]]


@dataclass
class _Scene:
    """The rasterised anatomy: pixel coordinates, body thickness and soft masks."""

    size: int
    x: np.ndarray  # (1, size) pixel centres
    y: np.ndarray  # (size, 1)
    body: np.ndarray  # thickness (cm)
    lungs: np.ndarray  # both lungs, outside the heart and mediastinum
    depth: np.ndarray  # how far inside a lung, 0 at its edge to 1
    aerated: np.ndarray  # the lungs as they are (smaller than ``lungs`` after a pneumothorax)
    pneumothorax: np.ndarray  # pleural air: lungs minus aerated
    heart_box: _Box


# --- drawing ------------------------------------------------------------------------------------


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


def _bezier(points: Sequence[tuple[float, float]], n: int) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]


def _to_image(a: _Anatomy, side: int, points: np.ndarray) -> np.ndarray:
    """Thorax units (distance from the midline, height) to image fractions on one side."""
    width = a.widths[0 if side == _RIGHT else 1]
    return np.column_stack([a.cx + side * points[:, 0] * a.sx * width, a.top + points[:, 1] * a.sy])


def _pixels(points: np.ndarray, size: int) -> np.ndarray:
    return np.round((points * size - 0.5) * _AA).astype(np.int32)


def _fill(polygons: Sequence[np.ndarray], size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [_pixels(p, size) for p in polygons], 255, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _draw(size: int, lines: Sequence[np.ndarray], width: float) -> np.ndarray:
    """Anti-aliased polylines ``width`` wide (image fractions) as a float canvas."""
    canvas = np.zeros((size, size), np.uint8)
    cv2.polylines(canvas, [_pixels(line, size) for line in lines], False, 255, max(1, round(width * size)), cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _draw_segments(size: int, segments: np.ndarray) -> np.ndarray:
    """Segments as made by ``_branches``, each with its own width and weight."""
    canvas = np.zeros((size, size), np.uint8)
    points = _pixels(segments[:, :4].reshape(-1, 2), size).reshape(-1, 4)
    for (x0, y0, x1, y1), width, weight in zip(points, segments[:, 4], segments[:, 5], strict=True):
        cv2.line(
            canvas, (int(x0), int(y0)), (int(x1), int(y1)), round(255 * weight), max(1, round(width * size)), cv2.LINE_AA, shift=4
        )
    return canvas.astype(np.float32) / 255.0


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image


def _ellipsoid(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Projected thickness of an ellipsoid, 1 at its centre."""
    return np.sqrt(np.clip(1.0 - ((x - centre[0]) / radii[0]) ** 2 - ((y - centre[1]) / radii[1]) ** 2, 0, 1))


def _gaussian(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    return np.exp(-(((x - centre[0]) / radii[0]) ** 2) - ((y - centre[1]) / radii[1]) ** 2)


def _noise_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random texture with ``cells`` features across, whatever the pixel size."""
    field = cv2.resize(
        rng.standard_normal((cells, cells)).astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC
    )
    return field / max(float(field.std()), 1e-6)


# --- anatomy ------------------------------------------------------------------------------------


def _branches(
    rng: np.random.Generator, start: np.ndarray, side: int, angles: np.ndarray, length: float, width: float, levels: int
) -> np.ndarray:
    """A branching tree (vessels, bronchi) as rows (x0, y0, x1, y1, width, weight); angles count
    from the lateral direction, positive downwards. Each generation is shorter, thinner and
    fainter, which is how lung markings fade towards the periphery."""
    tips = np.broadcast_to(start, (len(angles), 2)).astype(np.float64)
    weight, segments = 1.0, []
    for _ in range(levels):
        angles = angles + rng.normal(0.0, 0.18, len(angles))
        lengths = length * rng.uniform(0.6, 1.3, len(angles))
        ends = tips + np.column_stack([side * np.cos(angles), np.sin(angles)]) * lengths[:, None]
        segments.append(np.column_stack([tips, ends, np.full(len(angles), width), np.full(len(angles), weight)]))
        spread = rng.uniform(0.15, 0.5, (len(angles), 2)) * np.array([-1.0, 1.0])
        angles = (angles[:, None] + spread).ravel()
        tips = np.repeat(ends, 2, axis=0)
        length, width, weight = 0.8 * length, 0.72 * width, 0.82 * weight
    return np.vstack(segments)


def _hila(cx: float, top: float, sx: float, sy: float) -> dict[int, tuple[float, float]]:
    """The left hilum sits higher than the right, as on a normal film."""
    return {_RIGHT: (cx - 0.092 * sx, top + 0.425 * sy), _LEFT: (cx + 0.088 * sx, top + 0.395 * sy)}


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    cx, top = 0.5 + rng.normal(0.0, 0.012), rng.uniform(-0.03, 0.02)
    sx, sy = rng.uniform(0.93, 1.04), rng.uniform(0.93, 1.04)
    dome_right = rng.uniform(0.6, 0.66)
    hila = _hila(cx, top, sx, sy)
    trees = []
    for side in (_RIGHT, _LEFT):
        starts = hila[side] + rng.normal(0.0, 0.01, (6, 2))
        trees.append(_branches(rng, starts, side, np.sort(rng.uniform(-2.0, 1.65, 6)), 0.05, 0.009, 6))
    return _Anatomy(
        cx=cx,
        top=top,
        sx=sx,
        sy=sy,
        widths=(rng.uniform(0.97, 1.03), rng.uniform(0.97, 1.03)),
        domes=(dome_right, dome_right + rng.uniform(0.012, 0.035)),
        torso=rng.uniform(0.43, 0.46),
        neck=rng.uniform(0.11, 0.14),
        shoulder=rng.uniform(0.02, 0.06),
        thickness=rng.uniform(19.0, 23.0),
        air=rng.uniform(0.62, 0.7),
        ctr=rng.uniform(0.38, 0.46),
        heart_right=rng.uniform(0.32, 0.4),
        heart_tilt=rng.uniform(0.35, 0.6),
        heart_aspect=rng.uniform(0.72, 0.84),
        rib_top=rng.uniform(0.1, 0.125),
        rib_step=rng.uniform(0.054, 0.06),
        clavicle=rng.uniform(0.165, 0.195),
        bubble=rng.uniform(0.0, 3.5),
        vessels=np.vstack(trees),
        texture=rng.standard_normal((90, 90)).astype(np.float32),
        breasts=rng.uniform(0.0, 3.0),
        ribs=np.stack([rng.normal(0.0, 0.004, (2, 10)), rng.uniform(0.75, 1.25, (2, 10)), rng.uniform(0.85, 1.1, (2, 10))], -1),
    )


def _lung_outline(a: _Anatomy, side: int) -> np.ndarray:
    """Closed outline from the medial base along the diaphragm dome, up the lateral wall, over the
    apex and down the medial border; the costophrenic angle stays a corner."""
    dome = a.domes[0 if side == _RIGHT else 1]
    cp, base = dome + 0.115, dome + 0.05
    diaphragm = [(0.046, base), (0.09, dome + 0.016), (0.17, dome), (0.25, dome + 0.02), (0.32, dome + 0.058), (0.375, cp)]
    wall = [(0.375, cp), (0.384, cp - 0.11), (0.374, 0.5), (0.347, 0.36), (0.302, 0.25), (0.245, 0.17), (0.185, 0.128)]
    wall += [(0.13, 0.117), (0.085, 0.14), (0.06, 0.2), (0.05, 0.32), (0.046, 0.45), (0.046, base)]
    return _to_image(a, side, np.vstack([_spline(diaphragm), _spline(wall)[1:-1]]))


def _heart(a: _Anatomy, outlines: dict[int, np.ndarray]) -> tuple[float, float, float, float, float]:
    """A tilted ellipse whose width over the thorax's inner width is ``ctr``, sitting on the left
    hemidiaphragm with its lower part hidden in the abdomen's density."""
    thorax = outlines[_LEFT][:, 0].max() - outlines[_RIGHT][:, 0].min()
    width = a.ctr * thorax
    cos, sin = np.cos(a.heart_tilt), np.sin(a.heart_tilt)
    semi_a = 0.5 * width / np.sqrt(cos**2 + (a.heart_aspect * sin) ** 2)
    semi_b = a.heart_aspect * semi_a
    half_height = np.sqrt((semi_a * sin) ** 2 + (semi_b * cos) ** 2)
    base = a.top + (a.domes[1] + 0.035) * a.sy
    return a.cx + width * (0.5 - a.heart_right), base - 0.5 * half_height, semi_a, semi_b, a.heart_tilt


def _collapse(
    outline: np.ndarray, hilum: tuple[float, float], side: int, depth: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pull the apical and lateral outline towards the hilum, as a lung shrinks away from the chest
    wall; returns the new outline and its displaced stretch (where the pleural line shows)."""
    offset = outline - np.asarray(hilum)
    unit = offset / np.linalg.norm(offset, axis=1, keepdims=True)
    weight = np.clip(unit @ np.array([side * np.cos(angle), -np.sin(angle)]), 0.0, 1.0) ** 2
    moved = outline - depth * weight[:, None] * unit
    shown = np.flatnonzero(weight > 0.08)
    return moved, moved[shown.min() : shown.max() + 1]


def _geometry(a: _Anatomy) -> _Geometry:
    outlines = {side: _lung_outline(a, side) for side in (_RIGHT, _LEFT)}
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


def _mediastinal_borders(a: _Anatomy, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image x of the mediastinum's right border (superior vena cava) and left border (aortic knob,
    then pulmonary trunk) at heights ``y``."""
    t = (y - a.top) / a.sy
    right = 0.058 + 0.02 * _smoothstep(0.2, 0.36, t)
    left = 0.052 + 0.04 * np.exp(-(((t - 0.28) / 0.04) ** 2)) + 0.04 * _smoothstep(0.26, 0.4, t)
    return a.cx - right * a.sx, a.cx + left * a.sx


def _mediastinum(a: _Anatomy, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """The mediastinum as a band with a one-pixel soft edge."""
    right, left = _mediastinal_borders(a, y)
    return np.clip((left - x) * size + 0.5, 0, 1) * np.clip((x - right) * size + 0.5, 0, 1)


def _body(a: _Anatomy, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Water-equivalent thickness of the torso under a neck and sloping shoulders, the arms filling
    the top corners. The cross-section is a superellipse: the chest wall lateral to the lungs is
    thick muscle and bone, brighter than the lungs, and the skin line is sharp."""
    t = (y - a.top) / a.sy
    d = np.abs(x - a.cx) / a.sx
    half = a.torso * (0.93 + 0.1 * _smoothstep(0.2, 0.7, t) - 0.04 * _smoothstep(0.8, 1.1, t)) + 0.12 * _smoothstep(0.32, 0.1, t)
    over = d - a.neck
    shoulder_line = a.shoulder + 0.15 * (np.sqrt(over**2 + 0.06**2) + over) + 1.5 * np.maximum(d - 0.4, 0) ** 2
    shoulder_line = shoulder_line - 0.4 * _smoothstep(a.neck + 0.05, a.neck - 0.02, d)
    edge = 0.5 * size
    inside = np.clip((t - shoulder_line) * edge + 0.5, 0, 1) * np.clip((half - d) * edge + 0.5, 0, 1)
    profile = np.clip(1.0 - (d / half) ** 3, 0.0, 1.0) ** (1 / 3)
    neck = 0.55 + 0.45 * _smoothstep(a.shoulder - 0.04, a.shoulder + 0.1, t)
    return (a.thickness * (0.9 + 0.15 * np.clip(t, 0, 1)) * neck * profile * inside).astype(np.float32)


def _rib_paths(a: _Anatomy, g: _Geometry, side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each rib of one side as one path with a brightness per segment: the posterior arc rises from
    the spine and turns down at the chest wall, then the fainter anterior part slopes down towards
    the sternum and fades where the (invisible) costal cartilage begins; the lowest ribs end at the
    wall."""
    k = 0 if side == _RIGHT else 1
    outline = g.outlines[side]
    wall = np.abs(outline[:, 0] - a.cx) / (a.sx * a.widths[k])
    heights = (outline[:, 1] - a.top) / a.sy
    paths = []
    for i, (shift, rise, strength) in enumerate(a.ribs[k]):
        y0 = a.rib_top + i * a.rib_step * (1 + 0.025 * i) + shift
        near = np.abs(heights - (y0 + 0.03)) < 0.03
        reach = (wall[near].max() if near.any() else wall.max()) + 0.012
        back = _bezier([(0.03, y0), (0.2 * reach, y0 - 0.06 * rise), (0.78 * reach, y0 - 0.06 * rise), (reach, y0 + 0.045)], 20)
        front = _bezier(
            [(reach, y0 + 0.045), (reach + 0.012, y0 + 0.1), (0.75 * reach, y0 + 0.16), (0.4 * reach, y0 + 0.185)], 16
        )
        along = np.linspace(0.0, 1.0, len(back) + len(front) - 2)
        fade = np.interp(along, [0.0, 0.5, 0.62, 0.85, 1.0], [1.0, 0.8, 0.35, 0.25, 0.0] if i < 7 else [1.0, 0.8, 0.0, 0.0, 0.0])
        paths.append((_to_image(a, side, np.vstack([back, front[1:]])), strength * fade))
    return paths


def _ribs(a: _Anatomy, g: _Geometry, size: int) -> np.ndarray:
    """Ribs drawn segment by segment so the brightness can change along them, with a narrower band
    just above the middle taken out: the cortex, brightest at the lower margin, shows."""
    outer, inner = np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
    width = 0.026 * a.sy
    thick, thin = max(1, round(width * size)), max(1, round(0.5 * width * size))
    lift = np.array([0, round(-0.12 * width * size * _AA)])
    for side in (_RIGHT, _LEFT):
        for path, brightness in _rib_paths(a, g, side):
            points = _pixels(path, size)
            for p0, p1, value in zip(points[:-1], points[1:], brightness, strict=True):
                if value > 0.01:
                    colour = min(255, round(255 * value))
                    cv2.line(outer, tuple(map(int, p0)), tuple(map(int, p1)), colour, thick, cv2.LINE_AA, shift=4)
                    cv2.line(inner, tuple(map(int, p0 + lift)), tuple(map(int, p1 + lift)), colour, thin, cv2.LINE_AA, shift=4)
    return _blur((outer.astype(np.float32) - 0.35 * inner.astype(np.float32)) / 255.0, 0.0012 * size)


def _clavicles(a: _Anatomy, size: int) -> np.ndarray:
    """S-shaped bars from the sternal notch up to the acromion, stouter at the sternal end."""
    medial, lateral = [], []
    c = a.clavicle
    for side in (_RIGHT, _LEFT):
        curve = _to_image(
            a, side, _spline([(0.03, c + 0.05), (0.12, c + 0.025), (0.24, c - 0.01), (0.33, c - 0.03), (0.4, c - 0.035)])
        )
        medial.append(curve[: len(curve) // 2 + 1])
        lateral.append(curve[len(curve) // 2 :])
    shaft = np.maximum(_draw(size, medial, 0.032), _draw(size, lateral, 0.025))
    marrow = np.maximum(_draw(size, medial, 0.014), _draw(size, lateral, 0.01))
    return _blur(shaft - 0.3 * marrow, 0.0015 * size)


def _spine(a: _Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vertebral bodies separated by discs, with paired pedicles, growing down the column."""
    t = (y - a.top) / a.sy
    d = np.abs(x - a.cx) / (0.03 * a.sx * (1 + 0.2 * t))
    column = np.sqrt(np.clip(1.0 - d**2, 0, 1))
    phase = 2 * np.pi * (t + 0.2 * t**2) / 0.036
    vertebrae = 0.92 + 0.08 * np.clip(2.0 * np.cos(phase), -1, 1)
    pedicles = np.exp(-(((d - 0.72) / 0.16) ** 2)) * np.clip(np.cos(phase - 0.6), 0, 1)
    return column * vertebrae + 0.35 * pedicles


def _airways(a: _Anatomy, size: int) -> np.ndarray:
    """Trachea down to the carina and the two main bronchi, the right one steeper."""
    carina = (a.cx + 0.004, a.top + 0.31 * a.sy)
    trachea = np.array([(a.cx, 0.0), carina])
    right = np.array([carina, (a.cx - 0.045 * a.sx, carina[1] + 0.06 * a.sy)])
    left = np.array([carina, (a.cx + 0.06 * a.sx, carina[1] + 0.045 * a.sy)])
    return _blur(np.minimum(_draw(size, [trachea], 0.038) + _draw(size, [right, left], 0.024), 1.0), 0.006 * size)


def _heart_box(a: _Anatomy, g: _Geometry, size: int) -> _Box:
    """The heart's extent, down to where it sinks into the left hemidiaphragm."""
    hx, hy, semi_a, semi_b, tilt = g.heart
    half_w = np.sqrt((semi_a * np.cos(tilt)) ** 2 + (semi_b * np.sin(tilt)) ** 2)
    half_h = np.sqrt((semi_a * np.sin(tilt)) ** 2 + (semi_b * np.cos(tilt)) ** 2)
    bottom = min(hy + half_h, a.top + (a.domes[1] + 0.04) * a.sy)
    return (hx - half_w) * size, (hy - half_h) * size, 2 * half_w * size, (bottom - hy + half_h) * size


def _rasterise(a: _Anatomy, g: _Geometry, size: int) -> _Scene:
    x = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :]
    y = x.T.copy()
    heart = np.clip((1.0 - np.sqrt(_ellipse(x, y, g.heart))) * size * min(g.heart[2], g.heart[3]) + 0.5, 0, 1)
    # Blurring and re-thresholding the heart with the mediastinum rounds the corners where they meet.
    sigma = 0.008 * size
    solid = 1.0 - np.clip((_blur(np.maximum(heart, _mediastinum(a, x, y, size)), sigma) - 0.5) * 2.5 * sigma + 0.5, 0, 1)
    lungs = _fill(list(g.outlines.values()), size) * solid
    inside = cv2.distanceTransform((lungs > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    depth = lungs * np.clip((inside + 0.5) / (0.07 * size), 0, 1) ** 0.5
    aerated = _fill(list(g.collapsed.values()), size) * solid
    return _Scene(size, x, y, _body(a, x, y, size), lungs, depth, aerated, np.clip(lungs - aerated, 0, 1), _heart_box(a, g, size))


# --- findings ----------------------------------------------------------------------------------


@dataclass
class _Layers:
    """What the findings add: ``fill`` replaces lung air by fluid or tissue (0..1), ``density``
    adds path length (cm) and ``lucency`` removes it."""

    fill: np.ndarray
    density: np.ndarray
    lucency: np.ndarray


@dataclass
class _Canvas:
    """What a finding is drawn on: the patient, the rasterised anatomy and the layers to add to."""

    anatomy: _Anatomy
    geometry: _Geometry
    scene: _Scene
    layers: _Layers


def _row_span(c: _Canvas, side: int, y: float) -> tuple[float, float]:
    """Medial and lateral x of a lung at height ``y``, the medial edge pushed out by the
    mediastinum and the heart."""
    p0 = c.geometry.outlines[side]
    p1 = np.roll(p0, -1, axis=0)
    crossing = (p0[:, 1] - y) * (p1[:, 1] - y) < 0
    f = (y - p0[crossing, 1]) / (p1[crossing, 1] - p0[crossing, 1])
    xs = p0[crossing, 0] + f * (p1[crossing, 0] - p0[crossing, 0])
    medial, lateral = (xs.max(), xs.min()) if side == _RIGHT else (xs.min(), xs.max())
    probe = np.linspace(medial, lateral, 64)
    height = np.asarray(y, dtype=np.float64)  # 0-d: the helpers take arrays of heights, and give float64 scalars for it
    right, left = _mediastinal_borders(c.anatomy, height)
    free = (_ellipse(probe, height, c.geometry.heart) > 1.0) & ((probe < right) | (probe > left))
    if free.any():
        medial = float(probe[np.argmax(free)])
    return medial, lateral


def _dome(a: _Anatomy, side: int) -> float:
    return a.top + a.domes[0 if side == _RIGHT else 1] * a.sy


def _lung_point(c: _Canvas, side: int, zone: tuple[float, float], rng: np.random.Generator, margin: float) -> tuple[float, float]:
    """A point ``margin`` inside one lung, ``zone`` giving the height range as fractions from the
    apex (0) to the dome (1)."""
    apex = c.geometry.outlines[side][:, 1].min()
    y = apex + rng.uniform(*zone) * (_dome(c.anatomy, side) - apex)
    medial, lateral = _row_span(c, side, y)
    inner, outer = medial + side * margin, lateral - side * margin
    u = rng.uniform(0.0, 1.0)
    x = inner + u * (outer - inner) if side * (outer - inner) > 0 else 0.5 * (medial + lateral)
    return float(x), float(y)


def _side(rng: np.random.Generator, right_share: float = 0.5) -> int:
    return _RIGHT if rng.random() < right_share else _LEFT


def _window(size: int, cx: float, cy: float, radius: float) -> _Window:
    x0, x1 = max(0, int((cx - radius) * size)), min(size, int(np.ceil((cx + radius) * size)) + 1)
    y0, y1 = max(0, int((cy - radius) * size)), min(size, int(np.ceil((cy + radius) * size)) + 1)
    return slice(y0, y1), slice(x0, x1)


def _offsets(c: _Canvas, window: _Window, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    return c.scene.x[:, window[1]] - cx, c.scene.y[window[0], :] - cy


def _shape(window: _Window) -> tuple[int, int]:
    return window[0].stop - window[0].start, window[1].stop - window[1].start


def _clip_box(box: _Box, size: int) -> _Box:
    x, y, w, h = box
    x0, y0 = max(0.0, float(x)), max(0.0, float(y))
    return x0, y0, min(float(size), float(x + w)) - x0, min(float(size), float(y + h)) - y0


def _box_of(values: np.ndarray, window: _Window, threshold: float) -> _Box:
    """Bounding box of ``values > threshold`` in a window, in image pixels; the whole window when a
    lesion came out fainter than the threshold everywhere (it still changed those pixels)."""
    rows, cols = np.flatnonzero((values > threshold).any(axis=1)), np.flatnonzero((values > threshold).any(axis=0))
    if len(rows) == 0:
        rows, cols = np.arange(values.shape[0]), np.arange(values.shape[1])
    y0, x0 = window[0].start + rows[0], window[1].start + cols[0]
    return float(x0), float(y0), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def _add_fill(c: _Canvas, window: _Window, fill: np.ndarray) -> None:
    """Overlapping opacities do not add up: a lung holds no more than its air's worth."""
    c.layers.fill[window] = np.maximum(c.layers.fill[window], fill)


def _round_lesion(
    c: _Canvas, rng: np.random.Generator, diameter: tuple[float, float], lobulation: float, density: tuple[float, float]
) -> _Box:
    """A sphere of tissue (its projected thickness), its outline lobulated by low harmonics."""
    side = _side(rng)
    radius = 0.5 * rng.uniform(*diameter)
    cx, cy = _lung_point(c, side, (0.15, 0.85), rng, radius)
    amplitudes, phases = rng.uniform(0.0, lobulation, 3), rng.uniform(0.0, 2 * np.pi, 3)
    thickness = 2 * radius * _FIELD_OF_VIEW_CM * rng.uniform(*density)
    reach = radius * (1 + amplitudes.sum())
    size = c.scene.size
    window = _window(size, cx, cy, reach)
    dx, dy = _offsets(c, window, cx, cy)
    angle = np.arctan2(dy, dx)
    edge = radius * (1 + sum(amp * np.cos(k * angle + ph) for k, amp, ph in zip((2, 3, 4), amplitudes, phases, strict=True)))
    rho = np.sqrt(dx**2 + dy**2) / edge
    c.layers.density[window] += thickness * np.sqrt(np.clip(1.0 - rho**2, 0, 1)) * np.clip((1.0 - rho) * edge * size + 0.5, 0, 1)
    return _clip_box(((cx - reach) * size, (cy - reach) * size, 2 * reach * size, 2 * reach * size), size)


def _mass(c: _Canvas, rng: np.random.Generator) -> _Box:
    """Over 3 cm: 0.08-0.14 of a 36 cm field of view, well defined, often lobulated."""
    return _round_lesion(c, rng, (0.08, 0.14), 0.07, (0.9, 1.1))


def _nodule(c: _Canvas, rng: np.random.Generator) -> _Box:
    """Under 3 cm and smooth; denser than a mass of its size, as many are partly calcified."""
    return _round_lesion(c, rng, (0.02, 0.05), 0.02, (1.3, 2.0))


def _infiltration(c: _Canvas, rng: np.random.Generator) -> _Box:
    """Patchy, ill-defined air-space opacity: thresholded smooth noise under a soft envelope."""
    side = _side(rng)
    radius = rng.uniform(0.06, 0.11)
    cx, cy = _lung_point(c, side, (0.2, 0.9), rng, 0.5 * radius)
    strength = rng.uniform(0.35, 0.6)
    window = _window(c.scene.size, cx, cy, 1.6 * radius)
    texture = _blur(_noise_field(rng, _shape(window), 6) + 0.7 * _noise_field(rng, _shape(window), 11), 0.004 * c.scene.size)
    dx, dy = _offsets(c, window, cx, cy)
    envelope = np.exp(-1.5 * (dx**2 + dy**2) / radius**2)
    fill = strength * _smoothstep(-0.8, 1.6, texture) * envelope * c.scene.lungs[window]
    _add_fill(c, window, fill)
    return _box_of(fill, window, 0.12)


def _pneumonia(c: _Canvas, rng: np.random.Generator) -> _Box:
    """Dense lobar consolidation in a lower or middle zone with air bronchograms; a right middle
    lobe one stops sharply at the horizontal fissure."""
    side = _side(rng, 0.6)
    middle = rng.random() < 0.4
    rx, ry = rng.uniform(0.09, 0.14), rng.uniform(0.07, 0.11)
    cx, cy = _lung_point(c, side, (0.45, 0.62) if middle else (0.72, 0.9), rng, 0.5 * rx)
    strength = rng.uniform(0.85, 0.95)
    size = c.scene.size
    window = _window(size, cx, cy, 1.4 * max(rx, ry))
    dx, dy = _offsets(c, window, cx, cy)
    fill = _smoothstep(1.25, 0.6, np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) + 0.22 * _noise_field(rng, _shape(window), 6))
    if middle and side == _RIGHT:
        fill = fill * np.clip((dy + 0.55 * ry) * size + 0.5, 0, 1)
    bronchi = _branches(
        rng, np.array([cx - side * 0.7 * rx, cy - 0.4 * ry]), side, rng.uniform(-0.3, 0.9, 2), 0.35 * rx, 0.006, 3
    )
    airways = _blur(_draw_segments(size, bronchi)[window], 0.0015 * size)
    texture = 0.9 + 0.1 * _noise_field(rng, _shape(window), 9)
    fill = strength * fill * texture * (1.0 - 0.3 * airways * fill) * c.scene.lungs[window]
    _add_fill(c, window, fill)
    return _box_of(fill, window, 0.25)


def _effusion(c: _Canvas, rng: np.random.Generator) -> _Box:
    """Fluid layering at a lung base, its surface climbing the lateral wall (the meniscus) and
    blunting the costophrenic angle; small ones fill only the angle."""
    side = _side(rng, 0.55)
    dome = _dome(c.anatomy, side)
    level = dome + rng.uniform(-0.12, 0.0)
    meniscus = rng.uniform(0.05, 0.12)
    strength = rng.uniform(0.88, 0.97)
    medial, lateral = _row_span(c, side, dome - 0.02)
    size, midline = c.scene.size, int(c.anatomy.cx * c.scene.size)
    rows = slice(max(0, int((level - meniscus - 0.05) * size)), size)
    window = (rows, slice(0, midline) if side == _RIGHT else slice(midline, size))
    surface = level - meniscus * np.clip((c.scene.x[:, window[1]] - medial) / (lateral - medial), 0, 1) ** 3
    fill = strength * _smoothstep(0.0, 0.05, c.scene.y[window[0], :] - surface) * c.scene.lungs[window]
    _add_fill(c, window, fill)
    return _box_of(fill, window, 0.15)


def _atelectasis_shape(a: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    """Volume loss: the hemidiaphragm of the collapsing side rises."""
    side = _side(rng)
    lift = rng.uniform(0.01, 0.025)
    domes = (a.domes[0] - lift, a.domes[1]) if side == _RIGHT else (a.domes[0], a.domes[1] - lift)
    return replace(a, domes=domes, volume_loss=side)


def _atelectasis(c: _Canvas, rng: np.random.Generator) -> _Box:
    """A plate-like band in the lower zone, on the side whose dome rose."""
    assert c.anatomy.volume_loss is not None
    length, width = rng.uniform(0.1, 0.18), rng.uniform(0.015, 0.035)
    tilt = rng.uniform(-0.3, 0.3)
    cx, cy = _lung_point(c, c.anatomy.volume_loss, (0.72, 0.9), rng, 0.25 * length)
    window = _window(c.scene.size, cx, cy, 0.6 * length)
    dx, dy = _offsets(c, window, cx, cy)
    along, across = dx * np.cos(tilt) + dy * np.sin(tilt), dy * np.cos(tilt) - dx * np.sin(tilt)
    band = np.exp(-((2 * along / length) ** 6) - (2 * across / width) ** 2)
    fill = rng.uniform(0.5, 0.75) * band * c.scene.lungs[window]
    _add_fill(c, window, fill)
    return _box_of(fill, window, 0.15)


def _cardiomegaly_shape(a: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    """An enlarged heart grows mostly to the left and down, so it is also flatter and more tilted."""
    ctr, right = rng.uniform(0.56, 0.68), rng.uniform(0.26, 0.33)
    return replace(a, ctr=ctr, heart_right=right, heart_aspect=rng.uniform(0.62, 0.72), heart_tilt=rng.uniform(0.5, 0.7))


def _cardiomegaly(c: _Canvas, rng: np.random.Generator) -> _Box:
    return _clip_box(c.scene.heart_box, c.scene.size)


def _pneumothorax_shape(a: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    """Air in the pleural space, deepest at the apex or along the lateral wall."""
    return replace(a, collapse=(_side(rng), rng.uniform(0.035, 0.085), rng.uniform(np.deg2rad(40), np.deg2rad(85))))


def _pneumothorax(c: _Canvas, rng: np.random.Generator) -> _Box:
    """The region between the chest wall and the displaced lung edge: more air, no markings (those
    follow the collapsed lung), and the visceral pleura as a thin white line."""
    assert c.geometry.pleural_line is not None
    scene = c.scene
    line = _draw(scene.size, [c.geometry.pleural_line], 0.004) * scene.lungs
    c.layers.density += rng.uniform(1.5, 2.2) * line
    c.layers.lucency += rng.uniform(0.6, 1.0) * scene.pneumothorax * scene.body / c.anatomy.thickness
    return _box_of(np.maximum(scene.pneumothorax, line), (slice(0, scene.size), slice(0, scene.size)), 0.3)


# Findings that reshape the anatomy itself, before it is rasterised.
_SHAPES: dict[str, Callable[[_Anatomy, np.random.Generator], _Anatomy]] = {
    "Atelectasis": _atelectasis_shape,
    "Cardiomegaly": _cardiomegaly_shape,
    "Pneumothorax": _pneumothorax_shape,
}
_LESIONS: dict[str, Callable[[_Canvas, np.random.Generator], _Box]] = {
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


def _lung_air(c: _Canvas) -> np.ndarray:
    """Share of the path through the body that is air: less towards the apices, where the chest is
    narrow, none where a finding filled the lung, more where air sits in the pleural space."""
    a, scene = c.anatomy, c.scene
    apex = 0.7 + 0.3 * _smoothstep(0.1, 0.32, (scene.y - a.top) / a.sy)
    return scene.depth * a.air * apex * (1.0 - c.layers.fill) + 0.15 * scene.pneumothorax * np.clip(scene.depth * 4, 0, 1)


def _markings(c: _Canvas) -> np.ndarray:
    """Vessels and a faint parenchymal texture, only in aerated lung that no finding filled."""
    a, size = c.anatomy, c.scene.size
    vessels = _blur(_draw_segments(size, a.vessels), 0.002 * size)
    coarse = cv2.resize(a.texture[:20, :20], (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(a.texture, (size, size), interpolation=cv2.INTER_CUBIC)
    return (2.6 * vessels + (0.35 * coarse + 0.3 * fine) * c.scene.depth) * c.scene.aerated * (1.0 - c.layers.fill)


def _attenuation(c: _Canvas) -> np.ndarray:
    """Total water-equivalent path length through each pixel (cm)."""
    a, g, scene, layers = c.anatomy, c.geometry, c.scene, c.layers
    size, x, y = scene.size, scene.x, scene.y
    hila = sum(_gaussian(x, y, hilum, (0.028, 0.045)) for hilum in g.hila.values())
    bubble = _ellipsoid(x, y, (a.cx + 0.15 * a.sx, a.top + (a.domes[1] + 0.075) * a.sy), (0.05, 0.03))
    breasts = sum(_gaussian(x, y, (a.cx + side * 0.22 * a.sx, a.top + 0.68 * a.sy), (0.13, 0.1)) for side in (_RIGHT, _LEFT))
    heart = np.sqrt(np.clip(1.0 - _ellipse(x, y, g.heart), 0, 1))
    bones = 1.2 * _ribs(a, g, size) + 2.6 * _clavicles(a, size) + 1.6 * _spine(a, x, y)
    total = scene.body * (1.0 - _lung_air(c)) + _markings(c) + 1.8 * hila * (scene.lungs + 0.3) + 1.2 * heart + bones
    total = total + a.breasts * breasts * scene.body / a.thickness - 3.0 * _airways(a, size) - a.bubble * bubble
    return np.maximum(total + layers.density - layers.lucency, 0.0).astype(np.float32)


def _film(attenuation: np.ndarray, thickness: float, rng: np.random.Generator) -> np.ndarray:
    """Detector and processing: primary transmission plus broad scatter, then grey linear in log
    exposure (as digital radiography displays it) with a soft shoulder. Scatter dominates behind
    the mediastinum and the liver, which is why detail such as the ribs fades there. Then a faint
    low-frequency mottle, unsharp masking and fine grain."""
    size = attenuation.shape[0]
    length = thickness / rng.uniform(4.2, 5.0)
    scatter = rng.uniform(0.06, 0.12)
    gamma = rng.uniform(0.9, 1.1)
    window = thickness / length * rng.uniform(0.95, 1.08)
    low, high = rng.uniform(8.0, 22.0), rng.uniform(240.0, 252.0)
    mottle = 1.0 + 0.03 * _noise_field(rng, (size, size), 5)
    primary = np.exp(-attenuation * mottle / length)
    coarse = cv2.resize(primary, (64, 64), interpolation=cv2.INTER_AREA)
    spread = cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 6.0), (size, size), interpolation=cv2.INTER_LINEAR)
    x = np.maximum(-np.log(primary + scatter * spread), 0.0) / window
    grey = low + (high - low) * (x / (1.0 + x**4) ** 0.25) ** gamma
    grey = grey + rng.uniform(0.5, 0.9) * (grey - _blur(grey, 0.015 * size))
    return grey + rng.uniform(0.4, 0.9) * rng.standard_normal((size, size), dtype=np.float32)


def _collimate(image: np.ndarray, body: np.ndarray, rng: np.random.Generator) -> None:
    """Sometimes the collimator blades show as bright unexposed borders; the body ends at them.
    The values are drawn either way, so that the stream does not depend on the outcome."""
    size = image.shape[0]
    present = rng.random() < 0.35
    top, bottom, left, right = (rng.uniform(0.0, 0.035, 4) * rng.integers(0, 2, 4) * size).astype(int)
    level = rng.uniform(205.0, 235.0)
    if present:
        for region in (np.s_[:top, :], np.s_[size - bottom :, :], np.s_[:, :left], np.s_[:, size - right :]):
            image[region] = level
            body[region] = False


def _validate(findings: Sequence[str]) -> list[str]:
    names = [str(name) for name in findings]
    unknown = sorted(set(names) - set(CHEST_FINDINGS))
    if unknown:
        raise ValueError(
            f"unknown chest finding(s) {unknown}; valid names are {list(CHEST_FINDINGS)} (an empty list is 'No Finding')"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"chest findings listed more than once: {names}")
    return names


def render_chest(size: int, findings: Sequence[str], rng: np.random.Generator) -> ChestRendering:
    """Render one ``size`` x ``size`` radiograph showing ``findings`` (empty: a normal chest), with
    the patient's body mask and one box per finding (x, y, w, h in pixels), in the order asked."""
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
    canvas = _Canvas(anatomy, geometry, scene, _Layers(*(np.zeros((size, size), np.float32) for _ in range(3))))
    boxes = {name: _LESIONS[name](canvas, streams[name]) for name in CHEST_FINDINGS if name in names}
    grey = _film(_attenuation(canvas), anatomy.thickness, streams["film"])
    body_mask = scene.body > 0.02 * anatomy.thickness
    _collimate(grey, body_mask, streams["film"])
    image = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return ChestRendering(image, body_mask, [Finding(name, boxes[name]) for name in names])
