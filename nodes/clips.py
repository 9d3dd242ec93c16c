"""Add Training Clip: more clips of the same motion, each with its own caption, for the training nodes.

Clips chain from node to node into one value (as Load Motion LoRA chains a stack) rather than
into one IMAGE batch, because an IMAGE batch holds frames of one size only and clips of one motion
come in any size and length: the engine brings them to the first clip's size and frame count.
"""
from __future__ import annotations

from comfy_api.latest import io, ui

from . import types
from .constants import NODE_IDS
from .convert import image_batch_to_frames
from .values import TrainingClips


class AddTrainingClip(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["add_training_clip"],
            display_name=types.display_name("Add Training Clip"),
            category=types.CATEGORY,
            description="Another clip of the same motion, with its caption, for Train Motion T-LoRA and Train "
                        "Appearance Absorber (their more_clips input). Chain several. Each clip is brought to the "
                        "reference's size and frame count.",
            inputs=[
                io.Image.Input("frames", tooltip="The clip's frames (Load Reference Video, VHS Load Video, ...)."),
                io.String.Input("caption", multiline=True, default="",
                                tooltip="What this clip shows, e.g. 'a dog running on a beach'."),
                types.TrainingClips.Input("clips", optional=True, tooltip="Clips to extend (another Add Training Clip)."),
            ],
            outputs=[types.TrainingClips.Output(display_name="clips", tooltip="The clips so far, plus this one.")],
        )

    @classmethod
    def execute(cls, frames, caption: str, clips: TrainingClips | None = None) -> io.NodeOutput:
        out = (clips or TrainingClips()).plus(image_batch_to_frames(frames, "training clip"), caption)
        f, h, w = out.clips[-1][0].shape[:3]
        return io.NodeOutput(out, ui=ui.PreviewText(f"{len(out.clips)} extra clip(s); this one {f} frames, {w}x{h}"))
