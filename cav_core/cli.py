"""Headless command line: train, sample, inspect, merge, import, demo.

User errors print one line and exit with status 2; an interrupt exits with 130 and writes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .cli_common import ProgressBars, check_adapter_out, lora_arg, lora_spec, size_arg
from .cli_train import cmd_train
from .errors import CavError
from .files import check_name_fits
from .settings import ComputeSettings


def cmd_sample(args) -> None:
    from .adapter_file import check_adapter_fits, load_adapter_file
    from .base_model import load_base
    from .motiondirector_import import load_motion_file
    from .sampling import Appearance, SampleSettings, sample_video
    from .video_io import VideoOptions, read_video, write_video

    check_name_fits(args.out)
    loras = [lora_spec(text) for text in args.lora]
    for text, (_, _, schedule) in zip(args.lora, loras):
        if args.steps >= 1 and not schedule.is_whole_run:
            schedule.check_acts(args.steps, text)
    appearance_arg = lora_arg(args.appearance_lora, "the appearance acts at one strength for the whole run; "
                              "schedules are for --lora") if args.appearance_lora else None
    base = load_base(args.base)
    motion = []
    for path, weight, schedule in loras:
        adapter = load_motion_file(path, base)  # a MotionDirector LoRA is converted for the base
        check_adapter_fits(adapter, base, path)
        if adapter.temporal is None:
            raise CavError(f"{path} holds no motion (temporal) LoRA")
        motion.append((adapter.temporal, weight, schedule))
    appearance = None
    if appearance_arg:
        path, weight = appearance_arg
        adapter = load_adapter_file(path)
        check_adapter_fits(adapter, base, path)
        if adapter.spatial is None and adapter.textual_inversion is None:
            raise CavError(f"{path} holds no appearance (S-LoRA or textual inversion)")
        appearance = Appearance(adapter.spatial, adapter.textual_inversion, weight)
    reference = None
    if args.noise_prior > 0:
        if not args.reference:
            raise CavError("--noise-prior needs --reference VIDEO")
        reference = read_video(args.reference, VideoOptions(max_frames=0)).frames
    settings = SampleSettings(prompt=args.prompt, negative=args.negative, seed=args.seed, steps=args.steps,
                              cfg=args.cfg, frames=args.frames, size=args.size, scheduler=args.scheduler,
                              noise_prior=args.noise_prior)
    bar = ProgressBars(args.quiet)
    frames = sample_video(base, settings, motion, appearance, device=args.device, on_step=bar.sampling,
                          reference_frames=reference)
    write_video(args.out, frames, args.out_fps or base.default_fps)
    print(args.out)


def cmd_inspect(args) -> None:
    from .adapter_file import load_adapter_file

    info = load_adapter_file(args.file).describe()
    if not args.targets:
        for part in ("temporal", "spatial"):
            if part in info:
                info[part].pop("targets")
    print(json.dumps(info, indent=2))


def cmd_merge(args) -> None:
    """Merge constant strengths only: a stack whose strengths change while sampling is no one LoRA.
    The merged file's preview shows its sources' previews side by side (none when none has one)."""
    from .adapter_file import load_adapter_file, save_adapter_file
    from .lora_merge import merge_adapters
    from .motion_preview import merged_preview, read_preview, write_preview

    check_adapter_out(args.out)
    sources, previews = [], []
    why = "merging is only defined for constant strengths; merge without it, or sample the stack with its schedules"
    for path, weight in [lora_arg(text, why) for text in args.loras]:
        sources.append((os.path.basename(path), load_adapter_file(path), weight))
        previews.append(read_preview(path))
    merged = merge_adapters(sources, args.max_rank)
    save_adapter_file(args.out, merged)
    write_preview(args.out, merged_preview(previews))
    print(args.out)
    if args.max_rank is not None:
        print(f"relative error of the rank-{merged.temporal.rank} merge: {merged.training['relative_error']:.6g}",
              file=sys.stderr)


def cmd_import(args) -> None:
    from .adapter_file import save_adapter_file
    from .base_model import load_base
    from .motiondirector_import import import_motiondirector

    check_adapter_out(args.out)
    if not os.path.isfile(args.file):
        raise CavError(f"MotionDirector LoRA not found: {args.file}")
    base = load_base(args.base)
    save_adapter_file(args.out, import_motiondirector(args.file, base))
    print(args.out)


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(args.out, quick=args.quick, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    from .settings import ABSORBER_KINDS, MOTION_LOSSES

    p = argparse.ArgumentParser(prog="python -m cav_core",
                                description="Customize-A-Video: one-shot motion customization of text-to-video models")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="learn a motion (T-LoRA, after an appearance absorber) from one or more videos")
    t.add_argument("--base", required=True, help="diffusers text-to-video folder, or 'toy'")
    t.add_argument("--video", required=True, action="append",
                   help="reference clip (mp4/webm/mov/avi/mkv/gif/webp); repeat for several clips of the same "
                        "motion, each brought to the first one's size and frame count")
    t.add_argument("--prompt", required=True, action="append",
                   help="caption of the whole reference video; repeat to caption each --video in order, or give "
                        "one for all")
    t.add_argument("--appearance-prompt", help="what the frames look like, no motion words (default: the first "
                                               "--prompt)")
    t.add_argument("--init-lora", metavar="FILE",
                   help="keep training the T-LoRA of this adapter file (same base). Its rank, alpha and adapted "
                        "layers are kept (flags asking for others are refused), and so is the absorber stored in "
                        "it (stage 1 skipped) unless --absorber asks for a new one. The record adds the steps up "
                        "(total_steps, continued_from). AdamW starts afresh, so N then M steps is close to, not "
                        "equal to, N+M; another --seed draws other noise than the first run")
    g = t.add_argument_group("training settings", "each defaults to the base's recipe (cav_recipe.json in the "
                             "base folder; the paper's setting where it says nothing); `inspect` shows what was used")
    g.add_argument("--absorber", choices=list(ABSORBER_KINDS))
    g.add_argument("--absorber-steps", type=int)
    g.add_argument("--absorber-token", action=argparse.BooleanOptionalAction, default=None,
                   help="whether the T-LoRA's caption carries the TI absorber's token (ti, dual); without it, "
                        "stage 2 uses only the dual absorber's S-LoRA")
    g.add_argument("--absorber-lr", type=float)
    g.add_argument("--steps", type=int, help="T-LoRA steps")
    g.add_argument("--rank", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--min-timestep", type=int, metavar="T",
                   help="train the T-LoRA on timesteps T and above only (0: all); the noisier timesteps are "
                        "where a sample's motion is settled")
    g.add_argument("--loss", choices=list(MOTION_LOSSES),
                   help="debiased = MotionDirector's appearance-debiased temporal loss")
    g.add_argument("--feed-forward", action=argparse.BooleanOptionalAction, default=None,
                   help="also adapt the temporal feed-forward layers")
    g.add_argument("--temporal-convs", action=argparse.BooleanOptionalAction, default=None,
                   help="also adapt the temporal convolutions")
    t.add_argument("--frames", type=int, default=0, help="frames taken from the video (default: the base's)")
    t.add_argument("--skip-first", type=int, default=0)
    t.add_argument("--every-nth", type=int, default=1)
    t.add_argument("--fps", type=float, default=0.0, help="resample the video to this rate first")
    t.add_argument("--size", type=size_arg, help="side or WxH (default: the base's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", help="checkpoint to continue from (default: OUT.ckpt when present)")
    t.add_argument("--checkpoint-every", type=int, default=50)
    t.add_argument("--validate-every", type=int, default=0, metavar="N",
                   help="every N T-LoRA steps, sample each --validation-prompt with the LoRA so far (no absorber, "
                        "as at inference); the last sample is shown in the file's preview (default 0: never)")
    t.add_argument("--validation-prompt", action="append", default=[],
                   help="prompt of a validation sample, repeatable (default: the new appearances the base's "
                        "recipe names, else the first --prompt)")
    t.add_argument("--validation-steps", type=int, default=10, help="denoising steps of a validation sample (default 10)")
    t.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    t.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    t.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute every block in backward: the least memory, 1.3-1.65x the step time")
    t.add_argument("--recompute-feed-forwards", action="store_true",
                   help="recompute the GEGLU feed-forwards in backward instead of keeping their projections: the "
                        "same training in less memory (on the CPU benchmark's base little: 0.96x the peak at "
                        "1.05x the step time)")
    t.add_argument("--bf16-activations", action="store_true",
                   help="keep the activations saved for backward in bf16: less memory, slightly slower steps")
    t.add_argument("--memory-target", type=float, default=ComputeSettings.memory_target_gib, metavar="GIB",
                   help="where a training step is estimated to peak above this, recompute in backward the UNet's "
                        "blocks that keep the most, as few as fit (default %(default)s; 0: never)")
    t.add_argument("--out", required=True, help="adapter file to write (.safetensors); its animated preview (the "
                                                "reference, and the last validation sample) goes beside it as .webp")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate a video with zero or more motion LoRAs")
    s.add_argument("--base", required=True)
    s.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH[~END_STRENGTH][@START-END]]",
                   help="motion LoRA, repeatable; strengths add their deltas. @START-END: the part of the "
                        "denoising run it acts on, as fractions (a.safetensors:0.8@0-0.5 acts on the first half; "
                        "@0-1, the default, is the whole run). ~END_STRENGTH ramps the strength linearly from "
                        "STRENGTH at START to END_STRENGTH at END (a.safetensors:1~0.2@0.3-1)")
    s.add_argument("--appearance-lora", metavar="FILE[:WEIGHT]",
                   help="adapter file whose S-LoRA / textual inversion to apply for appearance")
    s.add_argument("--prompt", required=True)
    s.add_argument("--negative", default="")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=int, default=25)
    s.add_argument("--cfg", type=float, default=7.5)
    s.add_argument("--frames", type=int)
    s.add_argument("--size", type=size_arg)
    s.add_argument("--scheduler", default="ddim", choices=["ddim", "dpm++", "euler"])
    s.add_argument("--noise-prior", type=float, default=0.0, help="0..0.5, needs --reference")
    s.add_argument("--reference", help="reference video for --noise-prior")
    s.add_argument("--device")
    s.add_argument("--out-fps", type=float, default=0.0, help="frame rate of the file (default: the base's)")
    s.add_argument("--out", required=True, help=".mp4, .webm, .gif or .webp")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("inspect", help="print an adapter file's metadata as JSON")
    i.add_argument("file")
    i.add_argument("--targets", action="store_true", help="list every adapted layer")
    i.set_defaults(func=cmd_inspect)

    m = sub.add_parser("merge", help="merge weighted motion LoRAs of one base into one adapter file",
                       description="Merge constant strengths only; the merged file samples as the stack does.")
    m.add_argument("loras", nargs="+", metavar="FILE[:WEIGHT]",
                   help="adapter files with their weights (constant: a schedule is refused)")
    m.add_argument("--max-rank", type=int, help="cut each layer to this rank by SVD (prints the error it made)")
    m.add_argument("--out", required=True, help="adapter file to write (.safetensors); the sources' previews, "
                                                "side by side, go beside it as .webp")
    m.set_defaults(func=cmd_merge)

    im = sub.add_parser("import", help="convert a MotionDirector temporal LoRA (.pt or .safetensors)")
    im.add_argument("file", help="MotionDirector's temporal LoRA file")
    im.add_argument("--base", required=True, help="the base it was trained on (diffusers folder, or 'toy')")
    im.add_argument("--out", required=True, help="adapter file to write (.safetensors)")
    im.set_defaults(func=cmd_import)

    d = sub.add_parser("demo", help="one-shot demo on the bundled shapes-world model")
    d.add_argument("--out", required=True, help="folder for the reference, samples, LoRA and plots")
    d.add_argument("--quick", action="store_true", help="few steps (a smoke run, as in CI)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def _quiet_libraries() -> None:
    """Our own progress lines only: silence the libraries' per-file loading bars and notices."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        args.func(args)
    except CavError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written (a checkpoint, if any, allows --resume)", file=sys.stderr)
        return 130
    return 0
