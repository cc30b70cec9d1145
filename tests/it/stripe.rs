//! The Stripe backend against a strict mock of Stripe's API on 127.0.0.1, through the real
//! binary over stdio (configured through the environment, as Claude Desktop does): what we send
//! (form, headers, idempotency keys), how we read answers, how failures become envelopes, and
//! what is refused before anything is sent. What every backend does alike is in `contract`;
//! tenants of one Stripe account over HTTP are in `http_stripe`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::stdio::{Server, run_until_exit};
use crate::harness::{CALL_DEADLINE, EXIT_DEADLINE, command, within};
use crate::mocks::stripe::{
    self as stripe_mock, Fault, MockStripe, TEAS, VERSION, as_map, header, pairs_of, query_of,
};

pub const KEY: &str = "sk_test_51MockKeyForPaylink";

fn create_args(items: Value) -> Value {
    json!({"name": "Order 7", "items": items})
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn create_sends_exactly_the_documented_form_and_headers() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let link = h
        .call(
            "create_payment_link",
            json!({
                "name": "  Team dinner ",
                "items": [{"product_id": "prod_espresso", "quantity": 2}, {"product_id": "price_club_month"}],
                "currency": "USD",
                "description": "Friday & co",
                "max_number_of_payments": 4,
                "success_redirect_url": "https://shop.example/ok?order=1&x=y",
                "metadata": {"order": "42"},
            }),
        )
        .await
        .unwrap();
    assert_eq!(link["backend"], "stripe");
    assert_eq!(link["livemode"], false);
    assert_eq!(link["name"], "Team dinner");
    assert_eq!(link["description"], "Friday & co");
    assert_eq!(link["status"], "active");
    assert_eq!(link["currency"], "USD");
    assert_eq!(link["max_number_of_payments"], 4);
    assert_eq!(
        link["success_redirect_url"],
        "https://shop.example/ok?order=1&x=y"
    );
    assert_eq!(
        link["total"],
        json!({"amount_minor": 2 * 350 + 1900, "amount": "26.00", "currency": "USD"})
    );
    assert_eq!(link["item_count"], 2);
    assert_eq!(link["recurring_interval"], "month");
    assert_eq!(
        link["metadata"],
        json!({"order": "42"}),
        "our reserved keys stay hidden"
    );
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("https://buy.stripe.com/")
    );

    // Reads first: the product resolved to its default price, the price read for its currency.
    let reads: Vec<String> = mock
        .requests()
        .await
        .iter()
        .take_while(|r| r.method.as_str() == "GET")
        .map(|r| format!("{} {:?}", r.url.path(), query_of(r)))
        .collect();
    assert_eq!(
        reads,
        [
            r#"/v1/products/prod_espresso [("expand[]", "default_price"), ("expand[]", "default_price.currency_options")]"#,
            r#"/v1/prices/price_club_month [("expand[]", "currency_options")]"#,
        ]
    );

    let posts = mock.posts().await;
    assert_eq!(posts.len(), 1);
    let req = &posts[0];
    assert_eq!(req.url.path(), "/v1/payment_links");
    assert_eq!(
        header(req, "authorization").unwrap(),
        format!("Bearer {KEY}")
    );
    assert_eq!(header(req, "stripe-version").unwrap(), VERSION);
    assert_eq!(
        header(req, "content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    let key = header(req, "idempotency-key").unwrap();
    assert!(key.starts_with("paylink-") && key.len() > 20, "{key}");
    let sent = pairs_of(&req.body);
    let request_ref = as_map(&sent)["metadata[paylink_request_id]"].clone();
    assert!(uuid::Uuid::try_parse(&request_ref).is_ok(), "{request_ref}");
    assert_eq!(
        sent,
        pairs(&[
            ("line_items[0][price]", "price_espresso_usd"),
            ("line_items[0][quantity]", "2"),
            ("line_items[1][price]", "price_club_month"),
            ("line_items[1][quantity]", "1"),
            ("currency", "usd"),
            ("restrictions[completed_sessions][limit]", "4"),
            ("after_completion[type]", "redirect"),
            (
                "after_completion[redirect][url]",
                "https://shop.example/ok?order=1&x=y"
            ),
            ("metadata[order]", "42"),
            ("metadata[paylink_name]", "Team dinner"),
            ("metadata[paylink_description]", "Friday & co"),
            ("metadata[paylink_request_id]", &request_ref),
        ])
    );
    // Every request, reads included, carries the key and the pinned version.
    for r in mock.requests().await {
        assert_eq!(header(&r, "stripe-version").unwrap(), VERSION);
        assert!(
            header(&r, "authorization")
                .unwrap()
                .starts_with("Bearer sk_test_")
        );
    }

    let got = h
        .call("get_payment_link", json!({"payment_link_id": link["id"]}))
        .await
        .unwrap();
    assert_eq!(got, link, "a get returns what the create returned");
}

#[tokio::test]
async fn minimal_create_sends_only_line_items_and_metadata() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    h.call(
        "create_payment_link",
        create_args(json!([{"product_id": "price_espresso_usd"}])),
    )
    .await
    .unwrap();
    let sent = pairs_of(&mock.posts().await[0].body);
    let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "line_items[0][price]",
            "line_items[0][quantity]",
            "metadata[paylink_name]",
            "metadata[paylink_request_id]"
        ]
    );
    // Without a caller currency, price reads need no currency options.
    let price_read = &mock
        .requests_to("GET", "/v1/prices/price_espresso_usd")
        .await[0];
    assert!(price_read.url.query().is_none());
}

