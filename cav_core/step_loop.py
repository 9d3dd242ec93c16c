"""The optimisation loop both training stages share: stop checks, NaN guard, progress, checkpoints."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import RunCheckpoint
from .compute import grad_scaler
from .errors import NonFiniteLoss, OutOfDeviceMemory, TrainingInterrupted
from .selective_checkpointing import GIB, MemoryPlan
from .settings import ComputeSettings


@dataclass(frozen=True)
class Progress:
    stage: str  # "absorber" or "motion"
    step: int
    total: int
    loss: float
    preview: np.ndarray | None = None  # uint8 [H, W, 3] predicted clean frame, when asked
    validation_seconds: float = 0.0  # time this step spent sampling validation clips (0: none were due)


@dataclass
class Hooks:
    """How a host follows and steers training."""

    on_progress: Callable[[Progress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    preview_every: int = 0
    checkpoint_path: str | None = None
    checkpoint_every: int = 0
    # A folder instead of a path: each run's checkpoint is named by a digest of what the run is (base,
    # clips, settings), so a host can resume any interrupted run by training it again.
    checkpoint_folder: str | None = None
    # Validation samples (T-LoRA stage only): every ``validate_every`` steps (0: never), each prompt is
    # sampled with the LoRA so far in ``validation_steps`` denoising steps, without the absorber (as at
    # inference); without prompts, the base recipe's validation prompts (new appearances), else the
    # first clip's caption. Training continues bit-identically.
    validate_every: int = 0
    validation_prompts: tuple[str, ...] = ()
    validation_steps: int = 10
    on_validation: Callable[[int, str, np.ndarray], None] | None = None  # (step, prompt, float [F, H, W, 3])


def run_steps(stage: str, total: int, params: list[torch.Tensor], optimizer, step_loss, hooks: Hooks,
              ckpt: RunCheckpoint, start: int, losses: list[float], compute: ComputeSettings,
              extra: dict[str, torch.Tensor], preview=None, validate=None,
              memory_plan: MemoryPlan | None = None) -> list[float]:
    """Run steps ``start..total`` of ``step_loss(step)``; returns the losses of all steps so far.

    ``validate(step)``, when given, runs after every ``hooks.validate_every``-th step, before its progress.
    A step that runs out of device memory stops the run with :class:`OutOfDeviceMemory`, which says what
    to change (``memory_plan``: what the stage's steps were estimated to need)."""
    scaler = grad_scaler(compute.torch_device, compute.mixed_precision)

    def optimise(step: int) -> tuple[float, float]:
        """One step: its loss and the seconds its validation samples took."""
        loss = step_loss(step)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"{stage} loss became {loss.item()} at step {step + 1}; nothing was "
                                "written. Lower the learning rate or use mixed precision 'no'/'bf16'")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        seconds = 0.0
        if validate and hooks.validate_every and (step + 1) % hooks.validate_every == 0:
            began = time.perf_counter()
            validate(step + 1)
            seconds = time.perf_counter() - began
        return float(loss.detach()), seconds

    for step in range(start, total):
        if hooks.should_stop and hooks.should_stop():
            raise TrainingInterrupted(f"{stage} training stopped at step {step}/{total}; "
                                      f"no adapter was written{_resume_hint(ckpt)}")
        try:
            loss, seconds = optimise(step)
        except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError's older name, in every torch a host may run
            loss = None  # raised below, once this handler has let go of the failed step's tensors
        if loss is None:
            optimizer.zero_grad(set_to_none=True)
            raise OutOfDeviceMemory(out_of_memory_message(stage, step + 1, total, compute, memory_plan)
                                    + _resume_hint(ckpt))
        losses.append(loss)
        done = step + 1
        if hooks.on_progress:
            image = preview() if preview and hooks.preview_every and done % hooks.preview_every == 0 else None
            hooks.on_progress(Progress(stage, done, total, losses[-1], image, seconds))
        if ckpt.due(done, total):
            ckpt.save(stage, done, params, optimizer, losses, extra)
    return losses


def _resume_hint(ckpt: RunCheckpoint) -> str:
    return f"; resume from {ckpt.path}" if ckpt.path and os.path.exists(ckpt.path) else ""


def out_of_memory_message(stage: str, step: int, total: int, compute: ComputeSettings,
                          plan: MemoryPlan | None) -> str:
    """What a user reads when a training step did not fit the device: what it was estimated to need
    and what brings it down, the cheapest change first."""
    estimate = ""
    if plan is not None and not plan.error:
        estimate = (f" (a step was estimated at {plan.estimate / GIB:.1f} GiB with "
                    f"{len(plan.blocks)} UNet blocks recomputed, for a {plan.target / GIB:.1f} GiB target)")
    changes = ["train fewer frames or at a smaller size"]
    if not compute.gradient_checkpointing:
        changes[:0] = ["set a lower memory target (`--memory-target GIB`; on the training nodes "
                       "`memory_target_gib`), which recomputes more UNet blocks in backward",
                       "turn on gradient checkpointing, which recomputes every block"]
    return (f"{stage} training ran out of memory on {compute.torch_device} at step {step}/{total}{estimate}; "
            f"no adapter was written. To fit: {'; or '.join(changes)}")
