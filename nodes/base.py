"""Load T2V Base: a ModelScope / ZeroScope folder from models/diffusers, or the bundled toy."""
from __future__ import annotations

from comfy_api.latest import io, ui

from cav_core.base_model import load_base

from .constants import NODE_IDS
from . import folders, host, paths, types


class LoadBase(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["load_base"],
            display_name=types.display_name("Load T2V Base"),
            category=types.CATEGORY,
            description="Loads a UNet3D text-to-video model (ModelScope text-to-video-ms-1.7b, ZeroScope v2) "
                        "for motion customization and sampling. ComfyUI moves it to the GPU when a node "
                        "needs it and offloads it when other models need the room.",
            inputs=[
                io.Combo.Input("model", options=folders.base_choices(), default=paths.BUNDLED_BASE,
                               tooltip="A text-to-video folder (with model_index.json and a UNet3D unet) "
                                       "under models/diffusers or a diffusers path of extra_model_paths.yaml; "
                                       "'shapes_world (bundled)' is the small demo model shipped with the pack."),
                io.Combo.Input("precision", options=list(host.PRECISIONS), default="auto",
                               tooltip="Weight precision. auto follows ComfyUI for your device (fp32 on CPU, "
                                       "bf16/fp16 on GPUs; --fp32-unet and --bf16-vae are honoured). "
                                       "Training on a CPU needs fp32."),
            ],
            outputs=[types.T2VBase.Output(display_name="base",
                                          tooltip="The loaded base, for training and sampling nodes.")],
        )

    @classmethod
    def execute(cls, model: str, precision: str) -> io.NodeOutput:
        with host.engine_call():
            source = folders.resolve_base(model)
            dtype, vae_dtype = host.choose_dtypes(precision)
            base = load_base(source, dtype=dtype, device=host.offload_device(), vae_dtype=vae_dtype)
            loaded = host.manage(base, model)
        width, height = base.default_size
        info = (f"{base.describe}: {width}x{height}, {base.default_frames} frames at {base.default_fps:g} fps, "
                f"{str(dtype).replace('torch.', '')}, runs on {host.compute_device()}; {base.recipe.summary()}")
        return io.NodeOutput(loaded, ui=ui.PreviewText(info))
