"""ComfyUI's side of every engine call: devices, dtypes, model management, progress, interrupts.

- The base's diffusers modules sit in a plain ``nn.Module`` wrapped by a ``ModelPatcher``, and
  ``load_models_gpu`` moves them to the compute device before work. That call evicts other models
  to make room, and ours are unloaded (back to the offload device) when a later node needs the
  room, like any ComfyUI model.
- Devices and dtypes come from ``comfy.model_management``; outputs go to the intermediate device.
- ComfyUI runs nodes under ``torch.inference_mode()``; engine calls run with it switched off, so
  training can build autograd graphs and no inference tensor leaks into the shared base.
- Training and sampling update ComfyUI's progress bar (with previews); every update is also an
  interrupt point, and the engine's own ``should_stop`` check reads ComfyUI's interrupt flag.
  Engine errors become node errors with the engine's message; a step out of device memory becomes
  ComfyUI's out-of-memory error, on which it unloads every model.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import torch

from cav_core.errors import CavError, OutOfDeviceMemory, TrainingInterrupted
from cav_core.step_loop import Progress

from .constants import EVENTS
from .convert import preview_picture
from .values import LoadedBase

log = logging.getLogger("customize_a_video")

PRECISIONS = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LOSS_EVENT = EVENTS["loss"]


class BaseModules(torch.nn.Module):
    """Plain container for ModelPatcher (diffusers' ModelMixin has a read-only ``device``)."""

    def __init__(self, base):
        super().__init__()
        self.unet = base.unet
        self.vae = base.vae
        self.text_encoder = base.text_encoder


def compute_device() -> torch.device:
    return mm.get_torch_device()


def intermediate_device() -> torch.device:
    return mm.intermediate_device()


def choose_dtypes(precision: str) -> tuple[torch.dtype, torch.dtype]:
    """(UNet / text encoder dtype, VAE dtype) for the compute device.

    'auto' follows ComfyUI (its --fp32-unet / --bf16-vae ... flags included); an explicit
    choice applies to every module.
    """
    if precision not in PRECISIONS:
        raise CavError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if PRECISIONS[precision] is not None:
        return PRECISIONS[precision], PRECISIONS[precision]
    device = compute_device()
    unet = mm.unet_dtype(device, supported_dtypes=[torch.bfloat16, torch.float16, torch.float32])
    return unet, mm.vae_dtype(device, allowed_dtypes=[torch.bfloat16])


def manage(base, choice: str) -> LoadedBase:
    """Wrap a freshly loaded base (on the offload device) for ComfyUI's model management."""
    patcher = comfy.model_patcher.ModelPatcher(BaseModules(base), load_device=compute_device(),
                                               offload_device=mm.unet_offload_device())
    return LoadedBase(base=base, patcher=patcher, choice=choice)


def offload_device() -> torch.device:
    return mm.unet_offload_device()


def load_for_work(loaded: LoadedBase, memory_required: float) -> torch.device:
    """Bring the base to the compute device (evicting others as needed); return where it is.

    Our modules cannot run split across devices, so the load is always full. Under --novram
    ComfyUI may still leave them on the offload device: then the work runs there.
    """
    mm.load_models_gpu([loaded.patcher], memory_required=memory_required, force_full_load=True)
    holder = loaded.patcher.model
    devices = {p.device for p in holder.parameters()}
    if len(devices) == 1:
        return devices.pop()
    log.warning("Customize-A-Video: the base is split over %s; running on %s instead",
                sorted(map(str, devices)), loaded.patcher.offload_device)
    holder.to(loaded.patcher.offload_device)
    return loaded.patcher.offload_device


def sampling_memory(frames: int, width: int, height: int, vae_scale: int) -> float:
    """Rough bytes a denoising loop needs beside the weights (activations of a CFG batch of 2).

    Only decides how many other models ComfyUI evicts first; calibrated loosely on ModelScope
    (about 6 GB at 256x256x16).
    """
    latent_values = 4 * frames * (height // vae_scale) * (width // vae_scale)
    return float(latent_values * 4 * 2 * 12000)


TRAINING_MEMORY = 1e20  # as core's LoRA trainer: free every other model before training


def training_memory_target(loaded: LoadedBase, device: torch.device) -> float:
    """GiB a training step may peak at on ``device``, for a base loaded there by ``load_for_work``:
    what ComfyUI counts free on it, plus the UNet's weights and buffers (the step's estimate counts
    them, and they are already there), less ComfyUI's own reserve for a run."""
    unet = loaded.base.unet
    held = sum(t.numel() * t.element_size() for t in (*unet.parameters(), *unet.buffers())
               if t.device.type == device.type)
    return (mm.get_free_memory(device) + held - mm.minimum_inference_memory()) / 2 ** 30


def mixed_precision_for(device: torch.device, dtype: torch.dtype) -> str:
    """Autocast setting that makes half-precision weights train (the LoRA itself stays fp32)."""
    if dtype in (torch.float16, torch.bfloat16):
        if device.type != "cuda":
            raise CavError(f"training with {str(dtype).replace('torch.', '')} weights needs a CUDA device; "
                           f"this runs on {device}: load the base with precision fp32")
        return "fp16" if dtype == torch.float16 else "bf16"
    return "no"


def should_stop() -> bool:
    return mm.processing_interrupted()


def send_event(event: str, data: dict) -> None:
    """A websocket event to the browser that queued the prompt (no-op outside the server)."""
    server_module = sys.modules.get("server")
    server = getattr(getattr(server_module, "PromptServer", None), "instance", None)
    if server is not None:
        server.send_sync(event, data, server.client_id)


class TrainingProgress:
    """Engine progress -> ComfyUI progress bar (with preview frames) and a ``cav.loss`` event."""

    def __init__(self, total: int, node_id: str | None, stage: str):
        self.bar = comfy.utils.ProgressBar(max(total, 1))
        self.node_id, self.stage, self.total = node_id, stage, max(total, 1)
        self.validation_seconds = 0.0  # what validation samples cost, summed over the run

    def __call__(self, progress: Progress) -> None:
        self.total = progress.total
        self.validation_seconds += progress.validation_seconds
        preview = None
        if progress.preview is not None:
            preview = ("JPEG", preview_picture(progress.preview), None)
        send_event(LOSS_EVENT, {"node": self.node_id, "stage": progress.stage, "step": progress.step,
                                "total": progress.total, "loss": progress.loss})
        self.bar.update_absolute(progress.step, progress.total, preview)  # also an interrupt point

    def show(self, step: int, picture) -> None:
        """Put ``picture`` (a PIL image) in the node's progress preview at ``step``."""
        self.bar.update_absolute(step, self.total, ("JPEG", picture, None))


class StepProgress:
    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(max(total, 1))

    def __call__(self, step: int, total: int) -> None:
        self.bar.update_absolute(step, total)


@contextlib.contextmanager
def engine_call() -> Iterator[None]:
    """Run engine code outside inference mode; turn its errors into node errors."""
    try:
        with torch.inference_mode(False):
            yield
    except TrainingInterrupted as e:
        log.info("Customize-A-Video: %s", e)
        mm.throw_exception_if_processing_interrupted()  # clears the flag as ComfyUI does
        raise mm.InterruptProcessingException() from e
    except OutOfDeviceMemory as e:  # ComfyUI's own OOM handling unloads every model to recover
        raise mm.OOM_EXCEPTION(str(e)) from None
    except CavError as e:
        raise Exception(str(e)) from e


def settle() -> None:
    """After training: give cached allocator memory back."""
    mm.soft_empty_cache()