#[tokio::test]
async fn round_trip_prod_ids_get_line_items_paged_by_5_and_products() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let items: Vec<Value> = (1..=TEAS)
        .map(|i| json!({"product_id": stripe_mock::tea_product(i), "quantity": i}))
        .collect();
    let link = h
        .call("create_payment_link", create_args(json!(items)))
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap().to_owned();
    let expected_total: i64 = (1..=TEAS as i64).map(|i| 100 * i * i).sum();
    let got = h
        .call("get_payment_link", json!({"payment_link_id": id}))
        .await
        .unwrap();
    assert_eq!(
        got["total"],
        json!({"amount_minor": expected_total, "amount": format!("{}.00", expected_total / 100), "currency": "USD"}),
        "the total is summed from the line items"
    );
    assert_eq!(got["original_total"], got["total"]);
    assert_eq!(got["item_count"], TEAS);
    assert!(got["recurring_interval"].is_null());
    assert!(got["amount_collected"].is_null());

    // The line items, 5 at a time: 5, 5, 2.
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = json!({"payment_link_id": id, "limit": 5});
        if let Some(a) = &after {
            args["starting_after"] = json!(a);
        }
        let page = h.call("list_line_items", args).await.unwrap();
        let data = page["data"].as_array().unwrap();
        sizes.push(data.len());
        for item in data {
            let q = item["quantity"].as_i64().unwrap();
            assert_eq!(item["product_id"], stripe_mock::tea_price(q as usize));
            assert_eq!(item["product_name"], format!("Tea {q}"));
            assert_eq!(item["unit_amount"]["amount_minor"], 100 * q);
            assert_eq!(item["total"]["amount_minor"], 100 * q * q);
            assert_eq!(item["kind"], "one_time");
            assert!(item["interval"].is_null());
            seen.push(q);
        }
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        assert_eq!(page["next_cursor"], data.last().unwrap()["id"]);
        after = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(sizes, [5, 5, 2]);
    assert_eq!(seen, (1..=TEAS as i64).collect::<Vec<_>>());
    let path = format!("/v1/payment_links/{id}/line_items");
    let queries: Vec<_> = mock
        .requests_to("GET", &path)
        .await
        .iter()
        .map(query_of)
        .filter(|q| q[0] == ("limit".into(), "5".into()))
        .collect();
    assert_eq!(queries.len(), 3);
    assert_eq!(queries[0].len(), 1);
    assert_eq!(queries[1][1].0, "starting_after");

    // Backwards from the last item.
    let last = h
        .call(
            "list_line_items",
            json!({"payment_link_id": id, "limit": 5, "starting_after": after.unwrap()}),
        )
        .await
        .unwrap();
    let last_id = last["data"][1]["id"].clone();
    let back = h
        .call(
            "list_line_items",
            json!({"payment_link_id": id, "limit": 5, "ending_before": last_id}),
        )
        .await
        .unwrap();
    let qs: Vec<i64> = back["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["quantity"].as_i64().unwrap())
        .collect();
    assert_eq!(qs, [7, 8, 9, 10, 11]);
    assert_eq!(back["has_more"], true);
    let e = h
        .call(
            "list_line_items",
            json!({"payment_link_id": id, "starting_after": "li_a", "ending_before": "li_b"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["field"], "ending_before");

    // The catalog, 4 at a time, active products only.
    let mut products = Vec::new();
    let mut cursor: Option<Value> = None;
    loop {
        let args = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({"limit": 4}),
        };
        let page = h.call("list_products", args).await.unwrap();
        products.extend(page["data"].as_array().unwrap().iter().cloned());
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        cursor = Some(page["next_cursor"].clone());
    }
    assert_eq!(
        products.len(),
        5 + TEAS,
        "the inactive product is not listed"
    );
    assert!(products.iter().all(|p| p["id"] != "prod_old"));
    let by_id = |id: &str| products.iter().find(|p| p["id"] == id).unwrap().clone();
    assert_eq!(
        by_id("prod_espresso")["prices"],
        json!([
            {"amount_minor": 350, "amount": "3.50", "currency": "USD"},
            {"amount_minor": 320, "amount": "3.20", "currency": "EUR"}
        ]),
        "one price per currency, from the default price and its currency options"
    );
    assert_eq!(by_id("prod_espresso")["kind"], "one_time");
    assert_eq!(by_id("prod_club")["kind"], "recurring");
    assert_eq!(by_id("prod_club")["interval"], "month");
    assert_eq!(by_id("prod_gift")["prices"], json!([]));
    assert_eq!(by_id("prod_matcha")["prices"][0]["amount"], "1200");
    assert_eq!(by_id("prod_dates")["prices"][0]["amount"], "1.250");
    assert_eq!(by_id("prod_tea03")["name"], "Tea 3");
    let product_queries: Vec<_> = mock
        .requests_to("GET", "/v1/products")
        .await
        .iter()
        .map(query_of)
        .collect();
    assert_eq!(
        product_queries[0],
        pairs(&[
            ("active", "true"),
            ("limit", "4"),
            ("expand[]", "data.default_price"),
            ("expand[]", "data.default_price.currency_options"),
        ])
    );
    assert_eq!(product_queries[1][2].0, "starting_after");
    // A cursor carries its page size: another explicit limit is refused on `limit`.
    let first = h.call("list_products", json!({"limit": 4})).await.unwrap();
    let e = h
        .call(
            "list_products",
            json!({"limit": 5, "cursor": first["next_cursor"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["field"], "limit");
}

#[tokio::test]
async fn the_stripe_schema_lacks_what_stripe_cannot_honour() {
    let server = Server::start(&["--backend", "stripe"], &[]).await;
    let tools = server.tools().await;
    let create = tools
        .iter()
        .find(|t| t.name == "create_payment_link")
        .unwrap();
    let schema = serde_json::to_value(create.input_schema.as_ref()).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for gone in [
        "valid_until",
        "failure_redirect_url",
        "coupons",
        "organization_consumer_id",
    ] {
        assert!(!props.contains_key(gone), "{gone} is still advertised");
    }
    for kept in [
        "name",
        "items",
        "description",
        "currency",
        "max_number_of_payments",
        "success_redirect_url",
        "metadata",
        "idempotency_key",
    ] {
        assert!(props.contains_key(kept), "{kept} is missing");
    }
    let item = schema["properties"]["items"]["items"]["properties"]
        .as_object()
        .unwrap();
    assert!(!item.contains_key("coupons"));
    assert!(item.contains_key("product_id") && item.contains_key("quantity"));
}

#[tokio::test]
async fn each_field_stripe_cannot_honour_is_refused_by_name_before_any_request() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let coupon = "3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b";
    for (extra, field) in [
        (
            json!({"valid_until": "2099-01-01T00:00:00Z"}),
            "valid_until",
        ),
        (
            json!({"failure_redirect_url": "https://shop.example/ko"}),
            "failure_redirect_url",
        ),
        (json!({"coupons": [coupon]}), "coupons"),
        (
            json!({"organization_consumer_id": coupon}),
            "organization_consumer_id",
        ),
    ] {
        let mut args = create_args(json!([{"product_id": "price_espresso_usd"}]));
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        let e = h.call("create_payment_link", args).await.unwrap_err();
        assert_eq!(e["kind"], "unsupported_by_backend", "{field}");
        assert_eq!(e["field"], field);
        assert!(e["message"].as_str().unwrap().contains("stripe"), "{e}");
        assert_eq!(e["retry_safe"], false);
    }
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}, {"product_id": "price_club_month", "coupons": [coupon]}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "unsupported_by_backend");
    assert_eq!(e["field"], "items[1].coupons");
    assert!(mock.requests().await.is_empty(), "nothing reached Stripe");
}

#[tokio::test]
async fn one_currency_per_link_is_checked_before_any_write() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let e = h
        .call(
            "create_payment_link",
            create_args(
                json!([{"product_id": "price_espresso_usd"}, {"product_id": "price_espresso_eur"}]),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "validation");
    assert_eq!(e["field"], "items");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("USD") && msg.contains("EUR"), "{msg}");

    let e = h
        .call(
            "create_payment_link",
            json!({"name": "N", "items": [{"product_id": "prod_club"}], "currency": "eur"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "validation");
    assert_eq!(e["field"], "currency");
    assert!(mock.posts().await.is_empty());

    // One-time and recurring prices may share a link on Stripe.
    h.call(
        "create_payment_link",
        create_args(json!([{"product_id": "prod_espresso"}, {"product_id": "prod_club"}])),
    )
    .await
    .unwrap();

    // A price with a currency option in the requested currency is fine, and charged in it.
    let link = h
        .call(
            "create_payment_link",
            json!({"name": "N", "items": [{"product_id": "prod_espresso", "quantity": 3}], "currency": "EUR"}),
        )
        .await
        .unwrap();
    assert_eq!(
        link["total"],
        json!({"amount_minor": 960, "amount": "9.60", "currency": "EUR"})
    );
    let items = h
        .call("list_line_items", json!({"payment_link_id": link["id"]}))
        .await
        .unwrap();
    assert_eq!(
        items["data"][0]["unit_amount"],
        json!({"amount_minor": 320, "amount": "3.20", "currency": "EUR"})
    );
}

#[tokio::test]
async fn unknown_and_priceless_products_are_refused_on_their_item() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}, {"product_id": "prod_gift"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "validation");
    assert_eq!(e["field"], "items[1].product_id");
    assert!(
        e["message"].as_str().unwrap().contains("default price"),
        "{e}"
    );

    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "prod_nope"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["field"], "items[0].product_id");
    assert_eq!(e["upstream_code"], "resource_missing");
    assert!(e["request_id"].as_str().unwrap().starts_with("req_"));

    let e = h
        .call(
            "create_payment_link",
            create_args(
                json!([{"product_id": "price_espresso_usd"}, {"product_id": "price_nope"}]),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["field"], "items[1].product_id");
    assert!(mock.posts().await.is_empty());
}

