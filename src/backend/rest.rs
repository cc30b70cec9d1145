//! What the REST backends (Stream, Stripe) read the same way: a refused answer by its status
//! (401, 403, 404/410, 429, 5xx), the rule that a write's 2xx answer that cannot be read is an
//! unknown outcome, a 404 about the object in the path named after our argument, and how much of
//! an upstream's text is quoted.
//!
//! A backend reads its own error shape (where the message, code and field are) and keeps what is
//! its own (Stream's 422 `detail`, Stripe's `param`, idempotency and `Stripe-Should-Retry`
//! rules); everything here is the same for both. It must not retry or send anything: the
//! upstream client decides that.

use crate::error::{Error, UpstreamContext};
use crate::upstream::{RetryMode, UpstreamResponse, retry_after};

/// An upstream's error message is quoted up to this many characters.
pub(crate) const MESSAGE_MAX_CHARS: usize = 300;

/// An upstream's error code is kept up to this many characters.
pub(crate) const CODE_MAX_CHARS: usize = 80;

/// `text` cut to `max` characters. Upstream text reaches us scrubbed (see `upstream::json`), so
/// a cut cannot reveal part of a key.
pub(crate) fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// An upstream's error message, as quoted to callers.
pub(crate) fn cut_message(text: &str) -> String {
    cut(text, MESSAGE_MAX_CHARS)
}

/// An upstream's error code, as kept in the envelope's `upstream_code`.
pub(crate) fn cut_code(text: &str) -> String {
    cut(text, CODE_MAX_CHARS)
}

/// A refused (non-2xx) answer, read as far as every REST upstream agrees.
pub(crate) struct Refused {
    /// `{name} answered {status}: {message}`, or what came instead of a message.
    pub described: String,
    /// The status, the upstream's code (cut) and request id.
    pub ctx: UpstreamContext,
    /// Our argument the upstream's refusal names, when it names one.
    pub field: Option<String>,
}

/// What a backend adds to the status rules every REST upstream shares.
pub(crate) struct StatusHints<'a> {
    /// Follows a 401's description: which key was refused, and where it is set.
    pub key_refused: &'a str,
    /// Follows a 403's description: what the key may lack.
    pub forbidden: &'a str,
    /// Follows the description of a 5xx answer to a read, which is safe to send again.
    pub read_again: Option<&'a str>,
    /// Follows the description of a 5xx answer to a write: what the caller should do now that
    /// the write may or may not have happened.
    pub write_unknown: &'a str,
}

impl Refused {
    /// Reads what every REST upstream's refusal has: `message` (the upstream's own, cut here)
    /// and `code` (cut here) from its error shape, `field` mapped to our argument.
    pub(super) fn new(
        name: &str,
        response: &UpstreamResponse,
        code: Option<&str>,
        message: Option<&str>,
        field: Option<String>,
    ) -> Self {
        let status = response.status.as_u16();
        let described = match (message, response.json().is_ok()) {
            (Some(m), _) => format!("{name} answered {status}: {}", cut_message(m)),
            (None, true) => format!("{name} answered {status}"),
            (None, false) if response.body_len == 0 => {
                format!("{name} answered {status} with an empty body")
            }
            (None, false) => format!(
                "{name} answered {status} with a {} body",
                response.content_type()
            ),
        };
        let mut ctx = response.context();
        ctx.code = code.map(cut_code);
        Refused {
            described,
            ctx,
            field,
        }
    }

