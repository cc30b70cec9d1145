//! The binary as `paylink-mcp http` on 127.0.0.1:0 ([`Server`], the bound address read from its
//! log), driven by rmcp's streamable HTTP client ([`client`]) and by raw reqwest ([`post`],
//! [`stateless_call`]) where a test is about HTTP itself.

use std::collections::HashMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::ClientConfig;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

pub use super::call;
use super::{BIN, CALL_DEADLINE, EXIT_DEADLINE, Log, START_DEADLINE, within};

pub const ACCEPT: &str = "application/json, text/event-stream";

/// rmcp's streamable HTTP client, connected.
pub type Client = RunningService<RoleClient, ClientConfig>;

/// A running `paylink-mcp http`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub scheme: &'static str,
    stderr: Log,
}

/// How a run ended when it was expected to refuse to start.
pub struct Refusal {
    pub status: ExitStatus,
    pub stderr: String,
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    // A clean environment: no key of the developer's machine may leak into a test.
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("PAYLINK_LOG", "info,rmcp=warn")
        .arg("http")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The `http(s)://ADDR/mcp` of the start-up line, once it is complete. "listening on http":
/// the scheme too, because a warning logged before it ("listening on a non-loopback address
/// ...") also contains "listening on ".
fn listening_url(log: &str) -> Option<String> {
    let at = log.find("listening on http")?;
    let rest = &log[at + "listening on ".len()..];
    let line = &rest[..rest.find('\n')?];
    Some(line.split_whitespace().next()?.to_owned())
}

impl Server {
    /// Starts the server with `args` after `http` (default `--bind 127.0.0.1:0`).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        match Self::try_start(args, env) {
            Ok(s) => s,
            Err(r) => panic!("server did not start ({}): {}", r.status, r.stderr),
        }
    }

    /// Starts the server and waits for its start-up line, or for it to exit.
    pub fn try_start(args: &[&str], env: &[(&str, &str)]) -> Result<Server, Refusal> {
        let mut all: Vec<&str> = Vec::new();
        if !args.contains(&"--bind") {
            all.extend(["--bind", "127.0.0.1:0"]);
        }
        all.extend(args);
        let mut child = command(&all, env).spawn().expect("spawn paylink-mcp");
        let stderr = Log::drain_blocking(child.stderr.take().expect("stderr piped"));
        // The start-up line, or the end of stderr: the process exited without listening.
        let settled = stderr.wait_blocking(START_DEADLINE, |text, closed| {
            closed || listening_url(text).is_some()
        });
        if let Some(url) = listening_url(&stderr.text()) {
            let (scheme, tail) = url.split_once("://").expect("scheme in log");
            return Ok(Server {
                child,
                addr: tail.trim_end_matches("/mcp").to_owned(),
                scheme: if scheme == "https" { "https" } else { "http" },
                stderr,
            });
        }
        if !settled {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server did not start within {START_DEADLINE:?}:\n{}",
                stderr.text()
            );
        }
        let status = child.wait().expect("wait for the child");
        Err(Refusal {
            status,
            stderr: stderr.text(),
        })
    }

    /// Runs the binary expecting it to exit without listening.
    pub fn refuse(args: &[&str], env: &[(&str, &str)]) -> Refusal {
        match Self::try_start(args, env) {
            Ok(s) => panic!("server started on {} but should have refused", s.addr),
            Err(r) => r,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/mcp", self.scheme, self.addr)
    }

    pub fn root(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Everything the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The server's stderr, to await a log line.
    pub fn log(&self) -> &Log {
        &self.stderr
    }

    /// The server's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        peak_rss_of(self.child.id()).expect("VmHWM in the server's /proc status")
    }

    /// The sum of every series of `/metrics` whose name and labels start with `prefix`
    /// (`paylink_store_operations_total{op="idempotency_` sums that family's operations).
    pub async fn metric_sum(&self, prefix: &str) -> f64 {
        let text = raw_client()
            .get(format!("{}/metrics", self.root()))
            .send()
            .await
            .expect("metrics answered")
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of one series in the server's `/metrics` (labels as encoded, in order).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = raw_client()
            .get(format!("{}/metrics", self.root()))
            .send()
            .await
            .expect("metrics answered")
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Sends SIGTERM and waits for the exit (its stderr's end); `None` if it did not exit
    /// within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        if !self.stderr.wait_blocking(limit, |_, closed| closed) {
            return None;
        }
        let status = self.child.wait().expect("wait for the child");
        Some((status, started.elapsed()))
    }

    /// [`Server::terminate`] (within [`EXIT_DEADLINE`]), then the whole log.
    pub async fn stop_with_stderr(mut self) -> String {
        let log = self.stderr.clone();
        let ended = tokio::task::spawn_blocking(move || {
            let ended = self.terminate(EXIT_DEADLINE);
            drop(self);
            ended
        })
        .await
        .unwrap();
        assert!(ended.is_some(), "no exit after SIGTERM:\n{}", log.text());
        log.text()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peak resident memory (`VmHWM`) of process `pid`, in bytes; `None` without `/proc`.
pub fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
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

/// rmcp's streamable HTTP client, with a Bearer token (or none) and extra headers.
pub async fn client(url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Client {
    try_client(url, token, headers)
        .await
        .expect("client connects")
}

pub async fn try_client(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Client, String> {
    let config = client_config(url, token, headers);
    within(
        CALL_DEADLINE,
        "MCP initialize over HTTP",
        ClientConfig::default().serve(StreamableHttpClientTransport::from_config(config)),
    )
    .await
    .map_err(|e| e.to_string())
}

pub fn client_config(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> StreamableHttpClientTransportConfig {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(t) = token {
        config = config.auth_header(t.to_owned());
    }
    let custom: HashMap<http::HeaderName, http::HeaderValue> = headers
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect();
    config.custom_headers(custom)
}

/// Minimal create arguments: two of `product`.
pub fn create_args(name: &str, product: &str) -> Value {
    json!({"name": name, "items": [{"product_id": product, "quantity": 2}]})
}

thread_local! {
    /// One client per test thread (each `#[tokio::test]` has its own thread and runtime):
    /// building a client loads the TLS roots, too slow to do per request.
    static RAW: reqwest::Client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
}

/// A plain HTTP client for raw requests (no redirects, short timeouts).
pub fn raw_client() -> reqwest::Client {
    RAW.with(Clone::clone)
}

/// The `initialize` request of a legacy (session) client.
pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "1"}}})
}

