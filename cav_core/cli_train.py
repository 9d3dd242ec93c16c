"""``python -m cav_core train``: learn a motion (T-LoRA after an appearance absorber) from 1..N clips."""
from __future__ import annotations

import os
import sys

from .cli_common import ProgressBars, check_adapter_out, video_options
from .errors import CavError


def _clips(args, base) -> list:
    """(frames, caption) of every --video, paired in order with its --prompt (one --prompt: for all)."""
    from .video_io import read_video

    videos, prompts = args.video, args.prompt
    if len(prompts) == 1:
        prompts = prompts * len(videos)
    if len(prompts) != len(videos):
        raise CavError(f"{len(videos)} --video but {len(prompts)} --prompt; give each --video its --prompt "
                       "(in the same order), or one --prompt for all")
    options = video_options(args, base)
    return [(read_video(video, options).frames, prompt) for video, prompt in zip(videos, prompts)]


def _continued(args, base):
    """The adapter file --init-lora names, checked against the base, and the T-LoRA settings it fixes."""
    from .adapter_file import check_adapter_fits, load_adapter_file
    from .continuation import continuation_settings

    if not args.init_lora:
        return None, {}
    init = load_adapter_file(args.init_lora)
    check_adapter_fits(init, base, args.init_lora)
    fixed = continuation_settings(init, f"--init-lora {args.init_lora}")
    if args.absorber is None and any(v is not None for v in (args.absorber_steps, args.absorber_lr,
                                                            args.appearance_prompt)):
        raise CavError("--init-lora reuses the absorber in that file; pass --absorber KIND to train a new one "
                       "with --absorber-steps, --absorber-lr or --appearance-prompt")
    return init, fixed


def cmd_train(args) -> None:

    from .absorber_training import absorber_from_file
    from .adapter_file import save_adapter_file
    from .base_model import load_base
    from .motion_preview import write_preview
    from .selective_checkpointing import plan_message
    from .settings import ComputeSettings
    from .step_loop import Hooks
    from .training import train_customization

    check_adapter_out(args.out, "" if args.resume else ".ckpt")
    if args.resume and not os.path.isfile(args.resume):
        raise CavError(f"--resume {args.resume}: no such checkpoint")
    base = load_base(args.base, encoders_reloadable=True)  # this process alone uses the base
    recipe = base.recipe
    init, fixed = _continued(args, base)
    clips = _clips(args, base)
    flags = dict(rank=args.rank, include_feed_forward=args.feed_forward, include_temporal_convs=args.temporal_convs,
                 absorber_token_in_prompt=args.absorber_token)
    motion = recipe.motion_settings(**{**fixed, **{k: v for k, v in flags.items() if v is not None}},
                                    prompt=clips[0][1], steps=args.steps, lr=args.lr, seed=args.seed, loss=args.loss,
                                    min_timestep=args.min_timestep)
    reused = None
    if init is not None and args.absorber is None:
        reused, absorber = absorber_from_file(init)
    else:
        absorber = recipe.absorber_settings(kind=args.absorber, prompt=args.appearance_prompt or clips[0][1],
                                            steps=args.absorber_steps, rank=args.rank, lr=args.absorber_lr,
                                            seed=args.seed)
    compute = ComputeSettings(device=args.device, mixed_precision=args.mixed_precision,
                              gradient_checkpointing=args.gradient_checkpointing,
                              recompute_feed_forwards=args.recompute_feed_forwards,
                              bf16_activations=args.bf16_activations, memory_target_gib=args.memory_target or None)
    if not args.quiet:
        frames = clips[0][0]
        what = f"{len(clips)} clips of {len(frames)} frames" if len(clips) > 1 else f"{len(frames)} frames"
        line = (f"{base.name}: {recipe.summary()}; T-LoRA rank {motion.rank}, {motion.steps} steps, "
                f"{what} at {frames.shape[2]}x{frames.shape[1]}")
        if init is not None:
            line += f"; continuing {args.init_lora}" + (" with its absorber" if reused else "")
        print(line, file=sys.stderr)
    bar = ProgressBars(args.quiet)

    def progress(p) -> None:
        bar.training(p)
        if p.validation_seconds and not args.quiet:
            from tqdm.auto import tqdm

            tqdm.write(f"step {p.step}: validation samples took {p.validation_seconds:.1f} s", file=sys.stderr)

    hooks = Hooks(on_progress=progress, checkpoint_path=args.resume or args.out + ".ckpt",
                  checkpoint_every=args.checkpoint_every, validate_every=args.validate_every,
                  validation_prompts=tuple(args.validation_prompt), validation_steps=args.validation_steps)
    result = train_customization(base, clips, absorber, motion, compute, hooks,
                                 init_lora=init.temporal if init else None, absorber=reused,
                                 continued_from=(args.init_lora, init.training) if init else None)
    message = plan_message(result.memory_plan)
    if message and not args.quiet:
        print(message, file=sys.stderr)
    save_adapter_file(args.out, result.adapter)
    preview = write_preview(args.out, result.preview(base.default_fps))
    if not args.quiet:
        shows = "the reference and the last validation sample" if result.validation is not None else "the reference"
        print(f"preview ({shows}): {preview}", file=sys.stderr)
    print(args.out)