    /// The rules by status that every REST upstream shares, for what the backend did not decide
    /// itself: 401 and 403 are `auth`, 404 and 410 `not_found`, 429 `rate_limited` (retry-safe,
    /// with the upstream's `Retry-After`); a 5xx is retry-safe on a read and an unknown outcome on
    /// a write; anything else is `upstream`, not retry-safe.
    pub(super) fn by_status(
        self,
        hints: &StatusHints<'_>,
        response: &UpstreamResponse,
        retry: RetryMode,
    ) -> Error {
        let Refused {
            described,
            ctx,
            field,
        } = self;
        // Only a refusal about the request's content names the argument it is about.
        let about = |error: Error| match &field {
            Some(field) => error.on_field(field.as_str()),
            None => error,
        };
        match response.status.as_u16() {
            401 => Error::auth(format!("{described}; {}", hints.key_refused), ctx),
            403 => Error::auth(format!("{described}; {}", hints.forbidden), ctx),
            404 | 410 => about(Error::not_found(described, ctx)),
            429 => Error::rate_limited(
                format!("{described}; slow down and retry later"),
                retry_after(&response.headers).map(|d| d.as_secs()),
                ctx,
            ),
            s if s >= 500 && retry == RetryMode::Read => Error::upstream_retryable(
                match hints.read_again {
                    Some(again) => format!("{described}; {again}"),
                    None => described,
                },
                ctx,
            ),
            s if s >= 500 => {
                Error::outcome_unknown(format!("{described}; {}", hints.write_unknown), ctx)
            }
            _ => about(Error::upstream_failure(described, ctx)),
        }
    }
}

/// The rule for a write's answer: a 2xx whose body cannot be read (what `upstream::json_body`
/// refuses, status 2xx) means the upstream did the write and we cannot say what it made. That is
/// an unknown outcome, never "nothing was done"; `then` tells the caller what to do. Any other
/// error passes unchanged.
pub(crate) fn unreadable_write(e: Error, then: &str) -> Error {
    match e {
        Error::Upstream {
            message, upstream, ..
        } if upstream.status.is_some_and(|s| (200..300).contains(&s)) => {
            Error::outcome_unknown(format!("{message}; {then}"), upstream)
        }
        other => other,
    }
}

/// The same rule for a create's 2xx answer that was read but is not a link (`e` says why):
/// `{e}; {name} accepted the create but its answer could not be read{then}`.
pub(crate) fn unreadable_created(e: Error, name: &str, then: &str) -> Error {
    Error::outcome_unknown(
        format!("{e}; {name} accepted the create but its answer could not be read{then}"),
        UpstreamContext::default(),
    )
}

/// Names `field` on a 404 about the object in the request's path: the upstream names no
/// parameter (or calls it `id`, as Stripe does), which means nothing to a caller of our tools. A
/// 404 that names another parameter (Stripe's `starting_after`) keeps it.
pub(crate) fn name_not_found(e: Error, field: &str) -> Error {
    match e {
        Error::NotFound {
            field: ref named, ..
        } if matches!(named.as_deref(), None | Some("id")) => e.on_field(field),
        other => other,
    }
}