/// POSTs a JSON-RPC message to `/mcp` with the MCP headers.
pub async fn post(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut req = raw_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request sent")
}

/// Reads a JSON-RPC answer that came as JSON or as SSE `data:` lines (the last JSON-RPC one).
pub async fn rpc_answer(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return v;
    }
    text.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("jsonrpc").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC message in: {text}"))
}

/// A tool call as a raw stateless request of protocol 2026-07-28 (no initialize).
pub fn modern_call_body(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": tool, "arguments": args,
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    }}})
}

/// The headers a 2026-07-28 client sends with a tools/call.
pub fn modern_headers(tool: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ]
}

/// The outcome of a raw tools/call answer, like [`call`].
pub fn raw_outcome(answer: &Value) -> Result<Value, Value> {
    let result = &answer["result"];
    assert!(result.is_object(), "not a result: {answer}");
    let result: rmcp::model::CallToolResult = serde_json::from_value(result.clone())
        .unwrap_or_else(|e| panic!("not a tool result ({e}): {answer}"));
    super::outcome(&result)
}

/// A stateless tool call with a Bearer token, answered with JSON: the quickest way to drive a
/// `--stateless` server from many tasks.
pub async fn stateless_call(
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    tool: &'static str,
    args: Value,
) -> Result<Value, Value> {
    let mut all = modern_headers(tool);
    all.extend_from_slice(headers);
    let response = post(url, Some(token), &all, &modern_call_body(7, tool, args)).await;
    assert_eq!(
        response.status(),
        200,
        "stateless call answered {}",
        response.status()
    );
    raw_outcome(&rpc_answer(response).await)
}
