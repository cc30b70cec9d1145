//! Two real replicas of the binary (`http --stateless --store redis://...`) sharing one real
//! redis-server of the test's own, in front of the Stream mock, which counts the POSTs: what a
//! load balancer spreading calls over them must never see is a second link for one key, or a
//! limit multiplied by the replica count.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::http::{Server, modern_call_body, modern_headers, post, stateless_call};
use crate::harness::redis::Redis;
use crate::harness::{CALL_DEADLINE, within};
use crate::mocks::stream::{Fault, MockStream};
use crate::store_redis::{create, stream_server};

const TOKEN: &str = "tok-replica-secret";

/// A create with `key` through `server`.
async fn create_on(server: &Server, name: &str, key: &str) -> Result<Value, Value> {
    stateless_call(
        &server.url(),
        TOKEN,
        &[],
        "create_payment_link",
        create(name, Some(key)),
    )
    .await
}

/// Every GET of the links list answers 503 for the next `n` requests: a create's outcome stays
/// unknown (its own recovery lookups fail).
fn fail_lookups(mock: &MockStream, n: usize) {
    for _ in 0..n {
        mock.fault(
            "GET",
            "/api/v2/payment_links",
            Fault::Status(503, json!({"error": {"code": "DOWN", "message": "down"}})),
        );
    }
}

#[tokio::test]
async fn concurrent_identical_creates_split_over_both_replicas_make_one_post_and_share_the_link() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(&mock, &redis.url(), &[]);
    let b = stream_server(&mock, &redis.url(), &[]);
    // The first POST is answered after a while, so that the others arrive while it runs.
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Delay(Duration::from_millis(1500)),
    );
    let mut calls = Vec::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { a.url() } else { b.url() };
        calls.push(tokio::spawn(async move {
            stateless_call(
                &url,
                TOKEN,
                &[],
                "create_payment_link",
                create("Order 7", Some("order-7")),
            )
            .await
        }));
    }
    let mut ids = Vec::new();
    for c in calls {
        let link = c.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        ids.push(link["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(mock.posts().await.len(), 1, "exactly one POST");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one link for all: {ids:?}"
    );
    // Other arguments with the same key, on either replica: a conflict, no POST.
    for server in [&a, &b] {
        let e = create_on(server, "Order 8", "order-7").await.unwrap_err();
        assert_eq!(e["kind"], "idempotency_conflict", "{e}");
    }
    assert_eq!(mock.posts().await.len(), 1);
}

#[tokio::test]
async fn a_500_after_commit_on_one_replica_retried_on_the_other_returns_the_same_link() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(&mock, &redis.url(), &[]);
    let b = stream_server(&mock, &redis.url(), &[]);
    // Stored, then a 500, and A's own lookups fail too: on A the outcome is unknown.
    mock.fault("POST", "/api/v2/payment_links", Fault::StoreThen500);
    fail_lookups(&mock, 12);
    let e = create_on(&a, "Order", "k-500").await.unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown", "{e}");
    assert_eq!(mock.link_count(), 1);
    mock.state.lock().unwrap().faults.clear();
    // The retry lands on B: it looks the link up by the first attempt's reference.
    let link = create_on(&b, "Order", "k-500").await.unwrap();
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);
    assert_eq!(mock.posts().await.len(), 1, "never a second POST");
    // And from then on both replicas replay it.
    assert_eq!(create_on(&a, "Order", "k-500").await.unwrap(), link);
    assert_eq!(mock.posts().await.len(), 1);
}

#[tokio::test]
async fn a_replica_killed_right_after_its_post_left_leaves_the_link_for_the_other_to_recover() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    // A short upstream timeout keeps the lease short (two attempts and 5 s: 9 s).
    let a = stream_server(&mock, &redis.url(), &["--upstream-timeout-secs", "2"]);
    let b = stream_server(&mock, &redis.url(), &["--upstream-timeout-secs", "2"]);
    // The mock stores the link at once and answers much later: A dies before it hears back.
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Delay(Duration::from_secs(60)),
    );
    let url = a.url();
    let in_flight = tokio::spawn(async move {
        let mut headers = modern_headers("create_payment_link");
        headers.push(("authorization", "Bearer tok-replica-secret"));
        let body = modern_call_body(1, "create_payment_link", create("Order", Some("k-kill")));
        post(&url, None, &headers, &body).await
    });
    within(
        CALL_DEADLINE,
        "A's POST reaching the mock",
        mock.arrivals_reach(1),
    )
    .await;
    drop(a); // SIGKILL
    in_flight.abort();
    assert_eq!(mock.link_count(), 1);
    // The retry on B waits out A's lease (no one renews it), then looks the link up by A's
    // reference before anything else: it finds it.
    let link = create_on(&b, "Order", "k-kill").await.unwrap();
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);
    assert_eq!(mock.posts().await.len(), 1, "B never sent a second POST");
}

