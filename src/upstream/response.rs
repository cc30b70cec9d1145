//! An upstream's answer as backends see it ([`UpstreamResponse`]): bounded and scrubbed, with the
//! request id and content type cut after scrubbing; the [`ErrorDecoder`] a backend reads
//! refusals with; and [`typed_body`] (or [`json_body`]), which reads a 2xx answer or says what
//! came instead.
//!
//! A refusal (non-2xx) is decoded as a `Value`, which error decoders read. A 2xx answer is read
//! into the backend's typed structs, straight from the text when scrubbing could change nothing
//! (see [`super::json::check_estimated`]). It must not hand out raw body bytes: everything a backend reads
//! has passed the bounds and the scrubber.

use std::ops::Deref;
use std::sync::OnceLock;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

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
    body: Text,
    /// The upstream's request id: scrubbed, then cut to [`REQUEST_ID_MAX_CHARS`].
    pub request_id: Option<String>,
    /// The `Content-Type`, scrubbed and cut, or `none`.
    content_type: String,
    /// What the body and its decoded tree hold of the process's parse budget.
    charge: ParseCharge,
}

/// The body, as far as it was read.
#[derive(Debug)]
enum Text {
    /// Decoded as JSON (bounded and scrubbed, see [`json::read`]), or why it was not: every
    /// refusal, and a 2xx answer that had to be scrubbed.
    Decoded(Result<Value, json::Refusal>),
    /// A 2xx answer within bounds that scrubbing could not change (see [`json::check_estimated`]): read
    /// into typed structs from its text. `tree` is its `Value`, decoded only if asked for.
    Plain {
        text: Vec<u8>,
        tree: OnceLock<Result<Value, json::Refusal>>,
    },
}

impl UpstreamResponse {
    /// Reads an answer: a refusal's `body` through [`json::read`], a 2xx `body` through
    /// [`json::check_estimated`]; `request_id` (the raw header value) and the content type through the
    /// scrubber, each before being cut to length.
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
        let decoded = if status.is_success() {
            match json::check_estimated(body, estimate, scrubber) {
                Ok(json::Checked::Plain) => Text::Plain {
                    text: body.to_vec(),
                    tree: OnceLock::new(),
                },
                Ok(json::Checked::Tree(value)) => Text::Decoded(Ok(value)),
                Err(refusal) => Text::Decoded(Err(refusal)),
            }
        } else {
            Text::Decoded(json::read_estimated(body, estimate, scrubber))
        };
        UpstreamResponse {
            status,
            body_len: body.len(),
            body: decoded,
            request_id: request_id.map(|id| scrub_then_cut(scrubber, id, REQUEST_ID_MAX_CHARS)),
            content_type,
            headers,
            charge,
        }
    }

    /// The body decoded as JSON (bounded and scrubbed), or why it was not. Error decoders read
    /// refusals with this; a 2xx answer is better read with [`UpstreamResponse::read`].
    pub fn json(&self) -> Result<&Value, &json::Refusal> {
        match &self.body {
            Text::Decoded(decoded) => decoded.as_ref(),
            Text::Plain { text, tree } => tree.get_or_init(|| json::parse(text)).as_ref(),
        }
    }

    /// The body read as `T`: one of the backends' tolerant structs (see
    /// `backend::tolerant::typed`), whose strings borrow from the answer where they can.
    pub fn read<'a, T: Deserialize<'a>>(&'a self) -> Result<T, json::Refusal> {
        match &self.body {
            Text::Plain { text, .. } => json::parse(text),
            Text::Decoded(Ok(value)) => {
                T::deserialize(value).map_err(|e| json::Refusal::Malformed(e.to_string()))
            }
            Text::Decoded(Err(refusal)) => Err(refusal.clone()),
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

    /// Turns a non-2xx answer into an error. Read the body through `response.json()` only: it has
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
    readable(&response, name)?;
    let (status, upstream) = (response.status.as_u16(), response.context());
    let value = match response.body {
        Text::Decoded(decoded) => decoded,
        Text::Plain { text, tree } => tree.into_inner().unwrap_or_else(|| json::parse(&text)),
    };
    value
        .map(|value| Parsed {
            value,
            _charge: response.charge,
        })
        .map_err(|refusal| refused(name, status, upstream, refusal))
}

/// The body of a successful answer read as `T` (a backend's tolerant struct), or an error that
/// explains what came instead: the same errors, in the same words, as [`json_body`]. What `T`
/// borrows, it borrows from `response`, which holds the answer's share of the process's parse
/// budget: the backend keeps it until it has turned `T` into its result.
pub(crate) fn typed_body<'a, T: Deserialize<'a>>(
    response: &'a UpstreamResponse,
    name: &str,
) -> Result<T, Error> {
    readable(response, name)?;
    response
        .read()
        .map_err(|refusal| refused(name, response.status.as_u16(), response.context(), refusal))
}

/// Refuses an empty body and one declared as something else than JSON.
fn readable(response: &UpstreamResponse, name: &str) -> Result<(), Error> {
    let bad = |what: String| {
        Error::upstream_failure(
            format!("{name} answered {} with {what}", response.status.as_u16()),
            response.context(),
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
    Ok(())
}

fn refused(name: &str, status: u16, upstream: UpstreamContext, refusal: json::Refusal) -> Error {
    Error::upstream_failure(format!("{name} answered {status} with {refusal}"), upstream)
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
        assert_eq!(r.json().unwrap()["error"]["message"], "bad key [redacted]");
    }

    /// A 2xx answer is read into typed structs from its text only when scrubbing could change
    /// nothing: an all-digit secret echoed as a number in exponent form is found by no raw
    /// search, so such an answer is decoded and scrubbed first, and typed reads see the scrub.
    #[test]
    fn a_success_echoing_a_numeric_secret_in_exponent_form_is_scrubbed_before_typed_reads() {
        #[derive(Deserialize)]
        struct Echo {
            loc: Vec<Value>,
        }
        let s = Scrubber::new(vec!["98765432".into()]);
        let body = br#"{"loc": ["body", 9.8765432e7], "ok": 12}"#;
        assert!(!s.found_in(body));
        let r = UpstreamResponse::new(StatusCode::OK, HeaderMap::new(), body, None, &s);
        assert!(matches!(r.body, Text::Decoded(Ok(_))), "{:?}", r.body);
        let echo: Echo = typed_body(&r, "upstream").unwrap();
        assert_eq!(echo.loc[1], "[redacted]");
        let value = json_body(r, "upstream").unwrap();
        assert_eq!(value["loc"][1], "[redacted]");
        assert_eq!(value["ok"], 12);
    }
}
