"""Customize-A-Video engine: one-shot motion customization of diffusers text-to-video models.

No ComfyUI import anywhere in this package. The names below are its public interface (the CLI,
the node pack and the tools use these); each is imported from its module on first use, so
``import cav_core`` stays cheap.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "absorber_training": ("Absorber", "absorber_from_file", "train_absorber"),
    "adapter_file": ("AdapterFile", "TokenEmbeddings", "check_adapter_fits", "load_adapter_file",
                     "save_adapter_file"),
    "adapter_info": ("file_info", "layer_kinds"),
    "adapters": ("SPATIAL", "TEMPORAL", "LoraWeights", "applied_loras", "extract_lora", "inject_lora",
                 "remove_adapters"),
    "base_model": ("BaseModel", "check_same_base", "load_base"),
    "checkpoint": ("module_tensors", "read_checkpoint", "restore_optimizer", "save_checkpoint"),
    "continuation": ("continuation_settings", "continued_record"),
    "compute": ("autocast", "default_device", "gradient_checkpointing", "on_device"),
    "diffusion": ("clean_estimate", "debiased_loss", "diffusion_target", "noise_scheduler", "step_generator",
                  "training_timesteps"),
    "errors": ("CavError", "NonFiniteLoss", "OutOfDeviceMemory", "TrainingInterrupted"),
    "files": ("atomic_path",),
    "latents": ("decode_latents", "encode_clip", "encode_frames", "frames_to_tensor"),
    "lora_merge": ("MergeResult", "merge_adapters", "merge_loras"),
    "lora_schedule": ("LoraSchedule", "WHOLE_RUN"),
    "motion_training": ("MotionResult", "train_motion"),
    "motion_preview": ("MotionPreview", "merged_preview", "read_preview", "training_preview", "write_preview"),
    "motiondirector_import": ("import_motiondirector", "is_motiondirector_file", "load_motion_file",
                             "motiondirector_targets"),
    "recipe": ("Recipe", "recipe_for"),
    "sampling": ("Appearance", "SampleSettings", "sample_video"),
    "scheduled_loras": ("ScheduledLora", "stepped_loras"),
    "settings": ("AbsorberSettings", "ComputeSettings", "MotionSettings"),
    "step_loop": ("Hooks", "Progress"),
    "targeting": ("spatial_targets", "temporal_convolutions", "temporal_layers_bypassed", "temporal_targets"),
    "text": ("encode_prompts",),
    "training": ("TrainResult", "motion_adapter", "train_customization", "training_record"),
    "video_io": ("VideoOptions", "read_video", "write_video"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'cav_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value
