//! Helpers shared by the integration tests: they run the real `paylink-mcp` binary as a child
//! process, either behind rmcp's real client ([`Server`]) or behind raw pipes ([`RawSession`],
//! [`run_until_exit`]).
//!
//! Every child gets a controlled environment: `env_clear()`, then `PATH`, then exactly the
//! variables a test passes. So a developer's own `STREAM_API_KEY` or `PAYLINK_*` settings can never
//! change what a test sees, and the default backend is the embedded sandbox.
//!
//! Nothing here sleeps: waiting is always on an event (a line, EOF, process exit), wrapped in a
//! generous deadline so that a hung server fails the test instead of hanging it.

// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorData, ServerPeerInfo, Tool};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The binary under test, built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_paylink-mcp");

/// Upper bound for one request/response exchange. Generous: only a hung server reaches it.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Upper bound for the process to exit once it has a reason to (stdin closed, bad configuration).
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// Where the sandbox's checkout pages live: `<prefix><link id>`, on an RFC 6761 `.invalid` host
/// that can never resolve.
pub const SANDBOX_URL_PREFIX: &str = "https://sandbox.paylink.invalid/pay/";

/// Awaits `fut`, failing the test with `what` if it takes longer than `deadline`.
pub async fn within<T>(deadline: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(deadline, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {deadline:?}: {what}"),
    }
}

/// A command for the binary with a controlled environment: only `PATH` and `env`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().copied())
        .args(args)
        // A test that panics must not leave a server behind.
        .kill_on_drop(true);
    cmd
}

/// Collects everything a child writes to a pipe, in the background, so the pipe never fills up.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Starts draining `pipe`; returns the buffer and the task that ends at EOF.
    pub fn drain(
        mut pipe: impl AsyncRead + Unpin + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let captured = Captured::default();
        let sink = captured.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (captured, task)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Through rmcp's client
// ---------------------------------------------------------------------------------------------

/// A running `paylink-mcp` child, initialized through rmcp's client over stdio.
pub struct Server {
    client: RunningService<RoleClient, ()>,
    stderr: Captured,
    stderr_task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Spawns the binary with `args` and exactly `env` (plus `PATH`) and runs the MCP handshake.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let (transport, stderr) = TokioChildProcess::builder(command(args, env))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paylink-mcp");
        let (stderr, stderr_task) = Captured::drain(stderr.expect("stderr is piped"));
        let client = within(CALL_DEADLINE, "MCP initialize", ().serve(transport))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MCP initialize failed: {e}\nserver stderr:\n{}",
                    stderr.text()
                )
            });
        Server {
            client,
            stderr,
            stderr_task,
        }
    }

    /// The default server: no arguments, no keys, so the embedded sandbox.
    pub async fn sandbox() -> Self {
        Self::start(&[], &[]).await
    }

    /// What the server said at `initialize`.
    pub fn info(&self) -> Arc<ServerPeerInfo> {
        self.client.peer_info().expect("initialized")
    }

    /// Everything the server wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// `tools/list`, every page.
    pub async fn tools(&self) -> Vec<Tool> {
        within(CALL_DEADLINE, "tools/list", self.client.list_all_tools())
            .await
            .expect("tools/list")
    }

    /// The names of the listed tools, in listing order.
    pub async fn tool_names(&self) -> Vec<String> {
        self.tools()
            .await
            .into_iter()
            .map(|t| t.name.into_owned())
            .collect()
    }

    /// `tools/call`, returning the protocol-level outcome as is.
    pub async fn try_call(&self, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
        let args = match args {
            Value::Object(map) => map,
            other => panic!("tool arguments must be a JSON object, got {other}"),
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        within(
            CALL_DEADLINE,
            &format!("tools/call {tool}"),
            self.client.call_tool(params),
        )
        .await
    }

    /// `tools/call` that must get a result (successful or `isError`), not a JSON-RPC error.
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        self.try_call(tool, args.clone()).await.unwrap_or_else(|e| {
            panic!("tools/call {tool} {args} failed at the protocol level: {e}")
        })
    }

    /// `tools/call` that must fail at the JSON-RPC level; returns the JSON-RPC error.
    pub async fn rpc_error(&self, tool: &str, args: Value) -> ErrorData {
        match self.try_call(tool, args).await {
            Err(ServiceError::McpError(e)) => e,
            Err(other) => panic!("tools/call {tool}: expected a JSON-RPC error, got {other}"),
            Ok(r) => panic!("tools/call {tool}: expected a JSON-RPC error, got a result: {r:?}"),
        }
    }

    /// A successful call's `structuredContent`. Also checks that the text content carries the
    /// same JSON, for clients that only read text.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        let result = self.call(tool, args.clone()).await;
        if result.is_error == Some(true) {
            panic!(
                "tools/call {tool} {args} returned an error: {}",
                texts(&result).join("\n")
            );
        }
        let structured = result
            .structured_content
            .clone()
            .unwrap_or_else(|| panic!("tools/call {tool}: no structuredContent in {result:?}"));
        let text = texts(&result);
        assert_eq!(text.len(), 1, "{tool}: one text block mirrors the result");
        let mirrored: Value = serde_json::from_str(&text[0]).expect("text block is JSON");
        assert_eq!(
            mirrored, structured,
            "{tool}: text and structured content agree"
        );
        structured
    }

    /// A failed call's error envelope body (the object under `error`), after checking the
    /// envelope's shape: see [`error_body`].
    pub async fn err(&self, tool: &str, args: Value) -> Value {
        let result = self.call(tool, args.clone()).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "tools/call {tool} {args} should fail, got {result:?}"
        );
        error_body(&result)
    }

    /// Asserts that a call fails with `kind` on exactly `field`; returns the error body.
    pub async fn expect_error(&self, tool: &str, args: Value, kind: &str, field: &str) -> Value {
        let body = self.err(tool, args.clone()).await;
        assert_eq!(body["kind"], kind, "kind for {tool} {args}: {body}");
        assert_eq!(body["field"], field, "field for {tool} {args}: {body}");
        body
    }

    /// Closes stdin and waits for the child to exit (rmcp kills it if it does not).
    pub async fn shutdown(self) {
        within(EXIT_DEADLINE, "client shutdown", self.client.cancel())
            .await
            .expect("client shutdown");
    }

    /// [`Server::shutdown`], then everything the server wrote to stderr, read to its end.
    pub async fn shutdown_with_stderr(self) -> String {
        let stderr = self.stderr.clone();
        let task = self.stderr_task;
        within(EXIT_DEADLINE, "client shutdown", self.client.cancel())
            .await
            .expect("client shutdown");
        within(EXIT_DEADLINE, "stderr EOF", task)
            .await
            .expect("stderr reader");
        stderr.text()
    }
}

