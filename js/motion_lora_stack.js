// The motion-LoRA mix on the loader and the old 3-slot stack nodes: one bar per LoRA with its
// strength, and the combined mix (each LoRA's share of the summed |strength|). After a run the
// node reports its whole stack, upstream loaders included, under the ui key ui_keys.stack.
import { app } from "../../scripts/app.js";
import { node_ids, nodeIdsOf, ui_keys } from "./constants.js";
import { COLOURS, PAD, chainMethod, drawShares, reserveHeight } from "./node_hooks.js";

const NODES = nodeIdsOf("motion_lora_stack", "load_motion_lora");
const SLOT = /^motion_lora_(\d+)$/; // the stack's LoRA inputs; strength_N is the strength of motion_lora_N
const BAR = 10;
const GAP = 4;

// The stack's LoRA inputs as the node has them, in slot order: [{name, index}].
function loraSlots(node) {
  return (node.inputs ?? [])
    .map((input) => ({ input, match: SLOT.exec(input.name) }))
    .filter(({ match }) => match)
    .map(({ input, match }) => ({ input, index: Number(match[1]) }))
    .sort((a, b) => a.index - b.index);
}

// Strengths as set on the node now (before a run tells us the whole stack).
function entriesFromWidgets(node) {
  const widget = (name) => node.widgets?.find((w) => w.name === name);
  if (node.comfyClass === node_ids.load_motion_lora) {
    const strength = widget("strength");
    return strength ? [{ name: String(widget("lora_name")?.value ?? "lora"), strength: Number(strength.value) }] : [];
  }
  const out = [];
  for (const { input, index } of loraSlots(node)) {
    const strength = widget(`strength_${index}`);
    if (strength && input.link != null) out.push({ name: input.name, strength: Number(strength.value) });
  }
  return out;
}

function stackEntries(node) {
  // After a run the node reports the full stack (upstream loaders included); widgets may have
  // changed since, so the reported stack is used only while its own part still matches.
  const own = entriesFromWidgets(node);
  const reported = node.cavStack;
  if (reported?.length >= own.length) {
    const tail = reported.slice(reported.length - own.length);
    if (tail.every((e, i) => Math.abs(e.strength - own[i].strength) < 1e-9)) return reported;
  }
  return own;
}

function stackHeight(count) {
  return count ? PAD + (count + 1) * (BAR + GAP) + 14 : 0;
}

function drawStack(ctx, node, entries) {
  const height = stackHeight(entries.length);
  if (!height) return;
  const width = node.size[0] - 2 * PAD;
  let y = node.size[1] - height + PAD;
  const maxAbs = Math.max(2, ...entries.map((e) => Math.abs(e.strength)));
  const total = entries.reduce((s, e) => s + Math.abs(e.strength), 0) || 1;
  ctx.save();
  ctx.font = "10px sans-serif";
  ctx.textBaseline = "middle";
  entries.forEach((e, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const mid = PAD + width / 2;
    const w = (Math.abs(e.strength) / maxAbs) * (width / 2);
    ctx.fillStyle = "#2a2a2a";
    ctx.fillRect(PAD, y, width, BAR);
    ctx.fillStyle = colour;
    ctx.fillRect(e.strength >= 0 ? mid : mid - w, y, w, BAR);
    ctx.fillStyle = "#ddd";
    ctx.fillText(`${e.name.slice(0, 28)}  ${e.strength >= 0 ? "+" : ""}${e.strength.toFixed(2)}`, PAD + 3, y + BAR / 2);
    y += BAR + GAP;
  });
  // The combined mix: each LoRA's share of the summed |strength|.
  drawShares(ctx, PAD, y, width, BAR,
    entries.map((e, i) => ({ share: Math.abs(e.strength) / total, colour: COLOURS[i % COLOURS.length] })));
  ctx.fillStyle = "#aaa";
  ctx.fillText("combined mix", PAD, y + BAR + 7);
  ctx.restore();
}

app.registerExtension({
  name: "customize_a_video.motion_lora_stack",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    // Room for a bar per LoRA input (the loader's own one), or for the whole stack a run reported
    // when it is longer.
    reserveHeight(nodeType, (node) => stackHeight(Math.max(1, loraSlots(node).length, node.cavStack?.length ?? 0)));
    chainMethod(nodeType, "onDrawForeground", function (ctx) {
      if (!this.flags?.collapsed) drawStack(ctx, this, stackEntries(this));
    });
    chainMethod(nodeType, "onExecuted", function (message) {
      const reported = message?.[ui_keys.stack];
      if (Array.isArray(reported)) {
        this.cavStack = reported;
        const needed = this.computeSize();
        if (needed[1] > this.size[1]) this.setSize([Math.max(this.size[0], needed[0]), needed[1]]);
        this.setDirtyCanvas(true, false);
      }
    });
  },
});
