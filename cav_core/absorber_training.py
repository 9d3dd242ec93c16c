"""Stage 1: the appearance absorber.

Temporal layers bypassed, random crops of unordered frames (of every clip of the motion), the
appearance caption; learns an S-LoRA on spatial attention and/or textual-inversion vectors. Crops
are encoded once into a pool; each step draws from it with a generator seeded by (seed, stage, step).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from . import adapters
from .adapter_file import AdapterFile, TokenEmbeddings
from .adapters import SPATIAL, LoraWeights
from .checkpoint import RunCheckpoint
from .compute import (adamw, autocast, feed_forward_checkpointing, gradient_checkpointing, on_device,
                      saved_activations)
from .diffusion import diffusion_target, noise_scheduler, step_generator, training_timesteps
from .frames import clip_pixels, run_identity, training_clips
from .latents import encode_frames, random_crops
from .lean_backward import lean_backward
from .merged_weight import merged_weight_loras
from .selective_checkpointing import MemoryPlan, checkpointing_to_fit
from .settings import AbsorberSettings, ComputeSettings
from .step_loop import Hooks, run_steps
from .targeting import spatial_targets, temporal_layers_bypassed
from .text import encode_prompts, ensure_tokens, init_vectors, token_vectors_hooked, with_placeholder

ABSORBER_ADAPTER = "cav_absorber"


@dataclass(frozen=True)
class Absorber:
    spatial: LoraWeights | None
    textual_inversion: TokenEmbeddings | None
    losses: tuple[float, ...] = ()
    # The trained stage's estimated step peak and blocks recomputed (None: no target, or not trained here).
    memory_plan: MemoryPlan | None = field(default=None, compare=False)

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.textual_inversion.tokens if self.textual_inversion else ()


def train_absorber(base, clips, settings: AbsorberSettings,
                   compute: ComputeSettings = ComputeSettings(), hooks: Hooks | None = None,
                   _ckpt: RunCheckpoint | None = None, _saved: dict | None = None) -> Absorber:
    """Stage 1: learn the reference's appearance on unordered random crops, temporal layers off.

    ``clips``: one uint8 frames array [F, H, W, 3] or several clips (frames arrays or
    ``(frames, caption)`` pairs, brought to the first one's size); the crop pool is drawn from the
    frames of all of them.
    """
    settings.validate()
    clips = training_clips(base, clips, minimum=1)
    frames = clip_pixels(clips)
    hooks = hooks or Hooks()
    if settings.kind == "none" or settings.steps == 0:
        return Absorber(None, None)
    device, unet = compute.torch_device, base.unet
    rng = np.random.default_rng([settings.seed, 1])
    with on_device(base.vae, device):
        pool = encode_frames(base.vae, random_crops(frames, settings.crop_pool, settings.crop_range, rng))
    tokens = (settings.placeholder,) if settings.uses_ti else ()
    prompt = with_placeholder(settings.prompt or "", tokens)
    scheduler = noise_scheduler(base)
    params: list[torch.Tensor] = []
    groups = []
    vectors = None
    if settings.uses_ti:
        ensure_tokens(base, tokens)
        vectors = torch.nn.Parameter(init_vectors(base, settings.init_word, len(tokens)).to(device))
        groups.append({"params": [vectors], "lr": settings.ti_lr})
        params.append(vectors)
    standalone = _ckpt is None  # not inside train_customization: this stage resumes and discards its own
    ckpt = _ckpt or RunCheckpoint.for_run(hooks, "absorber", run_identity(base, clips, settings))
    if standalone:
        _saved = ckpt.load()
    stack = contextlib.ExitStack()
    with stack:
        stack.enter_context(on_device(unet, device))
        stack.enter_context(on_device(base.text_encoder, device))
        stack.callback(adapters.remove_adapters, unet)
        if settings.uses_slora:
            adapters.inject_lora(unet, ABSORBER_ADAPTER, spatial_targets(unet), settings.rank, settings.rank,
                                 seed=settings.seed)
            lora_params = [p for n, p in unet.named_parameters() if ABSORBER_ADAPTER in n]
            groups.append({"params": lora_params, "lr": settings.lr})
            params += lora_params
        if vectors is not None:
            stack.enter_context(token_vectors_hooked(base, tokens, vectors))
            fixed_text = None
        else:
            with torch.no_grad():
                fixed_text = encode_prompts(base, [prompt], device)
        stack.enter_context(temporal_layers_bypassed(unet))
        stack.enter_context(merged_weight_loras(unet, compute.merged_weight_loras))
        stack.enter_context(gradient_checkpointing(unet, compute.gradient_checkpointing))
        stack.enter_context(feed_forward_checkpointing(unet, compute.feed_forward_checkpointing))
        stack.enter_context(lean_backward(unet, compute.lean_backward))  # after the forwards replaced above
        latent_channels, (h, w) = pool.shape[1], pool.shape[2:]
        text_shape = (settings.batch, base.tokenizer.model_max_length, unet.config.cross_attention_dim)
        memory_plan = stack.enter_context(checkpointing_to_fit(unet, compute, (settings.batch, latent_channels, 1, h, w),
                                                               text_shape))
        optimizer = adamw(groups)
        start, losses = 0, []
        if _saved is not None and _saved["meta"]["stage"] == "absorber":
            start, losses = RunCheckpoint.restore(_saved, params, optimizer)
        pool_device = pool.to(device)
        dtype = unet.dtype  # diffusers finds it by walking every module: once, not every step
        keep_activations = saved_activations(unet, compute.bf16_activations)

        def step_loss(step: int) -> torch.Tensor:
            g = step_generator(settings.seed, 1, step)
            idx = torch.randint(0, len(pool_device), (settings.batch,), generator=g)
            latents = pool_device[idx].unsqueeze(2)  # [B, C, 1, h, w]: each crop is its own clip
            noise = torch.randn(latents.shape, generator=g).to(device)
            t = training_timesteps(scheduler, g, settings.batch).to(device)
            text = fixed_text if fixed_text is not None else encode_prompts(base, [prompt], device)
            with autocast(device, compute.mixed_precision), keep_activations():
                noisy = scheduler.add_noise(latents, noise, t).to(dtype)
                pred = unet(noisy, t, text.expand(settings.batch, -1, -1).to(dtype)).sample
            return F.mse_loss(pred.float(), diffusion_target(scheduler, latents, noise, t).float())

        losses = run_steps("absorber", settings.steps, params, optimizer, step_loss, hooks, ckpt, start,
                           losses, compute, {}, memory_plan=memory_plan)
        spatial = (adapters.extract_lora(unet, ABSORBER_ADAPTER, SPATIAL, settings.rank, settings.rank)
                   if settings.uses_slora else None)
    if standalone:
        ckpt.discard()
    ti = TokenEmbeddings(tokens, vectors.detach().cpu().float().clone()) if vectors is not None else None
    return Absorber(spatial, ti, tuple(losses), memory_plan)


def absorber_tensors(absorber: Absorber) -> dict[str, torch.Tensor]:
    """A finished absorber as checkpoint tensors, so a resumed stage 2 need not train it again."""
    out = {}
    if absorber.spatial is not None:
        out.update({f"spatial.{k}": v for k, v in absorber.spatial.tensors.items()})
    if absorber.textual_inversion is not None:
        out["ti_vectors"] = absorber.textual_inversion.vectors
    return out


def absorber_from_checkpoint(tensors: dict, losses: list[float], settings: AbsorberSettings) -> Absorber:
    spatial = {k[len("extra.spatial."):]: v for k, v in tensors.items() if k.startswith("extra.spatial.")}
    lora = LoraWeights(SPATIAL, settings.rank, float(settings.rank), spatial) if spatial else None
    ti = (TokenEmbeddings((settings.placeholder,), tensors["extra.ti_vectors"])
          if "extra.ti_vectors" in tensors else None)
    return Absorber(lora, ti, tuple(losses))


def absorber_from_file(adapter: AdapterFile) -> tuple[Absorber, AbsorberSettings]:
    """The absorber an adapter file carries, and its settings as far as the file's record tells
    (the kind, rank and token always follow what the file holds)."""
    absorber = Absorber(adapter.spatial, adapter.textual_inversion)
    recorded = adapter.training.get("absorber") or {}
    values = {f.name: recorded[f.name] for f in fields(AbsorberSettings) if f.name in recorded}
    if "crop_range" in values:
        values["crop_range"] = tuple(values["crop_range"])
    kinds = {(True, True): "dual", (True, False): "slora", (False, True): "ti", (False, False): "none"}
    values["kind"] = kinds[(absorber.spatial is not None, absorber.textual_inversion is not None)]
    if absorber.spatial is not None:
        values["rank"] = absorber.spatial.rank
    if absorber.tokens:
        values["placeholder"] = absorber.tokens[0]
    return absorber, AbsorberSettings(**values)
