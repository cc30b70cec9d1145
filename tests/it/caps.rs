//! The operator's hard limits on creates, through the real binary: spend caps per link and per
//! rolling day (at the boundary, per currency, per tenant, under concurrency, released when
//! nothing was created), the list of products that may be sold, their audit line, and the
//! start-up errors of options that cannot be used. Every refusal leaves the upstream mocks
//! without a POST.

use crate::harness as common;
use crate::harness::http as http_support;
use crate::mocks::stream as stream_mock;
use crate::mocks::stripe as stripe_mock;

use std::path::Path;

use serde_json::{Value, json};

const STREAM_TOKEN: &str = "stream-caps-token";
const STRIPE_KEY: &str = "sk_test_51CapsTests";
const COFFEE: &str = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";
const MUG: &str = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
const ESPRESSO: &str = "11111111-1111-4111-8111-111111111111";
const GRINDER: &str = "22222222-2222-4222-8222-222222222222";

fn order(product: &str, quantity: u32, currency: &str) -> Value {
    json!({"name": "Order", "currency": currency, "items": [{"product_id": product, "quantity": quantity}]})
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_link_cap_passes_exactly_at_the_cap_and_refuses_one_minor_unit_over_per_currency() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let server = common::stdio::Server::start(
        &[
            "--max-link-amount",
            "SAR:178.00",
            "--max-link-amount",
            "KWD:8.849",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    // 2 × 89.00 SAR: exactly the cap.
    let at_cap = server
        .ok("create_payment_link", order(COFFEE, 2, "SAR"))
        .await;
    assert_eq!(at_cap["total"]["amount"], "178.00");
    // 3 × 2.950 KWD = 8.850 KWD: one fils over.
    let e = server
        .err("create_payment_link", order(MUG, 3, "KWD"))
        .await;
    assert_eq!(e["kind"], "cap_exceeded");
    assert_eq!(e["retry_safe"], false);
    let message = e["message"].as_str().unwrap();
    for part in ["8.850 KWD", "8.849 KWD", "--max-link-amount"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    // USD has no cap: uncapped.
    let big = server
        .ok("create_payment_link", order(COFFEE, 100, "USD"))
        .await;
    assert_eq!(big["total"]["amount"], "2375.00");
    let links = server.ok("list_payment_links", json!({})).await;
    assert_eq!(
        links["data"].as_array().unwrap().len(),
        2,
        "the refused link does not exist"
    );
    server.shutdown().await;

    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 3);
    let facts: Vec<(Value, Value, Value, Value)> = lines
        .iter()
        .map(|l| {
            (
                l["outcome"].clone(),
                l["preview_total"]["amount"].clone(),
                l["cap"].clone(),
                l["confirmation"].clone(),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            (
                json!("ok"),
                json!("178.00"),
                json!("within"),
                json!("not_required")
            ),
            (
                json!("cap_exceeded"),
                json!("8.850"),
                json!("exceeded"),
                Value::Null
            ),
            // No cap for USD: no preview either.
            (
                json!("ok"),
                Value::Null,
                json!("uncapped"),
                json!("not_required")
            ),
        ]
    );
}

#[tokio::test]
async fn caps_refuse_before_anything_is_written_on_stream_and_stripe() {
    let stream = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let server = common::stdio::Server::start(
        &["--backend", "stream", "--max-link-amount", "SAR:49.99"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &stream.uri()),
        ],
    )
    .await;
    let e = server
        .err("create_payment_link", order(ESPRESSO, 4, "SAR"))
        .await;
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    assert!(e["message"].as_str().unwrap().contains("50.00 SAR"), "{e}");
    assert!(stream.posts().await.is_empty());
    server
        .ok("create_payment_link", order(ESPRESSO, 3, "SAR"))
        .await;
    assert_eq!(stream.posts().await.len(), 1);
    // A create in a currency without a cap needs no preview: nothing is read before its write.
    let before = stream.requests().await.len();
    server
        .ok("create_payment_link", order(ESPRESSO, 100, "KWD"))
        .await;
    let sent: Vec<String> = stream.requests().await[before..]
        .iter()
        .map(|r| r.method.to_string())
        .collect();
    assert_eq!(sent, ["POST"]);
    server.shutdown().await;

    let stripe = stripe_mock::MockStripe::start(STRIPE_KEY).await;
    let server = common::stdio::Server::start(
        &["--backend", "stripe", "--max-link-amount", "USD:10.49"],
        &[
            ("STRIPE_API_KEY", STRIPE_KEY),
            ("STRIPE_BASE_URL", &stripe.uri()),
        ],
    )
    .await;
    let three =
        json!({"name": "Beans", "items": [{"product_id": "price_espresso_usd", "quantity": 3}]});
    let e = server.err("create_payment_link", three).await;
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    assert!(e["message"].as_str().unwrap().contains("10.50 USD"), "{e}");
    assert!(stripe.posts().await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn the_daily_budget_holds_across_calls_and_is_each_tenants_own() {
    let server = http_support::Server::start(&["--max-daily-amount", "SAR:300,KWD:10"], &[]);
    let a = http_support::client(&server.url(), Some("tenant-a"), &[]).await;
    let b = http_support::client(&server.url(), Some("tenant-b"), &[]).await;
    let create = |client, product, quantity, currency| {
        http_support::call(
            client,
            "create_payment_link",
            order(product, quantity, currency),
        )
    };
    create(&a, COFFEE, 2, "SAR").await.unwrap(); // 178.00 of 300.00
    let e = create(&a, COFFEE, 2, "SAR").await.unwrap_err();
    assert_eq!(e["kind"], "cap_exceeded");
    let message = e["message"].as_str().unwrap();
    for part in [
        "178.00 SAR",
        "122.00 SAR is left",
        "300.00 SAR per 24 hours",
        "--max-daily-amount",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    create(&a, MUG, 3, "SAR").await.unwrap(); // 106.50: 284.50 used, 15.50 left
    let e = create(&a, MUG, 1, "SAR").await.unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("15.50 SAR is left"),
        "{e}"
    );
    // KWD has a budget of its own.
    create(&a, MUG, 3, "KWD").await.unwrap(); // 8.850 of 10.000
    let e = create(&a, MUG, 1, "KWD").await.unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("1.150 KWD is left"),
        "{e}"
    );
    // Tenant B's budget is untouched by A's spending.
    create(&b, COFFEE, 3, "SAR").await.unwrap(); // 267.00 of B's 300.00
    let e = create(&b, COFFEE, 1, "SAR").await.unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("33.00 SAR is left"),
        "{e}"
    );
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test]
async fn twenty_concurrent_creates_against_a_budget_for_five_make_exactly_five_links() {
    let server = http_support::Server::start(
        &[
            "--stateless",
            "--max-daily-amount",
            "SAR:445.00",
            "--max-concurrent-per-tenant",
            "32",
        ],
        &[],
    );
    let url = server.url();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let args = json!({"name": format!("Order {i}"), "items": [{"product_id": COFFEE}]});
                http_support::stateless_call(&url, "spender", &[], "create_payment_link", args)
                    .await
            })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(e["kind"], "cap_exceeded", "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (5, 15));
    let listed = http_support::stateless_call(
        &url,
        "spender",
        &[],
        "list_payment_links",
        json!({"limit": 100}),
    )
    .await
    .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_failed_create_gives_its_amount_back_and_an_unknown_outcome_keeps_it() {
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let server = common::stdio::Server::start(
        &["--backend", "stream", "--max-daily-amount", "SAR:100.00"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    // Refused by Stream: nothing created, the 50.00 is given back.
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        stream_mock::Fault::Status(
            400,
            json!({"error": {"code": "BAD_REQUEST", "message": "refused", "additional_info": null}}),
        ),
    );
    let e = server
        .err("create_payment_link", order(ESPRESSO, 4, "SAR"))
        .await;
    assert_ne!(e["kind"], "cap_exceeded", "{e}");
    server
        .ok("create_payment_link", order(ESPRESSO, 4, "SAR"))
        .await;
    server
        .ok("create_payment_link", order(ESPRESSO, 4, "SAR"))
        .await;
    assert_eq!(
        mock.link_count(),
        2,
        "the budget of 100.00 held both 50.00 links"
    );
    let e = server
        .err("create_payment_link", order(ESPRESSO, 1, "SAR"))
        .await;
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    server.shutdown().await;

    // A create whose outcome is unknown counts: it may have taken the money.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let server = common::stdio::Server::start(
        &["--backend", "stream", "--max-daily-amount", "SAR:60.00"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        stream_mock::Fault::Status(
            500,
            json!({"error": {"code": "INTERNAL_ERROR", "message": "down"}}),
        ),
    );
    let e = server
        .err("create_payment_link", order(ESPRESSO, 4, "SAR"))
        .await;
    assert_eq!(e["kind"], "outcome_unknown", "{e}");
    let e = server
        .err("create_payment_link", order(ESPRESSO, 1, "SAR"))
        .await;
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("10.00 SAR is left"),
        "{e}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_unlisted_product_is_refused_by_its_field_with_nothing_sent() {
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let list = common::temp_file(&format!("# what this shop sells\n{ESPRESSO}  # espresso\n"));
    let server = common::stdio::Server::start(
        &[
            "--backend",
            "stream",
            "--allowed-products",
            list.path().to_str().unwrap(),
        ],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    let args = json!({"name": "Kit", "items": [
        {"product_id": ESPRESSO}, {"product_id": GRINDER}]});
    let e = server.err("create_payment_link", args).await;
    assert_eq!(e["kind"], "product_not_allowed");
    assert_eq!(e["field"], "items[1].product_id");
    assert_eq!(e["retry_safe"], false);
    assert!(e["message"].as_str().unwrap().contains(GRINDER), "{e}");
    assert!(mock.requests().await.is_empty(), "not even a read");
    server
        .ok("create_payment_link", order(ESPRESSO, 1, "SAR"))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn safety_options_that_cannot_be_used_stop_the_server_naming_the_option() {
    let missing = "/nonexistent/allowed-products.txt";
    let empty = common::temp_file("# nothing\n");
    for (args, env, names) in [
        (
            vec!["--max-link-amount", "SAR:10.001"],
            vec![],
            "--max-link-amount",
        ),
        (
            vec!["--max-daily-amount", "XYZ:10"],
            vec![],
            "--max-daily-amount",
        ),
        (
            vec!["--max-link-amount", "SAR:1,SAR:2"],
            vec![],
            "--max-link-amount",
        ),
        (
            vec!["--allowed-products", missing],
            vec![],
            "--allowed-products",
        ),
        (
            vec!["--allowed-products", empty.path().to_str().unwrap()],
            vec![],
            "--allowed-products",
        ),
        (
            vec![],
            vec![("PAYLINK_REQUEST_STATE_KEY", "too-short")],
            "PAYLINK_REQUEST_STATE_KEY",
        ),
        (
            vec![],
            vec![("PAYLINK_MAX_LINK_AMOUNT", "KWD:1.0001")],
            "--max-link-amount",
        ),
    ] {
        let end = common::stdio::run_until_exit(&args, &env).await;
        assert_eq!(
            end.status.code(),
            Some(2),
            "{args:?} {env:?}: {}",
            end.stderr
        );
        assert!(end.stderr.contains(names), "{names} in: {}", end.stderr);
        assert!(
            !end.stderr.contains("too-short"),
            "a key is never echoed: {}",
            end.stderr
        );
        assert!(end.stdout_lines.is_empty());
    }
}

#[tokio::test]
async fn a_link_created_at_another_total_than_its_preview_is_deactivated_and_counted_as_made() {
    // A price that changes between the preview's read and the create: Stream makes the link at
    // the new price. It must not stay payable, and the budget counts what it was made at.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let server = common::stdio::Server::start(
        &["--backend", "stream", "--max-daily-amount", "SAR:60.00"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    mock.fault(
        "POST",
        "/api/v2/payment_links",
        stream_mock::Fault::Reprice(ESPRESSO, "SAR", "13.00"),
    );
    let e = server
        .err("create_payment_link", order(ESPRESSO, 4, "SAR"))
        .await;
    assert_eq!(e["kind"], "upstream", "{e}");
    assert_eq!(e["retry_safe"], false, "the link exists: {e}");
    let link = mock.state.lock().unwrap().links[0].clone();
    assert_eq!(
        link["status"], "INACTIVE",
        "withdrawn before anyone could pay"
    );
    let message = e["message"].as_str().unwrap();
    for part in [
        "52.00 SAR",
        "50.00 SAR",
        link["id"].as_str().unwrap(),
        "deactivated",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    // The budget counts the 52.00 it was made at: 8.00 is left.
    let e = server
        .err("create_payment_link", order(ESPRESSO, 1, "SAR"))
        .await;
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("8.00 SAR is left"),
        "{e}"
    );
    assert_eq!(mock.link_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_stream_price_set_exclusive_of_vat_is_not_previewed_below_its_charge() {
    // Its amount is before VAT; what Stream adds is not described exactly enough to preview:
    // refused on its item when a cap needs the amount, with nothing sent.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let server = common::stdio::Server::start(
        &["--backend", "stream", "--max-link-amount", "SAR:1000"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    mock.set_price(GRINDER, "SAR", "300.00", false);
    let args = json!({"name": "Kit", "items": [
        {"product_id": ESPRESSO}, {"product_id": GRINDER}]});
    let e = server.err("create_payment_link", args).await;
    assert_eq!(e["kind"], "validation", "{e}");
    assert_eq!(e["field"], "items[1].product_id");
    let message = e["message"].as_str().unwrap();
    for part in ["Grinder", "exclusive of VAT", "Nothing was sent"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(mock.posts().await.is_empty());
    // A VAT-inclusive price is previewed and sold as before.
    server
        .ok("create_payment_link", order(ESPRESSO, 2, "SAR"))
        .await;
    assert_eq!(mock.posts().await.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_stripe_price_with_a_transformed_quantity_is_not_previewed() {
    // It bills the quantity divided and rounded (packs of six, say): quantity × unit is not its
    // charge, so it is refused on its item when a cap needs the amount, with nothing sent.
    let stripe = stripe_mock::MockStripe::start(STRIPE_KEY).await;
    {
        let mut state = stripe.state.lock().unwrap();
        let price = state
            .prices
            .iter_mut()
            .find(|p| p["id"] == "price_espresso_usd")
            .unwrap();
        price["transform_quantity"] = json!({"divide_by": 6, "round": "up"});
    }
    let server = common::stdio::Server::start(
        &["--backend", "stripe", "--max-link-amount", "USD:100"],
        &[
            ("STRIPE_API_KEY", STRIPE_KEY),
            ("STRIPE_BASE_URL", &stripe.uri()),
        ],
    )
    .await;
    let args = json!({"name": "Beans", "items": [
        {"product_id": "price_tea01"}, {"product_id": "prod_espresso", "quantity": 12}]});
    let e = server.err("create_payment_link", args).await;
    assert_eq!(e["kind"], "validation", "{e}");
    assert_eq!(e["field"], "items[1].product_id");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("transform_quantity"),
        "{e}"
    );
    assert!(stripe.posts().await.is_empty());
    server.shutdown().await;
}
