//! A hostile or broken upstream, seen through the real binary over stdio: every malformed answer
//! ends in an envelope within the deadline, the server stays up, and neither the envelopes nor
//! stderr ever contain the key or its Base64 form, even echoed JSON-escaped or where a cut would
//! split it (nor does the audit log). A cancelled call aborts its upstream request. Odd
//! quantities show as null, and answers that would decode to hundreds of MiB are refused in
//! bounded memory.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::harness::stdio::{RawSession, Server};
use crate::harness::within;
use crate::mocks::stream::{ESPRESSO, Fault, MockStream};

const PAIR: &str = "hostile-key-7f3a:hostile-secret-9c1d";

fn token() -> String {
    base64::engine::general_purpose::STANDARD.encode(PAIR)
}

/// Deadline 5 s, attempts 2 s, one retry, debug logs.
async fn server_on(mock: &MockStream) -> Server {
    mock.stdio_with(PAIR, &["--max-retries", "1"], &[("PAYLINK_LOG", "debug")])
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
    session.initialize().await;
    session
        .send(&[
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

// ---------------------------------------------------------------------------------------------
// A key echoed back JSON-escaped, or at an offset where a cut would split it
// ---------------------------------------------------------------------------------------------

/// A Stream `key:secret` pair whose Base64 form ends in padding, made of characters that no
/// UUID, hex fingerprint or log word contains in a row.
const ECHO_PAIR: &str = "KqZvXw7Tgh:SzPq9VkRmY3L";
const ECHO_SECRET: &str = "SzPq9VkRmY3L";

/// Every character written as a `\uXXXX` escape, as JSON allows.
fn escaped(s: &str) -> String {
    s.chars().map(|c| format!("\\u{:04x}", c as u32)).collect()
}

/// Only the character at `at` escaped.
fn escaped_at(s: &str, at: usize) -> String {
    s.char_indices()
        .map(|(i, c)| {
            if i == at {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The forms of the echo key: the pair, its secret half, its Base64 header form with and
/// without padding.
fn echo_forms() -> Vec<String> {
    let token = base64::engine::general_purpose::STANDARD.encode(ECHO_PAIR);
    let unpadded = token.trim_end_matches('=').to_owned();
    vec![
        ECHO_PAIR.to_owned(),
        ECHO_SECRET.to_owned(),
        token,
        unpadded,
    ]
}

/// No run of 5 characters of any form of the key is in `text`. (Runs made only of characters
/// a UUID or hex id could hold are skipped: those could match by chance.)
fn assert_no_key_fragment(text: &str, what: &str) {
    for form in echo_forms() {
        for window in form.as_bytes().windows(5) {
            let window = std::str::from_utf8(window).unwrap();
            if window
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
            {
                continue;
            }
            assert!(
                !text.contains(window),
                "{what} holds `{window}`, a piece of the key form `{form}`:\n{text}"
            );
        }
    }
}

/// Stream echoes the key back in every way we have seen or can imagine: JSON-escaped (a
/// character at a time, or all of them) in error messages, codes, validation locations and a
/// 2xx answer's fields and metadata keys, and in a request-id header at offset 195 of a long
/// value (which used to be cut at 200 *before* scrubbing, leaking 5 characters). Through the
/// binary with debug logs and an audit log, no piece of the key, its secret half or its Base64
/// form reaches a tool result, stderr or the audit file.
#[tokio::test]
async fn a_key_echoed_escaped_or_at_an_offset_never_leaks() {
    let forms = echo_forms();
    let (pair, secret, token, unpadded) = (&forms[0], &forms[1], &forms[2], &forms[3]);
    let mock = MockStream::start(token).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let server = Server::start(
        &[
            "--backend",
            "stream",
            "--max-retries",
            "0",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        &[
            ("STREAM_API_KEY", ECHO_PAIR),
            ("STREAM_BASE_URL", &mock.uri()),
            ("PAYLINK_LOG", "debug"),
        ],
    )
    .await;
    let at_195 = |form: &str| format!("{}{form}{}", "r".repeat(195), "z".repeat(60));
    let error_body = leak(format!(
        r#"{{"error": {{"code": "{}{}", "message": "key {} (secret {}) sent as {} or {}; again: {}", "additional_info": {{"{}": "{}"}}}}}}"#,
        "C".repeat(60),
        escaped(token),
        escaped(pair),
        escaped_at(secret, 3),
        escaped_at(token, 0),
        escaped(unpadded),
        escaped_at(pair, pair.len() - 1),
        escaped(secret),
        escaped(token),
    ));
    let validation_body = leak(format!(
        r#"{{"detail": [{{"loc": ["body", "{}"], "msg": "{} is not {}", "type": "{}"}}]}}"#,
        escaped(token),
        escaped(pair),
        escaped_at(secret, 0),
        escaped(secret),
    ));
    let link_json = |id: &str| {
        format!(
            r#"{{"id": "{id}", "name": "{}", "description": "{}", "url": "https://pay.example/{}", "status": "ACTIVE", "currency": "SAR", "amount_in_smallest_unit": 100, "deactivate_message": "{}", "custom_metadata": {{"{}": "{}", "order": "{}"}}, "items": [{{"id": "i-1", "quantity": 1, "product": {{"id": "p", "name": "{}"}}}}]}}"#,
            escaped(pair),
            escaped_at(secret, 5),
            escaped(token),
            escaped(unpadded),
            escaped(token),
            escaped(secret),
            escaped_at(pair, 2),
            escaped(pair),
        )
    };
    let list_body = leak(format!(
        r#"{{"data": [{}], "pagination": {{"has_next_page": false}}}}"#,
        link_json("7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a")
    ));
    let created_body = leak(link_json(&format!("pl-{}", escaped(token))));

    let mut results = Vec::new();
    // A read refused with the key echoed in the body and in the request id.
    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::RawWithRequestId(401, "application/json", error_body, at_195(token)),
    );
    let refused = server.result("list_products", json!({})).await;
    let body = crate::harness::error_body(&refused);
    assert_eq!(body["kind"], "auth", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("key [redacted] (secret [redacted])"),
        "{body}"
    );
    let id = body["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 200, "{body}");
    assert!(
        id.starts_with(&"r".repeat(195)) && id.ends_with("[reda"),
        "{id}"
    );
    results.push(refused);

    // A successful read whose fields and metadata keys carry the key, escaped.
    mock.fault(
        "GET",
        "/api/v2/payment_links",
        Fault::Raw(200, "application/json", list_body),
    );
    let listed = server.result("list_payment_links", json!({})).await;
    assert_eq!(listed.is_error, Some(false), "{listed:?}");
    let first = &listed.structured_content.as_ref().unwrap()["data"][0];
    assert_eq!(first["name"], "[redacted]", "{first}");
    assert_eq!(first["metadata"]["[redacted]"], "[redacted]", "{first}");
    results.push(listed);

    // Writes, audited: refused by Stream's validation, refused as unauthorized, failed with a 500
    // (outcome unknown, then a recovery lookup), and created with the key in the link's id/url.
    let create = json!({"name": "Echo", "items": [{"product_id": ESPRESSO}]});
    for (status, body, id_form) in [
        (422, validation_body, pair),
        (401, error_body, secret),
        (500, error_body, token),
        (200, created_body, unpadded),
    ] {
        mock.fault(
            "POST",
            "/api/v2/payment_links",
            Fault::RawWithRequestId(status, "application/json", body, at_195(id_form)),
        );
        let result = server.result("create_payment_link", create.clone()).await;
        results.push(result);
    }
    let created = results.last().unwrap();
    assert_eq!(created.is_error, Some(false), "{created:?}");
    assert_eq!(
        created.structured_content.as_ref().unwrap()["id"],
        "pl-[redacted]"
    );

    for (i, result) in results.iter().enumerate() {
        assert_no_key_fragment(
            &serde_json::to_string(result).unwrap(),
            &format!("result {i}"),
        );
    }
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(audit_text.lines().count(), 4, "{audit_text}");
    assert!(audit_text.contains("[redacted]"), "{audit_text}");
    assert_no_key_fragment(&audit_text, "the audit log");
    // stderr read to its end once the server has exited: every log line is in.
    let stderr = server.shutdown_with_stderr().await;
    assert!(
        stderr.contains("tool call"),
        "debug logs were captured:\n{stderr}"
    );
    assert_no_key_fragment(&stderr, "stderr");
}

/// Two echoes that no scrub of the decoded answer can see, because the key only appears once
/// the server has formatted the error: an all-digit secret echoed as a number in exponent form
/// (`9.8765432e7`, which the field name shows as `[98765432.0]`), and a secret with dots echoed
/// in parts along a validation location (`["body", "Sz", "Pq9", "VkRm"]`, which the field name
/// joins with dots). The error is scrubbed once more at the edge, so neither the tool result, the
/// audit log nor stderr holds the secret.
#[tokio::test]
async fn a_key_reassembled_by_formatting_never_leaks() {
    for (pair, secret, loc) in [
        (
            "KqZvXw7Tgh:98765432",
            "98765432",
            r#"["body", 9.8765432e7]"#,
        ),
        (
            "KqZvXw7Tgh:Sz.Pq9.VkRm",
            "Sz.Pq9.VkRm",
            r#"["body", "Sz", "Pq9", "VkRm"]"#,
        ),
    ] {
        let token = base64::engine::general_purpose::STANDARD.encode(pair);
        let mock = MockStream::start(&token).await;
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.log");
        let server = Server::start(
            &[
                "--backend",
                "stream",
                "--max-retries",
                "0",
                "--audit-log",
                audit.to_str().unwrap(),
            ],
            &[
                ("STREAM_API_KEY", pair),
                ("STREAM_BASE_URL", &mock.uri()),
                ("PAYLINK_LOG", "debug"),
            ],
        )
        .await;
        let body = leak(format!(
            r#"{{"detail": [{{"loc": {loc}, "msg": "is not valid", "type": "value_error"}}]}}"#
        ));
        mock.fault(
            "POST",
            "/api/v2/payment_links",
            Fault::Raw(422, "application/json", body),
        );
        let create = json!({"name": "Echo", "items": [{"product_id": ESPRESSO}]});
        let result = crate::harness::try_call(server.peer(), "create_payment_link", create)
            .await
            .unwrap();
        let error = crate::harness::error_body(&result);
        assert_eq!(error["kind"], "validation", "{error}");
        assert!(
            error["field"].as_str().unwrap().contains("[redacted]"),
            "{error}"
        );
        let text = serde_json::to_string(&result).unwrap();
        assert!(
            !text.contains(secret),
            "the tool result holds {secret}: {text}"
        );
        let audit_text = std::fs::read_to_string(&audit).unwrap();
        assert!(!audit_text.is_empty());
        assert!(
            !audit_text.contains(secret),
            "the audit log holds {secret}: {audit_text}"
        );
        let stderr = server.shutdown_with_stderr().await;
        assert!(stderr.contains("tool call"), "{stderr}");
        assert!(!stderr.contains(secret), "stderr holds {secret}:\n{stderr}");
    }
}

/// Answers of 4 MiB (the body cap) that would decode to 64 MiB (`[0,0,...]`) or 333 MiB
/// (`[{"a":0},...]`) are refused before decoding: the server's peak resident memory stays within
/// a few body sizes of where it started, call after call. (Before the bound: +70 and +357 MiB.)
#[tokio::test]
async fn answers_that_would_decode_to_hundreds_of_mib_are_refused_within_bounded_memory() {
    let mock = MockStream::start("t").await;
    let mut session = RawSession::spawn(
        &["--backend", "stream", "--max-retries", "0"],
        &[("STREAM_API_KEY", "t"), ("STREAM_BASE_URL", &mock.uri())],
    );
    session.initialize().await;
    let Some(idle) = session.peak_rss() else {
        eprintln!("no /proc on this machine: skipped");
        return;
    };
    let body = |unit: &str| -> &'static str {
        let n = (4 * 1024 * 1024 - 2) / unit.len();
        let mut text = String::from("[");
        text.push_str(&unit.repeat(n));
        text.pop();
        text.push(']');
        leak(text)
    };
    let (zeros, objects) = (body("0,"), body("{\"a\":0},"));
    for (i, answer) in [zeros, objects, zeros, objects].into_iter().enumerate() {
        mock.fault(
            "GET",
            "/api/v2/products",
            Fault::Raw(200, "application/json", answer),
        );
        let id = 10 + i as u64;
        session
            .send(&[json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "list_products", "arguments": {}}})])
            .await;
        let line: Value = serde_json::from_str(&session.read_line().await.unwrap()).unwrap();
        assert_eq!(line["id"], id);
        let text = line["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("JSON too large to read"), "{text}");
    }
    let peak = session.peak_rss().unwrap();
    let grew = peak.saturating_sub(idle);
    eprintln!("peak RSS: idle {idle} bytes, after four 4 MiB answers {peak} (+{grew})");
    // The body (4 MiB) and the HTTP client's buffers; decoding would have added 64 to 333 MiB.
    assert!(grew < 32 * 1024 * 1024, "peak RSS grew by {grew} bytes");
    let end = session.close_and_wait().await;
    assert!(end.status.success(), "stderr:\n{}", end.stderr);
}
