//! Property tests: arguments come from a model and answers from a network; both are untrusted.
//!
//! - Arbitrary JSON to every tool, through the real binary over stdio on the sandbox, must end in
//!   a result or an envelope (never a panic, never a dead server), and every `validation`
//!   envelope names a field.
//! - Arbitrary upstream bodies to every answer parser and error decoder of Stream and Stripe, and
//!   arbitrary text to the domain parsers, never panic. These are pure library functions, called
//!   directly (their paths follow the library's modules).

use std::sync::LazyLock;

use paylink_mcp::testing::{CurrencyCode, Cursor, Money, RedirectUrl, ValidUntil};
use paylink_mcp::testing::{ErrorDecoder, RetryMode, Scrubber, UpstreamResponse, json_body};
use paylink_mcp::testing::{
    StreamErrors, line_item_from_stream, link_from_stream, product_from_stream,
};
use paylink_mcp::testing::{
    StripeErrors, apply_line_items, line_item_from_stripe, link_from_stripe, our_field,
    product_from_stripe,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::harness::stdio::Server;

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
    "unavailable",
];

/// The six tools, in listing order.
const TOOLS: [&str; 6] = [
    "create_payment_link",
    "get_payment_link",
    "list_line_items",
    "list_products",
    "list_payment_links",
    "update_payment_link_status",
];

/// Cases per tool of the arbitrary-arguments property (3600 in all): each is one stdio round trip
/// to the debug binary plus generating the arguments, about 5 ms, so that property takes about
/// 20 s alone on a busy 2-core machine. (In process it ran 2000 per tool.)
const CASES_PER_TOOL: u32 = 600;

/// Cases of each near-valid create property: smaller arguments, 2 to 4 ms each.
const NEAR_VALID_CASES: u32 = 1000;

/// Cases of the pure parser properties: about a millisecond each, mostly generating the JSON.
const PARSER_CASES: u32 = 2000;

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

/// One runtime for the properties' server and its client, on its own worker thread: the
/// properties are plain `#[test]`s (proptest drives them) that block on it, possibly several at
/// once.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
});

/// One sandbox server for every case: the real binary over stdio, its caps lifted so that
/// thousands of successful creates are never refused for size.
static SERVER: LazyLock<Server> = LazyLock::new(|| {
    RUNTIME.block_on(Server::start(
        &[
            "--sandbox-max-links",
            "1000000",
            "--sandbox-max-tenant-bytes",
            "1073741824",
            "--sandbox-max-bytes",
            "1073741824",
        ],
        &[],
    ))
});

fn check_tool(tool: &str, args: &Map<String, Value>) -> Result<(), TestCaseError> {
    let server = &*SERVER;
    let result = RUNTIME.block_on(server.result(tool, Value::Object(args.clone())));
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
    #![proptest_config(ProptestConfig { cases: CASES_PER_TOOL * TOOLS.len() as u32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_arguments_to_every_tool_end_in_a_result_or_an_envelope(
        tool in prop::sample::select(TOOLS.to_vec()),
        args in arb_args(),
    ) {
        check_tool(tool, &args)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: NEAR_VALID_CASES, failure_persistence: None, ..ProptestConfig::default() })]

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
}

