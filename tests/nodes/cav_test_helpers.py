"""What the node-pack unit tests share: importing the pack as ComfyUI does, running a node."""
from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = "cav_pack"
TINY = "tiny_t2v"
TOY_MODEL_DIR = os.path.join(ROOT, "cav_core", "shapes_world", "model")


def load_pack():
    """The repository root as the package ``cav_pack`` (ComfyUI imports it under its path)."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, os.path.join(ROOT, "__init__.py"),
                                                      submodule_search_locations=[ROOT])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK]


def run(node_cls, unique_id: str = "5", **inputs):
    """Execute a node as the host does: on a locked clone, under torch.inference_mode()."""
    import torch

    clone = node_cls.PREPARE_CLASS_CLONE({"hidden_inputs": {"UNIQUE_ID": unique_id}})
    with torch.inference_mode():
        return clone.execute(**inputs)
