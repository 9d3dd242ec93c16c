// A live loss curve on the training nodes, fed by the loss event (events.loss) they send each step.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { events, nodeIdsOf } from "./constants.js";
import { PAD, chainMethod, reserveHeight } from "./node_hooks.js";

const NODES = nodeIdsOf("train_absorber", "train_motion", "train_motion_lora_v1");
const CURVE = 64;
const MAX_POINTS = 4000;

const lossByNode = new Map(); // node id -> {stage, total, values}

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

function onLoss({ detail }) {
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
}

app.registerExtension({
  name: "customize_a_video.loss_curve",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    reserveHeight(nodeType, () => CURVE);
    chainMethod(nodeType, "onDrawForeground", function (ctx) {
      if (!this.flags?.collapsed) drawLoss(ctx, this, lossByNode.get(String(this.id)));
    });
  },

  setup() {
    if (events.loss) api.addEventListener(events.loss, onLoss);
  },
});
