"""The Motion LoRA Stack through the real server: an API prompt's rows give the stack without the
editor, bad rows are queue errors naming the row, and the preset routes keep to their folder.

On the tiny random-init base in the yaml's diffusers folder; the motion-LoRA files are written with
random weights for it.
"""
from __future__ import annotations

import json
import os
import urllib.parse

import pytest

from .host_client import TINY_BASE, assert_success, shared_constants, write_motion_lora
from .test_host_errors import assert_node_error, base, preview, sample

C = shared_constants()
STACK = C.NODE_IDS["motion_stack"]


@pytest.fixture(scope="module")
def files(host):
    tiny = os.path.join(host.dirs["diffusers"], TINY_BASE)
    for name, seed in (("stack_a.safetensors", 1), ("stack_sub/stack_b.safetensors", 2)):
        write_motion_lora(tiny, os.path.join(host.dirs["loras"], name), seed)
    return ["stack_a.safetensors", "stack_sub/stack_b.safetensors"]


def stack(*rows, **links) -> dict:
    return {"class_type": STACK, "inputs": {"rows": json.dumps(list(rows)), **links}}


def test_an_api_prompt_gives_the_stack_from_its_rows_json(host, files):
    prompt = {"1": base(),
              "3": {"class_type": "CAV_LoadMotionLora", "inputs": {"lora_name": files[0], "strength": 0.25}},
              "4": stack({"lora": files[0], "strength": 0.5}, {"lora": files[1], "on": False},
                         {"lora": files[1], "strength": -0.75}, stack=["3", 0]),
              "5": sample(motion_loras=["4", 0]), "9": preview("5")}
    entry = host.run(prompt)
    assert_success(host, entry)
    reported = entry["outputs"]["4"][C.UI_KEYS["stack"]]
    assert [(e["name"], e["strength"], e["start"], e["end"]) for e in reported] == [
        ("stack_a", 0.25, 0.0, 1.0), ("stack_a", 0.5, 0.0, 1.0), ("stack_b", -0.75, 0.0, 1.0)]
    assert entry["outputs"]["4"]["text"] == ["stack_a: +0.25 (17%)\nstack_a: +0.50 (33%)\nstack_b: -0.75 (50%)"]


def test_a_trained_lora_plugs_into_a_socket_row(host, files):
    """A LoRA trained in the same graph feeds the growing sockets (motion_loras.motion_N)."""
    from .test_host_errors import reference, train_motion

    trainer = train_motion("host_stack_socket", steps=1, save=False)
    prompt = {"1": base(), "2": reference(), "3": trainer,
              "4": stack({"input": "motion_1", "strength": 0.8}, {"lora": files[0]},
                         **{f"{C.STACK_ROWS['autogrow']}.motion_1": ["3", 0]}),
              "5": sample(motion_loras=["4", 0]), "9": preview("5")}
    entry = host.run(prompt)
    assert_success(host, entry)
    reported = entry["outputs"]["4"][C.UI_KEYS["stack"]]
    assert [(e["name"], e["strength"]) for e in reported] == [("host_stack_socket", 0.8), ("stack_a", 1.0)]


@pytest.mark.parametrize("rows,words", [
    ([{"lora": "no_such_motion.safetensors"}], ["row 1 (no_such_motion.safetensors)", "was not found"]),
    ([{"lora": "../../../etc/passwd.safetensors"}], ["row 1", "outside"]),
    ([{"lora": "stack_a.safetensors", "strength": float("nan")}], ["row 1 (stack_a.safetensors)", "finite number"]),
    ([{"lora": "stack_a.safetensors", "strength": float("inf")}], ["finite number"]),
    ([{"lora": "stack_a.safetensors"}, {"lora": "stack_a.safetensors", "start": 0.7, "end": 0.3}],
     ["row 2 (stack_a.safetensors)", "must come before end"]),
])
def test_bad_rows_are_queue_errors_naming_the_row(host, files, rows, words):
    assert_node_error(host, {"1": base(), "4": stack(*rows), "5": sample(motion_loras=["4", 0]), "9": preview("5")},
                      "4", *words)


