//! The HTTP server under attack, with its limits set small by flags: clients that send their
//! request head or body a byte at a time, open TLS connections and never say hello, never read
//! their answers, or idle on kept-alive connections; too many connections from one address; a
//! flood of sessions; session calls dropped as soon as they are sent; a branch chosen against the
//! operator's key. Attacks that hold connections are held in place while an honest client is
//! served (`/healthz` and a tool call), then the attackers are checked to have been cut off.
//!
//! Attackers connect from other loopback addresses (127.0.0.2, ...) than the honest client
//! (127.0.0.1): the per-address caps are what keeps the honest client's share free.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rmcp::model::ClientConfig;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::http::*;
use crate::harness::{sha256_hex, temp_file, within};
use crate::mocks::stream::{self as stream_mock, MockStream};

/// The timeouts the attacks run against, in seconds.
const TIMEOUT: u64 = 2;
/// Generous bound on anything expected to take well under a second.
const ANSWERED: Duration = Duration::from_secs(5);
/// Bound on an attacker's connection being closed: five times the timeout that closes it.
const CUT_OFF: Duration = Duration::from_secs(5 * TIMEOUT);

/// A TCP connection to `server` from the local address `from` (any loopback address works).
async fn connect_from(from: &str, server: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse::<SocketAddr>().unwrap())
        .unwrap();
    socket
        .connect(server.addr.parse::<SocketAddr>().unwrap())
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection in time");
    got
}

/// Sends `bytes` one at a time, one every 200 ms, and keeps going until the server closes the
/// connection; returns what the server sent.
async fn drip_until_closed(mut stream: TcpStream, bytes: &'static [u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next = bytes.iter().cycle();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tokio::time::timeout(CUT_OFF, async {
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick() => {
                    let byte = [*next.next().unwrap()];
                    if stream.write_all(&byte).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await
    .expect("the server closed the dripping connection in time");
    got
}

/// Waits, without reading, until the peer has closed (FIN or RST) the connection.
async fn closed_without_reading(stream: &TcpStream, bound: Duration) {
    let fd = stream.as_raw_fd();
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the stream (and so the fd) outlives this call, which the
            // caller awaits before dropping it.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(closed, "the never-reading connection is still open");
}

/// Over the per-address cap: accepted by the kernel, then closed by the server at once (well
/// before any timeout could have closed it).
async fn assert_refused(from: &str, server: &Server) {
    let mut extra = connect_from(from, server).await;
    let started = Instant::now();
    let got = read_until_closed(&mut extra, ANSWERED).await;
    assert!(got.is_empty(), "a refused connection gets no answer");
    assert!(
        started.elapsed() < Duration::from_secs(TIMEOUT),
        "refused at accept, not timed out"
    );
}

/// The honest client: `/healthz` and a tool call over a session, each answered in time.
async fn honest_client_is_served(server: &Server) {
    let health = tokio::time::timeout(
        ANSWERED,
        raw_client()
            .get(format!("{}/healthz", server.root()))
            .send(),
    )
    .await
    .expect("/healthz answered")
    .unwrap();
    assert_eq!(health.status(), 200);
    let listed = tokio::time::timeout(ANSWERED, async {
        let c = client(&server.url(), Some("honest"), &[]).await;
        let products = call(&c, "list_products", json!({})).await;
        c.cancel().await.unwrap();
        products
    })
    .await
    .expect("the tool call answered")
    .unwrap();
    assert!(listed["data"].as_array().is_some_and(|d| !d.is_empty()));
}

fn attack_flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec![
        "--max-connections",
        "16",
        "--max-connections-per-client",
        "4",
    ];
    flags.extend_from_slice(extra);
    flags
}

const ATTACKERS: &[&str] = &["127.0.0.2", "127.0.0.3"];

