// What the pack's drawing extensions share: chaining onto a node type's methods, and reserving
// room below the widgets to draw in.

export const PAD = 8; // margin of everything drawn on a node

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
