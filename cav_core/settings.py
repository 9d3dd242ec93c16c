"""What a training run is told: absorber, T-LoRA and compute settings.

The defaults are the paper's setting; a base's recipe (:mod:`cav_core.recipe`) may change them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .compute import default_device
from .errors import CavError
from .targeting import temporal_targets

ABSORBER_KINDS = ("none", "slora", "ti", "dual")
MOTION_LOSSES = ("mse", "debiased")


def _check_common(steps: int, lr: float, rank: int) -> None:
    if steps < 0:
        raise CavError(f"steps must be >= 0, got {steps}")
    if not (0 < lr < 1):
        raise CavError(f"learning rate must be in (0, 1), got {lr}")
    if rank < 1:
        raise CavError(f"rank must be >= 1, got {rank}")


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
    # Training timesteps are drawn uniformly from [min_timestep, the schedule's count). Above 0 every
    # step goes to the noisier timesteps, where sampling settles where things are and how they move.
    min_timestep: int = 0
    # Whether stage 2's caption carries the absorber's TI token (METHOD: it "may"). Without it, a
    # TI absorber still trains in stage 1 and is saved, but stage 2 sees only its S-LoRA.
    absorber_token_in_prompt: bool = True

    def validate(self) -> None:
        if not self.prompt.strip():
            raise CavError("the motion prompt is empty; describe the reference video")
        if self.loss not in MOTION_LOSSES:
            raise CavError(f"motion loss must be one of {', '.join(MOTION_LOSSES)}, not {self.loss!r}")
        if isinstance(self.min_timestep, bool) or not isinstance(self.min_timestep, int) or self.min_timestep < 0:
            raise CavError(f"min_timestep must be a whole number from 0, got {self.min_timestep!r}")
        _check_common(self.steps, self.lr, self.rank)

    def targets(self, unet: torch.nn.Module) -> list[str]:
        """The temporal layers these settings adapt (see ``targeting.temporal_targets``)."""
        return temporal_targets(unet, self.include_transformer_in, self.include_feed_forward,
                                self.include_temporal_convs)


@dataclass(frozen=True)
class ComputeSettings:
    device: str | None = None  # None: CUDA if available
    mixed_precision: str = "no"  # no | bf16 | fp16 (autocast; fp16 adds loss scaling)
    gradient_checkpointing: bool = False  # every block recomputed in backward
    recompute_feed_forwards: bool = False  # GEGLU feed-forwards recomputed (compute.feed_forward_checkpointing)
    bf16_activations: bool = False  # activations kept for backward in bf16 (compute.saved_activations)
    lean_backward: bool = True  # frozen layers keep only what gradients need (lean_backward); exact
    merged_weight_loras: bool = True  # LoRAs on layers narrow for their rank run merged (merged_weight)
    # A training step estimated above this peak recomputes the UNet blocks that keep the most, as few
    # as fit (selective_checkpointing); None: never. Fits an 8 GB GPU.
    memory_target_gib: float | None = 6.0

    @property
    def feed_forward_checkpointing(self) -> bool:
        """Whether to recompute the feed-forwards alone: not when every block is recomputed already."""
        return self.recompute_feed_forwards and not self.gradient_checkpointing

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device) if self.device else default_device()
