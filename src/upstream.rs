//! The one HTTP client layer every REST backend (Stream, Stripe) uses: connection pools, auth
//! headers marked sensitive, timeouts, the retry policy, a capped body read, and scrubbing of
//! secrets from anything an upstream echoes back.
//!
//! Every answer is decoded in one place ([`json::read`], called by [`UpstreamResponse::new`]):
//! bounded in memory before decoding, then scrubbed of the tenant's key after decoding (see
//! [`scrub`]). Backends read answers only through [`UpstreamResponse::json`], never raw bytes.
//!
//! A backend only says what to send ([`UpstreamRequest`]) and how to read an error answer (its
//! [`ErrorDecoder`]); this module decides whether and when to try again. It must never retry a
//! write that may have reached the upstream unless the backend marked it idempotent
//! ([`RetryMode::IdempotentWrite`], Stripe's `Idempotency-Key`).
//!
//! Every answer and every retry is reported to [`crate::observability`], which puts the status,
//! request id and retry count on the current tool call's log line and metrics.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::error::{Error, UpstreamContext};

pub mod json;
pub mod scrub;

pub use scrub::Scrubber;
use scrub::scrub_then_cut;

/// Request ids longer than this (in characters) are cut, after scrubbing.
pub const REQUEST_ID_MAX_CHARS: usize = 200;

/// Content types are quoted in messages up to this many characters, after scrubbing.
const CONTENT_TYPE_MAX_CHARS: usize = 60;

/// Answers larger than this are cut off and reported, not buffered.
pub const DEFAULT_BODY_CAP: usize = 4 * 1024 * 1024;

/// Timeouts and retries, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    /// One attempt's timeout.
    pub attempt_timeout: Duration,
    /// The whole call's deadline, retries and waits included.
    pub deadline: Duration,
    pub max_retries: u32,
    /// First backoff step; doubles each retry, with full jitter.
    pub backoff_base: Duration,
    pub body_cap: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(15),
            deadline: Duration::from_secs(30),
            max_retries: 2,
            backoff_base: Duration::from_millis(200),
            body_cap: DEFAULT_BODY_CAP,
        }
    }
}

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
pub enum Body {
    None,
    Json(Bytes),
    Form(Bytes),
}

/// What a backend asks for.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Path and query, starting with `/`; ids in it are already validated as path-safe.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Body,
    pub retry: RetryMode,
}

/// An answer, body read in full (under the cap) and decoded. Every string in it that came from
/// the upstream has been scrubbed of the tenant's key, before any cut.
#[derive(Debug, Clone)]
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
            json: json::read(body, scrubber),
            request_id: request_id.map(|id| scrub_then_cut(scrubber, id, REQUEST_ID_MAX_CHARS)),
            content_type,
            headers,
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

/// A connection pool to one base URL, shared by every tenant of that URL.
pub struct UpstreamClient {
    /// Built on first use: building it loads the machine's root certificates (milliseconds of
    /// file reading and parsing), which a server that starts for every Claude Desktop launch
    /// should not pay before its first upstream call.
    http: OnceLock<Result<reqwest::Client, String>>,
    base: String,
    settings: UpstreamSettings,
}

/// One failed attempt, before it becomes an [`Error`].
enum AttemptError {
    /// Nothing reached the upstream.
    Connect(String),
    /// Sent (or maybe sent) but no complete answer: timeout, reset.
    Transport { timeout: bool, message: String },
    /// The answer was larger than the cap.
    TooLarge,
}

impl UpstreamClient {
    /// Cheap and infallible: the HTTP client itself is built on first use (see `http`).
    pub fn new(base: &str, settings: UpstreamSettings) -> Self {
        UpstreamClient {
            http: OnceLock::new(),
            base: base.trim_end_matches('/').to_owned(),
            settings,
        }
    }

