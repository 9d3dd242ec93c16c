"""The motion-LoRA files as the editor's picker lists them, and their routes: each name, whether it
has a preview, and what its header says (cached per file version); a file's preview. Names are
checked by the folders' own rules, so nothing outside the motion-LoRA folders is ever read."""
from __future__ import annotations

import os

from aiohttp import web

from cav_core.adapter_file import preview_path
from cav_core.adapter_info import file_info
from cav_core.errors import CavError

from . import constants, folders, paths

_info: dict[str, dict] = {}  # file fingerprint -> {"info": ...} or {"error": ...}


def _described(key: str, path: str) -> dict:
    if key not in _info:
        try:
            _info[key] = {"info": file_info(path)}
        except CavError as e:
            _info[key] = {"error": str(e)}
        except Exception as e:  # noqa: BLE001 - one unreadable file must not break the listing
            _info[key] = {"error": f"{os.path.basename(path)} cannot be read ({type(e).__name__}: {e})"}
    return _info[key]


def motion_lora_listing() -> list[dict]:
    """``{"name", "preview", "info"}`` per listed file (``"error"`` instead of info when it cannot be read)."""
    listing, alive = [], set()
    for name in folders.motion_lora_names():
        try:
            path = folders.motion_lora_path(name)
        except CavError as e:  # removed since the folder was listed
            listing.append({"name": name, "preview": False, "error": str(e)})
            continue
        key = folders.file_fingerprint(lambda _name: path, name)
        alive.add(key)
        listing.append({"name": name, "preview": os.path.isfile(preview_path(path)), **_described(key, path)})
    for stale in set(_info) - alive:
        del _info[stale]
    return listing


def preview_file(name: str) -> str | None:
    """The preview file of the listed motion LoRA ``name``, or None when it has none. Raises CavError
    for a name that leaves the folders (``..``, absolute, empty) and LookupError for one not listed."""
    paths.check_inside_folders(folders.motion_lora_folders(), name)
    if name not in folders.motion_lora_names():
        raise LookupError(f"no motion-LoRA file named '{name}' in the motion-LoRA folders")
    preview = preview_path(folders.motion_lora_path(name))
    return preview if os.path.isfile(preview) else None


def add_routes(routes: web.RouteTableDef) -> None:
    """``ROUTES["motion_loras"]``: the listing as JSON; ``ROUTES["preview"]?name=``: a file's preview
    (400 for a name that leaves the folders, 404 for no such file or no preview)."""

    @routes.get(constants.ROUTES["motion_loras"])
    async def motion_loras(request: web.Request) -> web.Response:
        return web.json_response(motion_lora_listing())

    @routes.get(constants.ROUTES["preview"])
    async def motion_lora_preview(request: web.Request) -> web.StreamResponse:
        name = request.rel_url.query.get("name", "")
        try:
            path = preview_file(name)
        except CavError as e:
            return web.Response(status=400, text=str(e))
        except LookupError as e:
            return web.Response(status=404, text=str(e))
        if path is None:
            return web.Response(status=404, text=f"motion LoRA '{name}' has no preview")
        return web.FileResponse(path, headers={"Content-Type": "image/webp", "Cache-Control": "no-cache"})
