//! Reliability: retries that never duplicate a link, unknown outcomes made known, server-side
//! idempotency. Against the strict Stream mock with scripted faults, through the real binary
//! over stdio. (Idempotency keys per tenant, which need two callers of one server, are in
//! `http_tenants`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::stdio::Server;
use crate::harness::{CALL_DEADLINE, within};
use crate::mocks::stream::{ESPRESSO, Fault, GRINDER, MockStream};

fn create(key: Option<&str>, quantity: u32) -> Value {
    let mut args =
        json!({"name": "Order", "items": [{"product_id": ESPRESSO, "quantity": quantity}]});
    if let Some(k) = key {
        args["idempotency_key"] = json!(k);
    }
    args
}

#[tokio::test]
async fn a_500_after_the_link_was_stored_returns_the_stored_link() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    mock.fault("POST", "/api/v2/payment_links", Fault::StoreThen500);
    let link = h
        .call("create_payment_link", create(None, 2))
        .await
        .unwrap();
    assert_eq!(
        mock.posts().await.len(),
        1,
        "exactly one POST: no duplicate"
    );
    assert_eq!(mock.link_count(), 1);
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);
    assert_eq!(link["total"]["amount_minor"], 2500);
}

#[tokio::test]
async fn a_500_before_anything_was_stored_stays_unknown_and_is_recovered_on_repeat() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Status(
            500,
            json!({"error": {"code": "INTERNAL", "message": "boom"}}),
        ),
    );
    let e = h
        .call("create_payment_link", create(Some("order-1"), 1))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(e["retry_safe"], false);
    assert_eq!(mock.link_count(), 0);
    // The caller repeats with the same key: the server looks for the link first, finds nothing,
    // and creates it once.
    let link = h
        .call("create_payment_link", create(Some("order-1"), 1))
        .await
        .unwrap();
    assert_eq!(mock.link_count(), 1);
    assert_eq!(mock.posts().await.len(), 2);
    let again = h
        .call("create_payment_link", create(Some("order-1"), 1))
        .await
        .unwrap();
    assert_eq!(again, link, "a third call replays the result");
    assert_eq!(mock.posts().await.len(), 2, "and makes no upstream call");
}

#[tokio::test]
async fn an_unknown_outcome_repeated_with_its_key_finds_the_link_instead_of_creating_another() {
    let mock = MockStream::start("t").await;
    let h = mock
        .stdio_with("t", &["--upstream-timeout-secs", "1"], &[])
        .await;
    // Stored, then an answer too slow (five times the 1 s attempt timeout) AND the recovery
    // lookups fail: truly unknown.
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    for _ in 0..12 {
        mock.fault(
            "GET",
            "/api/v2/payment_links",
            Fault::Status(503, json!({"error": {"code": "DOWN", "message": "down"}})),
        );
    }
    let e = h
        .call("create_payment_link", create(Some("k-2"), 1))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(mock.link_count(), 1);
    mock.state.lock().unwrap().faults.clear();
    let link = h
        .call("create_payment_link", create(Some("k-2"), 1))
        .await
        .unwrap();
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);
    assert_eq!(
        mock.posts().await.len(),
        1,
        "found by reference, never created twice"
    );
}

#[tokio::test]
async fn idempotent_replay_makes_no_upstream_call_and_a_conflict_is_refused() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    let first = h
        .call("create_payment_link", create(Some("abc"), 1))
        .await
        .unwrap();
    let before = mock.requests().await.len();
    // Same intent spelled differently (case, whitespace) is the same intent.
    let mut respelled = create(Some("abc"), 1);
    respelled["name"] = json!("  Order ");
    respelled["items"][0]["product_id"] = json!(ESPRESSO.to_uppercase());
    let replay = h.call("create_payment_link", respelled).await.unwrap();
    assert_eq!(replay, first);
    assert_eq!(
        mock.requests().await.len(),
        before,
        "no upstream call at all"
    );

    let e = h
        .call("create_payment_link", create(Some("abc"), 5))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "idempotency_conflict");
    assert_eq!(e["retry_safe"], false);
    assert_eq!(mock.link_count(), 1);
}

