"""Nodes kept only so that saved workflows load and run (hidden from the node search).

``CAV_TrainMotionLora`` was Train Motion T-LoRA before its on/off settings could be ``auto``: its
saved booleans map to on/off, so a graph saved with it trains exactly what it trained before.
"""
from __future__ import annotations

from comfy_api.latest import io

from . import types
from .constants import NODE_IDS
from .train import MOTION_OUTPUTS, TrainMotion, motion_inputs

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


DEPRECATED_NODES = [TrainMotionLoraV1]
