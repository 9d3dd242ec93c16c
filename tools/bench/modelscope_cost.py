"""What training and sampling cost at ModelScope 1.7B size, through the engine's own code.

    python -m tools.bench.modelscope_cost                  # on the GPU (CUDA); about 2 minutes on an H200
    python -m tools.bench.modelscope_cost --small --device cpu --steps 3   # a narrow UNet, to check the script

The base is random-init, built from ModelScope's real UNet config (tests/data/modelscope_unet_config.json),
an SD-sized VAE and a 1024-wide, 23-layer CLIP text encoder: no weights can be downloaded here, and what
a step costs does not depend on the weights' values. Every configuration runs ``train_motion`` or
``sample_video`` as the CLI and the nodes do. Seconds are per step, the median after warm-up steps;
memory is the CUDA peak during the run (the UNet's weights included; the VAE and text encoder are on
the device only while they encode, as when the CLI trains), or on the CPU the process's peak resident
memory during the row (libraries, the VAE and text encoder, and all). Ratios are against the first row of
each table, measured in the same run. A configuration that fails is reported with its error, not skipped.
Every row but the default's runs without a memory target (``ComputeSettings.memory_target_gib``), as
it was measured before there was one; the Goal line holds the default against the fastest T-LoRA row.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import traceback

import numpy as np
import torch

from cav_core import (AbsorberSettings, BaseModel, ComputeSettings, Hooks, MotionSettings, SampleSettings,
                      sample_video, train_absorber, train_motion)
from tools.bench.cpu_cost import process_status_mib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNET_CONFIG = os.path.join(ROOT, "tests", "data", "modelscope_unet_config.json")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_ROW = (f"bf16 weights, bf16 autocast, the default memory target ({ComputeSettings.memory_target_gib:g} GiB: "
               "the blocks that keep the most recomputed, as few as fit)")
MOTION_TITLE = "Stage 2: T-LoRA (paper: temporal attention, rank 4), batch 1"


def build_base(device: torch.device, dtype: torch.dtype, small: bool) -> BaseModel:
    """A random-init base at ModelScope's size (or a narrow one with ``small``), built on ``device``."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from cav_core.shapes_world.architecture import build_scheduler, build_tokenizer

    unet_cfg = dict(UNet3DConditionModel.load_config(UNET_CONFIG))
    vae_channels, text = [128, 256, 512, 512], dict(hidden_size=1024, intermediate_size=4096,
                                                    num_hidden_layers=23, num_attention_heads=16)
    if small:
        unet_cfg.update(block_out_channels=[32, 64, 64, 64], attention_head_dim=8, norm_num_groups=8,
                        cross_attention_dim=64)
        vae_channels, text = [32, 32, 64, 64], dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                    num_attention_heads=2)
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet3DConditionModel.from_config(unet_cfg).to(dtype)
        vae = AutoencoderKL(block_out_channels=vae_channels, layers_per_block=2, latent_channels=4,
                            norm_num_groups=32 if not small else 8,
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length, hidden_act="gelu",
            bos_token_id=0, eos_token_id=1, pad_token_id=1, **text)).to(dtype)
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False).eval()
    # The encoders wait on the CPU and go to the device only while they encode, as training moves them:
    # a base loaded by the CLI is released of them once latents and text states are cached.
    vae.cpu(), text_encoder.cpu()
    return BaseModel("modelscope-size (random init)", "", unet, vae, text_encoder, tokenizer,
                     dict(build_scheduler().config))


class Clock:
    """Per-step wall times from the training hook (each step ends with a host sync on the loss)."""

    def __init__(self, device: torch.device):
        self.device, self.stamps = device, []

    def __call__(self, *_):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def per_step(self, warmup: int) -> float:
        gaps = np.diff(self.stamps)[warmup:]
        return statistics.median(gaps) if len(gaps) else float("nan")


def measure(device: torch.device, run, warmup: int) -> dict:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    elif os.path.exists("/proc/self/clear_refs"):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: the peak resident memory starts again from what the process holds now
    clock = Clock(device)
    clock()
    result = run(clock)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
    else:
        peak_mib = process_status_mib("VmHWM")
        peak = peak_mib / 1024 if peak_mib is not None else float("nan")
    plan = getattr(result, "memory_plan", None)
    return {"s_per_step": clock.per_step(warmup), "peak_gib": peak,
            "plan": plan.describe() if plan is not None else ""}


