//! `paylink-mcp http` as a client sees it: the real binary on 127.0.0.1, rmcp's streamable HTTP
//! client and raw requests. Sessions, stateless mode, 2026-07-28 clients, the 401/403/413
//! answers, health and OAuth discovery, TLS, refusal of an unsafe bind, and shutdown.

use std::time::Duration;

use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientLifecycleMode, ClientServiceExt};
use serde_json::{Value, json};

use crate::harness::http::*;
use crate::harness::{COFFEE, temp_file};

const TOOLS: &[&str] = &[
    "create_payment_link",
    "get_payment_link",
    "list_line_items",
    "list_products",
    "list_payment_links",
    "update_payment_link_status",
];

async fn tool_names(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Creates a link and reads it back; returns the link id.
async fn create_and_get(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
) -> String {
    let link = call(
        client,
        "create_payment_link",
        create_args("Order 1", COFFEE),
    )
    .await
    .expect("created");
    assert_eq!(link["backend"], "sandbox");
    assert_eq!(link["total"]["amount"], "178.00");
    let id = link["id"].as_str().unwrap().to_owned();
    let again = call(client, "get_payment_link", json!({"payment_link_id": id}))
        .await
        .expect("read back");
    assert_eq!(again["id"], id.as_str());
    id
}

#[tokio::test]
async fn sessions_serve_the_same_tools_and_outputs_as_stdio() {
    let server = Server::start(&[], &[]);
    let client = client(&server.url(), Some("alice"), &[]).await;
    assert_eq!(tool_names(&client).await, sorted(TOOLS));
    let info = client.peer_info().expect("initialized");
    assert_eq!(info.server_info.as_ref().unwrap().name, "paylink-mcp");
    let products = call(&client, "list_products", json!({"limit": 2}))
        .await
        .unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 2);
    create_and_get(&client).await;
    // Validation is the same as over stdio: the field is named.
    let err = call(
        &client,
        "create_payment_link",
        json!({"name": "x", "items": []}),
    )
    .await
    .unwrap_err();
    assert_eq!(err["kind"], "validation");
    assert_eq!(err["field"], "items");
    client.cancel().await.unwrap();

    // Raw: initialize opens a session (an SSE answer carrying Mcp-Session-Id).
    let r = post(&server.url(), Some("alice"), &[], &initialize_body()).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("mcp-session-id"));
}

#[tokio::test]
async fn http_offers_exactly_the_tools_of_stdio() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_paylink-mcp"));
    cmd.env_clear().arg("stdio");
    let (child, _) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdio = rmcp::ServiceExt::serve(ClientConfig::default(), child)
        .await
        .expect("stdio server");
    let server = Server::start(&[], &[]);
    let http = client(&server.url(), Some("ivy"), &[]).await;
    assert_eq!(
        serde_json::to_value(stdio.list_all_tools().await.unwrap()).unwrap(),
        serde_json::to_value(http.list_all_tools().await.unwrap()).unwrap()
    );
    // The same call gives the same answer, ids and times aside.
    let strip = |mut v: Value| {
        for k in ["id", "url", "created_at"] {
            v.as_object_mut().unwrap().remove(k);
        }
        for item in v["line_items"].as_array_mut().into_iter().flatten() {
            item.as_object_mut().unwrap().remove("id");
        }
        v
    };
    let args = create_args("Same", COFFEE);
    let a = call(&stdio, "create_payment_link", args.clone())
        .await
        .unwrap();
    let b = call(&http, "create_payment_link", args).await.unwrap();
    assert_eq!(strip(a), strip(b));
    let bad = json!({"name": "x", "items": [{"product_id": "nope"}]});
    assert_eq!(
        call(&stdio, "create_payment_link", bad.clone())
            .await
            .unwrap_err(),
        call(&http, "create_payment_link", bad).await.unwrap_err()
    );
    stdio.cancel().await.unwrap();
    http.cancel().await.unwrap();
}

