"""Keeping training a saved T-LoRA: the settings its file fixes, and the record of a continued run."""
from __future__ import annotations

import os

from .adapter_file import AdapterFile
from .errors import CavError


def continuation_settings(init: AdapterFile, source: str = "the LoRA to continue") -> dict:
    """The T-LoRA settings a saved file fixes for a run that continues it: rank, alpha, adapted
    layers (read from its targets, so files without a record work too) and, when its record says,
    whether the absorber's token was in the caption. Pass them to ``Recipe.motion_settings``."""
    if init.temporal is None:
        raise CavError(f"{source} holds no motion (temporal) LoRA to keep training")
    targets = init.temporal.targets
    return {"rank": init.temporal.rank, "alpha": init.temporal.alpha,
            "include_transformer_in": any(t.startswith("transformer_in.") for t in targets),
            "include_feed_forward": any(".ff." in t for t in targets),
            "include_temporal_convs": any(".temp_convs." in t for t in targets),
            "absorber_token_in_prompt": init.training.get("absorber_token_in_prompt")}


def continued_record(previous: dict, file: str, steps: int) -> dict:
    """The record entries of a run that kept training the T-LoRA of ``file`` (whose record is
    ``previous``) for ``steps`` more steps: the steps of all its runs, and where it continued from."""
    before = int(previous.get("total_steps", previous.get("steps", 0)))
    return {"total_steps": before + steps, "continued_from": {"file": os.path.basename(file), "steps": before}}
