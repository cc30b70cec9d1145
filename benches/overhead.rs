//! The overhead benchmark: what paylink-mcp adds on top of the payments API it proxies.
//!
//! Everything runs on 127.0.0.1 against a fast in-process mock of Stream's API. Every figure is
//! reported next to a floor measured in the same run: the same upstream request sent straight to
//! the mock with reqwest. Run with `cargo bench --bench overhead` (release build); it prints a
//! table and, last, one JSON line with every figure.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_paylink-mcp");
const SEQUENTIAL_CALLS: usize = 1000;
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
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
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

    fn vm_hwm_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn close(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_sec() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; reading it needs libc.
    100.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let base = start_mock();
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
        "binary size",
        binary_bytes as f64 / 1e6
    );
    let report = json!({
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
        "binary_bytes": binary_bytes,
    });
    println!("{report}");
}
