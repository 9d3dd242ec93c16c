"""Socket types of the pack; the values they carry are defined in ``values``."""
from __future__ import annotations

from comfy_api.latest import io

CATEGORY = "Customize-A-Video"
PACK = "Customize-A-Video"

T2VBase = io.Custom("CAV_T2V_BASE")  # values.LoadedBase
Absorber = io.Custom("CAV_ABSORBER")  # values.TrainedAbsorber
MotionLora = io.Custom("CAV_MOTION_LORA")  # values.MotionLora
MotionLoraStack = io.Custom("CAV_MOTION_LORA_STACK")  # values.MotionLoraStack
Appearance = io.Custom("CAV_APPEARANCE")  # values.AppearanceChoice


def display_name(title: str) -> str:
    return f"{title} ({PACK})"
