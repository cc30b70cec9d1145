//! The binary over stdio: behind rmcp's real client ([`Server`]), or behind raw pipes
//! ([`RawSession`], [`run_until_exit`]) where a test is about the pipes themselves.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use rmcp::model::{CallToolResult, ErrorData, ServerPeerInfo, Tool};
use rmcp::service::{Peer, RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::{CALL_DEADLINE, EXIT_DEADLINE, Log, command, within};

/// Upstream settings for servers on a mock: short enough that a test of a timeout is quick,
/// long enough that nothing times out on a busy machine by accident. Each can be overridden by
/// passing the flag again (see [`Server::on_upstream`]).
pub const QUICK_UPSTREAM: &[(&str, &str)] = &[
    ("--upstream-timeout-secs", "2"),
    ("--request-deadline-secs", "5"),
];

/// A running `paylink-mcp` child, initialized through rmcp's client over stdio.
pub struct Server {
    client: RunningService<RoleClient, ()>,
    stderr: Log,
}

impl Server {
    /// Spawns the binary with `args` and exactly `env` (plus `PATH`) and runs the MCP handshake.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let (transport, stderr) = TokioChildProcess::builder(command(args, env))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paylink-mcp");
        let stderr = Log::drain(stderr.expect("stderr is piped"));
        let client = within(CALL_DEADLINE, "MCP initialize", ().serve(transport))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MCP initialize failed: {e}\nserver stderr:\n{}",
                    stderr.text()
                )
            });
        Server { client, stderr }
    }

    /// The default server: no arguments, no keys, so the embedded sandbox.
    pub async fn sandbox() -> Self {
        Self::start(&[], &[]).await
    }

    /// A server of `backend` ("stream" or "stripe") whose upstream is `base` and whose key is
    /// `key`, as Claude Desktop would configure it (the key and the URL in the environment), with
    /// [`QUICK_UPSTREAM`] settings unless `args` sets them, and `env` besides.
    pub async fn on_upstream(
        backend: &str,
        base: &str,
        key: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let (key_var, url_var) = match backend {
            "stream" => ("STREAM_API_KEY", "STREAM_BASE_URL"),
            "stripe" => ("STRIPE_API_KEY", "STRIPE_BASE_URL"),
            other => panic!("no upstream backend {other}"),
        };
        let mut all = vec!["--backend", backend];
        for (flag, value) in QUICK_UPSTREAM {
            if !args.contains(flag) {
                all.extend([*flag, *value]);
            }
        }
        all.extend_from_slice(args);
        let mut all_env = vec![(key_var, key), (url_var, base)];
        all_env.extend_from_slice(env);
        Self::start(&all, &all_env).await
    }

    /// The client's handle, for rmcp's own requests (resources, say).
    pub fn peer(&self) -> &Peer<RoleClient> {
        &self.client
    }

    /// What the server said at `initialize`.
    pub fn info(&self) -> Arc<ServerPeerInfo> {
        self.client.peer_info().expect("initialized")
    }

    /// The instructions the server gave at `initialize`.
    pub fn instructions(&self) -> String {
        self.info().instructions.clone().expect("instructions")
    }

    /// Everything the server wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The server's stderr, to await a log line.
    pub fn log(&self) -> &Log {
        &self.stderr
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
        super::try_call(&self.client, tool, args).await
    }

    /// `tools/call` that must get a result (successful or `isError`), not a JSON-RPC error;
    /// the result as it came.
    pub async fn result(&self, tool: &str, args: Value) -> CallToolResult {
        self.try_call(tool, args.clone()).await.unwrap_or_else(|e| {
            panic!("tools/call {tool} {args} failed at the protocol level: {e}")
        })
    }

    /// `tools/call`: `Ok(structuredContent)` or `Err(the envelope's "error")` (see
    /// [`super::outcome`]).
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Value> {
        super::call(&self.client, tool, args).await
    }

    /// `tools/call` that must fail at the JSON-RPC level; returns the JSON-RPC error.
    pub async fn rpc_error(&self, tool: &str, args: Value) -> ErrorData {
        match self.try_call(tool, args).await {
            Err(ServiceError::McpError(e)) => e,
            Err(other) => panic!("tools/call {tool}: expected a JSON-RPC error, got {other}"),
            Ok(r) => panic!("tools/call {tool}: expected a JSON-RPC error, got a result: {r:?}"),
        }
    }

    /// A successful call's `structuredContent`.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        self.call(tool, args.clone())
            .await
            .unwrap_or_else(|e| panic!("tools/call {tool} {args} returned an error: {e}"))
    }

    /// A failed call's error envelope body (the object under `error`).
    pub async fn err(&self, tool: &str, args: Value) -> Value {
        match self.call(tool, args.clone()).await {
            Err(e) => e,
            Ok(v) => panic!("tools/call {tool} {args} should fail, got {v}"),
        }
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
        self.shutdown().await;
        stderr.closed(EXIT_DEADLINE, "stderr EOF").await;
        stderr.text()
    }
}

// ---------------------------------------------------------------------------------------------
// Through raw pipes
// ---------------------------------------------------------------------------------------------

/// A child driven by hand: newline-delimited JSON-RPC written to stdin, stdout read line by line.
pub struct RawSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Log,
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
        let stderr = Log::drain(child.stderr.take().expect("stderr is piped"));
        RawSession {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// The child's stderr, to await a log line.
    pub fn log(&self) -> &Log {
        &self.stderr
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

    /// Sends `initialize`, reads its answer, sends `notifications/initialized`; returns the
    /// answer.
    pub async fn initialize(&mut self) -> Value {
        self.send(&[serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "raw-test", "version": "1"}},
        })])
        .await;
        let line = self.read_line().await.expect("initialize answered");
        let answer: Value = serde_json::from_str(&line).expect("a JSON answer");
        assert_eq!(answer["id"], 1, "{answer}");
        self.send(&[serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"})])
            .await;
        answer
    }

    /// The child's peak resident memory so far (`VmHWM`, Linux), in bytes; `None` elsewhere.
    pub fn peak_rss(&self) -> Option<u64> {
        super::http::peak_rss_of(self.child.id()?)
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
        self.stderr.closed(EXIT_DEADLINE, "stderr EOF").await;
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
    session.stderr.closed(EXIT_DEADLINE, "stderr EOF").await;
    RawEnd {
        status,
        stdout_lines: rest.lines().map(str::to_owned).collect(),
        stderr: session.stderr.text(),
    }
}
