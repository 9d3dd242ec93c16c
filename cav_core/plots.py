"""Small pictures the engine hands to users: loss curves, side-by-side clip strips, metric bars."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

_COLOURS = [(220, 60, 40), (40, 110, 220), (40, 160, 70), (150, 60, 180)]


def loss_curve_image(curves: dict[str, list[float]], width: int = 512, height: int = 256,
                     smooth: int = 5) -> np.ndarray:
    """Loss curves (one per stage) as an RGB image [H, W, 3], each drawn against its own steps.

    Raw losses of diffusion training are noisy, so a running mean over ``smooth`` steps is drawn
    over the faint raw curve.
    """
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    pad = 28
    values = [v for c in curves.values() for v in c if np.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    draw.rectangle([pad, 4, width - 4, height - pad], outline=(180, 180, 180))
    draw.text((2, 4), f"{hi:.3g}", fill=(90, 90, 90))
    draw.text((2, height - pad - 10), f"{lo:.3g}", fill=(90, 90, 90))

    def xy(i, n, v):
        x = pad + (width - 4 - pad) * (i / max(n - 1, 1))
        y = 4 + (height - pad - 4) * (1 - (v - lo) / (hi - lo))
        return x, y

    for k, (name, curve) in enumerate(curves.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        n = len(curve)
        if n:
            faint = tuple(int(c + (255 - c) * 0.7) for c in colour)
            draw.line([xy(i, n, v) for i, v in enumerate(curve)], fill=faint, width=1)
            kernel = max(1, min(smooth, n))
            mean = np.convolve(curve, np.ones(kernel) / kernel, mode="valid")
            draw.line([xy(i + kernel - 1, n, v) for i, v in enumerate(mean)], fill=colour, width=2)
        draw.text((pad + 6 + 110 * k, height - pad + 8), f"{name} ({n} steps)", fill=colour)
    return np.asarray(img)


def side_by_side(clips: list[np.ndarray], labels: list[str] | None = None, gap: int = 2) -> np.ndarray:
    """Clips [F, H, W, 3] (uint8 or float 0..1) placed left to right into one clip, same frame count."""
    frames = min(len(c) for c in clips)
    as_uint8 = [c if c.dtype == np.uint8 else (np.clip(c, 0, 1) * 255).round().astype(np.uint8) for c in clips]
    h = max(c.shape[1] for c in as_uint8)
    label_h = 12 if labels else 0
    width = sum(c.shape[2] for c in as_uint8) + gap * (len(clips) - 1)
    out = np.full((frames, h + label_h, width, 3), 255, np.uint8)
    x = 0
    for c in as_uint8:
        out[:, label_h:label_h + c.shape[1], x:x + c.shape[2]] = c[:frames]
        x += c.shape[2] + gap
    if labels:
        banner = Image.new("RGB", (width, label_h), (255, 255, 255))
        draw = ImageDraw.Draw(banner)
        x = 0
        for c, label in zip(as_uint8, labels):
            draw.text((x + 1, 0), label[: max(1, c.shape[2] // 6)], fill=(0, 0, 0))
            x += c.shape[2] + gap
        out[:, :label_h] = np.asarray(banner)
    return out


def metric_bars_image(summary: dict[str, dict[str, float]], metrics: tuple[str, ...], width: int = 560,
                      bar: int = 12) -> np.ndarray:
    """Grouped horizontal bars, one group per row of ``summary`` (e.g. an ablation's variants) and
    one bar per metric, on a shared 0..1 scale (values below 0 are drawn as empty bars); the value
    is printed beside each bar."""
    label_w, pad, gap = 110, 8, 6
    rows = list(summary)
    group_h = bar * len(metrics) + gap
    height = pad * 2 + group_h * len(rows) + 18
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    span = width - label_w - pad - 40
    for g, row in enumerate(rows):
        top = pad + g * group_h
        draw.text((pad, top + (bar * len(metrics)) // 2 - 6), row[:16], fill=(0, 0, 0))
        for k, metric in enumerate(metrics):
            value = float(summary[row][metric])
            y = top + k * bar
            w = span * min(max(value, 0.0), 1.0)
            draw.rectangle([label_w, y + 1, label_w + w, y + bar - 2], fill=_COLOURS[k % len(_COLOURS)])
            draw.text((label_w + w + 4, y), f"{value:.2f}", fill=(60, 60, 60))
    for k, metric in enumerate(metrics):  # legend
        draw.rectangle([label_w + 120 * k, height - 14, label_w + 120 * k + 10, height - 4],
                       fill=_COLOURS[k % len(_COLOURS)])
        draw.text((label_w + 120 * k + 14, height - 16), metric, fill=(0, 0, 0))
    draw.line([label_w, pad, label_w, height - 20], fill=(150, 150, 150))
    return np.asarray(img)