#[tokio::test]
async fn two_concurrent_identical_creates_make_one_upstream_request() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    // The first create is held at the mock for a second; the second starts once the first has
    // arrived there, so it meets the first in flight.
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Delay(Duration::from_secs(1)),
    );
    let first = h.call("create_payment_link", create(Some("twin"), 1));
    let second = async {
        within(
            CALL_DEADLINE,
            "the first create arrives",
            mock.arrivals_reach(1),
        )
        .await;
        h.call("create_payment_link", create(Some("twin"), 1)).await
    };
    let (a, b) = tokio::join!(first, second);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(mock.posts().await.len(), 1);
    assert_eq!(mock.link_count(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_on_reads() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::Status(
            429,
            json!({"error": {"code": "RATE_LIMITED", "message": "slow down"}}),
        ),
    );
    // The mock cannot set headers on a scripted status; use a wiremock override instead.
    mock.state.lock().unwrap().faults.clear();
    let started = Instant::now();
    wiremock::Mock::given(wiremock::matchers::path("/api/v2/products"))
        .respond_with(
            wiremock::ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": {"code": "RATE_LIMITED", "message": "slow down"}})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock.server)
        .await;
    let products = h.call("list_products", json!({})).await.unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 3);
    let arrivals: Vec<Instant> = mock
        .state
        .lock()
        .unwrap()
        .arrivals
        .iter()
        .map(|a| a.0)
        .collect();
    // The 429 was answered by the override (not recorded in arrivals); the retry was.
    assert_eq!(arrivals.len(), 1);
    assert!(
        arrivals[0].duration_since(started) >= Duration::from_secs(1),
        "the retry came {:?} after the start, before Retry-After allowed",
        arrivals[0].duration_since(started)
    );
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_deadline_is_answered_not_waited() {
    let mock = MockStream::start("t").await;
    let h = mock
        .stdio_with("t", &["--request-deadline-secs", "10"], &[])
        .await;
    wiremock::Mock::given(wiremock::matchers::path("/api/v2/products"))
        .respond_with(
            wiremock::ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!({"error": {"code": "RATE_LIMITED", "message": "slow down"}})),
        )
        .with_priority(1)
        .mount(&mock.server)
        .await;
    let started = Instant::now();
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "rate_limited");
    assert_eq!(e["retry_after_secs"], 30);
    assert_eq!(e["retry_safe"], true);
    // Waiting until the 10 s deadline would take twice this bound; answering takes a fraction.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once, not after waiting: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_deadline_holds_against_a_slow_upstream() {
    let mock = MockStream::start("t").await;
    let h = mock
        .stdio_with(
            "t",
            &[
                "--upstream-timeout-secs",
                "30",
                "--request-deadline-secs",
                "1",
            ],
            &[],
        )
        .await;
    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::Delay(Duration::from_secs(20)),
    );
    let started = Instant::now();
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "upstream");
    // Five times the 1 s deadline; the upstream would take 20 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

type Seen = Arc<std::sync::Mutex<Vec<String>>>;

/// A server that resets the first connection after reading the request, then answers like
/// Stream's product list. Records each request line.
async fn flaky_server() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let first = {
                let mut seen = record.lock().unwrap();
                seen.push(line);
                seen.len() == 1
            };
            if first {
                // A reset (RST), not a clean close: SO_LINGER 0 makes the close immediate, so
                // the deprecation's blocking concern does not apply.
                #[allow(deprecated)]
                let _ = socket.set_linger(Some(Duration::ZERO));
                drop(socket);
                continue;
            }
            let body = r#"{"data":[{"id":"11111111-1111-4111-8111-111111111111","name":"Espresso","type":"ONE_OFF","prices":[{"currency":"SAR","amount":"12.50","is_active":true}]}],"pagination":{"has_next_page":false}}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn reads_recover_after_a_connection_reset() {
    let (base, seen) = flaky_server().await;
    let h = Server::on_upstream("stream", &base, "t", &[], &[]).await;
    let products = h.call("list_products", json!({})).await.unwrap();
    assert_eq!(products["data"][0]["prices"][0]["amount"], "12.50");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|l| l.starts_with("GET /api/v2/products")));
}