proptest! {
    #![proptest_config(ProptestConfig { cases: PARSER_CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn stream_bodies_never_panic_the_parsers(body in arb_json()) {
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
    fn upstream_bytes_never_panic_stream_error_decoding(
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
    fn structured_error_bodies_never_panic_stream_error_decoding(body in arb_json(), status in 400u16..600) {
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

    /// Stripe's answers: a link, its line items (each with its price), a product (with its
    /// default price and the price's currency options), at the top and nested where Stripe
    /// nests, and the totals summed from line items.
    #[test]
    fn stripe_bodies_never_panic_the_parsers(body in arb_json(), live in any::<bool>(), complete in any::<bool>()) {
        let usd = CurrencyCode::parse("USD", "c").unwrap();
        let _ = link_from_stripe(&body, live);
        let _ = line_item_from_stripe(&body, Some(usd));
        let _ = line_item_from_stripe(&body, None);
        let _ = product_from_stripe(&body);
        for nested in [
            "metadata", "restrictions", "after_completion", "price", "default_price",
            "currency_options", "recurring", "data", "unit_amount", "quantity", "amount_total",
        ] {
            let wrapped = json!({"id": "x", "currency": "usd", "active": true, "name": "N", nested: body.clone()});
            let _ = link_from_stripe(&wrapped, live);
            let _ = line_item_from_stripe(&wrapped, Some(usd));
            let _ = product_from_stripe(&wrapped);
        }
        let price = json!({
            "id": "price_x", "object": "price", "currency": "usd", "type": body.clone(),
            "unit_amount": body.clone(), "recurring": body.clone(),
            "currency_options": {"usd": body.clone(), "kwd": {"unit_amount": body.clone()}},
        });
        let item = json!({"id": "li_x", "quantity": 2, "currency": "usd", "amount_total": 700, "amount_subtotal": body.clone(), "price": price.clone()});
        let _ = line_item_from_stripe(&item, Some(usd));
        let _ = product_from_stripe(&json!({"id": "prod_x", "name": "N", "active": true, "default_price": price}));
        if let Ok(mut link) = link_from_stripe(&json!({"id": "plink_x", "currency": "usd", "active": true}), live) {
            let items = match &body {
                Value::Array(a) => a.clone(),
                other => vec![other.clone(), item],
            };
            apply_line_items(&mut link, &items, complete);
        }
    }

    /// Stripe's `param` of a refusal, mapped to our argument's name.
    #[test]
    fn stripe_params_never_panic_the_field_mapping(param in "\\PC{0,40}") {
        let _ = our_field(&param);
        let _ = our_field(&format!("line_items[{param}][price]"));
        let _ = our_field(&format!("metadata[{param}]"));
    }

    #[test]
    fn upstream_bytes_never_panic_stripe_error_decoding(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        status in 100u16..600,
        json_ct in any::<bool>(),
        caller_key in any::<bool>(),
        should_retry in prop::option::of("[a-zA-Z ]{0,8}"),
    ) {
        let mut headers = reqwest::header::HeaderMap::new();
        let ct = if json_ct { "application/json" } else { "text/html" };
        headers.insert("content-type", ct.parse().unwrap());
        if let Some(v) = should_retry.and_then(|v| v.parse().ok()) {
            headers.insert("stripe-should-retry", v);
        }
        let response = UpstreamResponse::new(
            reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            &bytes,
            None,
            &Scrubber::default(),
        );
        let decoder = StripeErrors { caller_key };
        for mode in [RetryMode::Read, RetryMode::UnsafeWrite, RetryMode::IdempotentWrite] {
            let _ = decoder.upstream_says_retry(&response);
            let e = decoder.decode_error(&response, mode);
            prop_assert!(!e.envelope().is_empty());
        }
        let _ = json_body(response, "Stripe");
    }

    #[test]
    fn structured_error_bodies_never_panic_stripe_error_decoding(
        body in arb_json(),
        status in 400u16..600,
        caller_key in any::<bool>(),
    ) {
        for shape in [
            json!({"error": body.clone()}),
            json!({"error": {"type": body.clone(), "code": body.clone(), "param": body.clone(), "message": body.clone(), "doc_url": body.clone()}}),
            json!({"error": {"type": "invalid_request_error", "code": "parameter_invalid_integer", "param": body.clone(), "message": "m"}}),
        ] {
            let response = UpstreamResponse::new(
                reqwest::StatusCode::from_u16(status).unwrap(),
                reqwest::header::HeaderMap::new(),
                &serde_json::to_vec(&shape).unwrap(),
                Some("req_r"),
                &Scrubber::default(),
            );
            let e = StripeErrors { caller_key }.decode_error(&response, RetryMode::UnsafeWrite);
            let v: Value = serde_json::from_str(&e.envelope()).unwrap();
            prop_assert!(v["error"]["kind"].is_string());
        }
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
