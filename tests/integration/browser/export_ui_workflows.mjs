// Dev tool: builds each UI workflow (example_workflows/<name>.json) from its API twin (example_workflows/api/<name>.json)
// in the real front end (app.loadApiJson), then saves app.graph.serialize(). Review the layout after.
// Usage: node export_ui_workflows.mjs http://127.0.0.1:<port>/ <workflows dir> <user data dir>
import fs from "node:fs";
import path from "node:path";
import { openComfy } from "./common.mjs";

const [url, wfDir, userDir] = process.argv.slice(2);
const { context, page, logs } = await openComfy(url, userDir);
for (const file of fs.readdirSync(path.join(wfDir, "api")).filter((f) => f.endsWith(".json")).sort()) {
  const api = JSON.parse(fs.readFileSync(path.join(wfDir, "api", file), "utf8"));
  const ui = await page.evaluate(async ({ api, file }) => {
    app.loadApiJson(api, file);
    await new Promise((r) => setTimeout(r, 500));
    for (const node of app.graph._nodes) {
      const ctl = node.widgets?.find((w) => w.name === "control_after_generate");
      if (ctl) ctl.value = "fixed";
    }
    return app.graph.serialize();
  }, { api, file });
  fs.writeFileSync(path.join(wfDir, file), JSON.stringify(ui, null, 2) + "\n");
  console.log("wrote", file, ui.nodes.length, "nodes");
}
for (const l of logs) if (/error|warn/i.test(l)) console.log(l.slice(0, 300));
await context.close();
