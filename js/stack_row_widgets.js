// The Motion LoRA Stack's rows on the node: the hidden rows widget whose JSON value they are, one
// custom widget per row (drawn by stack_draw.js) and what the mouse does on it, the row menu, and
// the socket rows following their links.
import { app } from "../../scripts/app.js";
import { stack_rows } from "./constants.js";
import { notify } from "./stack_files.js";
import { ROW_H, drawRow, hitPart } from "./stack_draw.js";
import { fileMenu, showInfo } from "./stack_menus.js";
import {
  NEW_ROW, clampStrength, connectedSockets, fixed, isSocket, parseRows, parseSchedule, round, socketName, socketOrigin,
} from "./stack_model.js";

const MIN_WIDTH = 380;
const SNAP = 0.05; // schedule handles move in steps of 5% of the run
const DRAG_PER_PX = 0.01; // strength change per pixel dragged

// After any edit: the node fits its rows, and the workflow counts as changed.
export function changed(node) {
  const needed = node.computeSize();
  node.setSize([Math.max(node.size[0], needed[0], MIN_WIDTH), needed[1]]);
  if (node.graph) node.graph._version++;
  node.setDirtyCanvas(true, true);
}

// A press or drag that left the row as it was only redraws (the workflow stays unmodified).
function changedIf(node, row, before) {
  if (JSON.stringify(row) !== before) changed(node);
  else node.setDirtyCanvas(true, false);
}

export function setRows(node, rows) {
  node.cavRows = rows;
  node.cavRowsError = null;
  for (const row of rows) {  // a socket row remembers the link it takes, to follow it when sockets renumber
    const origin = row.input != null && !node.cavOrigins.has(row) ? socketOrigin(node, row.input) : null;
    if (origin) node.cavOrigins.set(row, origin.key);
  }
  const first = node.widgets.findIndex((w) => w.cavRow != null);
  const count = node.widgets.filter((w) => w.cavRow != null).length;
  const at = first >= 0 ? first : node.widgets.indexOf(node.cavAddButton);
  node.widgets.splice(at, count, ...rows.map((_, i) => rowWidget(i)));
  changed(node);
}

// The node's rows widget (stack_rows.widget) is hidden; its value is the rows' JSON. Text that is
// not rows is kept as it is and named on the node.
export function bindRowsWidget(node) {
  const rowsWidget = node.widgets.find((w) => w.name === stack_rows.widget);
  rowsWidget.hidden = true;
  rowsWidget.computeSize = () => [0, -4];
  Object.defineProperty(rowsWidget, "value", {
    configurable: true,
    get: () => (node.cavRowsError ? node.cavRowsText : JSON.stringify(node.cavRows)),
    set(text) {
      try {
        setRows(node, parseRows(text));
      } catch (error) {
        node.cavRowsText = String(text);
        node.cavRowsError = `not valid rows JSON (${error.message})`;
      }
    },
  });
}

// Keep one row per connected socket: a new link adds a row, a removed link removes its row, and a
// row follows its link when the sockets renumber (rows remember the link's origin).
export function reconcileSockets(node, removeUnlinked) {
  const connected = connectedSockets(node);
  const claimed = new Set();
  const kept = [];
  for (const row of node.cavRows) {
    if (row.input == null) {
      kept.push(row);
      continue;
    }
    const origin = node.cavOrigins.get(row);
    const match = connected.find((c) => !claimed.has(c.name) && (origin ? c.key === origin : c.name === row.input));
    if (match) {
      row.input = match.name;
      node.cavOrigins.set(row, match.key);
      claimed.add(match.name);
      kept.push(row);
    } else if (!removeUnlinked) {
      kept.push(row);
    }
  }
  for (const c of connected) {
    if (claimed.has(c.name)) continue;
    const row = { ...NEW_ROW, input: c.name };
    node.cavOrigins.set(row, c.key);
    kept.push(row);
  }
  setRows(node, kept);
}

function rowWidget(index) {
  return {
    type: "custom", name: `cav_row_${index}`, cavRow: index, value: null, serialize: false,
    options: { serialize: false }, areas: {}, drag: null,
    computeSize: (width) => [width, ROW_H],
    draw(ctx, node, width, y) { drawRow(ctx, node, this, width, y); },
    mouse(event, pos, node) { return rowMouse(node, this, event, pos); },
  };
}

