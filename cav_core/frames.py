"""Checks on the reference frames a training run is given, and the identity of a run."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from .errors import CavError


def check_frames(base, frames: np.ndarray, minimum: int = 2) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise CavError(f"expected uint8 RGB frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) < minimum:
        raise CavError(f"the reference has {len(frames)} frame(s); at least {minimum} are needed")
    base.check_frame_size(frames.shape[2], frames.shape[1], "the reference video")


def run_identity(base, frames: np.ndarray, *settings) -> dict:
    """What a checkpoint must match to be resumed: the base, the frames and the settings."""
    digest = torch.from_numpy(frames[:, ::4, ::4].astype(np.float32)).sum().item()
    return {"base": base.fingerprint, "frames": list(frames.shape), "pixels": digest,
            "settings": [asdict(s) for s in settings]}
