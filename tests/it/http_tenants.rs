//! Tenants over HTTP: isolation, the bounded cache, sessions bound to their key, the base-URL
//! allow-list, branches, operator-key mode, abuse limits, and keys kept out of the logs. Stream
//! cases run against the strict mock of Stream on 127.0.0.1.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::http::*;
use crate::harness::{CALL_DEADLINE, MUG, fingerprint, sha256_hex, temp_file, within};
use crate::mocks::stream::{self as stream_mock, ESPRESSO, MockStream};

/// Options that lift every abuse limit, for tests that drive many keys from one address.
const NO_LIMITS: &[&str] = &[
    "--rate-limit-per-minute",
    "0",
    "--max-concurrent-per-tenant",
    "0",
    "--client-rate-limit-per-minute",
    "0",
    "--max-concurrent-per-client",
    "0",
    "--new-tenants-per-minute",
    "0",
    "--max-concurrent-requests",
    "0",
    "--max-connections-per-client",
    "0",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = NO_LIMITS.to_vec();
    v.extend_from_slice(extra);
    v
}

fn header(r: &wiremock::Request, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn sandbox_tenants_are_isolated() {
    let server = Server::start(&[], &[]);
    let a = client(&server.url(), Some("key-A"), &[]).await;
    let b = client(&server.url(), Some("key-B"), &[]).await;
    let link = call(&a, "create_payment_link", create_args("A's order", MUG))
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap();
    let err = call(&b, "get_payment_link", json!({"payment_link_id": id}))
        .await
        .unwrap_err();
    assert_eq!(err["kind"], "not_found");
    let listed = call(&b, "list_payment_links", json!({})).await.unwrap();
    assert_eq!(listed["data"], json!([]));
    call(&a, "get_payment_link", json!({"payment_link_id": id}))
        .await
        .expect("A still sees its link");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

/// Checks every request the mock received: a create carries the key of the tenant named in the
/// link's name, a read the key that created the link; nothing crossed tenants.
async fn assert_no_cross_tenant(mock: &MockStream, key_of: impl Fn(&str) -> String) -> usize {
    let owners: HashMap<String, String> = mock.state.lock().unwrap().owners.clone();
    let requests = mock.requests().await;
    for r in &requests {
        let key = header(r, "x-api-key").expect("every request has a key");
        if r.method.as_str() == "POST" {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let name = body["name"].as_str().unwrap();
            assert_eq!(
                key,
                key_of(name),
                "create of {name} sent another tenant's key"
            );
        } else if let Some(id) = r.url.path().strip_prefix("/api/v2/payment_links/") {
            assert_eq!(
                Some(&key),
                owners.get(id),
                "read of {id} with another tenant's key"
            );
        }
    }
    assert!(mock.state.lock().unwrap().cross_tenant.is_empty());
    requests.len()
}

#[tokio::test]
async fn two_hundred_concurrent_calls_over_fifty_keys_each_carry_their_own_key() {
    let mock = MockStream::start_any_key().await;
    let server = Server::start(
        &args(&["--backend", "stream"]),
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    let url = server.url();
    let mut clients = Vec::new();
    for k in 0..50 {
        clients.push(std::sync::Arc::new(
            client(&url, Some(&format!("tok-{k}")), &[]).await,
        ));
    }
    let mut tasks = Vec::new();
    for i in 0..200 {
        let k = i % 50;
        let c = clients[k].clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("tenant-{k}-call-{i}");
            let link = call(&c, "create_payment_link", create_args(&name, ESPRESSO))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(link["name"], name.as_str());
            let id = link["id"].as_str().unwrap().to_owned();
            let again = call(&c, "get_payment_link", json!({"payment_link_id": id}))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again["name"], name.as_str());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for c in clients {
        if let Ok(c) = std::sync::Arc::try_unwrap(c) {
            c.cancel().await.unwrap();
        }
    }
    let seen = assert_no_cross_tenant(&mock, |name| {
        let k = name.split('-').nth(1).unwrap();
        format!("tok-{k}")
    })
    .await;
    assert_eq!(seen, 400);
}

#[tokio::test]
async fn a_cache_of_eight_tenants_under_a_hundred_keys_keeps_answering_correctly() {
    let mock = MockStream::start_any_key().await;
    let server = Server::start(
        &args(&["--backend", "stream", "--stateless", "--max-tenants", "8"]),
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    let url = server.url();
    let mut ids = HashMap::new();
    for round in 0..2 {
        let mut tasks = Vec::new();
        for k in 0..100 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let token = format!("key-{k}");
                let name = format!("tenant-{k}-round-{round}");
                let link = stateless_call(
                    &url,
                    &token,
                    &[],
                    "create_payment_link",
                    create_args(&name, ESPRESSO),
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
                (k, link["id"].as_str().unwrap().to_owned())
            }));
        }
        for t in tasks {
            let (k, id) = t.await.unwrap();
            ids.insert((k, round), id);
        }
    }
    // Every tenant reads its links back, through a cache that holds 8 of them.
    for ((k, _), id) in &ids {
        let link = stateless_call(
            &url,
            &format!("key-{k}"),
            &[],
            "get_payment_link",
            json!({"payment_link_id": id}),
        )
        .await
        .unwrap();
        assert!(
            link["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("tenant-{k}-"))
        );
    }
    assert_no_cross_tenant(&mock, |name| {
        let k = name.split('-').nth(1).unwrap();
        format!("key-{k}")
    })
    .await;

    // On the sandbox the data is the tenant: the cache bound drops the least recently used.
    let server = Server::start(&args(&["--stateless", "--max-tenants", "2"]), &[]);
    let url = server.url();
    let made = stateless_call(
        &url,
        "s-0",
        &[],
        "create_payment_link",
        create_args("x", MUG),
    )
    .await
    .unwrap();
    let id = made["id"].as_str().unwrap();
    for k in 1..3 {
        stateless_call(&url, &format!("s-{k}"), &[], "list_products", json!({}))
            .await
            .unwrap();
    }
    let err = stateless_call(
        &url,
        "s-0",
        &[],
        "get_payment_link",
        json!({"payment_link_id": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err["kind"], "not_found",
        "evicted sandbox tenants start afresh"
    );
}

#[tokio::test]
async fn a_session_answers_only_the_key_that_opened_it() {
    let server = Server::start(&[], &[]);
    let url = server.url();
    let r = post(&url, Some("owner-key"), &[], &initialize_body()).await;
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let s = [("mcp-session-id", session.as_str())];
    assert_eq!(
        post(&url, Some("owner-key"), &s, &initialized)
            .await
            .status(),
        202
    );

    let r = post(&url, Some("other-key"), &s, &list).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "forbidden");
    // Nor can another key close it.
    let r = raw_client()
        .delete(&url)
        .header("authorization", "Bearer other-key")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let r = post(&url, Some("owner-key"), &s, &list).await;
    assert_eq!(r.status(), 200);
    let v = rpc_answer(r).await;
    assert!(v["result"]["tools"].is_array(), "{v}");

    // A session id this server never issued.
    let r = post(
        &url,
        Some("owner-key"),
        &[("mcp-session-id", "made-up")],
        &list,
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "not_found");

    // The owner closes it; it is gone for everyone.
    let r = raw_client()
        .delete(&url)
        .header("authorization", "Bearer owner-key")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(post(&url, Some("owner-key"), &s, &list).await.status(), 404);
}

#[tokio::test]
async fn off_list_base_urls_are_refused_and_never_contacted() {
    let mock = MockStream::start_any_key().await;
    // Default allow-list (production and staging); the mock is not on it.
    let server = Server::start(&args(&["--backend", "stream", "--stateless"]), &[]);
    let url = server.url();
    for value in [
        mock.uri(),
        format!("{}/", mock.uri()),
        "http://169.254.169.254/latest".into(),
        "not a url".into(),
        "file:///etc/passwd".into(),
        "https://staging.streampay.sa.evil.example".into(),
    ] {
        let r = post(
            &url,
            Some("tok-1"),
            &[
                ("x-stream-base-url", value.as_str()),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "list_products"),
            ],
            &modern_call_body(1, "list_products", json!({})),
        )
        .await;
        assert_eq!(r.status(), 400, "{value}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["kind"], "validation");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("X-Stream-Base-URL"), "{message}");
        assert!(
            message.contains("https://staging.streampay.sa"),
            "{message}"
        );
    }
    assert!(
        mock.requests().await.is_empty(),
        "the off-list URL was contacted"
    );

    // The operator allows the mock: the header is honoured.
    let server = Server::start(
        &args(&[
            "--backend",
            "stream",
            "--stateless",
            "--allowed-base-url",
            &mock.uri(),
        ]),
        &[],
    );
    let with_slash = format!("{}/", mock.uri());
    let products = stateless_call(
        &server.url(),
        "tok-1",
        &[("x-stream-base-url", &with_slash)],
        "list_products",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 3);
    assert_eq!(mock.requests().await.len(), 1);

    // Naming the server's own default base is always allowed.
    let server = Server::start(
        &args(&["--backend", "stream", "--stateless"]),
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    stateless_call(
        &server.url(),
        "tok-1",
        &[("x-stream-base-url", &mock.uri())],
        "list_products",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(mock.requests().await.len(), 2);
}

#[tokio::test]
async fn branches_come_from_the_header_and_stream_branch_id_only_for_operators() {
    const ENV_BRANCH: &str = "0e1d2c3b-4a59-4687-9a5b-4c3d2e1f0a9b";
    const HEADER_BRANCH: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";
    let mock = MockStream::start_any_key().await;
    let env = [
        ("STREAM_BASE_URL", mock.uri()),
        ("STREAM_BRANCH_ID", ENV_BRANCH.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&args(&["--backend", "stream", "--stateless"]), &env);
    let url = server.url();
    let last_branch = || async { header(mock.requests().await.last().unwrap(), "x-branch-id") };

    stateless_call(&url, "tok-b", &[], "list_products", json!({}))
        .await
        .unwrap();
    assert_eq!(
        last_branch().await,
        None,
        "STREAM_BRANCH_ID is not for callers' keys"
    );
    stateless_call(
        &url,
        "tok-b",
        &[("x-stream-branch-id", &HEADER_BRANCH.to_uppercase())],
        "list_products",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(last_branch().await.as_deref(), Some(HEADER_BRANCH));
    let before = mock.requests().await.len();
    let r = post(
        &url,
        Some("tok-b"),
        &[
            ("x-stream-branch-id", "main"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "list_products"),
        ],
        &modern_call_body(1, "list_products", json!({})),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("UUID"));
    assert_eq!(mock.requests().await.len(), before);

    // Operator-key mode: the branch is the operator's (STREAM_BRANCH_ID); a caller may name it,
    // never another one.
    let tokens = temp_file(&format!("{}\n", sha256_hex("access-b")));
    let mut env = env.clone();
    env.push(("STREAM_API_KEY", "operator-key"));
    let server = Server::start(
        &args(&[
            "--backend",
            "stream",
            "--stateless",
            "--access-tokens-file",
            tokens.path().to_str().unwrap(),
        ]),
        &env,
    );
    stateless_call(&server.url(), "access-b", &[], "list_products", json!({}))
        .await
        .unwrap();
    assert_eq!(last_branch().await.as_deref(), Some(ENV_BRANCH));
    stateless_call(
        &server.url(),
        "access-b",
        &[("x-stream-branch-id", ENV_BRANCH)],
        "list_products",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(last_branch().await.as_deref(), Some(ENV_BRANCH));
    let before = mock.requests().await.len();
    let mut headers = modern_headers("list_products");
    headers.push(("x-stream-branch-id", HEADER_BRANCH));
    let r = post(
        &server.url(),
        Some("access-b"),
        &headers,
        &modern_call_body(1, "list_products", json!({})),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(mock.requests().await.len(), before);
}

#[tokio::test]
async fn operator_key_mode_never_forwards_the_callers_token() {
    let mock = MockStream::start("operator-stream-key").await;
    let tokens = temp_file(&format!(
        "# access tokens of this server\n{}  -\n{} # second team\n",
        sha256_hex("access-one"),
        sha256_hex("access-two")
    ));
    let tokens_path = tokens.path().to_str().unwrap().to_owned();
    let server = Server::start(
        &args(&["--backend", "stream", "--access-tokens-file", &tokens_path]),
        &[
            ("STREAM_BASE_URL", &mock.uri()),
            ("STREAM_API_KEY", "operator-stream-key"),
        ],
    );
    let url = server.url();
    let one = client(&url, Some("access-one"), &[]).await;
    let link = call(&one, "create_payment_link", create_args("op", ESPRESSO))
        .await
        .unwrap();
    call(
        &one,
        "get_payment_link",
        json!({"payment_link_id": link["id"]}),
    )
    .await
    .unwrap();
    one.cancel().await.unwrap();
    let requests = mock.requests().await;
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(
            header(r, "x-api-key").as_deref(),
            Some("operator-stream-key")
        );
        let everything = format!(
            "{:?} {:?} {}",
            r.url,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            !everything.contains("access-one"),
            "caller token forwarded: {everything}"
        );
    }

    // Not an access token: refused, whatever else it may be (even the operator's key).
    for token in ["access-three", "operator-stream-key"] {
        let r = post(&url, Some(token), &[], &initialize_body()).await;
        assert_eq!(r.status(), 401, "{token}");
    }
    assert_eq!(
        post(&url, None, &[], &initialize_body()).await.status(),
        401
    );

    // The operator's key must be there.
    let refusal = Server::refuse(
        &["--backend", "stream", "--access-tokens-file", &tokens_path],
        &[],
    );
    assert!(
        refusal.stderr.contains("STREAM_API_KEY"),
        "{}",
        refusal.stderr
    );
    // ... and usable: one the backend refuses stops the server, not every caller with a 401.
    let refusal = Server::refuse(
        &["--backend", "stripe", "--access-tokens-file", &tokens_path],
        &[("STRIPE_API_KEY", "pk_live_not_a_secret_key")],
    );
    assert!(
        refusal.stderr.contains("STRIPE_API_KEY cannot be used"),
        "{}",
        refusal.stderr
    );
    assert!(
        !refusal.stderr.contains("pk_live_not"),
        "{}",
        refusal.stderr
    );
    // The file holds hashes, not tokens.
    let plain = temp_file("access-one\n");
    let refusal = Server::refuse(
        &["--access-tokens-file", plain.path().to_str().unwrap()],
        &[],
    );
    assert!(refusal.stderr.contains("line 1"), "{}", refusal.stderr);
    assert!(!refusal.stderr.contains("access-one"), "{}", refusal.stderr);

    // On the sandbox each access token is its own tenant; no anonymous tenant.
    let server = Server::start(&["--access-tokens-file", &tokens_path], &[]);
    let one = client(&server.url(), Some("access-one"), &[]).await;
    let two = client(&server.url(), Some("access-two"), &[]).await;
    let link = call(&one, "create_payment_link", create_args("one's", MUG))
        .await
        .unwrap();
    let err = call(
        &two,
        "get_payment_link",
        json!({"payment_link_id": link["id"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err["kind"], "not_found");
    one.cancel().await.unwrap();
    two.cancel().await.unwrap();
    assert_eq!(
        post(&server.url(), None, &[], &initialize_body())
            .await
            .status(),
        401
    );
}

async fn status_of(url: &str, token: &str) -> reqwest::Response {
    post(
        url,
        Some(token),
        &modern_headers("list_products"),
        &modern_call_body(1, "list_products", json!({})),
    )
    .await
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn rate_limits_engage_with_retry_after_and_release() {
    // Per tenant: 60 a minute, one a second once the burst is spent.
    let server = Server::start(&["--stateless", "--rate-limit-per-minute", "60"], &[]);
    let url = server.url();
    let mut limited = None;
    // 60 tokens and one more a second: well before 200 requests, however slow the machine.
    for _ in 0..200 {
        let r = status_of(&url, "busy-tenant").await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = limited.expect("the tenant limit engaged");
    let wait = retry_after(&r);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "rate_limited");
    assert_eq!(v["error"]["retry_safe"], true);
    // Another tenant is not affected.
    assert_eq!(status_of(&url, "calm-tenant").await.status(), 200);
    // Time itself is what is tested: the bucket refills after the Retry-After it announced.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(status_of(&url, "busy-tenant").await.status(), 200);

    // New tenants per client address: a spray of keys stops before the cache.
    let server = Server::start(&["--stateless", "--new-tenants-per-minute", "3"], &[]);
    let url = server.url();
    for k in 0..3 {
        assert_eq!(status_of(&url, &format!("spray-{k}")).await.status(), 200);
    }
    let r = status_of(&url, "spray-3").await;
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r) >= 1);
    // Known tenants keep working.
    assert_eq!(status_of(&url, "spray-0").await.status(), 200);

    // Per client address, whatever the key.
    let server = Server::start(&["--stateless", "--client-rate-limit-per-minute", "5"], &[]);
    let url = server.url();
    for k in 0..5 {
        assert_eq!(status_of(&url, &format!("c-{k}")).await.status(), 200);
    }
    assert_eq!(status_of(&url, "c-9").await.status(), 429);
}

#[tokio::test]
async fn concurrency_limits_engage_and_release() {
    let mock = MockStream::start_any_key().await;
    mock.fault(
        "GET",
        "/api/v2/products",
        stream_mock::Fault::Delay(Duration::from_millis(3000)),
    );
    let server = Server::start(
        &[
            "--backend",
            "stream",
            "--stateless",
            "--max-concurrent-per-tenant",
            "1",
        ],
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    let url = server.url();
    let slow = {
        let url = url.clone();
        tokio::spawn(async move { status_of(&url, "one-at-a-time").await.status() })
    };
    // The slow call holds the tenant's one slot once it has reached the upstream.
    within(
        CALL_DEADLINE,
        "the slow call reaches the mock",
        mock.arrivals_reach(1),
    )
    .await;
    let r = status_of(&url, "one-at-a-time").await;
    assert_eq!(r.status(), 429);
    assert_eq!(retry_after(&r), 1);
    assert_eq!(status_of(&url, "someone-else").await.status(), 200);
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(status_of(&url, "one-at-a-time").await.status(), 200);

    // With sessions a tool call's answer is an SSE stream that comes back at once: its slot is
    // held until the call ends, which is before its answer is written, so calls one after another
    // all pass a limit of one (and opening the session's GET stream takes no slot).
    let server = Server::start(&["--max-concurrent-per-tenant", "1"], &[]);
    let c = client(&server.url(), Some("sequential"), &[]).await;
    for _ in 0..5 {
        call(&c, "list_products", json!({})).await.unwrap();
    }
    c.cancel().await.unwrap();
}

async fn new_key_from(url: &str, token: &str, forwarded_for: &str) -> u16 {
    let mut headers = modern_headers("list_products");
    headers.push(("x-forwarded-for", forwarded_for));
    post(
        url,
        Some(token),
        &headers,
        &modern_call_body(1, "list_products", json!({})),
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn behind_a_tls_proxy_the_client_is_the_last_forwarded_address() {
    let server = Server::start(
        &[
            "--stateless",
            "--behind-tls-proxy",
            "--new-tenants-per-minute",
            "1",
        ],
        &[],
    );
    let url = server.url();
    assert_eq!(new_key_from(&url, "a", "203.0.113.1").await, 200);
    assert_eq!(new_key_from(&url, "b", "203.0.113.1").await, 429);
    // Earlier entries are whatever the client claimed; the proxy appends the real one.
    assert_eq!(
        new_key_from(&url, "b", "203.0.113.1, 198.51.100.7").await,
        200
    );
    assert_eq!(
        new_key_from(&url, "c", "198.51.100.9, 203.0.113.1").await,
        429
    );

    // Without a proxy the header is just a claim: the peer address counts.
    let server = Server::start(&["--stateless", "--new-tenants-per-minute", "1"], &[]);
    let url = server.url();
    assert_eq!(new_key_from(&url, "a", "203.0.113.1").await, 200);
    assert_eq!(new_key_from(&url, "b", "198.51.100.7").await, 429);
}

#[tokio::test]
async fn keys_never_appear_in_the_logs() {
    let secret_token = "streamtoken-SECRET-a1b2c3d4e5";
    let pair = "pairkey-SECRET-f6g7:pairsecret-SECRET-h8i9";
    let wrong = "wrongkey-SECRET-j0k1l2";
    let mock = MockStream::start(secret_token).await;
    let server = Server::start(
        &["--backend", "stream", "--rate-limit-per-minute", "8"],
        &[("STREAM_BASE_URL", &mock.uri()), ("PAYLINK_LOG", "debug")],
    );
    let url = server.url();

    let ok = client(&url, Some(secret_token), &[]).await;
    call(&ok, "create_payment_link", create_args("logged", ESPRESSO))
        .await
        .unwrap();
    // The upstream refuses a wrong key: a tool error, scrubbed.
    let bad = client(&url, Some(wrong), &[]).await;
    let err = call(&bad, "list_products", json!({})).await.unwrap_err();
    assert_eq!(err["kind"], "auth");
    assert!(!err.to_string().contains(wrong));
    let paired = client(&url, Some(pair), &[]).await;
    let _ = call(&paired, "list_products", json!({})).await;
    // Refusals: malformed header, another key on a session, rate limit.
    let r = raw_client()
        .post(&url)
        .header("authorization", format!("Bearer {secret_token} extra"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("SECRET"));
    let r = post(&url, Some(secret_token), &[], &initialize_body()).await;
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let r = post(
        &url,
        Some(wrong),
        &[("mcp-session-id", &session)],
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .await;
    assert_eq!(r.status(), 403);
    for c in [ok, bad, paired] {
        c.cancel().await.unwrap();
    }
    let mut limited = false;
    for _ in 0..12 {
        limited |= status_of(&url, wrong).await.status() == 429;
    }
    assert!(limited);

    // Every line, read to the log's end once the server has exited.
    let log = server.stop_with_stderr().await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
    for secret in [
        secret_token,
        wrong,
        pair,
        "pairkey-SECRET",
        "pairsecret-SECRET",
        &b64,
        "SECRET",
    ] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
    // Tenants are named by fingerprint instead.
    let fp = fingerprint(secret_token);
    assert!(log.contains(&fp), "no fingerprint in the log:\n{log}");
    assert!(log.contains("refused"), "{log}");
}

/// One server, one idempotency store, two tenants (two Bearer keys): the same idempotency key
/// from each is two intents, so no conflict and no replay across tenants, while each tenant's own
/// repeat is still a replay.
#[tokio::test]
async fn idempotency_keys_are_per_tenant() {
    let mock = MockStream::start_any_key().await;
    let server = Server::start(
        &args(&["--backend", "stream"]),
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    let order = |quantity: u32| json!({"name": "Order", "items": [{"product_id": ESPRESSO, "quantity": quantity}], "idempotency_key": "same"});
    let one = client(&server.url(), Some("tenant-one-key"), &[]).await;
    let two = client(&server.url(), Some("tenant-two-key"), &[]).await;
    let first = call(&one, "create_payment_link", order(1)).await.unwrap();
    let other = call(&two, "create_payment_link", order(3))
        .await
        .expect("no conflict across tenants");
    assert_eq!(other["total"]["amount_minor"], 3750);
    assert_ne!(other["id"], first["id"]);
    assert_eq!(mock.link_count(), 2);
    let replay = call(&one, "create_payment_link", order(1)).await.unwrap();
    assert_eq!(replay, first, "each tenant's own repeat replays");
    let conflict = call(&one, "create_payment_link", order(2))
        .await
        .unwrap_err();
    assert_eq!(conflict["kind"], "idempotency_conflict");
    assert_eq!(mock.posts().await.len(), 2, "replays make no upstream call");
    one.cancel().await.unwrap();
    two.cancel().await.unwrap();
}
