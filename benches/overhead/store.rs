//! The shared store's run: stateless HTTP creates with idempotency keys at concurrency 64,
//! against a server keeping its keys in memory and one keeping them in Redis (a redis-server of
//! the benchmark's own, on loopback, no persistence), in the same run, alternated. Reports the
//! throughput of each, their ratio, and how many Redis round trips one create costs: counted by
//! Redis (`INFO commandstats`: scripts run, each one round trip) and by the server (the store
//! operations of `/metrics`). A third server adds the shared abuse limits (client and tenant
//! rates counted in Redis, set high enough never to refuse) to show what they cost.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use super::{ACCEPT, BIN, Latency, Load, PRODUCT, answer_of, latency, listening_url};

/// Creates per measured round, spread over the clients.
const CREATES: usize = 4000;
const CONCURRENCY: usize = 64;
/// Alternated rounds of each configuration.
const ROUNDS: usize = 2;

struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().expect("a data dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .args(["--dir", dir.path().to_str().expect("utf-8 path")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/redis-setup installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        loop {
            let line = lines
                .next()
                .expect("redis-server exited before it was ready")
                .expect("a log line");
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn cmd(&self, args: &[&str]) -> String {
        let client = redis::Client::open(self.url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the benchmark's redis-server");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        match cmd.query_async::<redis::Value>(&mut conn).await {
            Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(redis::Value::VerbatimString { text, .. }) => text,
            Ok(other) => format!("{other:?}"),
            Err(e) => panic!("redis {args:?}: {e}"),
        }
    }

    /// `calls` of `command` since the last `CONFIG RESETSTAT`.
    async fn calls(&self, command: &str) -> u64 {
        let info = self.cmd(&["INFO", "commandstats"]).await;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:")))
            .and_then(|s| s.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Server {
    child: Child,
    url: String,
    root: String,
}

impl Server {
    /// A stateless Stream server on `base`; `store` is a URL or `memory`; `rate` the per-minute
    /// limits (0: off).
    fn spawn(base: &str, store: &str, rate: &str) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "http",
                "--bind",
                "127.0.0.1:0",
                "--backend",
                "stream",
                "--stateless",
            ])
            .args(["--store", store])
            .args(["--new-tenants-per-minute", rate])
            .args(["--client-rate-limit-per-minute", rate])
            .args(["--rate-limit-per-minute", rate])
            .args(["--max-concurrent-per-client", "100000"])
            .args(["--max-concurrent-per-tenant", "100000"])
            .args(["--max-concurrent-requests", "100000"])
            .args(["--max-connections-per-client", "0"])
            .env_clear()
            .env("STREAM_BASE_URL", base)
            .env("PAYLINK_LOG", "warn,paylink_mcp::transport=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paylink-mcp http");
        let (url, lines) = listening_url(child.stderr.take().expect("stderr"));
        std::thread::spawn(move || for _ in lines {});
        let root = url.trim_end_matches("/mcp").to_owned();
        Server { child, url, root }
    }

    /// The sum of the `/metrics` series starting with `prefix`.
    async fn metric_sum(&self, prefix: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.root))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client: `n` creates, each with a fresh idempotency key (the happy path: no replay).
async fn creates(
    client: reqwest::Client,
    url: String,
    tag: String,
    n: usize,
) -> Vec<std::time::Duration> {
    let auth = format!("Bearer bench-{tag}");
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {
        "name": "create_payment_link",
        "arguments": {"name": "Bench", "items": [{"product_id": PRODUCT, "quantity": 2}],
            "idempotency_key": format!("{tag}-{i}")},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}
        }}});
        let t = Instant::now();
        let r = client
            .post(&url)
            .header("authorization", &auth)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "create_payment_link")
            .body(body.to_string())
            .send()
            .await
            .expect("tools/call");
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