#[tokio::test]
async fn both_replicas_restarted_a_repeat_is_still_answered_from_the_store() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(&mock, &redis.url(), &[]);
    let b = stream_server(&mock, &redis.url(), &[]);
    let first = create_on(&a, "Order", "k-restart").await.unwrap();
    drop((a, b));
    let a = stream_server(&mock, &redis.url(), &[]);
    let b = stream_server(&mock, &redis.url(), &[]);
    for server in [&b, &a] {
        assert_eq!(
            create_on(server, "Order", "k-restart").await.unwrap(),
            first
        );
    }
    assert_eq!(mock.posts().await.len(), 1, "answered from the store");
    assert_eq!(
        b.metric("paylink_idempotent_replays_total").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn keys_are_versioned_expire_and_never_hold_the_caller_key() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(&mock, &redis.url(), &[]);
    create_on(&a, "Order", "k-layout").await.unwrap();
    let keys = redis.keys().await;
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.starts_with("paylink:v1:idem:{"), "{key}");
        assert!(!key.contains(TOKEN) && !key.contains("k-layout"), "{key}");
        let ttl: i64 = redis.cmd(&["PTTL", key]).await;
        assert!(
            ttl > 0 && ttl <= 24 * 3600 * 1000,
            "{key} expires within 24 h: {ttl}"
        );
        let kind: String = redis.cmd(&["TYPE", key]).await;
        let dump: Vec<String> = match kind.as_str() {
            "hash" => redis.cmd(&["HGETALL", key]).await,
            "zset" => redis.cmd(&["ZRANGE", key, "0", "-1"]).await,
            other => panic!("{key} is a {other}"),
        };
        assert!(
            dump.iter().all(|v| !v.contains(TOKEN)),
            "{key} holds no caller key"
        );
    }
}

#[tokio::test]
async fn a_create_with_a_key_costs_two_store_round_trips() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(&mock, &redis.url(), &[]);
    // The first create loads the scripts; count the next one's.
    create_on(&a, "Warm-up", "k-warm").await.unwrap();
    const OPS: &str = "paylink_store_operations_total{";
    let before = a.metric_sum(OPS).await;
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    create_on(&a, "Order", "k-count").await.unwrap();
    // Seen from the server: two operations, each one round trip.
    assert_eq!(a.metric_sum(OPS).await - before, 2.0);
    // Seen from Redis: two scripts run, and no command of a client of its own (the commands a
    // script calls are counted too, but none is a round trip).
    let calls = redis.command_calls().await;
    let evalsha = calls.iter().find(|(n, _)| n == "evalsha").map(|(_, c)| *c);
    assert_eq!(evalsha, Some(2), "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|(n, _)| !matches!(n.as_str(), "eval" | "script|load" | "ping")),
        "{calls:?}"
    );
}

/// A replica with the given limits (every other rate off).
fn limited(mock: &MockStream, redis: &Redis, limits: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--backend", "stream", "--stateless", "--store", &url];
    for (flag, default) in [
        ("--rate-limit-per-minute", "0"),
        ("--client-rate-limit-per-minute", "0"),
        ("--new-tenants-per-minute", "0"),
    ] {
        let value = limits
            .iter()
            .position(|l| *l == flag)
            .map_or(default, |i| limits[i + 1]);
        args.extend([flag, value]);
    }
    Server::start(&args, &[("STREAM_BASE_URL", &mock.uri())])
}

/// A `list_products` call with `token`: its HTTP status and `Retry-After`.
async fn list_status(server: &Server, token: &str) -> (u16, Option<u64>) {
    let mut headers = modern_headers("list_products");
    let auth = format!("Bearer {token}");
    headers.push(("authorization", &auth));
    let r = post(
        &server.url(),
        None,
        &headers,
        &modern_call_body(1, "list_products", json!({})),
    )
    .await;
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (r.status().as_u16(), retry)
}

