// Opens ComfyUI's own frontend in Chromium (Playwright) and, for each workflow file, opens it as a user does:
// from the Templates browser (its "kinema" extension entry, then the card named after the file). It reports the
// node types the frontend built and which it could not, shrinks the clip widgets so a CPU renders them in
// seconds, queues each one from the page (the frontend turns it into the prompt it posts), and saves screenshots
// of the browser and of the first graph. Prints one JSON line.
//
// Usage: node comfyui_frontend.cjs URL SCREENSHOT WORKFLOW.json...
// KINEMA_PLAYWRIGHT_CORE: the playwright-core package folder; KINEMA_CHROMIUM: the browser (/usr/bin/chromium).
const path = require("path");
const { chromium } = require(process.env.KINEMA_PLAYWRIGHT_CORE);

const SMALL = { seconds: 0.375, width: 32, height: 32, steps: 2 };

(async () => {
  const [url, screenshot, ...files] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.KINEMA_CHROMIUM || "/usr/bin/chromium",
    // Chromium's own services are unreachable here (and not wanted in a test): no background networking.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(url);
  await page.waitForFunction(() => window.app && window.app.graph && window.app.vueAppReady !== false, null,
    { timeout: 120000 });
  const results = [];
  for (const [index, file] of files.entries()) {
    const name = path.basename(file, ".json");
    await page.evaluate(() => window.app.graph.clear());
    const open = await page.getByText("All Templates").first().isVisible().catch(() => false);
    if (!open) await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
    await page.getByText("kinema", { exact: true }).first().click({ timeout: 30000 });
    if (index === 0) await page.screenshot({ path: screenshot.replace(/\.png$/, "-templates.png") });
    await page.getByText(new RegExp(name.replace(/[_ -]/g, "[_ -]"), "i")).first().click({ timeout: 30000 });
    await page.waitForFunction(() => window.app.graph._nodes.length > 0, null, { timeout: 60000 });
    await page.keyboard.press("Escape"); // the browser closes on opening; make sure no dialog hides the graph
    const loaded = await page.evaluate(async ([small]) => {
      const nodes = window.app.graph._nodes;
      return {
        types: nodes.map((node) => node.type),
        // A node type the server does not offer is drawn as a placeholder with no definition behind it.
        unknown: nodes.filter((node) => !globalThis.LiteGraph.registered_node_types[node.type]).map((n) => n.type),
        shrunk: nodes.flatMap((node) => (node.widgets || []).filter((w) => w.name in small).map((w) => {
          w.value = small[w.name];
          return `${node.type}.${w.name}`;
        })),
      };
    }, [SMALL]);
    if (index === 0) await page.screenshot({ path: screenshot });
    await page.evaluate(() => window.app.queuePrompt(0, 1));
    results.push({ file, ...loaded });
  }
  console.log(JSON.stringify({ results, pageErrors }));
  await browser.close();
})().catch((error) => {
  console.log(JSON.stringify({ error: String(error && error.stack || error) }));
  process.exit(1);
});
