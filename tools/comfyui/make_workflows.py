"""Write the shipped example workflows (UI format) and their thumbnails.

    python -m tools.comfyui.make_workflows --url http://127.0.0.1:8188   # a ComfyUI with the pack

The workflows are described below as nodes with widget values BY NAME and links by socket name;
the running server's /object_info gives the widget order the editor uses, so the written
``widgets_values`` match what the ComfyUI editor would save. The JSON files in workflows/ are the
source of truth (the host tests run them); rerun this only to regenerate them after a schema
change, or edit them in ComfyUI and save over them. Thumbnails are drawn from the graph with the
reference clip below it; ``--result one_shot_motion_transfer=out.mp4`` animates a thumbnail with
the reference and a video the workflow made (the README shows the one-shot one).
"""
from __future__ import annotations

import argparse
import json
import os
import urllib.request
import uuid

import numpy as np
from PIL import Image, ImageDraw

from nodes.constants import NODE_IDS as ID
from nodes.constants import SOCKET_TYPES as SOCKET
from tools.comfyui.ui_to_api import UPLOAD_FLAGS, WIDGET_TYPES, widget_slots

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKFLOWS = os.path.join(ROOT, "workflows")

BASE = "shapes_world (bundled)"
ZIGZAG = "zigzag.mp4 [bundled]"
EIGHT = "figure_eight.mp4 [bundled]"
# Widgets not named here keep their defaults: training settings on auto (the base's recipe),
# frame counts and sizes 0 (the base's), so the workflows follow whatever base is loaded.
SAMPLE = dict(seed=42)


def node(id, type, pos, widgets=None, links=None, title=None, size=None):
    """One node: widget values by name, links as {input: (source id, output index)}."""
    return {"id": id, "type": type, "pos": pos, "widgets": widgets or {}, "links": links or {},
            "title": title, "size": size}


def note(id, pos, text, size=(360, 200)):
    return {"id": id, "type": "MarkdownNote", "pos": pos, "text": text, "size": list(size)}


def stack_row(input=None, lora=None, strength=1.0, start=0.0, end=1.0, end_strength=None, on=True) -> dict:
    """One row of the Motion LoRA Stack's rows widget (nodes/stack_rows.py)."""
    return {"on": on, "lora": lora, "input": input, "strength": strength, "start": start, "end": end,
            "end_strength": end_strength}


def one_shot():
    return [
        note(1, [0, -320], "## One-shot motion transfer\nLearn the motion of ONE clip (the bundled zigzag of a red "
             "square) and render it with a new subject.\n\n1. **Absorber** learns the clip's look (frames "
             "shuffled, random crops).\n2. **Motion T-LoRA** learns the motion with the look absorbed; it is saved to "
             "`models/cav_motion_loras/zigzag.safetensors`.\n3. **Sample** uses only the T-LoRA with any prompt.\n\n"
             "Training settings on **auto** follow the loaded base's recipe (`cav_recipe.json` in its folder, "
             "else the paper's setting); each training node shows the values it used. Set a value to override it.\n\n"
             "Change only the sampler and queue again: the trained LoRA is reused from the cache.", (420, 300)),
        node(2, ID["load_base"], [0, 0], {"model": BASE, "precision": "auto"}),
        node(3, ID["load_reference"], [0, 160], {"video": ZIGZAG}, {"base": (2, 0)}),
        node(4, ID["train_absorber"], [440, -200],
             {"appearance_prompt": "a red square on a white background"},
             {"base": (2, 0), "reference": (3, 0)}),
        node(5, ID["train_motion"], [440, 330],
             {"prompt": "a red square moving on a white background", "name": "zigzag", "save": True},
             {"base": (2, 0), "reference": (3, 0), "absorber": (4, 0)}),
        node(6, "PreviewImage", [880, -200], {}, {"images": (4, 1)}, title="Absorber loss"),
        node(7, "PreviewImage", [880, 80], {}, {"images": (5, 1)}, title="Motion loss"),
        node(8, ID["motion_stack"], [880, 380], {"rows": json.dumps([stack_row(input="motion_1")])},
             {"motion_loras.motion_1": (5, 0)}, size=[400, 270]),
        node(9, ID["sample"], [1300, 0], {**SAMPLE, "prompt": "a yellow triangle moving on a gray background"},
             {"base": (2, 0), "motion_loras": (8, 0)}),
        node(10, "CreateVideo", [1740, 0], {"fps": 8.0}, {"images": (9, 0), "fps": (9, 1)}),
        node(11, "SaveVideo", [1740, 160], {"filename_prefix": "customize_a_video/one_shot", "format": "auto",
                                            "codec": "auto"}, {"video": (10, 0)}, size=[320, 380]),
    ]


