// Motion LoRA Stack presets: the file rows saved under a name through the pack's preset routes, and
// loaded into any stack (replacing its file rows; its socket rows stay).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { routes } from "./constants.js";
import { notify } from "./stack_files.js";
import { escapeHtml } from "./stack_menus.js";
import { NEW_ROW } from "./stack_model.js";
import { setRows } from "./stack_row_widgets.js";

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

export async function presetMenu(node, event) {
  new LiteGraph.ContextMenu(await presetMenuOptions(node), { event, title: "Stack presets" });
}
