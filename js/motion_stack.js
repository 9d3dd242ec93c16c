// The Motion LoRA Stack node as rows: each row an on/off toggle, a motion LoRA (a file picked from
// the motion-LoRA folders, with its preview, or a connected motion_N socket), a strength and the
// part of the denoising run it acts on, with an optional ramp; "+ Add motion", toggle all, a row
// menu, the combined mix, and presets.
//
// The rows live in the node's JSON widget (stack_rows.widget), so saving, reloading, copying and
// the API prompt carry them; that widget is hidden and its value is read from and written to the
// rows drawn here. The rows are LiteGraph custom widgets (draw / mouse / computeSize): the canvas
// path every node uses in frontend 1.35, which redraws them with the graph and routes pointer
// events and drags to them, as the built-in number and combo widgets get them.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { folders, node_ids, routes, stack_rows, ui_keys } from "./constants.js";
import { COLOURS, PAD, chainMethod, drawShares } from "./node_hooks.js";

const MIN_WIDTH = 380;
const ROW_H = 44;
const LINE = 20;
const THUMB = 38;
const LABEL_W = 74; // the schedule's text at the right of the timeline
const SNAP = 0.05; // schedule handles move in steps of 5% of the run
const DRAG_PER_PX = 0.01; // strength change per pixel dragged
const MISSING = "#e05050";
const NEW_ROW = { on: true, lora: null, input: null, strength: 1.0, start: 0.0, end: 1.0, end_strength: null };

// ---- what the server knows: the files, their details and previews, the presets ----------------

const files = { names: null, listing: null, listingStatus: "", images: new Map(), loading: null };

function refreshFiles() {
  files.loading = (async () => {
    try {
      const response = await api.fetchApi(`/models/${folders.motion_loras}`);
      files.names = response.ok ? await response.json() : null;
    } catch {
      files.names = null;
    }
    files.listing = null;
    try {
      const response = await api.fetchApi(routes.motion_loras);
      files.listingStatus = response.ok ? "" : `HTTP ${response.status}`;
      if (response.ok) files.listing = new Map((await response.json()).map((entry) => [entry.name, entry]));
    } catch (error) {
      files.listingStatus = String(error);
    }
    app.graph?.setDirtyCanvas(true, false);
  })();
  return files.loading;
}

// A file's preview as an image the canvas draws (animated webp frames advance as the canvas redraws).
function previewImage(name) {
  if (!files.listing?.get(name)?.preview) return null;
  if (!files.images.has(name)) {
    const img = new Image();
    img.onload = () => app.graph?.setDirtyCanvas(true, false);
    img.src = api.apiURL(`${routes.preview}?name=${encodeURIComponent(name)}`);
    files.images.set(name, img);
  }
  const img = files.images.get(name);
  return img.complete && img.naturalWidth ? img : null;
}

const isMissing = (row) => row.lora != null && Array.isArray(files.names) && !files.names.includes(row.lora);

function notify(severity, summary, detail) {
  const toast = app.extensionManager?.toast;
  if (toast?.add) toast.add({ severity, summary, detail, life: 5000 });
  else (severity === "error" ? console.error : console.info)(`${summary}: ${detail}`);
}

// ---- rows ------------------------------------------------------------------------------------

const clampStrength = (v) => Math.min(stack_rows.strength_max, Math.max(stack_rows.strength_min, v));
const round = (v, step) => Math.round(v / step) * step;
const fixed = (v) => Number(v.toFixed(4));

function rowLabel(node, row) {
  if (row.input != null) {
    const origin = socketOrigin(node, row.input);
    return `⇠ ${row.input}${origin ? ` · ${origin.title}` : " (not connected)"}`;
  }
  if (row.lora == null) return "pick a motion LoRA…";
  return isMissing(row) ? `missing: ${row.lora}` : row.lora.replace(/\.(safetensors|pt|pth)$/, "");
}

