//! Bounded memory over HTTP (issue 21), each test written as the attack it answers:
//! - sandbox tenants filling their byte budgets with the largest links allowed, then listing
//!   them: refused with clear errors, every list answer under the page cap, and (with default
//!   settings) the server's peak RSS under 200 MB;
//! - 1,000 creates cancelled by their clients while in flight: a brand-new key still works and
//!   the idempotency store stays within its bounds (read from `/metrics`);
//! - an idempotent replay after the sandbox dropped its tenant: a link that exists, never one
//!   that went with the data.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::COFFEE;
use crate::harness::http::*;
use crate::mocks::stream::{ESPRESSO, Fault, MockStream};

/// Limits that are not what these tests are about, lifted so they cannot interfere.
const OPEN_GATE: &[&str] = &[
    "--stateless",
    "--rate-limit-per-minute",
    "0",
    "--client-rate-limit-per-minute",
    "0",
    "--new-tenants-per-minute",
    "0",
];

/// The largest metadata a create may carry: 49 values of 500 four-byte characters (the 50th
/// key is the server's own).
fn heavy_metadata() -> Value {
    let value = "𝄞".repeat(500);
    Value::Object(
        (0..49)
            .map(|i| (format!("note-{i:02}"), json!(value)))
            .collect(),
    )
}

fn heavy_create(name: &str) -> Value {
    json!({"name": name, "items": [{"product_id": COFFEE, "quantity": 1}], "metadata": heavy_metadata()})
}

/// A stateless tool call: the answer's size on the wire, its `structuredContent`'s size, and
/// its outcome.
async fn sized_call(url: &str, token: &str, tool: &'static str, args: Value) -> Sized {
    let response = post(
        url,
        Some(token),
        &modern_headers(tool),
        &modern_call_body(7, tool, args),
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).expect("a JSON answer");
    let structured = answer["result"]["structuredContent"].to_string().len();
    Sized {
        wire: text.len(),
        structured,
        outcome: raw_outcome(&answer),
    }
}

struct Sized {
    wire: usize,
    structured: usize,
    outcome: Result<Value, Value>,
}

/// Creates the largest links for `token` until refused, each with its own idempotency key
/// when `keyed` (so that the idempotency store holds every result it may, too): (ids created,
/// the refusal).
async fn fill(url: &str, token: &str, keyed: bool) -> (Vec<String>, Value) {
    let mut ids = Vec::new();
    loop {
        let mut args = heavy_create("big");
        if keyed {
            args["idempotency_key"] = json!(format!("{token}-{}", ids.len()));
        }
        match sized_call(url, token, "create_payment_link", args)
            .await
            .outcome
        {
            Ok(link) => ids.push(link["id"].as_str().unwrap().to_owned()),
            Err(e) => return (ids, e),
        }
        assert!(ids.len() <= 1000, "never refused");
    }
}

/// Lists the links of `token` (all of them, or the first `max_pages` pages), asking 100 per
/// page, checking each answer against `cap`: the ids in the order listed, and how many pages
/// it took.
async fn list(url: &str, token: &str, cap: usize, max_pages: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let args = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({"limit": 100}),
        };
        let answer = sized_call(url, token, "list_payment_links", args).await;
        let page = answer.outcome.expect("a page");
        let entries = page["data"].as_array().unwrap();
        // The page's JSON is capped; the answer carries it twice (structuredContent and its
        // text copy) in a small JSON-RPC envelope.
        assert!(
            answer.structured <= cap || entries.len() == 1,
            "a page of {} bytes",
            answer.structured
        );
        assert!(
            answer.wire <= 2 * cap + 4096,
            "an answer of {} bytes",
            answer.wire
        );
        ids.extend(entries.iter().map(|l| l["id"].as_str().unwrap().to_owned()));
        pages += 1;
        assert!(pages <= 1000, "paging never ends");
        if pages == max_pages {
            return (ids, pages);
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                cursor = Some(c.to_owned());
            }
            None => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn sandbox_tenants_are_refused_at_their_byte_budgets_and_pages_stay_under_their_cap() {
    let mut args = OPEN_GATE.to_vec();
    args.extend([
        "--sandbox-max-tenant-bytes",
        "400000",
        "--sandbox-max-bytes",
        "1000000",
        "--max-page-bytes",
        "150000",
    ]);
    let server = Server::start(&args, &[]);
    let url = server.url();

    // One tenant fills its own budget: about 112 KB a link, three fit in 400 KB.
    let (a_links, refusal) = fill(&url, "tenant-a", false).await;
    assert_eq!(a_links.len(), 3);
    assert_eq!(refusal["kind"], "rate_limited");
    assert_eq!(refusal["retry_safe"], false, "{refusal}");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.contains("400000 bytes") && message.contains("trying things out"),
        "{message}"
    );
    // What still fits in its budget is still accepted.
    let small = sized_call(
        &url,
        "tenant-a",
        "create_payment_link",
        create_args("small", COFFEE),
    )
    .await;
    let small_id = small.outcome.unwrap()["id"].as_str().unwrap().to_owned();

    // Others fill the process's budget: refused for everyone, with another message, and
    // nobody's links are removed to make room.
    let mut refused_full = None;
    for tenant in ["tenant-b", "tenant-c", "tenant-d"] {
        let (_, refusal) = fill(&url, tenant, false).await;
        if refusal["message"]
            .as_str()
            .unwrap()
            .contains("sandbox of this server is full")
        {
            refused_full = Some(refusal);
            break;
        }
    }
    let full = refused_full.expect("the process budget refused a create");
    assert_eq!(full["kind"], "rate_limited");
    assert_eq!(full["retry_safe"], true);
    let held = server.metric("paylink_sandbox_bytes").await.unwrap();
    assert!(held <= 1_000_000.0, "{held}");
    assert!(held > 800_000.0, "the budget was filled: {held}");

    // Every page under the cap; the cursors continue exactly where each page stopped.
    let (listed, pages) = list(&url, "tenant-a", 150_000, usize::MAX).await;
    let mut expected = a_links.clone();
    expected.push(small_id);
    expected.reverse(); // newest first
    assert_eq!(listed, expected, "every link once, in order, none removed");
    assert!(
        pages >= 3,
        "the byte cap made the pages, not the limit: {pages}"
    );
}