function rowMouse(node, widget, event, pos) {
  const row = node.cavRows[widget.cavRow];
  if (!row) return false;
  const [left, right] = widget.track ?? [0, 1];
  const fraction = () => Math.min(1, Math.max(0, round((pos[0] - left) / (right - left), SNAP)));
  const before = JSON.stringify(row);
  if (event.type === "pointerdown") {
    const part = hitPart(widget.areas, pos);
    widget.drag = { part, x: pos[0], strength: row.strength, moved: false };
    if (part === "toggle") row.on = !row.on;
    else if (part === "dec" || part === "inc") {
      row.strength = fixed(clampStrength(round(row.strength + (part === "inc" ? 1 : -1) * stack_rows.strength_step,
        stack_rows.strength_step)));
    } else if (part === "track") {
      const f = fraction();
      widget.drag.handle = Math.abs(f - row.start) <= Math.abs(f - row.end) ? "start" : "end";
      moveHandle(row, widget.drag.handle, f);
    }
    changedIf(node, row, before);
    return true;
  }
  const drag = widget.drag;
  if (!drag) return false;
  if (event.type === "pointermove") {
    if (drag.part === "value" && Math.abs(pos[0] - drag.x) > 2) {
      drag.moved = true;
      row.strength = fixed(clampStrength(round(drag.strength + (pos[0] - drag.x) * DRAG_PER_PX, 0.01)));
    } else if (drag.part === "track") {
      moveHandle(row, drag.handle, fraction());
    }
    changedIf(node, row, before);
    return true;
  }
  if (event.type === "pointerup") {
    widget.drag = null;
    if (hitPart(widget.areas, pos) !== drag.part) return true;
    if (drag.part === "value" && !drag.moved) {
      app.canvas.prompt("Strength", row.strength, (v) => {
        const value = String(v).trim() === "" ? NaN : Number(v); // an emptied prompt keeps the strength
        if (Number.isFinite(value)) row.strength = fixed(clampStrength(value));
        changed(node);
      }, event);
    } else if ((drag.part === "name" || drag.part === "thumb") && row.input == null) {
      fileMenu(event, (name) => { row.lora = name; changed(node); });
    } else if (drag.part === "schedule") {
      schedulePrompt(node, row, event);
    } else if (drag.part === "menu") {
      rowMenu(node, widget.cavRow, event);
    }
    return true;
  }
  return false;
}

function moveHandle(row, handle, f) {
  // Within the run and at least a snap apart, unless a typed window is narrower (then it stays as typed).
  if (handle === "start") row.start = fixed(Math.max(0, Math.min(f, row.end - SNAP)));
  else row.end = fixed(Math.min(1, Math.max(f, row.start + SNAP)));
}

function schedulePrompt(node, row, event) {
  const current = `${Math.round(row.start * 100)}-${Math.round(row.end * 100)}` +
    (row.end_strength == null ? "" : ` > ${row.end_strength}`);
  app.canvas.prompt("Schedule: start-end % of the run (> end strength for a ramp)", current, (text) => {
    const schedule = parseSchedule(String(text));
    if (schedule) Object.assign(row, schedule);
    else notify("warn", "Motion LoRA Stack", `"${text}" is not a schedule: write e.g. 20-80, or 0-100 > 0.5 for a ramp`);
    changed(node);
  }, event);
}

function rowMenu(node, index, event) {
  const rows = node.cavRows;
  const row = rows[index];
  const move = (by) => {  // the rows as they are now: sockets may have come or gone while the menu was open
    const next = node.cavRows.slice();
    const at = next.indexOf(row);
    if (at < 0 || at + by < 0 || at + by >= next.length) return;
    next.splice(at + by, 0, next.splice(at, 1)[0]);
    setRows(node, next);
  };
  new LiteGraph.ContextMenu([
    { content: "Move up", disabled: index === 0, callback: () => move(-1) },
    { content: "Move down", disabled: index === rows.length - 1, callback: () => move(1) },
    { content: row.on ? "Switch off" : "Switch on", callback: () => { row.on = !row.on; changed(node); } },
    { content: "Schedule…", callback: (v, o, e) => schedulePrompt(node, row, e ?? event) },
    { content: "Whole run, no ramp", callback: () => { Object.assign(row, { start: 0, end: 1, end_strength: null }); changed(node); } },
    { content: "Info", disabled: row.lora == null, callback: () => showInfo(row.lora, event) },
    null,
    { content: "Remove", callback: () => removeRow(node, row) },
  ], { event, title: `Row ${index + 1}` });
}

function removeRow(node, row) {
  if (!node.cavRows.includes(row)) return;
  if (row.input != null) {  // its socket goes with it
    const slot = node.inputs.findIndex((i) => isSocket(i) && socketName(i) === row.input);
    if (slot >= 0 && node.inputs[slot].link != null) node.disconnectInput(slot);
  }
  setRows(node, node.cavRows.filter((r) => r !== row));
}
