"""Conversions between ComfyUI's data and the engine's (no ComfyUI import).

ComfyUI IMAGE: float tensor [frames, H, W, C] in 0..1 (C is 3, sometimes 4).
Engine frames: uint8 numpy [frames, H, W, 3] in, float numpy 0..1 out of sampling.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from cav_core.errors import CavError
from cav_core.plots import loss_curve_image


def image_batch_to_frames(images: torch.Tensor, what: str = "images") -> np.ndarray:
    """IMAGE batch -> uint8 RGB frames (alpha dropped)."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        shape = list(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise CavError(f"{what}: expected an IMAGE batch [frames, height, width, 3], got {shape}")
    if images.shape[0] == 0:
        raise CavError(f"{what}: the IMAGE batch has no frames")
    rgb = images[..., :3].detach().to("cpu", torch.float32)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def frames_to_image_batch(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 or float 0..1 frames [F, H, W, 3] -> IMAGE batch on ``device``."""
    array = np.asarray(frames)
    data = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else np.clip(array.astype(np.float32), 0, 1)
    return torch.from_numpy(data).to(device)  # astype copied: a writable, contiguous array


def loss_graph(curves: Mapping[str, Sequence[float]], device: torch.device | str = "cpu") -> torch.Tensor:
    """The engine's loss-curve picture as a one-image IMAGE batch."""
    picture = loss_curve_image({k: list(v) for k, v in curves.items()})
    return frames_to_image_batch(picture[None], device)


def preview_picture(frame: np.ndarray, min_side: int = 256) -> Image.Image:
    """A training preview frame, enlarged (nearest) so small bases stay visible on the node."""
    image = Image.fromarray(np.ascontiguousarray(frame))
    scale = max(1, min_side // max(1, min(image.size)))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image
