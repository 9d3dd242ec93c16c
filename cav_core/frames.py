"""The reference clips a training run is given: checks, one training size and length, a run's identity.

A run trains on one clip (a frames array, captioned by the settings' prompt) or on several
``(frames, caption)`` pairs showing the same motion. Every clip is brought to the first clip's size
(:func:`video_io.resize_center_crop`) and frame count (even resampling), so a step can draw any of them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import CavError


@dataclass(frozen=True)
class Clip:
    """One reference clip of a motion: uint8 frames [F, H, W, 3] and its caption."""

    frames: np.ndarray
    caption: str = ""
    source: tuple[int, int, int] = (0, 0, 0)  # (frames, height, width) it was given with

    @property
    def record(self) -> dict:
        """What an adapter file's record says about this clip."""
        count, height, width = self.source if self.source[0] else self.frames.shape[:3]
        return {"caption": self.caption, "frames": int(count), "size": [int(width), int(height)]}


def check_frames(base, frames: np.ndarray, minimum: int = 2, what: str = "the reference video") -> None:
    check_pixels(frames, minimum, what)
    base.check_frame_size(frames.shape[2], frames.shape[1], what)


def check_pixels(frames: np.ndarray, minimum: int = 2, what: str = "the reference video") -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        found = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise CavError(f"expected uint8 RGB frames [F, H, W, 3] for {what}, got {found}")
    if len(frames) < minimum:
        raise CavError(f"{what} has {len(frames)} frame(s); at least {minimum} are needed")


def as_clips(clips, prompt: str = "") -> list[Clip]:
    """``clips`` as a list of :class:`Clip`: one frames array, or a sequence of frames arrays,
    ``(frames, caption)`` pairs or clips; a missing or empty caption is ``prompt``."""
    given = [clips] if isinstance(clips, (np.ndarray, Clip)) else list(clips)
    if not given:
        raise CavError("no reference clip was given")
    out = []
    for item in given:
        if isinstance(item, Clip):
            out.append(Clip(item.frames, item.caption or prompt, item.source))
            continue
        frames, caption = (item, "") if isinstance(item, np.ndarray) else item
        shape = tuple(int(n) for n in frames.shape[:3]) if getattr(frames, "ndim", 0) == 4 else (0, 0, 0)
        out.append(Clip(frames, (caption or "").strip() or prompt, shape))
    return out


def training_clips(base, clips, prompt: str = "", minimum: int = 2) -> list[Clip]:
    """The clips of a run, checked and brought to the first clip's size and frame count."""
    clips = as_clips(clips, prompt)
    names = ["the reference video"] if len(clips) == 1 else [f"reference clip {i + 1}" for i in range(len(clips))]
    for clip, name in zip(clips, names):
        check_pixels(clip.frames, minimum, name)
    first = clips[0].frames
    check_frames(base, first, minimum, names[0])
    count, height, width = first.shape[:3]
    return [clips[0]] + [Clip(fit_clip(c.frames, count, width, height), c.caption, c.source) for c in clips[1:]]


def fit_clip(frames: np.ndarray, count: int, width: int, height: int) -> np.ndarray:
    """``frames`` at ``width`` x ``height`` (cover and centre-crop) and ``count`` frames (even resampling)."""
    from .video_io import resize_center_crop

    if len(frames) != count:
        frames = frames[np.linspace(0, len(frames) - 1, count).round().astype(int)]
    if frames.shape[1:3] != (height, width):
        frames = resize_center_crop(frames, width, height)
    return np.ascontiguousarray(frames)


def clip_pixels(clips: Sequence[Clip]) -> np.ndarray:
    """The frames of every clip together (they share one size): what stage 1 crops from."""
    return clips[0].frames if len(clips) == 1 else np.concatenate([c.frames for c in clips])


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """An exact digest of named tensors (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _pixels(frames: np.ndarray) -> float:
    return torch.from_numpy(frames[:, ::4, ::4].astype(np.float32)).sum().item()


def run_identity(base, clips, *settings, **extra) -> dict:
    """What a checkpoint must match to be resumed: the base, the clips, the settings and ``extra``
    (e.g. digests of the LoRA a run continues and of the absorber it reuses; None values left out)."""
    clips = as_clips(clips)
    first = clips[0].frames
    identity = {"base": base.fingerprint, "frames": list(first.shape), "pixels": _pixels(first),
                "settings": [asdict(s) for s in settings]}
    if len(clips) > 1:
        identity["clips"] = [[c.caption, list(c.frames.shape), _pixels(c.frames)] for c in clips]
    identity.update({k: v for k, v in extra.items() if v is not None})
    return identity
