"""Staged training: stage 1 appearance absorber, stage 2 temporal LoRA (the paper's method).

Stage 1 (absorber): temporal layers bypassed, random crops of unordered frames, appearance
caption; learns an S-LoRA on spatial attention and/or textual-inversion vectors.
Stage 2 (T-LoRA): the absorber is applied and frozen; only LoRA on the temporal attention
projections learns, on the ordered clip, with the full caption.

Latents and fixed text states are computed once per run. Each step draws its randomness from a
generator seeded by (seed, stage, step), so a run resumed from a checkpoint equals an
uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors import safe_open
from safetensors.torch import save_file

from . import adapters
from .adapter_file import AdapterFile, TokenEmbeddings
from .adapters import SPATIAL, TEMPORAL, LoraWeights
from .compute import autocast, default_device, grad_scaler, gradient_checkpointing, on_device
from .errors import CavError, NonFiniteLoss, TrainingInterrupted
from .files import atomic_path
from .latents import decode_latents, encode_frames, random_crops
from .targeting import spatial_targets, temporal_layers_bypassed, temporal_targets
from .text import (encode_prompts, ensure_tokens, init_vectors, token_embeddings_applied, token_vectors_hooked,
                   with_placeholder)

ABSORBER_KINDS = ("none", "slora", "ti", "dual")
MOTION_LOSSES = ("mse", "debiased")
_ABSORBER_ADAPTER, _MOTION_ADAPTER = "cav_absorber", "cav_motion"


@dataclass(frozen=True)
class AbsorberSettings:
    kind: str = "dual"
    prompt: str = ""  # appearance caption: what the frames look like, no motion words
    steps: int = 150
    lr: float = 1e-4  # S-LoRA learning rate
    ti_lr: float = 5e-3  # textual-inversion learning rate
    rank: int = 4
    crop_range: tuple[float, float] = (0.33, 0.67)
    batch: int = 4  # crops per step
    crop_pool: int = 64  # crops encoded once, sampled from at every step
    seed: int = 0
    placeholder: str = "<cav-ref>"
    init_word: str = "object"

    def validate(self) -> None:
        if self.kind not in ABSORBER_KINDS:
            raise CavError(f"absorber kind must be one of {', '.join(ABSORBER_KINDS)}, not {self.kind!r}")
        lo, hi = self.crop_range
        if not 0.05 <= lo <= hi <= 1.0:
            raise CavError(f"crop range must satisfy 0.05 <= min <= max <= 1, got {self.crop_range}")
        _check_common(self.steps, self.lr, self.rank)

    @property
    def uses_slora(self) -> bool:
        return self.kind in ("slora", "dual")

    @property
    def uses_ti(self) -> bool:
        return self.kind in ("ti", "dual")


@dataclass(frozen=True)
class MotionSettings:
    prompt: str
    steps: int = 300
    lr: float = 5e-4
    rank: int = 4
    alpha: float | None = None  # None: equal to rank (scale 1)
    seed: int = 0
    include_transformer_in: bool = True
    include_feed_forward: bool = False
    include_temporal_convs: bool = False  # not the paper's default; see targeting.temporal_targets
    loss: str = "mse"  # or "debiased" (MotionDirector's appearance-debiased temporal loss)
    # Whether stage 2's caption carries the absorber's TI token (METHOD: it "may"). Without it, a
    # TI absorber still trains in stage 1 and is saved, but stage 2 sees only its S-LoRA.
    absorber_token_in_prompt: bool = True

    def validate(self) -> None:
        if not self.prompt.strip():
            raise CavError("the motion prompt is empty; describe the reference video")
        if self.loss not in MOTION_LOSSES:
            raise CavError(f"motion loss must be one of {', '.join(MOTION_LOSSES)}, not {self.loss!r}")
        _check_common(self.steps, self.lr, self.rank)

    def targets(self, unet: torch.nn.Module) -> list[str]:
        """The temporal layers these settings adapt (see ``targeting.temporal_targets``)."""
        return temporal_targets(unet, self.include_transformer_in, self.include_feed_forward,
                                self.include_temporal_convs)


@dataclass(frozen=True)
class ComputeSettings:
    device: str | None = None  # None: CUDA if available
    mixed_precision: str = "no"  # no | bf16 | fp16 (autocast; fp16 adds loss scaling)
    gradient_checkpointing: bool = False

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device) if self.device else default_device()


@dataclass(frozen=True)
class Progress:
    stage: str  # "absorber" or "motion"
    step: int
    total: int
    loss: float
    preview: np.ndarray | None = None  # uint8 [H, W, 3] predicted clean frame, when asked


@dataclass
class Hooks:
    """How a host follows and steers training."""

    on_progress: Callable[[Progress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    preview_every: int = 0
    checkpoint_path: str | None = None
    checkpoint_every: int = 0


@dataclass(frozen=True)
class Absorber:
    spatial: LoraWeights | None
    textual_inversion: TokenEmbeddings | None
    losses: tuple[float, ...] = ()

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.textual_inversion.tokens if self.textual_inversion else ()


@dataclass
class TrainResult:
    adapter: AdapterFile
    losses: dict = field(default_factory=dict)


def _check_common(steps: int, lr: float, rank: int) -> None:
    if steps < 0:
        raise CavError(f"steps must be >= 0, got {steps}")
    if not (0 < lr < 1):
        raise CavError(f"learning rate must be in (0, 1), got {lr}")
    if rank < 1:
        raise CavError(f"rank must be >= 1, got {rank}")


def _generator(seed: int, stage: int, step: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stage, step]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _noise_scheduler(base) -> DDPMScheduler:
    return DDPMScheduler.from_config(base.scheduler_config)


def diffusion_target(scheduler, latents, noise, t):
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, t)
    return noise


def clean_estimate(scheduler, noisy, pred, t):
    """The UNet's one-step estimate of the clean video latents [B, C, F, h, w] from its prediction
    ``pred`` (v or epsilon) at timesteps ``t``."""
    a = scheduler.alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1, 1)
    if scheduler.config.prediction_type == "v_prediction":
        return a.sqrt() * noisy - (1 - a).sqrt() * pred
    return (noisy - (1 - a).sqrt() * pred) / a.clamp_min(1e-8).sqrt()


def _check_frames(base, frames: np.ndarray, minimum: int = 2) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise CavError(f"expected uint8 RGB frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) < minimum:
        raise CavError(f"the reference has {len(frames)} frame(s); at least {minimum} are needed")
    base.check_frame_size(frames.shape[2], frames.shape[1], "the reference video")


class _Checkpoint:
    """Trainable tensors, optimizer state and progress in one safetensors file (no pickle)."""

    def __init__(self, path: str | None, every: int, identity: dict):
        self.path, self.every, self.identity = path, every, json.dumps(identity, sort_keys=True)
        self.extra_meta: dict[str, str] = {}

    def load(self) -> dict | None:
        if not self.path or not os.path.exists(self.path):
            return None
        try:
            with safe_open(self.path, framework="pt") as f:
                meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
            raise CavError(f"cannot read checkpoint {self.path}: {e}; delete it to start over") from e
        if meta.get("identity") != self.identity:
            raise CavError(f"checkpoint {self.path} belongs to a run with other settings, video or base; "
                           "use the same settings to resume, or delete it to start over")
        return {"meta": meta, "tensors": tensors}

    def due(self, step: int, total: int) -> bool:
        return bool(self.path and self.every and step % self.every == 0 and step < total)

    def save(self, stage: str, step: int, params, optimizer, losses, extra: dict[str, torch.Tensor]) -> None:
        tensors = {f"param.{i}": p.detach().cpu().contiguous() for i, p in enumerate(params)}
        opt = optimizer.state_dict()
        for idx, state in opt["state"].items():
            for k, v in state.items():
                tensors[f"optim.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu()
        tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra.items()})
        meta = {"identity": self.identity, "stage": stage, "step": str(step), "losses": json.dumps(losses),
                "param_groups": json.dumps(opt["param_groups"]), **self.extra_meta}
        with atomic_path(self.path) as tmp:
            save_file(tensors, tmp, metadata=meta)

    @staticmethod
    def restore(saved: dict, params, optimizer) -> tuple[int, list[float]]:
        tensors, meta = saved["tensors"], saved["meta"]
        with torch.no_grad():
            for i, p in enumerate(params):
                p.copy_(tensors[f"param.{i}"])
        state: dict = {}
        for key, v in tensors.items():
            if key.startswith("optim."):
                _, idx, k = key.split(".", 2)
                state.setdefault(int(idx), {})[k] = v
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
        return int(meta["step"]), json.loads(meta["losses"])


def _run_steps(stage: str, total: int, params: list[torch.Tensor], optimizer, step_loss, hooks: Hooks,
               ckpt: _Checkpoint, start: int, losses: list[float], compute: ComputeSettings,
               extra: dict[str, torch.Tensor], preview=None) -> list[float]:
    """The optimisation loop both stages share: stop checks, NaN guard, progress, checkpoints."""
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
        if hooks.on_progress:
            image = preview() if preview and hooks.preview_every and done % hooks.preview_every == 0 else None
            hooks.on_progress(Progress(stage, done, total, losses[-1], image))
        if ckpt.due(done, total):
            ckpt.save(stage, done, params, optimizer, losses, extra)
    return losses


def _run_identity(base, frames: np.ndarray, *settings) -> dict:
    digest = torch.from_numpy(frames[:, ::4, ::4].astype(np.float32)).sum().item()
    return {"base": base.fingerprint, "frames": list(frames.shape), "pixels": digest,
            "settings": [asdict(s) for s in settings]}


def train_absorber(base, frames: np.ndarray, settings: AbsorberSettings,
                   compute: ComputeSettings = ComputeSettings(), hooks: Hooks | None = None,
                   _ckpt: _Checkpoint | None = None, _saved: dict | None = None) -> Absorber:
    """Stage 1: learn the reference's appearance on unordered random crops, temporal layers off."""
    settings.validate()
    _check_frames(base, frames, 1)
    hooks = hooks or Hooks()
    if settings.kind == "none" or settings.steps == 0:
        return Absorber(None, None)
    device, unet = compute.torch_device, base.unet
    rng = np.random.default_rng([settings.seed, 1])
    with on_device(base.vae, device):
        pool = encode_frames(base.vae, random_crops(frames, settings.crop_pool, settings.crop_range, rng))
    tokens = (settings.placeholder,) if settings.uses_ti else ()
    prompt = with_placeholder(settings.prompt or "", tokens)
    scheduler = _noise_scheduler(base)
    params: list[torch.Tensor] = []
    groups = []
    vectors = None
    if settings.uses_ti:
        ensure_tokens(base, tokens)
        vectors = torch.nn.Parameter(init_vectors(base, settings.init_word, len(tokens)).to(device))
        groups.append({"params": [vectors], "lr": settings.ti_lr})
        params.append(vectors)
    ckpt = _ckpt or _Checkpoint(hooks.checkpoint_path, hooks.checkpoint_every,
                                _run_identity(base, frames, settings))
    stack = contextlib.ExitStack()
    with stack:
        stack.enter_context(on_device(unet, device))
        stack.enter_context(on_device(base.text_encoder, device))
        stack.callback(adapters.remove_adapters, unet)
        if settings.uses_slora:
            adapters.inject_lora(unet, _ABSORBER_ADAPTER, spatial_targets(unet), settings.rank, settings.rank,
                                 seed=settings.seed)
            lora_params = [p for n, p in unet.named_parameters() if _ABSORBER_ADAPTER in n]
            groups.append({"params": lora_params, "lr": settings.lr})
            params += lora_params
        if vectors is not None:
            stack.enter_context(token_vectors_hooked(base, tokens, vectors))
            fixed_text = None
        else:
            with torch.no_grad():
                fixed_text = encode_prompts(base, [prompt], device)
        stack.enter_context(temporal_layers_bypassed(unet))
        stack.enter_context(gradient_checkpointing(unet, compute.gradient_checkpointing))
        optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
        start, losses = 0, []
        if _saved is not None and _saved["meta"]["stage"] == "absorber":
            start, losses = _Checkpoint.restore(_saved, params, optimizer)
        pool_device = pool.to(device)

        def step_loss(step: int) -> torch.Tensor:
            g = _generator(settings.seed, 1, step)
            idx = torch.randint(0, len(pool_device), (settings.batch,), generator=g)
            latents = pool_device[idx].unsqueeze(2)  # [B, C, 1, h, w]: each crop is its own clip
            noise = torch.randn(latents.shape, generator=g).to(device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (settings.batch,), generator=g).to(device)
            text = fixed_text if fixed_text is not None else encode_prompts(base, [prompt], device)
            with autocast(device, compute.mixed_precision):
                noisy = scheduler.add_noise(latents, noise, t).to(unet.dtype)
                pred = unet(noisy, t, text.expand(settings.batch, -1, -1).to(unet.dtype)).sample
            return F.mse_loss(pred.float(), diffusion_target(scheduler, latents, noise, t).float())

        losses = _run_steps("absorber", settings.steps, params, optimizer, step_loss, hooks, ckpt, start,
                            losses, compute, {})
        spatial = (adapters.extract_lora(unet, _ABSORBER_ADAPTER, SPATIAL, settings.rank, settings.rank)
                   if settings.uses_slora else None)
    ti = TokenEmbeddings(tokens, vectors.detach().cpu().float().clone()) if vectors is not None else None
    return Absorber(spatial, ti, tuple(losses))


