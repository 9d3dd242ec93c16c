"""LoRA adapters on a UNet3D through peft: inject, extract, activate with weights, fuse, remove.

A LoRA is carried around as :class:`LoraWeights` (peft state-dict keys, rank, alpha). Applying one
to a shared base never leaves traces: :func:`applied_loras` removes the peft layers on exit and,
when it fused the deltas into the base weights, restores those weights from an exact copy.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer, cast_adapter_dtype
from peft.utils import get_peft_model_state_dict

from .errors import CavError

TEMPORAL, SPATIAL = "temporal", "spatial"


@dataclass(frozen=True)
class LoraWeights:
    """One trained LoRA: peft state-dict tensors (keys without adapter name) and its settings."""

    role: str  # TEMPORAL or SPATIAL
    rank: int
    alpha: float
    tensors: dict[str, torch.Tensor]

    @property
    def targets(self) -> list[str]:
        return sorted({k.rsplit(".lora_", 1)[0] for k in self.tensors})

    def delta(self, target: str) -> torch.Tensor:
        """The weight delta this LoRA adds to ``target`` at strength 1 (B @ A * alpha / r).

        Also right for peft's convolution LoRA: A is a full-kernel convolution and B a 1x1 one.
        """
        a = self.tensors[f"{target}.lora_A.weight"].float()
        b = self.tensors[f"{target}.lora_B.weight"].float()
        return (b.flatten(1) @ a.flatten(1)).reshape(b.shape[0], *a.shape[1:]) * (self.alpha / self.rank)


def check_weight(weight: float, what: str) -> float:
    """A strength must be a finite number: NaN or inf would silently ruin every output."""
    try:
        value = float(weight)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise CavError(f"{what}: the weight must be a finite number, not {weight}")
    return value


def inject_lora(unet: torch.nn.Module, name: str, targets: Sequence[str], rank: int, alpha: float,
                seed: int = 0) -> None:
    """Add a fresh LoRA named ``name`` on ``targets`` (B zero-initialised, so the output is unchanged).

    A is initialised from ``seed``, not from the global RNG, so runs (and resumed runs) repeat.
    The adapter's weights are fp32 whatever the base's dtype: fp16 loss scaling refuses fp16
    parameters, and AdamW's small updates vanish in bf16 (peft casts inputs to them in forward).
    """
    if not targets:
        raise CavError("no layers to adapt were found in this UNet")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0)
    active = active_adapters(unet)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # several on purpose
        torch.manual_seed(seed)
        inject_adapter_in_model(config, unet, adapter_name=name)
    cast_adapter_dtype(unet, name)
    activate(unet, active + [name])


def extract_lora(unet: torch.nn.Module, name: str, role: str, rank: int, alpha: float) -> LoraWeights:
    state = get_peft_model_state_dict(unet, adapter_name=name)
    tensors = {k: v.detach().to("cpu", torch.float32).clone() for k, v in state.items()}
    return LoraWeights(role=role, rank=rank, alpha=alpha, tensors=tensors)


def load_lora(unet: torch.nn.Module, name: str, lora: LoraWeights) -> None:
    """Inject ``lora`` as adapter ``name`` and set its weights; every key must land."""
    check_lora_fits(unet, lora)
    inject_lora(unet, name, lora.targets, lora.rank, lora.alpha)
    result = set_peft_model_state_dict(unet, lora.tensors, adapter_name=name)
    missing = [k for k in result.missing_keys if f".{name}." in k]
    if result.unexpected_keys or missing:
        raise CavError(f"LoRA keys did not match the UNet ({len(missing)} missing, "
                       f"{len(result.unexpected_keys)} unexpected)")


def check_lora_fits(unet: torch.nn.Module, lora: LoraWeights, what: str = "this LoRA") -> None:
    """Every target must be a Linear or Conv3d of the right shape: refuse before peft gives a traceback."""
    modules = dict(unet.named_modules())
    for target in lora.targets:
        module = modules.get(target)
        if isinstance(module, BaseTunerLayer):
            module = module.get_base_layer()
        a = lora.tensors.get(f"{target}.lora_A.weight")
        b = lora.tensors.get(f"{target}.lora_B.weight")
        if a is None or b is None:
            raise CavError(f"{what} is incomplete: layer {target} lacks its lora_A or lora_B tensor")
        if isinstance(module, torch.nn.Linear):
            fits = a.shape == (lora.rank, module.in_features) and b.shape == (module.out_features, lora.rank)
        elif isinstance(module, torch.nn.Conv3d):  # peft: A is a full-kernel conv, B a 1x1x1 one
            fits = (a.shape == (lora.rank, module.in_channels, *module.kernel_size)
                    and b.shape == (module.out_channels, lora.rank, 1, 1, 1))
        else:
            raise CavError(f"{what} adapts layer {target}, which this base does not have")
        if not fits:
            raise CavError(f"{what} has shapes {tuple(b.shape)}x{tuple(a.shape)} for {target}, "
                           f"which is {tuple(module.weight.shape)} in this base")


def tuner_layers(unet: torch.nn.Module) -> Iterator[tuple[str, BaseTunerLayer]]:
    for name, module in unet.named_modules():
        if isinstance(module, BaseTunerLayer):
            yield name, module


def active_adapters(unet: torch.nn.Module) -> list[str]:
    names: list[str] = []
    for _, layer in tuner_layers(unet):
        names += [n for n in layer.active_adapters if n in layer.lora_A and n not in names]
    return names


def activate(unet: torch.nn.Module, names: Sequence[str]) -> None:
    """Make exactly ``names`` active in every peft layer that has them (peft itself sets one
    adapter for the whole model, which silently switches off adapters on other layers).
    Trainability is left to the caller."""
    for _, layer in tuner_layers(unet):
        requires = {n: p.requires_grad for n, p in layer.named_parameters()}
        layer.set_adapter([n for n in names if n in layer.lora_A] or list(names)[:1] or ["default"])
        for n, p in layer.named_parameters():
            p.requires_grad_(requires[n])


def set_strength(unet: torch.nn.Module, name: str, strength: float) -> None:
    for _, layer in tuner_layers(unet):
        layer.set_scale(name, strength)


def remove_adapters(unet: torch.nn.Module) -> None:
    """Put every wrapped layer's original module back; drop peft's bookkeeping."""
    for name, layer in list(tuner_layers(unet)):
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        setattr(parent, child, layer.get_base_layer())
    if hasattr(unet, "peft_config"):
        del unet.peft_config


@contextlib.contextmanager
def restored_weights(unet: torch.nn.Module,
                     targets: Sequence[str]) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """For the block, ``{target: (its weight, an exact copy of it)}``; on exit every copy is put back.

    Whatever the block adds into those weights, the base leaves it bit for bit as it entered
    (peft's own unmerge subtracts, which is not exact).
    """
    modules = dict(unet.named_modules())
    weights = {t: (modules[t].weight, modules[t].weight.detach().clone()) for t in sorted(set(targets))}
    try:
        yield weights
    finally:
        with torch.no_grad():
            for weight, saved in weights.values():
                weight.copy_(saved)


@contextlib.contextmanager
def loaded_loras(unet: torch.nn.Module, loras: Sequence[LoraWeights]) -> Iterator[list[str]]:
    """Every LoRA as an active peft adapter for the block (strength 1; see :func:`set_strength`); yields
    their adapter names. On exit the peft layers are removed, leaving the original modules."""
    names = [f"cav_apply_{i}" for i in range(len(loras))]
    try:
        for name, lora in zip(names, loras):
            load_lora(unet, name, lora)
        activate(unet, names)
        yield names
    finally:
        remove_adapters(unet)


def add_delta(weight: torch.Tensor, delta: torch.Tensor, strength: float) -> None:
    """Add ``strength`` x ``delta`` (fp32) into ``weight``, rounding once to its dtype."""
    with torch.no_grad():
        weight.add_((delta * strength).to(weight.device, weight.dtype))


@contextlib.contextmanager
def applied_loras(unet: torch.nn.Module, loras: Sequence[tuple[LoraWeights, float]],
                  fuse: bool = True) -> Iterator[None]:
    """Apply weighted LoRAs at constant strengths for the duration of the block.

    fuse=True adds every weighted delta into the base weights (no per-step LoRA cost) and on exit
    copies the saved originals back, so the base is restored bit for bit. fuse=False keeps peft
    layers that sum the active adapters' outputs at each forward.
    """
    if not loras:
        yield
        return
    for i, (lora, strength) in enumerate(loras):
        check_lora_fits(unet, lora)
        check_weight(strength, f"LoRA {i + 1} of {len(loras)}")
    if fuse:
        with restored_weights(unet, [t for lora, _ in loras for t in lora.targets]) as weights:
            for lora, strength in loras:
                for t in lora.targets:
                    add_delta(weights[t][0], lora.delta(t), strength)
            yield
        return
    with loaded_loras(unet, [lora for lora, _ in loras]) as names:
        for name, (_, strength) in zip(names, loras):
            set_strength(unet, name, strength)
        yield
