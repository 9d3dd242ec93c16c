"""The pack as a ComfyUI V3 extension: folder registration and the node list."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import folders, routes
from .appearance import ApplyAppearance
from .base import LoadBase
from .clips import AddTrainingClip
from .lora import InspectMotionLora, LoadMotionLora, SaveMotionLora
from .merge import MergeMotionLoras
from .motion_stack import MotionStack
from .sample import SampleVideo
from .deprecated import DEPRECATED_NODES
from .train import TrainAbsorber, TrainMotion
from .video import LoadReferenceVideo

NODES: list[type[io.ComfyNode]] = [
    LoadBase, LoadReferenceVideo, TrainAbsorber, TrainMotion, LoadMotionLora, MotionStack,
    ApplyAppearance, SampleVideo, SaveMotionLora, InspectMotionLora, MergeMotionLoras, AddTrainingClip,
    *DEPRECATED_NODES,
]


class CustomizeAVideoExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


def create() -> CustomizeAVideoExtension:
    folders.register()  # at load time, after extra_model_paths.yaml (on_load is never called)
    routes.register()
    return CustomizeAVideoExtension()
