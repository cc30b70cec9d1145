//! Property tests: arguments come from a model and answers from a network; both are untrusted.
//! Arbitrary JSON to every tool must end in a result or an envelope (never a panic), every
//! `validation` envelope names a field; arbitrary upstream bodies to every parser never panic.

#[path = "mocks/harness.rs"]
mod harness;
#[path = "mocks/stream.rs"]
mod stream_mock;

use std::sync::{Arc, LazyLock};

use paylink_mcp::backend::sandbox::SandboxBackend;
use paylink_mcp::backend::stream::{
    StreamErrors, line_item_from_stream, link_from_stream, product_from_stream,
};
use paylink_mcp::domain::{CurrencyCode, Cursor, Money, RedirectUrl, ValidUntil};
use paylink_mcp::model::BackendKind;
use paylink_mcp::tools::id::ToolId;
use paylink_mcp::upstream::{ErrorDecoder, RetryMode, Scrubber, UpstreamResponse, json_body};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KINDS: &[&str] = &[
    "validation",
    "not_found",
    "auth",
    "unsupported_by_backend",
    "live_guard",
    "rate_limited",
    "upstream",
    "outcome_unknown",
    "idempotency_conflict",
    "declined",
    "confirmation_required",
    "cap_exceeded",
    "product_not_allowed",
    "internal",
];

/// Cases per tool: enough to matter, cheap on the in-memory sandbox.
const CASES: u32 = 2000;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1e300)),
        ".{0,40}".prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
        Just(Value::String("x".repeat(5000))),
        Just(json!("6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f")),
        Just(json!("9c8b7a6f-5e4d-4c3b-9a2f-1e0d9c8b7a6f")),
        Just(json!("2030-01-01T00:00:00Z")),
        Just(json!("https://shop.example/ok")),
        Just(json!("KWD")),
        Just(json!("pg1.MS4xMA")),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly the names tools know, so that values reach deep validation, sometimes anything.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "name", "items", "product_id", "quantity", "coupons", "currency", "description",
            "valid_until", "max_number_of_payments", "success_redirect_url", "failure_redirect_url",
            "organization_consumer_id", "metadata", "idempotency_key", "payment_link_id", "limit",
            "starting_after", "ending_before", "cursor", "status", "message", "created_from",
            "created_to",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

fn arb_args() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(field_name(), arb_json(), 0..8)
        .prop_map(|m| m.into_iter().collect())
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

/// The sandbox behind the real server and tool router, driven by rmcp's client in process.
static HARNESS: LazyLock<harness::Harness> = LazyLock::new(|| {
    harness::Harness::new(
        BackendKind::Sandbox,
        Arc::new(SandboxBackend::new(1_000_000)),
    )
});

