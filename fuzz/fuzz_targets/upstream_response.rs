//! Arbitrary bytes as an upstream answer, from Stream or from Stripe: the answer parsers and the
//! error decoders must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paylink_mcp::testing::{
    StreamErrors, line_item_from_stream, link_from_stream, product_from_stream,
};
use paylink_mcp::testing::{
    StripeErrors, apply_line_items, line_item_from_stripe, link_from_stripe, product_from_stripe,
};
use paylink_mcp::testing::CurrencyCode;
use paylink_mcp::testing::{ErrorDecoder, RetryMode, Scrubber, UpstreamResponse, json_body};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = reqwest::StatusCode::from_u16(400 + u16::from(selector) % 200)
        .unwrap_or(reqwest::StatusCode::BAD_REQUEST);
    let mut headers = reqwest::header::HeaderMap::new();
    if selector & 0x40 != 0 {
        // Stripe's retry hint, either way.
        let hint = if selector & 0x20 != 0 {
            "true"
        } else {
            "false"
        };
        headers.insert(
            "stripe-should-retry",
            reqwest::header::HeaderValue::from_static(hint),
        );
    }
    let response = UpstreamResponse::new(
        status,
        headers,
        body,
        None,
        &Scrubber::new(vec!["fuzz-secret".into()]),
    );
    let stripe = StripeErrors {
        caller_key: selector & 0x80 != 0,
    };
    for mode in [
        RetryMode::Read,
        RetryMode::UnsafeWrite,
        RetryMode::IdempotentWrite,
    ] {
        let _ = StreamErrors.decode_error(&response, mode);
        let _ = stripe.upstream_says_retry(&response);
        let _ = stripe.decode_error(&response, mode);
    }
    if let Ok(value) = json_body(response, "upstream") {
        let _ = link_from_stream(&value, false);
        let _ = line_item_from_stream(&value, Some(CurrencyCode::sar()));
        let _ = product_from_stream(&value);
        let usd = CurrencyCode::parse("USD", "currency").ok();
        let _ = line_item_from_stripe(&value, usd);
        let _ = line_item_from_stripe(&value, None);
        let _ = product_from_stripe(&value);
        if let Ok(mut link) = link_from_stripe(&value, false) {
            // Its line items, as a list answer's `data` would carry them.
            let items = value["data"].as_array().cloned().unwrap_or_default();
            apply_line_items(&mut link, &items, selector & 1 == 0);
        }
    }
});