#[tokio::test]
async fn stripe_params_map_to_our_field_names() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    // A refusal the mock makes on its own, as Stripe would: the quantity is above its maximum.
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd", "quantity": 1_000_000}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "validation");
    assert_eq!(e["field"], "items[0].quantity");
    assert_eq!(e["status"], 400);
    assert_eq!(e["upstream_code"], "parameter_invalid_integer");
    assert!(e["request_id"].as_str().unwrap().starts_with("req_"));
    assert!(e["message"].as_str().unwrap().contains("999999"), "{e}");
    assert_eq!(e["retry_safe"], false);

    for (param, field) in [
        ("line_items[0][price]", "items[0].product_id"),
        (
            "restrictions[completed_sessions][limit]",
            "max_number_of_payments",
        ),
        ("after_completion[redirect][url]", "success_redirect_url"),
        ("metadata[order]", "metadata.order"),
        ("metadata[paylink_name]", "name"),
        ("currency", "currency"),
    ] {
        mock.fault(
            "POST",
            "/v1/payment_links",
            Fault::Status(
                400,
                json!({"error": {"type": "invalid_request_error", "code": "parameter_invalid_string", "message": "bad", "param": param}}),
                vec![],
            ),
        );
        let e = h
            .call(
                "create_payment_link",
                create_args(json!([{"product_id": "price_espresso_usd"}])),
            )
            .await
            .unwrap_err();
        assert_eq!(e["kind"], "validation", "{param}");
        assert_eq!(e["field"], field, "{param}");
    }

    // Status codes without a param.
    for (status, kind, retry_safe) in [
        (402, "upstream", false),
        (403, "auth", false),
        (404, "not_found", false),
    ] {
        mock.fault(
            "GET",
            "/v1/products",
            Fault::Status(
                status,
                json!({"error": {"type": "invalid_request_error", "code": "x_code", "message": "m"}}),
                vec![],
            ),
        );
        let e = h.call("list_products", json!({})).await.unwrap_err();
        assert_eq!(e["kind"], kind, "{status}");
        assert_eq!(e["status"], status);
        assert_eq!(e["upstream_code"], "x_code");
        assert_eq!(e["retry_safe"], retry_safe, "{status}");
    }

    // 429 with Retry-After: retried (a read), then reported with the hint.
    for _ in 0..3 {
        mock.fault(
            "GET",
            "/v1/products",
            Fault::Status(
                429,
                json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}}),
                vec![("retry-after", "0")],
            ),
        );
    }
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "rate_limited");
    assert_eq!(e["retry_after_secs"], 0);
    assert_eq!(e["retry_safe"], true);

    // A missing link names the argument.
    let e = h
        .call(
            "get_payment_link",
            json!({"payment_link_id": "plink_missing"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["field"], "payment_link_id");
    assert_eq!(e["upstream_code"], "resource_missing");
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_that_never_echoes_the_key() {
    let mock = MockStripe::start(KEY).await;
    let wrong = "sk_test_WrongKeyThatMustNotLeak";
    let h = mock.stdio_with(wrong, &[], &[]).await;
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "auth");
    assert_eq!(e["status"], 401);
    assert!(!e.to_string().contains(wrong), "{e}");
    assert!(e["message"].as_str().unwrap().contains("[redacted]"), "{e}");
}

#[tokio::test]
async fn a_live_key_refuses_writes_unless_allowed_and_reads_work() {
    let live_key = "sk_live_51MockLiveKey";
    let mock = MockStripe::start(live_key).await;
    let h = mock.stdio().await;
    let live_text = h.instructions();
    assert!(
        live_text.contains("Stripe") && live_text.contains("LIVE"),
        "{live_text}"
    );
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "live_guard");
    assert_eq!(e["retry_safe"], false);
    let e = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": "plink_x", "status": "inactive"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "live_guard");
    assert!(
        mock.requests().await.is_empty(),
        "refused before any request"
    );

    // A key not known to be a test key (neither sk_test_ nor rk_test_) counts as live too.
    let odd = MockStripe::start("sk_51NotKnownAsTest").await;
    let e = odd
        .stdio()
        .await
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "live_guard", "{e}");
    assert!(odd.requests().await.is_empty());

    let products = h.call("list_products", json!({})).await.unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 10);

    // Allowed, a live write still waits for the user's confirmation (the default,
    // --confirm-writes live), which this client cannot give: refused, nothing sent.
    let h = mock.stdio_with(live_key, &["--allow-live"], &[]).await;
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "confirmation_required");
    assert_eq!(e["retry_safe"], false);
    assert_eq!(mock.creates().await, 0, "nothing written");
    let h = mock
        .stdio_with(
            live_key,
            &["--allow-live", "--confirm-writes", "never"],
            &[],
        )
        .await;
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap();
    assert_eq!(link["livemode"], true);
    // Restricted keys too: the key's prefix says whether money is live.
    let restricted = mock.stdio_with("rk_live_x", &[], &[]).await;
    assert!(
        restricted.instructions().contains("with a LIVE key"),
        "{}",
        restricted.instructions()
    );
    let test = mock.stdio_with("rk_test_x", &[], &[]).await;
    let test_text = test.instructions();
    assert!(
        test_text.contains("Stripe") && test_text.contains("test-mode"),
        "{test_text}"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_reaches_stripe_as_the_same_header() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let mut args = create_args(json!([{"product_id": "prod_espresso", "quantity": 2}]));
    args["idempotency_key"] = json!("order-42 attempt");
    let first = h.call("create_payment_link", args.clone()).await.unwrap();
    // A repeat in the same process is answered by the server's own idempotency store.
    let again = h.call("create_payment_link", args.clone()).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(
        mock.posts().await.len(),
        1,
        "a local replay makes no upstream call"
    );
    // After a restart (or on another replica) the store is empty, but the same tenant and key
    // reach Stripe with the same Idempotency-Key and the same parameters: Stripe replays.
    let restarted = mock.stdio().await;
    let second = restarted
        .call("create_payment_link", args.clone())
        .await
        .unwrap();
    assert_eq!(
        first, second,
        "the retry got the link the first call created"
    );
    assert_eq!(mock.link_count(), 1);
    assert_eq!(mock.replays(), 1);
    let posts = mock.posts().await;
    assert_eq!(posts.len(), 2);
    let keys: Vec<String> = posts
        .iter()
        .map(|p| header(p, "idempotency-key").unwrap())
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert!(keys[0].starts_with("paylink-"), "{}", keys[0]);
    assert_eq!(
        posts[0].body, posts[1].body,
        "a replay needs the same parameters"
    );

    // The same key with other arguments is a conflict, not a second link: refused locally...
    let mut other = args.clone();
    other["name"] = json!("Another order");
    let e = h
        .call("create_payment_link", other.clone())
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "idempotency_conflict");
    assert_eq!(e["retry_safe"], false);
    // ...and by Stripe when the local store has forgotten the key.
    let e = mock
        .stdio()
        .await
        .call("create_payment_link", other)
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "idempotency_conflict");
    assert_eq!(mock.link_count(), 1);
    // (Another tenant of the same Stripe account using the same key string gets its own
    // Idempotency-Key: `http_stripe::tenants_of_one_account_never_share_an_idempotency_key`.)

    // Without a key, every call is a new intent with its own key.
    let plain = create_args(json!([{"product_id": "prod_espresso"}]));
    h.call("create_payment_link", plain.clone()).await.unwrap();
    h.call("create_payment_link", plain).await.unwrap();
    assert_eq!(mock.link_count(), 3);
    let posts = mock.posts().await;
    let k3 = header(&posts[posts.len() - 2], "idempotency-key").unwrap();
    let k4 = header(&posts[posts.len() - 1], "idempotency-key").unwrap();
    assert_ne!(k3, k4);
    assert!(k3.starts_with("paylink-"));
}

