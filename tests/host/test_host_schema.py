"""The pack as the real server sees it: node schemas, frontend files, templates, model folders."""
from __future__ import annotations

import glob
import os

from .host_client import PACK_DIR_NAME, ROOT, TINY_BASE, shared_constants

NODE_IDS = set(shared_constants().NODE_IDS.values())  # the deprecated ones included: saved workflows need them
CATEGORY = "Customize-A-Video"
WORKFLOW_NAMES = sorted(os.path.splitext(os.path.basename(p))[0]
                        for p in glob.glob(os.path.join(ROOT, "workflows", "*.json")))


def _ours(host) -> dict:
    return {k: v for k, v in host.object_info.items() if k.startswith("CAV_")}


def test_object_info_lists_every_node_with_a_valid_schema(host):
    ours = _ours(host)
    assert set(ours) == NODE_IDS
    produced = {t for d in ours.values() for t in d["output"]}
    for node_id, d in ours.items():
        assert d["category"] == CATEGORY, node_id
        assert d["display_name"].endswith(f"({CATEGORY})"), node_id
        assert d["description"], node_id
        assert d["python_module"] == f"custom_nodes.{PACK_DIR_NAME}", node_id
        for section in ("required", "optional"):
            spec = d["input"].get(section, {})
            assert list(spec) == d["input_order"].get(section, []), node_id
            for name, (kind, options) in spec.items():
                assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
                if kind == "COMBO" and "default" in options and options["options"]:
                    assert options["default"] in options["options"], f"{node_id}.{name}"
                if kind in ("INT", "FLOAT"):
                    assert options["min"] <= options["default"] <= options["max"], f"{node_id}.{name}"
                if isinstance(kind, str) and kind.startswith("CAV_"):
                    assert kind in produced, f"{node_id}.{name}: no node outputs {kind}"
        assert len(d["output"]) == len(d["output_name"]) == len(d["output_tooltips"]), node_id
        assert all(d["output_tooltips"]), node_id


def test_reference_node_has_an_upload_widget_and_the_bundled_clips(host):
    video = host.object_info["CAV_LoadReferenceVideo"]["input"]["required"]["video"][1]
    assert video.get("video_upload") is True
    assert {"zigzag.mp4 [bundled]", "figure_eight.mp4 [bundled]"} <= set(video["options"])


def test_model_folders_come_from_extra_model_paths(host):
    models = host.object_info["CAV_LoadBase"]["input"]["required"]["model"][1]["options"]
    assert models[0] == "shapes_world (bundled)" and TINY_BASE in models  # TINY_BASE sits in the yaml folder
    status, listing = host.request("GET", "/models/cav_motion_loras")
    assert status == 200 and isinstance(listing, list)


def test_frontend_extension_and_workflow_templates_are_served(host):
    listed = host.get("/extensions")
    for name in ("constants.js", "motion_lora_stack.js", "motion_stack.js", "loss_curve.js", "node_hooks.js",
                 "stack_controls.js", "stack_draw.js", "stack_files.js", "stack_menus.js", "stack_model.js",
                 "stack_presets.js", "stack_row_widgets.js"):
        script = f"/extensions/{PACK_DIR_NAME}/{name}"
        assert script in listed
        status, _ = host.request("GET", script)
        assert status == 200, script
    templates = host.get("/api/workflow_templates")
    assert sorted(templates[PACK_DIR_NAME]) == WORKFLOW_NAMES and len(WORKFLOW_NAMES) >= 3
    for name in WORKFLOW_NAMES:
        for ext in (".json", ".webp"):
            status, _ = host.request("GET", f"/api/workflow_templates/{PACK_DIR_NAME}/{name}{ext}")
            assert status == 200, f"{name}{ext}"
