// Wan Stream: widgets kept only for saved workflows (marked `advanced` in the node definition, see
// nodes/legacy_inputs.py) are hidden while they hold their default value. Their place and value stay
// (saved `widgets_values` are positional and the value still goes to the server); a saved workflow
// that set one to something else shows it. Front ends that implement `advanced` themselves (the
// widget carries `advanced: true`) are left to do it their way ("Show Advanced").
import { app } from "../../scripts/app.js";

const PACK_PREFIX = "WanStream";

function legacySpecs(nodeData) {
  const specs = {};
  for (const group of ["required", "optional"]) {
    for (const [name, spec] of Object.entries(nodeData?.input?.[group] ?? {})) {
      const options = Array.isArray(spec) ? spec[1] : null;
      if (options?.advanced) specs[name] = options;
    }
  }
  return specs;
}

function defaultOf(options, widget) {
  if (options.default !== undefined) return options.default;
  return Array.isArray(widget.options?.values) ? widget.options.values[0] : undefined;
}

function updateLegacyWidgets(node, specs) {
  let changed = false;
  for (const widget of node.widgets ?? []) {
    const options = specs[widget.name];
    if (!options || widget.advanced === true) continue; // native support: the front end decides
    const linked = node.inputs?.some((i) => i.widget?.name === widget.name && i.link != null);
    const hide = !linked && widget.value === defaultOf(options, widget);
    if (!!widget.hidden !== hide) changed = true;
    widget.hidden = hide; // the canvas renderer
    widget.options ??= {};
    widget.options.hidden = hide; // the Vue node renderer
    if (hide && !widget.wanStreamSize) {
      widget.wanStreamSize = { computeSize: widget.computeSize }; // no room in front ends that lay it out
      widget.computeSize = () => [0, -4];
    } else if (!hide && widget.wanStreamSize) {
      widget.computeSize = widget.wanStreamSize.computeSize;
      delete widget.wanStreamSize;
    }
  }
  if (changed) {
    const size = node.computeSize?.();
    if (size) node.setSize([Math.max(node.size[0], size[0]), size[1]]);
    node.setDirtyCanvas?.(true, true);
  }
}

app.registerExtension({
  name: "WanStream.LegacyWidgets",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith(PACK_PREFIX)) return;
    const specs = legacySpecs(nodeData);
    if (!Object.keys(specs).length) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      updateLegacyWidgets(this, specs);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      updateLegacyWidgets(this, specs); // a saved workflow's values are set now
      return result;
    };
  },
});