#[tokio::test]
async fn the_sandbox_memory_attack_stays_under_200_mb_with_default_settings() {
    // Default budgets and page cap; only the gate's rate limits are lifted, which makes the
    // attack faster, not smaller.
    let server = Server::start(OPEN_GATE, &[]);
    let url = server.url();
    let started = Instant::now();
    let idle = server.peak_rss();
    // Twelve tenants at once, each creating the largest links it may until refused, each link
    // with an idempotency key so that the idempotency store fills with their results as well.
    let tenants: Vec<String> = (0..12).map(|i| format!("attacker-{i}")).collect();
    let fills = tenants.iter().map(|t| {
        let url = url.clone();
        let t = t.clone();
        tokio::spawn(async move { fill(&url, &t, true).await })
    });
    let mut created = 0;
    let mut refused_full = 0;
    for fill in fills {
        let (ids, refusal) = fill.await.unwrap();
        created += ids.len();
        assert_eq!(refusal["kind"], "rate_limited", "{refusal}");
        if refusal["retry_safe"] == true {
            refused_full += 1;
        }
    }
    assert!(refused_full > 0, "the process budget was reached");
    let held = server.metric("paylink_sandbox_bytes").await.unwrap();
    assert!(held <= 64.0 * 1024.0 * 1024.0, "{held}");
    let kept = server.metric("paylink_idempotency_bytes").await.unwrap();
    assert!(kept <= 32.0 * 1024.0 * 1024.0, "{kept}");
    assert!(
        kept > 24.0 * 1024.0 * 1024.0,
        "the idempotency store was filled too: {kept}"
    );
    // Then every tenant lists its links, 100 a page (the call that once answered 22.7 MB), all
    // at once. A few pages each: paging through everything is checked with small budgets
    // above, and each page costs the debug build a second.
    let lists = tenants.iter().map(|t| {
        let url = url.clone();
        let t = t.clone();
        tokio::spawn(async move { list(&url, &t, 256 * 1024, 4).await })
    });
    let mut listed = 0;
    for pages in lists {
        listed += pages.await.unwrap().0.len();
    }
    assert!(listed >= 8, "{listed}");
    let peak = server.peak_rss();
    eprintln!(
        "sandbox attack: {created} links of ~112 KB, {held} sandbox bytes, {kept} idempotency bytes, {listed} listed, peak RSS {:.1} MB (idle {:.1} MB), {:.1} s",
        peak as f64 / 1e6,
        idle as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    assert!(peak < 200_000_000, "peak RSS {peak} bytes");
}

#[tokio::test]
async fn a_replay_after_the_sandbox_dropped_its_tenant_answers_a_link_that_exists() {
    let mut args = OPEN_GATE.to_vec();
    args.extend(["--max-tenants", "1"]);
    let server = Server::start(&args, &[]);
    let url = server.url();
    let mut order = create_args("Order 7", COFFEE);
    order["idempotency_key"] = json!("order-7");
    let call = |token: &'static str, tool: &'static str, args: Value| {
        let url = url.clone();
        async move { sized_call(&url, token, tool, args).await.outcome }
    };
    let first = call("tenant-a", "create_payment_link", order.clone())
        .await
        .unwrap();
    let replay = call("tenant-a", "create_payment_link", order.clone())
        .await
        .unwrap();
    assert_eq!(replay["id"], first["id"], "a replay while the data lives");
    // Another tenant takes the only place in the cache: tenant-a's sandbox goes, its links
    // with it, and its idempotency keys with them.
    call("tenant-b", "list_products", json!({})).await.unwrap();
    let gone = call(
        "tenant-a",
        "get_payment_link",
        json!({"payment_link_id": first["id"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(gone["kind"], "not_found");
    let again = call("tenant-a", "create_payment_link", order.clone())
        .await
        .unwrap();
    assert_ne!(
        again["id"], first["id"],
        "never the link that went with the data"
    );
    let fetched = call(
        "tenant-a",
        "get_payment_link",
        json!({"payment_link_id": again["id"]}),
    )
    .await
    .unwrap();
    assert_eq!(fetched["id"], again["id"]);
    let replay = call("tenant-a", "create_payment_link", order)
        .await
        .unwrap();
    assert_eq!(
        replay["id"], again["id"],
        "and the key replays the new link"
    );
    assert_eq!(
        server
            .metric(r#"paylink_idempotency_entries{state="created"}"#)
            .await,
        Some(1.0),
        "the dropped tenant's entry left the store"
    );
}

/// Waits until the server has finished `calls` cancelled calls: each writes its log line as it
/// ends, after its create's entry was recorded as an unknown outcome. Then `/metrics` shows no
/// create in flight.
async fn no_create_in_flight(server: &Server, calls: usize) {
    server
        .log()
        .wait_for_lines(Duration::from_secs(60), "tool call", calls)
        .await;
    assert_eq!(
        server
            .metric(r#"paylink_idempotency_entries{state="in_flight"}"#)
            .await,
        Some(0.0),
        "creates still in flight"
    );
}

#[tokio::test]
async fn a_thousand_cancelled_creates_leave_new_keys_working_and_the_store_bounded() {
    const CANCELLED: usize = 1000;
    const UNKNOWN_CAP: usize = 20;
    let mock = MockStream::start("t").await;
    // Every create reaches Stream, which holds its answer far longer than the test runs.
    for _ in 0..CANCELLED {
        mock.fault(
            "POST",
            "/api/v2/payment_links",
            Fault::Delay(Duration::from_secs(300)),
        );
    }
    let mut args = OPEN_GATE.to_vec();
    args.extend([
        "--backend",
        "stream",
        "--max-concurrent-per-tenant",
        "0",
        "--max-concurrent-per-client",
        "0",
        "--upstream-timeout-secs",
        "300",
        "--request-deadline-secs",
        "300",
        "--idempotency-max-per-tenant",
        "50",
        "--idempotency-max-unknown-per-tenant",
        "20",
    ]);
    let server = Server::start(&args, &[("STREAM_BASE_URL", &mock.uri())]);
    let url = server.url();
    let create = |key: String| json!({"name": "Order", "items": [{"product_id": ESPRESSO, "quantity": 1}], "idempotency_key": key});
    let started = Instant::now();
    for i in 0..CANCELLED {
        let mut call = tokio::spawn({
            let url = url.clone();
            let args = create(format!("cancelled-{i}"));
            async move {
                sized_call(&url, "t", "create_payment_link", args)
                    .await
                    .outcome
            }
        });
        // Once Stream has the create, the client gives up: its connection closes, and the
        // server cancels the call with the outcome unknown.
        tokio::select! {
            () = mock.arrivals_reach(i + 1) => {}
            answered = &mut call => {
                panic!("create {i} was answered before it reached Stream: {answered:?}")
            }
        }
        call.abort();
        let _ = call.await;
    }
    eprintln!(
        "{CANCELLED} cancelled creates in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    no_create_in_flight(&server, CANCELLED).await;
    let unknown = r#"paylink_idempotency_entries{state="unknown"}"#;
    assert_eq!(server.metric(unknown).await, Some(UNKNOWN_CAP as f64));
    assert_eq!(
        server
            .metric(r#"paylink_idempotency_evictions_total{kind="unknown"}"#)
            .await,
        Some((CANCELLED - UNKNOWN_CAP) as f64),
        "the oldest unknown outcomes were dropped, each counted"
    );
    assert!(
        server
            .stderr()
            .contains("dropped the oldest unknown outcome")
    );

    // A brand-new key works.
    let fresh = sized_call(&url, "t", "create_payment_link", create("fresh".into()))
        .await
        .outcome
        .expect("a new key is never refused because of other keys");
    assert_eq!(mock.posts().await.len(), CANCELLED + 1);
    // A kept unknown outcome is recovered by lookup, without a second create...
    let recovered = sized_call(
        &url,
        "t",
        "create_payment_link",
        create(format!("cancelled-{}", CANCELLED - 1)),
    )
    .await
    .outcome
    .expect("recovered");
    assert_ne!(recovered["id"], fresh["id"]);
    assert_eq!(
        mock.posts().await.len(),
        CANCELLED + 1,
        "found, not created again"
    );
    // ...while a dropped one is a new key again: the documented trade-off of the cap.
    sized_call(
        &url,
        "t",
        "create_payment_link",
        create("cancelled-0".into()),
    )
    .await
    .outcome
    .unwrap();
    assert_eq!(mock.posts().await.len(), CANCELLED + 2);

    let entries: f64 = {
        let mut sum = 0.0;
        for state in ["in_flight", "created", "unknown"] {
            sum += server
                .metric(&format!(
                    r#"paylink_idempotency_entries{{state="{state}"}}"#
                ))
                .await
                .unwrap();
        }
        sum
    };
    assert!(entries <= 50.0, "{entries} entries for one tenant");
    assert!(server.metric(unknown).await.unwrap() <= UNKNOWN_CAP as f64);
}
