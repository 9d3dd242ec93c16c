"""Motion LoRA files and stacks: load (chainable), stack with weights, save, inspect."""
from __future__ import annotations

import json
import os

from comfy_api.latest import io, ui

from cav_core.motion_preview import read_preview
from cav_core.motiondirector_import import is_motiondirector_file, load_motion_file

from .constants import NODE_IDS, UI_KEYS
from . import folders, host, types
from .values import LoadedBase, MotionLora, MotionLoraStack

def strength_input(id: str, tooltip: str) -> io.Float.Input:
    return io.Float.Input(id, default=1.0, min=-2.0, max=2.0, step=0.05, tooltip=tooltip)


def _describe(entry: dict) -> str:
    text = f"{entry['name']}: {entry['strength']:+.2f}"
    if entry["end_strength"] is not None:
        text += f" to {entry['end_strength']:+.2f}"
    if (entry["start"], entry["end"]) != (0.0, 1.0):
        text += f" from {entry['start']:.0%} to {entry['end']:.0%} of the run"
    return text + f" ({entry['share']:.0%})"


def stack_ui(stack: MotionLoraStack) -> dict:
    """What the pack's frontend extension draws on the node: each LoRA's strength, schedule and share."""
    mix = stack.mix()
    return {UI_KEYS["stack"]: mix, "text": ["\n".join(_describe(e) for e in mix) or "empty stack"]}


_converted: dict[tuple, MotionLora] = {}  # MotionDirector files converted for a base, by file state and base


def read_motion_lora(file_name: str, base: LoadedBase | None = None) -> MotionLora:
    """A motion-LoRA file of the folders, with its preview file when it has one; a MotionDirector LoRA
    is converted for ``base`` once per file version and base. Call inside ``host.engine_call()``
    (tensors must not be inference tensors)."""
    path = folders.motion_lora_path(file_name)
    name = os.path.splitext(os.path.basename(path))[0]
    if not is_motiondirector_file(path):
        return MotionLora(name=name, adapter=load_motion_file(path), preview=read_preview(path))
    key = (folders.file_fingerprint(folders.motion_lora_path, file_name), base.fingerprint if base else None)
    if key not in _converted:
        _converted.clear()  # one conversion kept: they are small, but a folder may hold many
        _converted[key] = MotionLora(name=name, adapter=load_motion_file(path, base.base if base else None),
                                     preview=read_preview(path))
    return _converted[key]


class LoadMotionLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["load_motion_lora"],
            display_name=types.display_name("Load Motion LoRA"),
            category=types.CATEGORY,
            description="Reads a motion LoRA from models/cav_motion_loras and adds it, with a strength, to "
                        "a motion-LoRA stack. Chain several loaders to combine motions. MotionDirector LoRAs "
                        "(.pt, or its .safetensors export) load too, converted for the connected base.",
            inputs=[
                io.Combo.Input("lora_name", options=folders.motion_lora_names(),
                               tooltip="A file in models/cav_motion_loras (or a cav_motion_loras path of "
                                       "extra_model_paths.yaml): a .safetensors saved by Train Motion T-LoRA, "
                                       "Save Motion LoRA or Merge Motion LoRAs, or a MotionDirector LoRA."),
                strength_input("strength", "How strongly this motion is applied (its delta is scaled by it; "
                                      "negative values push away from the motion)."),
                types.MotionLoraStack.Input("stack", optional=True,
                                            tooltip="A stack to extend (from another loader or a stack node)."),
                types.T2VBase.Input("base", optional=True,
                                    tooltip="Needed only for a MotionDirector LoRA (.pt or its .safetensors "
                                            "export): it is converted for this base when loaded."),
            ],
            outputs=[
                types.MotionLoraStack.Output(display_name="stack",
                                             tooltip="The incoming stack plus this LoRA, for Sample Video."),
                types.MotionLora.Output(display_name="motion_lora",
                                        tooltip="The file's content, for Inspect or Apply Appearance."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, lora_name: str, **_) -> str:
        """Re-read when the file changes on disk."""
        return folders.file_fingerprint(folders.motion_lora_path, lora_name)

    @classmethod
    def execute(cls, lora_name: str, strength: float, stack: MotionLoraStack | None = None,
                base: LoadedBase | None = None) -> io.NodeOutput:
        with host.engine_call():
            motion = read_motion_lora(lora_name, base)
            out = (stack or MotionLoraStack()).plus(motion, strength)
        return io.NodeOutput(out, motion, ui=stack_ui(out))


class SaveMotionLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["save_motion_lora"],
            display_name=types.display_name("Save Motion LoRA"),
            category=types.CATEGORY,
            description="Writes a motion LoRA (safetensors with metadata; the absorber it was trained with is "
                        "kept apart in the same file) to models/cav_motion_loras, with its animated preview "
                        "beside it (same name, .webp) when it has one.",
            inputs=[
                types.MotionLora.Input("motion_lora", tooltip="The motion LoRA to save."),
                io.String.Input("name", default="my_motion",
                                tooltip="File name (reduced to a safe name without folders; .safetensors added)."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="Replace a file of the same name; otherwise a number is added."),
            ],
            outputs=[io.String.Output(display_name="saved_file",
                                      tooltip="The file name in the motion-LoRA folder.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion_lora: MotionLora, name: str, overwrite: bool) -> io.NodeOutput:
        with host.engine_call():
            saved = folders.save_motion_lora(motion_lora.adapter, name, overwrite, motion_lora.preview)
        return io.NodeOutput(saved, ui=ui.PreviewText(f"saved {saved} in {folders.save_folder()}"))


class InspectMotionLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["inspect_motion_lora"],
            display_name=types.display_name("Inspect Motion LoRA"),
            category=types.CATEGORY,
            description="Shows what a motion LoRA holds: base, rank, layers, the absorber kept with it and "
                        "the training settings.",
            inputs=[types.MotionLora.Input("motion_lora", tooltip="The motion LoRA to describe.")],
            outputs=[io.String.Output(display_name="info", tooltip="The description as JSON text.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion_lora: MotionLora) -> io.NodeOutput:
        info = json.dumps(motion_lora.summary(), indent=1, sort_keys=True, default=str)
        return io.NodeOutput(info, ui=ui.PreviewText(info))
