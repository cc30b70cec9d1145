//! The overhead benchmark: what paylink-mcp adds on top of the payments API it proxies.
//!
//! Everything runs on 127.0.0.1 against a fast in-process mock of Stream's API. Every figure is
//! reported next to a floor measured in the same run: the same upstream request sent straight to
//! the mock with reqwest. Run with `cargo bench --bench overhead` (release build); it prints a
//! table and, last, one JSON line with every figure. The shared store's run (`store`) needs
//! `redis-server` on PATH (scripts/redis-setup installs it).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The shared store's run (Redis against memory).
#[path = "overhead/store.rs"]
mod store;

const BIN: &str = env!("CARGO_BIN_EXE_paylink-mcp");
const SEQUENTIAL_CALLS: usize = 1000;
const CONCURRENCIES: &[usize] = &[1, 8, 64];
/// Calls per HTTP measurement, spread over the clients.
const HTTP_CALLS: usize = 4000;
const TENANTS: usize = 10_000;
const COLD_STARTS: usize = 20;
const PRODUCT: &str = "11111111-1111-4111-8111-111111111111";
const LINK_ID: &str = "8b0c7c8e-5f1a-4d2b-9e3c-7a6b5c4d3e2f";

fn link_json() -> Value {
    json!({
        "id": LINK_ID, "name": "Bench", "status": "ACTIVE", "currency": "SAR",
        "url": format!("https://pay.example/l/{LINK_ID}"),
        "amount": "25.00", "original_amount": "25.00", "amount_collected": "0.00",
        "amount_in_smallest_unit": 2500, "original_amount_in_smallest_unit": 2500,
        "amount_collected_in_smallest_unit": 0, "created_at": "2026-11-23T10:00:00Z",
        "custom_metadata": {}, "items": [{
            "id": "0c1d2e3f-4a5b-4c6d-8e7f-8a9b0c1d2e3f", "product_id": PRODUCT, "quantity": 2,
            "original_amount": "25.00", "discounted_amount": "25.00",
            "original_amount_in_smallest_unit": 2500, "discounted_amount_in_smallest_unit": 2500,
            "currency": "SAR",
            "product": {"id": PRODUCT, "name": "Espresso", "type": "ONE_OFF", "prices": [{"currency": "SAR", "amount": "12.50", "is_active": true}]}
        }],
    })
}

