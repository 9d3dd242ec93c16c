// What the server knows of the motion-LoRA files, for the Motion LoRA Stack's rows and menus: their
// names, their details and previews (the pack's listing route); and the toasts that tell the user.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { folders, routes } from "./constants.js";

export const files = { names: null, listing: null, listingStatus: "", images: new Map() };

export async function refreshFiles() {
  try {
    const response = await api.fetchApi(`/models/${folders.motion_loras}`);
    files.names = response.ok ? await response.json() : null;
  } catch {
    files.names = null;
  }
  // The old listing stays drawn until the new one is read (no flicker of the thumbnails).
  let listing = null;
  try {
    const response = await api.fetchApi(routes.motion_loras);
    files.listingStatus = response.ok ? "" : `HTTP ${response.status}`;
    if (response.ok) listing = new Map((await response.json()).map((entry) => [entry.name, entry]));
  } catch (error) {
    files.listingStatus = String(error);
  }
  files.listing = listing;
  // Previews that failed to load, or whose file's details changed (saved again), are read again.
  for (const [name, img] of files.images) {
    const seen = JSON.stringify(listing?.get(name) ?? null);
    if ((img.complete && !img.naturalWidth) || img.cavEntry !== seen) files.images.delete(name);
  }
  app.graph?.setDirtyCanvas(true, false);
}

// Where the server serves a file's preview; `fresh` adds a stamp so a re-saved file's new preview is read.
export const previewURL = (name, fresh = false) =>
  api.apiURL(`${routes.preview}?name=${encodeURIComponent(name)}` + (fresh ? `&v=${Date.now()}` : ""));

// A file's preview as an image the canvas draws (animated webp frames advance as the canvas redraws).
export function previewImage(name) {
  if (!files.listing?.get(name)?.preview) return null;
  if (!files.images.has(name)) {
    const img = new Image();
    img.cavEntry = JSON.stringify(files.listing.get(name));
    img.onload = () => app.graph?.setDirtyCanvas(true, false);
    img.src = previewURL(name, true);
    files.images.set(name, img);
  }
  const img = files.images.get(name);
  return img.complete && img.naturalWidth ? img : null;
}

export const isMissing = (row) => row.lora != null && Array.isArray(files.names) && !files.names.includes(row.lora);

export function notify(severity, summary, detail) {
  const toast = app.extensionManager?.toast;
  if (toast?.add) toast.add({ severity, summary, detail, life: 5000 });
  else (severity === "error" ? console.error : console.info)(`${summary}: ${detail}`);
}
