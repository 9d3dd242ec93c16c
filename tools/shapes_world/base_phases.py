"""The base trainer's first two phases and the whole run.

Phase 1 trains the VAE on single frames; phase 2 trains the UNet3D and the text encoder together
on (clip, caption) pairs with the standard noise-prediction loss; phase 3 (``base_decoder``)
sharpens the VAE decoder. Each phase checkpoints every ``--checkpoint-every`` steps.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from cav_core import diffusion_target, temporal_layers_bypassed
from cav_core.shapes_world import architecture as arch
from cav_core.shapes_world.scenes import random_scene, render

from . import base_data
from .base_decoder import train_decoder
from .base_export import export
from .base_losses import denoising_loss, keep_temporal_convs_causal, reconstruction_loss, training_timesteps
from .base_run import BaseRun


def train(args) -> None:
    """All three phases, resuming from the work folder's checkpoint, then the model folder."""
    torch.set_num_threads(args.threads)
    run = BaseRun(args)
    if not run.resume() and args.init_model:
        run.start_from_model(args.init_model)
    run.unet_opt.param_groups[1]["lr_scale"] = args.text_lr_scale  # the command's, also on resume
    start = time.time()
    if run.phase == "vae":
        train_vae_phase(run, args, start)
    train_unet_phase(run, args, start)
    train_decoder(args)
    export(args.out, run, args)


def train_vae_phase(run: BaseRun, args, start: float) -> None:
    """Phase 1, then the latent scaling; leaves the run at the start of phase 2."""
    run.vae.train()
    while run.step < args.vae_steps:
        frames = base_data.vae_batch(np.random.default_rng([args.seed, 1, run.step]), args.vae_batch)
        posterior = run.vae.encode(frames).latent_dist
        recon = run.vae.decode(posterior.sample(generator=torch.Generator().manual_seed(run.step))).sample
        rec_loss = reconstruction_loss(recon, frames, args.object_weight)
        loss = rec_loss + args.kl_weight * posterior.kl().mean()
        run.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        run.vae_opt.step()
        run.step += 1
        if run.step % 50 == 0:
            run.log.append({"phase": "vae", "step": run.step, "loss": float(rec_loss)})
            print(f"vae step {run.step}/{args.vae_steps} recon mse {rec_loss.item():.5f} "
                  f"({time.time() - start:.0f}s)", flush=True)
        if run.step % args.checkpoint_every == 0:
            run.save()
    # Scale latents to unit variance, as Stable Diffusion's VAE does.
    with torch.no_grad():
        rng = np.random.default_rng([args.seed, 2])
        frames = base_data.clips_to_frames(np.stack([render(random_scene(rng)) for _ in range(args.scaling_clips)]))
        run.scaling = float(1.0 / run.vae.encode(frames).latent_dist.mean.std())
    run.phase, run.step = "unet", 0
    if args.init_unet:
        run.start_unet_from_checkpoint(args.init_unet)
    run.save()


def train_unet_phase(run: BaseRun, args, start: float) -> None:
    """Phase 2 up to ``--steps``, with the VAE frozen, exporting every ``--export-every`` steps."""
    # --text-lr-scale 0 freezes the text encoder, as ModelScope's CLIP is frozen: no gradient, so
    # it neither moves nor counts in the clipping norm (clip_grad_norm_ skips absent gradients).
    frozen_text = args.text_lr_scale == 0
    params = list(run.unet.parameters()) + list(run.text_encoder.parameters())
    scheduler = arch.build_scheduler(args.zero_snr)
    run.vae.eval().requires_grad_(False)
    if args.causal_temporal_conv:
        keep_temporal_convs_causal(run.unet)
    run.unet.train()
    if frozen_text:
        run.text_encoder.requires_grad_(False).eval()
    else:
        run.text_encoder.train()
    while run.step < args.steps:
        lr = args.lr * min(1.0, (run.step + 1) / 200) * (0.5 + 0.5 * math.cos(math.pi * run.step / args.steps))
        for group in run.unet_opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        loss = _denoising_step_loss(run, args, scheduler)
        run.unet_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        run.unet_opt.step()
        run.step += 1
        if run.step % 25 == 0:
            run.log.append({"phase": "unet", "step": run.step, "loss": loss.item()})
            print(f"unet step {run.step}/{args.steps} loss {loss.item():.4f} lr {lr:.2e} "
                  f"({time.time() - start:.0f}s)", flush=True)
        if run.step % args.checkpoint_every == 0 or run.step == args.steps:
            run.save()
        if args.export_every and run.step % args.export_every == 0:
            export(args.out, run, args)


def _denoising_step_loss(run: BaseRun, args, scheduler) -> torch.Tensor:
    """Phase 2's loss on this step's batch: noise-prediction (v with --zero-snr, else epsilon)."""
    batch = base_data.unet_batch(args.seed, run.step, args.batch, args.image_share)
    torch.manual_seed(batch.dropout_seed)  # the UNet's temporal-conv dropout: same on resume
    gen = batch.generator
    with torch.no_grad():
        frames = base_data.clips_to_frames(batch.clips)
        lat = run.vae.encode(frames).latent_dist.sample(generator=gen) * run.scaling
        lat = lat.reshape(args.batch, arch.FRAMES, *lat.shape[1:]).permute(0, 2, 1, 3, 4)
    ids = run.tokenizer(batch.captions, padding="max_length", max_length=arch.TOKEN_LENGTH,
                        truncation=True, return_tensors="pt").input_ids
    text = run.text_encoder(ids)[0]
    weights = None
    if args.unet_object_weight:
        weights = base_data.latent_object_weights(frames, args.unet_object_weight, lat.shape)
    if batch.image_step:
        lat, text, weights = base_data.as_single_frames(lat, text, weights)
    noise = torch.randn(lat.shape, generator=gen)
    t = training_timesteps(scheduler.config.num_train_timesteps, len(lat), args.high_noise_share, gen)
    with temporal_layers_bypassed(run.unet) if batch.image_step else contextlib.nullcontext():
        pred = run.unet(scheduler.add_noise(lat, noise, t), t, text).sample
    return denoising_loss(pred, diffusion_target(scheduler, lat, noise, t), weights, args.motion_weight)
