// The link card's behaviour: the view side of MCP Apps (SEP-1865, protocol 2026-01-26), talking
// to the host with plain JSON-RPC 2.0 over postMessage, as the spec describes, without the
// ext-apps client SDK (which would multiply the card's size).
//
// Data comes only from the host: the tool result it hands over (a payment link as
// structuredContent), and the tool calls the card asks it to make (list_line_items for the
// items, get_payment_link to refresh, update_payment_link_status to activate or deactivate).
// The card fetches nothing itself, and writes every value from a result as text, never as HTML.

import qrcodegen from "nayuki-qr-code-generator";

const PROTOCOL_VERSION = "2026-01-26";
// Only a host that never answers reaches it; a tool call may wait on a person's confirmation.
const REQUEST_TIMEOUT_MS = 120000;
// One page of line items; a link with more says how many the card does not show.
const ITEM_PAGE = 50;
const MAX_MESSAGE = 240;

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------------------
// JSON-RPC over postMessage
// ------------------------------------------------------------------------------------------

const pending = new Map();
let nextId = 1;

function post(message) {
  // The view cannot know the host's origin (a sandbox proxy may sit between): "*" as in the
  // spec. Only the parent window receives it.
  window.parent.postMessage(message, "*");
}

function request(method, params) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error("the host did not answer"));
    }, REQUEST_TIMEOUT_MS);
    pending.set(id, { resolve, reject, timer });
    post({ jsonrpc: "2.0", id, method, params });
  });
}

function notify(method, params) {
  post({ jsonrpc: "2.0", method, params });
}

window.addEventListener("message", (event) => {
  if (event.source !== window.parent) return;
  const m = event.data;
  if (!m || typeof m !== "object" || m.jsonrpc !== "2.0") return;
  if (m.method === undefined) {
    const waiting = pending.get(m.id);
    if (!waiting) return;
    pending.delete(m.id);
    clearTimeout(waiting.timer);
    if (m.error) waiting.reject(new Error(String(m.error.message || "the host refused the request")));
    else waiting.resolve(m.result);
    return;
  }
  if (m.id !== undefined) {
    // The host's requests: teardown and ping need nothing of ours; the card offers no tools.
    if (m.method === "ui/resource-teardown" || m.method === "ping") {
      post({ jsonrpc: "2.0", id: m.id, result: {} });
    } else {
      post({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "Method not found" } });
    }
    return;
  }
  onNotification(m.method, m.params || {});
});

// ------------------------------------------------------------------------------------------
// State
// ------------------------------------------------------------------------------------------

const state = {
  host: {}, // hostCapabilities
  context: {}, // hostContext, merged with every host-context-changed
  link: null, // the payment link shown
  items: null, // { data, hasMore } once loaded
  itemsFor: null, // the link id the items belong to
  busy: false,
};
// Set once the host answered ui/initialize: nothing is sent to it before but that request.
let initialized = false;

function onNotification(method, params) {
  switch (method) {
    case "ui/notifications/tool-input":
      if (!state.link) showMessage("Loading the payment link…");
      break;
    case "ui/notifications/tool-result":
      showResult(params);
      break;
    case "ui/notifications/tool-cancelled":
      if (!state.link) showMessage("The call was cancelled" + (params.reason ? ": " + short(params.reason) : "."), true);
      break;
    case "ui/notifications/host-context-changed":
      state.context = { ...state.context, ...params };
      applyContext();
      break;
  }
}

// ------------------------------------------------------------------------------------------
// Results
// ------------------------------------------------------------------------------------------

function short(text) {
  const s = String(text).replace(/\s+/g, " ").trim();
  return s.length > MAX_MESSAGE ? s.slice(0, MAX_MESSAGE - 1) + "…" : s;
}

