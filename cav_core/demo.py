"""The one-shot demo on the bundled shapes-world model (README's first command).

A red square zigzags across a white background: a path the base model was never taught and
cannot produce from text. The demo learns that motion from the one clip with the bundled base's
recipe (dual absorber, then T-LoRA) and renders it with new shapes, colours and backgrounds, next
to the base model's attempt with the same prompt and seed.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from .adapter_file import save_adapter_file
from .base_model import load_base
from .files import atomic_path
from .motion_preview import training_preview, write_preview
from .plots import loss_curve_image, side_by_side
from .sampling import SampleSettings, sample_video
from .shapes_world.measure import read_clip, velocity_similarity
from .shapes_world.references import appearance_caption, reference_caption, reference_path
from .step_loop import Hooks
from .training import train_customization
from .video_io import VideoOptions, read_video, write_video

DEMO_REFERENCE = "zigzag"
NEW_APPEARANCES = (
    "a green circle moving on a black background",
    "a yellow triangle moving on a gray background",
    "a purple square moving on a white background",
)
SAMPLE_STEPS = 25
QUICK_STEPS = 2  # every stage and the sampler, for a smoke run (as in CI)


def _log(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def run_demo(out: str, quick: bool = False, quiet: bool = False, seed: int = 0) -> dict:
    """Train on the bundled zigzag with the bundled base's recipe, then sample new appearances."""
    os.makedirs(out, exist_ok=True)
    started = time.time()
    base = load_base("toy", encoders_reloadable=True)
    reference = read_video(reference_path(DEMO_REFERENCE), VideoOptions(max_frames=base.default_frames))
    write_video(os.path.join(out, "reference.mp4"), reference.frames, reference.fps)
    write_video(os.path.join(out, "reference.gif"), reference.frames, reference.fps)

    stage_ends: dict[str, float] = {}  # stage -> when its last step so far ended

    def progress(p):
        stage_ends[p.stage] = time.time()
        if not quiet and (p.step % 25 == 0 or p.step == p.total):
            _log(quiet, f"  {p.stage} step {p.step}/{p.total} loss {p.loss:.4f}")

    steps = QUICK_STEPS if quick else None  # None: the recipe's
    absorber = base.recipe.absorber_settings(prompt=appearance_caption(DEMO_REFERENCE), steps=steps, seed=seed)
    motion = base.recipe.motion_settings(prompt=reference_caption(DEMO_REFERENCE), steps=steps, seed=seed)
    _log(quiet, f"training on {reference_path(DEMO_REFERENCE)} with the {base.recipe.summary()}")
    training_started = time.time()
    result = train_customization(base, reference.frames, absorber, motion, hooks=Hooks(on_progress=progress))
    trained = time.time()
    lora_path = save_adapter_file(os.path.join(out, "zigzag_motion.safetensors"), result.adapter)
    plot = loss_curve_image(result.losses)
    from PIL import Image

    Image.fromarray(plot).save(os.path.join(out, "loss.png"))

    ref_path = read_clip(reference.frames).trajectory
    report = {"reference": reference_path(DEMO_REFERENCE), "lora": lora_path,
              "training_steps": {"absorber": absorber.steps, "motion": motion.steps}, "samples": []}
    columns, labels = [reference.frames], ["reference"]
    for i, prompt in enumerate(NEW_APPEARANCES):
        settings = SampleSettings(prompt=prompt, seed=seed + i, steps=QUICK_STEPS if quick else SAMPLE_STEPS)
        _log(quiet, f"sampling: {prompt}")
        with_lora = sample_video(base, settings, [(result.adapter.temporal, 1.0)])
        without = sample_video(base, settings)
        name = f"sample_{i}"
        for ext in (".mp4", ".gif"):
            write_video(os.path.join(out, name + ext), with_lora, base.default_fps)
        reading, base_reading = read_clip(with_lora), read_clip(without)
        report["samples"].append({
            "prompt": prompt, "file": name + ".mp4",
            "motion_fidelity_with_tlora": velocity_similarity(reading.trajectory, ref_path),
            "motion_fidelity_base_only": velocity_similarity(base_reading.trajectory, ref_path),
            "read_back": {"colour": reading.colour, "shape": reading.shape, "background": reading.background},
        })
        columns += [without, with_lora]
        labels += ["base", "T-LoRA"]
        if i == 0:  # the file's preview: the reference beside the motion with a new caption
            write_preview(lora_path, training_preview(reference.frames, with_lora, base.default_fps, prompt))
    comparison = side_by_side(columns, labels)
    write_video(os.path.join(out, "comparison.gif"), comparison, base.default_fps)
    write_video(os.path.join(out, "comparison.mp4"), comparison, base.default_fps)
    finished = time.time()
    report["seconds"] = round(finished - started, 1)
    absorber_end = stage_ends.get("absorber", training_started)
    report["seconds_by_part"] = {  # where the time went: loading, each training stage, then sampling and files
        "loading": round(training_started - started, 1), "absorber": round(absorber_end - training_started, 1),
        "motion": round(trained - absorber_end, 1), "sampling": round(finished - trained, 1)}
    with atomic_path(os.path.join(out, "report.json")) as tmp, open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    fid = np.mean([s["motion_fidelity_with_tlora"] for s in report["samples"]])
    fid_base = np.mean([s["motion_fidelity_base_only"] for s in report["samples"]])
    parts = ", ".join(f"{part} {seconds:g} s" for part, seconds in report["seconds_by_part"].items())
    _log(quiet, f"done in {report['seconds']} s ({parts}): motion fidelity (velocity cosine to the reference) "
                f"{fid:.2f} with the T-LoRA vs {fid_base:.2f} for the base model alone; see {out}")
    return report
