"""Does ``train --base toy`` with no tuning flags learn a path nobody taught the project?

    python -m tools.unseen_motion --out runs/unseen_motion

Draws a clip with OpenCV, outside the shapes world's own renderer and its motion vocabulary: a
yellow disc on black running a triangular loop (right along the bottom, up-left to the apex,
down-left back). Then runs the command line exactly as a user would (``python -m cav_core train
--base toy --video clip.mp4 --prompt ... --out ...``, no other flag, so the bundled base's recipe
decides every setting), samples new appearances with and without the T-LoRA, and reads the
object's path back from each sample. Motion fidelity is the cosine between the frame-to-frame
displacements of the sample and of the drawn clip (1 = the same motion). Writes report.json,
the clip, the LoRA and a comparison GIF into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
import numpy as np

from cav_core import SampleSettings, load_adapter_file, load_base, sample_video, write_video
from cav_core.cli import main as cli_main
from cav_core.plots import side_by_side
from cav_core.shapes_world.measure import read_clip, velocity_similarity

SIDE, FRAMES, FPS = 64, 16, 8.0
CAPTION = "a yellow circle moving on a black background"
NEW_APPEARANCES = ("a red square moving on a white background", "a blue triangle moving on a gray background",
                   "a green square moving on a white background")


def triangle_loop(frames: int = FRAMES, side: int = SIDE) -> np.ndarray:
    """Centres [F, 2] (x, y) of a closed triangular loop, at constant speed."""
    corners = np.array([[0.22, 0.74], [0.78, 0.74], [0.5, 0.24], [0.22, 0.74]]) * side
    lengths = np.linalg.norm(np.diff(corners, axis=0), axis=1)
    at = np.linspace(0, lengths.sum(), frames, endpoint=False)
    edges = np.concatenate([[0], np.cumsum(lengths)])
    out = []
    for d in at:
        i = min(int(np.searchsorted(edges, d, side="right")) - 1, len(lengths) - 1)
        out.append(corners[i] + (corners[i + 1] - corners[i]) * (d - edges[i]) / lengths[i])
    return np.array(out, np.float32)


def draw_clip(path_xy: np.ndarray) -> np.ndarray:
    clip = np.zeros((len(path_xy), SIDE, SIDE, 3), np.uint8)
    for frame, (x, y) in zip(clip, path_xy):
        cv2.circle(frame, (int(round(x)), int(round(y))), 7, (235, 210, 40), -1, lineType=cv2.LINE_AA)
    return clip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=2, help="samples per new appearance")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    clip = draw_clip(triangle_loop())
    clip_path = write_video(os.path.join(args.out, "triangle_loop.mp4"), clip, FPS)
    lora_path = os.path.join(args.out, "triangle_loop.safetensors")
    if not os.path.isfile(lora_path):
        code = cli_main(["train", "--base", "toy", "--video", clip_path, "--prompt", CAPTION, "--out", lora_path])
        if code:
            return code
    adapter = load_adapter_file(lora_path)
    base = load_base("toy")
    reference = read_clip(clip).trajectory
    rows, columns, labels = [], [clip], ["drawn clip"]
    for i, prompt in enumerate(NEW_APPEARANCES):
        for seed in range(args.seeds):
            settings = SampleSettings(prompt=prompt, seed=seed)
            with_lora = sample_video(base, settings, [(adapter.temporal, 1.0)])
            without = sample_video(base, settings)
            rows.append({"prompt": prompt, "seed": seed,
                         "fidelity_with_tlora": velocity_similarity(read_clip(with_lora).trajectory, reference),
                         "fidelity_base_only": velocity_similarity(read_clip(without).trajectory, reference),
                         "read_back": read_clip(with_lora).colour + " on " + read_clip(with_lora).background})
            if seed == 0:
                columns += [without, with_lora]
                labels += ["base", "T-LoRA"]
    write_video(os.path.join(args.out, "comparison.gif"), side_by_side(columns, labels), FPS)
    report = {"caption": CAPTION, "recipe": adapter.training.get("recipe"),
              "training": {k: adapter.training[k] for k in ("steps", "lr", "min_timestep", "rank",
                                                            "include_temporal_convs", "absorber_token_in_prompt")},
              "mean_fidelity_with_tlora": float(np.mean([r["fidelity_with_tlora"] for r in rows])),
              "mean_fidelity_base_only": float(np.mean([r["fidelity_base_only"] for r in rows])),
              "samples": rows}
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
