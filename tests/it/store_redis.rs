//! The shared store (`--store redis://...`) of one server against a real redis-server of the
//! test's own: how it is configured, what it does when Redis is down or slow, what it keeps and
//! how (key layout, expiry), and what `/metrics` says about it. Two replicas sharing one Redis
//! are in `replicas`.

use serde_json::{Value, json};

use crate::harness::http::{Server, stateless_call};
use crate::harness::redis::{Redis, free_port, pause};
use crate::mocks::stream::{ESPRESSO, MockStream};

/// Every limit out of the way: these tests are about the store.
const NO_LIMITS: &[&str] = &[
    "--rate-limit-per-minute",
    "0",
    "--client-rate-limit-per-minute",
    "0",
    "--new-tenants-per-minute",
    "0",
];

pub fn create(name: &str, key: Option<&str>) -> Value {
    let mut args = json!({"name": name, "items": [{"product_id": ESPRESSO, "quantity": 1}]});
    if let Some(k) = key {
        args["idempotency_key"] = json!(k);
    }
    args
}

/// A stateless Stream server on `mock` using `store` (a URL), with `extra` arguments.
pub fn stream_server(mock: &MockStream, store: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--backend", "stream", "--stateless", "--store", store];
    args.extend_from_slice(NO_LIMITS);
    args.extend_from_slice(extra);
    Server::start(&args, &[("STREAM_BASE_URL", &mock.uri())])
}

