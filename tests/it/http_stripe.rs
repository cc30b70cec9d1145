//! Stripe over HTTP: each caller's own `sk_`/`rk_` key reaches the mock Stripe, anything else is
//! refused at the door, and the Stream-only base-URL header cannot redirect a Stripe key.

use serde_json::json;

use crate::harness::http::*;
use crate::harness::{sha256_hex, temp_file};
use crate::mocks::stripe::{MockStripe, header};

const KEY: &str = "sk_test_51HttpCallerKey";

#[tokio::test]
async fn stripe_callers_bring_their_own_key_over_http() {
    let mock = MockStripe::start(KEY).await;
    let server = Server::start(
        &["--backend", "stripe", "--stripe-base-url", &mock.uri()],
        &[],
    );
    let client = client(&server.url(), Some(KEY), &[]).await;
    let products = call(&client, "list_products", json!({})).await.unwrap();
    assert!(!products["data"].as_array().unwrap().is_empty());
    let link = call(
        &client,
        "create_payment_link",
        json!({"name": "Over HTTP", "items": [{"product_id": "prod_espresso", "quantity": 1}]}),
    )
    .await
    .unwrap();
    assert_eq!(link["backend"], "stripe");
    let sent: Vec<String> = mock
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        sent.iter().all(|a| a == &format!("Bearer {KEY}")),
        "{sent:?}"
    );

    // Not a Stripe key: 401 before any MCP processing, nothing sent upstream.
    let before = mock.server.received_requests().await.unwrap().len();
    let refused = post(
        &server.url(),
        Some("not-a-stripe-key"),
        &[],
        &initialize_body(),
    )
    .await;
    assert_eq!(refused.status(), 401);
    // The Stream base-URL header would send this Stripe key to a Stream host: refused.
    let redirected = post(
        &server.url(),
        Some(KEY),
        &[("x-stream-base-url", "https://staging.streampay.sa")],
        &initialize_body(),
    )
    .await;
    assert_eq!(redirected.status(), 400);
    assert_eq!(mock.server.received_requests().await.unwrap().len(), before);
    assert!(
        !server.stderr().contains(KEY),
        "the key never reaches the logs"
    );
}

/// Operator-key mode: two callers (two access tokens) are two tenants of one Stripe account. The
/// same `idempotency_key` string from each reaches Stripe as a different `Idempotency-Key`, so
/// Stripe never replays one tenant's link to the other; a tenant's own repeat is replayed by the
/// server's store without a request.
#[tokio::test]
async fn tenants_of_one_account_never_share_an_idempotency_key() {
    let mock = MockStripe::start(KEY).await;
    let tokens = temp_file(&format!(
        "{}\n{}\n",
        sha256_hex("access-one"),
        sha256_hex("access-two")
    ));
    let server = Server::start(
        &[
            "--backend",
            "stripe",
            "--stripe-base-url",
            &mock.uri(),
            "--access-tokens-file",
            tokens.path().to_str().unwrap(),
        ],
        &[("STRIPE_API_KEY", KEY)],
    );
    let args = json!({"name": "Order 42", "items": [{"product_id": "prod_espresso", "quantity": 2}], "idempotency_key": "order-42 attempt"});
    let one = client(&server.url(), Some("access-one"), &[]).await;
    let two = client(&server.url(), Some("access-two"), &[]).await;
    let first = call(&one, "create_payment_link", args.clone())
        .await
        .unwrap();
    let again = call(&one, "create_payment_link", args.clone())
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        mock.creates().await,
        1,
        "a local replay makes no upstream call"
    );
    let other = call(&two, "create_payment_link", args).await.unwrap();
    assert_ne!(other["id"], first["id"], "no cross-tenant replay");
    assert_eq!(mock.link_count(), 2);
    assert_eq!(mock.replays(), 0);
    let keys: Vec<String> = mock
        .requests_to("POST", "/v1/payment_links")
        .await
        .iter()
        .map(|p| header(p, "idempotency-key").unwrap())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
    assert!(keys.iter().all(|k| k.starts_with("paylink-")), "{keys:?}");
    one.cancel().await.unwrap();
    two.cancel().await.unwrap();
}
