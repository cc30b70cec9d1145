// The link card's browser test (issue 19), run by tests/it/ui_card.rs with the pinned Node:
//
//   node ui/test/run.mjs --server http://127.0.0.1:PORT/mcp --artifacts DIR
//
// This script is the MCP host: an MCP client of the running server (the official
// @modelcontextprotocol/client over streamable HTTP) plus a host page in Debian's Chromium,
// driven by playwright-core, that renders the card with the official AppBridge
// (ui/test/host.js) inside a sandbox proxy on another origin (ui/test/sandbox.html). The card's
// tools/call requests go view -> AppBridge -> a page binding -> this script's MCP client -> the
// server: the browser never talks to the server.
//
// Two scenarios:
// - without --link, on the sandbox: create a link, then check everything the card shows and does
//   (items, total, QR, copy, refresh, deactivate/activate, errors, themes, display mode, size);
// - with --link ID (an existing link, e.g. on a mocked Stream whose items have unreadable
//   quantities): get it, and check that the card shows every item as the server lists it, with
//   "—" where a quantity or unit price is null.
// Both check that nothing was fetched from outside the host.
//
// Prints one line per check; exits 0 when every check passed, 1 at the first that did not.
// Screenshots go to DIR (link-card-light.png, link-card-dark.png, link-card-error.png, ...).

import { createServer } from "node:http";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const here = dirname(fileURLToPath(import.meta.url));
const started = Date.now();
const { values: opts } = parseArgs({
  options: {
    server: { type: "string" },
    artifacts: { type: "string" },
    token: { type: "string", default: "card-browser-test" },
    link: { type: "string" },
  },
});
if (!opts.server || !opts.artifacts) {
  console.error("usage: run.mjs --server URL --artifacts DIR [--token T] [--link ID]");
  process.exit(2);
}
mkdirSync(opts.artifacts, { recursive: true });

// Seeded sandbox products: Arabica beans SAR 89.00 and a ceramic mug SAR 35.50.
const BEANS = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";
const MUG = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
const CHROMIUM = "/usr/bin/chromium";
// Generous: only a hang reaches it (two busy cores, a cold browser).
const WAIT = 20000;

let passed = 0;
let cleanup = [];

function ok(what) {
  passed++;
  console.log("ok - " + what);
}

class Failed extends Error {}

function check(condition, what, detail) {
  if (!condition) throw new Failed(what + (detail === undefined ? "" : ": " + detail));
  ok(what);
}

function equal(actual, expected, what) {
  check(
    JSON.stringify(actual) === JSON.stringify(expected),
    what,
    "got " + JSON.stringify(actual) + ", expected " + JSON.stringify(expected),
  );
}

async function finish(code) {
  for (const step of cleanup.reverse()) {
    try {
      await step();
    } catch {
      // Best effort: the process ends anyway.
    }
  }
  process.exit(code);
}

// ------------------------------------------------------------------------------------------
// The MCP side: a real client of the running server
// ------------------------------------------------------------------------------------------

const client = new Client(
  { name: "paylink-card-test-host", version: "1.0.0" },
  {
    capabilities: {
      extensions: { "io.modelcontextprotocol/ui": { mimeTypes: ["text/html;profile=mcp-app"] } },
    },
  },
);
const serverCalls = []; // every tools/call this script made for the view
const server = new URL(opts.server);


// ------------------------------------------------------------------------------------------
// The host's two origins: the page, and the sandbox proxy (the spec wants them different)
// ------------------------------------------------------------------------------------------

