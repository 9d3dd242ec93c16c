// Customize-A-Video frontend extension: the motion-LoRA mix on stack/loader nodes and a live
// loss curve on the training nodes (fed by the "cav.loss" websocket event the nodes send).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const STACK_NODES = new Set(["CAV_MotionLoraStack", "CAV_LoadMotionLora"]);
const TRAIN_NODES = new Set(["CAV_TrainAbsorber", "CAV_TrainMotionLora"]);
const COLOURS = ["#e0583c", "#3c78dc", "#3ca050", "#a04cbe", "#d8a020", "#20a8b0"];
const BAR = 10;
const GAP = 4;
const PAD = 8;
const CURVE = 64;
const MAX_POINTS = 4000;

const lossByNode = new Map(); // node id -> {stage, total, values}

// Strengths as set on the node now (before a run tells us the whole stack).
function entriesFromWidgets(node) {
  const widget = (name) => node.widgets?.find((w) => w.name === name);
  if (node.comfyClass === "CAV_LoadMotionLora") {
    const strength = widget("strength");
    return strength ? [{ name: String(widget("lora_name")?.value ?? "lora"), strength: Number(strength.value) }] : [];
  }
  const out = [];
  for (let i = 1; i <= 3; i++) {
    const input = node.inputs?.find((x) => x.name === `motion_lora_${i}`);
    const strength = widget(`strength_${i}`);
    if (strength && input?.link != null) out.push({ name: `motion_lora_${i}`, strength: Number(strength.value) });
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
  let x = PAD;
  entries.forEach((e, i) => {
    const w = (Math.abs(e.strength) / total) * width;
    ctx.fillStyle = COLOURS[i % COLOURS.length];
    ctx.fillRect(x, y, w, BAR);
    x += w;
  });
  ctx.fillStyle = "#aaa";
  ctx.fillText("combined mix", PAD, y + BAR + 7);
  ctx.restore();
}

function drawLoss(ctx, node, record) {
  if (!record?.values.length) return;
  const values = record.values;
  const width = node.size[0] - 2 * PAD;
  const top = node.size[1] - CURVE - 4;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi > lo ? hi - lo : 1;
  ctx.save();
  ctx.fillStyle = "#1e1e1e";
  ctx.fillRect(PAD, top, width, CURVE - 12);
  ctx.strokeStyle = "#e0583c";
  ctx.lineWidth = 1;
  ctx.beginPath();
  const n = Math.max(record.total, values.length, 2);
  values.forEach((v, i) => {
    const px = PAD + (i / (n - 1)) * width;
    const py = top + (CURVE - 14) * (1 - (v - lo) / span) + 1;
    if (i === 0) ctx.moveTo(px, py);
    else ctx.lineTo(px, py);
  });
  ctx.stroke();
  ctx.fillStyle = "#bbb";
  ctx.font = "10px sans-serif";
  ctx.fillText(`${record.stage} loss ${values[values.length - 1].toPrecision(3)}  step ${values.length}/${record.total}`,
    PAD, top + CURVE - 3);
  ctx.restore();
}

function reserveHeight(nodeType, extra) {
  const computeSize = nodeType.prototype.computeSize;
  nodeType.prototype.computeSize = function (out) {
    const size = computeSize.apply(this, arguments);
    size[1] += extra(this);
    return size;
  };
}

function chainMethod(nodeType, name, fn) {
  const original = nodeType.prototype[name];
  nodeType.prototype[name] = function () {
    const result = original?.apply(this, arguments);
    fn.apply(this, arguments);
    return result;
  };
}

app.registerExtension({
  name: "customize_a_video.ui",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (STACK_NODES.has(nodeData.name)) {
      // Room for three bars, or for the whole stack a run reported when it is longer.
      reserveHeight(nodeType, (node) => stackHeight(Math.max(3, node.cavStack?.length ?? 0)));
      chainMethod(nodeType, "onDrawForeground", function (ctx) {
        if (!this.flags?.collapsed) drawStack(ctx, this, stackEntries(this));
      });
      chainMethod(nodeType, "onExecuted", function (message) {
        if (Array.isArray(message?.cav_stack)) {
          this.cavStack = message.cav_stack;
          const needed = this.computeSize();
          if (needed[1] > this.size[1]) this.setSize([Math.max(this.size[0], needed[0]), needed[1]]);
          this.setDirtyCanvas(true, false);
        }
      });
    }
    if (TRAIN_NODES.has(nodeData.name)) {
      reserveHeight(nodeType, () => CURVE);
      chainMethod(nodeType, "onDrawForeground", function (ctx) {
        if (!this.flags?.collapsed) drawLoss(ctx, this, lossByNode.get(String(this.id)));
      });
    }
  },

  setup() {
    api.addEventListener("cav.loss", ({ detail }) => {
      if (!detail || detail.node == null) return;
      const id = String(detail.node);
      let record = lossByNode.get(id);
      if (!record || detail.step <= 1 || record.stage !== detail.stage) {
        record = { stage: detail.stage, total: detail.total, values: [] };
        lossByNode.set(id, record);
      }
      record.total = detail.total;
      if (record.values.length < MAX_POINTS) record.values.push(Number(detail.loss));
      app.graph?.setDirtyCanvas(true, false);
    });
  },
});