/// The mock Stream upstream, on its own runtime thread so it never competes with the client's.
fn start_mock() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("mock runtime");
        rt.block_on(async move {
            let body = link_json().to_string();
            let created = body.clone();
            let app = Router::new()
                .route(
                    "/api/v2/payment_links",
                    post(move || {
                        let b = created.clone();
                        async move { ([("content-type", "application/json")], b) }
                    }),
                )
                .route(
                    "/api/v2/payment_links/{id}",
                    get(move || {
                        let b = body.clone();
                        async move { ([("content-type", "application/json")], b) }
                    }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(format!("http://{}", listener.local_addr().expect("addr")))
                .expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv().expect("mock address")
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    Latency {
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

fn floor(base: &str) -> (Latency, Latency) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let create_body =
            json!({"name": "Bench", "items": [{"product_id": PRODUCT, "quantity": 2}]}).to_string();
        let mut create = Vec::with_capacity(SEQUENTIAL_CALLS);
        let mut read = Vec::with_capacity(SEQUENTIAL_CALLS);
        for i in 0..SEQUENTIAL_CALLS + 50 {
            let t = Instant::now();
            let r = client
                .post(format!("{base}/api/v2/payment_links"))
                .header("x-api-key", "bench")
                .header("content-type", "application/json")
                .body(create_body.clone())
                .send()
                .await
                .expect("floor create");
            let _: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
            if i >= 50 {
                create.push(t.elapsed());
            }
            let t = Instant::now();
            let r = client
                .get(format!("{base}/api/v2/payment_links/{LINK_ID}"))
                .header("x-api-key", "bench")
                .send()
                .await
                .expect("floor get");
            let _: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
            if i >= 50 {
                read.push(t.elapsed());
            }
        }
        (latency(create), latency(read))
    })
}

struct StdioServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl StdioServer {
    fn spawn(base: &str) -> Self {
        let mut child = Command::new(BIN)
            .args(["--backend", "stream"])
            .env_clear()
            .env("STREAM_API_KEY", "bench")
            .env("STREAM_BASE_URL", base)
            .env("PAYLINK_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn paylink-mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        StdioServer {
            child,
            stdin,
            stdout,
            next_id: 1,
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let line =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        writeln!(self.stdin, "{line}").expect("write");
        self.stdin.flush().expect("flush");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("read");
        serde_json::from_str(&answer).expect("json-rpc answer")
    }

    fn initialize(&mut self) {
        let v = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        );
        assert!(v["result"]["serverInfo"].is_object(), "{v}");
        writeln!(
            self.stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .expect("write");
    }

    fn cpu_ticks(&self) -> u64 {
        proc_cpu_ticks(self.child.id())
    }

    fn vm_hwm_kib(&self) -> u64 {
        proc_vm_hwm_kib(self.child.id())
    }

    fn close(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
struct Load {
    rps: f64,
    latency: Latency,
    calls: usize,
}

/// The floor at concurrency `c`: `c` clients sending the upstream GET straight to the mock.
async fn floor_throughput(base: &str, c: usize) -> Load {
    let client = reqwest::Client::new();
    let per = HTTP_CALLS / c;
    let started = Instant::now();
    let tasks: Vec<_> = (0..c)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/api/v2/payment_links/{LINK_ID}");
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    let r = client
                        .get(&url)
                        .header("x-api-key", format!("floor-{i}"))
                        .send()
                        .await
                        .expect("floor get");
                    let _: Value =
                        serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("floor task"));
    }
    let secs = started.elapsed().as_secs_f64();
    Load {
        rps: all.len() as f64 / secs,
        calls: all.len(),
        latency: latency(all),
    }
}

const ACCEPT: &str = "application/json, text/event-stream";

fn modern_call(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": "get_payment_link", "arguments": {"payment_link_id": LINK_ID},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    }}})
    .to_string()
}

/// The JSON-RPC answer of a POST, sent as JSON or as SSE `data:` lines.
fn answer_of(text: &str) -> Value {
    serde_json::from_str::<Value>(text).ok().unwrap_or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("result").is_some() || v.get("error").is_some())
            .unwrap_or(Value::Null)
    })
}

/// One MCP client over HTTP with its own Bearer key (so its own tenant).
async fn http_client_calls(
    client: reqwest::Client,
    url: String,
    key: String,
    stateless: bool,
    n: usize,
) -> Vec<Duration> {
    let auth = format!("Bearer {key}");
    let mut session = None;
    if !stateless {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}});
        let r = client
            .post(&url)
            .header("authorization", &auth)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .body(init.to_string())
            .send()
            .await
            .expect("initialize");
        let id = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = r.text().await;
        let id = id.expect("a session id");
        let _ = client
            .post(&url)
            .header("authorization", &auth)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", "2025-06-18")
            .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .send()
            .await
            .expect("initialized");
        session = Some(id);
    }
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let mut req = client
            .post(&url)
            .header("authorization", &auth)
            .header("accept", ACCEPT)
            .header("content-type", "application/json");
        let body = match &session {
            Some(id) => {
                req = req
                    .header("mcp-session-id", id)
                    .header("mcp-protocol-version", "2025-06-18");
                json!({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {
                    "name": "get_payment_link", "arguments": {"payment_link_id": LINK_ID}}})
                .to_string()
            }
            None => {
                req = req
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "get_payment_link");
                modern_call(i as u64 + 1)
            }
        };
        let t = Instant::now();
        let r = req.body(body).send().await.expect("tools/call");
        let status = r.status();
        let text = r.text().await.expect("answer");
        lat.push(t.elapsed());
        let v = answer_of(&text);
        assert!(
            status.is_success() && v["result"]["isError"] == false,
            "{status}: {text}"
        );
    }
    lat
}