// The message of an isError result: the server's {"error": {kind, message}} envelope, or the text.
function errorOf(result) {
  const text = (result.content || []).filter((c) => c && c.type === "text").map((c) => c.text).join(" ");
  try {
    const body = JSON.parse(text).error;
    if (body && body.message) return short(body.message);
  } catch {
    // Not our envelope: show the text as it is.
  }
  return short(text || "the tool failed without saying why");
}

// A payment link from a tool result, or the reason there is none.
function linkOf(result) {
  if (!result || typeof result !== "object") return { error: "the host sent no result" };
  if (result.isError) return { error: errorOf(result) };
  const link = result.structuredContent;
  if (!link || typeof link !== "object" || typeof link.id !== "string") {
    return { error: "this result is not a payment link" };
  }
  return { link };
}

function showResult(result) {
  const { link, error } = linkOf(result);
  if (error) {
    if (state.link) showError(error);
    else showMessage("Could not show the payment link: " + error, true);
    return;
  }
  showLink(link);
}

function showLink(link) {
  const sameLink = state.link && state.link.id === link.id;
  state.link = link;
  hideError();
  render();
  if (!sameLink || state.itemsFor !== link.id) loadItems(link.id);
}

// A tool call through the host, resolved with a CallToolResult; a refusal or a transport
// failure rejects.
function callTool(name, args) {
  return request("tools/call", { name, arguments: args });
}

async function loadItems(id) {
  state.items = null;
  state.itemsFor = id;
  renderItems();
  if (!state.host.serverTools) return;
  try {
    const result = await callTool("list_line_items", { payment_link_id: id, limit: ITEM_PAGE });
    if (state.itemsFor !== id) return;
    if (result && result.isError) throw new Error(errorOf(result));
    const page = result && result.structuredContent;
    if (!page || !Array.isArray(page.data)) throw new Error("the items came back in an unknown shape");
    state.items = { data: page.data, hasMore: page.has_more === true };
  } catch (e) {
    if (state.itemsFor !== id) return;
    state.items = { data: [], hasMore: false, error: short(e.message) };
  }
  renderItems();
}

// Runs one button's tool call: the button says it is working, the result replaces the link,
// a failure shows as a message and leaves the last good link on the card.
async function act(button, working, name, args) {
  if (state.busy) return;
  state.busy = true;
  const label = button.textContent;
  button.textContent = working;
  setButtonsDisabled(true);
  hideError();
  try {
    const { link, error } = linkOf(await callTool(name, args));
    if (error) showError(error);
    else showLink(link);
  } catch (e) {
    showError("The host could not run " + name + ": " + short(e.message));
  } finally {
    state.busy = false;
    button.textContent = label;
    setButtonsDisabled(false);
    render();
  }
}

function setButtonsDisabled(disabled) {
  for (const id of ["refresh", "toggle", "copy", "open"]) $(id).disabled = disabled;
}

// ------------------------------------------------------------------------------------------
// Rendering (text only: every value goes through textContent)
// ------------------------------------------------------------------------------------------

const DASH = "—";