def appearance():
    return [
        note(1, [0, -250], "## Appearance customization\nMotion from the zigzag clip (T-LoRA), appearance from the "
             "figure-eight clip (its S-LoRA absorber): the blue circle on gray follows the zigzag.\n\n"
             "Any absorber, or a motion-LoRA file that carries one (Load Motion LoRA), can feed "
             "Apply Appearance.", (420, 200)),
        node(2, ID["load_base"], [0, 0], {"model": BASE, "precision": "auto"}),
        node(3, ID["load_reference"], [0, 160], {"video": ZIGZAG}, {"base": (2, 0)}, title="Motion reference"),
        node(4, ID["train_absorber"], [440, -200],
             {"appearance_prompt": "a red square on a white background"},
             {"base": (2, 0), "reference": (3, 0)}),
        node(5, ID["train_motion"], [440, 330],
             {"prompt": "a red square moving on a white background", "name": "zigzag"},
             {"base": (2, 0), "reference": (3, 0), "absorber": (4, 0)}),
        node(6, ID["load_reference"], [0, 620], {"video": EIGHT}, {"base": (2, 0)}, title="Appearance reference"),
        node(7, ID["train_absorber"], [440, 900],
             {"kind": "slora", "appearance_prompt": "a blue circle on a gray background"},
             {"base": (2, 0), "reference": (6, 0)}, title="Train Appearance S-LoRA"),
        node(8, ID["apply_appearance"], [880, 700], {"use_slora": True, "use_textual_inversion": True,
                                                    "strength": 1.0}, {"absorber": (7, 0)}),
        node(9, ID["motion_stack"], [880, 330], {"rows": json.dumps([stack_row(input="motion_1")])},
             {"motion_loras.motion_1": (5, 0)}, size=[400, 270]),
        node(10, ID["sample"], [1300, 0], {**SAMPLE, "prompt": "a blue circle moving on a gray background"},
             {"base": (2, 0), "motion_loras": (9, 0), "appearance": (8, 0)}),
        node(11, "SaveVideo", [1740, 0], {"filename_prefix": "customize_a_video/appearance", "format": "auto",
                                          "codec": "auto"}, {"video": (10, 2)}, size=[320, 380]),
        node(12, "PreviewImage", [880, -200], {}, {"images": (5, 1)}, title="Motion loss"),
    ]


def multi_motion():
    rows = [stack_row(input="motion_1", strength=0.6), stack_row(input="motion_2", strength=0.6, end=0.5)]
    return [
        note(1, [0, -250], "## Multi-motion combination\nTwo motions learned one-shot (zigzag, figure eight) and "
             "combined: Motion LoRA Stack adds their weighted deltas, one row each. The figure eight acts only in "
             "the first half of the denoising run (its row's schedule, drawn as a timeline).\n\nTry other "
             "strengths and schedules, or add saved motion LoRAs "
             "with **+ Add motion**; save the rows as a preset from the node's *presets* menu.", (420, 220)),
        node(2, ID["load_base"], [0, 0], {"model": BASE, "precision": "auto"}),
        node(3, ID["load_reference"], [0, 160], {"video": ZIGZAG}, {"base": (2, 0)}, title="Zigzag reference"),
        node(4, ID["train_absorber"], [440, -200],
             {"appearance_prompt": "a red square on a white background"},
             {"base": (2, 0), "reference": (3, 0)}),
        node(5, ID["train_motion"], [440, 330],
             {"prompt": "a red square moving on a white background", "name": "zigzag"},
             {"base": (2, 0), "reference": (3, 0), "absorber": (4, 0)}, title="Train zigzag T-LoRA"),
        node(6, ID["load_reference"], [0, 860], {"video": EIGHT}, {"base": (2, 0)}, title="Figure-eight reference"),
        node(7, ID["train_absorber"], [440, 860],
             {"appearance_prompt": "a blue circle on a gray background"},
             {"base": (2, 0), "reference": (6, 0)}),
        node(8, ID["train_motion"], [440, 1390],
             {"prompt": "a blue circle moving on a gray background", "name": "figure_eight"},
             {"base": (2, 0), "reference": (6, 0), "absorber": (7, 0)}, title="Train figure-eight T-LoRA"),
        node(9, ID["motion_stack"], [880, 330], {"rows": json.dumps(rows)},
             {"motion_loras.motion_1": (5, 0), "motion_loras.motion_2": (8, 0)}, size=[400, 300]),
        node(10, ID["inspect_motion_lora"], [880, 800], {}, {"motion_lora": (8, 0)}, size=[380, 300]),
        node(11, ID["sample"], [1300, 0], {**SAMPLE, "prompt": "a green square moving on a white background"},
             {"base": (2, 0), "motion_loras": (9, 0)}),
        node(12, "CreateVideo", [1740, 0], {"fps": 8.0}, {"images": (11, 0), "fps": (11, 1)}),
        node(13, "SaveVideo", [1740, 160], {"filename_prefix": "customize_a_video/multi_motion", "format": "auto",
                                            "codec": "auto"}, {"video": (12, 0)}, size=[320, 380]),
    ]


