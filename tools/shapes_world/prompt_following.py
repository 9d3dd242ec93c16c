"""How well the base shapes-world model follows captions it never saw (for the model card).

    python -m tools.shapes_world.prompt_following --count 48

Held-out captions are drawn with a seed the training never used. Each sample is read back for
colour, shape and background; the motion direction is checked on the eight pans (net displacement
within 45 degrees of the caption's direction). The same captions' clips, rendered and passed through
the model's VAE and read back the same way, give the reader's ceiling: what a perfect UNet could
score through this VAE.

A third reading isolates motion from text: the UNet's one-step clean-clip estimate from pure noise
(the last training timestep) for each pan caption. It is the model's mean guess given the caption
alone, so it shows whether the text, rather than the noisy input, carries the direction.

A fourth asks whether the UNet can tell forwards from backwards at all: a pan left is a pan right
played backwards, so a UNet whose output merely reverses when its input is reversed cannot choose
between them, whatever the text says.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch

from cav_core import SampleSettings, clean_estimate, decode_latents, encode_frames, encode_prompts, load_base, sample_video
from cav_core.shapes_world import architecture as arch
from cav_core.shapes_world.measure import read_clip
from cav_core.shapes_world.scenes import random_scene, render

HELD_OUT_SEED = 90210
_PAN_ANGLE = {"right": 0, "down_right": 45, "down": 90, "down_left": 135, "left": 180,
              "up_left": 225, "up": 270, "up_right": 315}


def measure(count: int = 48, steps: int = 25, base=None, ceiling: bool = False) -> dict:
    """Accuracy per attribute on ``count`` held-out captions; ``ceiling`` reads VAE round trips of
    the rendered clips instead of samples."""
    base = base or load_base("toy")
    rng = np.random.default_rng(HELD_OUT_SEED)
    hits = {"colour": [], "shape": [], "background": [], "pan_direction": []}
    for i in range(count):
        scene = random_scene(rng)
        if ceiling:
            with torch.no_grad():
                clip = decode_latents(base.vae, encode_frames(base.vae, render(scene)).permute(1, 0, 2, 3))
        else:
            clip = sample_video(base, SampleSettings(prompt=scene.caption(), seed=i, steps=steps))
        r = read_clip(clip)
        hits["colour"].append(r.colour == scene.colour)
        hits["shape"].append(r.shape == scene.shape)
        hits["background"].append(r.background == scene.background)
        if scene.motion in _PAN_ANGLE:
            pan = _pan_travel(r.trajectory, scene.motion)
            hits["pan_direction"].append(pan is not None and pan[0] <= 45)
    return {k: {"accuracy": float(np.mean(v)) if v else float("nan"), "n": len(v)} for k, v in hits.items()}


def _pan_travel(trajectory: np.ndarray, motion: str) -> tuple[float, float] | None:
    """(angle error in degrees, travel in px) of the net displacement against the pan's direction;
    None when the object is found in fewer than two frames."""
    ok = np.isfinite(trajectory[:, 0])
    if ok.sum() < 2:
        return None
    d = trajectory[ok][-1] - trajectory[ok][0]
    angle = math.degrees(math.atan2(d[1], d[0])) % 360
    return min(abs(angle - _PAN_ANGLE[motion]), 360 - abs(angle - _PAN_ANGLE[motion])), float(np.hypot(*d))


def _pure_noise(unet, seed: int) -> torch.Tensor:
    """Gaussian latents for one native shapes-world clip [1, C, F, h, w]."""
    side = arch.PIXELS // arch.LATENT_DOWNSCALE
    return torch.randn(1, unet.config.in_channels, arch.FRAMES, side, side,
                       generator=torch.Generator().manual_seed(seed))


def pure_noise_motion(base, count: int = 48, seed: int = 0) -> dict:
    """Pan direction of the one-step clean-clip estimate from pure noise, over the pans among
    ``count`` held-out captions: accuracy within 45 degrees and the median travel in px (a rendered
    pan travels 27 px)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(base.scheduler_config)
    t = torch.tensor([scheduler.config.num_train_timesteps - 1])
    rng = np.random.default_rng(HELD_OUT_SEED)
    scenes = [s for s in (random_scene(rng) for _ in range(count)) if s.motion in _PAN_ANGLE]
    hits, travel = [], []
    for i, scene in enumerate(scenes):
        noise = _pure_noise(base.unet, seed + i)
        with torch.no_grad():
            out = base.unet(noise, t, encode_prompts(base, [scene.caption()])).sample
            x0 = clean_estimate(scheduler, noise, out, t)
            pan = _pan_travel(read_clip(decode_latents(base.vae, x0[0])).trajectory, scene.motion)
        hits.append(pan is not None and pan[0] <= 45)
        travel.append(pan[1] if pan else 0.0)
    return {"pan_direction": {"accuracy": float(np.mean(hits)), "n": len(hits)},
            "median_travel_px": float(np.median(travel))}


def time_reversal_asymmetry(unet, text_states: torch.Tensor, timestep: int, seed: int = 0) -> float:
    """How much ``unet``'s output on reversed-time noise differs from its reversed output, relative
    to the output's size: 0 means forwards and backwards are indistinguishable to it.

    diffusers' UNet3D starts at exactly 0: its temporal attention has no positional embedding and
    its temporal convolutions start as the identity (last layer zeroed), so only training can break
    the symmetry, through those convolutions' kernels and zero padding."""
    noise = _pure_noise(unet, seed)
    t = torch.tensor([timestep])
    with torch.no_grad():
        out = unet(noise, t, text_states).sample
        reversed_out = unet(noise.flip(2), t, text_states).sample.flip(2)
    return float((out - reversed_out).abs().mean() / out.abs().mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--base", default="toy", help="the bundled model (toy) or a model folder")
    args = p.parse_args(argv)
    base = load_base(args.base)
    result = {"samples": measure(args.count, args.steps, base),
              "vae_round_trip_ceiling": measure(args.count, base=base, ceiling=True),
              "x0_from_pure_noise": pure_noise_motion(base, args.count),
              "time_reversal_asymmetry_at_last_timestep": time_reversal_asymmetry(
                  base.unet, encode_prompts(base, ["a red square moving right on a white background"]),
                  base.scheduler_config["num_train_timesteps"] - 1)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
