"""HTTP / websocket client of the ComfyUI test server, and what the host tests share."""
from __future__ import annotations

import asyncio
import json
import importlib.util
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK_DIR_NAME = "ComfyUI-Customize-A-Video"
TINY_BASE = "tiny_t2v"  # name of the random-init test base in the yaml's diffusers folder
OTHER_BASE = "cav_test_base"  # a folder given as CAV_HOST_TEST_BASE=/path, linked beside it
TOY_MODEL = os.path.join(ROOT, "cav_core", "shapes_world", "model", "model_index.json")


def shared_constants():
    """nodes/constants.py, read by file (it imports nothing of ComfyUI or the pack, and the name
    ``nodes`` would be ComfyUI's own module in a process that imported ComfyUI)."""
    spec = importlib.util.spec_from_file_location("cav_shared_constants", os.path.join(ROOT, "nodes", "constants.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Events:
    """Websocket messages for one client id, collected in a background thread."""

    def __init__(self, url: str, client_id: str):
        self.url, self.client_id = url.replace("http://", "ws://"), client_id
        self.messages: list[dict] = []
        self.binary_events: list[int] = []  # event type of each binary frame (1 = preview image)
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
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        with self._lock:
                            self.binary_events.append(int.from_bytes(msg.data[:4], "big"))
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
                return r.status, _body(r.read(), r.headers.get_content_type())
        except urllib.error.HTTPError as e:
            return e.code, _body(e.read(), e.headers.get_content_type())

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


def _body(raw: bytes, content_type: str):
    """JSON bodies decoded, text as str, anything else (images, scripts) as bytes."""
    if content_type == "application/json" and raw:
        return json.loads(raw)
    if content_type.startswith("text/") and "javascript" not in content_type:
        return raw.decode(errors="replace")
    return raw


def messages(entry: dict, kind: str) -> list[dict]:
    return [data for name, data in entry["status"].get("messages", []) if name == kind]


def assert_success(host: Host, entry: dict) -> None:
    if entry["status"]["status_str"] != "success":
        errors = messages(entry, "execution_error")
        detail = "\n".join(f"{e.get('node_type')}: {e.get('exception_message')}" for e in errors)
        raise AssertionError(f"prompt failed: {detail or entry['status']}\nlog:\n{host.log_tail()}")


def base_choice() -> str | None:
    """The base to run on: "" as shipped, a test base's name, or None (skip)."""
    override = os.environ.get("CAV_HOST_TEST_BASE", "")
    if override == "tiny":
        return TINY_BASE
    if override:
        return OTHER_BASE
    return "" if os.path.isfile(TOY_MODEL) else None


def read_video(path: str) -> tuple[int, int, int]:
    capture = cv2.VideoCapture(path)
    count = 0
    while capture.grab():
        count += 1
    size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    return count, *size


def write_motion_lora(base_folder: str, path: str, seed: int) -> str:
    """A motion-LoRA file for the base in ``base_folder`` with random, clearly non-zero weights
    (what a training would write, without the minutes a training takes)."""
    import torch

    from cav_core import adapters, load_base
    from cav_core.adapter_file import AdapterFile, save_adapter_file
    from cav_core.adapters import TEMPORAL, LoraWeights
    from cav_core.targeting import temporal_targets

    base = load_base(base_folder)
    adapters.inject_lora(base.unet, "tmp", temporal_targets(base.unet), 2, 2.0)
    shapes = {k: v.shape for k, v in adapters.extract_lora(base.unet, "tmp", TEMPORAL, 2, 2.0).tensors.items()}
    g = torch.Generator().manual_seed(seed)
    lora = LoraWeights(TEMPORAL, 2, 2.0, {k: torch.randn(s, generator=g) * 0.3 for k, s in shapes.items()})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_adapter_file(path, AdapterFile(base.name, base.fingerprint, temporal=lora))
    return path
