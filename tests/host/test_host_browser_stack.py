"""The Motion LoRA Stack in the real editor (headless Chromium), driven with the mouse and keyboard:
added from the search box, rows added with "+ Add motion" and files picked from the menu, a row
switched off, a strength dragged, a schedule dragged on a row's timeline, queued through the
editor; then saved and reloaded, copied, presets, sockets, a missing file, and the previews.

The screenshots README shows are written to docs/ by these tests. Needs the host (COMFYUI_PATH),
playwright and a Chromium, like test_host_browser.
"""
from __future__ import annotations

import json
import os
import time
import urllib.parse

import pytest

from .host_client import ROOT, TINY_BASE, assert_success, shared_constants, write_motion_lora
from .test_host_browser import _open, browser  # noqa: F401 - the browser fixture is shared

C = shared_constants()
STACK = C.NODE_IDS["motion_stack"]
FILES = ["stack_ui_a.safetensors", "stack_ui_sub/stack_ui_b.safetensors", "stack_ui_c.safetensors"]
DOCS = os.path.join(ROOT, "docs")

HELPERS = """() => {
    // the client point of a part of a stack widget ([x, y, w, h] in node coordinates, drawn last frame)
    window.cavPoint = (node, widgetName, part, fx = 0.5, fy = 0.5) => {
        app.canvas.draw(true, true);
        const widget = node.widgets.find((w) => w.name === widgetName);
        const [x, y, w, h] = part ? widget.areas[part] : [0, widget.last_y, node.size[0], 22];
        const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + x + w * fx, node.pos[1] + y + h * fy]);
        const rect = app.canvas.canvas.getBoundingClientRect();
        return [rect.left + cx, rect.top + cy];
    };
    // the client rectangle of a node, its title included, with a margin
    window.cavBox = (node, margin = 12) => {
        app.canvas.draw(true, true);
        const rect = app.canvas.canvas.getBoundingClientRect();
        const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT]);
        const scale = app.canvas.ds.scale;
        return { x: rect.left + x - margin, y: rect.top + y - margin, width: node.size[0] * scale + 2 * margin,
                 height: (node.size[1] + LiteGraph.NODE_TITLE_HEIGHT) * scale + 2 * margin };
    };
    window.cavStack = () => app.graph._nodes.find((n) => n.type === '%s');
    window.cavRows = (node) => JSON.parse(node.widgets.find((w) => w.name === 'rows').value);
}""" % STACK


@pytest.fixture(scope="module")
def files(host):
    """Three motion LoRAs for the tiny base, the second in a subfolder; the first has a preview (the
    bundled zigzag clip, as training writes a reference's preview)."""
    from cav_core.motion_preview import training_preview, write_preview
    from cav_core.shapes_world.references import reference_path
    from cav_core.video_io import VideoOptions, read_video

    tiny = os.path.join(host.dirs["diffusers"], TINY_BASE)
    for seed, name in enumerate(FILES, start=11):
        write_motion_lora(tiny, os.path.join(host.dirs["loras"], name), seed)
    zigzag = read_video(reference_path("zigzag"), VideoOptions(max_frames=16, size=64)).frames
    write_preview(os.path.join(host.dirs["loras"], FILES[0]), training_preview(zigzag))
    return FILES


def no_template_browser(host) -> None:
    """The template browser opens over the canvas on a first visit, unless the tutorial is done."""
    status, _ = host.request("POST", "/settings/Comfy.TutorialCompleted", True)
    assert status == 200


@pytest.fixture(scope="module")
def tab(browser, host, files):  # noqa: F811
    no_template_browser(host)
    page = _open(browser, host)
    page.evaluate(HELPERS)
    yield page
    page.close()


def click(tab, point):
    tab.mouse.click(*point)


def menu_entry(tab, text: str):
    entry = tab.locator(".litecontextmenu .litemenu-entry", has_text=text).last
    entry.wait_for(state="visible", timeout=10_000)
    return entry


