"""Training recipes: the settings that work for one base, kept with that base.

A base folder may hold ``cav_recipe.json`` beside ``model_index.json``:

    {"name": "zeroscope", "video": {"frames": 24, "width": 576, "height": 320, "fps": 8},
     "absorber": {"kind": "dual", "steps": 150},
     "motion": {"steps": 300, "rank": 4, "include_temporal_convs": false},
     "validation_prompts": ["a corgi running on a beach"]}

Every part and every key is optional; what a recipe leaves out keeps the paper's setting (the
defaults of :class:`AbsorberSettings` and :class:`MotionSettings`) and the base's native size
(its UNet's sample size times the VAE's down-sampling), 16 frames at 8 fps. A folder without a
recipe file gets a recipe the pack ships for a known public base when the folder's name matches
one (``recipes/*.json``), else the paper's settings. Values a user sets explicitly (CLI flags,
node widgets not on ``auto``) win over the recipe.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field, fields

from .errors import CavError
from .settings import AbsorberSettings, MotionSettings

RECIPE_FILE = "cav_recipe.json"
BUNDLED_RECIPES = os.path.join(os.path.dirname(__file__), "recipes")
PAPER = "paper"  # the name of the recipe a base gets when nothing else applies
_VIDEO_KEYS = {"frames": int, "width": int, "height": int, "fps": (int, float)}
_PART_FIELDS = {"absorber": AbsorberSettings, "motion": MotionSettings}
_NOT_IN_RECIPES = {"prompt", "seed"}  # per run, never per base


@dataclass(frozen=True)
class Recipe:
    """What a base trains and samples with unless told otherwise."""

    name: str = PAPER  # where it comes from: "paper", a bundled recipe's name or the base's file
    frames: int = 16
    width: int | None = None  # None: the base's native size
    height: int | None = None
    fps: float = 8.0
    absorber: dict = field(default_factory=dict)  # AbsorberSettings fields it sets
    motion: dict = field(default_factory=dict)  # MotionSettings fields it sets
    # validation samples' default prompts: new appearances this base can draw (empty: the clip's caption)
    validation_prompts: tuple[str, ...] = ()
    description: str = ""

    def absorber_settings(self, **given) -> AbsorberSettings:
        """The absorber settings: ``given`` values that are not None, else the recipe's, else the paper's."""
        return AbsorberSettings(**_merged(self.absorber, given))

    def motion_settings(self, **given) -> MotionSettings:
        """The T-LoRA settings: ``given`` values that are not None, else the recipe's, else the paper's."""
        return MotionSettings(**_merged(self.motion, given))

    def summary(self) -> str:
        """One line naming the recipe and what it changes from the paper's settings."""
        changed = [f"{part}.{k}={v}" for part, values in (("absorber", self.absorber), ("motion", self.motion))
                   for k, v in values.items()]
        return f"recipe '{self.name}'" + (f" ({', '.join(changed)})" if changed else "")


def _merged(recipe_part: dict, given: dict) -> dict:
    values = dict(recipe_part)
    values.update({k: v for k, v in given.items() if v is not None})
    if "crop_range" in values:
        values["crop_range"] = tuple(values["crop_range"])
    return values


def parse_recipe(data: object, name: str, where: str) -> Recipe:
    """A recipe from its JSON content; ``where`` names the file in error messages."""
    if not isinstance(data, dict):
        raise CavError(f"{where}: a recipe is a JSON object with 'video', 'absorber' and 'motion' parts")
    unknown = set(data) - {"name", "video", "absorber", "motion", "validation_prompts", "description", "match"}
    if unknown:
        raise CavError(f"{where}: unknown part(s) {', '.join(sorted(unknown))}; "
                       "a recipe has 'video', 'absorber' and 'motion'")
    video = data.get("video", {})
    _check_keys(video, _VIDEO_KEYS, "video", where)
    for key, kinds in _VIDEO_KEYS.items():
        value = video.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds) or value <= 0):
            raise CavError(f"{where}: video.{key} must be a positive number, not {value!r}")
    parts = {}
    for part, settings_class in _PART_FIELDS.items():
        values = data.get(part, {})
        allowed = {f.name: f.type for f in fields(settings_class) if f.name not in _NOT_IN_RECIPES}
        _check_keys(values, allowed, part, where)
        parts[part] = dict(values)
        try:  # the values must make valid settings on their own (prompt only to satisfy validation)
            settings = settings_class(**_merged(values, {"prompt": "x"}))
            settings.validate()
        except (TypeError, ValueError, CavError) as e:
            raise CavError(f"{where}: the '{part}' part is not valid: {e}") from e
    prompts = data.get("validation_prompts", [])
    if not isinstance(prompts, list) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise CavError(f"{where}: validation_prompts must be a list of non-empty prompts")
    return Recipe(name=str(data.get("name", name)), validation_prompts=tuple(prompts), frames=int(video.get("frames", 16)), width=video.get("width"),
                  height=video.get("height"), fps=float(video.get("fps", 8.0)), absorber=parts["absorber"],
                  motion=parts["motion"], description=str(data.get("description", "")))


def _check_keys(values: object, allowed, part: str, where: str) -> None:
    if not isinstance(values, dict):
        raise CavError(f"{where}: '{part}' must be a JSON object")
    unknown = set(values) - set(allowed)
    if unknown:
        raise CavError(f"{where}: unknown '{part}' setting(s) {', '.join(sorted(unknown))}; "
                       f"known: {', '.join(sorted(allowed))}")


def read_recipe_file(path: str, name: str) -> Recipe:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CavError(f"cannot read the recipe {path}: {e}; fix or delete it") from e
    return parse_recipe(data, name, path)


def bundled_recipes() -> dict[str, dict]:
    """The recipes shipped for known public bases: name -> JSON content."""
    out = {}
    for file in sorted(os.listdir(BUNDLED_RECIPES)):
        if file.endswith(".json"):
            with open(os.path.join(BUNDLED_RECIPES, file), encoding="utf-8") as f:
                out[file[:-5]] = json.load(f)
    return out


def recipe_for(folder: str) -> Recipe:
    """The recipe of the base in ``folder``: its own file, else a bundled one its name matches,
    else the paper's settings."""
    own = os.path.join(folder, RECIPE_FILE)
    if os.path.isfile(own):
        return read_recipe_file(own, os.path.basename(os.path.normpath(folder)))
    folder_name = os.path.basename(os.path.normpath(folder)).lower()
    for name, data in bundled_recipes().items():
        if any(fnmatch.fnmatch(folder_name, pattern.lower()) for pattern in data.get("match", [])):
            return parse_recipe(data, name, os.path.join(BUNDLED_RECIPES, name + ".json"))
    return Recipe()