#[tokio::test]
async fn a_500_on_create_without_should_retry_is_outcome_unknown_after_one_post() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let boom = json!({"error": {"type": "api_error", "message": "Something went wrong"}});
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Status(500, boom.clone(), vec![]),
    );
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(e["retry_safe"], false);
    assert_eq!(e["status"], 500);
    assert_eq!(e["upstream_code"], "api_error");
    assert_eq!(mock.posts().await.len(), 1, "a final 500 is not retried");

    // With a caller key Stripe stores the 500: the same key replays it.
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Status(500, boom, vec![("stripe-should-retry", "false")]),
    );
    let mut args = create_args(json!([{"product_id": "price_espresso_usd"}]));
    args["idempotency_key"] = json!("k-500");
    let e = h
        .call("create_payment_link", args.clone())
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert!(e["message"].as_str().unwrap().contains("24 hours"), "{e}");
    let e = h.call("create_payment_link", args).await.unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(mock.replays(), 1);
    assert_eq!(mock.posts().await.len(), 3);
    assert_eq!(mock.link_count(), 0);
}

#[tokio::test]
async fn stripe_should_retry_true_is_retried_with_the_same_key() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Status(
            503,
            json!({"error": {"type": "api_error", "message": "Try again"}}),
            vec![("stripe-should-retry", "true")],
        ),
    );
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Status(
            409,
            json!({"error": {"type": "invalid_request_error", "code": "idempotency_key_in_use", "message": "in use"}}),
            vec![],
        ),
    );
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap();
    assert_eq!(mock.link_count(), 1);
    let posts = mock.posts().await;
    assert_eq!(posts.len(), 3, "503 (should retry), 409 (key in use), 200");
    let keys: Vec<_> = posts
        .iter()
        .map(|p| header(p, "idempotency-key").unwrap())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert!(posts.iter().all(|p| p.body == posts[0].body));
    assert_eq!(link["total"]["amount_minor"], 350);

    // `Stripe-Should-Retry: false` stops even a read's retries.
    mock.fault(
        "GET",
        "/v1/products",
        Fault::Status(
            503,
            json!({"error": {"type": "api_error", "message": "no"}}),
            vec![("stripe-should-retry", "false")],
        ),
    );
    let before = mock.requests_to("GET", "/v1/products").await.len();
    let e = h.call("list_products", json!({})).await.unwrap_err();
    assert_eq!(e["kind"], "upstream");
    assert_eq!(
        mock.requests_to("GET", "/v1/products").await.len(),
        before + 1
    );
}

