// The Motion LoRA Stack's widgets around its rows: the header (toggle all, presets ▾), "+ Add
// motion" and the combined mix.
import { COLOURS, PAD, drawShares } from "./node_hooks.js";
import { LINE, MISSING, fitText, hitPart } from "./stack_draw.js";
import { fileMenu } from "./stack_menus.js";
import { NEW_ROW, shares } from "./stack_model.js";
import { presetMenu } from "./stack_presets.js";
import { changed, setRows } from "./stack_row_widgets.js";

export function headerWidget() {
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

export function addButton() {
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

export function mixWidget() {
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
