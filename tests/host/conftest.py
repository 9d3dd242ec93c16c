"""A real ComfyUI server with this pack installed, for the host tests.

Skipped (with the reason shown by ``pytest -rs``) when COMFYUI_PATH is not set. The server runs
``main.py --cpu`` on a free loopback port with ``--base-directory`` in a temp folder; the pack,
a models/diffusers folder and the motion-LoRA folder come from an extra_model_paths.yaml, so the
tests also cover that the yaml is honoured. One server serves the whole session.
Child processes inherit PYTHONPATH (a host may need extra packages there) and run torch on one
thread.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
PACK_DIR_NAME = "ComfyUI-Customize-A-Video"
TINY_BASE = "tiny_t2v"  # name of the random-init test base in the yaml's diffusers folder
SKIP_REASON = ("COMFYUI_PATH is not set: the host tests start a real ComfyUI server "
               "(set COMFYUI_PATH to a ComfyUI checkout whose requirements are installed)")
STARTUP_TIMEOUT = 240


def pytest_collection_modifyitems(config, items):
    if COMFYUI_PATH:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Events:
    """Websocket messages for one client id, collected in a background thread."""

    def __init__(self, url: str, client_id: str):
        self.url, self.client_id = url.replace("http://", "ws://"), client_id
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)
        self._thread.start()
        if not self._connected.wait(30):
            raise RuntimeError("could not open the ComfyUI websocket")

    async def _listen(self):
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{self.url}/ws?clientId={self.client_id}", heartbeat=20) as ws:
                self._connected.set()
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        with self._lock:
                            self.messages.append(json.loads(msg.data))
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break

    def wait_for(self, predicate, timeout: float = 120) -> dict:
        deadline, seen = time.time() + timeout, 0
        while time.time() < deadline:
            with self._lock:
                new = self.messages[seen:]
                seen = len(self.messages)
            for message in new:
                if predicate(message):
                    return message
            time.sleep(0.05)
        raise TimeoutError("no matching websocket message")


class Host:
    """HTTP client of the running server, plus where its folders are."""

    def __init__(self, url: str, dirs: dict[str, str], log_path: str, proc: subprocess.Popen):
        self.url, self.dirs, self.log_path, self.proc = url, dirs, log_path, proc
        self.client_id = uuid.uuid4().hex
        self.events: Events | None = None
        self._object_info = None

    def request(self, method: str, path: str, body=None, timeout: float = 60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def get(self, path: str):
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path} -> {status}: {body}"
        return body

    @property
    def object_info(self) -> dict:
        if self._object_info is None:
            self._object_info = self.get("/object_info")
        return self._object_info

    def refresh_object_info(self) -> dict:
        self._object_info = None
        return self.object_info

    def queue(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt; (status, body). 400 carries node_errors for invalid prompts."""
        return self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})

    def queue_ok(self, prompt: dict) -> str:
        status, body = self.queue(prompt)
        assert status == 200, f"prompt refused ({status}): {json.dumps(body)[:3000]}"
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """The history entry once the prompt finished (success, error or interrupt)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and \
                    entry["status"].get("status_str") in ("success", "error"):
                return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited ({self.proc.returncode}); log:\n{self.log_tail()}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s; log:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        return self.wait(self.queue_ok(prompt), timeout)

    def log_tail(self, chars: int = 6000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def listen(self) -> Events:
        if self.events is None:
            self.events = Events(self.url, self.client_id)
        return self.events


def messages(entry: dict, kind: str) -> list[dict]:
    return [data for name, data in entry["status"].get("messages", []) if name == kind]


def assert_success(host: Host, entry: dict) -> None:
    if entry["status"]["status_str"] != "success":
        errors = messages(entry, "execution_error")
        detail = "\n".join(f"{e.get('node_type')}: {e.get('exception_message')}" for e in errors)
        raise AssertionError(f"prompt failed: {detail or entry['status']}\nlog:\n{host.log_tail()}")


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
    for path in dirs.values():
        os.makedirs(path, exist_ok=True)
    os.symlink(ROOT, os.path.join(dirs["custom_nodes"], PACK_DIR_NAME))
    os.symlink(tiny_base_dir, os.path.join(dirs["diffusers"], TINY_BASE))
    yaml_path = os.path.join(tmp, "extra_model_paths.yaml")
    with open(yaml_path, "w") as f:
        f.write("cav_host_test:\n"
                f"    base_path: {os.path.join(tmp, 'extra')}\n"
                "    custom_nodes: custom_nodes\n"
                "    diffusers: diffusers\n"
                "    cav_motion_loras: cav_motion_loras\n")
    port = _free_port()
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


def copy_into(src: str, folder: str, name: str | None = None) -> str:
    target = os.path.join(folder, name or os.path.basename(src))
    shutil.copyfile(src, target)
    return target