#[tokio::test]
async fn a_timed_out_create_is_retried_under_the_same_key_and_makes_one_link() {
    let mock = MockStripe::start(KEY).await;
    let quick = [
        "--upstream-timeout-secs",
        "1",
        "--request-deadline-secs",
        "4",
    ];
    let h = mock.stdio_with(KEY, &quick, &[]).await;
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap();
    assert_eq!(mock.link_count(), 1, "the retry was answered by a replay");
    assert_eq!(mock.replays(), 1);
    let posts = mock.posts().await;
    assert_eq!(posts.len(), 2);
    assert_eq!(
        header(&posts[0], "idempotency-key"),
        header(&posts[1], "idempotency-key")
    );
    assert!(link["id"].as_str().unwrap().starts_with("plink_"));

    // No retries left: without a caller key the outcome is unknown (a new call is a new key)...
    let once = [quick.as_slice(), &["--max-retries", "0"]].concat();
    let h = mock.stdio_with(KEY, &once, &[]).await;
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(e["retry_safe"], false);
    assert!(
        e["message"].as_str().unwrap().contains("idempotency_key"),
        "{e}"
    );

    // ...with one, retrying with the same key is safe and returns the link it made.
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    let mut args = create_args(json!([{"product_id": "price_espresso_usd"}]));
    args["idempotency_key"] = json!("slow-order");
    let e = h
        .call("create_payment_link", args.clone())
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "upstream");
    assert_eq!(e["retry_safe"], true);
    let links_before = mock.link_count();
    let link = h.call("create_payment_link", args).await.unwrap();
    assert_eq!(mock.link_count(), links_before, "no second link");
    assert!(link["id"].as_str().unwrap().starts_with("plink_"));
}

