"""Evaluation on the shapes world: is the reference's motion learned, and not its appearance?

    python -m tools.evaluate --out docs/eval

For each bundled novel-motion reference, trains T-LoRAs with each absorber kind (none, slora, ti,
dual, and dual with its token left out of stage 2's caption) and a MotionDirector-style joint
baseline at the same rank, then samples prompts whose colour, shape and background all differ
from the reference, over several seeds. Every generated clip is read back with
:mod:`cav_core.shapes_world.measure`:

- motion fidelity: cosine between the frame-to-frame displacements of the generated object and of
  the reference object (translation-invariant; 1 = same motion);
- text alignment: share of colour / shape / background that match the prompt;
- appearance leakage: share of colour / shape / background that match the reference instead;
- diversity: mean absolute pixel difference between samples of one prompt across seeds.

Writes results.json (every sample), table.md (overall and per reference), metrics.png and a
comparison GIF per reference; finished (reference, variant) pairs are kept under ``parts/`` so an
interrupted run resumes.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import asdict

import numpy as np
from PIL import Image

from cav_core import (ComputeSettings, Recipe, SampleSettings, VideoOptions, atomic_path, load_base, read_video,
                      sample_video, train_absorber, train_motion, write_video)
from cav_core.plots import metric_bars_image, side_by_side
from cav_core.shapes_world.measure import read_clip, velocity_similarity
from cav_core.shapes_world.references import REFERENCES, appearance_caption, reference_caption, reference_path

from .motiondirector_baseline import train_motiondirector

# The paper's T-LoRA (its settings: temporal attention, rank 4) after each absorber kind, and
# MotionDirector at the same rank; then the same with the suffix _convs: the T-LoRA of the base's own
# recipe (on the bundled base: attention and temporal convolutions, rank 16, its step count), so that
# the absorber ablation is also run where there is a motion to leak into. dual_no_token: the dual
# absorber, but stage 2's caption leaves its TI token out, so stage 2 sees only its S-LoRA; every
# other variant keeps the token in (the ablation sets this axis itself, whatever the recipe says).
METHODS = ("none", "slora", "ti", "dual", "dual_no_token", "motiondirector")
NO_TOKEN = "_no_token"
CONVS = "_convs"
VARIANTS = ("base", *METHODS, *(m + CONVS for m in METHODS))
# Prompts that differ from each reference in colour, shape and background alike.
PROMPTS = {
    "zigzag": ("a green circle moving on a black background", "a yellow triangle moving on a gray background",
               "a blue triangle moving on a black background"),
    "figure_eight": ("a red square moving on a white background", "a yellow triangle moving on a black background",
                     "a green square moving on a white background"),
    "wave": ("a blue square moving on a white background", "a green circle moving on a gray background",
             "a white circle moving on a gray background"),
}


def _parse_prompt(prompt: str) -> tuple[str, str, str]:
    words = prompt.split()
    return words[1], words[2], words[-2]  # "a {colour} {shape} ... on a {background} background"


def _train(variant: str, base, frames, name: str, steps: dict, seed: int):
    if variant == "base":
        return None
    convs = variant.endswith(CONVS)
    recipe = base.recipe if convs else Recipe()
    method = variant[: -len(CONVS)] if convs else variant
    motion = recipe.motion_settings(prompt=reference_caption(name), seed=seed,
                                    steps=steps.get("convs_motion") if convs else steps.get("motion"),
                                    min_timestep=steps.get("convs_min_timestep") if convs else None,
                                    lr=steps.get("convs_lr") if convs else None,
                                    absorber_token_in_prompt=not method.endswith(NO_TOKEN))
    if method == "motiondirector":
        return train_motiondirector(base, frames, motion)[0]
    absorber = Recipe().absorber_settings(kind=method.removesuffix(NO_TOKEN), prompt=appearance_caption(name),
                                          steps=steps.get("absorber"), seed=seed)
    compute = ComputeSettings(bf16_activations=steps.get("bf16_activations", False))
    return train_motion(base, frames, motion, train_absorber(base, frames, absorber, compute), compute)[0]


ATTRIBUTES = ("colour", "shape", "background")


def _evaluate_variant(base, name: str, variant: str, ref, ref_reading, seeds, steps, sample_steps):
    """Train one variant on one reference and measure its samples: (rows, first sample)."""
    ref_attrs = (ref_reading.colour, ref_reading.shape, ref_reading.background)
    started = time.time()
    lora = _train(variant, base, ref, name, steps, seed=0)
    train_s = time.time() - started
    loras = [(lora, 1.0)] if lora is not None else []
    rows, first = [], None
    for prompt in PROMPTS[name]:
        samples = []
        for seed in seeds:
            clip = sample_video(base, SampleSettings(prompt=prompt, seed=seed, steps=sample_steps), loras)
            samples.append(clip)
            r = read_clip(clip)
            got, want = (r.colour, r.shape, r.background), _parse_prompt(prompt)
            row = {"motion": name, "variant": variant, "prompt": prompt, "seed": seed,
                   "fidelity": velocity_similarity(r.trajectory, ref_reading.trajectory),
                   "found": r.found, "read_back": got, "train_seconds": round(train_s, 1)}
            for attr, g, w, x in zip(ATTRIBUTES, got, want, ref_attrs):
                row[f"alignment_{attr}"], row[f"leakage_{attr}"] = float(g == w), float(g == x)
            for kind in ("alignment", "leakage"):
                row[kind] = float(np.mean([row[f"{kind}_{attr}"] for attr in ATTRIBUTES]))
            rows.append(row)
        pairs = list(itertools.combinations(samples, 2))
        diversity = float(np.mean([np.abs(a - b).mean() for a, b in pairs])) if pairs else float("nan")
        for row in rows[-len(seeds):]:
            row["diversity"] = diversity
        if first is None:
            first = samples[0]
    return rows, first


def evaluate(out: str, motions=tuple(PROMPTS), variants=VARIANTS, seeds=(0, 1), steps=None,
             sample_steps: int = 25, log=print, base_source: str = "toy") -> dict:
    """Run the ablation. Each (reference, variant) is kept under ``out/parts`` as it finishes, so an
    interrupted run started again with the same settings goes on where it stopped, and a run with
    more references or variants only measures what is new."""
    steps = steps or {}  # a stage left out trains for its settings' steps (the paper's, or the recipe's)
    settings = {"motions": list(motions), "variants": list(variants), "seeds": list(seeds), "train_steps": steps,
                "sample_steps": sample_steps, "prompts": {m: list(PROMPTS[m]) for m in motions}, "base": base_source}
    parts = os.path.join(out, "parts")
    os.makedirs(parts, exist_ok=True)
    base = load_base(base_source)
    weights = _weights_id(base.path)
    rows = []
    for name in motions:
        ref = read_video(reference_path(name), VideoOptions(max_frames=base.default_frames)).frames
        ref_reading = read_clip(ref)
        firsts = {}
        for variant in variants:
            stem = os.path.join(parts, f"{name}__{variant}")
            # What this pair's numbers depend on (not the other references or variants run beside it).
            key = {"seeds": list(seeds), "train_steps": steps, "sample_steps": sample_steps, "recipe": asdict(base.recipe),
                   "prompts": list(PROMPTS[name]), "base": weights}
            part = _load_part(stem, key)
            if part is None:
                part = _evaluate_variant(base, name, variant, ref, ref_reading, seeds, steps, sample_steps)
                _save_part(stem, key, *part)
                note = f"trained in {part[0][0]['train_seconds']:.0f} s"
            else:
                note = "kept from an earlier run with the same settings"
            rows.extend(part[0])
            firsts[variant] = part[1]
            log(f"{name} / {variant}: {note}; mean fidelity {np.mean([r['fidelity'] for r in part[0]]):.2f}")
        cols = [ref] + [firsts[v] for v in variants]
        write_video(os.path.join(out, f"{name}_comparison.gif"), side_by_side(cols, ["reference", *variants]),
                    base.default_fps)
    summary = summarize(rows, variants)
    by_motion = {m: summarize([r for r in rows if r["motion"] == m], variants) for m in motions}
    with atomic_path(os.path.join(out, "results.json")) as tmp, open(tmp, "w") as f:
        json.dump({"settings": settings, "summary": summary, "by_motion": by_motion, "rows": rows}, f, indent=2)
    with atomic_path(os.path.join(out, "table.md")) as tmp, open(tmp, "w") as f:
        f.write(markdown_table(summary))
        for m, s in by_motion.items():
            f.write(f"\n**{m}** only:\n\n" + markdown_table(s))
    with atomic_path(os.path.join(out, "metrics.png")) as tmp:
        Image.fromarray(metric_bars_image(summary, ("fidelity", "alignment", "leakage"))).save(tmp)
    return summary


def _weights_id(folder: str) -> str:
    """Digest of a model folder's weight files: kept results are reused only for the same weights."""
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(f for f in files if f.endswith(".safetensors")):
            with open(os.path.join(root, name), "rb") as f:
                digest.update(name.encode())
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


