"""Train the bundled shapes-world text-to-video model from scratch on synthetic clips.

    python -m tools.shapes_world.train_base --work runs/base --out cav_core/shapes_world/model

Phase 1 trains the VAE on single frames; phase 2 trains the UNet3D and the text encoder together
on (clip, caption) pairs with the standard noise-prediction loss; phase 3 sharpens the VAE decoder.
Every step draws its data from a generator seeded by (seed, phase, step), so a run resumed from a
checkpoint is the same run. Checkpoints (safetensors, no pickle) are written atomically every
``--checkpoint-every`` steps.

The modules beside this one hold the parts: ``base_data`` (clips, captions, object weights),
``base_losses``, ``base_run`` (models, optimizers, checkpoint), ``base_phases`` (phases 1 and 2),
``base_decoder`` (phase 3) and ``base_export`` (the diffusers folder).
"""
from __future__ import annotations

import argparse

from .base_decoder import train_decoder
from .base_phases import train


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="folder for checkpoints (resumes if one is there)")
    p.add_argument("--out", required=True, help="where the diffusers-format model is written")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int, default=500)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--scaling-clips", type=int, default=32,
                   help="random clips encoded after phase 1 to set the latent scaling (unit variance)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--export-every", type=int, default=0)
    p.add_argument("--decoder-steps", type=int, default=800)
    p.add_argument("--object-weight", type=float, default=0.0,
                   help="phases 1 and 3: extra loss weight on the object's pixels (see base_data.object_weights)")
    p.add_argument("--unet-object-weight", type=float, default=0.0,
                   help="phase 2: extra loss weight on latents covering the object (may change on resume)")
    p.add_argument("--motion-weight", type=float, default=0.0,
                   help="phase 2: extra loss weight on the frame-varying part of the error "
                   "(see base_losses.denoising_loss)")
    p.add_argument("--high-noise-share", type=float, default=0.0,
                   help="phase 2: share of timesteps drawn from the noisiest 30%% "
                   "(see base_losses.training_timesteps)")
    p.add_argument("--text-lr-scale", type=float, default=1.0,
                   help="phase 2: the text encoder's learning rate as a multiple of --lr; 0 freezes it (no "
                   "gradient), as ModelScope's text encoder is frozen. Read on resume too")
    p.add_argument("--image-share", type=float, default=0.0,
                   help="phase 2: share of steps trained on still frames with the temporal layers bypassed and "
                   "appearance captions, so the spatial path alone is an image model (as the method's stage 1 "
                   "assumes)")
    p.add_argument("--causal-temporal-conv", action="store_true",
                   help="phase 2: temporal convolutions see no future frame "
                   "(see base_losses.keep_temporal_convs_causal)")
    p.add_argument("--init-model", help="start phase 2 from an exported model folder: skips phase 1, and phase 3 "
                   "continues that folder's decoder (use --decoder-steps 0 to keep it)")
    p.add_argument("--init-unet", help="start phase 2 from this checkpoint.safetensors' UNet and text encoder")
    p.add_argument("--only-decoder", action="store_true",
                   help="run phase 3 alone (needs phase 1 done); it may run beside phase 2")
    p.add_argument("--zero-snr", action="store_true",
                   help="zero-terminal-SNR betas with v-prediction (see MODEL_CARD.md); may continue an epsilon run")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    train_decoder(args) if args.only_decoder else train(args)


if __name__ == "__main__":
    main()
