"""The adapter file: safetensors with keyed tensors and JSON metadata (no pickle).

One file can hold a T-LoRA, an S-LoRA and textual-inversion embeddings, each under its own key
prefix (``temporal.``, ``spatial.``, ``textual_inversion.``) so inference can take only the motion.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .adapters import SPATIAL, TEMPORAL, LoraWeights, check_lora_fits
from .errors import CavError
from .files import atomic_path

FORMAT = "customize-a-video-adapter"
FORMAT_VERSION = 1
TI_PREFIX = "textual_inversion"


@dataclass(frozen=True)
class TokenEmbeddings:
    """Learned textual-inversion tokens and their input-embedding vectors [n, dim]."""

    tokens: tuple[str, ...]
    vectors: torch.Tensor


@dataclass(frozen=True)
class AdapterFile:
    base_name: str
    base_fingerprint: str
    temporal: LoraWeights | None = None
    spatial: LoraWeights | None = None
    textual_inversion: TokenEmbeddings | None = None
    training: dict = field(default_factory=dict)
    created: str = ""

    @property
    def kinds(self) -> list[str]:
        return [k for k in (TEMPORAL, SPATIAL, TI_PREFIX) if self._part(k) is not None]

    def _part(self, kind):
        return {TEMPORAL: self.temporal, SPATIAL: self.spatial, TI_PREFIX: self.textual_inversion}[kind]

    def describe(self) -> dict:
        """The metadata and a key summary, as ``inspect`` prints it."""
        out = {"format": FORMAT, "format_version": FORMAT_VERSION, "kinds": self.kinds,
               "base": {"name": self.base_name, "fingerprint": self.base_fingerprint},
               "training": self.training, "created": self.created}
        for lora in (self.temporal, self.spatial):
            if lora is not None:
                params = sum(t.numel() for t in lora.tensors.values())
                out[lora.role] = {"rank": lora.rank, "alpha": lora.alpha, "layers": len(lora.targets),
                                  "tensors": len(lora.tensors), "parameters": params,
                                  "targets": lora.targets}
        if self.textual_inversion is not None:
            out[TI_PREFIX] = {"tokens": list(self.textual_inversion.tokens),
                              "dim": int(self.textual_inversion.vectors.shape[-1])}
        return out


def preview_path(path: str | os.PathLike) -> str:
    """Where an adapter file's animated preview goes: beside it, same name, ``.webp`` (as model
    browsers look for previews)."""
    return os.path.splitext(os.fspath(path))[0] + ".webp"


def save_adapter_file(path: str | os.PathLike, adapter: AdapterFile) -> str:
    tensors: dict[str, torch.Tensor] = {}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kinds": ",".join(adapter.kinds),
            "base_name": adapter.base_name, "base_fingerprint": adapter.base_fingerprint,
            "training": json.dumps(adapter.training, sort_keys=True),
            "created": adapter.created or datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for lora in (adapter.temporal, adapter.spatial):
        if lora is None:
            continue
        tensors.update({f"{lora.role}.{k}": v.contiguous() for k, v in lora.tensors.items()})
        meta[lora.role] = json.dumps({"rank": lora.rank, "alpha": lora.alpha, "targets": lora.targets})
    if adapter.textual_inversion is not None:
        tensors[f"{TI_PREFIX}.vectors"] = adapter.textual_inversion.vectors.detach().float().contiguous()
        meta[TI_PREFIX] = json.dumps({"tokens": list(adapter.textual_inversion.tokens)})
    if not tensors:
        raise CavError("nothing to save: the adapter has no LoRA and no embeddings")
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return os.fspath(path)


def load_adapter_file(path: str | os.PathLike) -> AdapterFile:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CavError(f"adapter file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CavError(f"{path} is not a readable safetensors file ({e})") from e
    if meta.get("format") != FORMAT:
        raise CavError(f"{path} is not a Customize-A-Video adapter (no '{FORMAT}' metadata); "
                       "it may be an image-model LoRA or another tool's file")
    try:
        return _from_metadata(meta, tensors, path)
    except (json.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise CavError(f"{path} has damaged metadata ({type(e).__name__}: {e}); it cannot be used, "
                       "save or train it again") from e


def _from_metadata(meta: dict, tensors: dict, path: str) -> AdapterFile:
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise CavError(f"{path} uses adapter format {meta['format_version']}; update the pack to read it")
    parts = {}
    for role in (TEMPORAL, SPATIAL):
        if role in meta:
            info = json.loads(meta[role])
            prefix = role + "."
            parts[role] = LoraWeights(role=role, rank=int(info["rank"]), alpha=float(info["alpha"]),
                                      tensors={k[len(prefix):]: v for k, v in tensors.items()
                                               if k.startswith(prefix)})
            for target in parts[role].targets:  # every layer needs both halves
                for half in ("lora_A", "lora_B"):
                    if f"{target}.{half}.weight" not in parts[role].tensors:
                        raise KeyError(f"{prefix}{target}.{half}.weight")
    ti = None
    if TI_PREFIX in meta:
        ti = TokenEmbeddings(tuple(json.loads(meta[TI_PREFIX])["tokens"]), tensors[f"{TI_PREFIX}.vectors"])
    training = json.loads(meta.get("training", "{}"))
    if not isinstance(training, dict):
        raise ValueError("the training record is not a JSON object")
    return AdapterFile(base_name=meta.get("base_name", "?"), base_fingerprint=meta.get("base_fingerprint", "?"),
                       temporal=parts.get(TEMPORAL), spatial=parts.get(SPATIAL), textual_inversion=ti,
                       training=training, created=meta.get("created", ""))


def check_adapter_fits(adapter: AdapterFile, base, source: str = "this adapter") -> None:
    """Refuse an adapter trained on another base architecture, naming both bases."""
    from .base_model import check_same_base

    check_same_base(source, adapter.base_name, adapter.base_fingerprint, base)
    for lora in (adapter.temporal, adapter.spatial):
        if lora is not None:
            check_lora_fits(base.unet, lora, source)
    ti = adapter.textual_inversion
    if ti is not None and ti.vectors.shape[-1] != base.text_encoder.config.hidden_size:
        raise CavError(f"{source} has {ti.vectors.shape[-1]}-dim token embeddings; "
                       f"{base.describe} uses {base.text_encoder.config.hidden_size}")
