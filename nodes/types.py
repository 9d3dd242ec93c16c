"""Socket types of the pack; the values they carry are defined in ``values``."""
from __future__ import annotations

from comfy_api.latest import io

from .constants import CATEGORY, PACK, SOCKET_TYPES

T2VBase = io.Custom(SOCKET_TYPES["base"])  # values.LoadedBase
Absorber = io.Custom(SOCKET_TYPES["absorber"])  # values.TrainedAbsorber
MotionLora = io.Custom(SOCKET_TYPES["motion_lora"])  # values.MotionLora
MotionLoraStack = io.Custom(SOCKET_TYPES["motion_lora_stack"])  # values.MotionLoraStack
Appearance = io.Custom(SOCKET_TYPES["appearance"])  # values.AppearanceChoice
TrainingClips = io.Custom(SOCKET_TYPES["training_clips"])  # values.TrainingClips

__all__ = ["CATEGORY", "T2VBase", "Absorber", "MotionLora", "MotionLoraStack", "Appearance", "TrainingClips",
           "display_name"]


def display_name(title: str) -> str:
    return f"{title} ({PACK})"
