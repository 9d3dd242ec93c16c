"""The base trainer's objectives: the VAE's reconstruction loss, the UNet's denoising loss and its
timesteps, and the constraint that keeps temporal convolutions causal."""
from __future__ import annotations

import torch

from cav_core import temporal_convolutions

from .base_data import object_weights


def reconstruction_loss(recon: torch.Tensor, frames: torch.Tensor, object_weight: float) -> torch.Tensor:
    """The VAE phases' MSE, with ``object_weight`` extra on the object's pixels (see ``object_weights``)."""
    return ((recon - frames).pow(2) * object_weights(frames, object_weight)).mean()


def training_timesteps(num_train_timesteps: int, batch: int, high_noise_share: float,
                       gen: torch.Generator) -> torch.Tensor:
    """Uniform timesteps, except that a ``high_noise_share`` of them (in expectation) come from the
    noisiest 30 %.

    Motion from text alone is decided there: from pure noise the clean-clip estimate has only the
    caption to go on, while from t <= 600 it can copy the noisy clip's motion. Short runs with a
    high share do not raise that estimate's pan travel (MODEL_CARD.md, "Why its samples barely
    move").
    """
    t = torch.randint(0, num_train_timesteps, (batch,), generator=gen)
    if high_noise_share:
        high = torch.randint(int(0.7 * num_train_timesteps), num_train_timesteps, (batch,), generator=gen)
        t = torch.where(torch.rand(batch, generator=gen) < high_noise_share, high, t)
    return t


def denoising_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                   motion_weight: float) -> torch.Tensor:
    """MSE over [B, C, F, h, w], optionally weighted per cell, plus ``motion_weight`` times the
    same MSE on the part of the error that changes across frames.

    The error's per-cell mean over frames is appearance; what is left is motion, a small share of
    a plain MSE. Short runs with a motion weight do not raise the pan travel of the clean-clip
    estimate from pure noise (MODEL_CARD.md, "Why its samples barely move").
    """
    error = pred - target
    weights = 1.0 if weights is None else weights
    loss = (error.pow(2) * weights).mean()
    if motion_weight:
        varying = error - error.mean(dim=2, keepdim=True)
        loss = loss + motion_weight * (varying.pow(2) * weights).mean()
    return loss


def keep_temporal_convs_causal(unet) -> None:
    """Zero the look-ahead tap of every temporal convolution and hold it at zero while training.

    diffusers' temporal convolutions are Conv3d with a (3, 1, 1) kernel and padding 1 in time, so
    tap 2 reads frame f + 1. Without it each frame sees only itself and the past, and the zero
    padding before frame 0 becomes a clock that cannot be mistaken for the end of the clip: the
    UNet cannot be time-symmetric. The result is still a plain ``UNet3DConditionModel`` (the taps
    are stored as zeros), so it loads wherever one does.
    """
    for module in temporal_convolutions(unet).values():
        with torch.no_grad():
            module.weight[:, :, 2].zero_()
        mask = torch.ones_like(module.weight)
        mask[:, :, 2] = 0
        module.weight.register_hook(lambda grad, mask=mask: grad * mask)
