// Browser check of the live stream (Debian chromium, headless, playwright-core): loads the live UI
// workflow, converts it to its API prompt, adds a SaveLatent of the Live Sampler's output, queues it,
// waits for frames in the player, types a prompt + Apply, then a blended one, then Stop; records the
// player's counters (frames received / shown, latency from the server sending a chunk to its first
// frame on the canvas) and the prompt id. With config.export_api set, instead builds the UI graph
// from that API prompt (app.loadApiJson) and writes app.graph.serialize() to config.export_to.
// Usage: node live_check.mjs <url> <config.json> <results.json>
import fs from "node:fs";
import { openComfy } from "./common.mjs";

const [url, configPath, resultsPath] = process.argv.slice(2);
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
const results = { logs: [], steps: [] };
const { context, page, logs } = await openComfy(url, config.user_data_dir);
const player = (key) => page.evaluate(({ id, key }) => app.graph.getNodeById(id).wanStreamLive.element.dataset[key], { id: config.sampler, key });
const waitFor = (fn, arg, timeout = 120000) => page.waitForFunction(fn, arg, { timeout, polling: 100 });
const dataset = (id) => page.evaluate((id) => ({ ...app.graph.getNodeById(id).wanStreamLive.element.dataset }), id);

try {
  if (config.export_api) {
    const ui = await page.evaluate(async (api) => {
      app.loadApiJson(api, "live");
      await new Promise((r) => setTimeout(r, 500));
      for (const node of app.graph._nodes) {
        const ctl = node.widgets?.find((w) => w.name === "control_after_generate");
        if (ctl) ctl.value = "fixed";
      }
      return app.graph.serialize();
    }, config.export_api);
    fs.writeFileSync(config.export_to, JSON.stringify(ui, null, 2) + "\n");
  } else {
    const id = config.sampler;
    results.loaded = await page.evaluate(async ({ wf, overrides }) => {
      window.__events = [];
      for (const t of ["execution_success", "execution_error", "execution_interrupted"])
        (app.api ?? window.comfyAPI.api.api).addEventListener(t, (e) => window.__events.push(t));
      const missing = [...new Set(wf.nodes.map((n) => n.type))].filter((t) => !LiteGraph.registered_node_types[t]);
      await app.loadGraphData(structuredClone(wf));
      const api = (await app.graphToPrompt()).output;
      for (const [nid, values] of Object.entries(overrides)) {
        const node = app.graph.getNodeById(+nid);
        for (const [k, v] of Object.entries(values)) node.widgets.find((w) => w.name === k).value = v;
      }
      return { missing, api };
    }, { wf: config.workflow, overrides: config.overrides });
    // keep the sampler's latent too (a core node, added like a user would)
    await page.evaluate(({ id, prefix }) => {
      const save = LiteGraph.createNode("SaveLatent");
      app.graph.add(save);
      save.widgets.find((w) => w.name === "filename_prefix").value = prefix;
      app.graph.getNodeById(id).connect(0, save, 0);
    }, { id, prefix: config.latent_prefix });
    await page.evaluate(() => app.queuePrompt(0, 1));
    await waitFor((id) => +app.graph.getNodeById(id).wanStreamLive.element.dataset.chunks >= 2, id);
    results.steps.push({ at: "2 chunks", ...(await dataset(id)) });
    // a new prompt, typed and applied from the player
    const root = `.wanstream-live`;
    await page.fill(`${root} textarea[data-role=prompt]`, config.prompts[0]);
    await page.fill(`${root} input[data-role=transition]`, "0");
    await page.click(`${root} button[data-action=prompt]`);
    await waitFor((id) => app.graph.getNodeById(id).wanStreamLive.element.dataset.appliesFrom !== undefined, id);
    const first = +(await player("appliesFrom"));
    await waitFor(({ id, n }) => +app.graph.getNodeById(id).wanStreamLive.element.dataset.chunks >= n, { id, n: first + 2 });
    results.steps.push({ at: "first prompt", ...(await dataset(id)) });
    // a blended transition over 2 chunks
    await page.fill(`${root} textarea[data-role=prompt]`, config.prompts[1]);
    await page.fill(`${root} input[data-role=transition]`, "2");
    await page.click(`${root} button[data-action=prompt]`);
    await waitFor(({ id, first }) => +app.graph.getNodeById(id).wanStreamLive.element.dataset.appliesFrom !== first, { id, first });
    const second = +(await player("appliesFrom"));
    await waitFor(({ id, n }) => +app.graph.getNodeById(id).wanStreamLive.element.dataset.chunks >= n, { id, n: second + 3 });
    results.steps.push({ at: "blend", ...(await dataset(id)) });
    await page.click(`${root} button[data-action=stop]`);
    await waitFor((id) => app.graph.getNodeById(id).wanStreamLive.element.dataset.ended === "true", id);
    await waitFor(() => window.__events.length > 0, null);
    // the player plays out its buffer (catch-up playback: a backlog of hundreds of frames takes seconds)
    await waitFor((id) => {
      const d = app.graph.getNodeById(id).wanStreamLive.element.dataset;
      return +d.shown + +d.dropped === +d.received;
    }, id, 90000);
    results.final = await dataset(id);
    results.events = await page.evaluate(() => window.__events);
    results.first_applies = first;
    results.second_applies = second;
    results.drawn = await page.evaluate((id) => {
      const c = app.graph.getNodeById(id).wanStreamLive.canvas;
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let opaque = 0;
      for (let i = 3; i < d.length; i += 4) opaque += d[i] === 255 ? 1 : 0;
      return opaque / (d.length / 4);
    }, id);
    if (config.screenshot) await page.screenshot({ path: config.screenshot });
  }
} finally {
  results.logs = logs.filter((l) => /error|warn|wanstream/i.test(l) && !/Failed to load resource|ERR_FAILED/.test(l)).slice(0, 200);
  fs.writeFileSync(resultsPath, JSON.stringify(results, null, 2));
  await context.close();
}
