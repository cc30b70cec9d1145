//! Arbitrary bytes as an upstream answer: the parsers and the error decoder must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paylink_mcp::backend::stream::{
    StreamErrors, line_item_from_stream, link_from_stream, product_from_stream,
};
use paylink_mcp::domain::CurrencyCode;
use paylink_mcp::upstream::{ErrorDecoder, RetryMode, Scrubber, UpstreamResponse, json_body};

fuzz_target!(|data: &[u8]| {
    let Some((&status, body)) = data.split_first() else {
        return;
    };
    let response = UpstreamResponse::new(
        reqwest::StatusCode::from_u16(400 + u16::from(status) % 200)
            .unwrap_or(reqwest::StatusCode::BAD_REQUEST),
        reqwest::header::HeaderMap::new(),
        body,
        None,
        &Scrubber::new(vec!["fuzz-secret".into()]),
    );
    let _ = StreamErrors.decode_error(&response, RetryMode::Read);
    let _ = StreamErrors.decode_error(&response, RetryMode::UnsafeWrite);
    if let Ok(value) = json_body(response, "Stream") {
        let _ = link_from_stream(&value, false);
        let _ = line_item_from_stream(&value, Some(CurrencyCode::sar()));
        let _ = product_from_stream(&value);
    }
});
