"""Per-base training recipes: where they come from, what they set, what overrides them."""
import json
import os
import shutil

import pytest

from cav_core import AbsorberSettings, MotionSettings, load_base
from cav_core.cli import main
from cav_core.errors import CavError
from cav_core.recipe import RECIPE_FILE, Recipe, bundled_recipes, parse_recipe, recipe_for
from cav_core.video_io import write_video


def _copy_base(tiny_base_dir, tmp_path, name, recipe=None):
    """The tiny base under another folder name, with ``recipe`` as its file (or none)."""
    folder = tmp_path / name
    shutil.copytree(tiny_base_dir, folder)
    os.remove(folder / RECIPE_FILE)
    if recipe is not None:
        (folder / RECIPE_FILE).write_text(json.dumps(recipe))
    return str(folder)


def test_without_a_recipe_a_base_trains_with_the_papers_settings(tiny_base_dir, tmp_path):
    base = load_base(_copy_base(tiny_base_dir, tmp_path, "my_model"))
    assert base.recipe == Recipe()
    assert base.recipe.motion_settings(prompt="x") == MotionSettings(prompt="x")
    assert base.recipe.absorber_settings() == AbsorberSettings()
    assert base.default_size == (16, 16) and base.default_frames == 16 and base.default_fps == 8.0


def test_a_known_base_is_matched_by_its_folder_name(tiny_base_dir, tmp_path):
    base = load_base(_copy_base(tiny_base_dir, tmp_path, "zeroscope_v2_576w"))
    assert base.recipe.name == "zeroscope_v2_576w"
    assert base.default_size == (576, 320) and base.default_frames == 24
    assert base.recipe.motion_settings(prompt="x") == MotionSettings(prompt="x")  # the paper's training
    assert recipe_for(str(tmp_path / "text-to-video-ms-1.7b")).name == "modelscope_t2v_1.7b"
    for name, data in bundled_recipes().items():  # each shipped recipe parses
        parse_recipe(data, name, name)


def test_the_bases_own_file_wins_and_explicit_values_win_over_it(tiny_base_dir, tmp_path):
    folder = _copy_base(tiny_base_dir, tmp_path, "zeroscope_v2_576w",
                        {"video": {"frames": 5, "width": 32, "height": 16},
                         "motion": {"rank": 3, "include_temporal_convs": True}, "absorber": {"kind": "slora"}})
    base = load_base(folder)
    assert base.default_size == (32, 16) and base.default_frames == 5
    motion = base.recipe.motion_settings(prompt="x", steps=7, rank=None)
    assert (motion.rank, motion.include_temporal_convs, motion.steps, motion.lr) == (3, True, 7, 5e-4)
    assert base.recipe.motion_settings(prompt="x", rank=2, include_temporal_convs=False).rank == 2
    assert base.recipe.absorber_settings(kind="ti").kind == "ti"
    assert base.recipe.absorber_settings().kind == "slora"


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read the recipe"),
    ('{"motion": {"rnak": 3}}', "unknown 'motion' setting"),
    ('{"motion": {"rank": 0}}', "rank must be >= 1"),
    ('{"motion": {"prompt": "x"}}', "unknown 'motion' setting"),
    ('{"motion": {"min_timestep": -5}}', "min_timestep must be a whole number"),
    ('{"motion": {"min_timestep": "high"}}', "min_timestep must be a whole number"),
    ('{"video": {"frames": -1}}', "video.frames must be a positive number"),
    ('{"video": {"frames": true}}', "video.frames must be a positive number"),
    ('{"absorber": {"kind": "triple"}}', "absorber kind must be one of"),
    ('{"sampling": {}}', "unknown part"),
    ('[1, 2]', "a recipe is a JSON object"),
    ('{"validation_prompts": "a dog"}', "validation_prompts must be a list"),
    ('{"validation_prompts": [""]}', "validation_prompts must be a list"),
])
def test_a_broken_recipe_is_refused_with_the_file_named(tiny_base_dir, tmp_path, content, message):
    folder = _copy_base(tiny_base_dir, tmp_path, "broken")
    with open(os.path.join(folder, RECIPE_FILE), "w") as f:
        f.write(content)
    with pytest.raises(CavError, match=message) as error:
        load_base(folder)
    assert RECIPE_FILE in str(error.value)


def test_train_with_no_tuning_flags_uses_the_recipe_and_records_it(tiny_base_dir, tmp_path, clip_frames, capsys):
    folder = _copy_base(tiny_base_dir, tmp_path, "tiny_with_recipe",
                        {"name": "tiny-recipe", "video": {"frames": 5},
                         "absorber": {"kind": "slora", "steps": 2},
                         "motion": {"steps": 3, "rank": 3, "include_temporal_convs": True,
                                    "absorber_token_in_prompt": False}})
    clip = write_video(tmp_path / "ref.gif", clip_frames, 8)
    out = tmp_path / "m.safetensors"
    assert main(["train", "--base", folder, "--video", clip, "--prompt", "a red square moving", "--out", str(out),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    record = info["training"]
    assert record["recipe"] == "tiny-recipe" and record["frames"] == 5 and record["size"] == [16, 16]
    assert (record["steps"], record["rank"], record["include_temporal_convs"]) == (3, 3, True)
    assert record["absorber_token_in_prompt"] is False and record["absorber"]["kind"] == "slora"
    assert info["temporal"]["rank"] == 3 and info["kinds"] == ["temporal", "spatial"]
    # A flag overrides its recipe value and nothing else.
    assert main(["train", "--base", folder, "--video", clip, "--prompt", "a red square moving", "--out", str(out),
                 "--rank", "2", "--no-temporal-convs", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    record = json.loads(capsys.readouterr().out)["training"]
    assert (record["rank"], record["include_temporal_convs"], record["steps"]) == (2, False, 3)


def test_the_bundled_base_carries_the_recipe_that_learns_a_path_there():
    recipe = recipe_for(os.path.join(os.path.dirname(__file__), "..", "cav_core", "shapes_world", "model"))
    motion = recipe.motion_settings(prompt="x")
    assert recipe.name == "shapes_world" and recipe.validation_prompts  # a new appearance to validate with
    assert (motion.include_temporal_convs, motion.rank, motion.steps, motion.absorber_token_in_prompt) == (
        True, 16, 300, False)
    assert (motion.lr, motion.min_timestep) == (2e-3, 700)  # the noisiest 30% of its 1000 timesteps
