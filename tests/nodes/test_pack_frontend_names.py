"""The frontend (js/) names no node id, event or ui key itself: it reads them from nodes/constants.py.

Pure text checks, no ComfyUI: js/constants.js fetches the shared names from the pack's route, and
every other file takes them from there, so renaming or adding a node is one edit in
nodes/constants.py.
"""
from __future__ import annotations

import glob
import os
import re

import pytest

from .cav_test_helpers import ROOT

JS_DIR = os.path.join(ROOT, "js")
JS_FILES = sorted(glob.glob(os.path.join(JS_DIR, "*.js")))


@pytest.fixture(scope="module")
def constants(pack):
    from cav_pack.nodes import constants

    return constants


def _source(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_the_frontend_has_its_files():
    names = {os.path.basename(p) for p in JS_FILES}
    assert {"constants.js", "motion_lora_stack.js", "motion_stack.js", "loss_curve.js", "stack_controls.js",
            "stack_draw.js", "stack_files.js", "stack_menus.js", "stack_model.js", "stack_presets.js",
            "stack_row_widgets.js"} <= names


@pytest.mark.parametrize("path", JS_FILES, ids=os.path.basename)
def test_no_shared_name_is_hard_coded_in_js(path, constants):
    text = _source(path)
    literals = {*constants.NODE_IDS.values(), *constants.SOCKET_TYPES.values(),
                *constants.EVENTS.values(), *constants.UI_KEYS.values(), *constants.ROUTES.values(),
                *constants.FOLDERS.values()}
    found = sorted({m for m in re.findall(r"\bCAV_\w+", text)} | {v for v in literals if v in text})
    assert found == [], f"{os.path.basename(path)} names {found}: read them from ./constants.js instead"


def test_constants_js_reads_the_route_nodes_constants_serves(constants):
    text = _source(os.path.join(JS_DIR, "constants.js"))
    assert re.findall(r'"(/customize_a_video/[^"]*)"', text) == [constants.ROUTE]
    assert re.search(r"^const \w+ = await ", text, re.M), "a top-level await, so importers have the names"


@pytest.mark.parametrize("path", [p for p in JS_FILES if not p.endswith("constants.js")], ids=os.path.basename)
def test_feature_files_take_the_names_from_constants_js(path):
    code = re.sub(r"^\s*//.*$", "", _source(path), flags=re.M)  # not its comments
    code = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', code)  # nor its plain strings (template ones use names)
    if re.search(r"\b(node_ids|events|ui_keys|routes|folders|stack_rows|nodeIdsOf)\b\s*[.\[(]", code):
        assert 'from "./constants.js"' in _source(path)
