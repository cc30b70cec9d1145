//! Stripe over HTTP: each caller's own `sk_`/`rk_` key reaches the mock Stripe, anything else is
//! refused at the door, and the Stream-only base-URL header cannot redirect a Stripe key.

mod http_support;
#[path = "mocks/stripe.rs"]
mod stripe_mock;

use http_support::*;
use serde_json::json;
use stripe_mock::MockStripe;

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
