//! An upstream's answer as backends see it ([`UpstreamResponse`]): decoded once, bounded and
//! scrubbed, with the request id and content type cut after scrubbing; the [`ErrorDecoder`] a
//! backend reads refusals with; and [`json_body`], which reads a 2xx answer's JSON or says what
//! came instead.
//!
//! It must not hand out raw body bytes: everything a backend reads has passed [`super::json::read`].

use std::ops::Deref;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::budget::ParseCharge;
use super::json;
use super::request::RetryMode;
use super::scrub::{Scrubber, scrub_then_cut};
use crate::error::{Error, UpstreamContext};

/// Request ids longer than this (in characters) are cut, after scrubbing.
pub(crate) const REQUEST_ID_MAX_CHARS: usize = 200;

/// Content types are quoted in messages up to this many characters, after scrubbing.
const CONTENT_TYPE_MAX_CHARS: usize = 60;

/// An answer, body read in full (under the cap) and decoded. Every string in it that came from
/// the upstream has been scrubbed of the tenant's key, before any cut. Holds its share of the
/// process's parse budget (see `super::budget`) until dropped, or handed on by [`json_body`].
#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    /// The raw headers, for values read by machine only (`Retry-After`, `Stripe-Should-Retry`).
    /// Never put a header's text in a message: use the scrubbed fields below.
    pub headers: HeaderMap,
    /// Length of the body in bytes.
    pub body_len: usize,
    /// The body decoded as JSON (bounded and scrubbed, see [`json::read`]), or why it was not.
    pub json: Result<serde_json::Value, json::Refusal>,
    /// The upstream's request id: scrubbed, then cut to [`REQUEST_ID_MAX_CHARS`].
    pub request_id: Option<String>,
    /// The `Content-Type`, scrubbed and cut, or `none`.
    content_type: String,
    /// What the body and its decoded tree hold of the process's parse budget.
    charge: ParseCharge,
}

impl UpstreamResponse {
    /// Decodes an answer: `body` through [`json::read`], `request_id` (the raw header value) and
    /// the content type through the scrubber, each before being cut to length.
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: &[u8],
        request_id: Option<&str>,
        scrubber: &Scrubber,
    ) -> Self {
        let estimate = json::estimate(body);
        Self::charged(
            status,
            headers,
            body,
            request_id,
            scrubber,
            estimate,
            ParseCharge::default(),
        )
    }

    /// [`new`](Self::new), for a body whose [`json::estimate`] was made and charged (with the
    /// body's own bytes) to `charge`.
    pub(super) fn charged(
        status: StatusCode,
        headers: HeaderMap,
        body: &[u8],
        request_id: Option<&str>,
        scrubber: &Scrubber,
        estimate: (usize, usize),
        charge: ParseCharge,
    ) -> Self {
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || "none".to_owned(),
                |ct| scrub_then_cut(scrubber, ct, CONTENT_TYPE_MAX_CHARS),
            );
        UpstreamResponse {
            status,
            body_len: body.len(),
            json: json::read_estimated(body, estimate, scrubber),
            request_id: request_id.map(|id| scrub_then_cut(scrubber, id, REQUEST_ID_MAX_CHARS)),
            content_type,
            headers,
            charge,
        }
    }

    pub fn context(&self) -> UpstreamContext {
        UpstreamContext {
            status: Some(self.status.as_u16()),
            code: None,
            request_id: self.request_id.clone(),
        }
    }

    /// True when the body is declared as JSON (or not declared at all).
    pub fn is_json(&self) -> bool {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.contains("json"))
    }

    /// The `Content-Type` to quote in a message: scrubbed, at most 60 characters.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }
}

/// How a backend reads its upstream's answers.
pub trait ErrorDecoder: Send + Sync {
    /// The upstream's name in messages ("Stream", "Stripe").
    fn upstream_name(&self) -> &'static str;

    /// The response header carrying the upstream's request id.
    fn request_id_header(&self) -> &'static str;

    /// Turns a non-2xx answer into an error. Read the body through `response.json` only: it has
    /// been scrubbed.
    fn decode_error(&self, response: &UpstreamResponse, retry: RetryMode) -> Error;

    /// For an answer that failed, whether the upstream itself says retrying is safe and useful.
    /// `None` leaves the decision to the status-code rules.
    fn upstream_says_retry(&self, _response: &UpstreamResponse) -> Option<bool> {
        None
    }
}

/// A successful answer's decoded JSON, holding its share of the process's parse budget until the
/// backend has turned it into its result and dropped it: the tree is what the budget is for.
#[derive(Debug)]
pub struct Parsed {
    value: serde_json::Value,
    _charge: ParseCharge,
}

impl Deref for Parsed {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        &self.value
    }
}

/// The JSON body of a successful answer, or an error that explains what came instead.
pub fn json_body(response: UpstreamResponse, name: &str) -> Result<Parsed, Error> {
    let upstream = response.context();
    let bad = |what: String| {
        Error::upstream_failure(
            format!("{name} answered {} with {what}", response.status.as_u16()),
            upstream.clone(),
        )
    };
    if response.body_len == 0 {
        return Err(bad("an empty body".into()));
    }
    if !response.is_json() {
        return Err(bad(format!(
            "a {} body instead of JSON",
            response.content_type()
        )));
    }
    let status = response.status.as_u16();
    match response.json {
        Ok(value) => Ok(Parsed {
            value,
            _charge: response.charge,
        }),
        Err(refusal) => Err(Error::upstream_failure(
            format!("{name} answered {status} with {refusal}"),
            upstream,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// The request id and content type are scrubbed before they are cut: a key echoed at offset
    /// 195 of a long request id leaves none of its characters, and an escaped key in the body is
    /// gone from the decoded tree.
    #[test]
    fn responses_are_scrubbed_before_anything_is_cut() {
        let key = "sk_live_Q7zX9wKv";
        let s = Scrubber::new(vec![key.into()]);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_str(&format!("{}{key}", "x".repeat(55))).unwrap(),
        );
        let id = format!("{}{key}{}", "r".repeat(195), "s".repeat(100));
        let r = UpstreamResponse::new(
            StatusCode::UNAUTHORIZED,
            headers,
            br#"{"error": {"message": "bad key \u0073k_live_Q7zX9wKv"}}"#,
            Some(&id),
            &s,
        );
        let rid = r.request_id.clone().unwrap();
        assert_eq!(rid.chars().count(), REQUEST_ID_MAX_CHARS);
        assert_eq!(&rid[195..], "[reda");
        assert!(!r.content_type().contains("sk_"), "{}", r.content_type());
        assert_eq!(
            r.json.as_ref().unwrap()["error"]["message"],
            "bad key [redacted]"
        );
    }
}
