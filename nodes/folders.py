"""The pack's model folders in ComfyUI's ``folder_paths`` (so extra_model_paths.yaml applies)."""
from __future__ import annotations

import os

import folder_paths

from cav_core.adapter_file import AdapterFile, save_adapter_file
from cav_core.motion_preview import MotionPreview, write_preview

from . import paths
from .constants import FOLDERS

MOTION_LORA_KEY = FOLDERS["motion_loras"]  # extra_model_paths.yaml key; default models/cav_motion_loras
DIFFUSERS_KEY = "diffusers"


def register() -> None:
    """Add models/cav_motion_loras after any folders extra_model_paths.yaml gave (idempotent).

    The first folder of the key is where new LoRAs are written, so a yaml entry wins.
    """
    folder_paths.add_model_folder_path(MOTION_LORA_KEY, os.path.join(folder_paths.models_dir, MOTION_LORA_KEY))
    folders, _ = folder_paths.folder_names_and_paths[MOTION_LORA_KEY]
    folder_paths.folder_names_and_paths[MOTION_LORA_KEY] = (folders, set(paths.LISTED_LORA_EXTENSIONS))


def motion_lora_folders() -> list[str]:
    register()
    return folder_paths.get_folder_paths(MOTION_LORA_KEY)


def motion_lora_names() -> list[str]:
    register()
    return folder_paths.get_filename_list(MOTION_LORA_KEY)


def motion_lora_path(name: str) -> str:
    return paths.find_in_folders(motion_lora_folders(), name)


def save_folder() -> str:
    return motion_lora_folders()[0]


def save_motion_lora(adapter: AdapterFile, name: str, overwrite: bool, preview: MotionPreview | None) -> str:
    """Write ``adapter`` and its ``preview`` (None: none) atomically into the first motion-LoRA
    folder; return its list name."""
    folder = save_folder()
    os.makedirs(folder, exist_ok=True)
    path = paths.save_path(folder, name, overwrite)
    save_adapter_file(path, adapter)
    write_preview(path, preview)
    return os.path.relpath(path, folder).replace(os.sep, "/")


def checkpoint_folder() -> str:
    """Where interrupted trainings keep their checkpoints (a hidden folder beside the motion LoRAs,
    so a queue run after a restart still resumes; the files are not listed as LoRAs)."""
    return os.path.join(save_folder(), ".checkpoints")


def diffusers_roots() -> list[str]:
    return folder_paths.get_folder_paths(DIFFUSERS_KEY)


def base_choices() -> list[str]:
    return paths.base_choices(diffusers_roots())


def resolve_base(choice: str) -> str:
    return paths.resolve_base_choice(choice, diffusers_roots())


def reference_choices() -> list[str]:
    return paths.reference_choices(folder_paths.get_input_directory())


def resolve_reference(choice: str) -> str:
    return paths.resolve_reference_choice(choice, folder_paths.get_input_directory(),
                                          folder_paths.get_output_directory(), folder_paths.get_temp_directory())


def file_fingerprint(resolve, name: str) -> str:
    """Cache key of a named file: changes when the file is replaced or edited on disk."""
    from cav_core.errors import CavError

    try:
        path = resolve(name)
        return f"{path}:{os.path.getmtime(path)}:{os.path.getsize(path)}"
    except (CavError, OSError):
        return f"missing:{name}"
