//! A hostile or broken upstream, seen through the real binary over stdio: every malformed answer
//! ends in an envelope within the deadline, the server stays up, and neither the envelopes nor
//! stderr ever contain the key or its Base64 form. A cancelled call aborts its upstream request.

mod common;
#[path = "mocks/stream.rs"]
mod stream_mock;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{RawSession, Server, within};
use serde_json::{Value, json};
use stream_mock::{Fault, MockStream};
use tokio::io::AsyncReadExt;

const PAIR: &str = "hostile-key-7f3a:hostile-secret-9c1d";
const ESPRESSO: &str = "11111111-1111-4111-8111-111111111111";

fn token() -> String {
    base64::engine::general_purpose::STANDARD.encode(PAIR)
}

async fn server_on(mock: &MockStream) -> Server {
    Server::start(
        &[
            "--backend",
            "stream",
            "--request-deadline-secs",
            "5",
            "--upstream-timeout-secs",
            "2",
            "--max-retries",
            "1",
        ],
        &[
            ("STREAM_API_KEY", PAIR),
            ("STREAM_BASE_URL", &mock.uri()),
            ("PAYLINK_LOG", "debug"),
        ],
    )
    .await
}

fn assert_no_secret(text: &str, what: &str) {
    let token = token();
    for secret in [PAIR, "hostile-secret-9c1d", token.as_str()] {
        assert!(
            !text.contains(secret),
            "{what} contains a secret form `{secret}`:\n{text}"
        );
    }
}

#[tokio::test]
async fn every_malformed_answer_is_an_envelope_and_nothing_leaks() {
    let mock = MockStream::start(&token()).await;
    let server = server_on(&mock).await;
    let huge: &'static str =
        Box::leak(format!("{{\"data\": \"{}\"}}", "x".repeat(5 * 1024 * 1024)).into_boxed_str());
    let echo: &'static str = Box::leak(
        format!(
            r#"{{"error": {{"code": "UNAUTHORIZED", "message": "key {} (secret {}) is not valid; header was {}"}}}}"#,
            PAIR,
            "hostile-secret-9c1d",
            token()
        )
        .into_boxed_str(),
    );
    let cases: Vec<(&str, Fault, &str)> = vec![
        (
            "malformed JSON",
            Fault::Raw(200, "application/json", "{\"data\": [tru"),
            "malformed JSON",
        ),
        (
            "HTML error page",
            Fault::Raw(
                502,
                "text/html",
                "<html><body>502 Bad Gateway</body></html>",
            ),
            "text/html",
        ),
        (
            "empty body",
            Fault::Raw(500, "application/json", ""),
            "empty body",
        ),
        (
            "wrong content type",
            Fault::Raw(200, "text/plain", "{\"data\": []}"),
            "text/plain",
        ),
        (
            "key echoed back",
            Fault::Raw(401, "application/json", echo),
            "[redacted]",
        ),
        (
            "huge body",
            Fault::Raw(200, "application/json", huge),
            "larger than",
        ),
    ];
    for (what, fault, expect) in cases {
        // Enough copies that retries see the same answer.
        for _ in 0..3 {
            mock.fault("GET", "/api/v2/products", fault.clone());
        }
        let started = Instant::now();
        let body = server.err("list_products", json!({})).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: within the deadline"
        );
        let text = body.to_string();
        assert!(
            text.contains(expect),
            "{what}: expected `{expect}` in {text}"
        );
        assert_no_secret(&text, what);
        mock.state.lock().unwrap().faults.clear();
        // The server is still up and answering.
        let ok = server.ok("list_products", json!({"limit": 1})).await;
        assert_eq!(
            ok["data"].as_array().unwrap().len(),
            1,
            "{what}: server still serves"
        );
    }
    // Same for a create, whose body is built by us.
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Raw(401, "application/json", echo),
    );
    let body = server
        .err(
            "create_payment_link",
            json!({"name": "x", "items": [{"product_id": ESPRESSO}]}),
        )
        .await;
    assert_eq!(body["kind"], "auth");
    assert_no_secret(&body.to_string(), "create envelope");
    assert_no_secret(&server.stderr(), "stderr");
    server.shutdown().await;
}

