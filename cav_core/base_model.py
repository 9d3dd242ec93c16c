"""Loading a diffusers text-to-video base (ModelScope / ZeroScope layout, or the bundled toy)."""
from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .errors import CavError
from .recipe import Recipe, recipe_for

TOY_KEYWORD = "toy"
TOY_MODEL_DIR = os.path.join(os.path.dirname(__file__), "shapes_world", "model")
_REQUIRED = {
    "unet": "UNet3DConditionModel",
    "vae": "AutoencoderKL",
    "text_encoder": "CLIPTextModel",
    "tokenizer": "CLIPTokenizer",
    "scheduler": None,  # any diffusers scheduler
}
# UNet config fields that decide parameter names and shapes (sample_size etc. do not).
_ARCH_FIELDS = ("in_channels", "out_channels", "down_block_types", "up_block_types",
                "block_out_channels", "layers_per_block", "cross_attention_dim",
                "attention_head_dim", "num_attention_heads", "norm_num_groups")


def architecture_fingerprint(unet_config: dict, text_dim: int) -> str:
    """Short hash of what makes adapter weights fit: same hash, same keys and shapes."""
    arch = {k: unet_config.get(k) for k in _ARCH_FIELDS}
    arch["text_dim"] = text_dim
    blob = json.dumps(arch, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class BaseModel:
    """The modules of a text-to-video base and what the rest of the engine needs to know of it.

    A base whose ``reload_part`` is set owns its VAE and text encoder alone (not shared with a
    host): :meth:`release_encoders` drops them, and the next use of ``vae`` or ``text_encoder``
    reads them again from the base's folder.
    """

    name: str
    path: str
    unet: torch.nn.Module
    _vae: torch.nn.Module | None
    _text_encoder: torch.nn.Module | None
    tokenizer: object
    scheduler_config: dict
    recipe: Recipe = field(default_factory=Recipe)  # what it trains and samples with unless told otherwise
    reload_part: Callable[[str], torch.nn.Module] | None = None  # "vae" / "text_encoder" -> module

    def __post_init__(self):
        self.text_dim = self._text_encoder.config.hidden_size
        self.vae_block_out_channels = list(self._vae.config.block_out_channels)

    @property
    def vae(self) -> torch.nn.Module:
        if self._vae is None:
            self._vae = self.reload_part("vae")
        return self._vae

    @property
    def text_encoder(self) -> torch.nn.Module:
        if self._text_encoder is None:
            self._text_encoder = self.reload_part("text_encoder")
        return self._text_encoder

    @property
    def encoders_reloadable(self) -> bool:
        return self.reload_part is not None

    def release_encoders(self, *parts: str) -> None:
        """Drop the VAE and text encoder (or only the ``parts`` named, "vae" / "text_encoder") when they
        can be read again (training with cached latents and text states needs neither; a validation
        sample reads them back)."""
        parts = parts or ("vae", "text_encoder")
        if self.encoders_reloadable and any(getattr(self, "_" + p) is not None for p in parts):
            for p in parts:
                setattr(self, "_" + p, None)
            gc.collect()

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def default_size(self) -> tuple[int, int]:
        """(width, height): the recipe's, else the UNet's sample size in pixels."""
        native = self.unet.config.sample_size
        native = native if isinstance(native, (list, tuple)) else (native, native)  # (height, width) when a pair
        return (self.recipe.width or int(native[-1]) * self.vae_scale_factor,
                self.recipe.height or int(native[0]) * self.vae_scale_factor)

    @property
    def default_frames(self) -> int:
        return self.recipe.frames

    @property
    def default_fps(self) -> float:
        return self.recipe.fps

    @property
    def size_multiple(self) -> int:
        """Frame sides must be multiples of this: the VAE's and the UNet's down-sampling together."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def check_frame_size(self, width: int, height: int, what: str = "the video") -> None:
        m = self.size_multiple
        if width % m or height % m:
            raise CavError(f"{what} is {width}x{height}, but {self.name} needs sides that are multiples of "
                           f"{m} (e.g. {'x'.join(map(str, self.default_size))})")

    @property
    def fingerprint(self) -> str:
        return architecture_fingerprint(dict(self.unet.config), self.text_dim)

    @property
    def describe(self) -> str:
        return f"{self.name} (architecture {self.fingerprint})"


def check_same_base(what: str, base_name: str, base_fingerprint: str, base: BaseModel) -> None:
    """Refuse something made on another base architecture, naming both bases."""
    if base_fingerprint != base.fingerprint:
        raise CavError(f"{what} was trained on base '{base_name}' (architecture {base_fingerprint}) but the "
                       f"loaded base is {base.describe}; load the base it was trained on, or train it again "
                       "on this base")


def resolve_base_path(source: str) -> str:
    if source == TOY_KEYWORD:
        if not os.path.isfile(os.path.join(TOY_MODEL_DIR, "model_index.json")):
            raise CavError("the bundled shapes-world model is not in this install "
                           f"(expected {TOY_MODEL_DIR}); reinstall the pack or pass a model folder")
        return TOY_MODEL_DIR
    return os.path.abspath(os.path.expanduser(source))


def inspect_base_folder(path: str) -> dict:
    """Read model_index.json and check it is a UNet3D text-to-video folder; return the index."""
    index_path = os.path.join(path, "model_index.json")
    if not os.path.isdir(path):
        raise CavError(f"base model folder not found: {path}")
    if not os.path.isfile(index_path):
        found = ", ".join(sorted(os.listdir(path))[:8]) or "nothing"
        raise CavError(f"{path} is not a diffusers model folder (no model_index.json; found: {found})")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CavError(f"cannot read {index_path}: {e}") from e
    unet_entry = index.get("unet")
    unet_class = unet_entry[1] if isinstance(unet_entry, list) and len(unet_entry) == 2 else None
    if unet_class != _REQUIRED["unet"]:
        what = index.get("_class_name", "an unknown pipeline")
        raise CavError(f"{path} holds {what} with unet={unet_class or 'none'}; a text-to-video base needs "
                       "unet=UNet3DConditionModel (ModelScope text-to-video-ms-1.7b or ZeroScope v2 layout)")
    missing = [k for k in _REQUIRED if not os.path.isdir(os.path.join(path, k))]
    if missing:
        raise CavError(f"{path} is missing the subfolder(s) {', '.join(missing)} of a text-to-video base")
    return index


def _variant(folder: str) -> str | None:
    """'fp16' when a subfolder only has fp16-variant weights (as some ModelScope downloads do)."""
    names = os.listdir(folder)
    full = [n for n in names if n.endswith((".safetensors", ".bin")) and ".fp16." not in n]
    half = [n for n in names if ".fp16." in n]
    return "fp16" if half and not full else None


def load_base(source: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
              vae_dtype: torch.dtype | None = None, encoders_reloadable: bool = False) -> BaseModel:
    """Load ``source`` (a diffusers folder or ``toy``) with every module frozen, in eval mode.

    ``vae_dtype`` defaults to ``dtype``; an fp16 VAE can overflow, so hosts may keep it wider.
    ``encoders_reloadable``: the caller owns the base alone, so training may release the VAE and
    text encoder once it has cached what it needs from them (see ``BaseModel.release_encoders``).
    """
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = resolve_base_path(source)
    inspect_base_folder(path)

    def sub(name):
        return os.path.join(path, name)

    classes = {"unet": UNet3DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel}
    dtypes = {"unet": dtype, "vae": vae_dtype or dtype, "text_encoder": dtype}

    def part(name: str) -> torch.nn.Module:
        try:
            module = classes[name].from_pretrained(sub(name), torch_dtype=dtypes[name], variant=_variant(sub(name)))
        except (OSError, ValueError) as e:
            raise CavError(f"cannot load the base model at {path}: {str(e).splitlines()[0]}") from e
        return module.requires_grad_(False).eval().to(device)

    unet, vae, text_encoder = part("unet"), part("vae"), part("text_encoder")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(sub("tokenizer"))
        with open(os.path.join(sub("scheduler"), "scheduler_config.json")) as f:
            scheduler_config = json.load(f)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise CavError(f"cannot load the base model at {path}: {str(e).splitlines()[0]}") from e
    name = TOY_KEYWORD if source == TOY_KEYWORD else os.path.basename(path.rstrip(os.sep))
    return BaseModel(name, path, unet, vae, text_encoder, tokenizer, scheduler_config, recipe_for(path),
                     reload_part=part if encoders_reloadable else None)
