// The Motion LoRA Stack's menus of files: the picker (the motion-LoRA folders, subfolders as
// submenus, each file with its preview) and the info box of a file.
import { files, previewURL, refreshFiles } from "./stack_files.js";

export const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function fileItem(name, onPick) {
  const base = name.split("/").pop();
  const preview = files.listing?.get(name)?.preview;
  const img = preview ? `<img src="${escapeHtml(previewURL(name))}" ` +
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

// Lists the files afresh, then opens the picker; onPick(name) gets the file picked.
export async function fileMenu(event, onPick) {
  await refreshFiles();
  const names = files.names ?? [];
  const options = names.length ? fileTree(names, onPick)
    : [{ content: "no motion LoRAs in the folders", disabled: true }];
  new LiteGraph.ContextMenu(options, { event, title: "Motion LoRA" });
}

// What the listing route says of a file, as the info box shows it.
const INFO_LINES = [
  ["base", (i) => i.base], ["caption", (i) => i.caption], ["steps", (i) => i.steps], ["rank", (i) => i.rank],
  ["layers adapted", (i) => i.layers == null ? null : `${i.layers}${i.layer_kinds?.length ? ` (${i.layer_kinds.join(", ")})` : ""}`],
  ["recipe", (i) => i.recipe], ["absorber", (i) => i.absorber],
];

export function showInfo(name, event) {
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
