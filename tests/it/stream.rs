//! The Stream backend against a strict mock of Stream's API on 127.0.0.1, through the real
//! binary over stdio (configured through the environment, as Claude Desktop does): what we send,
//! how we read answers, how failures become envelopes. What every backend does alike is in
//! `contract`; retries and unknown outcomes are in `reliability`.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::stdio::Server;
use crate::mocks::stream::{CLUB, ESPRESSO, Fault, GRINDER, MockStream};

const BRANCH: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";
/// Stream's production API: live money. Servers pointed at it here never send a request.
const PRODUCTION: &str = "https://stream-app-service.streampay.sa";

fn create_args(items: Value) -> Value {
    json!({"name": "Order 7", "items": items})
}

#[tokio::test]
async fn create_sends_exactly_the_documented_json() {
    let mock = MockStream::start("ready-token").await;
    let h = mock.stdio().await;
    let link = h
        .call(
            "create_payment_link",
            json!({
                "name": "  Team dinner ",
                "items": [{"product_id": ESPRESSO.to_uppercase(), "quantity": 3}, {"product_id": GRINDER}],
                "currency": "sar",
                "description": "Friday",
                "max_number_of_payments": 4,
                "valid_until": "2099-01-01T00:00:00",
                "success_redirect_url": "https://shop.example/ok",
                "metadata": {"order": "42"},
            }),
        )
        .await
        .unwrap();
    assert_eq!(link["backend"], "stream");
    assert_eq!(link["livemode"], false);
    assert_eq!(
        link["total"],
        json!({"amount_minor": 3*1250 + 34900, "amount": "386.50", "currency": "SAR"})
    );
    assert_eq!(
        link["metadata"],
        json!({"order": "42"}),
        "our own reference stays hidden"
    );

    let posts = mock.posts().await;
    assert_eq!(posts.len(), 1);
    let req = &posts[0];
    assert_eq!(req.headers.get("x-api-key").unwrap(), "ready-token");
    assert!(req.headers.get("x-branch-id").is_none());
    assert!(
        req.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let ref_id = body["custom_metadata"]["paylink_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        body,
        json!({
            "name": "Team dinner",
            "items": [{"product_id": ESPRESSO, "quantity": 3}, {"product_id": GRINDER, "quantity": 1}],
            "currency": "SAR",
            "description": "Friday",
            "max_number_of_payments": 4,
            "valid_until": "2099-01-01T00:00:00Z",
            "success_redirect_url": "https://shop.example/ok",
            "custom_metadata": {"order": "42", "paylink_request_id": ref_id},
        })
    );
}

#[tokio::test]
async fn minimal_create_omits_every_absent_field() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    h.call(
        "create_payment_link",
        create_args(json!([{"product_id": ESPRESSO}])),
    )
    .await
    .unwrap();
    let body: Value = serde_json::from_slice(&mock.posts().await[0].body).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["custom_metadata", "items", "name"]);
}

#[tokio::test]
async fn key_secret_pairs_are_base64_encoded_and_branch_is_sent() {
    let pair = "my-key:my-secret";
    let token = base64::engine::general_purpose::STANDARD.encode(pair);
    let mock = MockStream::start(&token).await;
    let h = mock
        .stdio_with(pair, &["--stream-branch-id", BRANCH], &[])
        .await;
    let products = h.call("list_products", json!({})).await.unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 3);
    let req = &mock.requests().await[0];
    assert_eq!(
        req.headers.get("x-api-key").unwrap().to_str().unwrap(),
        token
    );
    assert_eq!(req.headers.get("x-branch-id").unwrap(), BRANCH);
}

