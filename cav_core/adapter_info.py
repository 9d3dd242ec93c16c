"""What a motion-LoRA file is, read from its safetensors header only (no tensor is loaded): the
summary a file picker shows beside its name."""
from __future__ import annotations

import json
import os

from safetensors import SafetensorError, safe_open

from .adapter_file import FORMAT, FORMAT_VERSION, TI_PREFIX
from .adapters import SPATIAL, TEMPORAL
from .errors import CavError
from .motiondirector_import import SOURCE as MOTIONDIRECTOR, is_motiondirector_file

# kinds of adapted layers, by a part of their name (the rest are temporal attention projections)
LAYER_KINDS = (("transformer_in", "transformer_in."), ("feed-forward", ".ff."), ("temporal convs", ".temp_convs."))
ATTENTION = "attention"
MOTIONDIRECTOR_LAYER_KINDS = (ATTENTION, "transformer_in", "feed-forward")  # attn1/attn2/ff of every temporal block


def layer_kinds(targets: list[str]) -> list[str]:
    """The kinds of layers a LoRA adapts, in a fixed order."""
    found = set()
    for target in targets:
        kind = next((k for k, part in LAYER_KINDS if part in f".{target}"), ATTENTION)
        found.add(kind)
    return [k for k in (ATTENTION, *(k for k, _ in LAYER_KINDS)) if k in found]


def _empty(**values) -> dict:
    info = {"base": None, "caption": None, "steps": None, "rank": None, "layers": None, "layer_kinds": [],
            "recipe": None, "absorber": None, "motiondirector": False}
    info.update(values)
    return info


def _header(path: str, shapes: bool = False) -> tuple[dict, dict]:
    """The metadata of a safetensors file and, when asked, {tensor name: shape}."""
    name = os.path.basename(path)
    try:
        with safe_open(path, framework="pt") as f:
            return f.metadata() or {}, {k: f.get_slice(k).get_shape() for k in f.keys()} if shapes else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CavError(f"{name} is not a readable safetensors file ({e})") from e


def _motiondirector_info(path: str) -> dict:
    if os.path.splitext(path)[1].lower() != ".safetensors":  # a .pt names no layers without being loaded
        return _empty(motiondirector=True)
    _, shapes = _header(path, shapes=True)
    downs = [shape for key, shape in shapes.items() if key.endswith(":down")]
    return _empty(motiondirector=True, layers=len(downs), rank=max((s[0] for s in downs if s), default=None),
                  layer_kinds=list(MOTIONDIRECTOR_LAYER_KINDS) if downs else [])


def _absorber_kind(meta: dict, training: dict) -> str:
    recorded = training.get("absorber")
    if isinstance(recorded, dict) and recorded.get("kind"):
        return recorded["kind"]
    parts = [kind for kind, key in (("slora", SPATIAL), ("ti", TI_PREFIX)) if key in meta]
    return "dual" if len(parts) == 2 else (parts[0] if parts else "none")


def _adapter_info(name: str, meta: dict) -> dict:
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise CavError(f"{name} uses adapter format {meta['format_version']}; update the pack to read it")
    if TEMPORAL not in meta:
        raise CavError(f"{name} holds no motion (temporal) LoRA, only {meta.get('kinds') or 'nothing'}")
    temporal = json.loads(meta[TEMPORAL])
    training = json.loads(meta.get("training", "{}"))
    if not isinstance(training, dict) or not isinstance(temporal.get("targets"), list):
        raise ValueError("the training record or the layer list is not what the format says")
    info = _empty(base=meta.get("base_name"), caption=training.get("prompt"),
                  steps=training.get("total_steps", training.get("steps")), rank=int(temporal["rank"]),
                  layers=len(temporal["targets"]), layer_kinds=layer_kinds(temporal["targets"]),
                  recipe=training.get("recipe"), absorber=_absorber_kind(meta, training),
                  created=meta.get("created"))
    if training.get("imported_from") == MOTIONDIRECTOR:
        info["imported_from"] = MOTIONDIRECTOR
    if isinstance(training.get("merged_from"), list):
        info["merged_from"] = [{"file": s.get("file"), "weight": s.get("weight")} for s in training["merged_from"]]
    return info


def file_info(path: str | os.PathLike) -> dict:
    """A motion-LoRA file's base name, training caption, steps, rank, adapted layers (count and kinds),
    recipe and absorber kind, from its header; ``motiondirector`` says whether it is MotionDirector's
    own file. Unknown values are None. Raises CavError for a file that cannot be read or is not a
    motion LoRA."""
    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise CavError(f"{name} was not found")
    if is_motiondirector_file(path):
        return _motiondirector_info(path)
    meta, _ = _header(path)
    if meta.get("format") != FORMAT:
        raise CavError(f"{name} is not a Customize-A-Video adapter (no '{FORMAT}' metadata); it may be an "
                       "image-model LoRA or another tool's file")
    try:
        return _adapter_info(name, meta)
    except (json.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise CavError(f"{name} has damaged metadata ({type(e).__name__}: {e})") from e