async fn http_load(url: &str, stateless: bool, c: usize) -> Load {
    let client = reqwest::Client::new();
    let per = HTTP_CALLS / c;
    // Sessions are opened before the clock starts: the load is the tool calls.
    let started = Instant::now();
    let tasks: Vec<_> = (0..c)
        .map(|i| {
            let key = format!("bench-{}-{c}-{i}", if stateless { "sl" } else { "ss" });
            tokio::spawn(http_client_calls(
                client.clone(),
                url.to_owned(),
                key,
                stateless,
                per,
            ))
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let secs = started.elapsed().as_secs_f64();
    Load {
        rps: all.len() as f64 / secs,
        calls: all.len(),
        latency: latency(all),
    }
}

/// `n` distinct Bearer keys, one stateless call each, 64 at a time: `n` tenants in the cache.
async fn many_tenants(url: &str, n: usize) {
    let client = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    http_client_calls(client.clone(), url.clone(), format!("tenant-{i}"), true, 1)
                        .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("tenant task");
    }
}

struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn spawn(base: &str, stateless: bool) -> Self {
        let mut args = vec![
            "http",
            "--bind",
            "127.0.0.1:0",
            "--backend",
            "stream",
            // The benchmark is one client address with thousands of keys: lift the abuse limits.
            "--new-tenants-per-minute",
            "0",
            "--client-rate-limit-per-minute",
            "0",
            "--rate-limit-per-minute",
            "0",
            "--max-concurrent-per-client",
            "100000",
            "--max-concurrent-per-tenant",
            "100000",
            "--max-concurrent-requests",
            "100000",
            "--max-connections-per-client",
            "0",
            "--max-sessions-per-client",
            "0",
        ];
        if stateless {
            args.push("--stateless");
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .env_clear()
            .env("STREAM_BASE_URL", base)
            .env("PAYLINK_LOG", "warn,paylink_mcp::transport=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paylink-mcp http");
        let (url, lines) = listening_url(child.stderr.take().expect("stderr"));
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        HttpServer { child, url }
    }

    fn cpu_ticks(&self) -> u64 {
        proc_cpu_ticks(self.child.id())
    }

    fn vm_hwm_kib(&self) -> u64 {
        proc_vm_hwm_kib(self.child.id())
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of /proc/PID/stat (12 and 13 after the command).
    fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

fn proc_vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks_per_sec() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; reading it needs libc.
    100.0
}

fn main() {
    // `cargo bench` passes `--bench`. `-- --instructions-only` runs only the callgrind part;
    // `--callgrind-floor` is this binary re-run as the floor's client under callgrind.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--callgrind-floor") {
        let n = |i: usize| args.get(at + i).and_then(|v| v.parse().ok()).unwrap_or(0);
        callgrind_floor_client(&args[at + 1], n(2), n(3));
        return;
    }
    let base = start_mock();
    if args.iter().any(|a| a == "--instructions-only") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("client runtime");
        let instructions = instructions_per_call(&base, &runtime);
        print_instructions(instructions.as_ref());
        println!("{}", json!({ "instructions_per_call": instructions }));
        return;
    }
    let (floor_create, floor_get) = floor(&base);

    let mut cold = Vec::with_capacity(COLD_STARTS);
    for _ in 0..COLD_STARTS {
        let started = Instant::now();
        let mut s = StdioServer::spawn(&base);
        s.initialize();
        cold.push(started.elapsed());
        s.close();
    }
    cold.sort();
    let cold_start_ms = cold[COLD_STARTS / 2].as_secs_f64() * 1e3;

    let mut s = StdioServer::spawn(&base);
    s.initialize();
    let idle_hwm_kib = s.vm_hwm_kib();
    let mut list = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let v = s.request("tools/list", json!({}));
        list.push(t.elapsed());
        assert!(v["result"]["tools"].is_array());
    }
    let tools_list = latency(list);

    let create_args = json!({"name": "create_payment_link", "arguments": {"name": "Bench", "items": [{"product_id": PRODUCT, "quantity": 2}]}});
    let get_args = json!({"name": "get_payment_link", "arguments": {"payment_link_id": LINK_ID}});
    for _ in 0..50 {
        s.request("tools/call", create_args.clone());
        s.request("tools/call", get_args.clone());
    }
    let cpu_before = s.cpu_ticks();
    let mut create = Vec::with_capacity(SEQUENTIAL_CALLS);
    let mut read = Vec::with_capacity(SEQUENTIAL_CALLS);
    for _ in 0..SEQUENTIAL_CALLS {
        let t = Instant::now();
        let v = s.request("tools/call", create_args.clone());
        create.push(t.elapsed());
        assert_eq!(v["result"]["isError"], false, "{v}");
        let t = Instant::now();
        let v = s.request("tools/call", get_args.clone());
        read.push(t.elapsed());
        assert_eq!(v["result"]["isError"], false, "{v}");
    }
    let cpu_ms_per_call = (s.cpu_ticks() - cpu_before) as f64 / clock_ticks_per_sec() * 1e3
        / (2 * SEQUENTIAL_CALLS) as f64;
    let after_hwm_kib = s.vm_hwm_kib();
    s.close();
    let stdio_create = latency(create);
    let stdio_get = latency(read);

    let http_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    let mut http_rows = Vec::new();
    let mut floors = Vec::new();
    for &c in CONCURRENCIES {
        floors.push((c, http_runtime.block_on(floor_throughput(&base, c))));
    }
    let mut after_load_hwm_kib = 0;
    let mut http_cpu_ms_per_call = 0.0;
    for stateless in [false, true] {
        let server = HttpServer::spawn(&base, stateless);
        for (c, floor) in &floors {
            let c = *c;
            let cpu_before = server.cpu_ticks();
            let load = http_runtime.block_on(http_load(&server.url, stateless, c));
            let cpu = (server.cpu_ticks() - cpu_before) as f64 / clock_ticks_per_sec() * 1e3;
            if stateless && c == 64 {
                http_cpu_ms_per_call = cpu / load.calls as f64;
                after_load_hwm_kib = server.vm_hwm_kib();
            }
            http_rows.push(json!({
                "mode": if stateless { "stateless" } else { "session" },
                "concurrency": c,
                "throughput_rps": load.rps,
                "floor_rps": floor.rps,
                "throughput_ratio": load.rps / floor.rps,
                "latency": load.latency,
                "floor_latency": floor.latency,
                "cpu_ms_per_call": cpu / load.calls as f64,
            }));
        }
        server.stop();
    }
    let store_report = store::run(&base, &http_runtime);
    let tenants = HttpServer::spawn(&base, true);
    let idle_http_hwm_kib = tenants.vm_hwm_kib();
    http_runtime.block_on(many_tenants(&tenants.url, TENANTS));
    let tenants_hwm_kib = tenants.vm_hwm_kib();
    tenants.stop();

    let instructions = instructions_per_call(&base, &http_runtime);

    let binary_bytes = std::fs::metadata(BIN).map(|m| m.len()).unwrap_or(0);
    println!("paylink-mcp overhead benchmark (release build, loopback, mock Stream upstream)");
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "measure", "p50", "p99", "vs floor p50"
    );
    let row = |name: &str, l: Latency, f: Option<Latency>| {
        let ratio = f
            .map(|f| {
                format!(
                    "{:.2}x (+{:.0} us)",
                    l.p50_us / f.p50_us,
                    l.p50_us - f.p50_us
                )
            })
            .unwrap_or_default();
        println!(
            "{:<34} {:>9.0} us {:>9.0} us {:>12}",
            name, l.p50_us, l.p99_us, ratio
        );
    };
    row("floor: reqwest POST create", floor_create, None);
    row("floor: reqwest GET link", floor_get, None);
    row(
        "stdio create_payment_link",
        stdio_create,
        Some(floor_create),
    );
    row("stdio get_payment_link", stdio_get, Some(floor_get));
    row("stdio tools/list", tools_list, None);
    println!(
        "{:<34} {:>9.2} ms (median of {COLD_STARTS})",
        "stdio cold start -> initialize", cold_start_ms
    );
    println!("{:<34} {:>9.3} ms", "server CPU per call", cpu_ms_per_call);
    println!(
        "{:<34} {:>9.1} MB idle, {:.1} MB after {} calls",
        "peak RSS (VmHWM)",
        idle_hwm_kib as f64 / 1024.0,
        after_hwm_kib as f64 / 1024.0,
        2 * SEQUENTIAL_CALLS
    );
    println!(
        "{:<34} {:>9.1} MB",
        "binary size (bench build)",
        binary_bytes as f64 / 1e6
    );
    println!();
    println!(
        "{:<10} {:>4} {:>9} {:>10} {:>6} {:>9} {:>9} {:>10} {:>8}",
        "http mode", "conc", "rps", "floor rps", "ratio", "p50 us", "p99 us", "floor p50", "cpu ms"
    );
    for r in &http_rows {
        println!(
            "{:<10} {:>4} {:>9.0} {:>10.0} {:>5.0}% {:>9.0} {:>9.0} {:>10.0} {:>8.3}",
            r["mode"].as_str().unwrap_or(""),
            r["concurrency"],
            r["throughput_rps"].as_f64().unwrap_or(0.0),
            r["floor_rps"].as_f64().unwrap_or(0.0),
            r["throughput_ratio"].as_f64().unwrap_or(0.0) * 100.0,
            r["latency"]["p50_us"].as_f64().unwrap_or(0.0),
            r["latency"]["p99_us"].as_f64().unwrap_or(0.0),
            r["floor_latency"]["p50_us"].as_f64().unwrap_or(0.0),
            r["cpu_ms_per_call"].as_f64().unwrap_or(0.0),
        );
    }
    println!(
        "{:<34} {:>9.3} ms (stateless, concurrency 64)",
        "http server CPU per call", http_cpu_ms_per_call
    );
    println!(
        "{:<34} {:>9.1} MB idle, {:.1} MB after the c=64 load, {:.1} MB with {TENANTS} tenants",
        "http peak RSS (VmHWM)",
        idle_http_hwm_kib as f64 / 1024.0,
        after_load_hwm_kib as f64 / 1024.0,
        tenants_hwm_kib as f64 / 1024.0
    );
    print_instructions(instructions.as_ref());
    let report = json!({
        "instructions_per_call": instructions,
        "floor": {"create": floor_create, "get": floor_get},
        "stdio": {
            "cold_start_ms_median": cold_start_ms,
            "tools_list": tools_list,
            "create": stdio_create,
            "get": stdio_get,
            "create_overhead_p50_us": stdio_create.p50_us - floor_create.p50_us,
            "get_overhead_p50_us": stdio_get.p50_us - floor_get.p50_us,
            "cpu_ms_per_call": cpu_ms_per_call,
            "vm_hwm_kib_idle": idle_hwm_kib,
            "vm_hwm_kib_after": after_hwm_kib,
        },
        "http": {
            "rows": http_rows,
            "cpu_ms_per_call_stateless_c64": http_cpu_ms_per_call,
            "vm_hwm_kib_idle": idle_http_hwm_kib,
            "vm_hwm_kib_after_c64": after_load_hwm_kib,
            "vm_hwm_kib_with_tenants": tenants_hwm_kib,
            "tenants": TENANTS,
        },
        "store": store_report,
        "binary_bytes": binary_bytes,
    });
    println!("{report}");
}