WORKFLOW_SPECS = {
    "one_shot_motion_transfer": (one_shot, ZIGZAG),
    "appearance_customization": (appearance, EIGHT),
    "multi_motion_combination": (multi_motion, EIGHT),
}


AUTOGROW = "COMFY_AUTOGROW_V3"


def _socket_inputs(definition: dict, linked=()) -> list[tuple[str, str, bool]]:
    """(name, type, optional) of the inputs that are sockets (not widgets), in order. A growing
    socket group (io.Autogrow) has, as the editor saves it, its linked sockets and the next free one."""
    out = []
    order = definition.get("input_order", {})
    for section in ("required", "optional"):
        for name in order.get(section, []):
            kind, *rest = definition["input"][section][name]
            options = rest[0] if rest and isinstance(rest[0], dict) else {}
            if kind == AUTOGROW:
                out += _autogrow_sockets(name, options["template"], linked)
                continue
            widget = isinstance(kind, list) or kind in WIDGET_TYPES
            if not widget or options.get("forceInput"):
                out.append((name, kind, section == "optional"))
    return out


def _autogrow_sockets(group: str, template: dict, linked) -> list[tuple[str, str, bool]]:
    names = template.get("names") or [f"{template['prefix']}{i}" for i in range(template["max"])]
    (kind, _), = [spec for part in template["input"].values() for spec in part.values()]
    used = [i for i, n in enumerate(names) if f"{group}.{n}" in linked]
    least = template.get("min", 1)
    count = min(len(names), max(least, (max(used) + 2) if used else 1))
    return [(f"{group}.{n}", kind, i >= least) for i, n in enumerate(names[:count])]


def _widget_values(definition: dict, widgets: dict, where: str) -> list:
    values = []
    upload = any(opt.get(f) for spec in definition["input"].get("required", {}).values()
                 for opt in spec[1:2] if isinstance(opt, dict) for f in UPLOAD_FLAGS)
    slots = widget_slots(definition)
    for i, name in enumerate(slots):
        if name is None:
            values.append("image" if upload and i == len(slots) - 1 else "fixed")
            continue
        section = "required" if name in definition["input"].get("required", {}) else "optional"
        default = definition["input"][section][name][1].get("default")
        if name not in widgets and default is None:
            raise KeyError(f"{where}: no value for widget '{name}'")
        values.append(widgets.get(name, default))
    unknown = set(widgets) - {s for s in slots if s}
    if unknown:
        raise KeyError(f"{where}: unknown widgets {sorted(unknown)}")
    return values


