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
from .errors import NonFiniteLoss, TrainingInterrupted
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
              extra: dict[str, torch.Tensor], preview=None, validate=None) -> list[float]:
    """Run steps ``start..total`` of ``step_loss(step)``; returns the losses of all steps so far.

    ``validate(step)``, when given, runs after every ``hooks.validate_every``-th step, before its progress."""
    scaler = grad_scaler(compute.torch_device, compute.mixed_precision)
    for step in range(start, total):
        if hooks.should_stop and hooks.should_stop():
            where = f"; resume from {ckpt.path}" if ckpt.path and os.path.exists(ckpt.path) else ""
            raise TrainingInterrupted(f"{stage} training stopped at step {step}/{total}; "
                                      f"no adapter was written{where}")
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
        losses.append(float(loss.detach()))
        done = step + 1
        seconds = 0.0
        if validate and hooks.validate_every and done % hooks.validate_every == 0:
            began = time.perf_counter()
            validate(done)
            seconds = time.perf_counter() - began
        if hooks.on_progress:
            image = preview() if preview and hooks.preview_every and done % hooks.preview_every == 0 else None
            hooks.on_progress(Progress(stage, done, total, losses[-1], image, seconds))
        if ckpt.due(done, total):
            ckpt.save(stage, done, params, optimizer, losses, extra)
    return losses
