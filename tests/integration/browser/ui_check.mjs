// Browser check of the pack in ComfyUI's real front end (Debian chromium, headless, playwright-core).
// 1. every UI workflow loads with no missing node types and converts (app.graphToPrompt) to an API
//    prompt, written to the results file for the Python test to compare with the API twin;
// 2. optionally queues one workflow from the UI (with widget overrides for tiny models) and waits for
//    the sampler node's player to show the streamed preview frames; takes a screenshot;
// 3. optionally opens each of the pack's templates from the template browser (as a user does: the
//    Templates dialog, the pack's category, the template's card), notes every failed HTTP request and
//    console error meanwhile and whether the card's thumbnail came, queues the loaded graph (with
//    the tiny-model overrides) and waits for the sampler node's player to fill.
// Usage: node ui_check.mjs <url> <config.json> <results.json>
//   config: {workflows: {name: uiGraph}, run: {name, overrides: {nodeId: {widget: value}}, timeout_ms},
//            templates: {pack, names, overrides: {name: {nodeId: {widget: value}}}, timeout_ms},
//            screenshot, user_data_dir}
import fs from "node:fs";
import { openComfy } from "./common.mjs";

const [url, configPath, resultsPath] = process.argv.slice(2);
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
const results = { workflows: {}, run: null, templates: {}, logs: [] };
const { context, page, logs, failed } = await openComfy(url, config.user_data_dir);

// set widget values of the loaded graph: {nodeId: {widget: value}}
const setWidgets = (overrides) =>
  page.evaluate((overrides) => {
    for (const [id, values] of Object.entries(overrides)) {
      const node = app.graph.getNodeById(+id);
      for (const [k, v] of Object.entries(values)) {
        const w = node.widgets.find((w) => w.name === k);
        if (!w) throw new Error(`node ${id} has no widget ${k}`);
        w.value = v;
      }
    }
  }, overrides);

// queue the loaded graph; -> the first end event's type once the sampler's player is done (or failed)
async function queueAndWaitForPlayer(timeout_ms) {
  const sampler = await page.evaluate(async () => {
    window.__wanstreamEvents = [];
    window.__wanstreamListening ??= (() => {
      for (const t of ["execution_start", "execution_success", "execution_error", "execution_interrupted"])
        (app.api ?? window.comfyAPI.api.api).addEventListener(t, (e) => window.__wanstreamEvents?.push({ type: t, detail: e.detail }));
      return true;
    })();
    await app.queuePrompt(0, 1);
    return app.graph._nodes.find((n) => n.type === "WanStreamARSampler").id;
  });
  const outcome = await page
    .waitForFunction(
      (id) => {
        const ev = window.__wanstreamEvents.find((e) => e.type !== "execution_start");
        const p = app.graph.getNodeById(id)?.wanStreamPlayer;
        return ev && p && (ev.type !== "execution_success" || p.element.dataset.done === "true") ? ev.type : null;
      },
      sampler,
      { timeout: timeout_ms ?? 300000, polling: 250 }
    )
    .then((h) => h.jsonValue())
    .catch((e) => `timeout: ${e.message}`);
  return { sampler, outcome };
}

try {
  for (const [name, wf] of Object.entries(config.workflows)) {
    results.workflows[name] = await page.evaluate(async (wf) => {
      const wanted = [...new Set(wf.nodes.map((n) => n.type))];
      const missing = wanted.filter((t) => !LiteGraph.registered_node_types[t]);
      await app.loadGraphData(structuredClone(wf));
      const loaded = app.graph._nodes.map((n) => ({ id: n.id, type: n.type, errors: !!n.has_errors }));
      const prompt = await app.graphToPrompt();
      return { missing, loaded, api: prompt.output };
    }, wf);
  }

  if (config.run) {
    const { name, overrides, timeout_ms } = config.run;
    await page.evaluate(async (wf) => await app.loadGraphData(structuredClone(wf)), config.workflows[name]);
    await setWidgets(overrides);
    const { sampler, outcome: done } = await queueAndWaitForPlayer(timeout_ms);
    await page.waitForTimeout(1500); // let the player draw a few frames
    // bring the sampler node into view for the screenshot
    await page.evaluate((id) => {
      const node = app.graph.getNodeById(id);
      const canvas = app.canvas;
      canvas.ds.scale = 1;
      canvas.ds.offset = [-node.pos[0] + 420, -node.pos[1] + 120];
      canvas.setDirty(true, true);
    }, sampler);
    await page.waitForTimeout(800);
    results.run = await page.evaluate(
      ({ id, done }) => {
        const p = app.graph.getNodeById(id).wanStreamPlayer;
        return {
          outcome: done,
          events: window.__wanstreamEvents.map((e) => ({ type: e.type, message: e.detail?.exception_message })),
          player: { ...p.element.dataset },
          status: p.status.textContent,
          canvas: [p.canvas.width, p.canvas.height],
          // share of the player canvas covered by a drawn frame (opaque JPEG pixels; a blank canvas is 0)
          drawn: (() => {
            const ctx = p.canvas.getContext("2d");
            const d = ctx.getImageData(0, 0, p.canvas.width, p.canvas.height).data;
            let opaque = 0;
            for (let i = 3; i < d.length; i += 4) opaque += d[i] === 255 ? 1 : 0;
            return opaque / (d.length / 4);
          })(),
        };
      },
      { id: sampler, done }
    );
    if (config.screenshot) await page.screenshot({ path: config.screenshot });
  }

  if (config.templates) {
    const { pack, names, overrides, timeout_ms } = config.templates;
    for (const name of names) {
      const [failedBefore, logsBefore] = [failed.length, logs.length];
      await page.evaluate(() => app.extensionManager.command.execute("Comfy.BrowseTemplates"));
      await page.getByText(pack, { exact: true }).first().click(); // the pack's category
      const card = page.locator(`[data-testid="template-workflow-${name}"]`);
      await card.waitFor({ timeout: 30000 });
      const thumbnail = await page
        .waitForFunction(
          (name) => {
            const img = document.querySelector(`[data-testid="template-workflow-${name}"] img`);
            return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;
          },
          name,
          { timeout: 30000 }
        )
        .then((h) => h.jsonValue())
        .catch(() => null);
      await card.click();
      await page.waitForFunction(() => !document.querySelector(".p-dialog"), null, { timeout: 30000 });
      await page.waitForTimeout(500);
      const loaded = await page.evaluate(() => app.graph._nodes.map((n) => ({ type: n.type, errors: !!n.has_errors })));
      const during = { failed: failed.slice(failedBefore), console: logs.slice(logsBefore).filter((l) => /^\[error\]|404/.test(l)) };
      await setWidgets(overrides[name] ?? {});
      const { sampler, outcome } = await queueAndWaitForPlayer(timeout_ms);
      const player = await page.evaluate((id) => ({ ...app.graph.getNodeById(id).wanStreamPlayer.element.dataset }), sampler);
      results.templates[name] = { thumbnail, loaded, ...during, outcome, player };
    }
  }
} finally {
  results.logs = logs.filter((l) => /error|warn|wanstream/i.test(l) && !/Failed to load resource|ERR_FAILED/.test(l)).slice(0, 200);
  fs.writeFileSync(resultsPath, JSON.stringify(results, null, 2));
  await context.close();
}