def test_rows_that_are_not_json_are_a_queue_error(host, files):
    prompt = {"1": base(), "4": {"class_type": STACK, "inputs": {"rows": "[{\"lora\": "}},
              "5": sample(motion_loras=["4", 0]), "9": preview("5")}
    assert_node_error(host, prompt, "4", "rows is not valid JSON")


# ---- presets -----------------------------------------------------------------------------------

def preset_url(name: str) -> str:
    return C.ROUTES["preset"].replace("{name}", urllib.parse.quote(name, safe=""))


def test_presets_are_saved_listed_and_loaded_through_the_routes(host, files):
    rows = [{"lora": files[0], "strength": 0.5, "start": 0.1, "end": 0.9, "end_strength": 0.2},
            {"lora": files[1], "on": False}]
    status, body = host.request("POST", C.ROUTES["presets"], {"name": "host two", "rows": rows})
    assert status == 200, body
    folder = os.path.join(host.dirs["loras"], "stack_presets")
    assert "host two.json" in os.listdir(folder) and not [f for f in os.listdir(folder) if ".partial" in f]
    assert {"name": "host two", "rows": 2} in host.get(C.ROUTES["presets"])
    loaded = host.get(preset_url("host two"))
    assert loaded["rows"][0] == {"on": True, "lora": files[0], "input": None, "strength": 0.5, "start": 0.1,
                                 "end": 0.9, "end_strength": 0.2}
    assert loaded["rows"][1]["on"] is False
    # a .json in the motion-LoRA folder is not listed as a LoRA
    assert not [n for n in host.get(f"/models/{C.FOLDERS['motion_loras']}") if n.endswith(".json")]


@pytest.mark.parametrize("name", ["../escape", "/tmp/escape", "a/b", "..", ""])
def test_bad_preset_names_are_refused_and_nothing_is_written_outside(host, name):
    status, body = host.request("POST", C.ROUTES["presets"], {"name": name, "rows": []})
    assert status == 400 and "is not allowed" in body["error"]
    status, _ = host.request("GET", preset_url(name) if name else C.ROUTES["preset"].replace("{name}", "%20"))
    assert status in (400, 404)
    parent = os.path.dirname(host.dirs["loras"])
    assert not [f for f in os.listdir(parent) if "escape" in f] and not os.path.exists("/tmp/escape.json")
    assert host.request("GET", "/system_stats")[0] == 200


@pytest.mark.parametrize("body,words", [
    ({"name": "p", "rows": {"lora": "x.safetensors"}}, "must be a JSON list"),
    ({"name": "p", "rows": [{"lora": "x.safetensors", "start": 1, "end": 0}]}, "must come before end"),
    ({"name": "p", "rows": [{"input": "motion_1"}]}, "takes a socket"),
    ({"name": "p", "rows": [{"lora": "x.safetensors", "volume": 11}]}, "unknown keys"),
    (["p"], "must be a JSON object"),
])
def test_presets_of_the_wrong_shape_are_refused(host, body, words):
    status, answer = host.request("POST", C.ROUTES["presets"], body)
    assert status == 400 and words in answer["error"], answer
    assert not os.path.exists(os.path.join(host.dirs["loras"], "stack_presets", "p.json"))


def test_a_broken_preset_file_is_reported_and_the_server_keeps_serving(host):
    folder = os.path.join(host.dirs["loras"], "stack_presets")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "host broken.json"), "w") as f:
        f.write("{\"rows\": [")
    status, body = host.request("GET", preset_url("host broken"))
    assert status == 400 and "is not valid JSON" in body["error"]
    listed = {p["name"]: p for p in host.get(C.ROUTES["presets"])}
    assert "is not valid JSON" in listed["host broken"]["error"]
    assert host.request("GET", preset_url("host missing"))[0] == 404
    assert host.request("GET", "/system_stats")[0] == 200
