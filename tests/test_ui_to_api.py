"""The workflow converter the host tests run saved workflows through (no ComfyUI needed)."""
import pytest

from tools.comfyui.ui_to_api import ConversionError, ui_to_api

OBJECT_INFO = {"Train": {"input": {
    "required": {"steps": ["INT", {"default": 0}], "seed": ["INT", {"default": 0}]},
    "optional": {"prompts": ["STRING", {"default": ""}], "min_timestep": ["INT", {"default": -1}],
                 "clips": ["CLIPS", {}]},
}, "input_order": {"required": ["steps", "seed"], "optional": ["prompts", "min_timestep", "clips"]}}}


def _workflow(values):
    return {"nodes": [{"id": 1, "type": "Train", "mode": 0, "inputs": [], "widgets_values": values}], "links": []}


def test_a_workflow_saved_before_optional_widgets_were_added_gets_their_defaults():
    full = ui_to_api(_workflow([400, 7, "fixed", "a prompt", 700]), OBJECT_INFO)["1"]["inputs"]
    assert full == {"steps": 400, "seed": 7, "prompts": "a prompt", "min_timestep": 700}
    older = ui_to_api(_workflow([400, 7, "fixed", "a prompt"]), OBJECT_INFO)["1"]["inputs"]
    assert older == {**full, "min_timestep": -1}  # what the editor gives the widget it has no value for
    assert ui_to_api(_workflow([400, 7, "fixed"]), OBJECT_INFO)["1"]["inputs"]["prompts"] == ""


def test_a_missing_required_widget_value_is_refused():
    with pytest.raises(ConversionError, match="stores 1 widget values but its definition has 5"):
        ui_to_api(_workflow([400]), OBJECT_INFO)
    with pytest.raises(ConversionError, match="stores 6 widget values"):
        ui_to_api(_workflow([400, 7, "fixed", "a prompt", 700, 1]), OBJECT_INFO)
