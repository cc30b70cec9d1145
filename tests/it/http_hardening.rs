//! Listener and operator-mode hardening found in review: a loopback bind behind a TLS proxy has
//! no shared anonymous tenant, and in operator-key mode callers cannot send the operator's key to
//! another Stream environment.

use crate::harness::http::*;
use crate::harness::{sha256_hex, temp_file};

#[tokio::test]
async fn behind_a_tls_proxy_a_loopback_sandbox_has_no_anonymous_tenant() {
    let open = Server::start(&[], &[]);
    let anonymous = post(&open.url(), None, &[], &initialize_body()).await;
    assert_eq!(
        anonymous.status(),
        200,
        "plain loopback: the anonymous tenant"
    );
    let proxied = Server::start(&["--behind-tls-proxy"], &[]);
    let refused = post(&proxied.url(), None, &[], &initialize_body()).await;
    assert_eq!(
        refused.status(),
        401,
        "behind a proxy the internet reaches it: a key is required"
    );
}

#[tokio::test]
async fn operator_mode_pins_the_stream_environment() {
    let tokens = temp_file(&format!("{}\n", sha256_hex("access-one")));
    let server = Server::start(
        &[
            "--backend",
            "stream",
            "--access-tokens-file",
            tokens.path().to_str().unwrap(),
        ],
        &[
            ("STREAM_BASE_URL", "https://staging.streampay.sa"),
            ("STREAM_API_KEY", "operator-staging-key"),
        ],
    );
    let to_production = post(
        &server.url(),
        Some("access-one"),
        &[(
            "x-stream-base-url",
            "https://stream-app-service.streampay.sa",
        )],
        &initialize_body(),
    )
    .await;
    assert_eq!(to_production.status(), 400);
    let own = post(
        &server.url(),
        Some("access-one"),
        &[("x-stream-base-url", "https://staging.streampay.sa")],
        &initialize_body(),
    )
    .await;
    assert_eq!(
        own.status(),
        200,
        "naming the operator's own environment is fine"
    );
    assert!(!server.stderr().contains("operator-staging-key"));
}

#[tokio::test]
async fn a_spray_of_random_keys_does_not_reset_a_tenants_rate_limit() {
    let server = Server::start(
        &[
            "--max-tenants",
            "4",
            "--rate-limit-per-minute",
            "2",
            "--new-tenants-per-minute",
            "3",
        ],
        &[],
    );
    let url = server.url();
    for _ in 0..2 {
        assert_eq!(
            post(&url, Some("key-a"), &[], &initialize_body())
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        post(&url, Some("key-a"), &[], &initialize_body())
            .await
            .status(),
        429
    );
    for i in 0..50 {
        let _ = post(&url, Some(&format!("spray-{i}")), &[], &initialize_body()).await;
    }
    let after = post(&url, Some("key-a"), &[], &initialize_body()).await;
    assert_eq!(after.status(), 429, "key-a's bucket survived the spray");
}
