"""Apply Appearance: an S-LoRA and/or textual-inversion token used at sampling."""
from __future__ import annotations

from comfy_api.latest import io, ui

from .constants import NODE_IDS
from . import host, types
from .values import MotionLora, TrainedAbsorber, choose_appearance


class ApplyAppearance(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["apply_appearance"],
            display_name=types.display_name("Apply Appearance"),
            category=types.CATEGORY,
            description="Appearance customization: renders a learned look (S-LoRA and/or textual-inversion "
                        "token) together with the motion LoRAs in Sample Video.",
            inputs=[
                io.Boolean.Input("use_slora", default=True, tooltip="Apply the spatial LoRA (S-LoRA)."),
                io.Boolean.Input("use_textual_inversion", default=True,
                                 tooltip="Use the learned token; it is added to the prompt when missing."),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="Strength of the S-LoRA."),
                types.Absorber.Input("absorber", optional=True,
                                     tooltip="An absorber from Train Appearance Absorber (e.g. of another clip)."),
                types.MotionLora.Input("motion_lora", optional=True,
                                       tooltip="Or a motion LoRA (e.g. from Load Motion LoRA) whose file "
                                               "carries the absorber it was trained with."),
            ],
            outputs=[types.Appearance.Output(display_name="appearance",
                                             tooltip="The appearance to use in Sample Video.")],
        )

    @classmethod
    def execute(cls, use_slora: bool, use_textual_inversion: bool, strength: float,
                absorber: TrainedAbsorber | None = None, motion_lora: MotionLora | None = None) -> io.NodeOutput:
        with host.engine_call():
            choice = choose_appearance(absorber, motion_lora, use_slora, use_textual_inversion, strength)
        parts = (["S-LoRA"] if choice.spatial is not None else []) + list(choice.tokens)
        return io.NodeOutput(choice, ui=ui.PreviewText(f"{' + '.join(parts)} from {choice.source}"))
