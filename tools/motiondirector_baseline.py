"""The evaluation's MotionDirector-style baseline (not part of the product's training path).

``train_motiondirector``: MotionDirector-style joint training (arXiv 2310.08465) at the same rank:
a spatial LoRA learns from one random frame per step (temporal layers bypassed) while a temporal
LoRA learns from the whole clip with the appearance-debiased loss; at inference only the temporal
LoRA is used, as in the paper. Each step does two backward passes so that the spatial LoRA is
shaped by the spatial loss only and the temporal LoRA by the temporal loss only. The temporal
path draws its timesteps as the T-LoRA settings say (``min_timestep``), so both train alike.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cav_core import (TEMPORAL, ComputeSettings, LoraWeights, MotionSettings, debiased_loss, diffusion_target,
                      encode_clip, encode_prompts, extract_lora, gradient_checkpointing, inject_lora, noise_scheduler,
                      on_device, remove_adapters, spatial_targets, step_generator, temporal_layers_bypassed,
                      training_timesteps)


def train_motiondirector(base, frames: np.ndarray, settings: MotionSettings, spatial_lr: float = 1e-4,
                         compute: ComputeSettings = ComputeSettings(),
                         on_step=None) -> tuple[LoraWeights, list[float]]:
    """``on_step(step)`` is called after each optimiser step (the benchmark times steps with it)."""
    settings.validate()
    device, unet = compute.torch_device, base.unet
    scheduler = noise_scheduler(base)
    rank = settings.rank
    with on_device(base.vae, device):
        latents = encode_clip(base.vae, frames).to(device)
    with on_device(base.text_encoder, device), torch.no_grad():
        text = encode_prompts(base, [settings.prompt], device)
    losses: list[float] = []
    with on_device(unet, device), gradient_checkpointing(unet, compute.gradient_checkpointing):
        try:
            inject_lora(unet, "md_spatial", spatial_targets(unet), rank, rank, seed=settings.seed)
            inject_lora(unet, "md_temporal", settings.targets(unet), rank, rank, seed=settings.seed)
            spatial = [p for n, p in unet.named_parameters() if "md_spatial" in n]
            temporal = [p for n, p in unet.named_parameters() if "md_temporal" in n]
            for p in unet.parameters():
                p.requires_grad_(False)
            opt = torch.optim.AdamW([{"params": spatial, "lr": spatial_lr},
                                     {"params": temporal, "lr": settings.lr}], weight_decay=0.0)
            for step in range(settings.steps):
                g = step_generator(settings.seed, 3, step)
                opt.zero_grad(set_to_none=True)
                # spatial path: one random frame, a per-frame image model
                k = int(torch.randint(0, latents.shape[2], (1,), generator=g))
                frame = latents[:, :, k:k + 1]
                noise = torch.randn(frame.shape, generator=g).to(device)
                t = training_timesteps(scheduler, g).to(device)
                for p in spatial:
                    p.requires_grad_(True)
                with temporal_layers_bypassed(unet):
                    pred = unet(scheduler.add_noise(frame, noise, t), t, text).sample
                spatial_loss = F.mse_loss(pred, diffusion_target(scheduler, frame, noise, t))
                spatial_loss.backward()
                for p in spatial:
                    p.requires_grad_(False)
                # temporal path: the whole clip, debiased loss, spatial LoRA active but frozen here
                for p in temporal:
                    p.requires_grad_(True)
                noise = torch.randn(latents.shape, generator=g).to(device)
                t = training_timesteps(scheduler, g, lowest=settings.min_timestep).to(device)
                pred = unet(scheduler.add_noise(latents, noise, t), t, text).sample
                temporal_loss = debiased_loss(pred, diffusion_target(scheduler, latents, noise, t), g)
                temporal_loss.backward()
                for p in temporal:
                    p.requires_grad_(False)
                torch.nn.utils.clip_grad_norm_(spatial + temporal, 1.0)
                opt.step()
                losses.append(float(temporal_loss.detach()))
                if on_step:
                    on_step(step + 1)
            lora = extract_lora(unet, "md_temporal", TEMPORAL, rank, rank)
        finally:
            remove_adapters(unet)
    return lora, losses
