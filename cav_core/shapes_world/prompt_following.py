"""How well the base shapes-world model follows captions it never saw (for the model card).

    python -m cav_core.shapes_world.prompt_following --count 48

Held-out captions are drawn with a seed the training never used. Each sample is read back for
colour, shape and background; the motion direction is checked on the eight pans (net displacement
within 45 degrees of the caption's direction). The same captions' clips, rendered and passed through
the model's VAE and read back the same way, give the reader's ceiling: what a perfect UNet could
score through this VAE.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch

from ..base_model import load_base
from ..latents import decode_latents, encode_frames
from ..sampling import SampleSettings, sample_video
from .measure import read_clip
from .scenes import random_scene, render

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
            ok = np.isfinite(r.trajectory[:, 0])
            if ok.sum() >= 2:
                d = r.trajectory[ok][-1] - r.trajectory[ok][0]
                angle = math.degrees(math.atan2(d[1], d[0])) % 360
                err = min(abs(angle - _PAN_ANGLE[scene.motion]), 360 - abs(angle - _PAN_ANGLE[scene.motion]))
                hits["pan_direction"].append(err <= 45)
            else:
                hits["pan_direction"].append(False)
    return {k: {"accuracy": float(np.mean(v)) if v else float("nan"), "n": len(v)} for k, v in hits.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--base", default="toy", help="the bundled model (toy) or a model folder")
    args = p.parse_args(argv)
    base = load_base(args.base)
    result = {"samples": measure(args.count, args.steps, base),
              "vae_round_trip_ceiling": measure(args.count, base=base, ceiling=True)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
