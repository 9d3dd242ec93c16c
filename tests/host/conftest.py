"""A real ComfyUI server with this pack installed, for the host tests.

Skipped (with the reason shown by ``pytest -rs``) when COMFYUI_PATH is not set. The server runs
``main.py --cpu`` on a free loopback port with ``--base-directory`` in a temp folder; the pack,
a models/diffusers folder and the motion-LoRA folder come from an extra_model_paths.yaml, so the
tests also cover that the yaml is honoured. One server serves the whole session.
With CAV_HOST_TEST_VHS=/path/to/ComfyUI-VideoHelperSuite that pack is installed beside ours.
Child processes inherit PYTHONPATH (a host may need extra packages there) and run torch on one
thread.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .host_client import OTHER_BASE, PACK_DIR_NAME, ROOT, TINY_BASE, Host, free_port

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
SKIP_REASON = ("COMFYUI_PATH is not set: the host tests start a real ComfyUI server "
               "(set COMFYUI_PATH to a ComfyUI checkout whose requirements are installed)")
STARTUP_TIMEOUT = 240
VHS_ENV = "CAV_HOST_TEST_VHS"  # path to a ComfyUI-VideoHelperSuite checkout to install beside the pack


def pytest_collection_modifyitems(config, items):
    if COMFYUI_PATH:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def host(tmp_path_factory, tiny_base_dir) -> Host:
    if not COMFYUI_PATH:
        pytest.skip(SKIP_REASON)
    main = os.path.join(COMFYUI_PATH, "main.py")
    if not os.path.isfile(main):
        pytest.fail(f"COMFYUI_PATH={COMFYUI_PATH} has no main.py")
    tmp = str(tmp_path_factory.mktemp("comfy_host"))
    dirs = {name: os.path.join(tmp, *parts) for name, parts in {
        "base": ("base",), "custom_nodes": ("extra", "custom_nodes"), "diffusers": ("extra", "diffusers"),
        "loras": ("extra", "cav_motion_loras"), "default_loras": ("base", "models", "cav_motion_loras"),
        "input": ("base", "input"), "output": ("base", "output"), "temp": ("base", "temp"),
    }.items()}
    for path in [*dirs.values(), os.path.join(dirs["base"], "custom_nodes")]:
        os.makedirs(path, exist_ok=True)
    os.symlink(ROOT, os.path.join(dirs["custom_nodes"], PACK_DIR_NAME))
    os.symlink(tiny_base_dir, os.path.join(dirs["diffusers"], TINY_BASE))
    if os.path.isdir(os.environ.get(VHS_ENV, "")):  # Video Helper Suite, for the interop test
        os.symlink(os.path.abspath(os.environ[VHS_ENV]), os.path.join(dirs["custom_nodes"], "ComfyUI-VideoHelperSuite"))
    if os.path.isdir(os.environ.get("CAV_HOST_TEST_BASE", "")):
        os.symlink(os.path.abspath(os.environ["CAV_HOST_TEST_BASE"]), os.path.join(dirs["diffusers"], OTHER_BASE))
    yaml_path = os.path.join(tmp, "extra_model_paths.yaml")
    with open(yaml_path, "w") as f:
        f.write("cav_host_test:\n"
                f"    base_path: {os.path.join(tmp, 'extra')}\n"
                "    custom_nodes: custom_nodes\n"
                "    diffusers: diffusers\n"
                "    cav_motion_loras: cav_motion_loras\n")
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log_path = os.path.join(tmp, "comfyui.log")
    cmd = [sys.executable, main, "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--disable-api-nodes", "--base-directory", dirs["base"],
           "--output-directory", dirs["output"], "--input-directory", dirs["input"],
           "--temp-directory", dirs["temp"], "--database-url", "sqlite:///:memory:",
           "--extra-model-paths-config", yaml_path]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=COMFYUI_PATH, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Host(f"http://127.0.0.1:{port}", dirs, log_path, proc)
    try:
        deadline = time.time() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode} while starting; log:\n{server.log_tail()}")
            try:
                if server.request("GET", "/system_stats", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"ComfyUI did not start in {STARTUP_TIMEOUT}s; log:\n{server.log_tail()}")
            time.sleep(0.5)
        log_text = server.log_tail(10**7)
        failed = [line for line in log_text.splitlines() if "IMPORT FAILED" in line and PACK_DIR_NAME in line]
        assert not failed, f"the pack failed to import:\n{log_text[-6000:]}"
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server we started (its own process group), politely first."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
