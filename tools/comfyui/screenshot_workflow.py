"""Screenshot a shipped workflow as the ComfyUI editor shows it (for the README).

    python -m tools.comfyui.screenshot_workflow --url http://127.0.0.1:8188 \\
        --workflow one_shot_motion_transfer --out docs/ui_one_shot_motion_transfer.png

Needs a running ComfyUI with the pack installed, playwright, and a Chromium (CAV_CHROMIUM or
playwright's own). The graph is loaded from workflows/NAME.json and fitted to the window.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request

from tools.comfyui.browser import chromium_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a running ComfyUI with the pack")
    parser.add_argument("--workflow", default="one_shot_motion_transfer")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--size", default="2600x1500", help="browser window, WIDTHxHEIGHT")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with open(os.path.join(ROOT, "workflows", args.workflow + ".json")) as f:
        workflow = json.load(f)
    width, height = (int(v) for v in args.size.split("x"))
    # The template browser opens over the graph on a first visit unless the server's user settings
    # say the tutorial is done (Escape does not close it in frontend 1.35).
    urllib.request.urlopen(urllib.request.Request(args.url.rstrip("/") + "/settings/Comfy.TutorialCompleted",
                                                  data=b"true", method="POST"), timeout=30).close()
    with sync_playwright() as playwright:
        chromium = chromium_path(playwright)
        if chromium is None:
            sys.exit("no Chromium found: set CAV_CHROMIUM or run `playwright install chromium`")
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(args.url, wait_until="networkidle", timeout=120_000)
        page.wait_for_function("() => window.app && window.app.graph", timeout=120_000)
        page.keyboard.press("Escape")  # the template browser opens on a first visit
        unknown = page.evaluate("""async (wf) => {
            try { await window.app.extensionManager.setting.set('Comfy.Minimap.Visible', false); } catch (e) {}
            // LiteGraph draws nodes without text below a zoom threshold; a fitted graph is often below it
            try { await window.app.extensionManager.setting.set('LiteGraph.Canvas.LowQualityRenderingZoomThreshold', 0.1); } catch (e) {}
            await window.app.loadGraphData(wf);
            const canvas = window.app.canvas;
            const nodes = window.app.graph._nodes;
            const xs = nodes.flatMap((n) => [n.pos[0], n.pos[0] + n.size[0]]);
            const ys = nodes.flatMap((n) => [n.pos[1] - 30, n.pos[1] + n.size[1]]);
            const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
            const el = canvas.canvas;  // under the side bar (left) and the menu (top): keep clear of both
            const [left, top] = [70, 90];
            const scale = Math.min((el.clientWidth - left - 20) / (x1 - x0), (el.clientHeight - top - 20) / (y1 - y0));
            canvas.ds.scale = scale;
            canvas.ds.offset = [-x0 + left / scale, -y0 + top / scale];
            canvas.setDirty(true, true);
            return nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
        }""", workflow)
        if unknown:
            sys.exit(f"the server does not know these nodes: {unknown}")
        page.wait_for_timeout(1500)
        for _ in range(3):  # the template browser can open late on a first visit: close whatever dialog is up
            if not page.locator(".p-dialog").count():
                break
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
        tmp = args.out + ".tmp.png"
        page.screenshot(path=tmp)
        os.replace(tmp, args.out)
        browser.close()
    print("wrote", args.out)


if __name__ == "__main__":
    main()