def build(spec: list[dict], object_info: dict) -> dict:
    nodes, links = [], []
    consumers: dict[tuple[int, int], list[int]] = {}
    by_id = {n["id"]: n for n in spec}
    for n in spec:
        for name, (src, slot) in n.get("links", {}).items():
            consumers.setdefault((src, slot), [])
    link_id = 0
    pending_inputs: dict[int, list[dict]] = {}
    for n in spec:
        if n["type"] == "MarkdownNote":
            continue
        definition = object_info[n["type"]]
        inputs = []
        sockets = _socket_inputs(definition, n["links"])
        names = [s[0] for s in sockets]
        for name, kind, optional in sockets:
            entry = {"name": name, "type": kind if isinstance(kind, str) else "COMBO", "link": None}
            if "." in name:  # a socket of a growing group shows its own name
                entry["label"] = name.split(".", 1)[1]
            if optional:
                entry["shape"] = 7
            inputs.append(entry)
        for name, (src, slot) in n["links"].items():
            link_id += 1
            src_def = object_info[by_id[src]["type"]]
            kind = src_def["output"][slot]
            links.append([link_id, src, slot, n["id"], None, kind])
            consumers[(src, slot)].append(link_id)
            if name in names:
                inputs[names.index(name)]["link"] = link_id
            else:  # a widget fed by a link: the editor adds it as a widget input
                inputs.append({"name": name, "type": kind, "widget": {"name": name}, "link": link_id})
        for index, entry in enumerate(inputs):
            for link in links:
                if link[0] == entry["link"]:
                    link[4] = index
        pending_inputs[n["id"]] = inputs
    for order, n in enumerate(spec):
        if n["type"] == "MarkdownNote":
            nodes.append({"id": n["id"], "type": "MarkdownNote", "pos": n["pos"], "size": n["size"], "flags": {},
                          "order": order, "mode": 0, "inputs": [], "outputs": [], "title": "Note",
                          "properties": {}, "widgets_values": [n["text"]], "color": "#432", "bgcolor": "#653"})
            continue
        definition = object_info[n["type"]]
        outputs = [{"name": name, "type": kind, "links": consumers.get((n["id"], i), []), "slot_index": i}
                   for i, (name, kind) in enumerate(zip(definition["output_name"], definition["output"]))]
        entry = {"id": n["id"], "type": n["type"], "pos": n["pos"], "size": n["size"] or _size(definition),
                 "flags": {}, "order": order, "mode": 0, "inputs": pending_inputs[n["id"]], "outputs": outputs,
                 "properties": {"Node name for S&R": n["type"]},
                 "widgets_values": _widget_values(definition, n["widgets"], f"node {n['id']} {n['type']}")}
        if n.get("title"):
            entry["title"] = n["title"]
        nodes.append(entry)
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(spec, sort_keys=True, default=str))),
            "revision": 0, "last_node_id": max(n["id"] for n in spec), "last_link_id": link_id,
            "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.6, "offset": [60, 320]}}, "version": 0.4}


# Room the pack's frontend extension draws in below the widgets (js/motion_lora_stack.js, js/loss_curve.js;
# the Motion LoRA Stack's rows are sized in its spec).
_EXTRA_HEIGHT = {ID["load_motion_lora"]: 78, ID["train_absorber"]: 64,
                 ID["train_motion"]: 64}


def _size(definition: dict) -> list[int]:
    widgets = len([s for s in widget_slots(definition) if s])
    sockets = max(len(_socket_inputs(definition)), len(definition["output"]))
    multiline = sum(1 for sec in ("required", "optional") for spec in definition["input"].get(sec, {}).values()
                    if len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("multiline"))
    return [400, 40 + 22 * sockets + 26 * widgets + 60 * multiline + _EXTRA_HEIGHT.get(definition["name"], 0)]


# ---- thumbnails --------------------------------------------------------------------------------

_TYPE_COLOURS = {"IMAGE": (100, 180, 230), "VIDEO": (230, 150, 80), "CAV_T2V_BASE": (180, 130, 220),
                 SOCKET["absorber"]: (220, 200, 90), SOCKET["motion_lora"]: (230, 90, 90),
                 SOCKET["motion_lora_stack"]: (240, 120, 160), SOCKET["appearance"]: (120, 210, 140), "FLOAT": (160, 160, 160)}


