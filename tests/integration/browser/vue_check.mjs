// Browser check with ComfyUI's Vue node renderer on (setting Comfy.VueNodes.Enabled, "Nodes 2.0"):
// loads the T2V workflow, reads which of the sampler's widgets the Vue node renders, queues it with
// the tiny-model overrides and waits for the sampler's player (a DOM widget) to fill; screenshot.
// Usage: node vue_check.mjs <url> <config.json> <results.json>
//   config: {workflow: uiGraph, overrides: {nodeId: {widget: value}}, timeout_ms, screenshot, user_data_dir}
import fs from "node:fs";
import { openComfy } from "./common.mjs";

const [url, configPath, resultsPath] = process.argv.slice(2);
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
const { context, page, logs } = await openComfy(url, config.user_data_dir);
const results = { logs };
try {
  results.vue = await page.evaluate(() => app.ui.settings.getSettingValue("Comfy.VueNodes.Enabled"));
  await page.evaluate(async (wf) => await app.loadGraphData(structuredClone(wf)), config.workflow);
  await page.waitForTimeout(1500);
  const sampler = await page.evaluate((overrides) => {
    for (const [id, values] of Object.entries(overrides)) {
      const node = app.graph.getNodeById(+id);
      for (const [k, v] of Object.entries(values)) node.widgets.find((w) => w.name === k).value = v;
    }
    return app.graph._nodes.find((n) => n.type === "WanStreamARSampler").id;
  }, config.overrides);
  // the Vue node of the sampler: its element, the labels it renders, the player inside it
  const dom = () =>
    page.evaluate((id) => {
      const el = document.querySelector(`[data-node-id="${id}"]`);
      const player = el?.querySelector(".wanstream-player");
      const box = player?.getBoundingClientRect();
      return {
        vue_node: !!el,
        text: el?.innerText ?? "",
        player_in_node: !!player,
        player_box: box ? [Math.round(box.width), Math.round(box.height)] : null,
      };
    }, sampler);
  results.before = await dom();
  await page.evaluate(async () => {
    window.__wanstreamEnd = null;
    for (const t of ["execution_success", "execution_error", "execution_interrupted"])
      (app.api ?? window.comfyAPI.api.api).addEventListener(t, () => (window.__wanstreamEnd ??= t));
    await app.queuePrompt(0, 1);
  });
  results.outcome = await page
    .waitForFunction(
      (id) => {
        const p = app.graph.getNodeById(id)?.wanStreamPlayer;
        const end = window.__wanstreamEnd;
        return end && p && (end !== "execution_success" || p.element.dataset.done === "true") ? end : null;
      },
      sampler,
      { timeout: config.timeout_ms ?? 240000, polling: 250 }
    )
    .then((h) => h.jsonValue())
    .catch((e) => `timeout: ${e.message}`);
  await page.waitForTimeout(1000);
  results.after = await dom();
  results.player = await page.evaluate((id) => {
    const p = app.graph.getNodeById(id).wanStreamPlayer;
    const ctx = p.canvas.getContext("2d");
    const d = ctx.getImageData(0, 0, p.canvas.width, p.canvas.height).data;
    let opaque = 0;
    for (let i = 3; i < d.length; i += 4) opaque += d[i] === 255 ? 1 : 0;
    return { ...p.element.dataset, drawn: opaque / (d.length / 4) };
  }, sampler);
  if (config.screenshot) await page.screenshot({ path: config.screenshot });
} finally {
  fs.writeFileSync(resultsPath, JSON.stringify(results, null, 2));
  await context.close();
}