/// An upstream answer that is not a payment link: it has no id.
pub(crate) fn no_link_id(name: &str) -> Error {
    Error::upstream_failure(
        format!("{name}'s answer has no payment link id"),
        UpstreamContext::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Scrubber;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn answer(status: u16, body: &[u8]) -> UpstreamResponse {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        UpstreamResponse::new(
            reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body,
            Some("req_9"),
            &Scrubber::default(),
        )
    }

    const HINTS: StatusHints<'static> = StatusHints {
        key_refused: "check the key",
        forbidden: "ask for access",
        read_again: Some("retrying is safe"),
        write_unknown: "look for it first",
    };

    fn decide(status: u16, retry: RetryMode, field: Option<&str>) -> Error {
        let r = answer(status, br#"{"m": 1}"#);
        Refused::new(
            "Up",
            &r,
            Some("CODE"),
            Some("nope"),
            field.map(str::to_owned),
        )
        .by_status(&HINTS, &r, retry)
    }

    #[test]
    fn refusals_are_decided_by_status_alike_for_every_rest_upstream() {
        for (status, retry, kind, retry_safe, message) in [
            (
                401,
                RetryMode::Read,
                "auth",
                false,
                "Up answered 401: nope; check the key",
            ),
            (
                403,
                RetryMode::Read,
                "auth",
                false,
                "Up answered 403: nope; ask for access",
            ),
            (
                404,
                RetryMode::Read,
                "not_found",
                false,
                "Up answered 404: nope",
            ),
            (
                410,
                RetryMode::Read,
                "not_found",
                false,
                "Up answered 410: nope",
            ),
            (
                429,
                RetryMode::UnsafeWrite,
                "rate_limited",
                true,
                "Up answered 429: nope; slow down and retry later",
            ),
            (
                503,
                RetryMode::Read,
                "upstream",
                true,
                "Up answered 503: nope; retrying is safe",
            ),
            (
                500,
                RetryMode::UnsafeWrite,
                "outcome_unknown",
                false,
                "Up answered 500: nope; look for it first",
            ),
            (
                502,
                RetryMode::IdempotentWrite,
                "outcome_unknown",
                false,
                "Up answered 502: nope; look for it first",
            ),
            (
                409,
                RetryMode::Read,
                "upstream",
                false,
                "Up answered 409: nope",
            ),
        ] {
            let e = decide(status, retry, Some("items[0]"));
            let body = e.body();
            assert_eq!(e.kind().as_str(), kind, "{status}");
            assert_eq!(e.retry_safe(), retry_safe, "{status}");
            assert_eq!(body.message, message, "{status}");
            assert_eq!(body.status, Some(status));
            assert_eq!(body.upstream_code.as_deref(), Some("CODE"));
            assert_eq!(body.request_id.as_deref(), Some("req_9"));
            // Only a refusal about the request's content names the argument.
            let named = matches!(kind, "not_found") || (kind == "upstream" && !retry_safe);
            assert_eq!(e.field(), named.then_some("items[0]"), "{status}");
        }
        assert_eq!(
            decide(429, RetryMode::Read, None).body().retry_after_secs,
            Some(7)
        );
        // Without the upstream's hint, a failed read says nothing more.
        let r = answer(500, b"");
        let quiet = StatusHints {
            read_again: None,
            ..HINTS
        };
        let e = Refused::new("Up", &r, None, None, None).by_status(&quiet, &r, RetryMode::Read);
        assert_eq!(e.to_string(), "Up answered 500 with an empty body");
        assert!(e.retry_safe());
    }

    #[test]
    fn upstream_text_is_cut_to_one_length() {
        let r = answer(400, b"{}");
        let long = "é".repeat(MESSAGE_MAX_CHARS + 50);
        let refused = Refused::new("Up", &r, Some(&"c".repeat(200)), Some(&long), None);
        assert_eq!(
            refused.described,
            format!("Up answered 400: {}", "é".repeat(MESSAGE_MAX_CHARS))
        );
        assert_eq!(refused.ctx.code.unwrap().len(), CODE_MAX_CHARS);
    }

    #[test]
    fn a_write_answered_2xx_but_unreadable_is_an_unknown_outcome() {
        let at = |status: u16| UpstreamContext {
            status: Some(status),
            ..UpstreamContext::default()
        };
        let e = unreadable_write(
            Error::upstream_failure("Up answered 201 with malformed JSON", at(201)),
            "look for it",
        );
        assert_eq!(e.kind().as_str(), "outcome_unknown");
        assert_eq!(
            e.to_string(),
            "Up answered 201 with malformed JSON; look for it"
        );
        assert_eq!(e.body().status, Some(201));
        // Anything else is left as it is.
        for other in [
            Error::upstream_failure("Up answered 400", at(400)),
            Error::upstream_retryable("could not connect", UpstreamContext::default()),
            Error::validation("name", "too long"),
        ] {
            let kind = other.kind();
            assert_eq!(unreadable_write(other, "look for it").kind(), kind);
        }
        let e = unreadable_created(no_link_id("Up"), "Up", ", so look");
        assert_eq!(e.kind().as_str(), "outcome_unknown");
        assert_eq!(
            e.to_string(),
            "Up's answer has no payment link id; Up accepted the create but its answer could not be read, so look"
        );
    }
}