/// A create the caller gave up on once it had reached Stripe (a cancellation) is not lost: the
/// repeat with the caller's key reaches Stripe with the same `Idempotency-Key`, and Stripe
/// replays the link it made instead of making another.
#[tokio::test]
async fn a_create_cancelled_after_it_reached_stripe_is_replayed_not_repeated() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Delay(Duration::from_secs(5)),
    );
    let mut args = create_args(json!([{"product_id": "price_espresso_usd"}]));
    args["idempotency_key"] = json!("cancel-me");
    // The price is read first, then the create: two requests.
    tokio::select! {
        () = within(CALL_DEADLINE, "the create reaches Stripe", mock.arrivals_reach(2)) => {}
        answered = h.call("create_payment_link", args.clone()) => {
            panic!("answered before it reached Stripe: {answered:?}")
        }
    }
    h.log()
        .wait_for(CALL_DEADLINE, "the cancelled call's log line", |lines| {
            lines
                .iter()
                .any(|l| l.contains("tool call") && l.contains("cancelled"))
        })
        .await;
    assert_eq!(mock.link_count(), 1, "Stripe made the link");
    let link = h.call("create_payment_link", args).await.unwrap();
    assert_eq!(link["id"], mock.state.lock().unwrap().links[0].0["id"]);
    assert_eq!(mock.link_count(), 1, "no second link");
    let posts = mock.requests_to("POST", "/v1/payment_links").await;
    assert_eq!(posts.len(), 2);
    assert_eq!(
        header(&posts[0], "idempotency-key"),
        header(&posts[1], "idempotency-key")
    );
    assert_eq!(mock.replays(), 1);
}

#[tokio::test]
async fn an_unreadable_answer_to_a_create_is_outcome_unknown() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    mock.fault(
        "POST",
        "/v1/payment_links",
        Fault::Raw(200, "application/json", "{not json"),
    );
    let e = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "outcome_unknown");
    assert_eq!(e["retry_safe"], false);
    assert_eq!(mock.link_count(), 1, "the mock did create it");
}

#[tokio::test]
async fn list_payment_links_pages_newest_first_and_refuses_what_stripe_cannot_filter() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let mut ids = Vec::new();
    for name in ["first", "second", "third"] {
        let link = h
            .call(
                "create_payment_link",
                json!({"name": name, "items": [{"product_id": "price_espresso_usd"}]}),
            )
            .await
            .unwrap();
        ids.push(link["id"].as_str().unwrap().to_owned());
    }
    let page = h
        .call("list_payment_links", json!({"limit": 2}))
        .await
        .unwrap();
    let names: Vec<_> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].clone())
        .collect();
    assert_eq!(names, [json!("third"), json!("second")]);
    assert_eq!(page["has_more"], true);
    assert!(
        page["data"][0]["total"].is_null(),
        "listed Stripe links carry no total"
    );
    let next = h
        .call("list_payment_links", json!({"cursor": page["next_cursor"]}))
        .await
        .unwrap();
    assert_eq!(next["data"][0]["id"], ids[0].as_str());
    assert_eq!(next["has_more"], false);
    assert!(next["next_cursor"].is_null());
    let queries: Vec<_> = mock
        .requests_to("GET", "/v1/payment_links")
        .await
        .iter()
        .map(query_of)
        .collect();
    assert_eq!(queries[0], pairs(&[("limit", "2")]));
    assert_eq!(
        queries[1],
        pairs(&[("limit", "2"), ("starting_after", ids[1].as_str())])
    );

    h.call(
        "update_payment_link_status",
        json!({"payment_link_id": ids[1], "status": "inactive"}),
    )
    .await
    .unwrap();
    let inactive = h
        .call("list_payment_links", json!({"status": "inactive"}))
        .await
        .unwrap();
    assert_eq!(inactive["data"].as_array().unwrap().len(), 1);
    assert_eq!(inactive["data"][0]["id"], ids[1].as_str());
    assert_eq!(inactive["data"][0]["status"], "inactive");
    let active = h
        .call("list_payment_links", json!({"status": "active"}))
        .await
        .unwrap();
    assert_eq!(active["data"].as_array().unwrap().len(), 2);
    let last = mock.requests_to("GET", "/v1/payment_links").await;
    assert_eq!(
        query_of(last.last().unwrap()),
        pairs(&[("limit", "10"), ("active", "true")])
    );

    let before = mock.requests().await.len();
    for (args, field) in [
        (json!({"status": "completed"}), "status"),
        (
            json!({"created_from": "2026-01-01T00:00:00Z"}),
            "created_from",
        ),
        (json!({"created_to": "2026-01-01T00:00:00Z"}), "created_to"),
    ] {
        let e = h.call("list_payment_links", args).await.unwrap_err();
        assert_eq!(e["kind"], "unsupported_by_backend", "{field}");
        assert_eq!(e["field"], field);
    }
    assert_eq!(
        mock.requests().await.len(),
        before,
        "refused, never ignored"
    );
}

