// Drawing a Motion LoRA Stack row on the canvas, and where its parts are: the toggle, the preview,
// the motion, its share, the strength ◀ value ▶, the row menu ⋮, and the schedule's timeline.
import { stack_rows } from "./constants.js";
import { COLOURS, PAD } from "./node_hooks.js";
import { isMissing, previewImage } from "./stack_files.js";
import { percent, scheduleText, shares, socketOrigin } from "./stack_model.js";

export const ROW_H = 44;
export const LINE = 20;
const THUMB = 38;
const LABEL_W = 74; // the schedule's text at the right of the timeline
export const MISSING = "#e05050";

// Hit areas of a widget in node coordinates: [x, y, w, h] by part name.
const inside = (pos, [x, y, w, h]) => pos[0] >= x && pos[0] <= x + w && pos[1] >= y && pos[1] <= y + h;
export const hitPart = (areas, pos) => Object.keys(areas).find((k) => inside(pos, areas[k]));

export function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let cut = text;
  while (cut.length > 1 && ctx.measureText(`${cut}…`).width > width) cut = cut.slice(0, -1);
  return `${cut}…`;
}

function rowLabel(node, row) {
  if (row.input != null) {
    const origin = socketOrigin(node, row.input);
    return `⇠ ${row.input}${origin ? ` · ${origin.title}` : " (not connected)"}`;
  }
  if (row.lora == null) return "pick a motion LoRA…";
  return isMissing(row) ? `missing: ${row.lora}` : row.lora.replace(/\.(safetensors|pt|pth)$/, "");
}

// Draws the row widget's row and leaves its hit areas in widget.areas, its timeline in widget.track.
export function drawRow(ctx, node, widget, width, y) {
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