#[tokio::test]
async fn stateless_mode_answers_json_without_sessions() {
    let server = Server::start(&["--stateless"], &[]);
    let r = post(&server.url(), Some("bob"), &[], &initialize_body()).await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("mcp-session-id"));
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["serverInfo"]["name"], "paylink-mcp");

    // A legacy client without sessions: every request stands alone, same tenant by key.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let r = post(
        &server.url(),
        Some("bob"),
        &[("mcp-protocol-version", "2025-06-18")],
        &list,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), TOOLS.len());

    let first = client(&server.url(), Some("bob"), &[]).await;
    assert_eq!(tool_names(&first).await, sorted(TOOLS));
    let id = create_and_get(&first).await;
    first.cancel().await.unwrap();
    // The sandbox data lives in the tenant, not in a session: a new client sees it.
    let second = client(&server.url(), Some("bob"), &[]).await;
    call(&second, "get_payment_link", json!({"payment_link_id": id}))
        .await
        .expect("same tenant, same data");
    second.cancel().await.unwrap();
}

async fn modern_client(
    url: &str,
    token: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_config(client_config(url, Some(token), &[])),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("2026-07-28 client starts")
}

#[tokio::test]
async fn clients_of_2026_07_28_work_without_initialize_in_both_modes() {
    for args in [&[][..], &["--stateless"][..]] {
        let server = Server::start(args, &[]);
        let client = modern_client(&server.url(), "carol").await;
        assert_eq!(tool_names(&client).await, sorted(TOOLS), "{args:?}");
        create_and_get(&client).await;
        client.cancel().await.unwrap();

        // The same over raw HTTP: no initialize, no session.
        let r = post(
            &server.url(),
            Some("carol"),
            &modern_headers("list_products"),
            &modern_call_body(1, "list_products", json!({"limit": 1})),
        )
        .await;
        assert_eq!(r.status(), 200, "{args:?}");
        assert!(!r.headers().contains_key("mcp-session-id"));
        let products = raw_outcome(&rpc_answer(r).await).unwrap();
        assert_eq!(products["data"].as_array().unwrap().len(), 1);
    }
}

fn assert_challenge(r: &reqwest::Response) {
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"paylink-mcp\""
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401_before_any_mcp_processing() {
    // On Stream there is no anonymous tenant: no header at all is a 401 too.
    let server = Server::start(&["--backend", "stream"], &[]);
    let url = server.url();
    let r = post(&url, None, &[], &initialize_body()).await;
    assert_challenge(&r);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "unauthorized");

    let raw = raw_client();
    let cases: Vec<(&str, reqwest::header::HeaderValue)> = vec![
        ("another scheme", "Basic YWxpY2U6c2VjcmV0".parse().unwrap()),
        ("empty token", "Bearer ".parse().unwrap()),
        ("no token", "Bearer".parse().unwrap()),
        ("inner space", "Bearer tok en".parse().unwrap()),
        (
            "non-ASCII",
            reqwest::header::HeaderValue::from_bytes(b"Bearer tok\xc3\xa9n").unwrap(),
        ),
        (
            "obs-text byte",
            reqwest::header::HeaderValue::from_bytes(b"Bearer tok\xffen").unwrap(),
        ),
        (
            "tab",
            reqwest::header::HeaderValue::from_bytes(b"Bearer tok\ten").unwrap(),
        ),
    ];
    for (what, value) in cases {
        // Not even JSON: the gate answers before rmcp would (415/400).
        let r = raw
            .post(&url)
            .header("authorization", value)
            .header("content-type", "text/plain")
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_challenge(&r);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["kind"], "unauthorized", "{what}");
        assert!(!v.to_string().contains("YWxpY2U"), "{what}: token echoed");
    }

    // rmcp's client sees the challenge as an auth failure, not a crash.
    assert!(try_client(&url, None, &[]).await.is_err());
    // On the sandbox, a header that is there but wrong is refused too (no anonymous fallback).
    let sandbox = Server::start(&[], &[]);
    let r = raw
        .post(sandbox.url())
        .header("authorization", "Basic YWxpY2U6c2VjcmV0")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_challenge(&r);
}