#[tokio::test]
async fn deactivate_then_get_shows_inactive_then_reactivate() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "prod_dates", "quantity": 2}])),
        )
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap().to_owned();
    let updated = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": id, "status": "inactive", "message": "Sold out & closed"}),
        )
        .await
        .unwrap();
    assert_eq!(updated["status"], "inactive");
    assert_eq!(updated["inactive_message"], "Sold out & closed");
    assert_eq!(
        updated["total"], link["total"],
        "the total survives the update"
    );
    let post = mock.posts().await.pop().unwrap();
    assert_eq!(post.url.path(), format!("/v1/payment_links/{id}"));
    assert_eq!(
        pairs_of(&post.body),
        pairs(&[
            ("active", "false"),
            ("inactive_message", "Sold out & closed")
        ])
    );
    assert!(
        header(&post, "idempotency-key").is_none(),
        "an absolute state needs no key"
    );
    let got = h
        .call("get_payment_link", json!({"payment_link_id": id}))
        .await
        .unwrap();
    assert_eq!(got["status"], "inactive");
    assert_eq!(got["inactive_message"], "Sold out & closed");

    let again = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": id, "status": "active"}),
        )
        .await
        .unwrap();
    assert_eq!(again["status"], "active");
    let post = mock.posts().await.pop().unwrap();
    assert_eq!(pairs_of(&post.body), pairs(&[("active", "true")]));

    let e = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": "plink_missing", "status": "inactive"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["field"], "payment_link_id");

    // A status update is an absolute state: a transient 503 is retried.
    mock.fault(
        "POST",
        &format!("/v1/payment_links/{id}"),
        Fault::Status(
            503,
            json!({"error": {"type": "api_error", "message": "later"}}),
            vec![],
        ),
    );
    let before = mock.posts().await.len();
    h.call(
        "update_payment_link_status",
        json!({"payment_link_id": id, "status": "inactive"}),
    )
    .await
    .unwrap();
    assert_eq!(mock.posts().await.len(), before + 2);
}

#[tokio::test]
async fn zero_and_three_decimal_currencies_and_unknown_ones() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let yen = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "prod_matcha", "quantity": 3}])),
        )
        .await
        .unwrap();
    assert_eq!(
        yen["total"],
        json!({"amount_minor": 3600, "amount": "3600", "currency": "JPY"})
    );
    let dinar = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_dates_kwd", "quantity": 2}])),
        )
        .await
        .unwrap();
    assert_eq!(
        dinar["total"],
        json!({"amount_minor": 2500, "amount": "2.500", "currency": "KWD"})
    );
    let items = h
        .call("list_line_items", json!({"payment_link_id": dinar["id"]}))
        .await
        .unwrap();
    assert_eq!(items["data"][0]["unit_amount"]["amount"], "1.250");

    // A currency this server does not know: amounts are null, nothing panics.
    {
        let mut state = mock.state.lock().unwrap();
        let (link, items) = state
            .links
            .iter_mut()
            .find(|(l, _)| l["id"] == yen["id"])
            .unwrap();
        link["currency"] = json!("xts");
        for item in items.iter_mut() {
            item["currency"] = json!("xts");
            item["price"]["currency"] = json!("xts");
        }
    }
    let odd = h
        .call("get_payment_link", json!({"payment_link_id": yen["id"]}))
        .await
        .unwrap();
    assert_eq!(odd["currency"], "XTS");
    assert!(odd["total"].is_null());
    let items = h
        .call("list_line_items", json!({"payment_link_id": yen["id"]}))
        .await
        .unwrap();
    assert!(items["data"][0]["unit_amount"].is_null());
    assert!(items["data"][0]["total"].is_null());
    assert_eq!(items["data"][0]["quantity"], 3);
}