#[tokio::test]
async fn round_trip_create_get_line_items_products() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    // 25 items, paged by 10.
    let items: Vec<Value> = (0..20)
        .map(|i| json!({"product_id": if i % 2 == 0 { ESPRESSO } else { GRINDER }, "quantity": i + 1}))
        .collect();
    let link = h
        .call("create_payment_link", create_args(json!(items)))
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap();
    let got = h
        .call("get_payment_link", json!({"payment_link_id": id}))
        .await
        .unwrap();
    assert_eq!(got, link, "a get returns what the create returned");
    assert_eq!(got["item_count"], 20);
    assert_eq!(got["status"], "active");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({"payment_link_id": id, "limit": 7});
        if let Some(c) = &cursor {
            args["starting_after"] = json!(c);
        }
        let page = h.call("list_line_items", args).await.unwrap();
        for item in page["data"].as_array().unwrap() {
            let unit = item["unit_amount"]["amount_minor"].as_i64().unwrap();
            let q = item["quantity"].as_i64().unwrap();
            assert_eq!(item["total"]["amount_minor"].as_i64().unwrap(), unit * q);
            assert_eq!(item["kind"], "one_time");
            seen.push(q);
        }
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());

    let products = h.call("list_products", json!({"limit": 2})).await.unwrap();
    assert_eq!(products["has_more"], true);
    let next = h
        .call("list_products", json!({"cursor": products["next_cursor"]}))
        .await
        .unwrap();
    assert_eq!(next["has_more"], false);
    assert_eq!(next["data"][0]["id"], CLUB);
    assert_eq!(next["data"][0]["kind"], "recurring");
    assert_eq!(next["data"][0]["interval"], "month");
    let espresso = &products["data"][0];
    assert_eq!(
        espresso["prices"][1],
        json!({"amount_minor": 1025, "amount": "1.025", "currency": "KWD"})
    );
    let gets: Vec<_> = mock
        .requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() == "/api/v2/products")
        .map(|r| r.url.query().unwrap_or("").to_owned())
        .collect();
    assert_eq!(gets, ["page=1&limit=2", "page=2&limit=2"]);
}

#[tokio::test]
async fn kwd_links_have_three_decimal_money() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    let link = h
        .call(
            "create_payment_link",
            json!({"name": "K", "items": [{"product_id": ESPRESSO, "quantity": 2}], "currency": "KWD"}),
        )
        .await
        .unwrap();
    assert_eq!(
        link["total"],
        json!({"amount_minor": 2050, "amount": "2.050", "currency": "KWD"})
    );
}

#[tokio::test]
async fn upstream_validation_maps_loc_to_our_field_with_request_id() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Status(422, json!({"detail": [{"loc": ["body", "items", 0, "quantity"], "msg": "too many", "type": "less_than_equal"}]})),
    );
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "validation");
    assert_eq!(e["field"], "items[0].quantity");
    assert_eq!(e["status"], 422);
    assert_eq!(e["upstream_code"], "less_than_equal");
    assert!(e["request_id"].as_str().unwrap().starts_with("req-"));
    assert_eq!(e["retry_safe"], false);

    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Status(422, json!({"detail": [{"loc": ["body", "custom_metadata", "k"], "msg": "bad", "type": "x"}]})),
    );
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["field"], "metadata.k");
}

#[tokio::test]
async fn stream_error_objects_become_envelopes() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    // Business rule enforced upstream: mixing one-time and recurring.
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}, {"product_id": CLUB}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "upstream");
    assert_eq!(e["upstream_code"], "MIXED_PRODUCT_TYPES");
    assert_eq!(e["status"], 400);
    assert_eq!(e["retry_safe"], false);

    let missing = "44444444-4444-4444-8444-444444444444";
    let e = h
        .call("get_payment_link", json!({"payment_link_id": missing}))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["field"], "payment_link_id");
    assert_eq!(e["upstream_code"], "PAYMENT_LINK_NOT_FOUND");

    for (status, kind, retry_safe) in [
        (401, "auth", false),
        (403, "auth", false),
        (410, "not_found", false),
        (500, "upstream", true),
    ] {
        mock.fault(
            "GET",
            "/api/v2/products",
            Fault::Status(status, json!({"error": {"code": "X", "message": "m"}})),
        );
        mock.fault(
            "GET",
            "/api/v2/products",
            Fault::Status(status, json!({"error": {"code": "X", "message": "m"}})),
        );
        mock.fault(
            "GET",
            "/api/v2/products",
            Fault::Status(status, json!({"error": {"code": "X", "message": "m"}})),
        );
        let e = h.call("list_products", json!({})).await.unwrap_err();
        assert_eq!(e["kind"], kind, "{status}");
        assert_eq!(e["status"], status);
        assert_eq!(e["retry_safe"], retry_safe, "{status}");
        mock.state.lock().unwrap().faults.clear();
    }
}

