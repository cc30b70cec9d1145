//! Stripe's refusals as our errors: its `{"error": {type, code, message, param}}` answers read
//! into the status rules shared by the REST backends (see `backend::rest`), plus what is Stripe's
//! own: `param` mapped to our argument names, `Stripe-Should-Retry`, `idempotency_error` and
//! `idempotency_key_in_use`, and what a failed create lets the caller do, which depends on whether
//! the caller holds the idempotency key.
//!
//! It reads answers only: it must not send anything (the upstream client retries, as
//! [`ErrorDecoder::upstream_says_retry`] advises).

use super::request::{DESCRIPTION_KEY, NAME_KEY};
use crate::backend::rest::{Refused, StatusHints, cut, cut_message};
use crate::backend::tolerant::Obj;
use crate::domain::Metadata;
use crate::error::Error;
use crate::upstream::{ErrorDecoder, RetryMode, UpstreamResponse};

/// A `param` we cannot map is quoted up to this many characters.
const PARAM_MAX_CHARS: usize = 100;

/// Splits `line_items[0][price]` into `["line_items", "0", "price"]`.
fn param_segments(param: &str) -> Vec<&str> {
    let (head, mut rest) = match param.find('[') {
        Some(i) => (&param[..i], &param[i..]),
        None => (param, ""),
    };
    let mut out = vec![head];
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) => {
                out.push(&inner[..end]);
                rest = &inner[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Maps a Stripe `param` to the argument a caller of our tools would fix.
pub fn our_field(param: &str) -> String {
    let segments = param_segments(param);
    let index = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    match segments.as_slice() {
        ["line_items"] => "items".into(),
        ["line_items", i, "price", ..] if index(i) => format!("items[{i}].product_id"),
        ["line_items", i, "quantity", ..] if index(i) => format!("items[{i}].quantity"),
        ["line_items", i, ..] if index(i) => format!("items[{i}]"),
        ["metadata", key, ..] if *key == NAME_KEY => "name".into(),
        ["metadata", key, ..] if *key == DESCRIPTION_KEY => "description".into(),
        ["metadata", key, ..] if !key.is_empty() => {
            format!("metadata.{}", cut(key, Metadata::MAX_KEY_CHARS))
        }
        ["metadata", ..] => "metadata".into(),
        ["restrictions", ..] => "max_number_of_payments".into(),
        ["after_completion", ..] => "success_redirect_url".into(),
        ["currency"] => "currency".into(),
        ["active"] => "status".into(),
        ["inactive_message"] => "message".into(),
        _ => cut(param, PARAM_MAX_CHARS),
    }
}

/// A failed product or price read during a create belongs to the item that named it.
pub(super) fn item_error(e: Error, field: &str) -> Error {
    match e {
        e @ (Error::NotFound { .. } | Error::Validation { .. }) => e.on_field(field),
        other => other,
    }
}

/// Reads Stripe's `{"error": {type, code, message, param, doc_url}}` answers. One per request:
/// whether the caller holds the idempotency key changes what a failed create lets them do.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripeErrors {
    /// The create's `Idempotency-Key` came from the caller's `idempotency_key`.
    pub caller_key: bool,
}

fn should_retry_header(response: &UpstreamResponse) -> Option<bool> {
    let v = response.headers.get("stripe-should-retry")?.to_str().ok()?;
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn error_code(response: &UpstreamResponse) -> Option<&str> {
    let v = response.json().ok()?;
    Obj(v).obj("error").and_then(|e| e.str("code"))
}

impl ErrorDecoder for StripeErrors {
    fn upstream_name(&self) -> &'static str {
        "Stripe"
    }

    fn request_id_header(&self) -> &'static str {
        "request-id"
    }

    fn upstream_says_retry(&self, response: &UpstreamResponse) -> Option<bool> {
        if let Some(says) = should_retry_header(response) {
            return Some(says);
        }
        // The first request with this key is still running: asking again with the same key
        // either waits for it or replays its answer.
        if response.status.as_u16() == 409 && error_code(response) == Some("idempotency_key_in_use")
        {
            return Some(true);
        }
        None
    }

    fn decode_error(&self, response: &UpstreamResponse, retry: RetryMode) -> Error {
        let status = response.status.as_u16();
        let error = response.json().ok().and_then(|v| Obj(v).obj("error"));
        let kind = error.and_then(|e| e.str("type"));
        let code = error.and_then(|e| e.str("code"));
        let message = error.and_then(|e| e.str("message"));
        let field = error.and_then(|e| e.str("param")).map(our_field);
        let refused = Refused::new("Stripe", response, code.or(kind), message, field);
        let described = &refused.described;
        let in_use = code == Some("idempotency_key_in_use");
        // A create whose key is ours alone cannot be retried by the caller: a new call is a new key.
        let own_key_write = retry == RetryMode::IdempotentWrite && !self.caller_key;
        match status {
            400 if kind == Some("idempotency_error") => Error::idempotency_conflict(format!(
                "{described}; this idempotency_key was already used with different arguments. Reuse a key only to retry the very same create; use a new key for a new link"
            )),
            400 if refused.field.is_some() => Error::upstream_validation(
                refused.field.unwrap_or_default(),
                format!(
                    "Stripe refused it: {}",
                    message.map(cut_message).as_deref().unwrap_or("invalid value")
                ),
                refused.ctx,
            ),
            409 if in_use && own_key_write => Error::outcome_unknown(
                format!(
                    "{described}; an earlier attempt of this create is still running at Stripe, so the link may or may not be created. Look for it with list_payment_links before creating it again"
                ),
                refused.ctx,
            ),
            // An earlier attempt of this create (ours, or a twin's) is still running: it may
            // make the link, and the same key can only replay it.
            409 if in_use && retry == RetryMode::IdempotentWrite => Error::retry_with_same_key(
                format!(
                    "{described}; a request with the same idempotency_key is still running: retry shortly with the same key"
                ),
                refused.ctx,
            ),
            409 if in_use => Error::upstream_retryable(
                format!(
                    "{described}; a request with the same idempotency_key is still running: retry shortly with the same key"
                ),
                refused.ctx,
            ),
            // Stripe says the request was not carried out: nothing to duplicate.
            s if s >= 500
                && retry != RetryMode::Read
                && should_retry_header(response) == Some(true) =>
            {
                Error::upstream_retryable(
                    format!(
                        "{described}; Stripe says the request was not carried out and may be sent again"
                    ),
                    refused.ctx,
                )
            }
            _ => refused.by_status(
                &StatusHints {
                    key_refused: "the Stripe API key was refused (check STRIPE_API_KEY or your Bearer token)",
                    forbidden: "this key may not do that (a restricted key needs write access to payment links and read access to products and prices)",
                    read_again: Some("retrying is safe"),
                    write_unknown: if self.caller_key {
                        "the link may or may not have been created. Stripe replays this answer for the same idempotency_key for 24 hours, so retrying with it changes nothing: look for the link with list_payment_links before creating it with a new key"
                    } else {
                        "the link may or may not have been created. Look for it with list_payment_links before creating it again"
                    },
                },
                response,
                retry,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::rest::name_not_found;
    use crate::error::UpstreamContext;
    use crate::upstream::Scrubber;
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::{Value, json};

    fn response(status: u16, headers: &[(&'static str, &str)], body: Value) -> UpstreamResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        raw_response(status, map, body.to_string().as_bytes())
    }

    fn raw_response(status: u16, headers: HeaderMap, body: &[u8]) -> UpstreamResponse {
        UpstreamResponse::new(
            reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body,
            Some("req_1"),
            &Scrubber::default(),
        )
    }

    fn stripe_error(kind: &str, code: Option<&str>, param: Option<&str>) -> Value {
        json!({"error": {"type": kind, "code": code, "message": "nope", "param": param, "doc_url": "https://stripe.com/docs/error-codes"}})
    }

    #[test]
    fn params_map_to_our_fields() {
        for (param, field) in [
            ("line_items", "items"),
            ("line_items[0][price]", "items[0].product_id"),
            ("line_items[12][quantity]", "items[12].quantity"),
            ("line_items[3]", "items[3]"),
            ("line_items[3][adjustable_quantity][enabled]", "items[3]"),
            ("metadata[order]", "metadata.order"),
            ("metadata[paylink_name]", "name"),
            ("metadata[paylink_description]", "description"),
            ("metadata", "metadata"),
            (
                "restrictions[completed_sessions][limit]",
                "max_number_of_payments",
            ),
            ("after_completion[redirect][url]", "success_redirect_url"),
            ("after_completion[type]", "success_redirect_url"),
            ("currency", "currency"),
            ("active", "status"),
            ("inactive_message", "message"),
            ("limit", "limit"),
            ("starting_after", "starting_after"),
            ("line_items[x][price]", "line_items[x][price]"),
            ("weird[", "weird["),
            ("", ""),
        ] {
            assert_eq!(our_field(param), field, "{param}");
        }
    }

    #[test]
    fn errors_become_envelopes() {
        let d = StripeErrors::default();
        let e = d.decode_error(
            &response(
                400,
                &[],
                stripe_error(
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    Some("line_items[1][quantity]"),
                ),
            ),
            RetryMode::IdempotentWrite,
        );
        assert_eq!(e.kind().as_str(), "validation");
        assert_eq!(e.field(), Some("items[1].quantity"));
        let body = e.body();
        assert_eq!(body.status, Some(400));
        assert_eq!(
            body.upstream_code.as_deref(),
            Some("parameter_invalid_integer")
        );
        assert_eq!(body.request_id.as_deref(), Some("req_1"));

        let e = d.decode_error(
            &response(400, &[], stripe_error("idempotency_error", None, None)),
            RetryMode::IdempotentWrite,
        );
        assert_eq!(e.kind().as_str(), "idempotency_conflict");

        let e = d.decode_error(
            &response(400, &[], stripe_error("invalid_request_error", None, None)),
            RetryMode::Read,
        );
        assert_eq!(e.kind().as_str(), "upstream");
        assert_eq!(
            e.body().upstream_code.as_deref(),
            Some("invalid_request_error"),
            "the type stands in for a missing code"
        );

        for (status, kind, retry_safe) in [
            (401, "auth", false),
            (402, "upstream", false),
            (403, "auth", false),
            (404, "not_found", false),
            (409, "upstream", false),
            (429, "rate_limited", true),
        ] {
            let e = d.decode_error(
                &response(
                    status,
                    &[],
                    stripe_error("invalid_request_error", Some("x"), None),
                ),
                RetryMode::Read,
            );
            assert_eq!(e.kind().as_str(), kind, "{status}");
            assert_eq!(e.retry_safe(), retry_safe, "{status}");
        }
    }

    #[test]
    fn a_5xx_on_a_create_is_final_unless_stripe_says_retry() {
        let body = stripe_error("api_error", None, None);
        for caller_key in [false, true] {
            let d = StripeErrors { caller_key };
            let e = d.decode_error(
                &response(500, &[], body.clone()),
                RetryMode::IdempotentWrite,
            );
            assert_eq!(e.kind().as_str(), "outcome_unknown");
            assert!(!e.retry_safe());
            let e = d.decode_error(
                &response(500, &[("stripe-should-retry", "false")], body.clone()),
                RetryMode::IdempotentWrite,
            );
            assert_eq!(e.kind().as_str(), "outcome_unknown");
            let e = d.decode_error(
                &response(503, &[("stripe-should-retry", "true")], body.clone()),
                RetryMode::IdempotentWrite,
            );
            assert_eq!(e.kind().as_str(), "upstream");
            assert!(e.retry_safe());
        }
        let e = StripeErrors::default().decode_error(&response(500, &[], body), RetryMode::Read);
        assert!(e.retry_safe(), "a failed read can be sent again");
    }

    #[test]
    fn stripe_should_retry_and_key_in_use_drive_retries() {
        let d = StripeErrors::default();
        let plain = stripe_error("api_error", None, None);
        assert_eq!(
            d.upstream_says_retry(&response(
                500,
                &[("stripe-should-retry", "true")],
                plain.clone()
            )),
            Some(true)
        );
        assert_eq!(
            d.upstream_says_retry(&response(
                503,
                &[("stripe-should-retry", " False ")],
                plain.clone()
            )),
            Some(false)
        );
        assert_eq!(
            d.upstream_says_retry(&response(500, &[], plain.clone())),
            None
        );
        let in_use = stripe_error(
            "invalid_request_error",
            Some("idempotency_key_in_use"),
            None,
        );
        assert_eq!(
            d.upstream_says_retry(&response(409, &[], in_use.clone())),
            Some(true)
        );
        // Exhausted retries on our own key: the caller cannot know whether the link exists.
        let e = d.decode_error(
            &response(409, &[], in_use.clone()),
            RetryMode::IdempotentWrite,
        );
        assert_eq!(e.kind().as_str(), "outcome_unknown");
        let e = StripeErrors { caller_key: true }
            .decode_error(&response(409, &[], in_use), RetryMode::IdempotentWrite);
        assert_eq!(e.kind().as_str(), "upstream");
        assert!(e.retry_safe());
    }

    #[test]
    fn undecodable_error_bodies_are_described() {
        let d = StripeErrors::default();
        let mut html = HeaderMap::new();
        html.insert("content-type", HeaderValue::from_static("text/html"));
        let r = raw_response(502, html.clone(), b"<html>bad gateway</html>");
        let e = d.decode_error(&r, RetryMode::Read);
        assert!(e.to_string().contains("text/html"), "{e}");
        let r = raw_response(502, html, b"");
        assert!(
            d.decode_error(&r, RetryMode::Read)
                .to_string()
                .contains("empty body")
        );
    }

    #[test]
    fn a_404_about_the_path_names_our_argument_and_others_keep_theirs() {
        let nf = |field: Option<&str>| {
            let e = Error::not_found("No such thing", UpstreamContext::default());
            match field {
                Some(f) => e.on_field(f),
                None => e,
            }
        };
        for path in [None, Some("id")] {
            let e = name_not_found(nf(path), "payment_link_id");
            assert_eq!(e.field(), Some("payment_link_id"));
        }
        let e = name_not_found(nf(Some("starting_after")), "payment_link_id");
        assert_eq!(e.field(), Some("starting_after"));
        let e = item_error(nf(Some("id")), "items[2].product_id");
        assert_eq!(e.field(), Some("items[2].product_id"));
    }
}