def _debiased_loss(pred: torch.Tensor, target: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """MotionDirector's appearance-debiased temporal loss: plain MSE plus the MSE after
    subtracting a random anchor frame (scaled so the noise keeps unit variance)."""
    anchor = int(torch.randint(0, pred.shape[2], (1,), generator=g))
    beta, alpha = 1.0, math.sqrt(2.0)
    p = alpha * pred - beta * pred[:, :, anchor:anchor + 1]
    q = alpha * target - beta * target[:, :, anchor:anchor + 1]
    return F.mse_loss(pred, target) + F.mse_loss(p, q)


def train_motion(base, frames: np.ndarray, settings: MotionSettings, absorber: Absorber | None = None,
                 compute: ComputeSettings = ComputeSettings(), hooks: Hooks | None = None,
                 _ckpt: _Checkpoint | None = None, _saved: dict | None = None) -> tuple[LoraWeights, list[float]]:
    """Stage 2: with the absorber frozen, learn the T-LoRA on the ordered clip."""
    settings.validate()
    _check_frames(base, frames)
    hooks = hooks or Hooks()
    absorber = absorber or Absorber(None, None)
    device, unet = compute.torch_device, base.unet
    alpha = settings.alpha or settings.rank
    scheduler = _noise_scheduler(base)
    with on_device(base.vae, device):
        latents = encode_frames(base.vae, frames).permute(1, 0, 2, 3).unsqueeze(0).to(device)  # [1,C,F,h,w]
    prompt = with_placeholder(settings.prompt, absorber.tokens if settings.absorber_token_in_prompt else ())
    ckpt = _ckpt or _Checkpoint(hooks.checkpoint_path, hooks.checkpoint_every,
                                _run_identity(base, frames, settings))
    stack = contextlib.ExitStack()
    with stack:
        stack.enter_context(on_device(unet, device))
        with on_device(base.text_encoder, device), token_embeddings_applied(base, absorber.textual_inversion):
            with torch.no_grad():
                text = encode_prompts(base, [prompt], device)  # fixed: the TI is frozen now
        stack.callback(adapters.remove_adapters, unet)
        if absorber.spatial is not None:
            adapters.load_lora(unet, _ABSORBER_ADAPTER, absorber.spatial)
        adapters.inject_lora(unet, _MOTION_ADAPTER, settings.targets(unet), settings.rank, alpha, seed=settings.seed)
        for name, p in unet.named_parameters():
            p.requires_grad_(_MOTION_ADAPTER in name)
        params = [p for p in unet.parameters() if p.requires_grad]
        stack.enter_context(gradient_checkpointing(unet, compute.gradient_checkpointing))
        optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
        start, losses = 0, []
        if _saved is not None and _saved["meta"]["stage"] == "motion":
            start, losses = _Checkpoint.restore(_saved, params, optimizer)
        last: dict = {}

        def step_loss(step: int) -> torch.Tensor:
            g = _generator(settings.seed, 2, step)
            noise = torch.randn(latents.shape, generator=g).to(device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=g).to(device)
            noisy = scheduler.add_noise(latents, noise, t)
            with autocast(device, compute.mixed_precision):
                pred = unet(noisy.to(unet.dtype), t, text.to(unet.dtype)).sample.float()
            target = diffusion_target(scheduler, latents, noise, t).float()
            last.update(noisy=noisy.detach(), pred=pred.detach(), t=t)
            if settings.loss == "debiased":
                return _debiased_loss(pred, target, g)
            return F.mse_loss(pred, target)

        def preview() -> np.ndarray:
            x0 = clean_estimate(scheduler, last["noisy"], last["pred"], last["t"])
            mid = x0.shape[2] // 2
            with on_device(base.vae, device):
                frame = decode_latents(base.vae, x0[0, :, mid:mid + 1])[0]
            return (frame * 255).round().astype(np.uint8)

        extra = _absorber_tensors(absorber)
        losses = _run_steps("motion", settings.steps, params, optimizer, step_loss, hooks, ckpt, start,
                            losses, compute, extra, preview)
        lora = adapters.extract_lora(unet, _MOTION_ADAPTER, TEMPORAL, settings.rank, alpha)
    return lora, losses


def _absorber_tensors(absorber: Absorber) -> dict[str, torch.Tensor]:
    out = {}
    if absorber.spatial is not None:
        out.update({f"spatial.{k}": v for k, v in absorber.spatial.tensors.items()})
    if absorber.textual_inversion is not None:
        out["ti_vectors"] = absorber.textual_inversion.vectors
    return out


def _absorber_from_checkpoint(saved: dict, settings: AbsorberSettings) -> Absorber:
    tensors, losses = saved["tensors"], json.loads(saved["meta"].get("absorber_losses", "[]"))
    spatial = {k[len("extra.spatial."):]: v for k, v in tensors.items() if k.startswith("extra.spatial.")}
    lora = LoraWeights(SPATIAL, settings.rank, float(settings.rank), spatial) if spatial else None
    ti = (TokenEmbeddings((settings.placeholder,), tensors["extra.ti_vectors"])
          if "extra.ti_vectors" in tensors else None)
    return Absorber(lora, ti, tuple(losses))


def training_record(motion: MotionSettings, frames: np.ndarray, absorber: AbsorberSettings | None,
                    tokens: tuple[str, ...] = (), compute: ComputeSettings | None = None) -> dict:
    """What an adapter file's metadata says about how it was made. The CLI and the nodes both build
    it here, so a new setting is recorded by both or by neither."""
    record = {k: v for k, v in asdict(motion).items() if k != "alpha"}
    record.update(frames=int(frames.shape[0]), size=[int(frames.shape[2]), int(frames.shape[1])])
    if absorber is not None:
        record["absorber"] = {**asdict(absorber), "crop_range": list(absorber.crop_range), "tokens": list(tokens)}
    if compute is not None:
        record["mixed_precision"] = compute.mixed_precision
        record["gradient_checkpointing"] = compute.gradient_checkpointing
    return record


def train_customization(base, frames: np.ndarray, absorber_settings: AbsorberSettings,
                        motion_settings: MotionSettings, compute: ComputeSettings = ComputeSettings(),
                        hooks: Hooks | None = None) -> TrainResult:
    """Both stages in one run, resumable from ``hooks.checkpoint_path``; returns the adapter file
    content (T-LoRA plus the absorber, kept apart) without writing it."""
    hooks = hooks or Hooks()
    absorber_settings.validate()
    motion_settings.validate()
    _check_frames(base, frames)
    identity = _run_identity(base, frames, absorber_settings, motion_settings)
    ckpt = _Checkpoint(hooks.checkpoint_path, hooks.checkpoint_every, identity)
    saved = ckpt.load()
    if saved is not None and saved["meta"]["stage"] == "motion":
        absorber = _absorber_from_checkpoint(saved, absorber_settings)
    else:
        absorber = train_absorber(base, frames, absorber_settings, compute, hooks, ckpt, saved)
        saved = None
    # Stage-2 checkpoints carry the finished absorber, so a resume skips stage 1.
    ckpt.extra_meta["absorber_losses"] = json.dumps(list(absorber.losses))
    lora, motion_losses = train_motion(base, frames, motion_settings, absorber, compute, hooks, ckpt, saved)
    training = training_record(motion_settings, frames, absorber_settings, absorber.tokens, compute)
    adapter = AdapterFile(base_name=base.name, base_fingerprint=base.fingerprint, temporal=lora,
                          spatial=absorber.spatial, textual_inversion=absorber.textual_inversion,
                          training=training)
    if ckpt.path and os.path.exists(ckpt.path):
        os.remove(ckpt.path)  # finished: the checkpoint has served its purpose
    return TrainResult(adapter, {"absorber": list(absorber.losses), "motion": motion_losses})