#[tokio::test]
async fn a_per_minute_limit_of_n_holds_for_n_requests_split_over_both_replicas() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let limits = ["--rate-limit-per-minute", "6"];
    let (a, b) = (
        limited(&mock, &redis, &limits),
        limited(&mock, &redis, &limits),
    );
    for i in 0..6 {
        let server = if i % 2 == 0 { &a } else { &b };
        assert_eq!(list_status(server, TOKEN).await.0, 200, "request {i}");
    }
    for server in [&a, &b] {
        let (status, retry) = list_status(server, TOKEN).await;
        assert_eq!(status, 429, "the seventh is refused on either replica");
        let retry = retry.expect("Retry-After");
        assert!((1..=60).contains(&retry), "within the 60 s window: {retry}");
    }
    assert_eq!(
        a.metric(r#"paylink_rate_limited_total{reason="tenant_rate"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn the_client_and_new_tenant_limits_are_shared_too() {
    let redis = Redis::start();
    let mock = MockStream::start_any_key().await;
    let limits = [
        "--client-rate-limit-per-minute",
        "4",
        "--new-tenants-per-minute",
        "2",
    ];
    let (a, b) = (
        limited(&mock, &redis, &limits),
        limited(&mock, &redis, &limits),
    );
    // Three new keys from one address over two replicas: the third is refused, though neither
    // replica alone has seen more than two.
    assert_eq!(list_status(&a, "k-1").await.0, 200);
    assert_eq!(list_status(&b, "k-2").await.0, 200);
    assert_eq!(list_status(&a, "k-3").await.0, 429);
    // That was the address's third request; one more passes, then the fifth is refused.
    assert_eq!(list_status(&b, "k-2").await.0, 200);
    assert_eq!(list_status(&a, "k-1").await.0, 429);
    assert_eq!(
        a.metric(r#"paylink_rate_limited_total{reason="client_rate"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        a.metric(r#"paylink_rate_limited_total{reason="new_tenants"}"#)
            .await,
        Some(1.0)
    );
    let keys = redis.keys().await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("paylink:v1:rate:client_rate:127.0.0.1")),
        "{keys:?}"
    );
    for k in keys.iter().filter(|k| k.starts_with("paylink:v1:rate:")) {
        let ttl: i64 = redis.cmd(&["PTTL", k]).await;
        assert!(ttl > 0 && ttl <= 60_000, "{k}: {ttl}");
        assert!(
            !k.contains("k-1") && !k.contains("k-2"),
            "no caller key in {k}"
        );
    }
}

