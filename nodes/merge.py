"""Merge Motion LoRAs: a weighted stack written as ONE motion LoRA that reproduces it."""
from __future__ import annotations

from comfy_api.latest import io, ui

from cav_core.lora_merge import merge_adapters
from cav_core.motion_preview import merged_preview

from . import folders, host, types
from .constants import NODE_IDS
from .values import MotionLora, MotionLoraStack


class MergeMotionLoras(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["merge_motion_loras"],
            display_name=types.display_name("Merge Motion LoRAs"),
            category=types.CATEGORY,
            description="Turns a weighted stack into one motion LoRA: their ranks are concatenated, so sampling "
                        "with the result equals sampling with the stack. Optionally cut to a maximum rank "
                        "(truncated SVD; the node reports the error that adds). The file records its sources "
                        "and weights; its preview shows the sources' previews side by side.",
            inputs=[
                types.MotionLoraStack.Input("stack", tooltip="The weighted motion LoRAs (Load Motion LoRA, Motion "
                                                             "LoRA Stack) to merge, at their strengths."),
                io.String.Input("name", default="merged_motion",
                                tooltip="Name of the merged LoRA (its file name when saved)."),
                io.Int.Input("max_rank", default=0, min=0, max=4096,
                             tooltip="0 = exact (the sum of the ranks). Lower: a smaller file, by truncated SVD, "
                                     "with the relative error shown on the node."),
                io.Boolean.Input("save", default=True,
                                 tooltip="Write it to models/cav_motion_loras (an existing name gets a number "
                                         "added)."),
            ],
            outputs=[
                types.MotionLora.Output(display_name="motion_lora", tooltip="The merged motion LoRA."),
                io.String.Output(display_name="saved_file", tooltip="File name in the motion-LoRA folder, or empty."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, stack: MotionLoraStack, name: str, max_rank: int, save: bool) -> io.NodeOutput:
        with host.engine_call():
            # the engine refuses a scheduled entry: one merged file acts over the whole run at one strength
            adapter = merge_adapters([(e.name, e.adapter, e.strength, e.schedule) for e in stack.entries],
                                     max_rank or None)
            motion = MotionLora(name=name.strip() or "merged_motion", adapter=adapter,
                                preview=merged_preview([e.preview for e in stack.entries]))
            saved = folders.save_motion_lora(adapter, motion.name, False, motion.preview) if save else ""
        error = adapter.training["relative_error"]
        text = (f"merged {len(stack.entries)} motion LoRAs into rank {adapter.temporal.rank}"
                + (f", relative error {error:.2%}" if max_rank else " (exact)") + (f"; saved as {saved}" if saved else ""))
        return io.NodeOutput(motion, saved, ui=ui.PreviewText(text))
