"""The base trainer's phase 3: sharpen the VAE decoder with the encoder frozen.

The encoder (and so every latent the UNet learns from) is fixed after phase 1, so this phase
depends only on phase 1 and may run beside phase 2. It keeps its own checkpoint in the work folder,
which the export takes the decoder from.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from cav_core import module_tensors, read_checkpoint, restore_optimizer, save_checkpoint
from cav_core.shapes_world import architecture as arch

from .base_data import vae_batch
from .base_losses import reconstruction_loss
from .base_run import CHECKPOINT_NAME

DECODER_NAME = "decoder.safetensors"


def train_decoder(args) -> None:
    """Phase 3 up to ``--decoder-steps``, from phase 1's VAE in the run's checkpoint; resumable."""
    torch.set_num_threads(args.threads)
    vae = arch.build_vae()
    vae.load_state_dict(module_tensors(read_checkpoint(os.path.join(args.work, CHECKPOINT_NAME))[0], "vae"))
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.vae_lr, weight_decay=0.0)
    path = os.path.join(args.work, DECODER_NAME)
    step = 0
    if os.path.exists(path):
        saved, meta = read_checkpoint(path)
        vae.load_state_dict(module_tensors(saved, "vae"))
        restore_optimizer(opt, "opt", saved, meta)
        step = int(meta["step"])
    start = time.time()
    while step < args.decoder_steps:
        lr = args.vae_lr * (0.5 + 0.5 * math.cos(math.pi * step / args.decoder_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        frames = vae_batch(np.random.default_rng([args.seed, 4, step]), args.vae_batch)
        with torch.no_grad():
            latents = vae.encode(frames).latent_dist.mean
        loss = reconstruction_loss(vae.decode(latents).sample, frames, args.object_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"decoder step {step}/{args.decoder_steps} recon mse {loss.item():.5f} "
                  f"({time.time() - start:.0f}s)", flush=True)
        if step % args.checkpoint_every == 0 or step == args.decoder_steps:
            save_checkpoint(path, {f"vae.{k}": v for k, v in vae.state_dict().items()}, {"step": str(step)},
                            {"opt": opt})


def decoder_weights(work: str) -> dict | None:
    """Phase 3's VAE weights (its decoder, phase 1's encoder), or None if phase 3 has not saved."""
    path = os.path.join(work, DECODER_NAME)
    if not os.path.exists(path):
        return None
    return module_tensors(read_checkpoint(path)[0], "vae")