#[tokio::test]
async fn a_malformed_link_or_list_is_read_tolerantly() {
    let mock = MockStripe::start(KEY).await;
    let h = mock.stdio().await;
    let link = h
        .call(
            "create_payment_link",
            create_args(json!([{"product_id": "price_espresso_usd"}])),
        )
        .await
        .unwrap();
    {
        let mut state = mock.state.lock().unwrap();
        let (l, items) = state.links.last_mut().unwrap();
        l["metadata"] = json!("not an object");
        l["active"] = json!("yes");
        l["restrictions"] = json!({"completed_sessions": {"limit": -4}});
        items[0]["amount_total"] = json!("lots");
        items[0]["quantity"] = json!(null);
    }
    let got = h
        .call("get_payment_link", json!({"payment_link_id": link["id"]}))
        .await
        .unwrap();
    assert!(got["name"].is_null() && got["status"].is_null());
    assert!(got["max_number_of_payments"].is_null());
    assert!(got["total"].is_null(), "no total rather than a wrong one");
    assert_eq!(got["metadata"], json!({}));
    let items = h
        .call("list_line_items", json!({"payment_link_id": link["id"]}))
        .await
        .unwrap();
    assert!(
        items["data"][0]["quantity"].is_null(),
        "an unreadable quantity is null, never a made-up 1: {items}"
    );
}

/// The Stripe API version and base URL have pinned defaults (in `--help`), and both flags reach
/// the requests the server sends.
#[tokio::test]
async fn stripe_options_have_pinned_defaults_and_reach_the_requests() {
    let help = within(
        EXIT_DEADLINE,
        "paylink-mcp --help",
        command(&["--help"], &[]).output(),
    )
    .await
    .expect("run paylink-mcp --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for pinned in ["[default: 2024-04-10]", "[default: https://api.stripe.com]"] {
        assert!(help.contains(pinned), "{pinned} in:\n{help}");
    }
    assert_eq!(VERSION, "2024-04-10", "the mock speaks the pinned version");

    // Another version, by flag: sent as is (the mock, pinned to 2024-04-10, refuses it).
    let mock = MockStripe::start(KEY).await;
    let server = Server::start(
        &[
            "stdio",
            "--stripe-version",
            "2024-09-30.acacia",
            "--stripe-base-url",
            &mock.uri(),
        ],
        &[("STRIPE_API_KEY", KEY)],
    )
    .await;
    let e = server.call("list_products", json!({})).await.unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("2024-09-30.acacia"),
        "{e}"
    );
    let sent = mock.requests().await;
    assert!(!sent.is_empty(), "the flag's base URL was used");
    assert!(
        sent.iter()
            .all(|r| header(r, "stripe-version").as_deref() == Some("2024-09-30.acacia")),
        "every request carries the chosen version"
    );
}

/// The real binary configured only through the environment, as Claude Desktop would configure
/// it (no `--backend`: the key decides), against the mock: the start-up wiring (options, key,
/// version, arm).
#[tokio::test]
async fn the_binary_serves_stripe_from_its_environment() {
    let mock = MockStripe::start(KEY).await;
    let server = Server::start(
        &[],
        &[("STRIPE_API_KEY", KEY), ("STRIPE_BASE_URL", &mock.uri())],
    )
    .await;
    let instructions = server.instructions();
    assert!(
        instructions.contains("Stripe") && instructions.contains("test-mode"),
        "{instructions}"
    );
    let link = server
        .ok(
            "create_payment_link",
            json!({"name": "E2E", "items": [{"product_id": "prod_espresso", "quantity": 2}], "idempotency_key": "e2e-1"}),
        )
        .await;
    assert_eq!(link["backend"], "stripe");
    assert_eq!(link["total"]["amount"], "7.00");
    let products = server.ok("list_products", json!({"limit": 2})).await;
    assert_eq!(products["data"].as_array().unwrap().len(), 2);
    let post = &mock.posts().await[0];
    assert_eq!(header(post, "stripe-version").unwrap(), VERSION);
    let sent_key = header(post, "idempotency-key").unwrap();
    assert!(sent_key.starts_with("paylink-"), "{sent_key}");
    server.shutdown().await;

    // Another process, the same tenant (stdio) and key: the same Idempotency-Key, so Stripe
    // replays the link instead of making a second.
    let again = mock.stdio().await;
    let replayed = again
        .ok(
            "create_payment_link",
            json!({"name": "E2E", "items": [{"product_id": "prod_espresso", "quantity": 2}], "idempotency_key": "e2e-1"}),
        )
        .await;
    assert_eq!(replayed["id"], link["id"]);
    let posts = mock.posts().await;
    assert_eq!(header(&posts[1], "idempotency-key").unwrap(), sent_key);
    assert_eq!(mock.link_count(), 1);
}

#[tokio::test]
async fn without_a_key_the_binary_starts_and_says_what_to_set() {
    let server = Server::start(&[], &[("PAYLINK_BACKEND", "stripe")]).await;
    let e = server.err("list_products", json!({})).await;
    assert_eq!(e["kind"], "auth");
    assert!(
        e["message"].as_str().unwrap().contains("STRIPE_API_KEY"),
        "{e}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_stripe_version_stops_start_up_with_exit_code_2() {
    let end = run_until_exit(
        &[],
        &[("STRIPE_API_KEY", KEY), ("STRIPE_VERSION", "latest")],
    )
    .await;
    assert_eq!(end.status.code(), Some(2), "{}", end.stderr);
}
