"""Names the Python nodes and the frontend (js/) share: node ids, socket types, events, UI keys.

This module is their one home: the nodes read it, and ``routes`` serves it to the frontend, whose
``js/constants.js`` fetches it before any node is registered. No ComfyUI import.
"""
from __future__ import annotations

PACK = "Customize-A-Video"
CATEGORY = PACK

# role -> node id (the id is what saved workflows store: never change one, deprecate it instead)
NODE_IDS = {
    "load_base": "CAV_LoadBase",
    "load_reference": "CAV_LoadReferenceVideo",
    "train_absorber": "CAV_TrainAbsorber",
    "train_motion": "CAV_TrainMotion",
    "load_motion_lora": "CAV_LoadMotionLora",
    "motion_stack": "CAV_MotionStack",
    "apply_appearance": "CAV_ApplyAppearance",
    "sample": "CAV_SampleVideo",
    "save_motion_lora": "CAV_SaveMotionLora",
    "inspect_motion_lora": "CAV_InspectMotionLora",
    "merge_motion_loras": "CAV_MergeMotionLoras",
    "add_training_clip": "CAV_AddTrainingClip",
    # deprecated: kept so that saved workflows load and run
    "train_motion_lora_v1": "CAV_TrainMotionLora",
    "motion_lora_stack": "CAV_MotionLoraStack",
}

# role -> socket type
SOCKET_TYPES = {
    "base": "CAV_T2V_BASE",
    "absorber": "CAV_ABSORBER",
    "motion_lora": "CAV_MOTION_LORA",
    "motion_lora_stack": "CAV_MOTION_LORA_STACK",
    "appearance": "CAV_APPEARANCE",
    "training_clips": "CAV_TRAINING_CLIPS",
}

# the motion-LoRA folder key of folder_paths (ComfyUI lists its files at /models/<key>)
FOLDERS = {"motion_loras": "cav_motion_loras"}

# what a Motion LoRA Stack row may hold; the editor's strength drag uses the same bounds and step
# (the node's JSON widget, its growing socket group and the sockets' names motion_1..motion_N)
STACK_ROWS = {"strength_min": -2.0, "strength_max": 2.0, "strength_step": 0.05, "widget": "rows",
              "autogrow": "motion_loras", "socket_prefix": "motion_", "sockets": 8}

EVENTS = {"loss": "cav.loss"}  # websocket events the nodes send
UI_KEYS = {"stack": "cav_stack"}  # keys of the ui dicts nodes return, read by the frontend

ROUTE = "/customize_a_video/constants"  # where the frontend reads this module

# role -> the pack's other routes (the frontend reads them from this module's JSON)
ROUTES = {
    "motion_loras": "/customize_a_video/motion_loras",  # GET: the motion-LoRA files with their info
    "preview": "/customize_a_video/preview",  # GET ?name=FILE: a motion-LoRA file's animated preview
    "presets": "/customize_a_video/stack_presets",  # GET: list; POST {name, rows}: save
    "preset": "/customize_a_video/stack_presets/{name}",  # GET: one preset's rows
}


def as_json() -> dict:
    return {"pack": PACK, "node_ids": NODE_IDS, "socket_types": SOCKET_TYPES, "events": EVENTS, "ui_keys": UI_KEYS,
            "routes": ROUTES, "folders": FOLDERS, "stack_rows": STACK_ROWS}
