"""Apply Appearance: an S-LoRA and/or textual-inversion token used at sampling (paper, Sec. 4.4)."""
from __future__ import annotations

from comfy_api.latest import io, ui

from cav_core.errors import CavError

from . import host, types
from .values import AppearanceChoice, MotionLora, TrainedAbsorber


def choose_appearance(absorber: TrainedAbsorber | None, motion_lora: MotionLora | None, use_slora: bool,
                      use_textual_inversion: bool, strength: float) -> AppearanceChoice:
    """The parts of an absorber (or of the absorber stored with a motion LoRA) to apply."""
    if absorber is not None and motion_lora is not None:
        raise CavError("connect either an absorber or a motion LoRA file to Apply Appearance, not both")
    if absorber is not None:
        spatial, ti = absorber.absorber.spatial, absorber.absorber.textual_inversion
        base_name, fingerprint, source = absorber.base_name, absorber.base_fingerprint, "the absorber"
    elif motion_lora is not None:
        a = motion_lora.adapter
        spatial, ti = a.spatial, a.textual_inversion
        base_name, fingerprint, source = a.base_name, a.base_fingerprint, f"motion LoRA '{motion_lora.name}'"
    else:
        raise CavError("connect an absorber (Train Appearance Absorber) or a motion LoRA whose file "
                       "carries an absorber (Load Motion LoRA)")
    return AppearanceChoice(spatial=spatial if use_slora else None,
                            textual_inversion=ti if use_textual_inversion else None,
                            strength=strength, base_name=base_name, base_fingerprint=fingerprint, source=source)


class ApplyAppearance(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CAV_ApplyAppearance",
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