#[tokio::test]
async fn the_sandbox_on_loopback_has_one_anonymous_tenant() {
    let server = Server::start(&[], &[]);
    let first = client(&server.url(), None, &[]).await;
    let id = create_and_get(&first).await;
    first.cancel().await.unwrap();
    let second = client(&server.url(), None, &[]).await;
    call(&second, "get_payment_link", json!({"payment_link_id": &id}))
        .await
        .expect("the anonymous tenant is shared");
    second.cancel().await.unwrap();
    let keyed = client(&server.url(), Some("dave"), &[]).await;
    let err = call(&keyed, "get_payment_link", json!({"payment_link_id": &id}))
        .await
        .unwrap_err();
    assert_eq!(err["kind"], "not_found");
    keyed.cancel().await.unwrap();
}

#[tokio::test]
async fn foreign_host_and_origin_are_403_and_own_origins_pass() {
    let server = Server::start(&[], &[]);
    let url = server.url();
    let raw = raw_client();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = raw
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("authorization", "Bearer erin")
            .body(initialize_body().to_string());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    for headers in [
        vec![("host", "evil.example".to_owned())],
        vec![("host", format!("attacker.example:{}", server.port()))],
        vec![("origin", "http://evil.example".to_owned())],
        vec![("origin", "https://localhost:3000".to_owned())],
        vec![("origin", "null".to_owned())],
    ] {
        let r = send(headers.clone()).await.unwrap();
        assert_eq!(r.status(), 403, "{headers:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["kind"], "forbidden");
    }
    // Before auth: a rebinding page gets 403, not a 401 telling it how to authenticate.
    let r = raw
        .post(&url)
        .header("host", "evil.example")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    for headers in [
        vec![("origin", "http://localhost:5173".to_owned())],
        vec![("origin", format!("http://127.0.0.1:{}", server.port()))],
        vec![("origin", "http://[::1]:8080".to_owned())],
        vec![("host", format!("localhost:{}", server.port()))],
        vec![],
    ] {
        let r = send(headers.clone()).await.unwrap();
        assert_eq!(r.status(), 200, "{headers:?}");
    }

    // A public name the operator allowed.
    let server = Server::start(
        &[
            "--allowed-host",
            "mcp.example.com",
            "--allowed-origin",
            "https://app.example.com",
        ],
        &[],
    );
    let r = raw
        .post(server.url())
        .header("host", "mcp.example.com")
        .header("origin", "https://app.example.com")
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("authorization", "Bearer erin")
        .body(initialize_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = raw.post(server.url()).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 403, "127.0.0.1 is no longer an allowed host");
}

#[tokio::test]
async fn bodies_over_one_mib_are_413() {
    let server = Server::start(&[], &[]);
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "list_products", "arguments": {"pad": "x".repeat(1024 * 1024 + 10)}}});
    let r = post(&server.url(), Some("frank"), &[], &big).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "payload_too_large");
    // Just under the limit is read (and answered by MCP, here a session-less request).
    let small = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "x".repeat(1000)});
    let r = post(&server.url(), Some("frank"), &[], &small).await;
    assert_ne!(r.status(), 413);
}

/// A body too large that is still being sent when the server refuses it, declared or chunked:
/// the client still reads the 413 (the server drains the rest before closing, rather than
/// resetting a connection its peer is still writing to).
#[tokio::test]
async fn a_refused_body_still_being_sent_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[], &[]);
    for chunked in [false, true] {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .unwrap();
        let size = 3 * 1024 * 1024 / 2;
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {size}")
        };
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer frank\r\nContent-Type: application/json\r\nAccept: {ACCEPT}\r\n{framing}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let piece = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            let frame = if chunked {
                let mut f = format!("{:x}\r\n", piece.len()).into_bytes();
                f.extend_from_slice(&piece);
                f.extend_from_slice(b"\r\n");
                f
            } else {
                piece.clone()
            };
            if conn.write_all(&frame).await.is_err() {
                break;
            }
            sent += piece.len();
        }
        if chunked {
            let _ = conn.write_all(b"0\r\n\r\n").await;
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {}",
            text.chars().take(200).collect::<String>()
        );
        assert!(
            text.contains("payload_too_large"),
            "chunked={chunked}: {text}"
        );
    }
}