#[tokio::test]
async fn wrong_key_is_an_auth_error_that_never_echoes_the_key() {
    let mock = MockStream::start("right").await;
    let h = mock.stdio_with("wrong-key-123", &[], &[]).await;
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "auth");
    assert_eq!(e["status"], 401);
    assert!(!e.to_string().contains("wrong-key-123"));
}

#[tokio::test]
async fn non_json_and_empty_bodies_are_explained() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::Raw(400, "text/html", "<html>Bad gateway</html>"),
    );
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "upstream");
    assert!(e["message"].as_str().unwrap().contains("text/html"), "{e}");
    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::Raw(400, "application/json", ""),
    );
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("empty body"), "{e}");
    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::Raw(200, "application/json", "{not json"),
    );
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("malformed JSON"),
        "{e}"
    );
}

#[tokio::test]
async fn a_500_on_create_is_outcome_unknown_after_exactly_one_post() {
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
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(e["retry_safe"], false);
    assert_eq!(e["status"], 500);
    assert_eq!(
        mock.posts().await.len(),
        1,
        "a create is never retried once it may have reached Stream"
    );
}

#[tokio::test]
async fn a_slow_upstream_hits_the_timeout_and_a_stored_create_is_recovered() {
    let mock = MockStream::start("t").await;
    let h = mock
        .stdio_with(
            "t",
            &[
                "--upstream-timeout-secs",
                "1",
                "--request-deadline-secs",
                "3",
                "--max-retries",
                "0",
            ],
            &[],
        )
        .await;
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    // The mock stores the link, then answers too late: the create is not retried, and the
    // link is found again by our reference instead of being reported as unknown.
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap();
    assert_eq!(mock.posts().await.len(), 1);
    assert_eq!(mock.link_count(), 1);
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0]["id"]);

    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::Delay(Duration::from_secs(5)),
    );
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "upstream");
    assert_eq!(e["retry_safe"], true);
    assert!(e["message"].as_str().unwrap().contains("in time"), "{e}");
}

#[tokio::test]
async fn reads_are_retried_after_a_transient_503() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    mock.fault(
        "GET",
        "/api/v2/products",
        Fault::Status(
            503,
            json!({"error": {"code": "UNAVAILABLE", "message": "later"}}),
        ),
    );
    let products = h.call("list_products", json!({})).await.unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 3);
    assert_eq!(mock.requests().await.len(), 2);
}

#[tokio::test]
async fn live_guard_refuses_writes_against_production_before_any_request() {
    // The production URL: the guard must refuse before any request (none may leave this
    // machine), and the instructions say the money is live.
    let h = Server::on_upstream("stream", PRODUCTION, "t", &[], &[]).await;
    let instructions = h.instructions();
    assert!(
        instructions.contains("LIVE money") && instructions.contains("live_guard"),
        "{instructions}"
    );
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "live_guard");
    assert_eq!(e["retry_safe"], false);
    let e = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b", "status": "inactive"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "live_guard");

    // Staging is not live.
    let staging =
        Server::on_upstream("stream", "https://staging.streampay.sa", "t", &[], &[]).await;
    assert!(
        staging.instructions().contains("test/staging environment"),
        "{}",
        staging.instructions()
    );

    // Any other host (a proxy in front of production, say) is not known to be a test one: it
    // counts as live, and the guard refuses before any request.
    let proxy = Server::on_upstream(
        "stream",
        "https://egress-proxy.internal:8443",
        "t",
        &[],
        &[],
    )
    .await;
    assert!(
        proxy.instructions().contains("LIVE money"),
        "{}",
        proxy.instructions()
    );
    let e = proxy
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "live_guard", "{e}");
}

