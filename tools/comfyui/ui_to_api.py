"""Convert a UI-format ComfyUI workflow (what the editor saves) into an API prompt (POST /prompt).

The rules follow the ComfyUI frontend's graphToPrompt (frontend 1.35): widget values are matched
to inputs by the order of the node definition's widgets (from GET /object_info), with the extra
frontend-only values the editor stores (the seed's "control after generate", a combo's control
and filter, the upload button); a link wins over a widget of the same name; notes, muted (mode 2)
and bypassed (mode 4) nodes are left out, links pass through reroutes and bypassed nodes, and a
primitive node's value replaces its link. A workflow saved before optional widgets were added to a
node's end gets their defaults, as in the editor. Subgraphs and group nodes are not supported.
"""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
NOTES = {"Note", "MarkdownNote"}
MUTED, BYPASSED = 2, 4


class ConversionError(ValueError):
    pass


def widget_slots(node_def: dict) -> list[str | None]:
    """Input names in ``widgets_values`` order; None for a value the frontend does not send."""
    spec = node_def["input"]
    order = node_def.get("input_order") or {k: list(v) for k, v in spec.items() if k in ("required", "optional")}
    slots: list[str | None] = []
    upload = False
    for section in ("required", "optional"):
        for name in order.get(section, []):
            entry = spec.get(section, {}).get(name)
            if entry is None:
                continue
            kind = entry[0]
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            is_combo = isinstance(kind, list) or kind == "COMBO"
            if not (is_combo or kind in WIDGET_TYPES) or options.get("forceInput"):
                continue
            slots.append(name)
            control = options.get("control_after_generate")
            if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
                slots.append(None)  # "fixed" / "randomize" / ...
            elif kind == "FLOAT" and control:
                slots.append(None)
            elif is_combo and control:
                slots += [None, None]  # control value + filter
            if section == "required" and is_combo and not upload and any(options.get(f) for f in UPLOAD_FLAGS):
                upload = True
    if upload:
        slots.append(None)  # the upload button, always stored last
    return slots


def _added_optional_defaults(node_def: dict, missing: list[str | None]) -> list:
    """The values the editor gives widgets a saved workflow has no value for, when they are optional
    inputs added to the node's end after it was saved (they keep their defaults); else none."""
    optional = node_def["input"].get("optional", {})

    def default(name):
        entry = optional.get(name) or []
        return entry[1].get("default") if len(entry) > 1 and isinstance(entry[1], dict) else None

    if not missing or any(name is not None and default(name) is None for name in missing):
        return []
    return [None if name is None else default(name) for name in missing]


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """The API prompt of ``workflow``; raises ConversionError for what it cannot convert."""
    if workflow.get("definitions", {}).get("subgraphs"):
        raise ConversionError("subgraphs are not supported by this converter")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow.get("links", [])}  # [id, from, from_slot, to, to_slot, type]

    def resolve(link_id):
        """('link', node id, slot), ('value', v) or None for an input fed through ``link_id``."""
        seen = set()
        while link_id is not None:
            if link_id in seen or link_id not in links:
                return None
            seen.add(link_id)
            _, origin, slot, _, _, link_type = links[link_id]
            source = nodes[origin]
            if source["type"] == "Reroute":
                link_id = source["inputs"][0].get("link")
            elif source["type"] == "PrimitiveNode":
                return ("value", source["widgets_values"][0])
            elif source.get("mode") == BYPASSED:
                same = [i for i in source.get("inputs", []) if i.get("type") == link_type and i.get("link") is not None]
                link_id = same[0]["link"] if same else None
            elif source.get("mode") == MUTED:
                return None
            else:
                return ("link", str(origin), slot)
        return None

    prompt: dict = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in NOTES or kind in ("Reroute", "PrimitiveNode") or node.get("mode") in (MUTED, BYPASSED):
            continue
        if kind not in object_info:
            raise ConversionError(f"node {node['id']} is a {kind}, which the server does not know")
        inputs: dict = {}
        values = node.get("widgets_values") or []
        if isinstance(values, dict):
            inputs.update(values)
        else:
            slots = widget_slots(object_info[kind])
            values = list(values) + _added_optional_defaults(object_info[kind], slots[len(values):])
            if len(values) != len(slots):
                raise ConversionError(f"node {node['id']} ({kind}) stores {len(values)} widget values but its "
                                      f"definition has {len(slots)} widget slots; re-save the workflow")
            for name, value in zip(slots, values):
                if name is not None:
                    inputs[name] = {"__value__": value} if isinstance(value, list) else value
        for slot in node.get("inputs", []):
            found = resolve(slot.get("link"))
            if found is not None:
                inputs[slot["name"]] = found[1] if found[0] == "value" else [found[1], found[2]]
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs,
                                   "_meta": {"title": node.get("title") or object_info[kind].get("display_name", kind)}}
    for entry in prompt.values():  # links to nodes that were left out are dropped
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in prompt:
                del entry["inputs"][name]
    return prompt
