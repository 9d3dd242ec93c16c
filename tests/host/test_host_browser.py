"""The frontend extensions (js/) in a real browser against the real ComfyUI page.

js/constants.js reads the names the nodes and the frontend share (nodes/constants.py) from the
pack's route once; js/motion_lora_stack.js and js/loss_curve.js draw with them.

Needs the host (COMFYUI_PATH) plus playwright and a Chromium; without them every test here is
skipped with the reason shown. Set CAV_CHROMIUM to a Chromium binary when playwright's own
browser is not installed (``/usr/bin/chromium`` from the distribution works).

The drawing hooks are called with a real 2D canvas context whose ``fillText`` is recorded, so the
tests read what a user would see on the node: each LoRA's strength, the combined mix, the live
loss curve's caption.
"""
from __future__ import annotations

import json
import os

import pytest

from tools.comfyui.browser import chromium_path

from .host_client import PACK_DIR_NAME, ROOT, shared_constants

WORKFLOWS = sorted(f for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
EXTENSIONS = ["customize_a_video.motion_lora_stack", "customize_a_video.loss_curve", "customize_a_video.motion_stack"]
OLD_STACK = os.path.join("tests", "data", "workflow_multi_motion_3slot.json")  # the 3-slot stack and a loader


C = shared_constants()
CONSTANTS_JS = f"/extensions/{PACK_DIR_NAME}/constants.js"


@pytest.fixture(scope="module")
def browser(host):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(pip install playwright) so the frontend extension is not tested")
    with sync_api.sync_playwright() as playwright:
        path = chromium_path(playwright)
        if path is None:
            pytest.skip("no Chromium found (set CAV_CHROMIUM or run `playwright install chromium`), "
                        "so the frontend extension is not tested")
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _open(browser, host, constants_status: int | None = None):
    """The editor in a new tab; with constants_status the pack's constants route answers that instead."""
    tab = browser.new_page(viewport={"width": 1280, "height": 800})
    tab.page_errors, tab.console_errors, tab.constants_requests = [], [], []
    tab.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    tab.on("console", lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None)
    tab.on("request", lambda request: tab.constants_requests.append(request.url)
           if request.url.endswith(C.ROUTE) else None)
    if constants_status is not None:
        tab.route(f"**{C.ROUTE}", lambda route: route.fulfill(status=constants_status, body="unavailable"))
    tab.goto(host.url, wait_until="networkidle", timeout=120_000)
    tab.wait_for_function("() => window.app && window.app.graph && window.app.extensions", timeout=120_000)
    # Helpers for the tests: a recording canvas context, and load-by-JSON.
    tab.evaluate("""() => {
        window.cavRecordingContext = () => {
            const ctx = document.createElement('canvas').getContext('2d');
            const texts = [];
            const fillText = ctx.fillText.bind(ctx);
            ctx.fillText = (text, ...rest) => { texts.push(String(text)); fillText(text, ...rest); };
            return { ctx, texts };
        };
        window.cavDraw = (node) => {
            const { ctx, texts } = window.cavRecordingContext();
            node.onDrawForeground?.(ctx);
            return texts;
        };
    }""")
    return tab


@pytest.fixture(scope="module")
def page(browser, host):
    tab = _open(browser, host)
    yield tab
    tab.close()


def _load(page, name: str) -> list[dict]:
    """Open a shipped workflow (by file name) or a file of the repository (by its relative path)."""
    with open(os.path.join(ROOT, name if os.sep in name else os.path.join("workflows", name))) as f:
        workflow = json.load(f)
    return page.evaluate("""async (wf) => {
        await window.app.loadGraphData(wf);
        return window.app.graph._nodes.map((n) => ({ id: n.id, type: n.type,
            registered: !!LiteGraph.registered_node_types[n.type], height: n.size[1] }));
    }""", workflow)


def test_the_extensions_register_without_page_errors(page):
    names = page.evaluate("() => window.app.extensions.map((e) => e.name)")
    assert set(EXTENSIONS) <= set(names)
    assert page.page_errors == []


def test_the_frontend_reads_the_shared_names_once_from_the_packs_route(host, page):
    assert host.get(C.ROUTE) == json.loads(json.dumps(C.as_json()))
    assert host.get(C.ROUTE)["node_ids"] == C.NODE_IDS
    # The page's constants module holds what nodes/constants.py says; importing it again reuses
    # the one instance the extensions loaded, so the route was read once.
    loaded = page.evaluate("""async (url) => {
        const m = await import(url);
        return { node_ids: m.node_ids, events: m.events, ui_keys: m.ui_keys, socket_types: m.socket_types };
    }""", CONSTANTS_JS)
    assert loaded == {"node_ids": C.NODE_IDS, "events": C.EVENTS, "ui_keys": C.UI_KEYS,
                      "socket_types": C.SOCKET_TYPES}
    assert len(page.constants_requests) == 1, page.constants_requests
    assert not [e for e in page.console_errors if "Customize-A-Video" in e]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_shipped_workflow_opens_with_all_nodes_known(page, name):
    with open(os.path.join(ROOT, "workflows", name)) as f:
        expected = sorted(n["type"] for n in json.load(f)["nodes"])
    nodes = _load(page, name)
    assert sorted(n["type"] for n in nodes) == expected
    assert [n["type"] for n in nodes if not n["registered"]] == []
    assert page.page_errors == []


def test_the_stack_node_draws_each_strength_and_the_mix(page):
    nodes = _load(page, OLD_STACK)
    stack = next(n for n in nodes if n["type"] == C.NODE_IDS["motion_lora_stack"])
    texts = page.evaluate("""(id) => {
        const node = window.app.graph.getNodeById(id);
        const before = window.cavDraw(node);
        node.widgets.find((w) => w.name === 'strength_2').value = -0.25;
        return { before, after: window.cavDraw(node) };
    }""", stack["id"])
    # The shipped workflow links two LoRAs at 0.6 each; the third slot is empty and not drawn.
    assert [t for t in texts["before"] if t.startswith("motion_lora_")] == [
        "motion_lora_1  +0.60", "motion_lora_2  +0.60"]
    assert "combined mix" in texts["before"]
    assert "motion_lora_2  -0.25" in texts["after"]


def test_the_stack_node_shows_the_whole_reported_stack_after_a_run(page):
    nodes = _load(page, OLD_STACK)
    stack = next(n for n in nodes if n["type"] == C.NODE_IDS["motion_lora_stack"])
    result = page.evaluate("""([id, key]) => {
        const node = window.app.graph.getNodeById(id);
        node.setSize(node.computeSize());  // as small as the node allows: room for three bars
        const height = node.size[1];
        // What the node sends after executing: upstream loaders first, then its own two inputs.
        const reported = [{ name: 'wave', strength: 1.0 }, { name: 'spiral', strength: 0.5 },
                          { name: 'zigzag', strength: 0.6 }, { name: 'figure_eight', strength: 0.6 }];
        node.onExecuted({ [key]: reported });
        const shown = window.cavDraw(node);
        // A later widget edit makes the reported stack stale: the node falls back to its own inputs.
        node.widgets.find((w) => w.name === 'strength_1').value = 1.5;
        return { shown, stale: window.cavDraw(node), grew: node.size[1] > height };
    }""", [stack["id"], C.UI_KEYS["stack"]])
    assert [t.split("  ")[0] for t in result["shown"] if "  " in t] == ["wave", "spiral", "zigzag", "figure_eight"]
    assert result["grew"], "four reported LoRAs need more room than the three reserved"
    assert "motion_lora_1  +1.50" in result["stale"] and not any(t.startswith("wave") for t in result["stale"])


def test_the_stack_node_draws_a_bar_for_every_lora_input_it_has(page):
    nodes = _load(page, OLD_STACK)
    stack = next(n for n in nodes if n["type"] == C.NODE_IDS["motion_lora_stack"])
    result = page.evaluate("""([id, type]) => {
        const node = window.app.graph.getNodeById(id);
        // A fourth LoRA input, as a later version of the node might have: it is drawn and given
        // room for its bar, beyond the row any new input takes.
        const height = () => node.computeSize()[1];
        let before = height();
        node.addInput('unrelated', type);
        const plainInput = height() - before;
        before = height();
        node.addInput('motion_lora_4', type);
        const loraInput = height() - before;
        node.inputs.find((x) => x.name === 'motion_lora_4').link = node.inputs.find((x) => x.name === 'motion_lora_1').link;
        node.addWidget('number', 'strength_4', 0.3, () => {});
        return { texts: window.cavDraw(node), bar: loraInput - plainInput };
    }""", [stack["id"], C.SOCKET_TYPES["motion_lora"]])
    assert "motion_lora_4  +0.30" in result["texts"]
    assert result["bar"] == 14, "room for one more bar (BAR + GAP)"
    _load(page, OLD_STACK)  # leave the graph as it was


def test_training_nodes_draw_the_live_loss_curve_from_cav_loss_events(page):
    nodes = _load(page, "one_shot_motion_transfer.json")
    trainer = next(n for n in nodes if n["type"] == C.NODE_IDS["train_motion"])
    texts = page.evaluate("""async ([id, event]) => {
        const { api } = window.comfyAPI.api;
        const node = window.app.graph.getNodeById(id);
        const empty = window.cavDraw(node);
        const send = (detail) => api.dispatchEvent(new CustomEvent(event, { detail }));
        send({ node: String(id), stage: 'motion', step: 1, total: 300, loss: 0.5 });
        send({ node: String(id), stage: 'motion', step: 2, total: 300, loss: 0.25 });
        send({ node: '999999', stage: 'motion', step: 3, total: 300, loss: 9.0 });  // another node
        const two = window.cavDraw(node);
        send({ node: String(id), stage: 'motion', step: 1, total: 300, loss: 0.75 });  // a new run
        return { empty, two, restarted: window.cavDraw(node) };
    }""", [trainer["id"], C.EVENTS["loss"]])
    assert not any("loss" in t for t in texts["empty"])
    assert "motion loss 0.250  step 2/300" in texts["two"]
    assert "motion loss 0.750  step 1/300" in texts["restarted"]
    assert page.page_errors == []


def test_without_the_constants_route_the_editor_works_without_the_drawings(browser, host):
    tab = _open(browser, host, constants_status=500)
    try:
        names = tab.evaluate("() => window.app.extensions.map((e) => e.name)")
        assert set(EXTENSIONS) <= set(names)
        nodes = _load(tab, OLD_STACK)
        assert [n["type"] for n in nodes if not n["registered"]] == []
        stack = next(n for n in nodes if n["type"] == C.NODE_IDS["motion_lora_stack"])
        texts = tab.evaluate("(id) => window.cavDraw(window.app.graph.getNodeById(id))", stack["id"])
        assert not any(t.startswith("motion_lora_") or t == "combined mix" for t in texts)
        ours = [e for e in tab.console_errors if "Customize-A-Video" in e]
        assert len(ours) == 1 and C.ROUTE in ours[0] and "HTTP 500" in ours[0], tab.console_errors
        assert tab.page_errors == []
    finally:
        tab.close()
