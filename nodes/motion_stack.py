"""Motion LoRA Stack: any number of rows (file or socket, on/off, strength, schedule) in one node.

The rows live in one JSON ``rows`` widget (``stack_rows`` documents and checks it), which the
pack's editor extension (js/motion_stack.js) hides and draws as rows; LoRAs trained in the same
graph plug into the growing ``motion_loras`` sockets, and an upstream stack chains in front.
"""
from __future__ import annotations

import json

from comfy_api.latest import io

from cav_core.errors import CavError

from . import folders, host, types
from .constants import NODE_IDS, STACK_ROWS
from .lora import read_motion_lora, stack_ui
from .stack_rows import StackRow, check_row_files, parse_rows
from .values import LoadedBase, MotionLora, MotionLoraStack

ROWS_TOOLTIP = ("The stack's rows as JSON (the editor draws them): a list of {\"on\", \"lora\" (a file of "
                "models/cav_motion_loras) or \"input\" (a motion_N socket), \"strength\", \"start\", \"end\" "
                "(fractions of the denoising run), \"end_strength\" (a ramp's strength at the end, or null)}.")


def socket_names() -> list[str]:
    return [f"{STACK_ROWS['socket_prefix']}{i}" for i in range(1, STACK_ROWS["sockets"] + 1)]


def _checked_rows(rows: str) -> list[StackRow]:
    parsed = parse_rows(rows)
    check_row_files(parsed, folders.motion_lora_folders())
    return parsed


def build_stack(rows: list[StackRow], sockets: dict[str, MotionLora], upstream: MotionLoraStack | None,
                base: LoadedBase | None) -> MotionLoraStack:
    """The upstream stack, then each row that is on, then any connected socket no row names (strength 1)."""
    out = upstream or MotionLoraStack()
    named = {row.input for row in rows if row.input}
    for row in rows:
        if not row.on or row.is_empty:
            continue
        if row.input is not None:
            if sockets.get(row.input) is None:
                raise CavError(f"{row.label} takes the socket {row.input}, which is not connected; connect a "
                               "motion LoRA to it or remove the row")
            motion = sockets[row.input]
        else:
            motion = read_motion_lora(row.lora, base)
        out = out.plus(motion, row.strength, row.schedule)
    for name in socket_names():
        if name not in named and sockets.get(name) is not None:
            out = out.plus(sockets[name], 1.0)
    return out


class MotionStack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        template = io.Autogrow.TemplateNames(
            # the template must be a required input (ComfyUI 0.8.0 expands only those); the group is optional
            types.MotionLora.Input("motion",
                                   tooltip="A motion LoRA trained in this graph (Train Motion T-LoRA); each "
                                           "connected socket is a row of the stack."),
            names=socket_names(), min=1)
        return io.Schema(
            node_id=NODE_IDS["motion_stack"],
            display_name=types.display_name("Motion LoRA Stack"),
            category=types.CATEGORY,
            description="Combines any number of motion LoRAs, one row each: on/off, a file of the motion-LoRA "
                        "folders or a connected socket, a strength, and the part of the denoising run it acts "
                        "on with an optional ramp. Save and load rows as presets from the node's menu.",
            inputs=[
                io.String.Input(STACK_ROWS["widget"], default="[]", socketless=True, tooltip=ROWS_TOOLTIP),
                types.MotionLoraStack.Input("stack", optional=True,
                                            tooltip="A stack to extend: its LoRAs come first (chain stacks "
                                                    "and loaders)."),
                types.T2VBase.Input("base", optional=True,
                                    tooltip="Needed only for MotionDirector files (.pt or their .safetensors "
                                            "export): they are converted for this base when loaded."),
                # last: the editor appends the sockets a saved graph adds after the defined inputs
                io.Autogrow.Input(STACK_ROWS["autogrow"], template=template, optional=True,
                                  tooltip="Motion LoRAs trained in this graph; a new socket appears as you "
                                          "connect one."),
            ],
            outputs=[types.MotionLoraStack.Output(display_name="stack",
                                                  tooltip="The combined motion LoRAs, for Sample Video.")],
        )

    @classmethod
    def validate_inputs(cls, rows: str, **_) -> bool | str:
        try:
            _checked_rows(rows)
        except CavError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, rows: str, **_) -> str:
        """Run again when a file a row uses changes on disk."""
        try:
            files = sorted({row.lora for row in parse_rows(rows) if row.lora and row.on})
        except CavError:
            return rows
        return json.dumps([rows, [folders.file_fingerprint(folders.motion_lora_path, f) for f in files]])

    @classmethod
    def execute(cls, rows: str, motion_loras: dict | None = None, stack: MotionLoraStack | None = None,
                base: LoadedBase | None = None) -> io.NodeOutput:
        with host.engine_call():
            out = build_stack(_checked_rows(rows), dict(motion_loras or {}), stack, base)
        return io.NodeOutput(out, ui=stack_ui(out))