def graph_with_base_and_sample(tab):
    """An empty graph with Load T2V Base (tiny) -> Sample Video -> Preview Image, the view at scale 1."""
    tab.evaluate("""([base]) => {
        app.graph.clear();
        const add = (type, pos) => { const n = LiteGraph.createNode(type); n.pos = pos; app.graph.add(n); return n; };
        const loader = add('CAV_LoadBase', [760, 480]);
        loader.widgets.find((w) => w.name === 'model').value = base;
        const sample = add('CAV_SampleVideo', [760, 60]);
        const set = (name, v) => { sample.widgets.find((w) => w.name === name).value = v; };
        set('steps', 4); set('frames', 4); set('width', 16); set('height', 16); set('prompt', 'a square');
        set('seed', 5);
        loader.connect(0, sample, 'base');
        const view = add('PreviewImage', [1200, 60]);
        sample.connect(0, view, 'images');
        app.canvas.ds.scale = 1; app.canvas.ds.offset[0] = 0; app.canvas.ds.offset[1] = 0;
        app.canvas.setDirty(true, true);
    }""", [TINY_BASE])


def add_stack_from_the_search_box(tab):
    canvas = tab.locator("#graph-canvas")
    box = canvas.bounding_box()
    search = tab.locator("input[id^='comfy-vue-node-search-box-input']")
    for _ in range(3):  # a double click while the editor is still busy with the new graph can go unseen
        canvas.dblclick(position={"x": 120, "y": 120})
        try:
            search.wait_for(state="visible", timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - try again; the last wait below reports the failure
            tab.wait_for_timeout(500)
    search.wait_for(state="visible", timeout=5_000)
    search.fill("Motion LoRA Stack")
    # The results (not the search box's own input chip, which is also an option when filters are on),
    # once the list has been filtered: picking before that would add the unfiltered first node.
    option = tab.locator(".comfy-vue-node-search-box li.p-autocomplete-option").first
    option.wait_for(state="visible", timeout=10_000)
    deadline = time.time() + 10
    while "Motion LoRA Stack" not in option.inner_text() and time.time() < deadline:
        tab.wait_for_timeout(100)
    assert "Motion LoRA Stack" in option.inner_text() and "3 slots" not in option.inner_text()
    option.click()
    tab.wait_for_function("() => !!window.cavStack()", timeout=10_000)
    search.wait_for(state="hidden", timeout=10_000)  # the search dialog takes the clicks while it closes
    tab.locator(".p-dialog-mask").wait_for(state="detached", timeout=10_000)
    assert box is not None
    return tab.evaluate("() => { const n = window.cavStack(); n.pos = [260, 160]; app.canvas.setDirty(true, true); "
                        "return n.id; }")


def queue_and_wait(tab, host) -> dict:
    """Queue through the editor (its own graph-to-prompt and POST) and return the history entry."""
    before = set(host.get("/history"))
    tab.evaluate("() => app.queuePrompt(0, 1)")
    deadline = time.time() + 300
    while time.time() < deadline:
        new = [k for k in host.get("/history") if k not in before]
        if new:
            return host.wait(new[0])
        time.sleep(0.25)
    raise TimeoutError("the editor's prompt did not reach the server's history")


def preview_bytes(host, entry: dict, node_id: str) -> bytes:
    """The first image a Preview Image node showed, as the editor fetches it."""
    image = entry["outputs"][node_id]["images"][0]
    status, body = host.request("GET", "/view?" + urllib.parse.urlencode(
        {k: image[k] for k in ("filename", "subfolder", "type")}))
    assert status == 200 and isinstance(body, bytes) and body
    return body


def stack_with_rows(tab, rows: list[dict]) -> None:
    """A new graph holding one stack node with ``rows``, the canvas at scale 1 and no offset."""
    tab.evaluate("""(rows) => {
        app.graph.clear();
        const node = LiteGraph.createNode('%s'); node.pos = [260, 160]; app.graph.add(node);
        node.widgets.find((w) => w.name === 'rows').value = JSON.stringify(rows);
        app.canvas.ds.scale = 1; app.canvas.ds.offset[0] = 0; app.canvas.ds.offset[1] = 0;
    }""" % STACK, rows)


def drag_schedule_end(tab, row: int, fraction: float) -> None:
    """Drag row ``row``'s timeline from its right end (the end handle) to ``fraction`` of the run."""
    points = tab.evaluate("""([row, f]) => { const n = window.cavStack(); const name = 'cav_row_' + row;
        const [l, r] = n.widgets.find((x) => x.name === name).track;
        return [window.cavPoint(n, name, 'track', (r - l + 4) / (r - l + 8)),
                window.cavPoint(n, name, 'track', (f * (r - l) + 4) / (r - l + 8))]; }""", [row, fraction])
    tab.mouse.move(*points[0])
    tab.mouse.down()
    tab.mouse.move(*points[1], steps=5)
    tab.mouse.up()


def test_a_stack_built_with_the_mouse_is_the_stack_the_editor_queues(tab, host, files):
    graph_with_base_and_sample(tab)
    stack_id = add_stack_from_the_search_box(tab)
    # three rows through the button, each file picked from the menu (the second one in its subfolder)
    for name in files:
        click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_add_motion')"))
        folder, _, base = name.rpartition("/")
        if folder:
            menu_entry(tab, folder).click()
        menu_entry(tab, base).click()
        tab.wait_for_function("(n) => window.cavRows(window.cavStack()).filter((r) => r.lora).length === n",
                              arg=files.index(name) + 1, timeout=10_000)
    # the third row off, the first row's strength dragged 30 px right, the second row's end dragged to 50%
    click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_row_2', 'toggle')"))
    start = tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_row_0', 'value')")
    tab.mouse.move(*start)
    tab.mouse.down()
    tab.mouse.move(start[0] + 15, start[1], steps=3)
    tab.mouse.move(start[0] + 30, start[1], steps=3)
    tab.mouse.up()
    drag_schedule_end(tab, 1, 0.5)
    expected = [{"on": True, "lora": files[0], "input": None, "strength": 1.3, "start": 0, "end": 1,
                 "end_strength": None},
                {"on": True, "lora": files[1], "input": None, "strength": 1, "start": 0, "end": 0.5,
                 "end_strength": None},
                {"on": False, "lora": files[2], "input": None, "strength": 1, "start": 0, "end": 1,
                 "end_strength": None}]
    assert tab.evaluate("() => window.cavRows(window.cavStack())") == expected
    # what the editor sends: the same rows in the API prompt
    tab.evaluate("() => { const n = window.cavStack(); const s = app.graph._nodes.find((x) => x.type === "
                 "'CAV_SampleVideo'); n.connect(0, s, 'motion_loras'); }")
    prompt = tab.evaluate("async () => (await app.graphToPrompt()).output")
    assert json.loads(prompt[str(stack_id)]["inputs"]["rows"]) == expected
    texts = tab.evaluate("() => { const { ctx, texts } = window.cavRecordingContext(); "
                         "app.canvas.draw(true, true); const n = window.cavStack(); "
                         "n.widgets.forEach((w) => w.draw?.(ctx, n, n.size[0], w.last_y ?? 0, 20)); return texts; }")
    assert {"stack_ui_a", "stack_ui_sub/stack_ui_b", "stack_ui_c", "1.30", "0%–50%", "+ Add motion"} <= set(texts)
    assert "72%" in texts and "28%" in texts  # shares: 1.3 over the whole run, 1.0 over half of it; c is off
    os.makedirs(DOCS, exist_ok=True)
    tab.screenshot(path=os.path.join(DOCS, "ui_motion_stack.png"),
                   clip=tab.evaluate("() => window.cavBox(window.cavStack())"))
    assert tab.page_errors == []


def test_the_server_runs_exactly_the_stack_the_rows_show(tab, host, files):
    """Queues the graph the previous test built (its second row scheduled: needs sampling that
    honours schedules), then the same graph with the third row switched on."""
    stack_id = str(tab.evaluate("() => window.cavStack().id"))
    view_id = str(tab.evaluate("() => app.graph._nodes.find((x) => x.type === 'PreviewImage').id"))
    entry = queue_and_wait(tab, host)
    assert_success(host, entry)
    ran = [(e["name"], e["strength"], e["start"], e["end"], e["end_strength"])
           for e in entry["outputs"][stack_id][C.UI_KEYS["stack"]]]
    assert ran == [("stack_ui_a", 1.3, 0.0, 1.0, None), ("stack_ui_b", 1.0, 0.0, 0.5, None)]
    click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_row_2', 'toggle')"))
    on = queue_and_wait(tab, host)
    assert_success(host, on)
    assert [e["name"] for e in on["outputs"][stack_id][C.UI_KEYS["stack"]]] == \
        ["stack_ui_a", "stack_ui_b", "stack_ui_c"]
    assert preview_bytes(host, entry, view_id) != preview_bytes(host, on, view_id)


def test_rows_come_back_after_save_and_reload_and_with_copy_and_paste(tab, host, files):
    rows = [{"on": True, "lora": files[0], "input": None, "strength": 0.4, "start": 0.1, "end": 0.7,
             "end_strength": -0.2},
            {"on": False, "lora": files[2], "input": None, "strength": -1.5, "start": 0, "end": 1,
             "end_strength": None}]
    result = tab.evaluate("""async (rows) => {
        app.graph.clear();
        const node = LiteGraph.createNode('%s'); node.pos = [260, 160]; app.graph.add(node);
        node.widgets.find((w) => w.name === 'rows').value = JSON.stringify(rows);
        const saved = JSON.parse(JSON.stringify(app.graph.serialize()));
        await app.loadGraphData(saved);
        const again = window.cavStack();
        const reloaded = window.cavRows(again);
        const rowWidgets = again.widgets.filter((w) => w.name.startsWith('cav_row_')).length;
        app.canvas.selectItems([again]);
        app.canvas.copyToClipboard();
        app.canvas.pasteFromClipboard();
        const copies = app.graph._nodes.filter((n) => n.type === '%s').map(window.cavRows);
        app.graph.clear();
        return { saved: saved.nodes[0].widgets_values, reloaded, rowWidgets, copies };
    }""" % (STACK, STACK), rows)
    assert [json.loads(v) for v in result["saved"]] == [rows]  # the rows are the node's one saved value
    assert result["reloaded"] == rows and result["rowWidgets"] == 2
    assert result["copies"] == [rows, rows]


def test_arrows_typing_the_row_menu_and_toggle_all(tab, host, files):
    rows = [{"lora": files[0]}, {"lora": files[1], "on": False}, {"lora": files[2]}]
    stack_with_rows(tab, rows)
    point = lambda row, part: tab.evaluate(  # noqa: E731
        "([row, part]) => window.cavPoint(window.cavStack(), 'cav_row_' + row, part)", [row, part])
    rows_now = lambda: tab.evaluate("() => window.cavRows(window.cavStack())")  # noqa: E731

    def type_into_prompt(text):
        field = tab.locator(".graphdialog input")
        field.wait_for(state="visible", timeout=10_000)
        field.fill(text)
        field.press("Enter")

    tab.wait_for_timeout(300)  # the editor lays the new node out in its next frames
    for row, part in ((0, "inc"), (0, "inc"), (2, "dec")):
        click(tab, point(row, part))
        tab.wait_for_timeout(400)  # apart: two quick clicks on one spot are a double click
    assert [r["strength"] for r in rows_now()] == [1.1, 1, 0.95]
    click(tab, point(2, "value"))  # a click without a drag: type the strength
    type_into_prompt("-0.35")
    click(tab, point(0, "schedule"))  # the schedule's text: type start-end and a ramp
    type_into_prompt("20-80 > 0.5")
    now = rows_now()
    assert now[2]["strength"] == -0.35
    assert (now[0]["start"], now[0]["end"], now[0]["end_strength"]) == (0.2, 0.8, 0.5)
    click(tab, point(2, "value"))
    type_into_prompt("")  # an emptied prompt keeps the strength
    assert rows_now()[2]["strength"] == -0.35
    # A typed window narrower than a handle's snap, then a handle dragged: the window stays within the run.
    click(tab, point(0, "schedule"))
    type_into_prompt("98-100")
    drag_schedule_end(tab, 0, 0.3)
    tab.wait_for_timeout(400)
    dragged = rows_now()[0]
    assert 0 <= dragged["start"] < dragged["end"] <= 1, dragged
    click(tab, point(0, "schedule"))
    type_into_prompt("20-80 > 0.5")
    click(tab, point(0, "menu"))
    menu_entry(tab, "Move down").click()
    assert [r["lora"] for r in rows_now()] == [files[1], files[0], files[2]]
    click(tab, point(2, "menu"))
    menu_entry(tab, "Remove").click()
    assert [r["lora"] for r in rows_now()] == [files[1], files[0]]
    assert tab.evaluate("() => window.cavStack().widgets.filter((w) => w.name.startsWith('cav_row_')).length") == 2
    click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_header', 'toggle')"))
    assert [r["on"] for r in rows_now()] == [True, True]  # one was off: toggle all switches all on
    click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_header', 'toggle')"))
    assert [r["on"] for r in rows_now()] == [False, False]
    assert tab.page_errors == []


def test_a_press_that_changes_nothing_leaves_the_workflow_unmodified(tab, host, files):
    stack_with_rows(tab, [{"lora": files[0]}, {"lora": files[1]}])
    tab.wait_for_timeout(300)
    version = lambda: tab.evaluate("() => app.graph._version")  # noqa: E731
    before = version()
    click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_row_0', 'menu')"))
    menu_entry(tab, "Move down")  # the row menu is open; nothing was edited
    assert version() == before
    # Rows that change while the menu is open (a socket linked): the menu moves its row among them.
    tab.evaluate("""(name) => { const n = window.cavStack();
        n.cavRows = [{ lora: name, strength: 1, on: true, start: 0, end: 1, end_strength: null }, ...n.cavRows]; }""",
                 files[2])
    menu_entry(tab, "Move down").click()
    now = tab.evaluate("() => window.cavRows(window.cavStack())")
    assert [r["lora"] for r in now] == [files[2], files[1], files[0]]
    assert version() > before
    assert tab.page_errors == []


def test_a_missing_file_is_marked_on_its_row(tab, host, files):
    rows = [{"lora": files[0]}, {"lora": "gone_motion.safetensors", "strength": 0.5}]
    texts = tab.evaluate("""async (rows) => {
        app.graph.clear();
        const node = LiteGraph.createNode('%s'); node.pos = [260, 160]; app.graph.add(node);
        node.widgets.find((w) => w.name === 'rows').value = JSON.stringify(rows);
        app.canvas.ds.scale = 1; app.canvas.ds.offset[0] = 0; app.canvas.ds.offset[1] = 0;
        await new Promise((r) => setTimeout(r, 300));
        const { ctx, texts } = window.cavRecordingContext();
        node.widgets.forEach((w) => w.draw?.(ctx, node, node.size[0], w.last_y ?? 0, 20));
        return texts;
    }""" % STACK, rows)
    assert "missing: gone_motion.safetensors" in texts and "stack_ui_a" in texts
    assert not any(t.startswith("missing:") and "stack_ui_a" in t for t in texts)
    tab.screenshot(path=os.path.join(DOCS, "ui_motion_stack_missing.png"),
                   clip=tab.evaluate("() => window.cavBox(window.cavStack())"))


def test_connected_sockets_are_rows_that_follow_their_links(tab, host, files):
    result = tab.evaluate("""async () => {
        app.graph.clear();
        const add = (type, pos) => { const n = LiteGraph.createNode(type); n.pos = pos; app.graph.add(n); return n; };
        const stack = add('%s', [500, 60]);
        const one = add('CAV_TrainMotion', [20, 20]); one.title = 'Train one';
        const two = add('CAV_TrainMotion', [20, 400]); two.title = 'Train two';
        const frame = () => new Promise((r) => requestAnimationFrame(
            () => requestAnimationFrame(() => setTimeout(r, 50))));
        const socket = (name) => stack.inputs.findIndex((i) => i.name === 'motion_loras.' + name);
        one.connect(0, stack, socket('motion_1')); await frame();
        two.connect(0, stack, socket('motion_2')); await frame();
        const both = window.cavRows(stack).map((r) => r.input);
        const labels = [];
        const { ctx, texts } = window.cavRecordingContext();
        stack.widgets.forEach((w) => w.draw?.(ctx, stack, stack.size[0], w.last_y ?? 0, 20));
        window.cavRows(stack);
        stack.widgets.find((w) => w.name === 'rows').value = JSON.stringify(
            window.cavRows(stack).map((r) => ({ ...r, strength: r.input === 'motion_2' ? 0.25 : 1 })));
        stack.disconnectInput(socket('motion_1')); await frame(); await frame();
        const after = window.cavRows(stack);
        const prompt = (await app.graphToPrompt()).output[String(stack.id)].inputs;
        return { both, texts, after, inputs: Object.keys(prompt).sort(), link: prompt['motion_loras.motion_1'] };
    }""" % STACK)
    assert result["both"] == ["motion_1", "motion_2"]
    assert "⇠ motion_1 · Train one" in result["texts"] and "⇠ motion_2 · Train two" in result["texts"]
    # the first link gone: its row goes, and the second row (strength 0.25) follows its link to motion_1
    assert [(r["input"], r["strength"]) for r in result["after"]] == [("motion_1", 0.25)]
    assert result["inputs"] == ["motion_loras.motion_1", "rows"] and result["link"][1] == 0


def test_the_shipped_multi_motion_workflow_opens_with_its_rows_on_their_sockets(tab, host):
    with open(os.path.join(ROOT, "workflows", "multi_motion_combination.json")) as f:
        workflow = json.load(f)
    saved = next(n for n in workflow["nodes"] if n["type"] == STACK)
    result = tab.evaluate("""async (workflow) => {
        await app.loadGraphData(workflow);
        const node = window.cavStack();
        const { ctx, texts } = window.cavRecordingContext();
        node.widgets.forEach((w) => w.draw?.(ctx, node, node.size[0], w.last_y ?? 0, 20));
        // every linked input is the slot its link points at
        const slots = node.inputs.map((input, i) => input.link == null ? null
            : [input.name, app.graph.links.get(input.link).target_slot === i]);
        const prompt = (await app.graphToPrompt()).output[String(node.id)].inputs;
        return { rows: window.cavRows(node), texts, slots: slots.filter(Boolean), prompt };
    }""", workflow)
    assert result["rows"] == json.loads(saved["widgets_values"][0])
    assert [r["end"] for r in result["rows"]] == [1, 0.5]
    assert result["slots"] == [["motion_loras.motion_1", True], ["motion_loras.motion_2", True]]
    assert {t for t in result["texts"] if t.startswith("⇠")} == \
        {"⇠ motion_1 · Train zigzag T-LoRA", "⇠ motion_2 · Train figure-eight T-LoRA"}
    assert result["prompt"]["motion_loras.motion_1"][0] == "5" and result["prompt"]["motion_loras.motion_2"][0] == "8"
    assert json.loads(result["prompt"]["rows"]) == result["rows"]


def test_presets_are_saved_and_loaded_from_the_nodes_menu(tab, host, files):
    rows = [{"on": True, "lora": files[1], "input": None, "strength": 0.7, "start": 0.2, "end": 0.9,
             "end_strength": None}]
    stack_with_rows(tab, rows)
    click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_header', 'presets')"))
    menu_entry(tab, "Save rows as preset").click()
    dialog = tab.locator(".graphdialog input")
    dialog.wait_for(state="visible", timeout=10_000)
    dialog.fill("browser preset")
    dialog.press("Enter")
    path = os.path.join(host.dirs["loras"], "stack_presets", "browser preset.json")
    deadline = time.time() + 10
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.1)
    with open(path) as f:
        assert json.load(f)["rows"] == rows
    # another graph: an empty stack loads the preset from its menu
    tab.evaluate("""() => {
        app.graph.clear();
        const node = LiteGraph.createNode('%s'); node.pos = [260, 160]; app.graph.add(node);
    }""" % STACK)
    click(tab, tab.evaluate("() => window.cavPoint(window.cavStack(), 'cav_header', 'presets')"))
    menu_entry(tab, "browser preset (1 rows)").click()
    tab.wait_for_function("() => window.cavRows(window.cavStack()).length === 1", timeout=10_000)
    assert tab.evaluate("() => window.cavRows(window.cavStack())") == rows
    # and from the node's own context menu (right click on its title)
    tab.evaluate("""() => {
        app.graph.clear();
        const node = LiteGraph.createNode('%s'); node.pos = [260, 160]; app.graph.add(node);
    }""" % STACK)
    tab.wait_for_timeout(300)
    title = tab.evaluate("() => { const n = window.cavStack(); const b = window.cavBox(n, 0); "
                         "return [b.x + 60, b.y + LiteGraph.NODE_TITLE_HEIGHT / 2]; }")
    tab.mouse.click(*title, button="right")
    menu_entry(tab, "Motion LoRA Stack presets").click()
    menu_entry(tab, "browser preset (1 rows)").click()
    tab.wait_for_function("() => window.cavRows(window.cavStack()).length === 1", timeout=10_000)
    assert tab.evaluate("() => window.cavRows(window.cavStack())") == rows