#[tokio::test]
async fn healthz_and_oauth_discovery_need_no_auth() {
    let server = Server::start(&["--backend", "stream"], &[]);
    let raw = raw_client();
    let r = raw
        .get(format!("{}/healthz", server.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let started = std::time::Instant::now();
        let r = raw
            .get(format!("{}{path}", server.root()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(!r.headers().contains_key("www-authenticate"), "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["kind"], "not_found");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let r = raw
        .get(format!("{}/nothing-here", server.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sigterm_ends_open_sse_streams_and_exits_promptly() {
    let mut server = Server::start(&[], &[]);
    let url = server.url();
    let r = post(&url, Some("gina"), &[], &initialize_body()).await;
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(
        &url,
        Some("gina"),
        &[("mcp-session-id", &session)],
        &initialized,
    )
    .await;
    assert_eq!(r.status(), 202);

    // The session's standalone SSE stream: stays open until the server ends it.
    let mut stream = raw_client()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("authorization", "Bearer gina")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(async move {
        let mut bytes = 0;
        while let Ok(Some(chunk)) = stream.chunk().await {
            bytes += chunk.len();
        }
        bytes
    });
    // Staying open is the property, so time itself is what is tested: an idle stream has no
    // event to await.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "the SSE stream should be open");

    let (status, took) = tokio::task::spawn_blocking(move || {
        let r = server.terminate(Duration::from_secs(15));
        (r, server.stderr())
    })
    .await
    .map(|(r, stderr)| r.unwrap_or_else(|| panic!("no exit after SIGTERM: {stderr}")))
    .unwrap();
    assert!(status.success(), "{status}");
    // Ended by the signal (in milliseconds), not by the 5 s grace period's forced close.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the SSE stream ended")
        .unwrap();
}

#[test]
fn a_non_loopback_bind_without_tls_is_refused_before_listening() {
    let refusal = Server::refuse(&["--bind", "0.0.0.0:0"], &[]);
    assert_eq!(refusal.status.code(), Some(2), "{}", refusal.stderr);
    assert!(refusal.stderr.contains("--tls-cert"), "{}", refusal.stderr);
    assert!(
        refusal.stderr.contains("--behind-tls-proxy"),
        "{}",
        refusal.stderr
    );
    assert!(refusal.stderr.contains("clear text"), "{}", refusal.stderr);
    assert!(!refusal.stderr.contains("listening on"));
}

#[test]
fn bad_listener_options_are_refused() {
    let missing = Server::refuse(
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &[],
    );
    assert!(missing.stderr.contains("--tls-cert"), "{}", missing.stderr);
    let host = Server::refuse(&["--allowed-origin", "localhost"], &[]);
    assert!(host.stderr.contains("--allowed-origin"), "{}", host.stderr);
}

#[tokio::test]
async fn tls_is_served_with_the_operators_certificate() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_file = temp_file(&cert.cert.pem());
    let key_file = temp_file(&cert.signing_key.serialize_pem());
    let server = Server::start(
        &[
            "--tls-cert",
            cert_file.path().to_str().unwrap(),
            "--tls-key",
            key_file.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(server.scheme, "https");
    let trusted = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([trusted])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = https
        .get(format!("{}/healthz", server.root()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let transport = StreamableHttpClientTransport::with_client(
        https.clone(),
        client_config(&server.url(), Some("hank"), &[]),
    );
    let client = rmcp::ServiceExt::serve(ClientConfig::default(), transport)
        .await
        .expect("MCP over TLS");
    assert_eq!(tool_names(&client).await, sorted(TOOLS));
    create_and_get(&client).await;
    client.cancel().await.unwrap();

    // Plain HTTP to the TLS port gets nothing useful.
    let plain = raw_client()
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    // A client that does not trust the certificate cannot connect.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", server.root()))
            .send()
            .await
            .is_err()
    );
}
