"""Importing a temporal LoRA trained with MotionDirector (showlab/MotionDirector).

What MotionDirector writes, as its ``utils/lora.py`` and ``utils/lora_handler.py`` do it:

- Layers: every ``nn.Linear`` under each ``TransformerTemporalModel`` of the UNet (``transformer_in``
  included) whose path inside it runs through ``attn1``, ``attn2`` or ``ff``: per temporal block
  attn1.to_q/k/v/to_out.0, attn2.to_q/k/v/to_out.0, ff.net.0.proj, ff.net.2. Its order is
  ``unet.named_modules()`` order (owners in that order, then their own modules in theirs).
- ``.pt``: ``torch.save`` of a plain list ``[up_0, down_0, up_1, down_1, ...]`` in that order,
  fp32, no keys; up is ``[out, r]``, down ``[r, in]``.
- ``.safetensors`` export: ``<model>:<i>:up`` / ``<model>:<i>:down`` (``<model>`` e.g. ``unet``),
  metadata ``<model>`` = JSON list of the targeted classes, ``<model>:<i>:rank``; fp16, with the
  layer's scale already multiplied into up.
- Scale: a layer adds ``up(down(x)) * scale`` with scale 1.0 unless the user changes it, so the
  delta is ``up @ down``: here A = down, B = up, alpha = rank.
- Rank: clamped per layer to min(in, out); smaller ranks are zero-padded to the largest here (peft
  takes one rank per adapter), which leaves every delta unchanged.

A ``.pt`` is read only with ``torch.load(weights_only=True)``: a file that pickles objects would need
its code run to load, and is refused instead. The file carries no base identity, so only the layer
count and every shape can be checked against the base.
"""
from __future__ import annotations

import json
import os
import pickle

import torch
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from safetensors import SafetensorError, safe_open

from .adapter_file import FORMAT, AdapterFile
from .adapters import TEMPORAL, LoraWeights
from .errors import CavError

SOURCE = "MotionDirector"
TEMPORAL_CLASS = "TransformerTemporalModel"
_BRANCHES = {"attn1", "attn2", "ff"}
_FORMATS = {".pt": "pt", ".pth": "pt", ".safetensors": "safetensors"}


