"""Checkpoint files: tensors, optimizer state and progress in one safetensors file (no pickle),
written atomically. The adapter training and the shapes-world base trainer both use this format.
"""
from __future__ import annotations

import hashlib
import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CavError
from .files import atomic_path


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """An optimizer's state as tensors under ``prefix.`` and its param groups as metadata."""
    state = optimizer.state_dict()
    tensors = {}
    for idx, per_param in state["state"].items():
        for k, v in per_param.items():
            tensors[f"{prefix}.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().clone()
    return tensors, {f"{prefix}.param_groups": json.dumps(state["param_groups"])}


def restore_optimizer(optimizer: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            idx, k = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(idx), {})[k] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta[f"{prefix}.param_groups"])})


def save_checkpoint(path: str, tensors: dict[str, torch.Tensor], meta: dict[str, str],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None) -> None:
    """Write ``tensors``, ``meta`` and each optimizer's state (under its name) atomically."""
    out = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = dict(meta)
    for prefix, optimizer in (optimizers or {}).items():
        t, m = optimizer_tensors(optimizer, prefix)
        out.update(t)
        meta.update(m)
    with atomic_path(path) as tmp:
        save_file(out, tmp, metadata=meta)


def read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CavError(f"cannot read checkpoint {path}: {e}; delete it to start over") from e


def module_tensors(tensors: dict, name: str) -> dict:
    """The entries of one module (saved under ``name.``) in a checkpoint, unprefixed."""
    return {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}


class RunCheckpoint:
    """The checkpoint of one adapter-training run: trainable tensors, optimizer state, losses.

    ``identity`` (base, frames, settings) is stored with it; a run with another identity refuses
    the file instead of resuming someone else's training.
    """

    def __init__(self, path: str | None, every: int, identity: dict):
        self.path, self.every, self.identity = path, every, json.dumps(identity, sort_keys=True)
        self.extra_meta: dict[str, str] = {}

    @classmethod
    def for_run(cls, hooks, stage: str, identity: dict) -> RunCheckpoint:
        """The checkpoint ``hooks`` ask for: their path, or in their folder a file named by ``stage``
        and a digest of ``identity`` (another run never finds it)."""
        path = hooks.checkpoint_path
        if path is None and hooks.checkpoint_folder:
            digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
            path = os.path.join(hooks.checkpoint_folder, f"{stage}-{digest}.ckpt")
        return cls(path, hooks.checkpoint_every, identity)

    def discard(self) -> None:
        """The run finished: its checkpoint has served its purpose."""
        if self.path and os.path.exists(self.path):
            os.remove(self.path)

    def load(self) -> dict | None:
        if not self.path or not os.path.exists(self.path):
            return None
        tensors, meta = read_checkpoint(self.path)
        if meta.get("identity") != self.identity:
            raise CavError(f"checkpoint {self.path} belongs to a run with other settings, video or base; "
                           "use the same settings to resume, or delete it to start over")
        return {"meta": meta, "tensors": tensors}

    def due(self, step: int, total: int) -> bool:
        return bool(self.path and self.every and step % self.every == 0 and step < total)

    def save(self, stage: str, step: int, params, optimizer, losses, extra: dict[str, torch.Tensor]) -> None:
        tensors = {f"param.{i}": p for i, p in enumerate(params)}
        tensors.update({f"extra.{k}": v for k, v in extra.items()})
        meta = {"identity": self.identity, "stage": stage, "step": str(step), "losses": json.dumps(losses),
                **self.extra_meta}
        save_checkpoint(self.path, tensors, meta, {"optim": optimizer})

    @staticmethod
    def restore(saved: dict, params, optimizer) -> tuple[int, list[float]]:
        tensors, meta = saved["tensors"], saved["meta"]
        try:
            with torch.no_grad():
                for i, p in enumerate(params):
                    p.copy_(tensors[f"param.{i}"])
            restore_optimizer(optimizer, "optim", tensors, meta)
        except (KeyError, RuntimeError, ValueError) as e:
            raise CavError(f"the checkpoint does not fit this run ({e}); delete it to start over") from e
        return int(meta["step"]), json.loads(meta["losses"])