/// A TCP server that accepts, reads the request, never answers, and reports when the client
/// closed the connection.
async fn silent_upstream() -> (
    String,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_request, got_request_rx) = tokio::sync::oneshot::channel();
    let (closed, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let _ = socket.read(&mut buf).await;
        let _ = got_request.send(());
        // Wait for EOF (or a reset): the client gave up on the request.
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let _ = closed.send(());
    });
    (format!("http://{addr}"), got_request_rx, closed_rx)
}

#[tokio::test]
async fn a_cancelled_call_aborts_its_upstream_request() {
    let (base, got_request, closed) = silent_upstream().await;
    let mut session = RawSession::spawn(
        &[
            "--backend",
            "stream",
            "--upstream-timeout-secs",
            "60",
            "--request-deadline-secs",
            "60",
        ],
        &[("STREAM_API_KEY", "t"), ("STREAM_BASE_URL", &base)],
    );
    session
        .send(&[
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        ])
        .await;
    let init: Value = serde_json::from_str(&session.read_line().await.unwrap()).unwrap();
    assert_eq!(init["id"], 1);
    session
        .send(&[
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_products", "arguments": {}}}),
        ])
        .await;
    within(
        Duration::from_secs(10),
        "the upstream request arrives",
        got_request,
    )
    .await
    .unwrap();
    session
        .send(&[json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2, "reason": "user gave up"}})])
        .await;
    within(
        Duration::from_secs(10),
        "the upstream connection closes after the cancellation (not after the 60 s timeout)",
        closed,
    )
    .await
    .unwrap();
    let end = session.close_and_wait().await;
    assert!(end.status.success(), "stderr:\n{}", end.stderr);
}

/// Odd quantities in Stream's answer (missing, negative, zero, above u32, a fraction, a word)
/// reach the caller as `null` quantity and `null` unit price through the real binary, never as
/// 1 × the line's total; readable ones are shown as they are.
#[tokio::test]
async fn odd_stream_quantities_are_shown_as_null() {
    let mock = MockStream::start(&token()).await;
    let server = server_on(&mock).await;
    let link = server
        .ok(
            "create_payment_link",
            json!({"name": "Odd", "items": [{"product_id": ESPRESSO}]}),
        )
        .await;
    let id = link["id"].as_str().unwrap().to_owned();
    let cases: Vec<(&str, Option<Value>)> = vec![
        ("missing", None),
        ("negative", Some(json!(-3))),
        ("above u32", Some(json!(5_000_000_000u64))),
        ("fraction", Some(json!(2.5))),
        ("word", Some(json!("lots"))),
        ("zero", Some(json!(0))),
        ("readable", Some(json!(4))),
    ];
    {
        // As a dashboard (or a broken upstream) could store it: 500,000,000.00 SAR per line, and
        // no product prices, so the unit price can only come from the quantity.
        let mut state = mock.state.lock().unwrap();
        let stored = state
            .links
            .iter_mut()
            .find(|l| l["id"] == id.as_str())
            .unwrap();
        let template = stored["items"][0].clone();
        let items: Vec<Value> = cases
            .iter()
            .enumerate()
            .map(|(i, (_, q))| {
                let mut item = template.clone();
                item["id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
                item["original_amount"] = json!("500000000.00");
                item["original_amount_in_smallest_unit"] = json!(50_000_000_000i64);
                item["discounted_amount"] = json!("500000000.00");
                item["discounted_amount_in_smallest_unit"] = json!(50_000_000_000i64);
                item["product"]["prices"] = json!([]);
                item["product"]["price"] = Value::Null;
                match q {
                    Some(q) => item["quantity"] = q.clone(),
                    None => {
                        item.as_object_mut().unwrap().remove("quantity");
                    }
                }
                item
            })
            .collect();
        stored["items"] = json!(items);
    }
    let page = server
        .ok(
            "list_line_items",
            json!({"payment_link_id": id, "limit": 20}),
        )
        .await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), cases.len(), "{page}");
    for ((what, _), item) in cases.iter().zip(data) {
        assert_eq!(item["total"]["amount"], "500000000.00", "{what}: {item}");
        if *what == "readable" {
            assert_eq!(item["quantity"], 4, "{item}");
            assert_eq!(item["unit_amount"]["amount"], "125000000.00", "{item}");
            continue;
        }
        let expected_quantity = if *what == "zero" {
            json!(0)
        } else {
            Value::Null
        };
        assert_eq!(item["quantity"], expected_quantity, "{what}: {item}");
        assert_eq!(item["unit_amount"], Value::Null, "{what}: {item}");
    }
    server.shutdown().await;
}
