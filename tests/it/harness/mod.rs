//! The one harness of the integration tests: the real `paylink-mcp` binary, spawned as a child
//! process and driven the way a client drives it.
//!
//! - [`stdio`]: over stdin/stdout, behind rmcp's real client ([`stdio::Server`]) or raw pipes
//!   ([`stdio::RawSession`], [`stdio::run_until_exit`]);
//! - [`http`]: `paylink-mcp http` on 127.0.0.1 ([`http::Server`]), driven by rmcp's streamable HTTP
//!   client ([`http::client`]) or raw reqwest ([`http::post`]);
//! - [`redis`]: a redis-server of the test's own for the shared store ([`redis::Redis`]).
//!
//! Both read a tool's outcome the same way ([`call`], [`outcome`]): `Ok(structuredContent)` or
//! `Err(the error envelope's "error" object)`, after checking the shapes every client relies on.
//! Upstreams are played by the mocks in `crate::mocks`, on 127.0.0.1.
//!
//! Every child gets a controlled environment: `env_clear()`, then `PATH`, then exactly the
//! variables a test passes. So a developer's own `STREAM_API_KEY` or `PAYLINK_*` settings can never
//! change what a test sees, and the default backend is the embedded sandbox.
//!
//! Nothing here sleeps: waiting is on an event (a log line, EOF, a process exit), wrapped in a
//! generous deadline so that a hung server fails the test instead of hanging it.

pub mod http;
pub mod redis;
pub mod stdio;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{Peer, ServiceError};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The binary under test, built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_paylink-mcp");

/// Upper bound for one request/response exchange. Generous: only a hung server reaches it.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Upper bound for the process to exit once it has a reason to (stdin closed, bad configuration,
/// SIGTERM).
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// Upper bound for a server to start listening (a debug build on a busy machine).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// Where the sandbox's checkout pages live: `<prefix><link id>`, on an RFC 6761 `.invalid` host
/// that can never resolve.
pub const SANDBOX_URL_PREFIX: &str = "https://sandbox.paylink.invalid/pay/";

/// Seeded sandbox products (stable ids): Arabica beans, SAR 89.00 (USD 23.75).
pub const COFFEE: &str = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";
/// The seeded ceramic mug: SAR 35.50, KWD 2.950.
pub const MUG: &str = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";

/// A v4 UUID that names nothing in the sandbox.
pub const UNKNOWN_V4: &str = "11111111-2222-4333-8444-555555555555";

/// Awaits `fut`, failing the test with `what` if it takes longer than `deadline`.
pub async fn within<T>(deadline: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(deadline, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {deadline:?}: {what}"),
    }
}

/// A command for the binary with a controlled environment: only `PATH` and `env`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
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

// ---------------------------------------------------------------------------------------------
// A child's log
// ---------------------------------------------------------------------------------------------

/// Everything a child writes to one pipe (its stderr: the logs), collected in the background so
/// the pipe never fills up, with ways to await a line or the pipe's end (the process's exit).
#[derive(Clone, Default)]
pub struct Log(Arc<LogInner>);