@pytest.mark.parametrize("listing", ["served", "absent"])
def test_rows_show_previews_and_info_from_the_listing_route_and_names_without_it(browser, host, files, listing):  # noqa: F811
    """With the pack's listing and preview routes (nodes/constants.py ROUTES) a file with a preview
    shows it on its row and in the file menu, and the row's info shows what its header says; with
    the routes absent, rows show file names and the info says why there are no details."""
    from cav_core.adapter_info import file_info

    info = file_info(os.path.join(host.dirs["loras"], files[0]))
    no_template_browser(host)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    if listing == "absent":
        page.route(lambda url: url.endswith(C.ROUTES["motion_loras"]) or C.ROUTES["preview"] + "?" in url,
                   lambda route: route.fulfill(status=404, body="404: Not Found"))
    try:
        page.goto(host.url, wait_until="networkidle", timeout=120_000)
        page.wait_for_function("() => window.app && window.app.graph && window.app.extensions", timeout=120_000)
        page.evaluate(HELPERS)
        page.evaluate("""(rows) => {
            app.graph.clear();
            const node = LiteGraph.createNode('%s'); node.pos = [260, 160]; app.graph.add(node);
            node.widgets.find((w) => w.name === 'rows').value = JSON.stringify(rows);
            app.canvas.ds.scale = 1; app.canvas.ds.offset[0] = 0; app.canvas.ds.offset[1] = 0;
        }""" % STACK, [{"lora": files[0]}, {"lora": files[2]}])
        thumbs = "() => { app.canvas.draw(true, true); const n = window.cavStack(); return [0, 1]" \
                 ".map((i) => !!n.widgets.find((w) => w.name === 'cav_row_' + i).areas.thumb); }"
        if listing == "served":  # the preview is drawn once the image has loaded
            page.wait_for_function(f"() => ({thumbs})()[0]", timeout=10_000)
        else:
            page.wait_for_timeout(1000)
        assert page.evaluate(thumbs) == ([True, False] if listing == "served" else [False, False])
        click(page, page.evaluate("() => window.cavPoint(window.cavStack(), 'cav_row_0', 'menu')"))
        menu_entry(page, "Info").click()
        text = page.locator(".cav-stack-info").inner_text()
        if listing == "served":
            assert f"base: {info['base']}" in text and f"rank: {info['rank']}" in text, text
            assert f"layers adapted: {info['layers']} ({', '.join(info['layer_kinds'])})" in text, text
        else:
            assert "No details: the pack's listing route did not answer (HTTP 404)" in text
        page.locator(".cav-stack-info button").click()
        # the file menu shows the preview beside the file where there is one
        click(page, page.evaluate("() => window.cavPoint(window.cavStack(), 'cav_row_1', 'name')"))
        entry = menu_entry(page, "stack_ui_a.safetensors")
        assert entry.locator("img").count() == (1 if listing == "served" else 0)
        assert menu_entry(page, "stack_ui_c.safetensors").locator("img").count() == 0
    finally:
        page.close()
