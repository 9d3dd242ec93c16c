"""The base trainer's synthetic data: rendered clips and frames, their captions, and the per-pixel
weights that make the object count in a loss.

Every batch is drawn from a generator seeded by (seed, phase, step), so a resumed run draws the
same data as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cav_core import frames_to_tensor
from cav_core.shapes_world import architecture as arch
from cav_core.shapes_world.scenes import GENERIC_MOTION_PHRASE, Scene, random_scene, render

UNCONDITIONAL_SHARE = 0.1  # empty captions, for classifier-free guidance (clips and still frames alike)


def clips_to_frames(clips: np.ndarray) -> torch.Tensor:
    """uint8 clips [B, F, H, W, 3] -> float frames [B*F, 3, H, W] in [-1, 1].

    Made contiguous, so the VAE's convolutions run in the default (NCHW) memory layout."""
    return frames_to_tensor(clips.reshape(-1, *clips.shape[-3:])).contiguous()


def vae_batch(rng: np.random.Generator, size: int) -> torch.Tensor:
    """``size`` single frames for the VAE phases: 4 random frames from each of size/4 random clips."""
    clips = np.stack([render(random_scene(rng)) for _ in range(size // 4)])
    return clips_to_frames(clips[:, rng.choice(arch.FRAMES, 4, replace=False)])


def caption_for_training(scene: Scene, rng: np.random.Generator) -> str:
    """A clip's caption: usually the full one, sometimes with a generic or no motion phrase, and
    empty for guidance."""
    r = rng.random()
    if r < UNCONDITIONAL_SHARE:
        return ""
    if r < 0.7 or scene.motion == "static":
        return scene.caption()
    if r < 0.85:
        return scene.caption(GENERIC_MOTION_PHRASE)
    return scene.caption("")


def image_caption_for_training(scene: Scene, rng: np.random.Generator) -> str:
    """A still frame's caption: the appearance only (no motion words), or empty for guidance."""
    return "" if rng.random() < UNCONDITIONAL_SHARE else scene.caption("")


@dataclass
class UnetBatch:
    """One phase-2 step's data."""

    clips: np.ndarray  # uint8 [B, F, H, W, 3]
    captions: list[str]
    image_step: bool  # train on still frames with the temporal layers bypassed
    generator: torch.Generator  # latent sampling, noise and timesteps
    dropout_seed: int  # for torch's global generator: the UNet's temporal-conv dropout


def unet_batch(seed: int, step: int, size: int, image_share: float) -> UnetBatch:
    """Phase 2's data for ``step``: ``size`` random clips with training captions; with probability
    ``image_share`` an image step, whose captions are appearance-only."""
    rng = np.random.default_rng([seed, 3, step])
    scenes = [random_scene(rng) for _ in range(size)]
    captions = [caption_for_training(s, rng) for s in scenes]
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    dropout_seed = int(rng.integers(2**31))
    # Drawn only when --image-share is set, so without it a step's data does not depend on the option.
    image_step = bool(image_share) and rng.random() < image_share
    if image_step:
        captions = [image_caption_for_training(s, rng) for s in scenes]
    return UnetBatch(np.stack([render(s) for s in scenes]), captions, image_step, generator, dropout_seed)


def as_single_frames(lat: torch.Tensor, text: torch.Tensor, weights: torch.Tensor | None):
    """[B, C, F, h, w] clips -> B*F one-frame clips, each with its clip's caption.

    Image steps train the UNet with its temporal layers bypassed, as ModelScope's UNet is its
    image model (Stable Diffusion's) plus temporal layers. Without them this from-scratch UNet's
    spatial path renders nothing on its own, and stage 1 of the method, which trains the absorber
    with the temporal layers bypassed, has no image model to absorb into."""
    b, _, f, h, w = lat.shape

    def one_frame_clips(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(b * f, x.shape[1], 1, h, w)

    return (one_frame_clips(lat), text.repeat_interleave(f, dim=0),
            None if weights is None else one_frame_clips(weights))


def object_weights(frames: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights [N, 1, H, W]: 1 on the background, 1 + ``weight`` on the object.

    The object covers about 5 % of a frame, so a plain MSE lets the VAE trade its colour away
    (its latents then keep little more than brightness: green on white comes back dark blue);
    the weight makes the object's pixels count. The background is the frame's corner colour
    (scenes have plain backgrounds).
    """
    corner = frames[:, :, :1, :1]
    on_object = (frames - corner).abs().amax(1, keepdim=True) > 0.02
    return 1.0 + weight * on_object.float()


def latent_object_weights(frames: torch.Tensor, weight: float, shape: torch.Size) -> torch.Tensor:
    """``object_weights`` pooled to the latent grid, shaped [B, 1, F, h, w] like the latents.

    Same reason as for the VAE: with a plain loss the object's colour and shape are ~5 % of the
    target, and the UNet learns backgrounds from the text long before object colours."""
    b, _, f, h, w = shape
    pooled = F.adaptive_avg_pool2d(object_weights(frames, weight), (h, w))
    return pooled.reshape(b, f, 1, h, w).permute(0, 2, 1, 3, 4)
