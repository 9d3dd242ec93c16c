// The names the pack's Python nodes and this frontend share: node ids by role, socket types,
// websocket events, the keys of the ui dicts nodes return, routes, folders and what a stack row
// may hold. Their one home is nodes/constants.py; nodes/routes.py serves it, and this module
// reads it once. The top-level await means every module importing this one has the names before
// any node is registered.
// When the route cannot be read the editor still works, only without the pack's drawings.
import { api } from "../../scripts/api.js";

const ROUTE = "/customize_a_video/constants"; // nodes/constants.py ROUTE

async function fetchShared() {
  try {
    const response = await api.fetchApi(ROUTE);
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    return await response.json();
  } catch (error) {
    console.error(`Customize-A-Video: could not read the pack's node ids and event names from ${ROUTE} ` +
      `(${error}); its strength bars and loss curves are off until the page is reloaded.`);
    return {};
  }
}

const shared = await fetchShared();

export const node_ids = Object.freeze({ ...shared.node_ids }); // role -> node id
export const socket_types = Object.freeze({ ...shared.socket_types }); // role -> socket type
export const events = Object.freeze({ ...shared.events }); // role -> websocket event name
export const ui_keys = Object.freeze({ ...shared.ui_keys }); // role -> key of a node's ui dict
export const routes = Object.freeze({ ...shared.routes }); // role -> the pack's other HTTP routes
export const folders = Object.freeze({ ...shared.folders }); // role -> folder_paths key (ComfyUI's /models/<key>)
export const stack_rows = Object.freeze({ ...shared.stack_rows }); // what a Motion LoRA Stack row may hold

// The node ids of these roles (empty when the names could not be read).
export function nodeIdsOf(...roles) {
  return new Set(roles.map((role) => node_ids[role]).filter(Boolean));
}