function listen(handler) {
  return new Promise((resolve) => {
    const s = createServer(handler);
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
}

// CSP for the view, built from the resource's _meta.ui.csp as the spec's "CSP Construction from
// Metadata" shows: the declared origins and nothing else.
function cspOf(csp = {}) {
  const list = (k) => (Array.isArray(csp[k]) ? csp[k].join(" ") : "");
  return [
    "default-src 'none'",
    `script-src 'self' 'unsafe-inline' ${list("resourceDomains")}`,
    `style-src 'self' 'unsafe-inline' ${list("resourceDomains")}`,
    `connect-src 'self' ${list("connectDomains")}`,
    `img-src 'self' data: ${list("resourceDomains")}`,
    `font-src 'self' ${list("resourceDomains")}`,
    `media-src 'self' data: ${list("resourceDomains")}`,
    `frame-src ${list("frameDomains") || "'none'"}`,
    "object-src 'none'",
    `base-uri ${list("baseUriDomains") || "'self'"}`,
  ].join("; ");
}

// Everything both scenarios share: the MCP client connected, the card read from the server, the
// host's two origins serving, the browser open, and the host's way to the server bound.
async function setup() {
  await client.connect(new StreamableHTTPClientTransport(server, {
    requestInit: { headers: { Authorization: "Bearer " + opts.token } },
  }));
  cleanup.push(() => client.close());

  const { tools } = await client.listTools();
  const get = tools.find((t) => t.name === "get_payment_link");
  const uri = get && get._meta && get._meta.ui && get._meta.ui.resourceUri;
  equal(uri, "ui://paylink/link-card.html", "get_payment_link's _meta.ui.resourceUri names the card");
  const read = await client.readResource({ uri });
  const content = read.contents[0];
  equal(content.mimeType, "text/html;profile=mcp-app", "resources/read serves the card as an MCP App");
  const view = {
    html: content.text,
    csp: content._meta && content._meta.ui && content._meta.ui.csp,
    permissions: content._meta && content._meta.ui && content._meta.ui.permissions,
  };

  // -- The host: two origins on 127.0.0.1, the page's script bundled with the real AppBridge ----
  const bundle = await esbuild.build({
    entryPoints: [join(here, "host.js")],
    bundle: true,
    format: "iife",
    write: false,
    logLevel: "silent",
  });
  const hostJs = bundle.outputFiles[0].text;
  const hostHtml = readFileSync(join(here, "host.html"), "utf8");
  const sandboxHtml = readFileSync(join(here, "sandbox.html"), "utf8");
  const unexpected = [];
  const pageServer = await listen((req, res) => {
    if (req.url === "/host.html") res.writeHead(200, { "content-type": "text/html" }).end(hostHtml);
    else if (req.url === "/host.js") res.writeHead(200, { "content-type": "text/javascript" }).end(hostJs);
    else (unexpected.push("page origin " + req.url), res.writeHead(404).end());
  });
  const sandboxServer = await listen((req, res) => {
    const url = new URL(req.url, "http://sandbox");
    if (url.pathname !== "/sandbox.html") {
      unexpected.push("sandbox origin " + req.url);
      res.writeHead(404).end();
      return;
    }
    let csp = {};
    try {
      csp = JSON.parse(url.searchParams.get("csp") || "{}");
    } catch {
      csp = {};
    }
    res.writeHead(200, { "content-type": "text/html", "content-security-policy": cspOf(csp) }).end(sandboxHtml);
  });
  cleanup.push(() => pageServer.close(), () => sandboxServer.close());
  const hostOrigin = `http://127.0.0.1:${pageServer.address().port}`;
  const sandboxOrigin = `http://127.0.0.1:${sandboxServer.address().port}`;
  const sandboxUrl = `${sandboxOrigin}/sandbox.html?csp=${encodeURIComponent(JSON.stringify(view.csp || {}))}`;

  // -- The browser ------------------------------------------------------------------------------
  // Playwright gives every launch a fresh, empty profile (its own --user-data-dir).
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  cleanup.push(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 420, height: 900 }, deviceScaleFactor: 2 });
  // The view writes the clipboard (from the sandbox origin); the test reads it back from the
  // host page.
  await context.grantPermissions(["clipboard-write"], { origin: sandboxOrigin });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: hostOrigin });

  // Every request any page of this context makes, and what the consoles say (a CSP refusal).
  const requests = [];
  const consoleErrors = [];
  context.on("request", (r) => requests.push({ url: r.url(), frame: r.frame() }));
  const pages = [];

  async function newPage() {
    const page = await context.newPage();
    pages.push(page);
    page.on("console", (m) => {
      if (m.type() === "error" || /Content Security Policy|Refused to/i.test(m.text())) consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push("page error: " + e.message));
    // The host's way to the server, callable only from the host page itself (not from the
    // view's frames): a view that found it could otherwise bypass the bridge.
    await page.exposeBinding("paylinkCallTool", async (source, params) => {
      if (source.frame !== page.mainFrame()) throw new Error("only the host page may call the server");
      serverCalls.push(params.name);
      return await client.callTool({ name: params.name, arguments: params.arguments });
    });
    return page;
  }

  const hostContext = {
    theme: "light",
    displayMode: "inline",
    availableDisplayModes: ["inline", "fullscreen"],
    locale: "en-US",
    timeZone: "UTC",
    platform: "web",
    containerDimensions: { width: 320, maxHeight: 2000 },
  };

  // Shows the card on `page` for one tool call and its result; returns the card's frame.
  async function show(page, toolName, toolArguments, result) {
    await page.goto(`${hostOrigin}/host.html`);
    await page.evaluate((o) => window.paylinkHost.start(o), {
      sandboxUrl,
      view,
      tool: { name: toolName, arguments: toolArguments, result },
      context: hostContext,
      width: 320,
    });
    return page.frameLocator("#sandbox").frameLocator("iframe");
  }

  // What every scenario ends with: nothing fetched from outside the host, by anyone.
  async function checkNetwork() {
    const outside = requests.filter((r) => {
      const origin = new URL(r.url).origin;
      return origin !== hostOrigin && origin !== sandboxOrigin;
    });
    equal(outside.map((r) => r.url), [], "the pages made no network request outside the host's two origins");
    const viewFrames = pages.flatMap((p) => p.frames()).filter((f) => f.parentFrame() && f.parentFrame().parentFrame());
    check(viewFrames.length === pages.length, "the view ran in a frame inside the sandbox frame, one per page", String(viewFrames.length));
    const fromView = requests.filter((r) => viewFrames.includes(r.frame));
    equal(fromView.map((r) => r.url), [], "the card itself made no network request at all");
    equal(unexpected, [], "the host's servers were asked for nothing but the host and sandbox pages");
    check(!requests.some((r) => r.url.includes(server.host)), "the browser never talked to the MCP server");
    equal(consoleErrors, [], "no console error, CSP refusal or page error");
    const forwarded = [];
    for (const p of pages) forwarded.push(...(await p.evaluate(() => window.host.forwarded)));
    equal(serverCalls, forwarded, "every tools/call the server saw for the view came through the AppBridge");
  }

  return { view, newPage, show, checkNetwork };
}

