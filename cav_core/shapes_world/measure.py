"""Reading a shapes-world clip back: where the object is, its colour, shape and background.

This is how the evaluation tells motion (the path) from appearance (colour, shape, background)
in generated clips, without any learned judge.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import BACKGROUNDS, COLOURS

_FILL_RATIO = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}


@dataclass(frozen=True)
class ClipReading:
    trajectory: np.ndarray  # [F, 2] centroid (x, y) in pixels; NaN where no object was found
    colour: str
    shape: str
    background: str
    found: float  # fraction of frames with an object


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]], exclude: str | None = None) -> str:
    names = [n for n in palette if n != exclude]
    d = [np.linalg.norm(rgb - np.array(palette[n], np.float32)) for n in names]
    return names[int(np.argmin(d))]


def read_clip(frames: np.ndarray, threshold: float = 60.0) -> ClipReading:
    """``frames`` uint8 or float 0..1 [F, H, W, 3]."""
    x = frames.astype(np.float32) * (255.0 if frames.dtype != np.uint8 else 1.0)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1).reshape(-1, 3)
    bg_rgb = np.median(border, axis=0)
    background = _nearest(bg_rgb, BACKGROUNDS)
    dist = np.linalg.norm(x - bg_rgb, axis=-1)  # [F, H, W]
    traj = np.full((len(x), 2), np.nan, np.float32)
    colours, fills = [], []
    ys, xs = np.mgrid[: x.shape[1], : x.shape[2]]
    for i, d in enumerate(dist):
        mask = d > threshold
        if mask.sum() < 4:
            continue
        traj[i] = (xs[mask].mean(), ys[mask].mean())
        colours.append(x[i][mask].mean(0))
        h = ys[mask].max() - ys[mask].min() + 1
        w = xs[mask].max() - xs[mask].min() + 1
        fills.append(mask.sum() / (h * w))
    found = float(np.isfinite(traj[:, 0]).mean())
    if not colours:
        return ClipReading(traj, "none", "none", background, found)
    colour = _nearest(np.median(np.array(colours), 0), COLOURS, exclude=None)
    fill = float(np.median(fills))
    shape = min(_FILL_RATIO, key=lambda s: abs(_FILL_RATIO[s] - fill))
    return ClipReading(traj, colour, shape, background, found)


def trajectory_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Translation-invariant agreement of two paths [F, 2]: cosine of the centred, flattened
    paths (1 = same shape and direction, 0 = unrelated, -1 = reversed). Missing frames are
    dropped from both."""
    ok = np.isfinite(a[:, 0]) & np.isfinite(b[:, 0])
    if ok.sum() < 3:
        return 0.0
    a, b = a[ok] - a[ok].mean(0), b[ok] - b[ok].mean(0)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-6 or nb < 1e-6:
        return 0.0
    return float((a * b).sum() / (na * nb))


def path_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance in pixels between the centred paths (translation-invariant)."""
    ok = np.isfinite(a[:, 0]) & np.isfinite(b[:, 0])
    if ok.sum() < 2:
        return float("nan")
    a, b = a[ok] - a[ok].mean(0), b[ok] - b[ok].mean(0)
    return float(np.linalg.norm(a - b, axis=1).mean())


def velocity_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine between the frame-to-frame displacement sequences of two paths: the motion itself,
    independent of where it happens. Reversals (a zigzag) count; a straight pan does not match."""
    va, vb = np.diff(a, axis=0), np.diff(b, axis=0)
    ok = np.isfinite(va[:, 0]) & np.isfinite(vb[:, 0])
    if ok.sum() < 2:
        return 0.0
    va, vb = va[ok], vb[ok]
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    if na < 1e-6 or nb < 1e-6:
        return 0.0
    return float((va * vb).sum() / (na * nb))