def table(title: str, rows: list[tuple[str, dict]]) -> str:
    lines = [f"\n## {title}", "| configuration | s/step | x first row | peak GiB | x first row |",
             "|---|---|---|---|---|"]
    first = next((r for _, r in rows if "error" not in r), None)
    for name, r in rows:
        if "error" in r:
            lines.append(f"| {name} | FAILED: {r['error']} | | | |")
            continue
        t, m = r["s_per_step"], r["peak_gib"]
        lines.append(f"| {name} | {t:.3f} | {t / first['s_per_step']:.2f} | {m:.1f} | "
                     f"{m / first['peak_gib']:.2f} |")
    plans = [f"- {name}: {r['plan']}" for name, r in rows if r.get("plan")]
    return "\n".join(lines + ([""] + plans if plans else []))


GOAL_PEAK_GIB, GOAL_STEP_RATIO = 6.0, 1.3  # a T-LoRA step at ModelScope size, by default


def goal(rows: list[tuple[str, dict]], device: torch.device) -> str:
    """The default T-LoRA row against the goal: its peak, and its step against the fastest row's."""
    default = dict(rows).get(DEFAULT_ROW)
    timed = [r["s_per_step"] for _, r in rows if "error" not in r]
    if default is None or "error" in default or not timed:
        return ""
    ratio = default["s_per_step"] / min(timed)
    met = default["peak_gib"] <= GOAL_PEAK_GIB and ratio <= GOAL_STEP_RATIO
    where = "" if device.type == "cuda" else " (on the CPU: the process's peak, not a GPU's)"
    return (f"\n\nGoal, a T-LoRA step in <= {GOAL_PEAK_GIB:g} GiB at <= {GOAL_STEP_RATIO:g}x the fastest row's step, "
            f"by default: {default['peak_gib']:.1f} GiB{where} at {ratio:.2f}x "
            f"({default['s_per_step']:.3f} s against {min(timed):.3f} s): {'met' if met else 'not met'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="a narrow UNet (checks the script, measures nothing)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", default="256",
                   help="frame side, or WIDTHxHEIGHT (ModelScope: 256; ZeroScope v2 576w: 576x320)")
    p.add_argument("--steps", type=int, default=12, help="training steps per configuration")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--sample-steps", type=int, default=10)
    p.add_argument("--only", default="motion,absorber,sampling", help="which tables: motion, absorber, sampling")
    p.add_argument("--out", help="also write the tables here (markdown)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    width, height = (int(v) for v in args.size.split("x")) if "x" in args.size else (int(args.size),) * 2
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, height, width, 3), dtype=np.uint8)
    header = [f"# ModelScope-size cost on {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}",
              f"torch {torch.__version__}; {args.frames} frames at {width}x{height}; "
              f"{args.steps} training steps per row (median after {args.warmup}); "
              f"sampling {args.sample_steps} steps with guidance"]
    print("\n".join(header), flush=True)
    bases: dict[str, BaseModel] = {}

    def base(dtype: str) -> BaseModel:
        if dtype not in bases:
            bases.clear()  # one base in memory at a time
            if device.type == "cuda":
                torch.cuda.empty_cache()
            bases[dtype] = build_base(device, DTYPES[dtype], args.small)
        return bases[dtype]

    def compute(precision: str, checkpointing: bool, recompute_feed_forwards: bool = False,
                lean_backward: bool = True, memory_target: float | None = None) -> ComputeSettings:
        return ComputeSettings(device=str(device), mixed_precision=precision, gradient_checkpointing=checkpointing,
                               recompute_feed_forwards=recompute_feed_forwards, lean_backward=lean_backward,
                               memory_target_gib=memory_target)

    # Each row: (name, weight dtype, run(base, clock)).
    def motion_row(precision: str, checkpointing: bool, convs: bool = False, recompute_feed_forwards: bool = False,
                   lean_backward: bool = True, memory_target: float | None = None):
        settings = MotionSettings(prompt="a red square moving on a white background", steps=args.steps,
                                  rank=16 if convs else 4, include_temporal_convs=convs)
        chosen = compute(precision, checkpointing, recompute_feed_forwards, lean_backward, memory_target)
        return lambda b, clock: train_motion(b, frames, settings, compute=chosen, hooks=Hooks(on_progress=clock))

    def absorber_row(precision: str, checkpointing: bool):
        settings = AbsorberSettings(kind="dual", prompt="a red square on a white background", steps=args.steps,
                                    batch=4)
        return lambda b, clock: train_absorber(b, frames, settings, compute=compute(precision, checkpointing),
                                               hooks=Hooks(on_progress=clock))

    def sample_row(precision: str):
        s = SampleSettings(prompt="a red square moving on a white background", steps=args.sample_steps,
                           size=(width, height), frames=args.frames)
        return lambda b, clock: sample_video(b, s, device=device, mixed_precision=precision, on_step=clock)

    # (key for --only, title, warm-up steps, rows)
    plan = [
        ("motion", MOTION_TITLE, args.warmup, [
            ("fp32 weights, no autocast", "fp32", motion_row("no", False)),
            ("fp32 weights, no autocast, feed-forwards recomputed", "fp32",
             motion_row("no", False, recompute_feed_forwards=True)),
            ("fp32 weights, bf16 autocast", "fp32", motion_row("bf16", False)),
            ("fp32 weights, bf16 autocast, checkpointing", "fp32", motion_row("bf16", True)),
            ("bf16 weights, bf16 autocast", "bf16", motion_row("bf16", False)),
            (DEFAULT_ROW, "bf16", motion_row("bf16", False, memory_target=ComputeSettings.memory_target_gib)),
            ("bf16 weights, bf16 autocast, frozen layers keeping all autograd saves", "bf16",
             motion_row("bf16", False, lean_backward=False)),
            ("bf16 weights, bf16 autocast, feed-forwards recomputed", "bf16",
             motion_row("bf16", False, recompute_feed_forwards=True)),
            ("bf16 weights, bf16 autocast, checkpointing", "bf16", motion_row("bf16", True)),
            ("bf16 weights, + temporal convs rank 16 (the demo's T-LoRA)", "bf16", motion_row("bf16", False, True)),
            ("fp16 weights, fp16 autocast + loss scaling", "fp16", motion_row("fp16", False)),
        ]),
        ("absorber", "Stage 1: dual absorber (S-LoRA + token), batch 4 crops", args.warmup, [
            ("fp32 weights, no autocast", "fp32", absorber_row("no", False)),
            ("bf16 weights, bf16 autocast", "bf16", absorber_row("bf16", False)),
            ("bf16 weights, bf16 autocast, checkpointing", "bf16", absorber_row("bf16", True)),
        ]),
        ("sampling", "Sampling (DDIM, guidance: batch 2 through the UNet)", 1, [
            ("fp32 weights", "fp32", sample_row("no")),
            ("fp32 weights, bf16 autocast", "fp32", sample_row("bf16")),
            ("bf16 weights", "bf16", sample_row("bf16")),
            ("fp16 weights", "fp16", sample_row("fp16")),
        ]),
    ]
    wanted = args.only.split(",")
    plan = [(title, warmup, rows) for key, title, warmup, rows in plan if key in wanted]
    # Grouped by weight dtype so each base is built once.
    jobs = [(ti, ri) for ti, (_, _, rows) in enumerate(plan) for ri in range(len(rows))]
    jobs.sort(key=lambda j: list(DTYPES).index(plan[j[0]][2][j[1]][1]))
    results: dict[tuple[int, int], dict] = {}
    for ti, ri in jobs:
        title, warmup, rows = plan[ti]
        name, weights, run = rows[ri]
        start = time.perf_counter()
        try:
            b = base(weights)
            results[ti, ri] = measure(device, lambda clock: run(b, clock), warmup)
        except Exception as e:  # noqa: BLE001 - a failing configuration is a result to report
            results[ti, ri] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
            traceback.print_exc()
        print(f"{title[:8]} | {name}: {results[ti, ri]} ({time.perf_counter() - start:.1f} s)", flush=True)
    report = "\n".join(header) + "".join(
        table(title, [(row[0], results[ti, ri]) for ri, row in enumerate(rows)])
        + (goal([(row[0], results[ti, ri]) for ri, row in enumerate(rows)], device) if title == MOTION_TITLE else "")
        for ti, (title, _, rows) in enumerate(plan))
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