// The rows the card must show for `items` as list_line_items returned them: "—" for what is null.
function expectedRows(items) {
  const money = (m) => (m ? `${m.amount} ${m.currency}` : "—");
  return items.map((i) => ({
    name: i.product_name,
    total: money(i.total),
    sub: `${Number.isInteger(i.quantity) ? i.quantity : "—"} × ${money(i.unit_amount)}`,
    visible: true,
  }));
}

async function shownRows(card) {
  return await card.locator(".item").evaluateAll((rows) =>
    rows.map((r) => ({
      name: r.querySelector(".item-name").textContent,
      total: r.querySelector(".item-total").textContent,
      sub: r.querySelector(".item-sub").textContent,
      visible: r.getBoundingClientRect().height > 0,
    })),
  );
}

async function main() {
  const host = await setup();
  if (opts.link) await existingLink(host, opts.link);
  else await createdLink(host);
  await host.checkNetwork();
}

// An existing link read with get_payment_link: every item as the server lists it, "—" for an
// unreadable quantity and the unit price that cannot be known without it.
async function existingLink(host, id) {
  const got = await client.callTool({ name: "get_payment_link", arguments: { payment_link_id: id } });
  check(!got.isError, "get_payment_link found the link", JSON.stringify(got.content));
  const lines = await client.callTool({ name: "list_line_items", arguments: { payment_link_id: id, limit: 50 } });
  const items = lines.structuredContent.data;
  check(
    items.some((i) => i.quantity === null && i.unit_amount === null),
    "the server lists an item whose quantity and unit price are null",
    JSON.stringify(items),
  );
  const page = await host.newPage();
  const card = await host.show(page, "get_payment_link", { payment_link_id: id }, got);
  await card.locator(".item").nth(items.length - 1).waitFor({ timeout: WAIT });
  equal(await shownRows(card), expectedRows(items), "every item is shown as listed, with — for a null quantity and unit price");
  check(
    (await shownRows(card)).some((r) => r.sub === "— × —"),
    "an item without a readable quantity shows — × —, never a made-up number",
  );
  const total = got.structuredContent.total;
  equal((await card.locator("#total").textContent()).trim(), `${total.amount} ${total.currency}`, "the card shows the link's exact total");
  await page.locator("#sandbox").screenshot({ path: join(opts.artifacts, "link-card-unreadable.png") });
}