// Instructions per call, under callgrind: the stable figure beside the timings. This machine's
// timings move with whatever else runs on its cores; the instructions a call executes do not.
// Kept apart from `main`'s timed runs (and from their helpers) so that each can change alone.

/// Calls made before the counted ones, in both runs of a pair: the upstream connection, the
/// tenant, lazily built clients and caches are then in place, as they are in steady state.
const CG_WARM: usize = 20;
/// Calls counted: instructions per call = (I(warm + calls) - I(warm)) / calls, which takes
/// start-up, `initialize` and shutdown out of the figure.
const CG_CALLS: usize = 200;

/// Instructions per call (callgrind's `Ir`), each next to the floor: the same upstream request
/// sent by reqwest from a process of its own, counted the same way.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Instructions {
    stdio_create: f64,
    stdio_get: f64,
    stateless_get: f64,
    floor_create: f64,
    floor_get: f64,
}

/// valgrind's absolute path, if it is installed (the figures are skipped otherwise).
fn valgrind_path() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("valgrind"))
        .find(|p| p.is_file())
}

/// The server binary the callgrind runs use: `OVERHEAD_PROFILE_BIN` when set (a build with
/// symbols, for `callgrind_annotate`), else the benchmark's own.
fn cg_server_bin() -> String {
    std::env::var("OVERHEAD_PROFILE_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// `valgrind --tool=callgrind` writing to `out`, then `program`.
fn under_callgrind(valgrind: &std::path::Path, out: &std::path::Path, program: &str) -> Command {
    let mut cmd = Command::new(valgrind);
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(program)
        .env_clear();
    cmd
}

/// The total instruction count of a finished callgrind run.
fn callgrind_total(out: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(out).expect("callgrind output");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a callgrind total")
}

/// One stdio server under callgrind: `CG_WARM` creates and gets, then `creates` creates and
/// `gets` gets; its total instruction count once it has exited.
fn cg_stdio_run(
    valgrind: &std::path::Path,
    dir: &std::path::Path,
    base: &str,
    creates: usize,
    gets: usize,
) -> u64 {
    let out = dir.join(format!("stdio-{creates}-{gets}.out"));
    let mut child = under_callgrind(valgrind, &out, &cg_server_bin())
        .args(["--backend", "stream"])
        .env("STREAM_API_KEY", "bench")
        .env("STREAM_BASE_URL", base)
        .env("PAYLINK_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn paylink-mcp under callgrind");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut s = StdioServer {
        child,
        stdin,
        stdout,
        next_id: 1,
    };
    s.initialize();
    let create = json!({"name": "create_payment_link", "arguments": {"name": "Bench", "items": [{"product_id": PRODUCT, "quantity": 2}]}});
    let get = json!({"name": "get_payment_link", "arguments": {"payment_link_id": LINK_ID}});
    for _ in 0..CG_WARM {
        s.request("tools/call", create.clone());
        s.request("tools/call", get.clone());
    }
    for (args, n) in [(&create, creates), (&get, gets)] {
        for _ in 0..n {
            let v = s.request("tools/call", args.clone());
            assert_eq!(v["result"]["isError"], false, "{v}");
        }
    }
    s.close();
    callgrind_total(&out)
}

/// The stateless HTTP server's arguments: the abuse limits lifted as in [`HttpServer::spawn`].
const CG_HTTP_ARGS: &[&str] = &[
    "http",
    "--bind",
    "127.0.0.1:0",
    "--backend",
    "stream",
    "--stateless",
    "--new-tenants-per-minute",
    "0",
    "--client-rate-limit-per-minute",
    "0",
    "--rate-limit-per-minute",
    "0",
    "--max-connections-per-client",
    "0",
];

/// One stateless HTTP server under callgrind: `CG_WARM + gets` sequential `get_payment_link`
/// calls from one client (one tenant, one kept-alive connection); its total instruction count
/// once SIGTERM has stopped it.
fn cg_http_run(
    valgrind: &std::path::Path,
    dir: &std::path::Path,
    base: &str,
    runtime: &tokio::runtime::Runtime,
    gets: usize,
) -> u64 {
    let out = dir.join(format!("http-{gets}.out"));
    let mut child = under_callgrind(valgrind, &out, &cg_server_bin())
        .args(CG_HTTP_ARGS)
        .env("STREAM_BASE_URL", base)
        .env("PAYLINK_LOG", "warn,paylink_mcp::transport=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn paylink-mcp http under callgrind");
    let (url, lines) = listening_url(child.stderr.take().expect("stderr"));
    let drain = std::thread::spawn(move || for _ in lines {});
    runtime.block_on(async {
        let client = reqwest::Client::new();
        http_client_calls(client, url, "bench-cg".into(), true, CG_WARM + gets).await;
    });
    // SIGTERM, not SIGKILL: callgrind writes its counts when the process exits.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let _ = drain.join();
    callgrind_total(&out)
}

/// The floor under callgrind: this benchmark's own binary, re-run with `--callgrind-floor`,
/// sending `n` POSTs (`create`) or GETs straight to the mock with reqwest after `CG_WARM` of each.
fn cg_floor_run(
    valgrind: &std::path::Path,
    dir: &std::path::Path,
    base: &str,
    creates: usize,
    gets: usize,
) -> u64 {
    let out = dir.join(format!("floor-{creates}-{gets}.out"));
    let me = std::env::current_exe().expect("the benchmark's path");
    let status = under_callgrind(valgrind, &out, &me.to_string_lossy())
        .args([
            "--callgrind-floor",
            base,
            &creates.to_string(),
            &gets.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run the floor under callgrind");
    assert!(status.success(), "the floor run failed: {status}");
    callgrind_total(&out)
}

/// The floor process (`--callgrind-floor BASE CREATES GETS`): what [`floor`] sends, on the same
/// kind of runtime, `CG_WARM` of each first.
fn callgrind_floor_client(base: &str, creates: usize, gets: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let body =
            json!({"name": "Bench", "items": [{"product_id": PRODUCT, "quantity": 2}]}).to_string();
        let create = || async {
            let r = client
                .post(format!("{base}/api/v2/payment_links"))
                .header("x-api-key", "bench")
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("floor create");
            let _: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
        };
        let get = || async {
            let r = client
                .get(format!("{base}/api/v2/payment_links/{LINK_ID}"))
                .header("x-api-key", "bench")
                .send()
                .await
                .expect("floor get");
            let _: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
        };
        for _ in 0..CG_WARM {
            create().await;
            get().await;
        }
        for _ in 0..creates {
            create().await;
        }
        for _ in 0..gets {
            get().await;
        }
    });
}

/// Instructions per call for stdio creates and gets, stateless HTTP gets and the two floors;
/// `None` without valgrind. Callgrind's files are kept in `OVERHEAD_CALLGRIND_DIR` when set.
fn instructions_per_call(base: &str, runtime: &tokio::runtime::Runtime) -> Option<Instructions> {
    let valgrind = valgrind_path()?;
    let dir = tempfile::tempdir().expect("a directory for callgrind's files");
    let kept = std::env::var_os("OVERHEAD_CALLGRIND_DIR").map(std::path::PathBuf::from);
    let d = kept.as_deref().unwrap_or(dir.path());
    let per_call = |more: u64, less: u64| (more.saturating_sub(less)) as f64 / CG_CALLS as f64;
    let stdio_base = cg_stdio_run(&valgrind, d, base, 0, 0);
    let stdio_create = per_call(cg_stdio_run(&valgrind, d, base, CG_CALLS, 0), stdio_base);
    let stdio_get = per_call(cg_stdio_run(&valgrind, d, base, 0, CG_CALLS), stdio_base);
    let http_base = cg_http_run(&valgrind, d, base, runtime, 0);
    let stateless_get = per_call(
        cg_http_run(&valgrind, d, base, runtime, CG_CALLS),
        http_base,
    );
    let floor_base = cg_floor_run(&valgrind, d, base, 0, 0);
    let floor_create = per_call(cg_floor_run(&valgrind, d, base, CG_CALLS, 0), floor_base);
    let floor_get = per_call(cg_floor_run(&valgrind, d, base, 0, CG_CALLS), floor_base);
    Some(Instructions {
        stdio_create,
        stdio_get,
        stateless_get,
        floor_create,
        floor_get,
    })
}

/// The instruction rows of the printed table.
fn print_instructions(i: Option<&Instructions>) {
    let Some(i) = i else {
        println!("instructions per call: skipped (valgrind is not installed)");
        return;
    };
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "instructions per call (callgrind)", "paylink", "floor", "ratio"
    );
    for (name, ours, floor) in [
        ("stdio create_payment_link", i.stdio_create, i.floor_create),
        ("stdio get_payment_link", i.stdio_get, i.floor_get),
        (
            "stateless HTTP get_payment_link",
            i.stateless_get,
            i.floor_get,
        ),
    ] {
        println!(
            "{:<34} {:>11.0}k {:>11.0}k {:>11.2}x",
            name,
            ours / 1e3,
            floor / 1e3,
            ours / floor
        );
    }
}

/// Reads a starting `paylink-mcp http`'s stderr up to its `listening on URL` line: the URL, and
/// the rest of the lines (for the caller to keep draining, so the server never blocks on a full
/// pipe).
fn listening_url(
    stderr: std::process::ChildStderr,
) -> (String, std::io::Lines<BufReader<std::process::ChildStderr>>) {
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("stderr line");
        if let Some(at) = line.find("listening on ") {
            break line[at + "listening on ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    (url, lines)
}