    fn http(&self) -> Result<&reqwest::Client, Error> {
        self.http
            .get_or_init(|| {
                install_crypto_provider();
                reqwest::Client::builder()
                    .connect_timeout(self.settings.connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(90))
                    .tcp_nodelay(true)
                    .user_agent(concat!("paylink-mcp/", env!("CARGO_PKG_VERSION")))
                    // Never follow a redirect: it could carry the auth header to another host.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| Error::internal(e.clone()))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// Sends `request`, retrying as its [`RetryMode`] allows, within the deadline. A 2xx answer
    /// is returned; anything else becomes an [`Error`] via `decoder`.
    pub async fn send(
        &self,
        request: &UpstreamRequest,
        decoder: &dyn ErrorDecoder,
        scrubber: &Scrubber,
    ) -> Result<UpstreamResponse, Error> {
        let http = self.http()?;
        let started = Instant::now();
        let deadline = started + self.settings.deadline;
        let name = decoder.upstream_name();
        let mut attempt: u32 = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.deadline_error(name, request.retry));
            }
            let outcome = tokio::time::timeout(
                remaining,
                self.attempt(http, request, decoder, scrubber, remaining),
            )
            .await
            .unwrap_or_else(|_| {
                Err(AttemptError::Transport {
                    timeout: true,
                    message: "the call's deadline passed".into(),
                })
            });
            if let Ok(response) = &outcome {
                crate::observability::record::upstream_answer(
                    response.status.as_u16(),
                    response.request_id.as_deref(),
                );
            }
            let can_retry = attempt < self.settings.max_retries;
            let (retry, wait_hint, error) = match outcome {
                Ok(response) if response.status.is_success() => return Ok(response),
                Ok(response) => {
                    let error = decoder.decode_error(&response, request.retry);
                    let retry =
                        can_retry && should_retry_response(&response, request.retry, decoder);
                    (retry, retry_after(&response.headers), error)
                }
                Err(AttemptError::Connect(message)) => (
                    can_retry,
                    None,
                    Error::upstream_retryable(
                        format!(
                            "could not connect to {name}: {message}; nothing was sent, retrying is safe"
                        ),
                        UpstreamContext::default(),
                    ),
                ),
                Err(AttemptError::Transport { timeout, message }) => {
                    let retry = can_retry && request.retry != RetryMode::UnsafeWrite;
                    (
                        retry,
                        None,
                        self.transport_error(name, request.retry, timeout, &message),
                    )
                }
                Err(AttemptError::TooLarge) => {
                    let message = format!(
                        "{name}'s answer was larger than {} bytes and was not read",
                        self.settings.body_cap
                    );
                    // A write was answered, so it may well have happened.
                    let error = if request.retry == RetryMode::Read {
                        Error::upstream_retryable(message, UpstreamContext::default())
                    } else {
                        Error::outcome_unknown(
                            format!("{message}; the write may or may not have happened"),
                            UpstreamContext::default(),
                        )
                    };
                    (false, None, error)
                }
            };
            if !retry {
                return Err(error);
            }
            let wait =
                wait_hint.unwrap_or_else(|| full_jitter(self.settings.backoff_base, attempt));
            if Instant::now() + wait >= deadline {
                // The upstream asked for a wait we cannot afford: answer now, honestly.
                return Err(error);
            }
            tracing::debug!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying upstream request"
            );
            crate::observability::record::upstream_retry();
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        http: &reqwest::Client,
        request: &UpstreamRequest,
        decoder: &dyn ErrorDecoder,
        scrubber: &Scrubber,
        remaining: Duration,
    ) -> Result<UpstreamResponse, AttemptError> {
        let url = format!("{}{}", self.base, request.path_and_query);
        let mut builder = http
            .request(request.method.clone(), &url)
            .headers(request.headers.clone())
            .timeout(self.settings.attempt_timeout.min(remaining));
        builder = match &request.body {
            Body::None => builder,
            Body::Json(b) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            Body::Form(b) => builder
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(b.clone()),
        };
        let mut response = builder.send().await.map_err(|e| classify(&e, scrubber))?;
        let status = response.status();
        let headers = response.headers().clone();
        let declared = response.content_length();
        if declared.is_some_and(|len| len > self.settings.body_cap as u64) {
            return Err(AttemptError::TooLarge);
        }
        // Sized once when the length is declared: growing by doubling would hold up to twice
        // the body at the end.
        let mut body = Vec::with_capacity(declared.map_or(0, |len| len as usize));
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, scrubber))? {
            if body.len() + chunk.len() > self.settings.body_cap {
                return Err(AttemptError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let request_id = headers
            .get(decoder.request_id_header())
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(UpstreamResponse::new(
            status,
            headers,
            &body,
            request_id.as_deref(),
            scrubber,
        ))
    }

    fn deadline_error(&self, name: &str, mode: RetryMode) -> Error {
        self.transport_error(name, mode, true, "the call's deadline passed")
    }

    fn transport_error(&self, name: &str, mode: RetryMode, timeout: bool, message: &str) -> Error {
        let what = if timeout {
            "did not answer in time"
        } else {
            "failed mid-request"
        };
        match mode {
            RetryMode::UnsafeWrite => Error::outcome_unknown(
                format!(
                    "{name} {what} ({message}); the link may or may not have been created. Do not create it again blindly: look for it first"
                ),
                UpstreamContext::default(),
            ),
            // Our retries reused the key; whether the *caller* can retry safely depends on
            // whether the key outlives this call, which only the backend knows. The cautious
            // answer here; a backend whose key came from the caller turns it into a retry-safe
            // one (see stripe::create_failure).
            RetryMode::IdempotentWrite => Error::outcome_unknown(
                format!("{name} {what} ({message}); the write may or may not have happened"),
                UpstreamContext::default(),
            ),
            RetryMode::Read => Error::upstream_retryable(
                format!("{name} {what} ({message}); retrying is safe"),
                UpstreamContext::default(),
            ),
        }
    }
}

fn classify(e: &reqwest::Error, scrubber: &Scrubber) -> AttemptError {
    // reqwest's messages hold the URL (never a key: keys travel in headers), scrub anyway.
    let message = scrubber.scrub(&e.without_url_ref().to_string());
    if e.is_connect() {
        AttemptError::Connect(message)
    } else {
        AttemptError::Transport {
            timeout: e.is_timeout(),
            message,
        }
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), "<upstream>");
        }
        // reqwest nests the cause; include it, it says "connection refused" or "reset".
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