#[tokio::test]
async fn slow_header_clients_are_cut_off_while_others_are_served() {
    let server = Server::start(&attack_flags(&["--header-read-timeout-secs", "2"]), &[]);
    let mut attacks = Vec::new();
    for from in ATTACKERS {
        for _ in 0..4 {
            let mut stream = connect_from(from, &server).await;
            stream
                .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .unwrap();
            let started = Instant::now();
            attacks.push(tokio::spawn(async move {
                let got = drip_until_closed(stream, b"X-Slow: 1\r\n").await;
                (got, started.elapsed())
            }));
        }
        // Every connection it may have is held: one more is refused.
        assert_refused(from, &server).await;
    }

    let started = Instant::now();
    honest_client_is_served(&server).await;
    // Served while the attackers were still connected, not after they were cut off: no attack
    // has seen its connection closed, and the server still counts every connection they hold
    // (one more from each address is still refused). The header-read timeout (2 s) is ten times
    // what serving the honest client takes.
    let honest = started.elapsed();
    assert!(
        attacks.iter().all(|a| !a.is_finished()),
        "an attacker was cut off before the honest client was served ({honest:?})"
    );
    for from in ATTACKERS {
        assert_refused(from, &server).await;
    }

    for attack in attacks {
        let (got, held) = attack.await.unwrap();
        assert!(
            held >= Duration::from_millis(1900),
            "closed after the header-read timeout, not before ({held:?})"
        );
        // hyper answers a head that timed out with 408, or just closes.
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[tokio::test]
async fn slow_body_clients_take_no_slot_and_are_cut_off() {
    // Eight bodies that never arrive against a process-wide cap of four requests in flight: a
    // slot is only taken once the body is in.
    let server = Server::start(
        &attack_flags(&[
            "--body-read-timeout-secs",
            "2",
            "--max-concurrent-requests",
            "4",
        ]),
        &[],
    );
    let mut attacks = Vec::new();
    for from in ATTACKERS {
        for _ in 0..4 {
            let mut stream = connect_from(from, &server).await;
            stream
                .write_all(
                    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":",
                )
                .await
                .unwrap();
            let started = Instant::now();
            attacks.push(tokio::spawn(async move {
                let got = drip_until_closed(stream, b" ").await;
                (got, started.elapsed())
            }));
        }
        assert_refused(from, &server).await;
    }

    honest_client_is_served(&server).await;

    for attack in attacks {
        let (got, held) = attack.await.unwrap();
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("request_timeout"), "{got}");
        assert!(
            held >= Duration::from_millis(1900),
            "cut off after the body-read timeout ({held:?})"
        );
    }
}

#[tokio::test]
async fn idle_tls_connections_cannot_hold_the_handshakes() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_file = temp_file(&cert.cert.pem());
    let key_file = temp_file(&cert.signing_key.serialize_pem());
    let server = Server::start(
        &attack_flags(&[
            "--tls-cert",
            cert_file.path().to_str().unwrap(),
            "--tls-key",
            key_file.path().to_str().unwrap(),
            "--tls-handshake-timeout-secs",
            "2",
        ]),
        &[],
    );
    assert_eq!(server.scheme, "https");
    // TCP connections that never send a ClientHello.
    let mut idle = Vec::new();
    for from in ATTACKERS {
        for _ in 0..4 {
            idle.push((connect_from(from, &server).await, Instant::now()));
        }
        assert_refused(from, &server).await;
    }

    let trusted = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([trusted])
        .timeout(ANSWERED)
        .build()
        .unwrap();
    let health = https
        .get(format!("{}/healthz", server.root()))
        .send()
        .await
        .expect("/healthz over TLS answered");
    assert_eq!(health.status(), 200);
    let listed = tokio::time::timeout(ANSWERED, async {
        let transport = StreamableHttpClientTransport::with_client(
            https.clone(),
            client_config(&server.url(), Some("honest"), &[]),
        );
        let c = rmcp::ServiceExt::serve(ClientConfig::default(), transport)
            .await
            .expect("MCP over TLS");
        let products = call(&c, "list_products", json!({})).await;
        c.cancel().await.unwrap();
        products
    })
    .await
    .expect("the tool call over TLS answered")
    .unwrap();
    assert!(listed["data"].is_array());

    for (mut stream, opened) in idle {
        let got = read_until_closed(&mut stream, CUT_OFF).await;
        assert!(got.is_empty());
        assert!(
            opened.elapsed() >= Duration::from_millis(1900),
            "closed by the handshake timeout"
        );
    }
}

