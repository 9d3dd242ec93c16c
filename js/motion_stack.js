// The Motion LoRA Stack node as rows: each row an on/off toggle, a motion LoRA (a file picked from
// the motion-LoRA folders, with its preview, or a connected motion_N socket), a strength and the
// part of the denoising run it acts on, with an optional ramp; "+ Add motion", toggle all, a row
// menu, the combined mix, and presets.
//
// The rows live in the node's JSON widget (stack_rows.widget), so saving, reloading, copying and
// the API prompt carry them; that widget is hidden and its value is read from and written to the
// rows the node draws (stack_row_widgets.js). The rows are LiteGraph custom widgets (draw / mouse /
// computeSize): the canvas path every node uses in frontend 1.35, which redraws them with the graph
// and routes pointer events and drags to them, as the built-in number and combo widgets get them.
// This module sets the node type up; docs/ARCHITECTURE.md lists the stack_*.js modules.
import { app } from "../../scripts/app.js";
import { node_ids, ui_keys } from "./constants.js";
import { chainMethod } from "./node_hooks.js";
import { addButton, headerWidget, mixWidget } from "./stack_controls.js";
import { refreshFiles } from "./stack_files.js";
import { isSocket } from "./stack_model.js";
import { presetMenu } from "./stack_presets.js";
import { bindRowsWidget, changed, reconcileSockets } from "./stack_row_widgets.js";

function setUp(node) {
  node.cavRows = [];
  node.cavOrigins = new WeakMap(); // row -> "origin node:slot" of its socket's link
  bindRowsWidget(node);
  node.cavAddButton = addButton();
  node.widgets.push(headerWidget(), node.cavAddButton, mixWidget());
  changed(node);
}

app.registerExtension({
  name: "customize_a_video.motion_stack",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!node_ids.motion_stack || nodeData.name !== node_ids.motion_stack) return;
    chainMethod(nodeType, "onNodeCreated", function () { setUp(this); });
    chainMethod(nodeType, "onConfigure", function () {
      requestAnimationFrame(() => reconcileSockets(this, false));
    });
    chainMethod(nodeType, "onConnectionsChange", function (side, slot) {
      if (side !== LiteGraph.INPUT || !isSocket(this.inputs?.[slot] ?? { name: "" }) || app.configuringGraph) return;
      // the sockets renumber in the next frame after a disconnect: reconcile after that
      requestAnimationFrame(() => requestAnimationFrame(() => reconcileSockets(this, true)));
    });
    chainMethod(nodeType, "onExecuted", function (message) {
      if (Array.isArray(message?.[ui_keys.stack])) this.cavStack = message[ui_keys.stack];
      this.setDirtyCanvas(true, false);
    });
    chainMethod(nodeType, "refreshComboInNode", () => refreshFiles());
    chainMethod(nodeType, "getExtraMenuOptions", function (canvas, options) {
      options.push({ content: "Motion LoRA Stack presets…", callback: (v, o, e) => presetMenu(this, e) });
    });
  },

  setup() {
    if (node_ids.motion_stack) refreshFiles();
  },
});