#[tokio::test]
async fn a_create_whose_connection_is_reset_is_never_resent() {
    let (base, seen) = flaky_server().await;
    let h = Server::on_upstream("stream", &base, "t", &[], &[]).await;
    let e = h
        .call(
            "create_payment_link",
            json!({"name": "x", "items": [{"product_id": GRINDER}]}),
        )
        .await
        .unwrap_err();
    // The POST may have reached Stream: unknown, unless the lookup finds it (this server's
    // listing has no such link).
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(e["retry_safe"], false);
    let seen = seen.lock().unwrap().clone();
    let posts = seen.iter().filter(|l| l.starts_with("POST")).count();
    assert_eq!(posts, 1, "the create was sent once: {seen:?}");
    assert!(
        seen.iter()
            .skip(1)
            .all(|l| l.starts_with("GET /api/v2/payment_links?")),
        "then only lookups: {seen:?}"
    );
}

#[tokio::test]
async fn a_create_cancelled_after_it_reached_stream_is_found_not_repeated() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    // Stream stores the link and answers late; the caller gives up once the create has reached
    // Stream (dropping rmcp's call sends `notifications/cancelled`).
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    tokio::select! {
        () = within(CALL_DEADLINE, "the create reaches Stream", mock.arrivals_reach(1)) => {}
        answered = h.call("create_payment_link", create(Some("cancel-me"), 1)) => {
            panic!("answered before it reached Stream: {answered:?}")
        }
    }
    // The server has taken the cancellation once the call's line is logged.
    h.log()
        .wait_for(CALL_DEADLINE, "the cancelled call's log line", |lines| {
            lines
                .iter()
                .any(|l| l.contains("tool call") && l.contains("cancelled"))
        })
        .await;
    assert_eq!(mock.link_count(), 1);
    let link = h
        .call("create_payment_link", create(Some("cancel-me"), 1))
        .await
        .unwrap();
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);
    assert_eq!(
        mock.posts().await.len(),
        1,
        "the repeat looked the link up instead of creating again"
    );
}

#[tokio::test]
async fn an_unreadable_2xx_to_a_create_is_recovered_not_reported_as_nothing_created() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::StoreThenRaw(200, "text/html", "<html>ok</html>"),
    );
    let link = h
        .call("create_payment_link", create(Some("html-200"), 1))
        .await
        .unwrap();
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);
    assert_eq!(mock.posts().await.len(), 1);
}

#[tokio::test]
async fn a_failed_recovery_lookup_keeps_the_outcome_unknown_instead_of_creating() {
    let mock = MockStream::start("t").await;
    let h = mock
        .stdio_with("t", &["--upstream-timeout-secs", "1"], &[])
        .await;
    // The first create is stored but answered too late, and every lookup fails: unknown.
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    let down = || Fault::Status(503, json!({"error": {"code": "DOWN", "message": "down"}}));
    for _ in 0..40 {
        mock.fault("GET", "/api/v2/payment_links", down());
    }
    let e = h
        .call("create_payment_link", create(Some("k-3"), 1))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    // The repeat's lookup fails too: still an error, and still no second POST.
    let e = h
        .call("create_payment_link", create(Some("k-3"), 1))
        .await
        .unwrap_err();
    assert_ne!(e["kind"], "idempotency_conflict");
    assert_eq!(mock.posts().await.len(), 1);
    // Once Stream answers again, the repeat finds the link.
    mock.state.lock().unwrap().faults.clear();
    let link = h
        .call("create_payment_link", create(Some("k-3"), 1))
        .await
        .unwrap();
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);
    assert_eq!(mock.posts().await.len(), 1);
}
