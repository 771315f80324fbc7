// Shared browser helpers: Debian chromium (headless) driven by playwright-core, ComfyUI's front end.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
// playwright-core is installed by .ci/setup.d/browser.sh into .cache/node (or NODE_PATH / a global install)
const require = createRequire(path.join(root, ".cache/node/package.json"));
const { chromium } = require("playwright-core");

export const CHROMIUM = process.env.WANSTREAM_CHROMIUM || "/usr/bin/chromium";

// -> { context, page, logs: console lines, failed: "<status> <url>" of every HTTP response >= 400 and
//      "<error> <url>" of every request that got no response (the refused non-local ones included;
//      not the ones the page cancelled itself, net::ERR_ABORTED: e.g. media previews of a closed dialog) }
export async function openComfy(url, userDataDir, viewport = { width: 1600, height: 1000 }) {
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    ],
  });
  // nothing but the local server: every other request is refused (the front end asks a few CDNs / APIs)
  await context.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === "127.0.0.1" || host === "localhost" ? route.continue() : route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  page.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`[pageerror] ${e.message}`));
  const failed = [];
  page.on("response", (r) => r.status() >= 400 && failed.push(`${r.status()} ${r.url()}`));
  page.on("requestfailed", (r) => {
    const error = r.failure()?.errorText;
    if (error !== "net::ERR_ABORTED") failed.push(`${error} ${r.url()}`);
  });
  await page.goto(url);
  await page.waitForFunction(() => window.app && window.app.graph && window.LiteGraph, null, { timeout: 120000 });
  // wait until the node definitions (incl. this pack's) are registered and the extension ran
  await page.waitForFunction(() => !!window.LiteGraph.registered_node_types["WanStreamARSampler"], null, { timeout: 60000 });
  // a fresh user shows the template browser once: close it if it is (or comes) up
  for (let i = 0; i < 10; i++) {
    const open = await page.evaluate(() => !!document.querySelector(".p-dialog-mask, .p-dialog"));
    if (open) await page.keyboard.press("Escape");
    else if (i >= 3) break;
    await page.waitForTimeout(300);
  }
  return { context, page, logs, failed };
}
