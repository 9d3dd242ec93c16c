"""Stage 2: the temporal LoRA (T-LoRA).

The absorber is applied and frozen (its S-LoRA on the spatial layers, its token in the caption
unless the settings leave it out); only LoRA on the temporal layers learns, on the ordered clip
(or clips: each step draws one with its generator). Latents and text states are computed once per
clip. The LoRA starts fresh, or from a saved one to keep training it.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from . import adapters
from .absorber_training import ABSORBER_ADAPTER, Absorber, absorber_tensors
from .adapters import TEMPORAL, LoraWeights
from .checkpoint import RunCheckpoint
from .compute import (adamw, autocast, feed_forward_checkpointing, gradient_checkpointing, on_device,
                      saved_activations, temporal_convs_as_2d)
from .diffusion import (clean_estimate, debiased_loss, diffusion_target, noise_scheduler, step_generator,
                        training_timesteps)
from .errors import CavError
from .frames import Clip, run_identity, tensor_digest, training_clips
from .latents import decode_latents, encode_clip
from .lean_backward import lean_backward
from .merged_weight import merged_weight_loras
from .motion_preview import MotionPreview, training_preview
from .selective_checkpointing import MemoryPlan, checkpointing_to_fit
from .settings import ComputeSettings, MotionSettings
from .step_loop import Hooks, run_steps
from .text import encode_prompts, motion_caption, token_embeddings_applied
from .validation import Validation

MOTION_ADAPTER = "cav_motion"


class MotionResult(tuple):
    """What :func:`train_motion` returns: unpacks as ``(lora, losses)``; ``validation`` is the last
    validation clip (float [F, H, W, 3]) or None when validation was off, ``validation_prompt`` its
    prompt, ``reference`` the first clip's frames as trained (uint8 [F, H, W, 3]), ``memory_plan`` what
    the steps were estimated to hold and which blocks they recomputed (None without a memory target)."""

    validation: np.ndarray | None
    validation_prompt: str
    reference: np.ndarray | None
    memory_plan: MemoryPlan | None

    def __new__(cls, lora: LoraWeights, losses: list[float], validation: np.ndarray | None = None,
                validation_prompt: str = "", reference: np.ndarray | None = None,
                memory_plan: MemoryPlan | None = None):
        result = super().__new__(cls, (lora, losses))
        result.validation, result.validation_prompt, result.reference = validation, validation_prompt, reference
        result.memory_plan = memory_plan
        return result

    @property
    def lora(self) -> LoraWeights:
        return self[0]

    @property
    def losses(self) -> list[float]:
        return self[1]

    def preview(self, fps: float) -> MotionPreview:
        """The saved file's animated preview: the reference as trained, beside the last validation sample."""
        return training_preview(self.reference, self.validation, fps, self.validation_prompt)


def motion_clips(base, clips, settings: MotionSettings) -> tuple[list[Clip], MotionSettings]:
    """The run's clips at one size and length, and the settings whose prompt is the first clip's
    caption (a clip without one is captioned ``settings.prompt``); both checked, the settings against
    the base's noise schedule too."""
    clips = training_clips(base, clips, settings.prompt)
    settings = replace(settings, prompt=clips[0].caption)
    settings.validate()
    timesteps = noise_scheduler(base).config.num_train_timesteps
    if settings.min_timestep >= timesteps:
        raise CavError(f"min_timestep {settings.min_timestep} leaves no timestep to train: this base's schedule has "
                       f"{timesteps} (0 to {timesteps - 1}); use a smaller one (0: all)")
    for i, clip in enumerate(clips):
        if not clip.caption.strip():
            raise CavError(f"reference clip {i + 1} has no caption; describe each clip")
    return clips, settings


def check_init_lora(lora: LoraWeights, targets: list[str], rank: int, alpha: float) -> None:
    """A LoRA to keep training must have the layers, rank and alpha these settings give a fresh one."""
    differences = []
    if lora.role != TEMPORAL:
        differences.append(f"it is a {lora.role} LoRA, not a temporal one")
    if lora.rank != rank:
        differences.append(f"rank {lora.rank}, these settings {rank}")
    if float(lora.alpha) != float(alpha):
        differences.append(f"alpha {lora.alpha:g}, these settings {alpha:g}")
    if sorted(lora.targets) != sorted(targets):
        layers = f"{len(lora.targets)} adapted layers, these settings {len(targets)}"
        for who, names in (("only it adapts", set(lora.targets) - set(targets)),
                           ("only these settings adapt", set(targets) - set(lora.targets))):
            if names:
                layers += f"; {who} {min(names)}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        differences.append(layers)
    if differences:
        raise CavError("the LoRA to continue does not match these settings (" + "; ".join(differences) +
                       "); train with the rank and layer options it was made with")


