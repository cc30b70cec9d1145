//! What a backend asks of its upstream: the method, path, headers and body of one request, and
//! how it may be retried ([`RetryMode`]). Built by the backends; sent by [`super::client`].
//!
//! Owns the rule that a header carrying a secret is marked sensitive. It must not send anything
//! or read answers.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::error::{Error, UpstreamContext};

/// How a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// A read, or a write that sets an absolute state (a status): retried on connect errors,
    /// timeouts, 429, 502, 503, 504.
    Read,
    /// A write the upstream cannot deduplicate (a Stream create): retried only when the
    /// connection failed before anything was sent.
    UnsafeWrite,
    /// A write carrying an idempotency key the upstream honours (a Stripe create): retried with
    /// the same key after connect errors, timeouts, and when the backend's decoder says so.
    IdempotentWrite,
}

/// The body of a request.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Json(Bytes),
    Form(Bytes),
}

/// What a backend asks for.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamRequest {
    pub method: Method,
    /// Path and query, starting with `/`; ids in it are already validated as path-safe.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Body,
    pub retry: RetryMode,
}

/// A header value holding a secret: marked sensitive so that it never appears in debug output.
pub(crate) fn sensitive_header(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        Error::auth(
            "the API key contains characters that cannot be sent in an HTTP header",
            UpstreamContext::default(),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_headers_are_marked() {
        assert!(sensitive_header("abc").unwrap().is_sensitive());
        assert!(sensitive_header("a\nb").is_err());
    }
}
