"""Synthetic shapes-world clips: one coloured shape moving over a plain background.

Everything is deterministic given a seed. Captions follow one grammar users can prompt with:
``a {colour} {shape} {motion phrase} on a {background} background`` where the motion phrase may be
the generic word ``moving`` or be left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
    "purple": (140, 40, 180),
    "orange": (250, 140, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "black": (10, 10, 10),
    "gray": (128, 128, 128),
}
SHAPES = ("square", "circle", "triangle")

# Motions the base model is taught (its text vocabulary). Each maps clip time t in [0, 1] to an
# offset (dx, dy) in units of the frame side, and a scale factor for the shape.
_D = 0.42  # travel of a pan over one clip, as a fraction of the frame side
BASE_MOTIONS: dict[str, str] = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "up_left": "moving up and left",
    "up_right": "moving up and right",
    "down_left": "moving down and left",
    "down_right": "moving down and right",
    "circle": "moving in a circle",
    "zoom_in": "zooming in",
    "zoom_out": "zooming out",
    "bounce": "bouncing",
    "static": "standing still",
}
# Paths the base model never sees in training: the one-shot demo and the evaluation use these.
NOVEL_MOTIONS = ("zigzag", "figure_eight", "square_path", "wave", "spiral_in")
GENERIC_MOTION_PHRASE = "moving"


def motion_offset(motion: str, t: float) -> tuple[float, float, float]:
    """(dx, dy, scale) of ``motion`` at clip time ``t`` in [0, 1]; y grows downwards."""
    s = t - 0.5
    pans = {
        "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
        "up_left": (-0.7, -0.7), "up_right": (0.7, -0.7),
        "down_left": (-0.7, 0.7), "down_right": (0.7, 0.7),
    }
    if motion in pans:
        ux, uy = pans[motion]
        return ux * _D * s, uy * _D * s, 1.0
    if motion == "static":
        return 0.0, 0.0, 1.0
    if motion == "circle":  # one counter-clockwise turn on screen
        a = 2 * math.pi * t
        return 0.2 * math.cos(a), -0.2 * math.sin(a), 1.0
    if motion == "zoom_in":
        return 0.0, 0.0, 0.6 + 0.9 * t
    if motion == "zoom_out":
        return 0.0, 0.0, 1.5 - 0.9 * t
    if motion == "bounce":  # two hops off an invisible floor
        return 0.0, 0.15 - 0.3 * abs(math.sin(2 * math.pi * t)), 1.0
    if motion == "zigzag":  # rightwards with three sharp vertical reversals
        tri = 1 - 4 * abs(((t * 2) % 1) - 0.5)
        return _D * s, 0.16 * tri, 1.0
    if motion == "figure_eight":
        a = 2 * math.pi * t
        return 0.22 * math.sin(a), 0.14 * math.sin(2 * a), 1.0
    if motion == "square_path":  # clockwise around a square
        side, k = 0.32, (t * 4) % 4
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]
        i, f = int(min(k, 3.999)), k - int(min(k, 3.999))
        x = corners[i][0] + (corners[i + 1][0] - corners[i][0]) * f
        y = corners[i][1] + (corners[i + 1][1] - corners[i][1]) * f
        return side / 2 * x, side / 2 * y, 1.0
    if motion == "wave":  # leftwards with a smooth vertical sine
        return -_D * s, 0.14 * math.sin(4 * math.pi * t), 1.0
    if motion == "spiral_in":
        a, r = 3 * math.pi * t, 0.25 * (1 - 0.8 * t)
        return r * math.cos(a), r * math.sin(a), 1.0
    raise ValueError(f"unknown motion {motion!r}")


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    background: str
    motion: str
    size: float = 0.24  # shape side as a fraction of the frame side
    centre: tuple[float, float] = (0.5, 0.5)  # where the path is centred

    def caption(self, motion_phrase: str | None = None) -> str:
        """Caption in the shapes-world grammar; ``motion_phrase=''`` leaves the motion out."""
        if motion_phrase is None:
            motion_phrase = BASE_MOTIONS.get(self.motion, GENERIC_MOTION_PHRASE)
        middle = f" {motion_phrase}" if motion_phrase else ""
        return f"a {self.colour} {self.shape}{middle} on a {self.background} background"


def random_scene(rng: np.random.Generator, motions=tuple(BASE_MOTIONS)) -> Scene:
    background = str(rng.choice(list(BACKGROUNDS)))
    colour = str(rng.choice([c for c in COLOURS if c != background]))
    return Scene(
        colour=colour,
        shape=str(rng.choice(SHAPES)),
        background=background,
        motion=str(rng.choice(list(motions))),
        size=float(rng.uniform(0.2, 0.3)),
        centre=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
    )


def _draw_shape(img: np.ndarray, shape: str, cx: float, cy: float, side: float, rgb) -> None:
    sub = 16  # cv2 sub-pixel shift: smooth motion at low resolution
    h = side / 2
    if shape == "circle":
        cv2.circle(img, (round(cx * sub), round(cy * sub)), round(h * sub), rgb, -1, cv2.LINE_AA, 4)
        return
    if shape == "square":
        pts = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    elif shape == "triangle":
        pts = [(cx, cy - h * 1.1), (cx + h * 1.1, cy + h * 0.9), (cx - h * 1.1, cy + h * 0.9)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    poly = np.round(np.array(pts) * sub).astype(np.int32)
    cv2.fillPoly(img, [poly], rgb, cv2.LINE_AA, 4)


def render(scene: Scene, frames: int = 16, size: int = 64) -> np.ndarray:
    """Render ``scene`` as uint8 RGB frames [F, size, size, 3]."""
    out = np.empty((frames, size, size, 3), np.uint8)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        dx, dy, scale = motion_offset(scene.motion, t)
        img = np.full((size, size, 3), BACKGROUNDS[scene.background], np.uint8)
        cx, cy = (scene.centre[0] + dx) * size, (scene.centre[1] + dy) * size
        _draw_shape(img, scene.shape, cx, cy, scene.size * scale * size, COLOURS[scene.colour])
        out[i] = img
    return out


def trajectory(scene: Scene, frames: int = 16, size: int = 64) -> np.ndarray:
    """Ground-truth centre path in pixels [F, 2] (x, y)."""
    pts = []
    for i in range(frames):
        dx, dy, _ = motion_offset(scene.motion, i / max(frames - 1, 1))
        pts.append(((scene.centre[0] + dx) * size, (scene.centre[1] + dy) * size))
    return np.array(pts, np.float32)


def vocabulary_words() -> list[str]:
    """Every word the caption grammar can produce (the bundled tokenizer's vocabulary)."""
    words = {"a", "on", "background", GENERIC_MOTION_PHRASE, *COLOURS, *BACKGROUNDS, *SHAPES}
    for phrase in BASE_MOTIONS.values():
        words.update(phrase.split())
    # Novel-motion words and a few common prompt words, so user prompts tokenize to whole words.
    words.update({"zigzag", "zigzagging", "figure", "eight", "square", "path", "wave", "waving",
                  "spiral", "spiralling", "and", "the", "an", "of", "with", "in", "small", "big",
                  "large", "shape", "object", "video", "dark", "light", "bright"})
    return sorted(words)