def motiondirector_targets(unet: torch.nn.Module) -> list[str]:
    """The layers MotionDirector's temporal LoRA adapts on ``unet``, in the order it saves them."""
    names = []
    for owner_name, owner in unet.named_modules():
        if not isinstance(owner, TransformerTemporalModel):
            continue
        for name, module in owner.named_modules():
            if isinstance(module, torch.nn.Linear) and _BRANCHES & set(name.split(".")):
                names.append(f"{owner_name}.{name}" if owner_name else name)
    return names


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_pt(path: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    name = os.path.basename(path)
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        if "global" in str(e).lower():
            raise CavError(f"{name} needs code to load (it pickles Python objects, not only tensors) and "
                           "was not run; a MotionDirector LoRA is a plain list of tensors") from e
        raise CavError(f"{name} is damaged or holds more than tensors; it was not loaded") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CavError(f"{name} is truncated or not a torch file ({_first_line(e)})") from e
    if not isinstance(data, (list, tuple)) or not all(torch.is_tensor(t) for t in data):
        raise CavError(f"{name} is not a MotionDirector LoRA: it holds a {type(data).__name__}, "
                       "not a list of up/down tensors")
    if len(data) % 2:
        raise CavError(f"{name} holds {len(data)} tensors; a MotionDirector LoRA has an up and a down per layer")
    return [(data[i], data[i + 1]) for i in range(0, len(data), 2)]


def _read_safetensors(path: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    name = os.path.basename(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CavError(f"{name} is truncated or not a safetensors file ({_first_line(e)})") from e
    if meta.get("format") == FORMAT:
        raise CavError(f"{name} is a Customize-A-Video adapter already; use it as it is")
    models = sorted({k.split(":")[0] for k in tensors if k.count(":") == 2})
    if not models:
        raise CavError(f"{name} is not a MotionDirector LoRA export (no '<model>:<i>:up' / ':down' keys)")
    found = {}
    for model in models:
        try:
            found[model] = json.loads(meta[model])
        except (KeyError, json.JSONDecodeError) as e:
            raise CavError(f"{name} has no target metadata for '{model}'; is it a MotionDirector LoRA?") from e
    temporal = [m for m, classes in found.items() if classes == [TEMPORAL_CLASS]]
    if len(temporal) != 1:
        raise CavError(f"{name} holds LoRAs for {found}; exactly one MotionDirector temporal LoRA "
                       f"({TEMPORAL_CLASS}) is needed")
    model = temporal[0]
    keys = [k for k in tensors if k.startswith(f"{model}:")]
    count = len(keys) // 2
    try:
        if len(keys) % 2:
            raise KeyError(f"{model}:{count}:up/down")
        return [(tensors[f"{model}:{i}:up"], tensors[f"{model}:{i}:down"]) for i in range(count)]
    except KeyError as e:
        raise CavError(f"{name} is incomplete: tensor {e.args[0]} is missing") from e


def _to_lora(pairs: list[tuple[torch.Tensor, torch.Tensor]], base, name: str) -> LoraWeights:
    """up/down pairs in MotionDirector's order as this project's peft keys, checked against ``base``."""
    targets = motiondirector_targets(base.unet)
    modules = dict(base.unet.named_modules())
    if len(pairs) != len(targets):
        raise CavError(f"{name} was made for another base: it holds {len(pairs)} layers ({2 * len(pairs)} "
                       f"tensors), MotionDirector's temporal LoRA on {base.describe} has {len(targets)} "
                       f"({2 * len(targets)} tensors)")
    for i, (target, (up, down)) in enumerate(zip(targets, pairs)):
        layer = modules[target]
        fits = (up.ndim == 2 and down.ndim == 2 and up.shape[0] == layer.out_features
                and down.shape[1] == layer.in_features and up.shape[1] == down.shape[0] >= 1)
        if not fits:
            raise CavError(f"{name} was made for another base: layer {i} ({target}) needs up "
                           f"[{layer.out_features}, r] and down [r, {layer.in_features}], found up "
                           f"{list(up.shape)} and down {list(down.shape)}")
        if not (torch.isfinite(up).all() and torch.isfinite(down).all()):
            raise CavError(f"{name} holds NaN or inf values at layer {i} ({target})")
    rank = max(down.shape[0] for _, down in pairs)
    tensors = {}
    for target, (up, down) in zip(targets, pairs):
        r = down.shape[0]
        a = torch.zeros(rank, down.shape[1])
        b = torch.zeros(up.shape[0], rank)
        a[:r], b[:, :r] = down.detach().float(), up.detach().float()
        tensors[f"{target}.lora_A.weight"], tensors[f"{target}.lora_B.weight"] = a, b
    return LoraWeights(TEMPORAL, rank, float(rank), tensors)


def import_motiondirector(path: str | os.PathLike, base) -> AdapterFile:
    """A MotionDirector temporal LoRA (``.pt`` or its ``.safetensors`` export) as an adapter file for ``base``."""
    path = os.fspath(path)
    name = os.path.basename(path)
    kind = _FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise CavError(f"{name}: a MotionDirector LoRA is a .pt file or its .safetensors export")
    if not os.path.isfile(path):
        raise CavError(f"MotionDirector LoRA not found: {path}")
    pairs = _read_pt(path) if kind == "pt" else _read_safetensors(path)
    lora = _to_lora(pairs, base, name)
    return AdapterFile(base_name=base.name, base_fingerprint=base.fingerprint, temporal=lora,
                       training={"imported_from": SOURCE, "file": name, "format": kind})


def is_motiondirector_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a MotionDirector LoRA rather than this project's adapter file."""
    path = os.fspath(path)
    kind = _FORMATS.get(os.path.splitext(path)[1].lower())
    if kind == "pt":
        return True
    if kind != "safetensors" or not os.path.isfile(path):
        return False
    try:
        with safe_open(path, framework="pt") as f:
            meta, keys = f.metadata() or {}, list(f.keys())
    except (SafetensorError, OSError, ValueError):
        return False
    return meta.get("format") != FORMAT and any(k.endswith(":up") for k in keys)


def load_motion_file(path: str | os.PathLike, base=None) -> AdapterFile:
    """A motion-LoRA file of either kind: this project's adapter file as it is, a MotionDirector
    LoRA converted for ``base`` (which it needs: the file names no layers)."""
    from .adapter_file import load_adapter_file

    if not is_motiondirector_file(path):
        return load_adapter_file(path)
    if base is None:
        raise CavError(f"{os.path.basename(os.fspath(path))} is a MotionDirector LoRA: it is converted for a "
                       "base, so give the base it was trained on")
    return import_motiondirector(path, base)
