"""Nodes kept only so that saved workflows load and run (hidden from the node search).

``CAV_TrainMotionLora`` was Train Motion T-LoRA before its on/off settings could be ``auto``: its
saved booleans map to on/off, so a graph saved with it trains exactly what it trained before.
``CAV_MotionLoraStack`` was the Motion LoRA Stack with three fixed sockets and strengths, before
the stack took any number of rows with schedules (``motion_stack``).
"""
from __future__ import annotations

from comfy_api.latest import io

from . import types
from .constants import NODE_IDS
from .lora import stack_ui, strength_input
from .train import MOTION_OUTPUTS, TrainMotion, motion_inputs
from .values import MotionLora, MotionLoraStack

STACK_SLOTS = 3

OLD_SWITCH_DEFAULTS = {"include_transformer_in": True, "include_feed_forward": False,
                       "include_temporal_convs": False, "absorber_token_in_prompt": True}


def _boolean(id: str, tooltip: str, optional: bool) -> io.Boolean.Input:
    return io.Boolean.Input(id, default=OLD_SWITCH_DEFAULTS[id], optional=optional, tooltip=tooltip)


def _on_off(value: bool) -> str:
    return "on" if value else "off"


class TrainMotionLoraV1(TrainMotion):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["train_motion_lora_v1"],
            display_name=types.display_name("Train Motion T-LoRA (old)"),
            category=types.CATEGORY,
            description="Deprecated: use Train Motion T-LoRA, whose settings can follow the base's recipe. Kept so "
                        "that saved workflows run unchanged.",
            inputs=motion_inputs(_boolean, later_inputs=False),
            outputs=MOTION_OUTPUTS,
            hidden=[io.Hidden.unique_id],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, base, reference, prompt, steps, lr, rank, seed, name, save, preview_every, loss,
                include_transformer_in: bool = True, include_feed_forward: bool = False,
                include_temporal_convs: bool = False, absorber_token_in_prompt: bool = True,
                gradient_checkpointing: bool = False, absorber=None) -> io.NodeOutput:
        return super().execute(base, reference, prompt, steps, lr, rank, seed, name, save, preview_every, loss,
                               _on_off(include_transformer_in), _on_off(include_feed_forward),
                               _on_off(include_temporal_convs), _on_off(absorber_token_in_prompt),
                               gradient_checkpointing, absorber)


class MotionLoraStackV1(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        inputs = [
            types.MotionLora.Input("motion_lora_1", tooltip="A motion LoRA (Train Motion T-LoRA or Load Motion LoRA)."),
            strength_input("strength_1", "Strength of motion_lora_1."),
        ]
        for i in range(2, STACK_SLOTS + 1):
            inputs += [types.MotionLora.Input(f"motion_lora_{i}", optional=True,
                                              tooltip=f"Optional motion LoRA number {i} to combine."),
                       strength_input(f"strength_{i}", f"Strength of motion_lora_{i} (ignored when not connected).")]
        inputs.append(types.MotionLoraStack.Input("stack", optional=True,
                                                  tooltip="A stack to extend (chain stack nodes or loaders)."))
        return io.Schema(
            node_id=NODE_IDS["motion_lora_stack"],
            display_name=types.display_name("Motion LoRA Stack (3 slots, old)"),
            category=types.CATEGORY,
            description="Deprecated: use Motion LoRA Stack, which takes any number of rows with schedules. Kept so "
                        "that saved workflows run unchanged: up to three motion LoRAs with weights.",
            inputs=inputs,
            outputs=[types.MotionLoraStack.Output(display_name="stack",
                                                  tooltip="The combined motion LoRAs, for Sample Video.")],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, motion_lora_1: MotionLora, strength_1: float, strength_2: float = 1.0,
                strength_3: float = 1.0, motion_lora_2: MotionLora | None = None,
                motion_lora_3: MotionLora | None = None, stack: MotionLoraStack | None = None) -> io.NodeOutput:
        out = stack or MotionLoraStack()
        for motion, strength in ((motion_lora_1, strength_1), (motion_lora_2, strength_2),
                                 (motion_lora_3, strength_3)):
            if motion is not None:
                out = out.plus(motion, strength)
        return io.NodeOutput(out, ui=stack_ui(out))


DEPRECATED_NODES = [TrainMotionLoraV1, MotionLoraStackV1]