#[tokio::test]
async fn answers_nobody_reads_are_dropped_with_their_connection() {
    let server = Server::start(&attack_flags(&["--write-timeout-secs", "2"]), &[]);
    // How much one answer weighs, to ask for enough of them to fill every buffer on the way.
    let one = raw_client()
        .get(format!("{}/metrics", server.root()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    assert!(one > 0);
    // 32 MiB of answers: more than the socket buffers of both ends can hold.
    let count = (32 << 20) / one + 1;
    let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut attackers = Vec::new();
    for from in ATTACKERS {
        for _ in 0..4 {
            let socket = TcpSocket::new_v4().unwrap();
            // A small window: the server's writes stall sooner.
            socket.set_recv_buffer_size(4096).unwrap();
            socket
                .bind(format!("{from}:0").parse::<SocketAddr>().unwrap())
                .unwrap();
            let stream = socket
                .connect(server.addr.parse::<SocketAddr>().unwrap())
                .await
                .unwrap();
            let (_, mut write) = stream.into_split();
            // Pipelined requests, written as fast as the server takes them; never a read.
            let writer = tokio::spawn(async move {
                for _ in 0..count {
                    if write.write_all(request).await.is_err() {
                        break;
                    }
                }
                write
            });
            attackers.push(writer);
        }
        assert_refused(from, &server).await;
    }

    honest_client_is_served(&server).await;

    for writer in attackers {
        // The writer stops when the server closes (or has sent everything); either way the
        // connection must then be closed by the server, unread answers and all.
        let write = tokio::time::timeout(CUT_OFF, writer)
            .await
            .expect("the server stopped taking requests")
            .unwrap();
        closed_without_reading(write.as_ref(), CUT_OFF).await;
    }
}

/// A raw `GET /healthz` from `from`: the status line.
async fn healthz_from(from: &str, server: &Server) -> String {
    let mut stream = connect_from(from, server).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut stream, ANSWERED).await;
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn connections_over_the_caps_are_refused_and_others_still_served() {
    let server = Server::start(
        &[
            "--max-connections-per-client",
            "4",
            "--header-read-timeout-secs",
            "60",
        ],
        &[],
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", &server).await);
    }
    assert_refused("127.0.0.2", &server).await;
    // Another address is not affected.
    assert_eq!(healthz_from("127.0.0.3", &server).await, "HTTP/1.1 200 OK");
    honest_client_is_served(&server).await;
    // A closed connection gives its place back (once the server has seen it close). The server
    // offers no event for that (it logs nothing when a client closes cleanly), so this polls,
    // within a bound.
    drop(held);
    let started = Instant::now();
    loop {
        let line = healthz_from("127.0.0.2", &server).await;
        if line == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(
            started.elapsed() < ANSWERED,
            "127.0.0.2 still refused after closing its connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The total cap: two connections from two addresses fill it; a third address is refused.
    let server = Server::start(
        &["--max-connections", "2", "--header-read-timeout-secs", "60"],
        &[],
    );
    let _a = connect_from("127.0.0.2", &server).await;
    let _b = connect_from("127.0.0.3", &server).await;
    assert_refused("127.0.0.4", &server).await;
}

#[tokio::test]
async fn kept_alive_connections_that_idle_are_closed() {
    let server = Server::start(&["--keep-alive-timeout-secs", "2"], &[]);
    let mut stream = connect_from("127.0.0.2", &server).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // The whole answer, then silence from the client.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(br#"{"status":"ok"}"#) {
        let n = tokio::time::timeout(ANSWERED, stream.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    let idle_from = Instant::now();
    let rest = read_until_closed(&mut stream, CUT_OFF).await;
    assert!(rest.is_empty());
    assert!(
        idle_from.elapsed() >= Duration::from_millis(1900),
        "closed by the keep-alive timeout, not before"
    );
}

/// `initialize` from `from` with `key`: the status.
async fn initialize_from(client: &reqwest::Client, url: &str, key: &str) -> u16 {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("authorization", format!("Bearer {key}"))
        .body(initialize_body().to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    status
}

#[tokio::test]
async fn a_session_flood_never_closes_another_tenants_session() {
    let server = Server::start(
        &[
            "--max-sessions",
            "8",
            "--max-sessions-per-tenant",
            "2",
            "--max-sessions-per-client",
            "4",
        ],
        &[],
    );
    let url = server.url();
    let victim = client(&url, Some("victim"), &[]).await;
    call(&victim, "list_products", json!({})).await.unwrap();

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let flood = reqwest::Client::builder()
            .local_address(from.parse::<std::net::IpAddr>().unwrap())
            .timeout(ANSWERED)
            .build()
            .unwrap();
        for _round in 0..4 {
            for k in 0..6 {
                let key = format!("flood-{from}-{k}");
                let status = initialize_from(&flood, &url, &key).await;
                *statuses.entry(status).or_default() += 1;
            }
        }
    }
    // Each flooding tenant rotated its own sessions (200), keys that came after their address
    // was full were refused (429), and once the table was full, so were brand-new tenants (503).
    assert!(statuses.get(&200).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(statuses.get(&429).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n > 0), "{statuses:?}");
    assert!(
        statuses.keys().all(|s| [200, 429, 503].contains(s)),
        "{statuses:?}"
    );

    // The victim's session was never closed: it still answers.
    let products = tokio::time::timeout(ANSWERED, call(&victim, "list_products", json!({})))
        .await
        .expect("the victim's call answered")
        .expect("the victim's session still works");
    assert!(products["data"].is_array());
    victim.cancel().await.unwrap();
}

/// Most requests at the mock at any instant, given that each is answered `delay` after it
/// arrived. A request the server abandons early only makes this count higher.
fn most_in_flight(arrivals: &[Instant], delay: Duration) -> usize {
    arrivals
        .iter()
        .map(|&t| {
            arrivals
                .iter()
                .filter(|&&a| a <= t && t < a + delay)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn dropped_session_calls_keep_their_slots_until_they_end() {
    const DELAY: Duration = Duration::from_secs(3);
    let mock = MockStream::start_any_key().await;
    for _ in 0..40 {
        mock.fault("GET", "/api/v2/products", stream_mock::Fault::Delay(DELAY));
    }
    let server = Server::start(
        &[
            "--backend",
            "stream",
            "--max-concurrent-per-tenant",
            "2",
            "--upstream-timeout-secs",
            "60",
            "--request-deadline-secs",
            "60",
        ],
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    let url = server.url();
    let init = post(&url, Some("dropper"), &[], &initialize_body()).await;
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        post(&url, Some("dropper"), &headers, &initialized)
            .await
            .status(),
        202
    );

    // Thirty calls, each hung up on as soon as its answer's head arrives.
    let (mut accepted, mut refused) = (0, 0);
    for id in 0..30 {
        let body = json!({"jsonrpc": "2.0", "id": 100 + id, "method": "tools/call",
            "params": {"name": "list_products", "arguments": {}}});
        let r = post(&url, Some("dropper"), &headers, &body).await;
        match r.status().as_u16() {
            200 => accepted += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
        drop(r);
    }
    assert!(accepted >= 2, "accepted {accepted}");
    assert!(refused > 0, "dropping the calls freed their slots");

    // Every accepted call reaches the mock (they run on without their callers).
    within(
        CUT_OFF,
        "every accepted call reaches the mock",
        mock.arrivals_reach(accepted),
    )
    .await;
    let arrivals: Vec<Instant> = mock
        .state
        .lock()
        .unwrap()
        .arrivals
        .iter()
        .filter(|(_, m, p)| m == "GET" && p.starts_with("/api/v2/products"))
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(arrivals.len(), accepted, "one upstream request per call");
    let most = most_in_flight(&arrivals, DELAY);
    assert!(
        most <= 2,
        "{most} upstream requests in flight for a limit of 2"
    );

    // And the slots come back once those calls end: each logs its line as it ends.
    mock.state.lock().unwrap().faults.clear();
    server
        .log()
        .wait_for_lines(DELAY * 5, "tool call", accepted)
        .await;
    // The slot is released just after the line is written, with no event of its own: a call
    // made in that instant may still be refused, so this retries, within a bound.
    let started = Instant::now();
    loop {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "list_products", "arguments": {}}});
        let r = post(&url, Some("dropper"), &headers, &body).await;
        if r.status() == 200 {
            let answer = rpc_answer(r).await;
            assert!(raw_outcome(&answer).is_ok(), "{answer}");
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(
            started.elapsed() < ANSWERED,
            "the dropped calls' slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn operator_mode_refuses_a_branch_of_the_callers_choosing() {
    const OPERATOR_BRANCH: &str = "0e1d2c3b-4a59-4687-9a5b-4c3d2e1f0a9b";
    const OTHER_BRANCH: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";
    let mock = MockStream::start("operator-key").await;
    let tokens = temp_file(&format!("{}\n", sha256_hex("access-op")));
    let server = Server::start(
        &[
            "--backend",
            "stream",
            "--access-tokens-file",
            tokens.path().to_str().unwrap(),
        ],
        &[
            ("STREAM_BASE_URL", &mock.uri()),
            ("STREAM_API_KEY", "operator-key"),
            ("STREAM_BRANCH_ID", OPERATOR_BRANCH),
        ],
    );
    for mode_headers in [
        // A session's initialize, and a stateless call of protocol 2026-07-28.
        (vec![], initialize_body()),
        (
            modern_headers("list_products"),
            modern_call_body(1, "list_products", json!({})),
        ),
    ] {
        let (mut headers, body) = mode_headers;
        headers.push(("x-stream-branch-id", OTHER_BRANCH));
        let r = post(&server.url(), Some("access-op"), &headers, &body).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["kind"], "validation");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("X-Stream-Branch-Id"), "{message}");
        assert!(!message.contains(OPERATOR_BRANCH), "{message}");
    }
    assert!(
        mock.requests().await.is_empty(),
        "nothing may reach Stream with a caller's branch"
    );
}