def train_motion(base, clips, settings: MotionSettings, absorber: Absorber | None = None,
                 compute: ComputeSettings = ComputeSettings(), hooks: Hooks | None = None,
                 init_lora: LoraWeights | None = None, *,
                 _ckpt: RunCheckpoint | None = None, _saved: dict | None = None) -> MotionResult:
    """Stage 2: with the absorber frozen, learn the T-LoRA on the ordered clip(s).

    ``clips``: one uint8 frames array [F, H, W, 3] captioned ``settings.prompt``, or a sequence of
    ``(frames, caption)`` pairs of the same motion, brought to the first one's size and length.
    ``init_lora``: a saved T-LoRA to keep training (same layers, rank and alpha as the settings give).
    Returns ``(lora, losses)`` with ``.validation`` (see ``Hooks.validate_every``).
    """
    clips, settings = motion_clips(base, clips, settings)
    hooks = hooks or Hooks()
    absorber = absorber or Absorber(None, None)
    device, unet = compute.torch_device, base.unet
    alpha = settings.alpha or settings.rank
    if init_lora is not None:
        check_init_lora(init_lora, settings.targets(unet), settings.rank, alpha)
    scheduler = noise_scheduler(base)
    prompts = [motion_caption(c.caption, absorber.tokens, settings.absorber_token_in_prompt) for c in clips]
    # Latents and text states are cached, so training needs neither encoder: each is released once used
    # (where the base can read it back). Their weights are read from the base's files as they run, so a
    # stage that starts with neither read holds one at a time.
    with on_device(base.text_encoder, device), token_embeddings_applied(base, absorber.textual_inversion):
        with torch.no_grad():
            text = encode_prompts(base, prompts, device)  # fixed: the TI is frozen now
    base.release_encoders("text_encoder")
    with on_device(base.vae, device):  # each [1, C, F, h, w]
        latents = [encode_clip(base.vae, c.frames).to(device) for c in clips]
    base.release_encoders("vae")  # a validation sample reads them back
    standalone = _ckpt is None  # not inside train_customization: this stage resumes and discards its own
    ckpt = _ckpt or RunCheckpoint.for_run(hooks, "motion", run_identity(
        base, clips, settings, init_lora=tensor_digest(init_lora.tensors) if init_lora else None,
        absorber=tensor_digest(absorber_tensors(absorber)) if absorber.spatial or absorber.textual_inversion else None))
    if standalone:
        _saved = ckpt.load()
    stack = contextlib.ExitStack()
    with stack:
        stack.enter_context(on_device(unet, device))
        stack.callback(adapters.remove_adapters, unet)
        if absorber.spatial is not None:
            adapters.load_lora(unet, ABSORBER_ADAPTER, absorber.spatial)
        if init_lora is None:
            adapters.inject_lora(unet, MOTION_ADAPTER, settings.targets(unet), settings.rank, alpha,
                                 seed=settings.seed)
        else:
            adapters.load_lora(unet, MOTION_ADAPTER, init_lora)
        for name, p in unet.named_parameters():
            p.requires_grad_(MOTION_ADAPTER in name)
        params = [p for p in unet.parameters() if p.requires_grad]
        stack.enter_context(merged_weight_loras(unet, compute.merged_weight_loras))
        stack.enter_context(gradient_checkpointing(unet, compute.gradient_checkpointing))
        stack.enter_context(feed_forward_checkpointing(unet, compute.feed_forward_checkpointing))
        stack.enter_context(temporal_convs_as_2d(unet, device, compute.lean_backward))
        stack.enter_context(lean_backward(unet, compute.lean_backward))  # after the forwards replaced above
        memory_plan = stack.enter_context(checkpointing_to_fit(unet, compute, tuple(latents[0].shape),
                                                               (1, *text.shape[1:])))
        optimizer = adamw(params, lr=settings.lr)
        start, losses = 0, []
        if _saved is not None and _saved["meta"]["stage"] == "motion":
            start, losses = RunCheckpoint.restore(_saved, params, optimizer)
        last: dict = {}
        dtype = unet.dtype  # diffusers finds it by walking every module: once, not every step
        keep_activations = saved_activations(unet, compute.bf16_activations)

        def step_loss(step: int) -> torch.Tensor:
            g = step_generator(settings.seed, 2, step)
            i = int(torch.randint(0, len(clips), (1,), generator=g)) if len(clips) > 1 else 0
            clean = latents[i]
            noise = torch.randn(clean.shape, generator=g).to(device)
            t = training_timesteps(scheduler, g, lowest=settings.min_timestep).to(device)
            noisy = scheduler.add_noise(clean, noise, t)
            with autocast(device, compute.mixed_precision), keep_activations():
                pred = unet(noisy.to(dtype), t, text[i:i + 1].to(dtype)).sample.float()
            target = diffusion_target(scheduler, clean, noise, t).float()
            last.update(noisy=noisy.detach(), pred=pred.detach(), t=t)
            if settings.loss == "debiased":
                return debiased_loss(pred, target, g)
            return F.mse_loss(pred, target)

        def preview() -> np.ndarray:
            x0 = clean_estimate(scheduler, last["noisy"], last["pred"], last["t"])
            mid = x0.shape[2] // 2
            with on_device(base.vae, device):
                frame = decode_latents(base.vae, x0[0, :, mid:mid + 1])[0]
            return (frame * 255).round().astype(np.uint8)

        def current_lora() -> LoraWeights:
            return adapters.extract_lora(unet, MOTION_ADAPTER, TEMPORAL, settings.rank, alpha)

        validation = (Validation(base, hooks, clips, settings.seed, compute, current_lora)
                      if hooks.validate_every else None)
        losses = run_steps("motion", settings.steps, params, optimizer, step_loss, hooks, ckpt, start,
                           losses, compute, absorber_tensors(absorber), preview, validation, memory_plan)
        lora = current_lora()
    if standalone:
        ckpt.discard()
    return MotionResult(lora, losses, validation.last if validation else None,
                        validation.last_prompt if validation else "", clips[0].frames, memory_plan)