fn check_tool(tool: &str, args: &Map<String, Value>) -> Result<(), TestCaseError> {
    let result = RUNTIME.block_on(HARNESS.raw_call(tool, Value::Object(args.clone())));
    if result.is_error == Some(true) {
        let text = &result.content[0].as_text().expect("text").text;
        let v: Value = serde_json::from_str(text).expect("the error text is JSON");
        prop_assert_eq!(v.as_object().unwrap().len(), 1);
        let e = &v["error"];
        let kind = e["kind"].as_str().unwrap();
        prop_assert!(KINDS.contains(&kind), "kind {}", kind);
        prop_assert!(e["retry_safe"].is_boolean());
        prop_assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        if kind == "validation" || kind == "unsupported_by_backend" {
            prop_assert!(
                e["field"].as_str().is_some_and(|f| !f.is_empty()),
                "{} without a field: {}",
                kind,
                text
            );
        }
    } else {
        prop_assert!(
            result
                .structured_content
                .as_ref()
                .is_some_and(Value::is_object)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES * ToolId::ALL.len() as u32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_arguments_to_every_tool_end_in_a_result_or_an_envelope(
        tool in prop::sample::select(ToolId::ALL.map(ToolId::name).to_vec()),
        args in arb_args(),
    ) {
        check_tool(tool, &args)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    /// Near-valid creates (a valid base with one field replaced) reach every validation rule.
    #[test]
    fn near_valid_creates_fail_on_a_named_field_or_succeed(field in field_name(), value in arb_json()) {
        let mut args = json!({
            "name": "Order",
            "items": [{"product_id": "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f", "quantity": 2}],
            "currency": "SAR",
        }).as_object().unwrap().clone();
        args.insert(field, value);
        check_tool("create_payment_link", &args)?;
    }

    #[test]
    fn near_valid_items_fail_on_a_named_field_or_succeed(field in field_name(), value in arb_json()) {
        let mut item = json!({"product_id": "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f", "quantity": 1}).as_object().unwrap().clone();
        item.insert(field, value);
        let args = json!({"name": "Order", "items": [item]}).as_object().unwrap().clone();
        check_tool("create_payment_link", &args)?;
    }

    #[test]
    fn upstream_bodies_never_panic_the_parsers(body in arb_json()) {
        let _ = link_from_stream(&body, false);
        let _ = line_item_from_stream(&body, Some(CurrencyCode::sar()));
        let _ = product_from_stream(&body);
        for nested in ["items", "data", "prices", "custom_metadata"] {
            let wrapped = json!({"id": "x", "currency": "KWD", nested: body.clone()});
            let _ = link_from_stream(&wrapped, true);
            let _ = product_from_stream(&wrapped);
        }
    }

    #[test]
    fn upstream_bytes_never_panic_error_decoding(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        status in 100u16..600,
        json_ct in any::<bool>(),
    ) {
        let mut headers = reqwest::header::HeaderMap::new();
        if json_ct {
            headers.insert("content-type", "application/json".parse().unwrap());
        } else {
            headers.insert("content-type", "text/html".parse().unwrap());
        }
        let response = UpstreamResponse::new(
            reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            &bytes,
            None,
            &Scrubber::default(),
        );
        for mode in [RetryMode::Read, RetryMode::UnsafeWrite, RetryMode::IdempotentWrite] {
            let e = StreamErrors.decode_error(&response, mode);
            prop_assert!(!e.envelope().is_empty());
        }
        let _ = json_body(response, "Stream");
    }

    #[test]
    fn structured_error_bodies_never_panic_error_decoding(body in arb_json(), status in 400u16..600) {
        let response = UpstreamResponse::new(
            reqwest::StatusCode::from_u16(status).unwrap(),
            reqwest::header::HeaderMap::new(),
            &serde_json::to_vec(&json!({"detail": body.clone(), "error": body})).unwrap(),
            Some("r"),
            &Scrubber::default(),
        );
        let e = StreamErrors.decode_error(&response, RetryMode::Read);
        let v: Value = serde_json::from_str(&e.envelope()).unwrap();
        prop_assert!(v["error"]["kind"].is_string());
    }

    #[test]
    fn domain_parsers_never_panic(s in "\\PC{0,64}", bytes in ".{0,64}") {
        let sar = CurrencyCode::sar();
        let _ = Money::parse_decimal(&s, sar);
        let _ = Money::parse_decimal(&bytes, CurrencyCode::parse("KWD", "c").unwrap());
        let _ = CurrencyCode::parse(&s, "currency");
        let _ = Cursor::decode(&s, None);
        let _ = Cursor::decode(&format!("pg1.{s}"), None);
        let _ = Cursor::decode(&format!("af1.{bytes}"), None);
        let _ = RedirectUrl::parse(&s, "url");
        let _ = ValidUntil::parse(&s, "valid_until", chrono::Utc::now());
    }

    #[test]
    fn money_round_trips(minor in any::<i64>(), code in prop::sample::select(vec!["SAR", "KWD", "JPY", "BHD", "USD"])) {
        let c = CurrencyCode::parse(code, "c").unwrap();
        let m = Money::from_minor(minor, c);
        if minor != i64::MIN {
            prop_assert_eq!(Money::parse_decimal(&m.to_decimal_string(), c).unwrap(), m);
        }
    }
}
