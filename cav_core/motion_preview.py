"""A motion LoRA's animated preview: a small looping WebP beside the file (``<stem>.webp``, where
model browsers look for one).

A trained file's preview shows the reference clip as trained and, where training made one, the
last validation sample (the motion with a new caption) side by side, each ``PREVIEW_HEIGHT`` px
tall. A merged file's preview shows its sources' previews side by side. :func:`write_preview`
is the one writer: every saver (CLI, nodes) goes through it.
"""
from __future__ import annotations

import io
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageSequence

from .adapter_file import preview_path
from .errors import CavError

PREVIEW_HEIGHT = 96  # px of each clip
LABEL_HEIGHT = 12  # the banner plots.side_by_side adds above labelled clips
GAP = 2  # px between clips
MAX_WIDTH = 512  # a wider composite (many merged sources) is scaled down to this
MAX_FRAMES = 32  # longer clips are resampled evenly to this many frames
MAX_FILE_BYTES = 4 * 2**20  # a "preview" bigger than this is not carried along (not ours)


@dataclass(frozen=True, eq=False)
class MotionPreview:
    """An animated preview: composed uint8 frames [F, H, W, 3] at ``fps``, or the bytes of an
    existing preview file (kept as they are, so re-saving a loaded LoRA loses nothing)."""

    frames: np.ndarray | None = None
    fps: float = 8.0
    data: bytes | None = None

    def clip(self) -> tuple[np.ndarray, float]:
        """The frames and frame rate (decoded from ``data`` when read from a file; frames the encoder
        merged because they were identical are repeated again)."""
        if self.frames is not None:
            return self.frames, self.fps
        try:
            with Image.open(io.BytesIO(self.data or b"")) as image:
                frames, durations = [], []
                for frame in itertools.islice(ImageSequence.Iterator(image), MAX_FRAMES * 4):
                    frames.append(np.asarray(frame.convert("RGB")))
                    durations.append(frame.info.get("duration") or 0)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise CavError(f"the preview cannot be decoded ({e})") from e
        unit = min((d for d in durations if d > 0), default=0)
        if not unit:
            return np.stack(frames), self.fps
        repeats = [max(1, round(d / unit)) for d in durations]
        return np.repeat(np.stack(frames), repeats, axis=0), 1000.0 / unit


def _uint8(frames) -> np.ndarray:
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or not len(array):
        raise CavError(f"a preview clip must be frames [F, H, W, 3], got {list(array.shape)}")
    if array.dtype == np.uint8:
        return array
    return (np.clip(array.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)


def _at_height(frames: np.ndarray, height: int) -> np.ndarray:
    from .video_io import resize_center_crop

    width = max(1, round(frames.shape[2] * height / frames.shape[1]))
    return resize_center_crop(frames, width, height) if frames.shape[1:3] != (height, width) else frames


def _side_by_side(clips: Sequence[np.ndarray], labels: list[str] | None = None, keep_height: bool = False
                  ) -> np.ndarray:
    """Clips at ``PREVIEW_HEIGHT`` (``keep_height``: previews keep theirs, up to a label banner more),
    left to right, no wider than ``MAX_WIDTH``, at one frame count (the longest, at most ``MAX_FRAMES``;
    shorter ones resampled evenly, so each loops once per preview loop)."""
    from .frames import fit_clip
    from .plots import side_by_side

    clips = [_uint8(c) for c in clips]
    clips = [c if keep_height and c.shape[1] <= PREVIEW_HEIGHT + LABEL_HEIGHT else _at_height(c, PREVIEW_HEIGHT)
             for c in clips]
    tallest = max(c.shape[1] for c in clips)  # shorter ones (no label banner) get white above: pictures align
    clips = [np.pad(c, ((0, 0), (tallest - c.shape[1], 0), (0, 0), (0, 0)), constant_values=255) for c in clips]
    count = min(MAX_FRAMES, max(len(c) for c in clips))
    clips = [fit_clip(c, count, c.shape[2], c.shape[1]) for c in clips]
    width, room = sum(c.shape[2] for c in clips), MAX_WIDTH - GAP * (len(clips) - 1)
    if width > room:
        scale = (room - len(clips)) / width  # a pixel per clip for rounding its width
        clips = [_at_height(c, max(8, math.floor(c.shape[1] * scale))) for c in clips]
    return side_by_side(list(clips), labels, GAP)


def training_preview(reference, sample=None, fps: float = 8.0, caption: str = "") -> MotionPreview:
    """The preview of a trained motion: the reference clip as trained (uint8 or float 0..1
    [F, H, W, 3]) and, when given, a sample with a new ``caption``, labelled, side by side."""
    if sample is None:
        return MotionPreview(_side_by_side([reference]), fps)
    return MotionPreview(_side_by_side([reference, sample], ["reference", caption or "sample"]), fps)


def merged_preview(previews: Sequence[MotionPreview | None]) -> MotionPreview | None:
    """The preview of a merged file: its sources' previews side by side, in order. Sources without a
    preview (or with one that cannot be decoded) are left out; None when none has one."""
    clips = []
    for preview in previews:
        if preview is None:
            continue
        try:
            clips.append(preview.clip())
        except CavError:
            continue
    if not clips:
        return None
    return MotionPreview(_side_by_side([frames for frames, _ in clips], keep_height=True), clips[0][1])


def read_preview(adapter_path: str | os.PathLike) -> MotionPreview | None:
    """The preview file beside ``adapter_path``, as bytes, or None when there is none (or it is too
    big to be a preview)."""
    path = preview_path(adapter_path)
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_FILE_BYTES:
            return None
        with open(path, "rb") as f:
            return MotionPreview(data=f.read())
    except OSError:
        return None


def write_preview(adapter_path: str | os.PathLike, preview: MotionPreview | None) -> str | None:
    """Write ``preview`` beside the adapter file atomically and return its path. None removes a
    preview left there by an earlier file of that name (it would show another motion)."""
    from .files import atomic_path
    from .video_io import write_video

    path = preview_path(adapter_path)
    if preview is None:
        try:
            if os.path.isfile(path):
                os.remove(path)
        except OSError as e:
            raise CavError(f"cannot remove the earlier preview {path} ({e}); remove it by hand") from e
        return None
    if preview.data is None:
        return write_video(path, preview.frames, preview.fps)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(preview.data)
    return path