#[derive(Default)]
struct LogInner {
    state: Mutex<LogState>,
    /// Wakes blocking waiters ([`Log::wait_blocking`]).
    changed: Condvar,
    /// Wakes async waiters ([`Log::wait_for`]): bumped on every change.
    generation: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct LogState {
    bytes: Vec<u8>,
    /// The complete lines in `bytes`, kept as they arrive so that waiters need not re-split.
    lines: Vec<String>,
    /// Where the line being written starts in `bytes`.
    line_start: usize,
    closed: bool,
}

impl Log {
    /// Starts draining `pipe` on the runtime; the log closes at EOF.
    pub fn drain(mut pipe: impl AsyncRead + Unpin + Send + 'static) -> Self {
        let log = Log::default();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.push(&buf[..n]);
            }
            sink.close();
        });
        log
    }

    /// Starts draining `pipe` on a thread of its own (for a `std::process` child).
    pub fn drain_blocking(mut pipe: impl std::io::Read + Send + 'static) -> Self {
        let log = Log::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.push(&buf[..n]);
            }
            sink.close();
        });
        log
    }

    fn update(&self, f: impl FnOnce(&mut LogState)) {
        f(&mut self.0.state.lock().unwrap());
        self.0.changed.notify_all();
        self.0.generation.send_modify(|g| *g += 1);
    }

    fn push(&self, bytes: &[u8]) {
        self.update(|s| {
            s.bytes.extend_from_slice(bytes);
            while let Some(end) = s.bytes[s.line_start..].iter().position(|&b| b == b'\n') {
                let line = &s.bytes[s.line_start..s.line_start + end];
                let line = String::from_utf8_lossy(line)
                    .trim_end_matches('\r')
                    .to_owned();
                s.lines.push(line);
                s.line_start += end + 1;
            }
        });
    }

    fn close(&self) {
        self.update(|s| s.closed = true);
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.state.lock().unwrap().bytes).into_owned()
    }

    /// Whether the pipe has ended (the process has exited, or closed it).
    pub fn is_closed(&self) -> bool {
        self.0.state.lock().unwrap().closed
    }

    /// Waits until `ready(complete lines)` holds; returns those lines. Fails the test after
    /// `deadline`, or if the pipe ends first.
    pub async fn wait_for(
        &self,
        deadline: Duration,
        what: &str,
        ready: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let mut changes = self.0.generation.subscribe();
        within(deadline, what, async {
            loop {
                changes.borrow_and_update();
                {
                    let state = self.0.state.lock().unwrap();
                    if ready(&state.lines) {
                        return state.lines.clone();
                    }
                    if state.closed {
                        panic!(
                            "the log ended before {what}:\n{}",
                            String::from_utf8_lossy(&state.bytes)
                        );
                    }
                }
                let _ = changes.changed().await;
            }
        })
        .await
    }

    /// Waits until `count` complete lines contain `needle` (each line is looked at once, so
    /// that thousands of lines cost no more than reading them).
    pub async fn wait_for_lines(&self, deadline: Duration, needle: &str, count: usize) {
        let mut changes = self.0.generation.subscribe();
        let (mut seen, mut found) = (0, 0);
        within(
            deadline,
            &format!("{count} log lines with `{needle}`"),
            async {
                loop {
                    changes.borrow_and_update();
                    {
                        let state = self.0.state.lock().unwrap();
                        found += state.lines[seen..]
                            .iter()
                            .filter(|l| l.contains(needle))
                            .count();
                        seen = state.lines.len();
                        if found >= count {
                            return;
                        }
                        if state.closed {
                            panic!(
                                "the log ended with {found} of {count} lines with `{needle}`:\n{}",
                                String::from_utf8_lossy(&state.bytes)
                            );
                        }
                    }
                    let _ = changes.changed().await;
                }
            },
        )
        .await
    }

    /// Waits until the pipe ends: the process has exited.
    pub async fn closed(&self, deadline: Duration, what: &str) {
        let mut changes = self.0.generation.subscribe();
        within(deadline, what, async {
            loop {
                changes.borrow_and_update();
                if self.is_closed() {
                    return;
                }
                let _ = changes.changed().await;
            }
        })
        .await;
    }

    /// Blocks until `ready(text, closed)` holds or `deadline` passes; returns whether it held.
    pub fn wait_blocking(&self, deadline: Duration, ready: impl Fn(&str, bool) -> bool) -> bool {
        let until = Instant::now() + deadline;
        let mut state = self.0.state.lock().unwrap();
        loop {
            if ready(&String::from_utf8_lossy(&state.bytes), state.closed) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.0.changed.wait_timeout(state, left).unwrap().0;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tool outcomes, as every client reads them
// ---------------------------------------------------------------------------------------------

/// `tools/call` through any rmcp client (stdio or HTTP), returning the protocol-level outcome.
pub async fn try_call(
    peer: &Peer<RoleClient>,
    tool: &str,
    args: Value,
) -> Result<CallToolResult, ServiceError> {
    let args = match args {
        Value::Object(map) => map,
        other => panic!("tool arguments must be a JSON object, got {other}"),
    };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
    within(
        CALL_DEADLINE,
        &format!("tools/call {tool}"),
        peer.call_tool(params),
    )
    .await
}

/// `tools/call` that must get a result (successful or `isError`), not a JSON-RPC error:
/// `Ok(structuredContent)` or `Err(the envelope's "error")`, see [`outcome`].
pub async fn call(peer: &Peer<RoleClient>, tool: &str, args: Value) -> Result<Value, Value> {
    let result = try_call(peer, tool, args.clone())
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool} {args} failed at the protocol level: {e}"));
    outcome(&result)
}

/// A tool result read as a client does: `Ok(structuredContent)`, after checking that its one
/// text block carries the same JSON (for clients that only read text), or `Err(the error
/// envelope's "error" object)`, after checking the envelope's shape (see [`error_body`]).
pub fn outcome(result: &CallToolResult) -> Result<Value, Value> {
    if result.is_error == Some(true) {
        return Err(error_body(result));
    }
    let structured = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("no structuredContent in {result:?}"));
    let text = texts(result);
    assert_eq!(text.len(), 1, "one text block mirrors the result: {text:?}");
    let mirrored: Value = serde_json::from_str(&text[0]).expect("the text block is JSON");
    assert_eq!(mirrored, structured, "text and structured content agree");
    Ok(structured)
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
    envelope_body(&text[0])
}

/// [`error_body`] of an envelope's text.
pub fn envelope_body(text: &str) -> Value {
    let envelope: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("error text is not JSON ({e}): {text}"));
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

// ---------------------------------------------------------------------------------------------
// Small builders
// ---------------------------------------------------------------------------------------------

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

/// Writes `text` to a new temporary file and returns it (kept alive by the caller).
pub fn temp_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// SHA-256 hex of `s`, as the access-token file holds it.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprint that names a key in logs, audit lines and metrics: the first 12 hex digits
/// of its SHA-256 (documented; recomputed here so that a change of it is a visible change).
pub fn fingerprint(key: &str) -> String {
    sha256_hex(key)[..12].to_owned()
}