fn should_retry_response(
    response: &UpstreamResponse,
    mode: RetryMode,
    decoder: &dyn ErrorDecoder,
) -> bool {
    match mode {
        RetryMode::UnsafeWrite => false,
        RetryMode::IdempotentWrite => decoder.upstream_says_retry(response).unwrap_or(false),
        RetryMode::Read => decoder
            .upstream_says_retry(response)
            .unwrap_or_else(|| matches!(response.status.as_u16(), 429 | 502 | 503 | 504)),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by our upstreams), capped at 60 s.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(60.0)))
}

/// Exponential backoff with full jitter: uniform in `[0, base * 2^attempt]`.
fn full_jitter(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << attempt.min(16));
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(attempt));
    let fraction = (hasher.finish() % 10_000) as f64 / 10_000.0;
    cap.mul_f64(fraction)
}

/// Makes ring the process's TLS crypto provider (reqwest is built without one): the same TLS as
/// aws-lc-rs for our purposes, in a much smaller binary. Safe to call more than once; a provider
/// already installed is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A header value holding a secret: marked sensitive so that it never appears in debug output.
pub fn sensitive_header(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        Error::auth(
            "the API key contains characters that cannot be sent in an HTTP header",
            UpstreamContext::default(),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Builds a header map from static names.
pub fn headers<const N: usize>(pairs: [(&'static str, HeaderValue); N]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(N);
    for (name, value) in pairs {
        map.insert(HeaderName::from_static(name), value);
    }
    map
}

/// The shared pools, one per base URL, so that tenants of one upstream reuse connections (no TLS
/// handshake per tenant).
#[derive(Default)]
pub struct UpstreamPools {
    settings: UpstreamSettings,
    pools: Mutex<HashMap<String, Arc<UpstreamClient>>>,
}

impl UpstreamPools {
    pub fn new(settings: UpstreamSettings) -> Self {
        UpstreamPools {
            settings,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pool for `base`, created on first use.
    pub fn get(&self, base: &str) -> Arc<UpstreamClient> {
        let key = base.trim_end_matches('/').to_owned();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = pools.get(&key) {
            return client.clone();
        }
        let client = Arc::new(UpstreamClient::new(&key, self.settings));
        pools.insert(key, client.clone());
        client
    }
}

/// The JSON body of a successful answer, or an error that explains what came instead.
pub fn json_body(response: UpstreamResponse, name: &str) -> Result<serde_json::Value, Error> {
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
    response.json.map_err(|refusal| {
        Error::upstream_failure(format!("{name} answered {status} with {refusal}"), upstream)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retry_after_is_parsed_and_capped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", HeaderValue::from_static("9999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn jitter_stays_within_the_cap() {
        for attempt in 0..5 {
            let w = full_jitter(Duration::from_millis(100), attempt);
            assert!(w <= Duration::from_millis(100) * (1 << attempt));
        }
    }

    #[test]
    fn sensitive_headers_are_marked() {
        assert!(sensitive_header("abc").unwrap().is_sensitive());
        assert!(sensitive_header("a\nb").is_err());
    }
}