// Each row's |strength| averaged over the whole run (as the server's share of the mix).
function presence(row) {
  if (!row.on || (row.lora == null && row.input == null)) return 0;
  const a = Math.abs(row.strength);
  const span = row.end - row.start;
  if (row.end_strength == null) return a * span;
  const b = Math.abs(row.end_strength);
  return (row.strength * row.end_strength >= 0 ? (a + b) / 2 : (a * a + b * b) / (2 * (a + b))) * span;
}

function shares(rows) {
  const total = rows.reduce((s, r) => s + presence(r), 0);
  return rows.map((r) => (total ? presence(r) / total : 0));
}

const percent = (v) => `${Math.round(v * 100)}%`;
function scheduleText(row) {
  const part = row.start === 0 && row.end === 1 ? "whole run" : `${percent(row.start)}–${percent(row.end)}`;
  return row.end_strength == null ? part : `${part} → ${row.end_strength.toFixed(2)}`;
}

// "20-80", or "20-80 > 0.5" for a ramp to 0.5 ("~ 0.5" too, as the CLI writes it): percent of the run.
function parseSchedule(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%?\s*[-–]\s*(\d+(?:\.\d+)?)\s*%?\s*(?:(?:>|→|->|~)\s*(-?\d+(?:\.\d+)?))?\s*$/.exec(text);
  if (!m) return null;
  const start = Number(m[1]) / 100;
  const end = Number(m[2]) / 100;
  if (!(start >= 0 && end <= 1 && start < end)) return null;
  return { start, end, end_strength: m[3] == null ? null : clampStrength(Number(m[3])) };
}

// ---- the growing motion_N sockets ----------------------------------------------------------------

const socketName = (input) => input.name.slice(stack_rows.autogrow.length + 1);
const isSocket = (input) => input.name.startsWith(`${stack_rows.autogrow}.`);

function linkOf(node, input) {
  if (input?.link == null || !node.graph) return null;
  const links = node.graph.links;
  return links?.get?.(input.link) ?? links?.[input.link] ?? null;
}

function socketOrigin(node, name) {
  const input = node.inputs?.find((i) => isSocket(i) && socketName(i) === name);
  const link = linkOf(node, input);
  if (!link) return null;
  const source = node.graph.getNodeById(link.origin_id);
  return { key: `${link.origin_id}:${link.origin_slot}`, title: source?.title ?? String(link.origin_id) };
}