#[tokio::test]
async fn connection_refused_is_retry_safe_for_a_create() {
    // A port nothing listens on: the request never left, so retrying cannot duplicate.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let h = Server::on_upstream("stream", &format!("http://{addr}"), "t", &[], &[]).await;
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "upstream");
    assert_eq!(e["retry_safe"], true);
    assert!(
        e["message"].as_str().unwrap().contains("nothing was sent"),
        "{e}"
    );
}

#[tokio::test]
async fn a_link_made_elsewhere_with_25_items_pages_by_10() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap().to_owned();
    // Stream sets no item cap; grow the stored link to 25 items as the dashboard could.
    {
        let mut state = mock.state.lock().unwrap();
        let stored = state
            .links
            .iter_mut()
            .find(|l| l["id"] == id.as_str())
            .unwrap();
        let template = stored["items"][0].clone();
        let items: Vec<Value> = (0..25)
            .map(|i| {
                let mut item = template.clone();
                item["id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
                item
            })
            .collect();
        stored["items"] = json!(items);
    }
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = json!({"payment_link_id": id, "limit": 10});
        if let Some(a) = &after {
            args["starting_after"] = json!(a);
        }
        let page = h.call("list_line_items", args).await.unwrap();
        pages.push(page["data"].as_array().unwrap().len());
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, [10, 10, 5]);
    // And backwards from the last page.
    let back = h
        .call("list_line_items", json!({"payment_link_id": id, "limit": 10, "ending_before": "00000000-0000-4000-8000-000000000020"}))
        .await
        .unwrap();
    assert_eq!(
        back["data"][0]["id"],
        "00000000-0000-4000-8000-000000000010"
    );
    assert_eq!(back["has_more"], true);
    let e = h
        .call(
            "list_line_items",
            json!({"payment_link_id": id, "starting_after": "nope"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["field"], "starting_after");
}

/// Deactivating with a message and filtering by status send what Stream documents: a PATCH of
/// `/status` with `INACTIVE` and the `deactivate_message`, and `statuses=` in the list query.
/// (The behaviour itself, on every backend, is `contract::lifecycle`.)
#[tokio::test]
async fn status_updates_and_filters_send_what_stream_documents() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": ESPRESSO}])),
        )
        .await
        .unwrap();
    h.call(
        "update_payment_link_status",
        json!({"payment_link_id": link["id"], "status": "inactive", "message": "Sold out"}),
    )
    .await
    .unwrap();
    let page = h
        .call(
            "list_payment_links",
            json!({"status": "inactive", "limit": 1}),
        )
        .await
        .unwrap();
    assert_eq!(page["data"][0]["id"], link["id"]);
    let requests = mock.requests().await;
    let patch = requests
        .iter()
        .find(|r| r.method.as_str() == "PATCH")
        .unwrap();
    assert_eq!(
        patch.url.path(),
        format!(
            "/api/v2/payment_links/{}/status",
            link["id"].as_str().unwrap()
        )
    );
    let body: Value = serde_json::from_slice(&patch.body).unwrap();
    assert_eq!(
        body,
        json!({"status": "INACTIVE", "deactivate_message": "Sold out"})
    );
    let filtered = requests
        .iter()
        .find(|r| {
            r.url
                .query()
                .is_some_and(|q| q.contains("statuses=INACTIVE"))
        })
        .unwrap();
    assert!(filtered.url.query().unwrap().contains("limit=1"));
}

#[tokio::test]
async fn stream_dates_are_sent_as_from_and_to_date() {
    let mock = MockStream::start("t").await;
    let h = mock.stdio().await;
    h.call(
        "list_payment_links",
        json!({"created_from": "2026-01-01T00:00:00+03:00", "created_to": "2026-02-01T00:00:00"}),
    )
    .await
    .unwrap();
    let q = mock.requests().await[0].url.query().unwrap().to_owned();
    assert!(q.contains("from_date=2025-12-31T21:00:00Z"), "{q}");
    assert!(q.contains("to_date=2026-02-01T00:00:00Z"), "{q}");
}
