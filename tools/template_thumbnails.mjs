// Screenshots of each template graph in ComfyUI's real front end (headless Debian chromium via
// playwright-core): the graph as the template browser loads it, fitted to a 4:3 view with the
// front end's own chrome hidden (focus mode, no minimap / canvas menu / info), saved as
// <out>/<name>.png; plus a square crop around the Streaming AR Sampler of <icon_from> as <out>/icon.png.
// Usage: node template_thumbnails.mjs <url> <workflows dir> <user data dir> <out dir> <icon_from>
import fs from "node:fs";
import path from "node:path";
import { openComfy } from "../tests/integration/browser/common.mjs";

const [url, dir, userDir, out, iconFrom] = process.argv.slice(2);
const [W, H] = [1600, 1200];
const { context, page, logs } = await openComfy(url, userDir, { width: W, height: H });
await page.evaluate(async () => {
  // no minimap, canvas menu or canvas info (settings of front end 1.32; an unknown one is skipped)
  for (const id of ["Comfy.Minimap.Visible", "Comfy.Graph.CanvasMenu", "Comfy.Graph.CanvasInfo"])
    await app.extensionManager.setting.set(id, false).catch(() => {});
  // text at every zoom level (no low-detail rendering of the fitted graph)
  await app.extensionManager.setting.set("LiteGraph.Canvas.MinFontSizeForLOD", 1).catch(() => {});
  app.extensionManager.command.execute("Workspace.ToggleFocusMode");
});
await page.addStyleTag({ content: ".comfy-menu-hamburger { display: none !important; }" });
// the whole graph in view, with a margin (node sizes are known once the graph has been drawn)
const fit = (margin) => {
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  const nodes = app.graph._nodes;
  const x0 = Math.min(...nodes.map((n) => n.pos[0]));
  const y0 = Math.min(...nodes.map((n) => n.pos[1] - title));
  const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
  const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
  const [w, h] = [app.canvas.canvas.clientWidth, app.canvas.canvas.clientHeight];
  const ds = app.canvas.ds;
  ds.scale = Math.min((w - 2 * margin) / (x1 - x0), (h - 2 * margin) / (y1 - y0));
  ds.offset = [(w / ds.scale - (x1 - x0)) / 2 - x0, (h / ds.scale - (y1 - y0)) / 2 - y0];
  app.canvas.setDirty(true, true);
};
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  const name = file.slice(0, -".json".length);
  const wf = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8"));
  await page.evaluate(async (wf) => await app.loadGraphData(wf), wf);
  await page.waitForTimeout(800);
  await page.evaluate(fit, 24);
  await page.waitForTimeout(1200);
  await page.screenshot({ path: path.join(out, `${name}.png`) });
  console.log("shot", name);
  if (name === iconFrom) {
    const clip = await page.evaluate(([W, H]) => {
      const node = app.graph._nodes.find((n) => n.type === "WanStreamARSampler");
      const ds = app.canvas.ds;
      const title = LiteGraph.NODE_TITLE_HEIGHT;
      ds.scale = 380 / Math.max(node.size[0], node.size[1] + title); // the whole node in the square
      const [cx, cy] = [node.pos[0] + node.size[0] / 2, node.pos[1] + (node.size[1] - title) / 2];
      ds.offset = [W / 2 / ds.scale - cx, H / 2 / ds.scale - cy];
      app.canvas.setDirty(true, true);
      return { x: W / 2 - 200, y: H / 2 - 200, width: 400, height: 400 };
    }, [W, H]);
    await page.waitForTimeout(800);
    await page.screenshot({ path: path.join(out, "icon.png"), clip });
    console.log("shot icon");
  }
}
for (const l of logs) if (/error|warn/i.test(l) && /wanstream|wan_stream/i.test(l)) console.log(l.slice(0, 300));
await context.close();
