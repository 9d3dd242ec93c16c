"""Unit tests of the node pack without a running ComfyUI.

The pack is imported the way ComfyUI imports it (a package from the repository root, here under
the name ``cav_pack``), so ``nodes`` never clashes with ComfyUI's own ``nodes`` module. The pure
modules (values, paths, convert) need nothing else. Node classes need ComfyUI's ``comfy_api``:
with COMFYUI_PATH set it is imported in-process (``--cpu``); otherwise those tests are skipped
with the reason shown by ``pytest -rs``.
"""
from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest

from .cav_test_helpers import TINY, load_pack


@pytest.fixture(scope="session")
def pack():
    return load_pack()


def _comfy_unavailable() -> str | None:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        return ("COMFYUI_PATH is not set: node classes need ComfyUI's comfy_api "
                "(the pure helpers are tested without it)")
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        from comfy.cli_args import args

        args.cpu = True  # before comfy.model_management is imported: no CUDA probing
        import comfy.model_management  # noqa: F401
        import comfy_api.latest  # noqa: F401
        import folder_paths  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import problem means: cannot test against it
        return f"cannot import ComfyUI from COMFYUI_PATH={path}: {type(e).__name__}: {e}"
    return None


@pytest.fixture(scope="session")
def comfy(pack):
    reason = _comfy_unavailable()
    if reason:
        pytest.skip(reason)
    import comfy.model_management as mm
    import folder_paths
    from cav_pack.nodes import extension

    return SimpleNamespace(mm=mm, folder_paths=folder_paths, extension=extension,
                           nodes={cls.GET_SCHEMA().node_id: cls for cls in extension.NODES})


@pytest.fixture()
def host_dirs(comfy, tmp_path, tiny_base_dir, monkeypatch):
    """ComfyUI's folders redirected into tmp_path, with the tiny base as models/diffusers/tiny_t2v."""
    fp = comfy.folder_paths
    dirs = SimpleNamespace(**{k: str(tmp_path / k) for k in ("diffusers", "loras", "input", "output", "temp")})
    for path in vars(dirs).values():
        os.makedirs(path)
    os.symlink(tiny_base_dir, os.path.join(dirs.diffusers, TINY))
    monkeypatch.setitem(fp.folder_names_and_paths, "diffusers", ([dirs.diffusers], {"folder"}))
    monkeypatch.setitem(fp.folder_names_and_paths, "cav_motion_loras", ([dirs.loras], {".safetensors", ".pt"}))
    monkeypatch.setattr(fp, "input_directory", dirs.input)
    monkeypatch.setattr(fp, "output_directory", dirs.output)
    monkeypatch.setattr(fp, "temp_directory", dirs.temp)
    fp.filename_list_cache.clear()
    yield dirs
    fp.filename_list_cache.clear()
    comfy.mm.interrupt_current_processing(False)


@pytest.fixture()
def nodes(comfy, host_dirs):
    """The pack's node classes by node id, with ComfyUI's folders redirected (``host_dirs``)."""
    return comfy.nodes
