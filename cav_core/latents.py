"""Pixels <-> VAE latents for clips, and the random crops of stage-1 patch training."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .compute import module_device


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float [F, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


@torch.no_grad()
def encode_frames(vae, frames: np.ndarray, batch: int = 8) -> torch.Tensor:
    """Scaled latent means [F, C, h, w] on the VAE's device (deterministic: no sampling)."""
    device, dtype = module_device(vae), vae.dtype
    out = []
    for i in range(0, len(frames), batch):
        x = frames_to_tensor(frames[i:i + batch]).to(device, dtype)
        out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out).float()


def encode_clip(vae, frames: np.ndarray) -> torch.Tensor:
    """A clip's latents as the UNet3D takes a batch of one video: [1, C, F, h, w] on the VAE's device."""
    return encode_frames(vae, frames).permute(1, 0, 2, 3).unsqueeze(0)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, batch: int = 8) -> np.ndarray:
    """Video latents [C, F, h, w] -> float frames [F, H, W, 3] in 0..1."""
    device, dtype = module_device(vae), vae.dtype
    z = latents.permute(1, 0, 2, 3) / vae.config.scaling_factor
    out = []
    for i in range(0, z.shape[0], batch):
        x = vae.decode(z[i:i + batch].to(device, dtype)).sample.float()
        out.append(((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu())
    return torch.cat(out).numpy()


def random_crops(frames: np.ndarray, count: int, crop_range: tuple[float, float],
                 rng: np.random.Generator) -> np.ndarray:
    """``count`` random square-ish crops of random frames, each resized back to the frame size.

    The crop side is a fraction in ``crop_range`` of each frame side, so the absorber sees
    the appearance at varied scales and positions but never the whole layout.
    """
    n, h, w, _ = frames.shape
    lo, hi = crop_range
    out = np.empty((count, h, w, 3), np.uint8)
    for i in range(count):
        frame = frames[rng.integers(n)]
        r = rng.uniform(lo, hi)
        ch, cw = max(2, round(h * r)), max(2, round(w * r))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        out[i] = cv2.resize(frame[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    return out
