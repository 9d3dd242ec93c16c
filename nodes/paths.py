"""File-name rules of the pack, with the folders passed in (no ComfyUI import).

Every name that comes from a prompt is checked here before it touches the disk: ComfyUI does
not guard annotated input paths ("../../x [output]") or names sent through links, so each read
resolves inside its folder or fails, and each written name is sanitized to a single file name.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable

from cav_core.base_model import TOY_KEYWORD, inspect_base_folder
from cav_core.errors import CavError
from cav_core.files import check_name_fits, sanitize_name
from cav_core.shapes_world.references import REFERENCES, reference_path
from cav_core.video_io import SUPPORTED_EXTENSIONS

BUNDLED_BASE = "shapes_world (bundled)"
BUNDLED_TAG = " [bundled]"
LORA_EXTENSION = ".safetensors"
# listed in the motion-LoRA folders: this project's files and MotionDirector's (.pt, converted on load)
LISTED_LORA_EXTENSIONS = (LORA_EXTENSION, ".pt", ".pth")
# Input folders hold many still PNGs (image uploads); animated ones are rare, so .png is not listed.
LISTED_VIDEO_EXTENSIONS = tuple(e for e in SUPPORTED_EXTENSIONS if e != ".png")
_ANNOTATION = re.compile(r"^(.*?)\s*\[(input|output|temp)\]$")


def safe_join(root: str, name: str, what: str = "name") -> str:
    """``root/name`` normalised, refused unless it stays strictly inside ``root``.

    The check is on the normalised path (no ``..`` or absolute escapes). Symlinks an
    administrator placed inside the folder are followed, as ComfyUI's own model lists do.
    """
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise CavError(f"{what} is empty or not a file name: {name!r}")
    if os.path.isabs(name) or os.path.splitdrive(name)[0] or name.startswith(("/", "\\")):
        raise CavError(f"{what} '{name}' is an absolute path; pick a file inside {root}")
    root_abs = os.path.abspath(root)
    target = os.path.normpath(os.path.join(root_abs, name.replace("\\", "/")))
    if target == root_abs or os.path.commonpath([root_abs, target]) != root_abs:
        raise CavError(f"{what} '{name}' points outside of {root_abs}; pick a file inside that folder")
    return target


# ---- text-to-video bases -------------------------------------------------------------------

def find_base_folders(roots: Iterable[str], max_depth: int = 3) -> list[str]:
    """Relative names (with '/') of UNet3D text-to-video folders under any of ``roots``."""
    found: set[str] = set()
    for root in roots:
        if not os.path.isdir(root):
            continue
        root = os.path.abspath(root)
        for folder, dirs, files in os.walk(root, followlinks=True):
            rel = os.path.relpath(folder, root)
            depth = 0 if rel == "." else rel.count(os.sep) + 1
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if "model_index.json" in files and rel != ".":
                dirs[:] = []  # a model's subfolders are not models
                try:
                    inspect_base_folder(folder)
                except CavError:
                    continue
                found.add(rel.replace(os.sep, "/"))
            elif depth >= max_depth:
                dirs[:] = []
    return sorted(found, key=str.lower)


def base_choices(roots: Iterable[str]) -> list[str]:
    return [BUNDLED_BASE] + find_base_folders(roots)


def resolve_base_choice(choice: str, roots: Iterable[str]) -> str:
    """What ``cav_core.base_model.load_base`` takes: ``toy`` or a folder inside one of ``roots``."""
    if choice in (BUNDLED_BASE, TOY_KEYWORD):
        return TOY_KEYWORD
    roots = list(roots)
    for root in roots:
        folder = safe_join(root, choice, "base model")
        if os.path.isfile(os.path.join(folder, "model_index.json")):
            inspect_base_folder(folder)
            return folder
    where = ", ".join(roots) or "(no diffusers folder is registered)"
    raise CavError(f"base model '{choice}' is not a folder in models/diffusers ({where}); put the "
                   "ModelScope / ZeroScope folder (with model_index.json) there and refresh")


# ---- reference videos ----------------------------------------------------------------------

def bundled_references() -> dict[str, str]:
    """Choice name -> path of the reference clips shipped with the pack."""
    return {os.path.basename(reference_path(name)) + BUNDLED_TAG: reference_path(name) for name in REFERENCES}


def list_reference_files(input_dir: str) -> list[str]:
    """Video files at the top of the input folder, as the upload widget puts them."""
    if not os.path.isdir(input_dir):
        return []
    return sorted(f for f in os.listdir(input_dir)
                  if os.path.splitext(f)[1].lower() in LISTED_VIDEO_EXTENSIONS
                  and os.path.isfile(os.path.join(input_dir, f)))


def reference_choices(input_dir: str) -> list[str]:
    return list(bundled_references()) + list_reference_files(input_dir)


def resolve_reference_choice(choice: str, input_dir: str, output_dir: str, temp_dir: str) -> str:
    """Path of a bundled clip or of a file in the input (or annotated output / temp) folder."""
    bundled = bundled_references()
    if choice in bundled:
        return bundled[choice]
    match = _ANNOTATION.match(choice or "")
    name, folder = (match.group(1), {"input": input_dir, "output": output_dir, "temp": temp_dir}[match.group(2)]) \
        if match else (choice, input_dir)
    path = safe_join(folder, name, "reference video")
    if not os.path.isfile(path):
        raise CavError(f"reference video '{choice}' was not found in {folder}; upload it with the "
                       "node's upload button or pick a bundled clip")
    return path


# ---- motion LoRA files ---------------------------------------------------------------------

def check_inside_folders(roots: Iterable[str], name: str, what: str = "motion LoRA") -> None:
    """Refuse ``name`` unless it stays inside every one of ``roots`` (``..``, absolute and empty names)."""
    for root in roots:
        safe_join(root, name, what)


def find_in_folders(roots: Iterable[str], name: str, what: str = "motion LoRA") -> str:
    """The first existing file ``name`` inside one of ``roots`` (every candidate checked)."""
    roots = list(roots)
    for root in roots:
        path = safe_join(root, name, what)
        if os.path.isfile(path):
            return path
    raise CavError(f"{what} '{name}' was not found in {', '.join(roots) or 'any registered folder'}")


def lora_file_name(name: str) -> str:
    """A user-typed LoRA name as one safe file name ending in .safetensors."""
    stem = name[: -len(LORA_EXTENSION)] if name.lower().endswith(LORA_EXTENSION) else name
    return sanitize_name(stem, default="motion_lora") + LORA_EXTENSION


def save_path(folder: str, name: str, overwrite: bool) -> str:
    """Where to write ``name`` in ``folder``: the sanitized name, or with _00001.. when taken."""
    file_name = lora_file_name(name)
    path = safe_join(folder, file_name, "motion LoRA name")
    check_name_fits(path)
    if overwrite or not os.path.lexists(path):
        return path
    stem = file_name[: -len(LORA_EXTENSION)]
    for counter in range(1, 100000):
        candidate = safe_join(folder, f"{stem}_{counter:05d}{LORA_EXTENSION}", "motion LoRA name")
        if not os.path.lexists(candidate):
            return candidate
    raise CavError(f"too many files named {stem}_NNNNN in {folder}; pick another name")
