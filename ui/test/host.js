// The test host page's script: the host side of MCP Apps, made with the official SDK's
// AppBridge (@modelcontextprotocol/ext-apps/app-bridge), bundled by run.mjs with esbuild.
//
// It shows one view in a sandbox proxy iframe (another origin, see sandbox.html), hands it a tool
// call's input and result, and answers the view's tools/call requests by passing them to
// window.paylinkCallTool, a binding of the test driver (run.mjs) that calls the real server with
// an MCP client. The browser itself never talks to the MCP server. Everything the view asked for
// is recorded in window.host for the driver to check.

import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

const host = {
  calls: [], // every tools/call the view made: { name, arguments }
  forwarded: [], // the names of those passed on to the server
  opened: [], // every ui/open-link URL
  sizes: [], // every ui/notifications/size-changed
  initialized: false,
  failNext: null, // a message: the next tools/call fails with it, as a host failure
  bridge: null,
  context: {},
};
window.host = host;

window.paylinkHost = {
  /**
   * Shows the view. `view`: { html, csp, permissions } from resources/read; `tool`: { name,
   * arguments, result } of the call whose result the view renders; `context`: the host context.
   */
  async start({ sandboxUrl, view, tool, context, width }) {
    const frame = document.createElement("iframe");
    frame.id = "sandbox";
    frame.style.width = width + "px";
    frame.style.height = "200px";
    frame.style.border = "1px solid #999";
    frame.setAttribute("sandbox", "allow-scripts allow-same-origin");
    frame.setAttribute("allow", "clipboard-write");
    document.getElementById("slot").appendChild(frame);

    const bridge = new AppBridge(
      null,
      { name: "paylink-test-host", version: "1.0.0" },
      {
        serverTools: {},
        openLinks: {},
        logging: {},
        sandbox: { permissions: view.permissions || {}, csp: view.csp || {} },
      },
      { hostContext: context },
    );
    host.bridge = bridge;
    host.context = context;

    bridge.oncalltool = async (params) => {
      host.calls.push({ name: params.name, arguments: params.arguments });
      if (host.failNext) {
        const message = host.failNext;
        host.failNext = null;
        throw new Error(message);
      }
      host.forwarded.push(params.name);
      return await window.paylinkCallTool(params);
    };
    bridge.onopenlink = async ({ url }) => {
      host.opened.push(url);
      return {};
    };
    bridge.addEventListener("sizechange", ({ width: w, height }) => {
      host.sizes.push({ width: w, height });
      if (typeof height === "number") frame.style.height = height + "px";
    });
    bridge.addEventListener("sandboxready", () => {
      bridge.sendSandboxResourceReady({ html: view.html, csp: view.csp, permissions: view.permissions });
    });
    bridge.addEventListener("initialized", async () => {
      host.initialized = true;
      await bridge.sendToolInput({ arguments: tool.arguments });
      await bridge.sendToolResult(tool.result);
    });

    await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
    frame.src = sandboxUrl;
  },

  /** Sends a host-context change (theme, display mode, ...) to the view. */
  async changeContext(change) {
    host.context = { ...host.context, ...change };
    host.bridge.setHostContext(host.context);
  },
};