#[tokio::test]
async fn with_redis_down_the_limits_fail_open_to_each_replica_and_say_so() {
    let mut redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let limits = ["--rate-limit-per-minute", "2"];
    let (a, b) = (
        limited(&mock, &redis, &limits),
        limited(&mock, &redis, &limits),
    );
    redis.stop();
    // Each replica counts alone: two each, then its own bucket refuses.
    for server in [&a, &b] {
        assert_eq!(list_status(server, TOKEN).await.0, 200);
        assert_eq!(list_status(server, TOKEN).await.0, 200);
        assert_eq!(list_status(server, TOKEN).await.0, 429);
    }
    assert!(
        a.metric(r#"paylink_store_limit_fail_open_total{limit="tenant_rate"}"#)
            .await
            .unwrap()
            >= 3.0
    );
    a.log()
        .wait_for_lines(
            CALL_DEADLINE,
            "this limit is counted by this replica alone",
            1,
        )
        .await;
}

/// A stateless sandbox replica on `redis` with `extra` arguments (rates off).
fn sandbox_replica(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec![
        "--stateless",
        "--store",
        &url,
        "--rate-limit-per-minute",
        "0",
        "--client-rate-limit-per-minute",
        "0",
        "--new-tenants-per-minute",
        "0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args, &[])
}

async fn sandbox_call(
    server: &Server,
    token: &str,
    tool: &'static str,
    args: Value,
) -> Result<Value, Value> {
    stateless_call(&server.url(), token, &[], tool, args).await
}

fn coffee(name: &str) -> Value {
    json!({"name": name, "items": [{"product_id": crate::harness::COFFEE, "quantity": 2}]})
}

#[tokio::test]
async fn a_sandbox_link_created_through_one_replica_is_read_and_changed_through_the_other() {
    let redis = Redis::start();
    let a = sandbox_replica(&redis, &[]);
    let b = sandbox_replica(&redis, &[]);
    let link = sandbox_call(&a, "demo", "create_payment_link", coffee("Beans"))
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap().to_owned();
    let read = sandbox_call(
        &b,
        "demo",
        "get_payment_link",
        json!({"payment_link_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(read, link);
    let items = sandbox_call(
        &b,
        "demo",
        "list_line_items",
        json!({"payment_link_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(items["data"][0]["quantity"], 2);
    let second = sandbox_call(&b, "demo", "create_payment_link", coffee("More beans"))
        .await
        .unwrap();
    let listed = sandbox_call(&a, "demo", "list_payment_links", json!({}))
        .await
        .unwrap();
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["More beans", "Beans"],
        "newest first, from both replicas"
    );
    let changed = sandbox_call(
        &b,
        "demo",
        "update_payment_link_status",
        json!({"payment_link_id": id, "status": "inactive", "message": "Sold out"}),
    )
    .await
    .unwrap();
    assert_eq!(changed["status"], "inactive");
    let seen = sandbox_call(
        &a,
        "demo",
        "get_payment_link",
        json!({"payment_link_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(seen["inactive_message"], "Sold out");
    // Another tenant sees none of it.
    let e = sandbox_call(
        &a,
        "other",
        "get_payment_link",
        json!({"payment_link_id": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(e["kind"], "not_found");
    // A key replays across replicas on the sandbox too.
    let keyed = with_key(coffee("Keyed"), "sb-1");
    let first = sandbox_call(&a, "demo", "create_payment_link", keyed.clone())
        .await
        .unwrap();
    assert_eq!(
        sandbox_call(&b, "demo", "create_payment_link", keyed)
            .await
            .unwrap(),
        first
    );
    assert_ne!(first["id"], second["id"]);
    let listed = sandbox_call(&b, "demo", "list_payment_links", json!({}))
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
}

fn with_key(mut args: Value, key: &str) -> Value {
    args["idempotency_key"] = json!(key);
    args
}

#[tokio::test]
async fn the_sandbox_bounds_hold_over_both_replicas() {
    let redis = Redis::start();
    let bounds = ["--sandbox-max-links", "2"];
    let (a, b) = (
        sandbox_replica(&redis, &bounds),
        sandbox_replica(&redis, &bounds),
    );
    sandbox_call(&a, "t1", "create_payment_link", coffee("1"))
        .await
        .unwrap();
    sandbox_call(&b, "t1", "create_payment_link", coffee("2"))
        .await
        .unwrap();
    let e = sandbox_call(&a, "t1", "create_payment_link", coffee("3"))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "rate_limited", "{e}");
    assert_eq!(e["retry_safe"], false, "a quota: waiting does not lift it");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 2 links")
    );

    // The byte budget of all tenants together: what two links take, then full for everyone.
    let pool: Vec<String> = redis.cmd(&["HGETALL", "paylink:v1:sandbox:pool"]).await;
    let total: usize = pool
        .chunks(2)
        .find(|kv| kv[0] == "#")
        .map(|kv| kv[1].parse().unwrap())
        .unwrap();
    assert!(total > 2 * 500, "two links charged: {total}");
    drop((a, b));
    let max = (total + total / 4).to_string();
    let bounds = ["--sandbox-max-bytes", &max];
    let (a, b) = (
        sandbox_replica(&redis, &bounds),
        sandbox_replica(&redis, &bounds),
    );
    let e = sandbox_call(&b, "t2", "create_payment_link", coffee("4"))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "rate_limited", "{e}");
    assert!(e["message"].as_str().unwrap().contains("is full"), "{e}");
    let e = sandbox_call(&a, "t3", "create_payment_link", coffee("5"))
        .await
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("is full"), "{e}");
    for key in redis.keys().await {
        let ttl: i64 = redis.cmd(&["PTTL", &key]).await;
        assert!(ttl > 0 && ttl <= 24 * 3600 * 1000, "{key}: {ttl}");
        assert!(!key.contains("t1") || key.contains('{'), "{key}");
    }
}

#[tokio::test]
async fn redis_stopped_refuses_creates_on_both_replicas_before_the_upstream_reads_work_then_it_recovers()
 {
    let mut redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(&mock, &redis.url(), &[]);
    let b = stream_server(&mock, &redis.url(), &[]);
    let link = create_on(&a, "Before", "k-before").await.unwrap();
    let id = link["id"].as_str().unwrap().to_owned();

    redis.stop();
    for server in [&a, &b] {
        let e = create_on(server, "During", "k-during").await.unwrap_err();
        assert_eq!(e["kind"], "unavailable", "{e}");
        assert_eq!(e["retry_safe"], true);
        let e = stateless_call(
            &server.url(),
            TOKEN,
            &[],
            "create_payment_link",
            create("During, no key", None),
        )
        .await
        .unwrap_err();
        assert_eq!(e["kind"], "unavailable", "{e}");
        let read = stateless_call(
            &server.url(),
            TOKEN,
            &[],
            "get_payment_link",
            json!({"payment_link_id": id}),
        )
        .await
        .unwrap();
        assert_eq!(read["id"], id.as_str(), "reads work");
    }
    assert_eq!(
        mock.posts().await.len(),
        1,
        "nothing sent for the refused creates"
    );

    // Redis is back (empty: it kept nothing): both replicas serve creates again, unrestarted.
    redis.restart();
    let during = create_on(&b, "During", "k-during").await.unwrap();
    assert_eq!(create_on(&a, "During", "k-during").await.unwrap(), during);
    assert_eq!(mock.posts().await.len(), 2);
}

#[tokio::test]
async fn redis_slow_refuses_a_create_before_the_upstream_and_its_key_is_usable_once_it_answers() {
    let redis = Redis::start();
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(
        &mock,
        &redis.url(),
        &["--store-timeout-ms", "200", "--upstream-timeout-secs", "2"],
    );
    // Every client waits 2 s (ten times the deadline): the claim times out, and Redis may
    // apply it once the pause ends.
    crate::harness::redis::pause(&redis, 2000).await;
    let e = create_on(&a, "Slow", "k-slow").await.unwrap_err();
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert!(mock.posts().await.is_empty(), "nothing sent upstream");
    let _: String = redis.cmd(&["PING"]).await;
    // The same key works: the stale claim is released (or lapses and is looked up first).
    let link = create_on(&a, "Slow", "k-slow").await.unwrap();
    assert_eq!(link["name"], "Slow");
    assert_eq!(mock.posts().await.len(), 1);
}

#[tokio::test]
async fn with_redis_persisting_its_restart_keeps_the_keys() {
    let mut redis = Redis::start_with(true);
    let mock = MockStream::start(TOKEN).await;
    let a = stream_server(&mock, &redis.url(), &[]);
    let b = stream_server(&mock, &redis.url(), &[]);
    let first = create_on(&a, "Kept", "k-kept").await.unwrap();
    redis.restart();
    assert_eq!(create_on(&b, "Kept", "k-kept").await.unwrap(), first);
    assert_eq!(mock.posts().await.len(), 1);
}

/// The daily budget (`--max-daily-amount`) lives in the shared store: a tenant's spending through
/// one replica counts on the other, 20 concurrent creates split over both against a budget for 5
/// make exactly 5 links, the book's key is versioned and expires, and with the store down a
/// capped create is refused (`unavailable`) rather than left uncounted.
#[tokio::test]
async fn the_daily_budget_holds_over_both_replicas() {
    let mut redis = Redis::start();
    let budget = [
        "--max-daily-amount",
        "SAR:445.00",
        "--max-concurrent-per-tenant",
        "32",
    ];
    let (a, b) = (
        sandbox_replica(&redis, &budget),
        sandbox_replica(&redis, &budget),
    );
    let one_coffee = |n: usize| json!({"name": format!("c{n}"), "items": [{"product_id": crate::harness::COFFEE, "quantity": 1}]});

    // 89.00 through A, then 267.00 through B: 356.00 of 445.00; 89.00 is left, 178.00 is not.
    sandbox_call(&a, "spender", "create_payment_link", one_coffee(0))
        .await
        .unwrap();
    sandbox_call(
        &b,
        "spender",
        "create_payment_link",
        json!({"name": "three", "items": [{"product_id": crate::harness::COFFEE, "quantity": 3}]}),
    )
    .await
    .unwrap();
    let e = sandbox_call(&a, "spender", "create_payment_link", coffee("two more"))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("89.00 SAR is left"),
        "{e}"
    );

    // Concurrency, split over both replicas: the budget of another tenant fits 5 coffees.
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let url = if n % 2 == 0 { a.url() } else { b.url() };
            let args = one_coffee(n);
            tokio::spawn(async move {
                stateless_call(&url, "racer", &[], "create_payment_link", args).await
            })
        })
        .collect();
    let mut made = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => made += 1,
            Err(e) => assert_eq!(e["kind"], "cap_exceeded", "{e}"),
        }
    }
    assert_eq!(made, 5, "exactly the budget's worth of links");

    // The books: versioned, per tenant and currency, expiring within the 24-hour window.
    let keys = redis.keys().await;
    let books: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("paylink:v1:ledger:") && k.ends_with(":day:SAR"))
        .collect();
    assert_eq!(books.len(), 2, "{keys:?}");
    for book in books {
        let ttl: i64 = redis.cmd(&["PTTL", book]).await;
        assert!(ttl > 0 && ttl <= 24 * 3600 * 1000, "{book}: {ttl}");
    }

    // The store down: a capped create cannot be counted, so it is not made.
    redis.stop();
    let e = sandbox_call(&b, "fresh", "create_payment_link", one_coffee(99))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert_eq!(e["retry_safe"], true);
}
