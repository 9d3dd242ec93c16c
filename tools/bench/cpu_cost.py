"""What training and sampling cost on the CPU, against a plain peft loop and a MotionDirector-style run.

    python -m tools.bench.cpu_cost --demo --out docs/bench/cpu.md   # the tables (a quiet machine: nothing else running)
    python -m tools.bench.cpu_cost --small --steps 3 --warmup 1 --frames 2 --size 64 --repeats 1   # checks the script
    python -m tools.bench.cpu_cost --base toy --steps 40 --warmup 5 --sample-steps 20 \
        --out docs/bench/cpu_shapes_world.md   # the bundled base: short steps need more of them

The base is random-init (what a step costs does not depend on the weights' values): ModelScope's UNet
config narrowed to block widths 64/128/256/256 (64.5 M parameters, head size 64, text width 768), an
SD-sized VAE and a CLIP ViT-L-sized text encoder. It is written once to a temporary folder and every row
loads it from there, as a user's base is loaded. Each row runs in a process of its own, so its peak
resident memory is its own (Linux's VmHWM, which starts afresh with the program; ``ru_maxrss`` would
carry over the peak of the process that launched it, here the one that built the base); beside it, what
the process holds as its first UNet forward starts (libraries, what the row keeps loaded and cached, the
UNet's weights). s/step is, for training, the median step after the warm-up steps (steps without
validation) and, for sampling, the mean step after the first (a schedule's re-fuses at the steps where
strengths change are part of what it costs); setup is the time from starting the row's process to the end
of its first step, less one step (imports, loading, encoding). All rows run in turn, ``--repeats`` rounds
of them, and each measure is a row's lowest over the rounds: on a shared machine a row's time can nearly
double from one process to the next, and the lowest is the one least disturbed. Beside each row's step
is its slowest round against its lowest, and the report says how steady the machine was before and after
the rows (``tools/bench/steadiness.py``): a goal a few percent away is judged only where both are near 1.
Ratios are against the first row of each table, measured in the same run, and for training also against the
MotionDirector-style row (the project's stand-in for MotionDirector's own single-video config: spatial
and temporal LoRA at rank 32, temporal feed-forward included, gradient checkpointing on). ``--demo`` also
runs the one-shot demo (``python -m cav_core demo``) in a process of its own and holds its time to the
demo goal. For each goal not met, the Goals table says what stands in the way in the run's own figures:
for memory, what the process holds as its first step starts against what the goal allows; for time, the
ratio round by round (the two rows ran one after the other in each round) and the share of the step that
is the frozen base's own (a row that trains nothing measures it: about the least a T-LoRA step can cost,
as its gradients pass through every layer but the first); for the demo, where its time went. ``--base``
measures a base of one's own (a folder, or ``toy`` for the bundled shapes-world base) instead: its recipe
sets the T-LoRA rows' settings and the clip's size, so the default row is what ``python -m cav_core
train`` does on it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from tools.bench import steadiness
from tools.bench.turns import StepTurns

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNET_CONFIG = os.path.join(ROOT, "tests", "data", "modelscope_unet_config.json")
PROMPT = "a red square moving on a white background"
VALIDATION_STEPS = 10  # Hooks' default

FLOOR_ROW = "frozen_base"  # nothing trained: what the step goal's shortfall is measured against
# row key -> (table, label); the first row of each table is its baseline.
TRAINING_ROWS = {
    "plain": "plain peft T-LoRA loop (VAE and text encoder every step)",
    "motiondirector": "MotionDirector-style: spatial + temporal LoRA rank 32, feed-forward, checkpointing",
    "motiondirector_tcmalloc": "MotionDirector-style, run with tcmalloc as the project's rows are",
    "tlora": "T-LoRA, the default (the base's recipe, no absorber; VAE and text encoder released once used; "
             "frozen layers keep only what gradients need)",
    "tlora_all_saved": "T-LoRA with frozen layers keeping all autograd saves (`ComputeSettings(lean_backward=False)`)",
    "tlora_factored": "T-LoRA with every LoRA computed factored, as peft computes it "
                      "(`ComputeSettings(merged_weight_loras=False)`)",
    "tlora_recompute_ff": "T-LoRA recomputing the feed-forwards in backward (`--recompute-feed-forwards`)",
    "tlora_system_malloc": "T-LoRA, the default, on the C library's malloc (`CAV_ALLOCATOR=system`)",
    "tlora_keep_encoders": "T-LoRA keeping the VAE and text encoder loaded (as in ComfyUI, which shares them)",
    "tlora_checkpointing": "T-LoRA with gradient checkpointing",
    "tlora_bf16": "T-LoRA with bf16 autocast (fp32 weights and LoRA)",
    "tlora_bf16_checkpointing": "T-LoRA with bf16 autocast and gradient checkpointing",
    "tlora_saved_bf16": "T-LoRA keeping the activations saved for backward in bf16 (`--bf16-activations`)",
    "tlora_convs": "T-LoRA + temporal convolutions, rank 16",
    "tlora_validation": "T-LoRA with a validation sample every 4 steps (its time reported below)",
    FLOOR_ROW: "nothing trained: the frozen base's forward, and backward to its input, as a T-LoRA step runs "
               "them (about the least such a step costs: its gradients pass through every layer but the first)",
    "absorber": "dual absorber (S-LoRA + token), 4 crops a step",
}
SAMPLING_ROWS = {
    "sample_base": "base alone",
    "sample_fused": "two T-LoRAs stacked, fused",
    "sample_scheduled": "two T-LoRAs stacked, scheduled (one on 0-0.5 ramping 1 to 0, one on 0.3-1), fused",
    "sample_unfused": "two T-LoRAs stacked, unfused",
}

# The targets these measurements are held to: (what, row, against row, measure, at most).
GOALS = (
    ("default T-LoRA step", "tlora", "motiondirector", "s_per_step", 0.5),
    ("default T-LoRA peak memory", "tlora", "motiondirector", "peak_rss_mib", 0.6),
    ("sampling with two stacked, fused T-LoRAs", "sample_fused", "sample_base", "s_per_step", 1.05),
)
# Rows run with the C library's malloc: the stand-ins for others' programs, which run with it as they are
# started, and the default T-LoRA once more, to show what the allocator gives. Every other row runs as
# ``python -m cav_core`` does, with the allocator it chooses (cav_core.allocator).
SYSTEM_MALLOC_ROWS = ("plain", "motiondirector", "tlora_system_malloc")
# What one training configuration must meet at once: the goals held against the MotionDirector-style row.
BOTH_GOALS = tuple((measure, limit) for _, _, versus, measure, limit in GOALS if versus == "motiondirector")
DEMO_GOAL_S = 300  # the one-shot demo on 2 cores, at most
# Goals this benchmark cannot judge in its run, and where each is measured.
JUDGED_ELSEWHERE = (
    "setup ≤ 0.2× MotionDirector's own training script: its script is not part of the project, so it is "
    "timed outside it; the in-run setup against the MotionDirector-style row is in the Training table",
    "the demo at the same motion fidelity: the evaluation's measure over seeds and motions "
    "(`python -m tools.evaluate`), not the one seed the demo runs",
    "ModelScope size on a GPU in ≤ 6 GiB at ≤ 1.3× the fastest step: `python -m tools.bench.modelscope_cost` "
    "on a CUDA machine",
)
DEMO_ROW = "demo"
FRAMES, SIZE = 16, 128  # the random base's clip


def build_base_folder(folder: str, small: bool) -> str:
    """Write the random-init base as a diffusers text-to-video folder."""
    import torch
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from cav_core.shapes_world.architecture import build_scheduler, build_tokenizer

    unet_cfg = dict(UNet3DConditionModel.load_config(UNET_CONFIG))
    unet_cfg.update(block_out_channels=[64, 128, 256, 256], cross_attention_dim=768)
    vae_channels = [128, 256, 512, 512]
    text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
    if small:
        unet_cfg.update(block_out_channels=[32, 32, 64, 64], attention_head_dim=8, norm_num_groups=8,
                        cross_attention_dim=64)
        vae_channels = [32, 32, 64, 64]
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    unet = UNet3DConditionModel.from_config(unet_cfg)
    vae = AutoencoderKL(block_out_channels=vae_channels, layers_per_block=2, latent_channels=4,
                        norm_num_groups=8 if small else 32, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length, hidden_act="gelu",
        bos_token_id=0, eos_token_id=1, pad_token_id=1, **text))
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder),
                         ("tokenizer", tokenizer), ("scheduler", build_scheduler())):
        module.save_pretrained(os.path.join(folder, name))
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "TextToVideoSDPipeline", "unet": ["diffusers", "UNet3DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"]}, f)
    return folder


# ---- rows (each runs in its own process) --------------------------------------------------------------

def _plain_loop(base, frames, steps: int, clock) -> None:
    """The baseline: peft LoRA on the temporal attention, the VAE and text encoder run every step."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig, inject_adapter_in_model

    from cav_core import temporal_targets

    unet = base.unet
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=temporal_targets(unet)), unet)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    scheduler = DDPMScheduler.from_config(base.scheduler_config)
    pixels = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    ids = base.tokenizer([PROMPT], padding="max_length", max_length=base.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    for _ in range(steps):
        with torch.no_grad():
            latents = base.vae.encode(pixels).latent_dist.sample() * base.vae.config.scaling_factor
            latents = latents.permute(1, 0, 2, 3).unsqueeze(0)
            text = base.text_encoder(ids)[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (1,))
        loss = F.mse_loss(unet(scheduler.add_noise(latents, noise, t), t, text).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clock()


def _frozen_base_loop(base, frames, steps: int, clock) -> None:
    """What a T-LoRA step costs besides its adapters: the frozen UNet's forward and its backward to the
    noisy latents, with the kernels and saves the default training runs it with."""
    import torch
    import torch.nn.functional as F

    from cav_core import ComputeSettings, encode_clip, encode_prompts
    from cav_core.compute import temporal_convs_as_2d
    from cav_core.lean_backward import lean_backward

    unet, lean = base.unet, ComputeSettings().lean_backward
    unet.requires_grad_(False)
    with torch.no_grad():
        latents = encode_clip(base.vae, frames)
        text = encode_prompts(base, [PROMPT], "cpu")
    base.release_encoders()  # as the default T-LoRA row does: what it holds is the UNet and its work alone
    with temporal_convs_as_2d(unet, "cpu", lean), lean_backward(unet, lean):
        for _ in range(steps):
            noisy = torch.randn(latents.shape, requires_grad=True)
            t = torch.randint(0, 1000, (1,))
            F.mse_loss(unet(noisy, t, text).sample, latents).backward()  # any target costs the same
            clock()


def run_row_here(key: str, base, frames, args, clock) -> None:
    """Row ``key``'s training or sampling in this process, on ``base``, calling ``clock()`` after each step."""
    import torch

    from cav_core import (ComputeSettings, Hooks, LoraSchedule, LoraWeights, Recipe, SampleSettings, extract_lora,
                          inject_lora, remove_adapters, sample_video, temporal_targets, train_absorber, train_motion)

    def tick(progress) -> None:
        clock(progress.validation_seconds)

    hooks = Hooks(on_progress=tick, validate_every=4 if key == "tlora_validation" else 0)
    paper = Recipe()  # MotionDirector-style and absorber rows: the paper's settings on any base
    if key == "plain":
        _plain_loop(base, frames, args.steps, clock)
    elif key == FLOOR_ROW:
        _frozen_base_loop(base, frames, args.steps, clock)
    elif key.startswith("motiondirector"):
        from tools.motiondirector_baseline import train_motiondirector

        settings = paper.motion_settings(prompt=PROMPT, steps=args.steps, rank=32, include_feed_forward=True)
        train_motiondirector(base, frames, settings, compute=ComputeSettings(gradient_checkpointing=True),
                             on_step=lambda _: clock())
    elif key.startswith("tlora"):
        convs = key == "tlora_convs"
        settings = base.recipe.motion_settings(prompt=PROMPT, steps=args.steps, rank=16 if convs else None,
                                               include_temporal_convs=convs or None)
        compute = ComputeSettings(gradient_checkpointing=key.endswith("checkpointing"),
                                  recompute_feed_forwards=key == "tlora_recompute_ff",
                                  mixed_precision="bf16" if key.startswith("tlora_bf16") else "no",
                                  bf16_activations=key == "tlora_saved_bf16",
                                  lean_backward=key != "tlora_all_saved",
                                  merged_weight_loras=key != "tlora_factored")
        train_motion(base, frames, settings, compute=compute, hooks=hooks)
    elif key == "absorber":
        train_absorber(base, frames, paper.absorber_settings(kind="dual", prompt=PROMPT, steps=args.steps),
                       hooks=hooks)
    else:
        loras = []
        if key != "sample_base":
            for seed in (1, 2):  # two T-LoRAs with non-zero weights
                inject_lora(base.unet, "bench", temporal_targets(base.unet), 4, 4.0, seed=seed)
                lora = extract_lora(base.unet, "bench", "temporal", 4, 4.0)
                remove_adapters(base.unet)
                gen = torch.Generator().manual_seed(seed)
                tensors = {k: torch.randn(v.shape, generator=gen) * 0.02 for k, v in lora.tensors.items()}
                loras.append((LoraWeights(lora.role, lora.rank, lora.alpha, tensors), 0.7))
        if key == "sample_scheduled":  # strengths change at most steps: re-fused at each change
            loras = [(loras[0][0], 1.0, LoraSchedule(0.0, 0.5, end_strength=0.0)),
                     (loras[1][0], 0.7, LoraSchedule(0.3, 1.0))]
        settings = SampleSettings(prompt=PROMPT, steps=args.sample_steps, frames=len(frames),
                                  size=(frames.shape[2], frames.shape[1]), fuse=key != "sample_unfused")
        sample_video(base, settings, loras, device="cpu", on_step=lambda *_: clock())


def load_row_base(key: str, base_dir: str):
    """The base as a row loads it. The CLI's default: its process alone uses the base, so training
    releases the VAE and text encoder once latents and text states are cached. MotionDirector keeps
    them, and so does ComfyUI."""
    from cav_core import load_base

    release = (key.startswith("tlora") and key != "tlora_keep_encoders") or key == FLOOR_ROW
    return load_base(base_dir, encoders_reloadable=release)


def reference_frames(frames: int, size: int) -> np.ndarray:
    """The clip every row trains on (random pixels: what a step costs does not depend on them)."""
    return np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def child(args) -> None:
    """One row: run it, then write its timings and peak memory as JSON."""
    import torch

    from cav_core.allocator import loaded_allocator

    torch.set_num_threads(args.threads)
    if args.child == DEMO_ROW:
        _demo_child(args)
        return
    stamps: list[float] = []
    validations: list[float] = []
    turns = StepTurns(args.turn_fds) if args.turn_fds else None

    def clock(validation_seconds: float = 0.0) -> None:
        stamps.append(time.time())
        if validation_seconds:
            validations.append(validation_seconds)
        if turns:
            turns.step_done()

    base = load_row_base(args.child, args.base_dir)
    frames = reference_frames(args.frames, args.size)
    held = _held_at_first_forward(base.unet)
    if turns:  # steps alternated with another row's process (tools/bench/alternated.py): only they count
        turns.wait()
        run_row_here(args.child, base, frames, args, clock)
        with open(args.json, "w") as f:
            json.dump({"step_seconds": turns.seconds, "peak_rss_mib": peak_rss_mib(), "malloc": loaded_allocator()}, f)
        return
    run_row_here(args.child, base, frames, args, clock)
    warmup = 1 if args.child in SAMPLING_ROWS else args.warmup  # a sampling step has no optimiser to warm up
    gaps = np.diff(stamps)[warmup:] if len(stamps) > 1 else []
    average = statistics.mean if args.child in SAMPLING_ROWS else statistics.median
    step = average(gaps) if len(gaps) else float("nan")
    result = {"s_per_step": step, "setup_s": stamps[0] - args.t0 - step if stamps else float("nan"),
              "peak_rss_mib": peak_rss_mib(), "held_mib": held[0] if held and held[0] is not None else float("nan"),
              "malloc": loaded_allocator()}
    if validations:
        result["validation_s"] = statistics.mean(validations)
    with open(args.json, "w") as f:
        json.dump(result, f)


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # instructions that compute bf16 products natively


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's architecture and model, and whether it computes bf16 natively: without it, bf16
    autocast emulates the products and costs several times fp32's (the bf16 rows)."""
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    native = [flag for flag in BF16_CPU_FLAGS if flag in fields.get("flags", "").split()]
    return (f"{platform.machine()} {fields.get('model name', '')}".rstrip() +
            f", bf16 in hardware: {', '.join(native) or 'no'}")


def process_status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (``VmHWM``, ``VmRSS``) in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _held_at_first_forward(unet) -> list:
    """What the process holds as the row's first UNet forward starts (filled in then): the libraries,
    what the row keeps loaded and cached, and the UNet's weights. Those are memory-mapped from the
    base's files and resident only once read, so they are read first (the forward reads them all)."""
    import torch

    held: list = []

    def measure(module, _args) -> None:
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                tensor.sum()
        held.append(process_status_mib("VmRSS"))
        hook.remove()

    hook = unet.register_forward_pre_hook(measure)
    return held


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB. On Linux, ``ru_maxrss`` after exec keeps the peak
    of the process that launched it; VmHWM in /proc/self/status is this program's own."""
    peak = process_status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _demo_child(args) -> None:
    from cav_core.allocator import loaded_allocator
    from cav_core.demo import run_demo

    with tempfile.TemporaryDirectory() as out:
        report = run_demo(out, quick=args.small, quiet=True)
    fidelity = statistics.mean(s["motion_fidelity_with_tlora"] for s in report["samples"])
    with open(args.json, "w") as f:
        json.dump({"seconds": time.time() - args.t0, "fidelity": fidelity, "peak_rss_mib": peak_rss_mib(),
                   "seconds_by_part": report["seconds_by_part"], "training_steps": report["training_steps"],
                   "clips": 2 * len(report["samples"]), "malloc": loaded_allocator()}, f)


def row_command(key: str, args, base_dir: str, out: str) -> list[str]:
    """The command line of a row's process, which writes its result to ``out`` as JSON."""
    return [sys.executable, "-m", "tools.bench.cpu_cost", "--child", key, "--base-dir", base_dir, "--json", out,
            "--steps", str(args.steps), "--sample-steps", str(args.sample_steps), "--warmup", str(args.warmup),
            "--frames", str(args.frames), "--size", str(args.size), "--threads", str(args.threads),
            "--t0", str(time.time())] + (["--small"] if args.small else [])


def run_row(key: str, args, base_dir: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    steps = args.sample_steps if key.startswith("sample") else args.steps
    proc = subprocess.run(row_command(key, args, base_dir, out), cwd=ROOT, capture_output=True, text=True,
                          env=row_environment(key))
    try:
        if proc.returncode:
            return {"error": last_error_line(proc.stderr)}
        with open(out) as f:
            return {**json.load(f), "steps": steps}
    finally:
        os.remove(out)


def last_error_line(stderr: str) -> str:
    return (stderr.strip().splitlines() or ["no output"])[-1][:200]


def row_environment(key: str) -> dict:
    """The environment a row's process starts with: the C library's malloc for ``SYSTEM_MALLOC_ROWS``,
    the command line's allocator for the others (MotionDirector-style among them once, to show what the
    allocator alone gives it)."""
    from cav_core import allocator

    if key in SYSTEM_MALLOC_ROWS:
        return allocator.system_environment()
    return allocator.preload_environment() or dict(os.environ)


def lowest(runs: list[dict]) -> dict:
    """A row's result over its rounds: each measure's lowest, or the first error if a round failed.
    What is not a single measure (the demo's parts) comes from the round with the lowest time."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    fastest = min(runs, key=lambda r: r.get("s_per_step", r.get("seconds", 0.0)))
    result = {k: min(r[k] for r in runs) if isinstance(runs[0][k], float) else fastest[k] for k in runs[0]}
    if "s_per_step" in result:  # each round's, for the goals' round-by-round ratios
        result["s_per_step_rounds"] = [r["s_per_step"] for r in runs]
    return result


def table(title: str, rows: dict, results: dict, versus: str | None = None) -> str:
    extra = f" | × {rows[versus].split(':')[0]} (step / RSS / setup)" if versus else ""
    head = (f"| configuration | malloc | s/step | slowest round × | × first | peak RSS MiB | × first "
            f"| held at the first step MiB | setup s | × first{extra} |")
    lines = [f"\n\n## {title}\n", head, "|---" * (head.count("|") - 1) + "|"]
    keys = list(rows)
    first = results[keys[0]]
    for key in keys:
        r = results[key]
        if "error" in r:
            lines.append(f"| {rows[key]} | FAILED: {r['error']} |" + " |" * (head.count("|") - 3))
            continue
        cells = [r.get("malloc", "?"), f"{r['s_per_step']:.3f}", _spread(r), _ratio(r, first, "s_per_step"),
                 f"{r['peak_rss_mib']:.0f}",
                 _ratio(r, first, "peak_rss_mib"), f"{r['held_mib']:.0f}", f"{r['setup_s']:.1f}",
                 _ratio(r, first, "setup_s")]
        if versus:
            v = results[versus]
            cells.append(" / ".join(_ratio(r, v, k) for k in ("s_per_step", "peak_rss_mib", "setup_s")))
        lines.append(f"| {rows[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spread(r: dict) -> str:
    """A row's slowest round against its lowest: how far the figure it is judged by could move."""
    rounds = r.get("s_per_step_rounds", ())
    return f"{max(rounds) / min(rounds):.2f}" if len(rounds) > 1 else "one round"


def _ratio(r: dict, base: dict, key: str) -> str:
    if "error" in base or not base[key]:
        return "n/a"
    return f"{r[key] / base[key]:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a narrow base (checks the script, measures nothing)")
    p.add_argument("--base", help="measure this base (a folder, or toy) instead of the random 64.5 M one; "
                   "its recipe sets the T-LoRA rows' settings and the default --frames and --size")
    p.add_argument("--frames", type=int, help=f"clip frames (default: {FRAMES}, or the base's recipe)")
    p.add_argument("--size", type=int, help=f"clip width and height (default: {SIZE}, or the base's recipe)")
    p.add_argument("--steps", type=int, default=8, help="training steps per row")
    p.add_argument("--sample-steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    steadiness.add_repeats_option(p)
    p.add_argument("--rows", help="comma-separated row keys (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of all rows; each measure is a row's lowest")
    p.add_argument("--demo", action="store_true", help="also time the one-shot demo in every round (about 2½ minutes "
                   "a round on 2 cores; with --small, its quick mode)")
    p.add_argument("--out", help="also write the tables here (markdown)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--base-dir", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    p.add_argument("--turn-fds", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from cav_core.allocator import chosen_allocator

    given_dir, recipe, what = choose_base(args)
    wanted = set(args.rows.split(",")) if args.rows else set(TRAINING_ROWS) | set(SAMPLING_ROWS)
    chosen = chosen_allocator()
    if chosen is None:  # the project's rows run with the C library's malloc too: nothing to compare
        wanted -= {"motiondirector_tcmalloc", "tlora_system_malloc"}
    header = [f"# CPU cost of training and sampling ({what})",
              f"{machine_and_versions(args.threads)}; "
              f"{args.frames} frames at {args.size}x{args.size}, fp32; {args.steps} training steps a row "
              f"(median after {args.warmup}), {args.sample_steps} sampling steps with guidance (mean after 1); "
              f"all rows in turn, {args.repeats} round{'s' if args.repeats > 1 else ''}, each measure a row's lowest",
              f"T-LoRA rows train with the base's {recipe.summary()}; the MotionDirector-style and absorber rows "
              "with the paper's settings",
              "malloc: the plain loop and the MotionDirector-style row run with the C library's, as those programs "
              "do, and so does the row that says so; every other row as `python -m cav_core` runs, "
              + (f"with {chosen} preloaded" if chosen else "with the C library's (no tcmalloc is installed)")]
    print("\n\n".join(header), flush=True)
    keys = [k for k in [*TRAINING_ROWS, *SAMPLING_ROWS] if k in wanted] + ([DEMO_ROW] if args.demo else [])
    runs: dict[str, list[dict]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory() as folder:
        base_dir = given_dir or build_base_folder(folder, args.small)
        probes = {"before the rows": steadiness.probe(args.threads, args.probe_repeats)}
        print(f"steadiness before the rows: {probes['before the rows']}", flush=True)
        for round_ in range(args.repeats):
            for key in keys:
                runs[key].append(run_row(key, args, base_dir))
                print(f"round {round_ + 1} {key}: {runs[key][-1]}", flush=True)
        probes["after them"] = steadiness.probe(args.threads, args.probe_repeats)
    results = {k: lowest(v) for k, v in runs.items()}
    report = render([*header, steadiness.describe(probes)], results, args.frames)
    print(report)
    if args.out:
        from cav_core import atomic_path

        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write(report + "\n")
    return 0


def choose_base(args):
    """The base the rows measure and the clip's size, set on ``args``: ``--base`` (a folder, or toy) with
    its recipe's settings and size, else the random 64.5 M base (written by ``build_base_folder``) at the
    paper's settings. Returns the given base's folder (None for the random one), its recipe and a name."""
    from cav_core import Recipe, load_base, recipe_for
    from cav_core.base_model import resolve_base_path

    recipe = Recipe()  # the random base's folder has no recipe and matches none: the paper's settings
    given_dir = None
    if args.base:
        given_dir = resolve_base_path(args.base)  # absolute: the rows run from the repository root
        recipe = recipe_for(given_dir)
        args.frames = args.frames or recipe.frames
        if not args.size:  # the recipe's size, else the UNet's native one (which needs the base loaded)
            args.size = min(recipe.width, recipe.height) if recipe.width and recipe.height else \
                min(load_base(given_dir).default_size)
    args.frames, args.size = args.frames or FRAMES, args.size or SIZE
    what = f"base `{args.base}`" if args.base else "narrow test base" if args.small else "64.5 M-parameter UNet3D"
    return given_dir, recipe, what


def machine_and_versions(threads: int) -> str:
    """The report's machine line: the CPU, its cores, the threads used and the libraries' versions."""
    import diffusers
    import peft
    import torch

    return (f"{cpu_description()}; {os.cpu_count()} cores, {steadiness.threads(threads)}; "
            f"torch {torch.__version__}, diffusers {diffusers.__version__}, peft {peft.__version__}")


def render(header: list[str], results: dict, frames: int) -> str:
    """The markdown report: the header lines, then a table per kind of row measured."""
    training = {k: v for k, v in TRAINING_ROWS.items() if k in results}
    sampling = {k: v for k, v in SAMPLING_ROWS.items() if k in results}
    report = "\n\n".join(header)
    if training:
        versus = "motiondirector" if "motiondirector" in training else None
        report += table("Training", training, results, versus)
        validation = results.get("tlora_validation", {})
        if "validation_s" in validation:
            report += (f"\n\nA validation sample ({VALIDATION_STEPS} denoising steps, {frames} frames) takes "
                       f"{validation['validation_s']:.2f} s, {validation['validation_s'] / validation['s_per_step']:.1f}"
                       " training steps' time.")
    if sampling:
        report += table("Sampling", sampling, results)
    return report + goals(results)


def goals(results: dict) -> str:
    """Each target against this run's rows: the measured ratio, whether it is met, and for a target not
    met, what stands in its way in this run's own figures."""
    def ratio(key, versus, measure):
        r, v = results.get(key), results.get(versus)
        if not r or not v or "error" in r or "error" in v or not v[measure]:
            return None
        return r[measure] / v[measure]

    rows = []
    for what, key, versus, measure, limit in GOALS:
        value = ratio(key, versus, measure)
        if value is not None:
            against = {**TRAINING_ROWS, **SAMPLING_ROWS}[versus].split(":")[0]
            met = value <= limit
            floor = results.get(FLOOR_ROW) if versus == "motiondirector" else None
            why = "" if met else _in_the_way(results[key], results[versus], measure, limit, against,
                                             floor if floor and "error" not in floor else None)
            rows.append(f"| {what} ≤ {limit:g}× {against} | {goal_ratio(value)} | {'yes' if met else 'no'} | {why} |")
    demo = results.get(DEMO_ROW)
    if demo:
        what = f"the demo (`python -m cav_core demo`) ≤ {DEMO_GOAL_S} s"
        if "error" in demo:
            rows.append(f"| {what} | FAILED: {demo['error']} | no | |")
        else:
            met = demo["seconds"] <= DEMO_GOAL_S
            rows.append(f"| {what} | {demo['seconds']:.0f} s (motion fidelity {demo['fidelity']:.2f}, one seed) | "
                        f"{'yes' if met else 'no'} | {'' if met else _demo_in_the_way(demo)} |")
    if not rows:
        return ""
    lines = ["\n\n## Goals\n", "| goal | measured | met | what stands in the way (this run) |", "|---|---|---|---|",
             *rows]
    if "motiondirector" in results:
        both = [TRAINING_ROWS[k].split(" (")[0] for k in TRAINING_ROWS if k.startswith("tlora") and k in results
                and all(_within(ratio(k, "motiondirector", m), limit) for m, limit in BOTH_GOALS)]
        limits = " and ".join(f"{'step' if m == 's_per_step' else 'peak memory'} ≤ {x:g}×" for m, x in BOTH_GOALS)
        lines.append(f"\nT-LoRA configurations with {limits} the MotionDirector-style row at once: "
                     + ("; ".join(both) if both else "none") + ".")
    return "\n".join(lines + ["\nJudged outside this run:", *(f"- {g}." for g in JUDGED_ELSEWHERE)])


def _in_the_way(row: dict, versus: dict, measure: str, limit: float, against: str, floor: dict | None = None) -> str:
    """Why a row misses a ratio goal, in the run's figures: for memory, what its process holds as its
    first step starts against what the goal allows; for time, the ratio in each round (the two rows ran
    one after the other in it), which tells a miss from the noise between processes, and with ``floor``
    (the frozen base's own step) how much of the step is the base's and how much the adapters'."""
    if measure == "peak_rss_mib":
        allowed = limit * versus["peak_rss_mib"]
        return (f"its process holds {row['held_mib']:.0f} MiB as its first step starts, of the {allowed:.0f} MiB "
                f"allowed, and its steps add {row['peak_rss_mib'] - row['held_mib']:.0f} MiB; the {against} "
                f"run holds {versus['held_mib']:.0f} MiB and adds {versus['peak_rss_mib'] - versus['held_mib']:.0f}")
    rounds = list(zip(row.get("s_per_step_rounds", ()), versus.get("s_per_step_rounds", ())))
    if len(rounds) < 2:
        why = f"it measured {row['s_per_step']:.3f} s; the goal allows {limit * versus['s_per_step']:.3f} s"
    else:
        why = (f"round by round against the {against} row of the same round: "
               + ", ".join(f"{mine / theirs:.2f}×" for mine, theirs in rounds))
    if floor:
        least = floor["s_per_step"]
        why += (f"; the frozen base's own forward and backward (nothing trained) take {least:.3f} s, "
                f"{least / versus['s_per_step']:.2f}× the {against} step, and the adapters make it "
                f"{row['s_per_step'] / least:.2f}× that")
    return why


def _demo_in_the_way(demo: dict) -> str:
    """Where the demo's time went, and the T-LoRA step that would fit its stages into the goal."""
    parts, steps = demo.get("seconds_by_part"), demo.get("training_steps")
    if not parts or not steps:
        return ""
    motion, others = parts["motion"], sum(parts.values()) - parts["motion"]
    fits = (DEMO_GOAL_S - others) / steps["motion"]
    return (f"the T-LoRA stage took {motion:.0f} s ({steps['motion']} steps, {motion / steps['motion']:.2f} s "
            f"each with its setup), the absorber's {steps['absorber']} steps {parts['absorber']:.0f} s, loading "
            f"{parts['loading']:.0f} s, sampling {demo.get('clips', 0)} clips and writing files "
            f"{parts['sampling']:.0f} s: to fit in {DEMO_GOAL_S} s beside the rest, a T-LoRA step must take "
            f"{fits:.2f} s")


def goal_ratio(value: float) -> str:
    """A ratio held to a goal, to three places: to two, 1.053 reads as 1.05 beside a goal of 1.05× it fails."""
    return f"{value:.3f}×"


def _within(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


if __name__ == "__main__":
    raise SystemExit(main())
