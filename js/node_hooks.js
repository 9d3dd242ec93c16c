// What the pack's drawing extensions share: chaining onto a node type's methods, and reserving
// room below the widgets to draw in.

export const PAD = 8; // margin of everything drawn on a node
export const COLOURS = ["#e0583c", "#3c78dc", "#3ca050", "#a04cbe", "#d8a020", "#20a8b0"]; // one per motion LoRA

// The combined mix as one bar: each entry ({share: 0..1, colour}) a segment as wide as its share.
export function drawShares(ctx, x, y, width, height, entries) {
  ctx.fillStyle = "#2a2a2a";
  ctx.fillRect(x, y, width, height);
  let at = x;
  for (const e of entries) {
    const w = e.share * width;
    ctx.fillStyle = e.colour;
    ctx.fillRect(at, y, w, height);
    at += w;
  }
}

// Call fn after the node type's own `name` method (if any), keeping that method's result.
export function chainMethod(nodeType, name, fn) {
  const original = nodeType.prototype[name];
  nodeType.prototype[name] = function () {
    const result = original?.apply(this, arguments);
    fn.apply(this, arguments);
    return result;
  };
}

// Make the node type's minimum size extra(node) pixels taller.
export function reserveHeight(nodeType, extra) {
  const computeSize = nodeType.prototype.computeSize;
  nodeType.prototype.computeSize = function (out) {
    const size = computeSize.apply(this, arguments);
    size[1] += extra(this);
    return size;
  };
}