/// The text blocks of a tool result.
pub fn texts(result: &CallToolResult) -> Vec<String> {
    result
        .content
        .iter()
        .map(|c| {
            c.as_text()
                .unwrap_or_else(|| panic!("only text content is expected, got {c:?}"))
                .text
                .clone()
        })
        .collect()
}

/// Checks that an `isError` result is exactly one text block whose text is exactly a JSON object
/// `{"error": {...}}` with a string `kind`, a non-empty string `message` and a boolean
/// `retry_safe`; returns the inner object.
pub fn error_body(result: &CallToolResult) -> Value {
    let text = texts(result);
    assert_eq!(text.len(), 1, "an error is one text block: {text:?}");
    let envelope: Value = serde_json::from_str(&text[0])
        .unwrap_or_else(|e| panic!("error text is not JSON ({e}): {}", text[0]));
    let keys: BTreeSet<&str> = envelope
        .as_object()
        .unwrap_or_else(|| panic!("error text is not a JSON object: {envelope}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["error"]),
        "the envelope has the single key `error`: {envelope}"
    );
    let body = envelope["error"].clone();
    assert!(body["kind"].is_string(), "error.kind is a string: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message is a non-empty string: {body}"
    );
    assert!(
        body["retry_safe"].is_boolean(),
        "error.retry_safe is present and boolean: {body}"
    );
    body
}

/// Builds a JSON object from `base` with `key` set to `value` (for one-field variations).
pub fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut v = base.clone();
    v.as_object_mut()
        .expect("base is an object")
        .insert(key.to_owned(), value);
    v
}

/// A JSON object with `n` metadata entries `k0..k{n-1}`.
pub fn metadata_with_keys(n: usize) -> Value {
    Value::Object(
        (0..n)
            .map(|i| (format!("k{i}"), Value::String(format!("v{i}"))))
            .collect::<Map<String, Value>>(),
    )
}

