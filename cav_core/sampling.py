"""Our own text-to-video denoising loop (diffusers' TextToVideoSDPipeline is deprecated).

Classifier-free guidance with a negative prompt, DDIM / DPM-Solver++ / Euler schedulers, any
number of weighted T-LoRAs (each over the whole run or on a schedule) plus an optional appearance
S-LoRA / textual inversion at a constant strength, and MotionDirector's optional noise prior.
Seeded noise is drawn on the CPU, so a seed gives the same video on any device.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from .adapter_file import TokenEmbeddings
from .adapters import LoraWeights, check_weight
from .compute import autocast, default_device, on_device, temporal_convs_as_2d
from .errors import CavError, TrainingInterrupted
from .frames import fit_clip
from .latents import decode_latents, encode_clip
from .scheduled_loras import ScheduledLora, StackEntry, scheduled, stepped_loras, strength_table
from .text import encode_prompts, token_embeddings_applied, with_placeholder

SCHEDULERS = {
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "euler": (EulerDiscreteScheduler, {}),
}


@dataclass(frozen=True)
class SampleSettings:
    prompt: str
    negative: str = ""
    seed: int = 0
    steps: int = 25
    cfg: float = 7.5
    frames: int | None = None  # None: the base's default
    size: int | tuple[int, int] | None = None  # None: the base's default; (width, height) or side
    scheduler: str = "ddim"
    noise_prior: float = 0.0  # 0..0.5: start from the noised reference latents mixed in
    fuse: bool = True  # fuse LoRA deltas into the weights for the loop (restored exactly after)

    def validate(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise CavError(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {self.scheduler!r}")
        if self.steps < 1:
            raise CavError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.noise_prior <= 1.0:
            raise CavError(f"noise prior must be within 0..1, got {self.noise_prior}")
        if self.frames is not None and self.frames < 1:
            raise CavError(f"frames must be >= 1, got {self.frames}")


@dataclass(frozen=True)
class Appearance:
    """What may be added for appearance at inference: an S-LoRA and/or TI tokens."""

    spatial: LoraWeights | None = None
    textual_inversion: TokenEmbeddings | None = None
    strength: float = 1.0

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.textual_inversion.tokens if self.textual_inversion else ()

    def prompt(self, prompt: str) -> str:
        """The prompt with this appearance's tokens prepended unless it already uses them."""
        return with_placeholder(prompt, self.tokens)


def make_scheduler(name: str, config: dict):
    cls, extra = SCHEDULERS[name]
    return cls.from_config(config, **extra)


def _size(base, size) -> tuple[int, int]:
    width, height = (size, size) if isinstance(size, int) else (size or base.default_size)
    base.check_frame_size(width, height, "the requested size")
    return width, height


@torch.no_grad()
def sample_video(base, settings: SampleSettings, motion_loras: Sequence[StackEntry] = (),
                 appearance: Appearance | None = None, device=None,
                 on_step: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 reference_frames: np.ndarray | None = None, mixed_precision: str = "no") -> np.ndarray:
    """Generate a clip; returns float frames [F, H, W, 3] in 0..1 (on the CPU).

    Each motion LoRA is ``(LoraWeights, strength)`` or ``(LoraWeights, strength, LoraSchedule)``;
    the strengths are re-applied only at the steps where they change.
    """
    settings.validate()
    stack = scheduled(motion_loras)
    strength_table(stack, settings.steps)  # a window that holds no step is refused before any work
    device = torch.device(device) if device else default_device()
    frames = settings.frames or base.default_frames
    width, height = _size(base, settings.size)
    f = base.vae_scale_factor
    scheduler = make_scheduler(settings.scheduler, base.scheduler_config)
    scheduler.set_timesteps(settings.steps, device=device)
    appearance = appearance or Appearance()
    if appearance.spatial is not None:
        stack.append(ScheduledLora(appearance.spatial, check_weight(appearance.strength, "the appearance LoRA")))

    with on_device(base.text_encoder, device), token_embeddings_applied(base, appearance.textual_inversion):
        text = encode_prompts(base, [settings.negative, appearance.prompt(settings.prompt)], device)
    shape = (1, base.unet.config.in_channels, frames, height // f, width // f)
    g = torch.Generator().manual_seed(settings.seed)
    latents = torch.randn(shape, generator=g).to(device)
    if settings.noise_prior > 0:
        if reference_frames is None:
            raise CavError("a noise prior needs the reference video")
        with on_device(base.vae, device):
            ref = encode_clip(base.vae, fit_clip(reference_frames, frames, width, height)).to(device)
        noised = scheduler.add_noise(ref, torch.randn(shape, generator=g).to(device), scheduler.timesteps[:1])
        p = settings.noise_prior
        latents = (1 - p) ** 0.5 * latents + p ** 0.5 * noised
    latents = latents * scheduler.init_noise_sigma

    # The same convolution kernels as training's validation samples, so those equal this one exactly.
    with on_device(base.unet, device), stepped_loras(base.unet, stack, settings.steps, settings.fuse) as strengths, \
            temporal_convs_as_2d(base.unet, device):
        unet_dtype = base.unet.dtype
        for i, t in enumerate(scheduler.timesteps):
            if should_stop and should_stop():
                raise TrainingInterrupted(f"sampling stopped at step {i}/{settings.steps}")
            strengths.at_step(i)
            model_in = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            with autocast(device, mixed_precision):
                pred = base.unet(model_in.to(unet_dtype), t, text.to(unet_dtype)).sample.float()
            uncond, cond = pred.chunk(2)
            guided = uncond + settings.cfg * (cond - uncond)
            latents = scheduler.step(guided, t, latents).prev_sample
            if on_step:
                on_step(i + 1, settings.steps)
    with on_device(base.vae, device):
        return decode_latents(base.vae, latents[0])

