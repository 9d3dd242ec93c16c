"""Customize-A-Video for ComfyUI: one-shot motion customization of text-to-video models.

ComfyUI loads this folder as a node pack and calls ``comfy_entrypoint`` (V3 node API). The
engine, ``cav_core``, is a plain library beside this file; it is made importable by name here.
"""
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)  # appended: ComfyUI's own modules (e.g. its nodes.py) keep priority

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes.extension import create

    return create()
