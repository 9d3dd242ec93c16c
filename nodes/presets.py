"""Stack presets: a Motion LoRA Stack's file rows kept under a name, and the routes that serve them.

A preset is a small JSON file, ``{"rows": [...]}`` (rows as ``stack_rows`` documents them), in the
``stack_presets/`` folder of the first motion-LoRA folder, so it travels with the LoRAs; .json
files are not listed as LoRAs. Socket rows are not kept: a socket exists only in its own graph.
"""
from __future__ import annotations

import json
import os
import re

from aiohttp import web

from cav_core.errors import CavError
from cav_core.files import atomic_path

from . import folders
from .constants import ROUTES
from .paths import safe_join
from .stack_rows import parse_row_list

FOLDER = "stack_presets"
EXTENSION = ".json"
MAX_BYTES = 256 * 1024  # a preset of the largest stack is a few KiB
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class PresetMissing(CavError):
    pass


def preset_folder() -> str:
    return os.path.join(folders.save_folder(), FOLDER)


def check_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith((" ", ".")):
        raise CavError(f"preset name {json.dumps(name)[:80]} is not allowed: use 1 to 64 letters, digits, spaces, "
                       "'.', '_' or '-', starting with a letter or digit (no folders)")
    return name


def _path(folder: str, name: str) -> str:
    return safe_join(folder, check_name(name) + EXTENSION, "preset name")


def save_preset(folder: str, name: str, rows) -> dict:
    """Check ``rows`` as the node would and write them atomically as preset ``name`` (replacing it)."""
    path = _path(folder, name)
    parsed = parse_row_list(rows)
    sockets = [row.label for row in parsed if row.input is not None]
    if sockets:
        raise CavError(f"{', '.join(sockets)} {'takes a socket' if len(sockets) == 1 else 'take sockets'}, which "
                       "exist only in their own graph; a preset keeps rows of saved files only")
    preset = {"rows": [row.as_json() for row in parsed]}
    text = json.dumps(preset, indent=1)
    if len(text.encode()) > MAX_BYTES:
        raise CavError(f"preset '{name}' would take {len(text.encode())} bytes; at most {MAX_BYTES}")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return {"name": name, **preset}


def read_preset(folder: str, name: str) -> dict:
    path = _path(folder, name)
    if not os.path.isfile(path):
        raise PresetMissing(f"there is no preset '{name}' in {folder}")
    if os.path.getsize(path) > MAX_BYTES:
        raise CavError(f"preset '{name}' ({path}) is larger than {MAX_BYTES} bytes; it is not a stack preset")
    try:
        with open(path, encoding="utf-8") as f:
            preset = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CavError(f"preset '{name}' ({path}) is not valid JSON ({e}); save the stack under that name "
                       "again or delete the file") from None
    if not isinstance(preset, dict) or not isinstance(preset.get("rows"), list):
        raise CavError(f"preset '{name}' ({path}) holds no list of rows (expected {{\"rows\": [...]}}); save the "
                       "stack under that name again or delete the file")
    try:
        rows = parse_row_list(preset["rows"])
    except CavError as e:
        raise CavError(f"preset '{name}' ({path}): {e}") from None
    return {"name": name, "rows": [row.as_json() for row in rows]}


def list_presets(folder: str) -> list[dict]:
    """Every preset in ``folder`` by name, with its row count, or the error that makes it unusable."""
    if not os.path.isdir(folder):
        return []
    out = []
    for file in sorted(os.listdir(folder), key=str.lower):
        stem, ext = os.path.splitext(file)
        if ext != EXTENSION or not _NAME.match(stem):
            continue
        try:
            out.append({"name": stem, "rows": len(read_preset(folder, stem)["rows"])})
        except (CavError, OSError) as e:
            out.append({"name": stem, "error": str(e)})
    return out


def _answer(action) -> web.Response:
    try:
        return web.json_response(action())
    except PresetMissing as e:
        return web.json_response({"error": str(e)}, status=404)
    except CavError as e:
        return web.json_response({"error": str(e)}, status=400)
    except OSError as e:
        return web.json_response({"error": f"could not read or write the preset: {e}"}, status=500)


def add_routes(routes: web.RouteTableDef) -> None:
    """GET the list and POST {name, rows} at ROUTES["presets"]; GET one preset at ROUTES["preset"]."""

    @routes.get(ROUTES["presets"])
    async def presets(request: web.Request) -> web.Response:
        return _answer(lambda: list_presets(preset_folder()))

    @routes.post(ROUTES["presets"])
    async def save(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BYTES:
            return web.json_response({"error": f"a preset is at most {MAX_BYTES} bytes"}, status=413)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "the body must be JSON: {\"name\": ..., \"rows\": [...]}"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "the body must be a JSON object {\"name\", \"rows\"}"}, status=400)
        return _answer(lambda: save_preset(preset_folder(), body.get("name"), body.get("rows")))

    @routes.get(ROUTES["preset"])
    async def preset(request: web.Request) -> web.Response:
        return _answer(lambda: read_preset(preset_folder(), request.match_info["name"]))