/// Formats `minor` units with `exponent` decimals (`8850, 3` -> `"8.850"`): the exact decimal a
/// Money object must show.
pub fn decimal(minor: i64, exponent: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exponent as usize
    )
}

// ---------------------------------------------------------------------------------------------
// Through raw pipes
// ---------------------------------------------------------------------------------------------

/// A child driven by hand: newline-delimited JSON-RPC written to stdin, stdout read line by line.
pub struct RawSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Captured,
    stderr_task: tokio::task::JoinHandle<()>,
}

/// How a raw session ended.
pub struct RawEnd {
    pub status: ExitStatus,
    /// Every stdout line after the ones already read with [`RawSession::read_line`].
    pub stdout_lines: Vec<String>,
    pub stderr: String,
}

impl RawSession {
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paylink-mcp");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let (stderr, stderr_task) = Captured::drain(child.stderr.take().expect("stderr is piped"));
        RawSession {
            child,
            stdin,
            stdout,
            stderr,
            stderr_task,
        }
    }

    /// Writes each message as one line.
    pub async fn send(&mut self, messages: &[Value]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        for m in messages {
            let mut line = serde_json::to_string(m).expect("encode");
            line.push('\n');
            within(
                CALL_DEADLINE,
                "write to stdin",
                stdin.write_all(line.as_bytes()),
            )
            .await
            .expect("write to stdin");
        }
        within(CALL_DEADLINE, "flush stdin", stdin.flush())
            .await
            .expect("flush stdin");
    }

    /// The child's peak resident memory so far (`VmHWM`, Linux), in bytes; `None` elsewhere.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// Writes `bytes` to stdin as they are (no newline added).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        within(CALL_DEADLINE, "write to stdin", stdin.write_all(bytes))
            .await
            .expect("write to stdin");
        within(CALL_DEADLINE, "flush stdin", stdin.flush())
            .await
            .expect("flush stdin");
    }

    /// Reads one stdout line (without its newline); `None` at EOF.
    pub async fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = within(
            CALL_DEADLINE,
            "read a stdout line",
            self.stdout.read_line(&mut line),
        )
        .await
        .expect("read stdout");
        (n > 0).then(|| line.trim_end_matches(['\n', '\r']).to_owned())
    }

    /// Closes stdin, reads stdout to EOF and waits for the process to exit, all within
    /// [`EXIT_DEADLINE`].
    pub async fn close_and_wait(mut self) -> RawEnd {
        drop(self.stdin.take());
        let mut stdout_lines = Vec::new();
        let status = within(EXIT_DEADLINE, "exit after stdin closed", async {
            let mut line = String::new();
            loop {
                line.clear();
                let n = self.stdout.read_line(&mut line).await.expect("read stdout");
                if n == 0 {
                    break;
                }
                stdout_lines.push(line.trim_end_matches(['\n', '\r']).to_owned());
            }
            self.child.wait().await.expect("wait for the child")
        })
        .await;
        within(EXIT_DEADLINE, "stderr EOF", self.stderr_task)
            .await
            .expect("stderr reader");
        RawEnd {
            status,
            stdout_lines,
            stderr: self.stderr.text(),
        }
    }
}

/// Starts the binary with stdin open but never written to, and waits for it to exit on its own
/// (a configuration error must not wait for input). Fails the test if it is still running after
/// [`EXIT_DEADLINE`].
pub async fn run_until_exit(args: &[&str], env: &[(&str, &str)]) -> RawEnd {
    let mut session = RawSession::spawn(args, env);
    let stdin = session.stdin.take();
    let status = within(
        EXIT_DEADLINE,
        "exit on a configuration error with stdin still open",
        session.child.wait(),
    )
    .await
    .expect("wait for the child");
    drop(stdin);
    let mut rest = String::new();
    within(
        EXIT_DEADLINE,
        "stdout EOF",
        session.stdout.read_to_string(&mut rest),
    )
    .await
    .expect("read stdout");
    within(EXIT_DEADLINE, "stderr EOF", session.stderr_task)
        .await
        .expect("stderr reader");
    RawEnd {
        status,
        stdout_lines: rest.lines().map(str::to_owned).collect(),
        stderr: session.stderr.text(),
    }
}
