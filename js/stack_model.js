// A Motion LoRA Stack row as data: its fields and their bounds, its share of the mix, its schedule as
// text, the rows' JSON (the hidden rows widget's value), and the motion_N sockets socket rows take.
import { stack_rows } from "./constants.js";

export const NEW_ROW = { on: true, lora: null, input: null, strength: 1.0, start: 0.0, end: 1.0, end_strength: null };

export const clampStrength = (v) => Math.min(stack_rows.strength_max, Math.max(stack_rows.strength_min, v));
export const round = (v, step) => Math.round(v / step) * step;
export const fixed = (v) => Number(v.toFixed(4));

// Each row's |strength| averaged over the whole run (as the server's share of the mix).
function presence(row) {
  if (!row.on || (row.lora == null && row.input == null)) return 0;
  const a = Math.abs(row.strength);
  const span = row.end - row.start;
  if (row.end_strength == null) return a * span;
  const b = Math.abs(row.end_strength);
  return (row.strength * row.end_strength >= 0 ? (a + b) / 2 : (a * a + b * b) / (2 * (a + b))) * span;
}

export function shares(rows) {
  const total = rows.reduce((s, r) => s + presence(r), 0);
  return rows.map((r) => (total ? presence(r) / total : 0));
}

export const percent = (v) => `${Math.round(v * 100)}%`;
export function scheduleText(row) {
  const part = row.start === 0 && row.end === 1 ? "whole run" : `${percent(row.start)}–${percent(row.end)}`;
  return row.end_strength == null ? part : `${part} → ${row.end_strength.toFixed(2)}`;
}

// "20-80", or "20-80 > 0.5" for a ramp to 0.5 ("~ 0.5" too, as the CLI writes it): percent of the run.
export function parseSchedule(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%?\s*[-–]\s*(\d+(?:\.\d+)?)\s*%?\s*(?:(?:>|→|->|~)\s*(-?\d+(?:\.\d+)?))?\s*$/.exec(text);
  if (!m) return null;
  const start = Number(m[1]) / 100;
  const end = Number(m[2]) / 100;
  if (!(start >= 0 && end <= 1 && start < end)) return null;
  return { start, end, end_strength: m[3] == null ? null : clampStrength(Number(m[3])) };
}

export function parseRows(text) {
  const rows = JSON.parse(text || "[]");
  if (!Array.isArray(rows)) throw new Error("not a list of rows");
  return rows.map((r) => ({ ...NEW_ROW, ...r }));
}

// ---- the growing motion_N sockets ----------------------------------------------------------------

export const socketName = (input) => input.name.slice(stack_rows.autogrow.length + 1);
export const isSocket = (input) => input.name.startsWith(`${stack_rows.autogrow}.`);

function linkOf(node, input) {
  if (input?.link == null || !node.graph) return null;
  const links = node.graph.links;
  return links?.get?.(input.link) ?? links?.[input.link] ?? null;
}

export function socketOrigin(node, name) {
  const input = node.inputs?.find((i) => isSocket(i) && socketName(i) === name);
  const link = linkOf(node, input);
  if (!link) return null;
  const source = node.graph.getNodeById(link.origin_id);
  return { key: `${link.origin_id}:${link.origin_slot}`, title: source?.title ?? String(link.origin_id) };
}

// The connected sockets, each with the "origin node:slot" of its link.
export function connectedSockets(node) {
  return (node.inputs ?? []).filter((i) => isSocket(i) && linkOf(node, i))
    .map((i) => ({ name: socketName(i), key: socketOrigin(node, socketName(i)).key }));
}