// A link created on the sandbox: everything the card shows and does.
async function createdLink(host) {
  const args = {
    name: "Counter QR: coffee order",
    items: [
      { product_id: BEANS, quantity: 2 },
      { product_id: MUG, quantity: 1 },
    ],
    valid_until: "2031-01-31T23:59:00Z",
    max_number_of_payments: 5,
    idempotency_key: "card-browser-test-" + Date.now(),
  };
  const created = await client.callTool({ name: "create_payment_link", arguments: args });
  check(!created.isError, "create_payment_link succeeded on the sandbox", JSON.stringify(created.content));
  const link = created.structuredContent;
  const lines = await client.callTool({
    name: "list_line_items",
    arguments: { payment_link_id: link.id, limit: 50 },
  });
  const items = lines.structuredContent.data;
  equal(items.length, 2, "the server lists the link's two line items");

  const page = await host.newPage();
  const card = await host.show(page, "create_payment_link", args, created);
  const text = async (selector) => (await card.locator(selector).textContent({ timeout: WAIT })).trim();

  // -- What the card shows --------------------------------------------------------------------
  await card.locator("#total").filter({ hasText: "213.50 SAR" }).waitFor({ timeout: WAIT });
  equal(link.total.amount + " " + link.total.currency, "213.50 SAR", "the created link's total is 213.50 SAR");
  equal(await text("#total"), "213.50 SAR", "the card shows the total as exact money with its currency");
  equal(await text("#name"), args.name, "the card shows the link's name");
  equal(await text("#status"), "Active", "the status badge says Active");
  equal(await text("#mode"), "TEST", "the TEST/LIVE badge says TEST on the sandbox");
  equal(await text("#url"), link.url, "the card shows the link's URL");

  await card.locator(".item").nth(1).waitFor({ timeout: WAIT });
  equal(
    await shownRows(card),
    expectedRows(items),
    "every item is visible with its name, quantity, unit price and line total (from list_line_items)",
  );
  const facts = await card.locator("#facts").evaluate((dl) => [...dl.children].map((c) => c.textContent));
  check(
    facts[0] === "Valid until" && /2031/.test(facts[1]) && facts[2] === "Payments allowed" && facts[3] === "5",
    "valid-until and the payment limit are shown when set",
    JSON.stringify(facts),
  );
  equal(serverCalls, ["list_line_items"], "the card loaded its items with one tools/call through the host");

  // It fits 320 px: nothing in the view is wider than its viewport.
  const fit = await card.locator("html").evaluate(() => ({
    viewport: document.documentElement.clientWidth,
    content: document.documentElement.scrollWidth,
  }));
  check(fit.viewport === 320 && fit.content <= 320, "the card fits a 320 px width", JSON.stringify(fit));

  // -- Screenshots: light, and the QR code decoded from it --------------------------------------
  const frameBox = page.locator("#sandbox");
  await frameBox.screenshot({ path: join(opts.artifacts, "link-card-light.png") });
  const qrLight = join(opts.artifacts, "qr-light.png");
  await card.locator("#qr").screenshot({ path: qrLight });
  equal(decodeQr(qrLight), link.url, "the QR code in the light screenshot decodes to exactly the link's URL");
  const lightColors = await colors(card);

  // -- Dark ---------------------------------------------------------------------------------
  await page.evaluate(() => window.paylinkHost.changeContext({ theme: "dark" }));
  await card.locator("html[data-theme=dark]").waitFor({ state: "attached", timeout: WAIT });
  const darkColors = await colors(card);
  check(
    darkColors.background !== lightColors.background && darkColors.text !== lightColors.text,
    "the dark theme renders with other colours than the light one",
    JSON.stringify({ lightColors, darkColors }),
  );
  await frameBox.screenshot({ path: join(opts.artifacts, "link-card-dark.png") });
  const qrDark = join(opts.artifacts, "qr-dark.png");
  await card.locator("#qr").screenshot({ path: qrDark });
  equal(decodeQr(qrDark), link.url, "the QR code still decodes in the dark theme");
  await page.evaluate(() => window.paylinkHost.changeContext({ theme: "light" }));
  await card.locator("html[data-theme=light]").waitFor({ state: "attached", timeout: WAIT });

  // -- Display mode ---------------------------------------------------------------------------
  await page.evaluate(() => window.paylinkHost.changeContext({ displayMode: "fullscreen" }));
  await card.locator("html[data-display-mode=fullscreen]").waitFor({ state: "attached", timeout: WAIT });
  const qrWide = await card.locator("#qr").evaluate((q) => q.getBoundingClientRect().width);
  await page.evaluate(() => window.paylinkHost.changeContext({ displayMode: "inline" }));
  await card.locator("html[data-display-mode=inline]").waitFor({ state: "attached", timeout: WAIT });
  const qrInline = await card.locator("#qr").evaluate((q) => q.getBoundingClientRect().width);
  check(qrWide > qrInline, "the card follows the display mode (a larger QR code in fullscreen)", `${qrWide} vs ${qrInline}`);
  const sizes = await page.evaluate(() => window.host.sizes);
  const cardHeight = await card.locator("html").evaluate(() => Math.ceil(document.documentElement.getBoundingClientRect().height));
  const last = sizes[sizes.length - 1];
  check(
    last && last.width === 320 && last.height === cardHeight,
    "the card reports its size to the host (ui/notifications/size-changed), last the whole card's",
    JSON.stringify({ sizes, cardHeight }),
  );

  // -- Copy -----------------------------------------------------------------------------------
  await card.locator("#copy").click();
  await card.locator("#copy").filter({ hasText: "Copied" }).waitFor({ timeout: WAIT });
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  equal(clip, link.url, "the copy button put exactly the link's URL on the clipboard");

  // -- Open: ui/open-link with exactly the URL, handled by the host ------------------------------
  await card.locator("#open").click();
  await page.waitForFunction(() => window.host.opened.length > 0, null, { timeout: WAIT });
  equal(await page.evaluate(() => window.host.opened), [link.url], "the open button asked the host to open exactly the URL (ui/open-link)");

  // -- Refresh: one tools/call get_payment_link through the bridge ------------------------------
  let before = (await page.evaluate(() => window.host.calls)).length;
  await card.locator("#refresh").click();
  await page.waitForFunction((n) => window.host.calls.length > n, before, { timeout: WAIT });
  await card.locator("#refresh:enabled").waitFor({ timeout: WAIT });
  let calls = await page.evaluate(() => window.host.calls);
  equal(
    calls.slice(before),
    [{ name: "get_payment_link", arguments: { payment_link_id: link.id } }],
    "the refresh button made one tools/call get_payment_link through the AppBridge",
  );

  // -- Deactivate, then activate: update_payment_link_status, and the badge follows -------------
  equal(await text("#toggle"), "Deactivate", "an active link offers Deactivate");
  before = calls.length;
  await card.locator("#toggle").click();
  await card.locator("#status").filter({ hasText: "Inactive" }).waitFor({ timeout: WAIT });
  calls = await page.evaluate(() => window.host.calls);
  equal(
    calls.slice(before),
    [{ name: "update_payment_link_status", arguments: { payment_link_id: link.id, status: "inactive" } }],
    "deactivate made one tools/call update_payment_link_status through the AppBridge",
  );
  const after = await client.callTool({ name: "get_payment_link", arguments: { payment_link_id: link.id } });
  equal(after.structuredContent.status, "inactive", "the server's link is inactive now");
  equal(await text("#status"), "Inactive", "the status badge changed to Inactive");
  await frameBox.screenshot({ path: join(opts.artifacts, "link-card-inactive.png") });
  await card.locator("#toggle").filter({ hasText: "Activate" }).waitFor({ timeout: WAIT });
  await card.locator("#toggle").click();
  await card.locator("#status").filter({ hasText: "Active" }).waitFor({ timeout: WAIT });
  ok("activate turned the badge back to Active");

  // -- A failed tools/call shows a short message, and the card stays -----------------------------
  await page.evaluate(() => (window.host.failNext = "the host lost its connection to the server"));
  await card.locator("#refresh").click();
  await card.locator("#error").waitFor({ state: "visible", timeout: WAIT });
  const failure = await text("#error");
  check(
    /lost its connection/.test(failure) && failure.length < 300,
    "a failed tools/call shows as a short message",
    failure,
  );
  equal(await text("#name"), args.name, "after the failure the card still shows the link");

  // -- A tool result that is an error (isError, a real one from the server) ----------------------
  const missing = { payment_link_id: "00000000-0000-4000-8000-000000000000" };
  const notFound = await client.callTool({ name: "get_payment_link", arguments: missing });
  check(notFound.isError === true, "the server answers get_payment_link of an unknown id with isError");
  const errorPage = await host.newPage();
  const errorCard = await host.show(errorPage, "get_payment_link", missing, notFound);
  await errorCard.locator("#message").filter({ hasText: "Could not show the payment link" }).waitFor({ timeout: WAIT });
  const said = (await errorCard.locator("#message").textContent()).trim();
  const envelope = JSON.parse(notFound.content[0].text).error;
  check(
    said.includes(envelope.message) && said.length < 300,
    "an isError result shows as a short message with the server's reason, not a blank card",
    said,
  );
  await errorPage.locator("#sandbox").screenshot({ path: join(opts.artifacts, "link-card-error.png") });
}

// The QR code in a screenshot, as zbarimg (Debian's zbar-tools) reads it.
function decodeQr(png) {
  try {
    return execFileSync("zbarimg", ["--quiet", "--raw", png], { encoding: "utf8" }).trim();
  } catch (e) {
    throw new Failed(`zbarimg found no QR code in ${png}: ${e.message}`);
  }
}

async function colors(card) {
  return await card.locator("body").evaluate((b) => {
    const s = getComputedStyle(b);
    return { background: s.backgroundColor, text: s.color };
  });
}

try {
  await main();
  console.log(`${passed} passed, 0 failed (browser test, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  await finish(0);
} catch (e) {
  console.log("not ok - " + (e instanceof Failed ? e.message : e.stack || String(e)));
  console.log(`${passed} passed, 1 failed`);
  await finish(1);
}