function money(m) {
  return m && typeof m.amount === "string" && typeof m.currency === "string" ? m.amount + " " + m.currency : DASH;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showMessage(text, failed) {
  $("message").textContent = text;
  $("message").hidden = false;
  $("link").hidden = true;
  $("card").dataset.state = failed ? "failed" : "waiting";
  reportSize();
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
  reportSize();
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

const STATUS_LABEL = { active: "Active", inactive: "Inactive", completed: "Completed" };

function render() {
  const link = state.link;
  if (!link) return;
  $("message").hidden = true;
  $("link").hidden = false;
  $("card").dataset.state = "shown";

  $("name").textContent = link.name || "Payment link";
  const status = $("status");
  status.textContent = STATUS_LABEL[link.status] || "Unknown status";
  status.dataset.status = link.status || "unknown";
  const mode = $("mode");
  mode.textContent = link.livemode ? "LIVE" : "TEST";
  mode.dataset.live = String(link.livemode === true);
  mode.title = link.livemode ? "Real money" : "No real money moves";

  $("total").textContent = money(link.total);
  renderFacts(link);
  renderPay(link.url);
  renderItems();

  const tools = !!state.host.serverTools;
  $("refresh").hidden = !tools;
  const toggle = $("toggle");
  const next = link.status === "active" ? "inactive" : link.status === "inactive" ? "active" : null;
  toggle.hidden = !tools || !next;
  if (!state.busy && next) toggle.textContent = next === "inactive" ? "Deactivate" : "Activate";
  toggle.dataset.next = next || "";
  reportSize();
}

function renderFacts(link) {
  const facts = $("facts");
  facts.replaceChildren();
  const add = (term, value) => facts.append(el("dt", "", term), el("dd", "", value));
  if (link.valid_until) add("Valid until", formatTime(link.valid_until));
  if (Number.isInteger(link.max_number_of_payments)) add("Payments allowed", String(link.max_number_of_payments));
}

function formatTime(rfc3339) {
  const when = new Date(rfc3339);
  if (Number.isNaN(when.getTime())) return rfc3339;
  try {
    return new Intl.DateTimeFormat(state.context.locale || undefined, {
      dateStyle: "medium",
      timeStyle: "short",
      timeZone: state.context.timeZone || undefined,
    }).format(when);
  } catch {
    return rfc3339;
  }
}

let qrFor = null;

function renderPay(url) {
  const has = typeof url === "string" && url.length > 0;
  $("url").textContent = has ? url : "This link has no URL yet.";
  $("copy").hidden = !has;
  $("open").hidden = !has || !state.host.openLinks;
  if (qrFor === url) return;
  qrFor = url;
  const qr = $("qr");
  qr.replaceChildren();
  qr.hidden = !has;
  if (has) {
    try {
      qr.innerHTML = qrSvg(url);
    } catch {
      qr.hidden = true;
    }
  }
}

// The QR code as SVG markup made only of numbers: one path of unit squares, a 4-module quiet
// zone around it.
function qrSvg(text) {
  const code = qrcodegen.QrCode.encodeText(text, qrcodegen.QrCode.Ecc.MEDIUM);
  const border = 4;
  const side = code.size + border * 2;
  let d = "";
  for (let y = 0; y < code.size; y++) {
    for (let x = 0; x < code.size; x++) {
      if (code.getModule(x, y)) d += "M" + (x + border) + "," + (y + border) + "h1v1h-1z";
    }
  }
  return (
    '<svg viewBox="0 0 ' + side + " " + side + '" shape-rendering="crispEdges" aria-hidden="true">' +
    '<rect width="' + side + '" height="' + side + '" fill="#fff"/><path d="' + d + '" fill="#000"/></svg>'
  );
}

function renderItems() {
  const list = $("items");
  const note = $("items-note");
  list.replaceChildren();
  note.hidden = true;
  const link = state.link;
  if (!link) return;
  const items = state.itemsFor === link.id ? state.items : null;
  const count = Number.isInteger(link.item_count) ? link.item_count : null;
  if (!items) {
    note.hidden = false;
    note.textContent = state.host.serverTools
      ? "Loading items…"
      : count === null ? "Items: not shown by this host." : count + (count === 1 ? " item" : " items");
    return;
  }
  for (const item of items.data) {
    const li = el("li", "item");
    const main = el("div", "item-main");
    main.append(el("span", "item-name", item.product_name || item.product_id || "Item"), el("span", "item-total", money(item.total)));
    const known = Number.isInteger(item.quantity);
    const sub = el("div", "item-sub", (known ? String(item.quantity) : DASH) + " × " + money(item.unit_amount));
    if (!known) sub.title = "Quantity unknown: the payments API gave none that could be read.";
    li.append(main, sub);
    list.append(li);
  }
  if (items.error) {
    note.hidden = false;
    note.textContent = "Items could not be loaded: " + items.error;
  } else if (items.hasMore) {
    note.hidden = false;
    note.textContent = "Showing " + items.data.length + (count !== null ? " of " + count : "") + " items.";
  }
}

// ------------------------------------------------------------------------------------------
// Buttons
// ------------------------------------------------------------------------------------------

$("refresh").addEventListener("click", () => {
  if (state.link) act($("refresh"), "Refreshing…", "get_payment_link", { payment_link_id: state.link.id });
});

$("toggle").addEventListener("click", () => {
  const next = $("toggle").dataset.next;
  if (!state.link || !next) return;
  const working = next === "inactive" ? "Deactivating…" : "Activating…";
  act($("toggle"), working, "update_payment_link_status", { payment_link_id: state.link.id, status: next });
});

$("copy").addEventListener("click", async () => {
  const url = state.link && state.link.url;
  if (!url) return;
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch {
    copied = legacyCopy(url);
  }
  if (!copied) {
    showError("This host does not let the card copy: select the link above and copy it.");
    return;
  }
  const button = $("copy");
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy link"), 1500);
});

// Hosts that do not grant clipboard-write may still allow the older copy command.
function legacyCopy(text) {
  const area = el("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

$("open").addEventListener("click", async () => {
  const url = state.link && state.link.url;
  if (!url) return;
  try {
    const result = await request("ui/open-link", { url });
    if (result && result.isError) showError("The host did not open the link.");
  } catch (e) {
    showError("The host did not open the link: " + short(e.message));
  }
});

// ------------------------------------------------------------------------------------------
// Host context: theme, style variables, display mode, container size
// ------------------------------------------------------------------------------------------

function applyContext() {
  const c = state.context;
  const root = document.documentElement;
  const dark = c.theme === "dark" || (c.theme !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  root.dataset.theme = dark ? "dark" : "light";
  const vars = c.styles && c.styles.variables;
  if (vars && typeof vars === "object") {
    for (const [name, value] of Object.entries(vars)) {
      if (name.startsWith("--") && typeof value === "string") root.style.setProperty(name, value);
    }
  }
  root.dataset.displayMode = c.displayMode || "inline";
  const box = c.containerDimensions || {};
  root.style.maxWidth = typeof box.maxWidth === "number" ? box.maxWidth + "px" : "";
  root.style.maxHeight = typeof box.maxHeight === "number" ? box.maxHeight + "px" : "";
  root.style.height = typeof box.height === "number" ? "100vh" : "";
  if (state.link) renderFacts(state.link);
  reportSize();
}

// Tells the host the card's size, so that a host with a flexible container fits it.
let lastSize = "";
let sizeQueued = false;
function reportSize() {
  if (sizeQueued || !initialized) return;
  sizeQueued = true;
  requestAnimationFrame(() => {
    sizeQueued = false;
    const root = document.documentElement;
    const fixed = root.style.height;
    root.style.height = "max-content";
    const height = Math.ceil(root.getBoundingClientRect().height);
    root.style.height = fixed;
    const width = Math.ceil(window.innerWidth);
    const size = width + "x" + height;
    if (size === lastSize) return;
    lastSize = size;
    notify("ui/notifications/size-changed", { width, height });
  });
}

// ------------------------------------------------------------------------------------------
// Start: ui/initialize, then ui/notifications/initialized; the host then sends tool-input and
// tool-result.
// ------------------------------------------------------------------------------------------

(async () => {
  try {
    const init = await request("ui/initialize", {
      protocolVersion: PROTOCOL_VERSION,
      appInfo: { name: "paylink-link-card", version: "1.0.0" },
      appCapabilities: { availableDisplayModes: ["inline", "fullscreen"] },
    });
    state.host = (init && init.hostCapabilities) || {};
    state.context = (init && init.hostContext) || {};
  } catch (e) {
    showMessage("The host did not start the card: " + short(e.message), true);
    return;
  }
  initialized = true;
  applyContext();
  notify("ui/notifications/initialized", {});
  const observer = new ResizeObserver(reportSize);
  observer.observe(document.documentElement);
  observer.observe(document.body);
  reportSize();
})();
