"""Validation samples while the T-LoRA trains.

Every ``hooks.validate_every`` steps, the LoRA so far is extracted and each validation prompt is
sampled with it alone, as at inference: every training-time adapter (the T-LoRA being trained and
the absorber's S-LoRA) is switched off for the sample and the extracted T-LoRA is fused into the
base weights, which :func:`adapters.applied_loras` restores bit for bit. Nothing the optimiser or
the step generators see changes, so training continues exactly as without validation.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from .adapters import LoraWeights, tuner_layers
from .errors import CavError
from .frames import Clip
from .sampling import SampleSettings, sample_video
from .settings import ComputeSettings
from .step_loop import Hooks


@contextlib.contextmanager
def adapters_switched_off(unet: torch.nn.Module) -> Iterator[None]:
    """Every peft layer computes its base layer only for the block; on exit the adapters are on
    again and every parameter's ``requires_grad`` is what it was (peft's toggle changes it)."""
    layers = [layer for _, layer in tuner_layers(unet)]
    trainable = [(p, p.requires_grad) for layer in layers for p in layer.parameters()]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for p, flag in trainable:
            p.requires_grad_(flag)


class Validation:
    """The ``validate(step)`` of a T-LoRA run; ``last`` is the latest clip sampled, ``last_prompt`` its prompt."""

    def __init__(self, base, hooks: Hooks, clips: Sequence[Clip], seed: int, compute: ComputeSettings,
                 current_lora: Callable[[], LoraWeights]):
        self.base, self.hooks, self.compute, self.current_lora = base, hooks, compute, current_lora
        # default: new appearances the base's recipe names, else the reference's own caption
        self.prompts = (tuple(p for p in hooks.validation_prompts if p.strip())
                        or base.recipe.validation_prompts or (clips[0].caption,))
        count, height, width = clips[0].frames.shape[:3]
        self.settings = [SampleSettings(prompt=p, seed=seed, steps=hooks.validation_steps, frames=count,
                                        size=(width, height)) for p in self.prompts]
        if hooks.validate_every < 0:
            raise CavError(f"validate every must be >= 0 steps, got {hooks.validate_every}")
        for settings in self.settings:
            settings.validate()
        self.last: np.ndarray | None = None
        self.last_prompt = ""

    def __call__(self, step: int) -> None:
        lora = self.current_lora()
        unet = self.base.unet
        with adapters_switched_off(unet):
            for settings in self.settings:
                frames = sample_video(self.base, settings, [(lora, 1.0)], device=self.compute.torch_device,
                                      mixed_precision=self.compute.mixed_precision)
                self.last, self.last_prompt = frames, settings.prompt
                if self.hooks.on_validation:
                    self.hooks.on_validation(step, settings.prompt, frames)
        self.base.release_encoders()  # read back for the samples; the training steps need neither
