"""The frontend extension (js/customize_a_video.js) in a real browser against the real ComfyUI page.

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

from .host_client import ROOT

WORKFLOWS = sorted(f for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
EXTENSION = "customize_a_video.ui"


@pytest.fixture(scope="module")
def page(host):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(pip install playwright) so the frontend extension is not tested")
    with sync_api.sync_playwright() as playwright:
        path = chromium_path(playwright)
        if path is None:
            pytest.skip("no Chromium found (set CAV_CHROMIUM or run `playwright install chromium`), "
                        "so the frontend extension is not tested")
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1280, "height": 800})
        tab.page_errors = []
        tab.on("pageerror", lambda error: tab.page_errors.append(str(error)))
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
                node.onDrawForeground(ctx);
                return texts;
            };
        }""")
        yield tab
        browser.close()


def _load(page, name: str) -> list[dict]:
    with open(os.path.join(ROOT, "workflows", name)) as f:
        workflow = json.load(f)
    return page.evaluate("""async (wf) => {
        await window.app.loadGraphData(wf);
        return window.app.graph._nodes.map((n) => ({ id: n.id, type: n.type,
            registered: !!LiteGraph.registered_node_types[n.type], height: n.size[1] }));
    }""", workflow)


def test_the_extension_registers_without_page_errors(page):
    names = page.evaluate("() => window.app.extensions.map((e) => e.name)")
    assert EXTENSION in names
    assert page.page_errors == []


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_shipped_workflow_opens_with_all_nodes_known(page, name):
    with open(os.path.join(ROOT, "workflows", name)) as f:
        expected = sorted(n["type"] for n in json.load(f)["nodes"])
    nodes = _load(page, name)
    assert sorted(n["type"] for n in nodes) == expected
    assert [n["type"] for n in nodes if not n["registered"]] == []
    assert page.page_errors == []


def test_the_stack_node_draws_each_strength_and_the_mix(page):
    nodes = _load(page, "multi_motion_combination.json")
    stack = next(n for n in nodes if n["type"] == "CAV_MotionLoraStack")
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
    nodes = _load(page, "multi_motion_combination.json")
    stack = next(n for n in nodes if n["type"] == "CAV_MotionLoraStack")
    result = page.evaluate("""(id) => {
        const node = window.app.graph.getNodeById(id);
        node.setSize(node.computeSize());  // as small as the node allows: room for three bars
        const height = node.size[1];
        // What the node sends after executing: upstream loaders first, then its own two inputs.
        const reported = [{ name: 'wave', strength: 1.0 }, { name: 'spiral', strength: 0.5 },
                          { name: 'zigzag', strength: 0.6 }, { name: 'figure_eight', strength: 0.6 }];
        node.onExecuted({ cav_stack: reported });
        const shown = window.cavDraw(node);
        // A later widget edit makes the reported stack stale: the node falls back to its own inputs.
        node.widgets.find((w) => w.name === 'strength_1').value = 1.5;
        return { shown, stale: window.cavDraw(node), grew: node.size[1] > height };
    }""", stack["id"])
    assert [t.split("  ")[0] for t in result["shown"] if "  " in t] == ["wave", "spiral", "zigzag", "figure_eight"]
    assert result["grew"], "four reported LoRAs need more room than the three reserved"
    assert "motion_lora_1  +1.50" in result["stale"] and not any(t.startswith("wave") for t in result["stale"])


def test_training_nodes_draw_the_live_loss_curve_from_cav_loss_events(page):
    nodes = _load(page, "one_shot_motion_transfer.json")
    trainer = next(n for n in nodes if n["type"] == "CAV_TrainMotionLora")
    texts = page.evaluate("""async (id) => {
        const { api } = window.comfyAPI.api;
        const node = window.app.graph.getNodeById(id);
        const empty = window.cavDraw(node);
        const send = (detail) => api.dispatchEvent(new CustomEvent('cav.loss', { detail }));
        send({ node: String(id), stage: 'motion', step: 1, total: 300, loss: 0.5 });
        send({ node: String(id), stage: 'motion', step: 2, total: 300, loss: 0.25 });
        send({ node: '999999', stage: 'motion', step: 3, total: 300, loss: 9.0 });  // another node
        const two = window.cavDraw(node);
        send({ node: String(id), stage: 'motion', step: 1, total: 300, loss: 0.75 });  // a new run
        return { empty, two, restarted: window.cavDraw(node) };
    }""", trainer["id"])
    assert not any("loss" in t for t in texts["empty"])
    assert "motion loss 0.250  step 2/300" in texts["two"]
    assert "motion loss 0.750  step 1/300" in texts["restarted"]
    assert page.page_errors == []
