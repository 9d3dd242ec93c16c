"""The Motion LoRA Stack's rows JSON: parsed, checked, and its files kept inside the folders (no ComfyUI)."""
from __future__ import annotations

import json
import os

import pytest

from cav_core.errors import CavError
from cav_core.lora_schedule import LoraSchedule


@pytest.fixture()
def rows(pack):
    from cav_pack.nodes import stack_rows

    return stack_rows


def test_rows_take_defaults_and_keep_their_schedule(rows):
    text = json.dumps([{"lora": "zigzag.safetensors"},
                       {"on": False, "input": "motion_1", "strength": -0.5, "start": 0.2, "end": 0.8,
                        "end_strength": 0.25}])
    first, second = rows.parse_rows(text)
    assert (first.index, first.on, first.lora, first.input) == (1, True, "zigzag.safetensors", None)
    assert first.strength == 1.0
    assert first.schedule.is_whole_run
    assert (second.on, second.input, second.strength) == (False, "motion_1", -0.5)
    assert second.schedule == LoraSchedule(0.2, 0.8, 0.25)
    assert second.as_json() == {"on": False, "lora": None, "input": "motion_1", "strength": -0.5, "start": 0.2,
                                "end": 0.8, "end_strength": 0.25}
    assert rows.parse_rows("") == [] and rows.parse_rows("[]") == []


@pytest.mark.parametrize("text,words", [
    ("[{", "not valid JSON"),
    ('{"lora": "a.safetensors"}', "must be a JSON list"),
    ("[3]", "row 1 must be an object"),
    ('[{"lora": "a.safetensors", "strenght": 1}]', "unknown keys ['strenght']"),
    ('[{"lora": "a.safetensors", "strength": NaN}]', "row 1 (a.safetensors): strength must be a finite number"),
    ('[{"lora": "a.safetensors", "strength": Infinity}]', "finite number"),
    ('[{"lora": "a.safetensors", "strength": 7}]', "within -2..2"),
    ('[{"lora": "a.safetensors", "strength": "1"}]', "finite number"),
    ('[{"lora": "a.safetensors", "start": 0.8, "end": 0.2}]', "start (0.8) must come before end (0.2)"),
    ('[{"lora": "a.safetensors", "start": 0.5, "end": 0.5}]', "must come before"),
    ('[{"lora": "a.safetensors", "end": 1.5}]', "within 0..1"),
    ('[{"lora": "a.safetensors", "end_strength": NaN}]', "the strength at the end of its ramp"),
    ('[{"lora": "a.safetensors", "input": "motion_1"}]', "names both a file"),
    ('[{"lora": "preset.json"}]', "is not a motion-LoRA file"),
    ('[{"lora": ""}]', "'lora' must be a non-empty string"),
    ('[{"lora": "a.safetensors", "on": 1}]', "'on' must be true or false"),
    ('[{"input": "motion_1"}, {"lora": "b.safetensors", "start": "x"}]',
     "row 2 (b.safetensors): start must be a number"),
])
def test_bad_rows_are_refused_naming_the_row(rows, text, words):
    with pytest.raises(CavError) as error:
        rows.parse_rows(text)
    assert words in str(error.value)


def test_a_stack_has_a_bounded_number_of_rows(rows):
    with pytest.raises(CavError, match="at most 64"):
        rows.parse_rows(json.dumps([{"lora": "a.safetensors"}] * 65))


def test_row_files_stay_inside_the_folders_and_rows_that_are_on_must_exist(rows, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    os.makedirs(second / "sub")
    os.makedirs(first)
    (second / "sub" / "eight.safetensors").write_bytes(b"x")
    roots = [str(first), str(second)]
    rows.check_row_files(rows.parse_rows('[{"lora": "sub/eight.safetensors"}]'), roots)
    rows.check_row_files(rows.parse_rows('[{"lora": "gone.safetensors", "on": false}]'), roots)  # off: not read
    with pytest.raises(CavError, match=r"row 1 \(gone.safetensors\): motion LoRA 'gone.safetensors' was not found"):
        rows.check_row_files(rows.parse_rows('[{"lora": "gone.safetensors"}]'), roots)
    for name, word in (("../../etc/x.safetensors", "outside"), ("/etc/x.safetensors", "absolute")):
        for on in (True, False):  # an escaping name is refused even on a row that is off
            with pytest.raises(CavError, match=word):
                rows.check_row_files(rows.parse_rows(json.dumps([{"lora": name, "on": on}])), roots)