/// `total` creates from `CONCURRENCY` clients, each its own tenant; keys unique per `round`.
async fn load(url: &str, round: &str, total: usize) -> Load {
    let client = reqwest::Client::new();
    let per = total / CONCURRENCY;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            tokio::spawn(creates(
                client.clone(),
                url.to_owned(),
                format!("{round}-{i}"),
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

/// What one configuration measured over its rounds.
struct Measured {
    rps: Vec<f64>,
    latencies: Vec<Latency>,
}

impl Measured {
    fn mean_rps(&self) -> f64 {
        self.rps.iter().sum::<f64>() / self.rps.len().max(1) as f64
    }
}

/// Runs the store benchmark against the mock at `base`; prints its table, returns its JSON.
pub fn run(base: &str, rt: &tokio::runtime::Runtime) -> Value {
    let redis = Redis::start();
    let memory = Server::spawn(base, "memory", "0");
    let shared = Server::spawn(base, &redis.url(), "0");
    let limited = Server::spawn(base, &redis.url(), "100000000");
    let servers = [
        ("memory", &memory),
        ("redis", &shared),
        ("redis+limits", &limited),
    ];
    // Warm-up: connections, the scripts loaded into Redis, the allocator.
    for (name, server) in &servers {
        rt.block_on(load(&server.url, &format!("warm-{name}"), 640));
    }
    let mut measured: Vec<Measured> = servers
        .iter()
        .map(|_| Measured {
            rps: Vec::new(),
            latencies: Vec::new(),
        })
        .collect();
    let mut per_create = (0.0, 0.0);
    for round in 0..ROUNDS {
        for (i, (name, server)) in servers.iter().enumerate() {
            let counting = *name == "redis" && round == 0;
            let ops_before = if counting {
                rt.block_on(redis.cmd(&["CONFIG", "RESETSTAT"]));
                rt.block_on(server.metric_sum("paylink_store_operations_total{"))
            } else {
                0.0
            };
            let l = rt.block_on(load(&server.url, &format!("r{round}-{name}"), CREATES));
            if counting {
                let evalsha = rt.block_on(redis.calls("evalsha")) as f64;
                let ops = rt.block_on(server.metric_sum("paylink_store_operations_total{"));
                per_create = (
                    evalsha / l.calls as f64,
                    (ops - ops_before) / l.calls as f64,
                );
            }
            measured[i].rps.push(l.rps);
            measured[i].latencies.push(l.latency);
        }
    }
    let limited_trips = {
        rt.block_on(redis.cmd(&["CONFIG", "RESETSTAT"]));
        let l = rt.block_on(load(&limited.url, "count-limited", 640));
        rt.block_on(redis.calls("evalsha")) as f64 / l.calls as f64
    };
    let memory_rps = measured[0].mean_rps();
    println!();
    println!(
        "store: stateless creates with idempotency keys, concurrency {CONCURRENCY}, {CREATES} per round, {ROUNDS} rounds alternated"
    );
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9}",
        "store", "rps", "vs memory", "p50 us", "p99 us"
    );
    let mut rows = Vec::new();
    for ((name, _), m) in servers.iter().zip(&measured) {
        let last = m.latencies.last().copied().unwrap_or(Latency {
            p50_us: 0.0,
            p99_us: 0.0,
        });
        let ratio = m.mean_rps() / memory_rps;
        println!(
            "{:<14} {:>9.0} {:>8.0}% {:>9.0} {:>9.0}",
            name,
            m.mean_rps(),
            ratio * 100.0,
            last.p50_us,
            last.p99_us
        );
        rows.push(json!({
            "store": name,
            "throughput_rps": m.mean_rps(),
            "rounds_rps": m.rps,
            "ratio_to_memory": ratio,
            "latency_last_round": last,
        }));
    }
    println!(
        "{:<34} {:>6.2} (INFO commandstats: evalsha per create), {:.2} (server: store operations per create)",
        "redis round trips per create", per_create.0, per_create.1
    );
    println!(
        "{:<34} {:>6.2} (evalsha per create, client and tenant rates counted in Redis)",
        "  with shared rate limits", limited_trips
    );
    json!({
        "concurrency": CONCURRENCY,
        "creates_per_round": CREATES,
        "rounds": ROUNDS,
        "rows": rows,
        "redis_to_memory_ratio": measured[1].mean_rps() / memory_rps,
        "redis_round_trips_per_create": per_create.0,
        "store_operations_per_create": per_create.1,
        "redis_round_trips_per_create_with_shared_limits": limited_trips,
    })
}
