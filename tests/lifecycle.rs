//! The link lifecycle: list links (paging, filters) and activate/deactivate, on the sandbox and
//! on the Stream mock, through the tool layer.

#[path = "mocks/harness.rs"]
mod harness;
#[path = "mocks/stream_harness.rs"]
mod stream_harness;
#[path = "mocks/stream.rs"]
mod stream_mock;

use std::sync::Arc;

use harness::{Harness, settings};
use paylink_mcp::backend::sandbox::SandboxBackend;
use paylink_mcp::model::BackendKind;
use serde_json::{Value, json};
use stream_harness::{harness, harness_with};
use stream_mock::MockStream;

const SANDBOX_BEANS: &str = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";
const STREAM_ESPRESSO: &str = "11111111-1111-4111-8111-111111111111";

fn sandbox() -> Harness {
    Harness::new(BackendKind::Sandbox, Arc::new(SandboxBackend::new(100)))
}

async fn make_links(h: &Harness, product: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let link = h
            .call(
                "create_payment_link",
                json!({"name": format!("Link {i}"), "items": [{"product_id": product}]}),
            )
            .await
            .unwrap();
        ids.push(link["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn all_pages(h: &Harness, mut args: Value) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = h.call("list_payment_links", args.clone()).await.unwrap();
        for l in page["data"].as_array().unwrap() {
            ids.push(l["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                args["cursor"] = json!(c);
                args.as_object_mut().unwrap().remove("limit");
            }
            None => {
                assert_eq!(page["has_more"], false);
                return ids;
            }
        }
    }
}

async fn lifecycle(h: &Harness, product: &str) {
    let mut ids = make_links(h, product, 7).await;
    ids.reverse(); // newest first
    assert_eq!(all_pages(h, json!({"limit": 3})).await, ids);

    // Deactivate two, with a message; then filter.
    let off = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": ids[1], "status": "inactive", "message": "Sold out"}),
        )
        .await
        .unwrap();
    assert_eq!(off["status"], "inactive");
    assert_eq!(off["inactive_message"], "Sold out");
    h.call(
        "update_payment_link_status",
        json!({"payment_link_id": ids[4], "status": "inactive"}),
    )
    .await
    .unwrap();
    let got = h
        .call("get_payment_link", json!({"payment_link_id": ids[1]}))
        .await
        .unwrap();
    assert_eq!(got["status"], "inactive");
    assert_eq!(
        all_pages(h, json!({"status": "inactive", "limit": 1})).await,
        [ids[1].clone(), ids[4].clone()]
    );
    assert_eq!(all_pages(h, json!({"status": "active"})).await.len(), 5);
    // Repeating is harmless; reactivating undoes it.
    h.call(
        "update_payment_link_status",
        json!({"payment_link_id": ids[1], "status": "inactive"}),
    )
    .await
    .unwrap();
    let on = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": ids[1], "status": "active"}),
        )
        .await
        .unwrap();
    assert_eq!(on["status"], "active");
    assert_eq!(
        all_pages(h, json!({"status": "inactive"})).await,
        [ids[4].clone()]
    );

    // Validation.
    let e = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": ids[0], "status": "active", "message": "x"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["field"], "message");
    let e = h
        .call(
            "update_payment_link_status",
            json!({"payment_link_id": ids[0], "status": "completed"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["field"], "status");
    let e = h
        .call("list_payment_links", json!({"status": "paused"}))
        .await
        .unwrap_err();
    assert_eq!(e["field"], "status");
    let e = h
        .call(
            "list_payment_links",
            json!({"created_from": "2030-01-01T00:00:00Z", "created_to": "2020-01-01T00:00:00Z"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["field"], "created_to");
    let e = h
        .call("update_payment_link_status", json!({"payment_link_id": "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b", "status": "inactive"}))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "not_found");
}

#[tokio::test]
async fn sandbox_lifecycle() {
    let h = sandbox();
    lifecycle(&h, SANDBOX_BEANS).await;
    // Creation-time filters: everything was created in the last minute.
    let now = chrono::Utc::now();
    let recent = all_pages(
        &h,
        json!({"created_from": (now - chrono::Duration::minutes(1)).to_rfc3339()}),
    )
    .await;
    assert_eq!(recent.len(), 7);
    let none = all_pages(
        &h,
        json!({"created_to": (now - chrono::Duration::minutes(1)).to_rfc3339()}),
    )
    .await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn stream_lifecycle_and_the_requests_sent() {
    let mock = MockStream::start("t").await;
    let h = harness(&mock);
    lifecycle(&h, STREAM_ESPRESSO).await;
    let requests = mock.requests().await;
    let patch = requests
        .iter()
        .find(|r| r.method.as_str() == "PATCH")
        .unwrap();
    assert!(patch.url.path().ends_with("/status"));
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
    let h = harness_with(&mock.uri(), "t", None, settings());
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

#[tokio::test]
async fn writes_are_live_guarded() {
    let h = harness_with(
        "https://stream-app-service.streampay.sa",
        "t",
        None,
        settings(),
    );
    let e = h
        .call("update_payment_link_status", json!({"payment_link_id": "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b", "status": "inactive"}))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "live_guard");
}
