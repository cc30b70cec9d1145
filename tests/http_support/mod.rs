//! Helpers of the HTTP transport tests: spawn the real binary on 127.0.0.1:0, read the bound
//! address from its log, talk to it with rmcp's streamable HTTP client and with raw reqwest.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

pub const COFFEE: &str = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";
pub const MUG: &str = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
pub const ESPRESSO: &str = "11111111-1111-4111-8111-111111111111";
pub const ACCEPT: &str = "application/json, text/event-stream";

/// A running `paylink-mcp http`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub scheme: &'static str,
    stderr: Arc<Mutex<String>>,
}

/// How a run ended when it was expected to refuse to start.
pub struct Refusal {
    pub status: ExitStatus,
    pub stderr: String,
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paylink-mcp"));
    // A clean environment: no key of the developer's machine may leak into a test.
    cmd.env_clear()
        .env("PAYLINK_LOG", "info,rmcp=warn")
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

impl Server {
    /// Starts the server with `args` after `http` (add `--bind`; default 127.0.0.1:0).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        match Self::try_start(args, env) {
            Ok(s) => s,
            Err(r) => panic!("server did not start ({}): {}", r.status, r.stderr),
        }
    }

    pub fn try_start(args: &[&str], env: &[(&str, &str)]) -> Result<Server, Refusal> {
        let mut all: Vec<&str> = Vec::new();
        if !args.contains(&"--bind") {
            all.extend(["--bind", "127.0.0.1:0"]);
        }
        all.extend(args);
        let mut child = command(&all, env).spawn().expect("spawn paylink-mcp");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr piped");
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    // "listening on http(s)://ADDR/mcp ...": the scheme too, because a warning
                    // logged before it ("listening on a non-loopback address ...") also
                    // contains "listening on ".
                    if let Some(at) = line.find("listening on http") {
                        let _ = tx.send(line[at + "listening on ".len()..].to_owned());
                    }
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(rest) = rx.recv_timeout(Duration::from_millis(50)) {
                // "https://127.0.0.1:PORT/mcp (backend ...)"
                let url = rest.split_whitespace().next().unwrap_or_default();
                let (scheme, tail) = url.split_once("://").expect("scheme in log");
                let addr = tail.trim_end_matches("/mcp").to_owned();
                return Ok(Server {
                    child,
                    addr,
                    scheme: if scheme == "https" { "https" } else { "http" },
                    stderr,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let stderr = stderr.lock().unwrap().clone();
                return Err(Refusal { status, stderr });
            }
            assert!(Instant::now() < deadline, "server did not start in time");
        }
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

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server process's id (to read its /proc entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status");
        kb * 1024
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

    /// Sends SIGTERM and waits for the exit; `None` if it did not exit within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rmcp's streamable HTTP client, with a Bearer token (or none) and extra headers.
pub async fn client(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> RunningService<RoleClient, ClientConfig> {
    try_client(url, token, headers)
        .await
        .expect("client connects")
}

pub async fn try_client(
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<RunningService<RoleClient, ClientConfig>, String> {
    let config = client_config(url, token, headers);
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
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

/// Calls a tool: `Ok(structuredContent)` or `Err(the error envelope's "error")`.
pub async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
    args: Value,
) -> Result<Value, Value> {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let result = client
        .call_tool(params)
        .await
        .expect("tool call transported");
    tool_outcome(
        result.is_error,
        result.structured_content,
        serde_json::to_value(&result.content).unwrap(),
    )
}

fn tool_outcome(
    is_error: Option<bool>,
    structured: Option<Value>,
    content: Value,
) -> Result<Value, Value> {
    if is_error == Some(true) {
        let text = content[0]["text"].as_str().unwrap_or_default();
        let v: Value = serde_json::from_str(text).unwrap_or(json!({"error": text}));
        Err(v["error"].clone())
    } else {
        Ok(structured.expect("structured content"))
    }
}

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
    tool_outcome(
        result["isError"].as_bool(),
        Some(result["structuredContent"].clone()).filter(|v| !v.is_null()),
        result["content"].clone(),
    )
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

/// Writes `text` to a new temporary file and returns it (kept alive by the caller).
pub fn temp_file(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
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
