"""The pack's HTTP routes on ComfyUI's server."""
from __future__ import annotations

from aiohttp import web

from . import constants, lora_listing, presets

_registered = False


def register() -> None:
    """Serve ``constants``, the motion-LoRA routes and the stack presets to the frontend (once per
    server; nothing to do without a server)."""
    global _registered
    from server import PromptServer

    if _registered or getattr(PromptServer, "instance", None) is None:
        return

    @PromptServer.instance.routes.get(constants.ROUTE)
    async def shared_constants(request: web.Request) -> web.Response:
        return web.json_response(constants.as_json())

    lora_listing.add_routes(PromptServer.instance.routes)
    presets.add_routes(PromptServer.instance.routes)

    _registered = True