// Keep one row per connected socket: a new link adds a row, a removed link removes its row, and a
// row follows its link when the sockets renumber (rows remember the link's origin).
function reconcileSockets(node, removeUnlinked) {
  const connected = (node.inputs ?? []).filter((i) => isSocket(i) && linkOf(node, i))
    .map((i) => ({ name: socketName(i), key: socketOrigin(node, socketName(i)).key }));
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

// ---- the node's widgets ------------------------------------------------------------------------

// After any edit: the node fits its rows, and the workflow counts as changed.
function changed(node) {
  const needed = node.computeSize();
  node.setSize([Math.max(node.size[0], needed[0], MIN_WIDTH), needed[1]]);
  if (node.graph) node.graph._version++;
  node.setDirtyCanvas(true, true);
}

function setRows(node, rows) {
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

function parseRows(text) {
  const rows = JSON.parse(text || "[]");
  if (!Array.isArray(rows)) throw new Error("not a list of rows");
  return rows.map((r) => ({ ...NEW_ROW, ...r }));
}

// Hit areas of a widget in node coordinates: [x, y, w, h] by part name.
const inside = (pos, [x, y, w, h]) => pos[0] >= x && pos[0] <= x + w && pos[1] >= y && pos[1] <= y + h;
const hitPart = (areas, pos) => Object.keys(areas).find((k) => inside(pos, areas[k]));

function rowWidget(index) {
  return {
    type: "custom", name: `cav_row_${index}`, cavRow: index, value: null, serialize: false,
    options: { serialize: false }, areas: {}, drag: null,
    computeSize: (width) => [width, ROW_H],
    draw(ctx, node, width, y) { drawRow(ctx, node, this, width, y); },
    mouse(event, pos, node) { return rowMouse(node, this, event, pos); },
  };
}

function drawRow(ctx, node, widget, width, y) {
  const row = node.cavRows[widget.cavRow];
  if (!row) return;
  const colour = COLOURS[widget.cavRow % COLOURS.length];
  const missing = isMissing(row);
  const right = width - PAD;
  const areas = {};
  ctx.save();
  ctx.fillStyle = LiteGraph.WIDGET_BGCOLOR;
  ctx.strokeStyle = missing ? MISSING : LiteGraph.WIDGET_OUTLINE_COLOR;
  ctx.beginPath();
  ctx.roundRect(PAD, y, width - 2 * PAD, ROW_H - 2, 6);
  ctx.fill();
  ctx.stroke();
  ctx.font = "12px sans-serif";
  ctx.textBaseline = "middle";
  // toggle
  areas.toggle = [PAD, y, 30, LINE];
  ctx.fillStyle = row.on ? colour : "#555";
  ctx.beginPath();
  ctx.roundRect(PAD + 6, y + 5, 20, 11, 6);
  ctx.fill();
  ctx.fillStyle = "#eee";
  ctx.beginPath();
  ctx.arc(row.on ? PAD + 20 : PAD + 12, y + 10.5, 4, 0, 2 * Math.PI);
  ctx.fill();
  if (!row.on) ctx.globalAlpha *= 0.45;
  let x = PAD + 32;
  const img = row.lora != null && !missing ? previewImage(row.lora) : null;
  if (img) {
    ctx.drawImage(img, x, y + 2, THUMB, THUMB);
    areas.thumb = [x, y, THUMB, ROW_H];
    x += THUMB + 6;
  }
  // strength ◀ value ▶ and the menu, right-aligned on the first line
  areas.menu = [right - 18, y, 18, LINE];
  areas.inc = [right - 34, y, 14, LINE];
  areas.value = [right - 78, y, 44, LINE];
  areas.dec = [right - 92, y, 14, LINE];
  ctx.fillStyle = LiteGraph.WIDGET_TEXT_COLOR;
  ctx.textAlign = "center";
  ctx.fillText("⋮", right - 9, y + LINE / 2);
  ctx.fillText("◀", right - 85, y + LINE / 2);
  ctx.fillText("▶", right - 27, y + LINE / 2);
  ctx.fillText(row.strength.toFixed(2), right - 56, y + LINE / 2);
  const share = shares(node.cavRows)[widget.cavRow];
  ctx.textAlign = "right";
  ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
  ctx.fillText(percent(share), right - 96, y + LINE / 2);
  // the motion
  const nameRight = right - 96 - ctx.measureText("100%").width - 6;
  areas.name = [x, y, nameRight - x, LINE];
  ctx.textAlign = "left";
  ctx.fillStyle = missing ? MISSING : row.lora == null && row.input == null ? "#888" : LiteGraph.WIDGET_TEXT_COLOR;
  ctx.fillText(fitText(ctx, rowLabel(node, row), nameRight - x), x, y + LINE / 2);
  // the timeline: the part of the run the row acts on, its height the strength along it
  const trackLeft = x;
  const trackRight = right - LABEL_W;
  const top = y + LINE + 2;
  const height = ROW_H - LINE - 8;
  areas.track = [trackLeft - 4, top - 2, trackRight - trackLeft + 8, height + 4];
  areas.schedule = [trackRight + 4, top - 2, LABEL_W - 4, height + 4];
  ctx.fillStyle = "#2a2a2a";
  ctx.fillRect(trackLeft, top, trackRight - trackLeft, height);
  const at = (f) => trackLeft + f * (trackRight - trackLeft);
  const h = (s) => Math.max(2, (Math.abs(s) / stack_rows.strength_max) * height);
  const bottom = top + height;
  ctx.fillStyle = colour;
  ctx.beginPath();
  ctx.moveTo(at(row.start), bottom);
  ctx.lineTo(at(row.start), bottom - h(row.strength));
  ctx.lineTo(at(row.end), bottom - h(row.end_strength ?? row.strength));
  ctx.lineTo(at(row.end), bottom);
  ctx.fill();
  ctx.fillStyle = "#eee";
  ctx.fillRect(at(row.start) - 1, top - 1, 2, height + 2);
  ctx.fillRect(at(row.end) - 1, top - 1, 2, height + 2);
  ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
  ctx.font = "10px sans-serif";
  ctx.fillText(fitText(ctx, scheduleText(row), LABEL_W - 6), trackRight + 6, top + height / 2);
  ctx.restore();
  widget.areas = areas;
  widget.track = [trackLeft, trackRight];
}

function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let cut = text;
  while (cut.length > 1 && ctx.measureText(`${cut}…`).width > width) cut = cut.slice(0, -1);
  return `${cut}…`;
}

function rowMouse(node, widget, event, pos) {
  const row = node.cavRows[widget.cavRow];
  if (!row) return false;
  const [left, right] = widget.track ?? [0, 1];
  const fraction = () => Math.min(1, Math.max(0, round((pos[0] - left) / (right - left), SNAP)));
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
    changed(node);
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
    changed(node);
    return true;
  }
  if (event.type === "pointerup") {
    widget.drag = null;
    if (hitPart(widget.areas, pos) !== drag.part) return true;
    if (drag.part === "value" && !drag.moved) {
      app.canvas.prompt("Strength", row.strength, (v) => {
        const value = Number(v);
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
  if (handle === "start") row.start = fixed(Math.min(f, row.end - SNAP));
  else row.end = fixed(Math.max(f, row.start + SNAP));
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

// ---- menus -----------------------------------------------------------------------------------

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function fileItem(name, onPick) {
  const base = name.split("/").pop();
  const preview = files.listing?.get(name)?.preview;
  const img = preview ? `<img src="${escapeHtml(api.apiURL(`${routes.preview}?name=${encodeURIComponent(name)}`))}" ` +
    `style="width:32px;height:32px;object-fit:cover;vertical-align:middle;margin-right:6px">` : "";
  return { content: base, title: `${img}${escapeHtml(base)}`, callback: () => onPick(name) };
}

// The files of the motion-LoRA folders, subfolders as submenus.
function fileTree(names, onPick) {
  const root = { dirs: new Map(), files: [] };
  for (const name of names) {
    const parts = name.split("/");
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      if (!dir.dirs.has(part)) dir.dirs.set(part, { dirs: new Map(), files: [] });
      dir = dir.dirs.get(part);
    }
    dir.files.push(name);
  }
  const items = (dir) => [
    ...[...dir.dirs.keys()].sort().map((d) => ({
      content: d, title: `${escapeHtml(d)} ▸`, has_submenu: true, submenu: { options: items(dir.dirs.get(d)) },
    })),
    ...dir.files.map((f) => fileItem(f, onPick)),
  ];
  return items(root);
}

async function fileMenu(event, onPick) {
  await refreshFiles();
  const names = files.names ?? [];
  const options = names.length ? fileTree(names, onPick)
    : [{ content: "no motion LoRAs in the folders", disabled: true }];
  new LiteGraph.ContextMenu(options, { event, title: "Motion LoRA" });
}

function rowMenu(node, index, event) {
  const rows = node.cavRows;
  const row = rows[index];
  const move = (to) => {
    const next = rows.slice();
    next.splice(to, 0, next.splice(index, 1)[0]);
    setRows(node, next);
  };
  new LiteGraph.ContextMenu([
    { content: "Move up", disabled: index === 0, callback: () => move(index - 1) },
    { content: "Move down", disabled: index === rows.length - 1, callback: () => move(index + 1) },
    { content: row.on ? "Switch off" : "Switch on", callback: () => { row.on = !row.on; changed(node); } },
    { content: "Schedule…", callback: (v, o, e) => schedulePrompt(node, row, e ?? event) },
    { content: "Whole run, no ramp", callback: () => { Object.assign(row, { start: 0, end: 1, end_strength: null }); changed(node); } },
    { content: "Info", disabled: row.lora == null, callback: () => showInfo(row.lora, event) },
    null,
    { content: "Remove", callback: () => removeRow(node, index) },
  ], { event, title: `Row ${index + 1}` });
}

function removeRow(node, index) {
  const row = node.cavRows[index];
  if (row.input != null) {  // its socket goes with it
    const slot = node.inputs.findIndex((i) => isSocket(i) && socketName(i) === row.input);
    if (slot >= 0 && node.inputs[slot].link != null) node.disconnectInput(slot);
  }
  setRows(node, node.cavRows.filter((r) => r !== row));
}

// What the listing route says of a file, as the info box shows it.
const INFO_LINES = [
  ["base", (i) => i.base], ["caption", (i) => i.caption], ["steps", (i) => i.steps], ["rank", (i) => i.rank],
  ["layers adapted", (i) => i.layers == null ? null : `${i.layers}${i.layer_kinds?.length ? ` (${i.layer_kinds.join(", ")})` : ""}`],
  ["recipe", (i) => i.recipe], ["absorber", (i) => i.absorber],
];

function showInfo(name, event) {
  document.querySelector(".cav-stack-info")?.remove();
  const box = document.createElement("div");
  box.className = "cav-stack-info";
  Object.assign(box.style, {
    position: "fixed", left: `${event.clientX}px`, top: `${event.clientY}px`, zIndex: 10000, maxWidth: "420px",
    background: "#222", color: "#ddd", border: "1px solid #555", borderRadius: "6px", padding: "8px 10px",
    font: "12px sans-serif", whiteSpace: "pre-wrap",
  });
  const title = document.createElement("b");
  title.textContent = name;
  const body = document.createElement("div");
  const entry = files.listing?.get(name);
  if (!files.listing) body.textContent = `No details: the pack's listing route did not answer (${files.listingStatus}).`;
  else if (!entry) body.textContent = "No details: the file is not in the motion-LoRA folders.";
  else if (entry.error) body.textContent = entry.error;
  else {
    const info = entry.info ?? {};
    body.textContent = INFO_LINES.map(([label, value]) => [label, value(info)]).filter(([, v]) => v != null)
      .map(([label, v]) => `${label}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("\n");
  }
  const close = document.createElement("button");
  close.textContent = "Close";
  close.onclick = () => box.remove();
  box.append(title, body, close);
  document.body.append(box);
}

// ---- presets ---------------------------------------------------------------------------------

async function answer(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
}

async function savePreset(node, name) {
  const rows = node.cavRows.filter((r) => r.input == null && r.lora != null);
  try {
    await answer(await api.fetchApi(routes.presets, { method: "POST", body: JSON.stringify({ name, rows }),
      headers: { "Content-Type": "application/json" } }));
    const left = node.cavRows.length - rows.length;
    notify("success", "Preset saved", `${name}: ${rows.length} rows` + (left ? ` (${left} socket or empty rows left out)` : ""));
  } catch (error) {
    notify("error", "Preset not saved", String(error.message ?? error));
  }
}

async function loadPreset(node, name) {
  try {
    const preset = await answer(await api.fetchApi(routes.preset.replace("{name}", encodeURIComponent(name))));
    setRows(node, [...preset.rows.map((r) => ({ ...NEW_ROW, ...r })), ...node.cavRows.filter((r) => r.input != null)]);
  } catch (error) {
    notify("error", "Preset not loaded", String(error.message ?? error));
  }
}

async function presetMenuOptions(node) {
  let presets = [];
  try {
    presets = await answer(await api.fetchApi(routes.presets));
  } catch (error) {
    presets = [{ name: "(presets unavailable)", error: String(error.message ?? error) }];
  }
  return [
    { content: "Save rows as preset…", callback: (v, o, e) => app.canvas.prompt("Preset name", "",
      (name) => savePreset(node, String(name).trim()), e) },
    null,
    ...(presets.length ? presets.map((p) => ({
      content: p.error ? `${p.name} (unreadable)` : `${p.name} (${p.rows} rows)`, disabled: !!p.error,
      title: escapeHtml(p.error ? `${p.name}: ${p.error}` : `Load ${p.name} (${p.rows} rows)`),
      callback: () => loadPreset(node, p.name),
    })) : [{ content: "no presets saved yet", disabled: true }]),
  ];
}

async function presetMenu(node, event) {
  new LiteGraph.ContextMenu(await presetMenuOptions(node), { event, title: "Stack presets" });
}

// ---- header, "+ Add motion" and the mix ----------------------------------------------------------

function headerWidget() {
  return {
    type: "custom", name: "cav_header", value: null, serialize: false, options: { serialize: false }, areas: {},
    computeSize: (width) => [width, LINE],
    draw(ctx, node, width, y) {
      const rows = node.cavRows;
      const allOn = rows.length > 0 && rows.every((r) => r.on);
      this.areas = { toggle: [PAD, y, 90, LINE], presets: [width - PAD - 70, y, 70, LINE] };
      ctx.save();
      ctx.font = "11px sans-serif";
      ctx.textBaseline = "middle";
      ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
      ctx.fillText(`${allOn ? "☑" : "☐"} toggle all`, PAD + 4, y + LINE / 2);
      ctx.textAlign = "right";
      ctx.fillText("presets ▾", width - PAD - 2, y + LINE / 2);
      if (node.cavRowsError) {
        ctx.fillStyle = MISSING;
        ctx.textAlign = "left";
        ctx.fillText(fitText(ctx, `rows: ${node.cavRowsError}`, width - 200), PAD + 100, y + LINE / 2);
      }
      ctx.restore();
    },
    mouse(event, pos, node) {
      if (event.type !== "pointerdown") return false;
      const part = hitPart(this.areas, pos);
      if (part === "toggle") {
        const on = !node.cavRows.every((r) => r.on);
        node.cavRows.forEach((r) => { r.on = on; });
        changed(node);
      } else if (part === "presets") {
        presetMenu(node, event);
      }
      return true;
    },
  };
}

function addButton() {
  return {
    type: "custom", name: "cav_add_motion", value: null, serialize: false, options: { serialize: false },
    computeSize: (width) => [width, 24],
    draw(ctx, node, width, y) {
      ctx.save();
      ctx.fillStyle = LiteGraph.WIDGET_BGCOLOR;
      ctx.strokeStyle = LiteGraph.WIDGET_OUTLINE_COLOR;
      ctx.beginPath();
      ctx.roundRect(PAD, y, width - 2 * PAD, 22, 6);
      ctx.fill();
      ctx.stroke();
      ctx.fillStyle = LiteGraph.WIDGET_TEXT_COLOR;
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("+ Add motion", width / 2, y + 11);
      ctx.restore();
    },
    mouse(event, pos, node) {
      if (event.type !== "pointerup") return true;
      const row = { ...NEW_ROW };
      setRows(node, [...node.cavRows, row]);
      fileMenu(event, (name) => { row.lora = name; changed(node); });
      return true;
    },
  };
}

function mixWidget() {
  return {
    type: "custom", name: "cav_mix", value: null, serialize: false, options: { serialize: false },
    computeSize: (width) => [width, 26],
    draw(ctx, node, width, y) {
      const own = shares(node.cavRows);
      const upstream = Math.max(0, (node.cavStack?.length ?? 0) - own.filter((s) => s > 0).length);
      ctx.save();
      drawShares(ctx, PAD, y + 2, width - 2 * PAD, 8,
        own.map((share, i) => ({ share, colour: COLOURS[i % COLOURS.length] })));
      ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR;
      ctx.font = "10px sans-serif";
      ctx.textBaseline = "middle";
      ctx.fillText(`combined mix${upstream ? `, after ${upstream} from the upstream stack` : ""}`, PAD, y + 18);
      ctx.restore();
    },
  };
}

// ---- the node type -----------------------------------------------------------------------------

function setUp(node) {
  node.cavRows = [];
  node.cavOrigins = new WeakMap(); // row -> "origin node:slot" of its socket's link
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