def _graph_picture(workflow: dict, width: int, height: int) -> Image.Image:
    """The graph as saved: node boxes (ours tinted) and links coloured by type."""
    img = Image.new("RGB", (width, height), (32, 32, 36))
    draw = ImageDraw.Draw(img)
    nodes = workflow["nodes"]
    xs = [n["pos"][0] for n in nodes] + [n["pos"][0] + n["size"][0] for n in nodes]
    ys = [n["pos"][1] for n in nodes] + [n["pos"][1] + n["size"][1] for n in nodes]
    scale = min((width - 20) / (max(xs) - min(xs)), (height - 16) / (max(ys) - min(ys)))
    ox, oy = 10 - min(xs) * scale, 8 - min(ys) * scale

    def box(n):
        x, y = n["pos"][0] * scale + ox, n["pos"][1] * scale + oy
        return x, y, x + n["size"][0] * scale, y + n["size"][1] * scale

    by_id = {n["id"]: n for n in nodes}
    for _, src, _, dst, _, kind in workflow["links"]:
        a, b = box(by_id[src]), box(by_id[dst])
        start, end = (a[2], (a[1] + a[3]) / 2), (b[0], (b[1] + b[3]) / 2)
        mid = (start[0] + end[0]) / 2
        draw.line([start, (mid, start[1]), (mid, end[1]), end], fill=_TYPE_COLOURS.get(kind, (150, 150, 150)), width=2)
    for n in nodes:
        x0, y0, x1, y1 = box(n)
        fill = (70, 52, 40) if n["type"] == "MarkdownNote" else \
            ((58, 62, 86) if n["type"].startswith("CAV_") else (54, 54, 58))
        draw.rounded_rectangle([x0, y0, x1, y1], radius=4, fill=fill, outline=(110, 110, 120))
        title = n.get("title") or n["type"].replace("CAV_", "")
        draw.text((x0 + 3, y0 + 2), title[: max(4, int((x1 - x0) / 6))], fill=(230, 230, 230))
    return img


def _clip(path: str, side: int = 64) -> np.ndarray:
    from cav_core.video_io import VideoOptions, read_video

    return read_video(path, VideoOptions(max_frames=16, size=side)).frames


def thumbnail(workflow: dict, clip_path: str, result_path: str | None = None,
              width: int = 640, height: int = 400) -> list[Image.Image]:
    """The graph above the reference clip: a strip of its frames, or, with a result video, both
    clips playing side by side (an animation)."""
    graph = _graph_picture(workflow, width, height - 84)
    reference = _clip(clip_path)
    if result_path is None:
        img = Image.new("RGB", (width, height), (32, 32, 36))
        img.paste(graph, (0, 0))
        for i, frame in enumerate(reference[::2][:8]):
            img.paste(Image.fromarray(frame), (10 + 70 * i, height - 74))
        ImageDraw.Draw(img).text((10 + 70 * 8 + 4, height - 48), "reference", fill=(200, 200, 200))
        return [img]
    result = _clip(result_path)
    pictures = []
    for i in range(min(len(reference), len(result))):
        img = Image.new("RGB", (width, height), (32, 32, 36))
        img.paste(graph, (0, 0))
        draw = ImageDraw.Draw(img)
        for x, (label, clip) in zip((10, 170), (("reference", reference), ("result", result))):
            img.paste(Image.fromarray(clip[i]), (x, height - 74))
            draw.text((x + 70, height - 48), label, fill=(200, 200, 200))
        pictures.append(img)
    return pictures


def save_picture(pictures: list[Image.Image], path: str, fps: float = 8.0) -> None:
    first, *rest = pictures
    first.save(path, save_all=bool(rest), append_images=rest, duration=round(1000 / fps), loop=0, quality=88)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ComfyUI with the pack (for /object_info)")
    parser.add_argument("--object-info", help="or a saved /object_info JSON")
    parser.add_argument("--result", action="append", default=[], metavar="WORKFLOW=VIDEO",
                        help="animate WORKFLOW's thumbnail with a video it produced (repeatable)")
    args = parser.parse_args()
    results = dict(item.split("=", 1) for item in args.result)
    if args.url:
        with urllib.request.urlopen(args.url.rstrip("/") + "/object_info") as r:
            object_info = json.load(r)
    else:
        with open(args.object_info) as f:
            object_info = json.load(f)
    from nodes.paths import bundled_references

    clips = bundled_references()
    for name, (make, clip) in WORKFLOW_SPECS.items():
        workflow = build(make(), object_info)
        path = os.path.join(WORKFLOWS, name + ".json")
        with open(path, "w") as f:
            json.dump(workflow, f, indent=1)
            f.write("\n")
        save_picture(thumbnail(workflow, clips[clip], results.get(name)), os.path.join(WORKFLOWS, name + ".webp"))
        print("wrote", path)


if __name__ == "__main__":
    main()
