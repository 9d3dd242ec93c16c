"""The pack's motion-LoRA routes on the real server: the listing the stack node's picker reads (names,
previews, header info, errors for bad files) and a file's preview, with names that try to leave the
folders refused while the server keeps answering."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import torch

from .host_client import TINY_BASE, shared_constants

C = shared_constants()


def _get(host, route: str, **query) -> tuple[int, str, bytes]:
    url = host.url + route + ("?" + urllib.parse.urlencode(query) if query else "")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def _files(host):
    """Files of each kind in the yaml's motion-LoRA folder, written by the engine as the nodes would."""
    from conftest import random_lora

    from cav_core import AdapterFile, load_base, save_adapter_file
    from cav_core.motion_preview import training_preview, write_preview

    tiny = load_base(os.path.join(host.dirs["diffusers"], TINY_BASE))
    folder = host.dirs["loras"]
    os.makedirs(os.path.join(folder, "routes"), exist_ok=True)
    lora = random_lora(tiny.unet, 0)
    with_preview = save_adapter_file(os.path.join(folder, "routes", "with_preview.safetensors"), AdapterFile(
        tiny.name, tiny.fingerprint, temporal=lora, training={"prompt": "a red square moving", "steps": 7,
                                                             "recipe": "tiny", "absorber": {"kind": "dual"}}))
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[:, 4:8, 4:8] = 255
    write_preview(with_preview, training_preview(frames, fps=8.0))
    save_adapter_file(os.path.join(folder, "routes_plain.safetensors"),
                      AdapterFile(tiny.name, tiny.fingerprint, temporal=lora))
    with open(os.path.join(folder, "routes_broken.safetensors"), "wb") as f:
        f.write(b"\xff" * 64)
    torch.save([torch.zeros(4, 2), torch.zeros(2, 4)], os.path.join(folder, "routes_md.pt"))
    return with_preview


def test_listing_and_previews(host):
    with_preview = _files(host)
    status, kind, body = _get(host, C.ROUTES["motion_loras"])
    assert status == 200 and kind == "application/json"
    rows = {row["name"]: row for row in json.loads(body)}
    host.refresh_object_info()  # the loader's list: the same names
    options = host.object_info["CAV_LoadMotionLora"]["input"]["required"]["lora_name"][1]["options"]
    assert sorted(rows) == sorted(options)
    good = rows["routes/with_preview.safetensors"]
    assert good["preview"] is True
    assert {k: good["info"][k] for k in ("base", "caption", "steps", "rank", "recipe", "absorber",
                                         "motiondirector")} == {
        "base": TINY_BASE, "caption": "a red square moving", "steps": 7, "rank": 2, "recipe": "tiny",
        "absorber": "dual", "motiondirector": False}
    assert good["info"]["layers"] > 0 and "attention" in good["info"]["layer_kinds"]
    assert rows["routes_plain.safetensors"]["preview"] is False
    assert rows["routes_md.pt"]["info"]["motiondirector"] is True
    broken = rows["routes_broken.safetensors"]
    assert "info" not in broken and "routes_broken.safetensors is not a readable safetensors file" in broken["error"]

    status, kind, body = _get(host, C.ROUTES["preview"], name="routes/with_preview.safetensors")
    assert (status, kind) == (200, "image/webp")
    with open(os.path.splitext(with_preview)[0] + ".webp", "rb") as f:
        assert body == f.read()
    status, _, body = _get(host, C.ROUTES["preview"], name="routes_plain.safetensors")
    assert status == 404 and b"has no preview" in body
    status, _, body = _get(host, C.ROUTES["preview"], name="nothing_here.safetensors")
    assert status == 404 and b"no motion-LoRA file named" in body


def test_preview_names_that_leave_the_folders_are_refused(host):
    # a preview beside a real adapter file outside the motion-LoRA folders must stay unreadable
    _files(host)
    outside = os.path.join(host.dirs["output"], "secret.safetensors")
    with open(outside, "wb") as f:
        f.write(b"x")
    with open(os.path.join(host.dirs["output"], "secret.webp"), "wb") as f:
        f.write(b"RIFF-secret")
    relative = os.path.relpath(outside, host.dirs["loras"])
    for name in (relative, outside, "../../../../../../etc/passwd", "routes/../../x.safetensors", ""):
        status, _, body = _get(host, C.ROUTES["preview"], name=name)
        assert status == 400 and b"RIFF-secret" not in body, (name, status, body)
        assert b"outside" in body or b"absolute" in body or b"empty" in body, body
    status, _, body = _get(host, C.ROUTES["preview"], name="routes/with_preview.webp")  # not a listed file
    assert status == 404
    status, _, _ = _get(host, C.ROUTES["preview"])  # no name at all
    assert status == 400
    assert host.request("GET", "/system_stats")[0] == 200  # still answering
    assert _get(host, C.ROUTES["motion_loras"])[0] == 200