def _save_part(stem: str, key: dict, rows: list[dict], first) -> None:
    with atomic_path(stem + ".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(first), allow_pickle=False)
    with atomic_path(stem + ".json") as tmp, open(tmp, "w") as f:
        json.dump({"settings": key, "rows": rows}, f)


def _load_part(stem: str, key: dict):
    if not (os.path.isfile(stem + ".json") and os.path.isfile(stem + ".npy")):
        return None
    with open(stem + ".json") as f:
        saved = json.load(f)
    if saved["settings"] != json.loads(json.dumps(key)):
        return None  # other settings: measure again
    return saved["rows"], np.load(stem + ".npy", allow_pickle=False)


METRICS = ("fidelity", "alignment", "leakage", "diversity", "found",
           *(f"{k}_{a}" for k in ("alignment", "leakage") for a in ATTRIBUTES))


def summarize(rows: list[dict], variants) -> dict:
    out = {}
    for v in variants:
        sel = [r for r in rows if r["variant"] == v]
        if sel:
            out[v] = {k: float(np.mean([r[k] for r in sel])) for k in METRICS}
            out[v]["samples"] = len(sel)
    return out


def markdown_table(summary: dict) -> str:
    lines = ["| variant | motion fidelity ↑ | text alignment ↑ | appearance leakage ↓ "
             "(colour / shape / background) | diversity ↑ | object found | samples |",
             "|---|---|---|---|---|---|---|"]
    for v, s in summary.items():
        per_attr = " / ".join(f"{s[f'leakage_{a}']:.2f}" for a in ATTRIBUTES)
        lines.append(f"| {v} | {s['fidelity']:.3f} | {s['alignment']:.3f} | {s['leakage']:.3f} ({per_attr}) | "
                     f"{s['diversity']:.4f} | {s['found']:.2f} | {s['samples']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--motions", nargs="+", default=list(PROMPTS), choices=list(REFERENCES))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--absorber-steps", type=int, help="default: the paper's")
    p.add_argument("--motion-steps", type=int, help="T-LoRA steps of the paper-setting variants (default: the paper's)")
    p.add_argument("--convs-motion-steps", type=int, help="T-LoRA steps of the *_convs variants (default: the recipe's)")
    p.add_argument("--convs-lr", type=float, help="T-LoRA learning rate of the *_convs variants (default: the recipe's)")
    p.add_argument("--convs-min-timestep", type=int,
                   help="lowest training timestep of the *_convs variants' T-LoRA (default: the recipe's)")
    p.add_argument("--bf16-activations", action="store_true",
                   help="train the project's variants keeping the activations saved for backward in bf16")
    p.add_argument("--sample-steps", type=int, default=25)
    p.add_argument("--base", default="toy", help="the bundled shapes-world model (toy) or another export of it")
    args = p.parse_args(argv)
    summary = evaluate(args.out, args.motions, args.variants, tuple(args.seeds),
                       {k: v for k, v in {"absorber": args.absorber_steps, "motion": args.motion_steps,
                                          "convs_motion": args.convs_motion_steps,
                                          "convs_min_timestep": args.convs_min_timestep,
                                          "convs_lr": args.convs_lr,
                                          "bf16_activations": args.bf16_activations or None}.items()
                        if v is not None},
                       args.sample_steps,
                       log=lambda s: print(s, file=sys.stderr, flush=True), base_source=args.base)
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