#[tokio::test]
async fn a_store_password_stays_off_the_command_line_and_out_of_every_log_and_error() {
    let secret = "s3cret-store-pw";
    let refused = Server::refuse(
        &["--store", &format!("redis://:{secret}@127.0.0.1:1/0")],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("PAYLINK_STORE"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(secret), "{}", refused.stderr);

    // From the environment it is accepted; with nothing listening there, writes are refused
    // and nothing anywhere shows the password.
    let url = format!("redis://app:{secret}@127.0.0.1:{}/0", free_port());
    let mut args = vec!["--stateless"];
    args.extend_from_slice(NO_LIMITS);
    let server = Server::start(&args, &[("PAYLINK_STORE", &url)]);
    let e = stateless_call(
        &server.url(),
        "tenant",
        &[],
        "create_payment_link",
        create("Order", Some("k")),
    )
    .await
    .unwrap_err();
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert_eq!(e["retry_safe"], true);
    assert!(!e.to_string().contains(secret));
    let log = server.stop_with_stderr().await;
    assert!(log.contains("redis://app:***@127.0.0.1"), "{log}");
    assert!(!log.contains(secret), "{log}");
}

#[tokio::test]
async fn a_store_url_from_a_file_and_a_wrong_one_refused_at_start_up() {
    let redis = Redis::start();
    let file = crate::harness::temp_file(&format!("{}\n", redis.url()));
    let mut args = vec!["--stateless"];
    args.extend_from_slice(NO_LIMITS);
    let server = Server::start(
        &args,
        &[("PAYLINK_STORE_FILE", file.path().to_str().unwrap())],
    );
    let link = stateless_call(
        &server.url(),
        "tenant",
        &[],
        "create_payment_link",
        json!({"name": "Mug", "items": [{"product_id": crate::harness::MUG}]}),
    )
    .await
    .unwrap();
    assert!(link["id"].is_string());
    drop(server);

    for (flag, why) in [
        ("http://127.0.0.1:6379", "redis://"),
        ("redis://127.0.0.1:6379/db", "database number"),
        ("redis://", "host"),
    ] {
        let r = Server::refuse(&["--store", flag], &[]);
        assert_eq!(r.status.code(), Some(2), "{flag}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{flag}: {}", r.stderr);
    }
    let r = Server::refuse(
        &[],
        &[
            ("PAYLINK_STORE", "memory"),
            ("PAYLINK_STORE_FILE", file.path().to_str().unwrap()),
        ],
    );
    assert!(r.stderr.contains("only one"), "{}", r.stderr);
}

#[tokio::test]
async fn with_redis_down_writes_are_refused_before_the_upstream_and_reads_work_then_it_recovers() {
    let mut redis = Redis::start();
    let mock = MockStream::start("t").await;
    let server = stream_server(&mock, &redis.url(), &[]);
    let url = server.url();
    let link = stateless_call(&url, "t", &[], "create_payment_link", create("A", None))
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap().to_owned();
    assert_eq!(mock.posts().await.len(), 1);

    redis.stop();
    let e = stateless_call(&url, "t", &[], "create_payment_link", create("B", None))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert_eq!(e["retry_safe"], true);
    let e = stateless_call(
        &url,
        "t",
        &[],
        "update_payment_link_status",
        json!({"payment_link_id": id, "status": "inactive"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert_eq!(
        mock.posts().await.len(),
        1,
        "nothing was sent upstream for the refused writes"
    );
    assert!(
        mock.requests()
            .await
            .iter()
            .all(|r| r.method.as_str() != "PATCH")
    );
    // Reads do not need the store.
    let read = stateless_call(
        &url,
        "t",
        &[],
        "get_payment_link",
        json!({"payment_link_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(read["id"], id.as_str());
    let failed = server
        .metric(r#"paylink_store_operations_total{op="ping",outcome="unreachable"}"#)
        .await
        .unwrap_or(0.0)
        + server
            .metric(r#"paylink_store_operations_total{op="ping",outcome="timeout"}"#)
            .await
            .unwrap_or(0.0);
    assert!(failed >= 2.0, "both refusals counted: {failed}");

    // Redis comes back on the same address: the server reconnects by itself.
    redis.restart();
    let again = stateless_call(&url, "t", &[], "create_payment_link", create("B", None))
        .await
        .unwrap();
    assert_eq!(again["name"], "B");
    assert_eq!(mock.posts().await.len(), 2);
    let ok = server
        .metric(r#"paylink_store_operations_total{op="ping",outcome="ok"}"#)
        .await
        .unwrap();
    assert!(ok >= 2.0, "{ok}");
    assert!(
        server
            .metric(r#"paylink_store_operation_duration_seconds_count{op="ping"}"#)
            .await
            .unwrap()
            >= 4.0
    );
    let log = server.stop_with_stderr().await;
    assert!(log.contains("the shared store answers again"), "{log}");
}

#[tokio::test]
async fn with_redis_slow_a_write_is_refused_at_the_deadline_and_served_once_it_answers() {
    let redis = Redis::start();
    let mock = MockStream::start("t").await;
    let server = stream_server(&mock, &redis.url(), &["--store-timeout-ms", "200"]);
    let url = server.url();
    // Every client of Redis waits 2 s (ten times the deadline): Redis is slow, not down.
    pause(&redis, 2000).await;
    let e = stateless_call(&url, "t", &[], "create_payment_link", create("A", None))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert!(mock.posts().await.is_empty(), "nothing sent upstream");
    assert!(
        server
            .metric(r#"paylink_store_operations_total{op="ping",outcome="timeout"}"#)
            .await
            .unwrap()
            >= 1.0
    );
    // A command of our own is answered once the pause is over: then so is the server.
    let _: String = redis.cmd(&["PING"]).await;
    let link = stateless_call(&url, "t", &[], "create_payment_link", create("A", None))
        .await
        .unwrap();
    assert_eq!(link["name"], "A");
    assert_eq!(mock.posts().await.len(), 1);
}

#[tokio::test]
async fn a_tenants_idempotency_keys_in_redis_stay_within_its_bound() {
    let redis = Redis::start();
    let mock = MockStream::start("t").await;
    let server = stream_server(&mock, &redis.url(), &["--idempotency-max-per-tenant", "2"]);
    let url = server.url();
    let mut links = Vec::new();
    for key in ["k1", "k2", "k3"] {
        links.push(
            stateless_call(
                &url,
                "t",
                &[],
                "create_payment_link",
                create("A", Some(key)),
            )
            .await
            .unwrap(),
        );
    }
    let index: Vec<String> = redis
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(":index"))
        .collect();
    assert_eq!(index.len(), 1, "one tenant");
    let members: i64 = redis.cmd(&["ZCARD", &index[0]]).await;
    assert_eq!(members, 2, "the oldest finished entry made room");
    // The newest two still replay; the oldest was dropped, so its key creates anew.
    for (key, link) in [("k2", &links[1]), ("k3", &links[2])] {
        let again = stateless_call(
            &url,
            "t",
            &[],
            "create_payment_link",
            create("A", Some(key)),
        )
        .await
        .unwrap();
        assert_eq!(&again, link);
    }
    assert_eq!(mock.posts().await.len(), 3);
    let again = stateless_call(
        &url,
        "t",
        &[],
        "create_payment_link",
        create("A", Some("k1")),
    )
    .await
    .unwrap();
    assert_ne!(again["id"], links[0]["id"]);
    assert_eq!(mock.posts().await.len(), 4);
}
