"""How well the base shapes-world model follows captions it never saw (for the model card).

    python -m cav_core.shapes_world.prompt_following --count 48

Held-out captions are drawn with a seed the training never used. Each sample is read back for
colour, shape and background; the motion direction is checked on the eight pans (net displacement
within 45 degrees of the caption's direction).
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from ..base_model import load_base
from ..sampling import SampleSettings, sample_video
from .measure import read_clip
from .scenes import random_scene

HELD_OUT_SEED = 90210
_PAN_ANGLE = {"right": 0, "down_right": 45, "down": 90, "down_left": 135, "left": 180,
              "up_left": 225, "up": 270, "up_right": 315}


def measure(count: int = 48, steps: int = 25, base=None) -> dict:
    base = base or load_base("toy")
    rng = np.random.default_rng(HELD_OUT_SEED)
    hits = {"colour": [], "shape": [], "background": [], "pan_direction": []}
    for i in range(count):
        scene = random_scene(rng)
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
    args = p.parse_args(argv)
    print(json.dumps(measure(args.count, args.steps), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
