"""The diffusion arithmetic training shares: noise schedule, targets, clean estimates, step noise."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler


def noise_scheduler(base) -> DDPMScheduler:
    """The training noise schedule of ``base`` (its scheduler config, as DDPM)."""
    return DDPMScheduler.from_config(base.scheduler_config)


def step_generator(seed: int, stage: int, step: int) -> torch.Generator:
    """The generator of one training step: a resumed run draws what an uninterrupted one drew."""
    state = np.random.SeedSequence([seed, stage, step]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def training_timesteps(scheduler, g: torch.Generator, count: int = 1, lowest: int = 0) -> torch.Tensor:
    """``count`` training timesteps drawn uniformly from [lowest, the schedule's count), on the CPU."""
    return torch.randint(lowest, scheduler.config.num_train_timesteps, (count,), generator=g)


def diffusion_target(scheduler, latents, noise, t):
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, t)
    return noise


def clean_estimate(scheduler, noisy, pred, t):
    """The UNet's one-step estimate of the clean video latents [B, C, F, h, w] from its prediction
    ``pred`` (v or epsilon) at timesteps ``t``."""
    a = scheduler.alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1, 1)
    if scheduler.config.prediction_type == "v_prediction":
        return a.sqrt() * noisy - (1 - a).sqrt() * pred
    return (noisy - (1 - a).sqrt() * pred) / a.clamp_min(1e-8).sqrt()


def debiased_loss(pred: torch.Tensor, target: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """MotionDirector's appearance-debiased temporal loss: plain MSE plus the MSE after
    subtracting a random anchor frame (scaled so the noise keeps unit variance)."""
    anchor = int(torch.randint(0, pred.shape[2], (1,), generator=g))
    beta, alpha = 1.0, math.sqrt(2.0)
    p = alpha * pred - beta * pred[:, :, anchor:anchor + 1]
    q = alpha * target - beta * target[:, :, anchor:anchor + 1]
    return F.mse_loss(pred, target) + F.mse_loss(p, q)
