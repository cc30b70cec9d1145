//! The one HTTP client layer every REST backend (Stream, Stripe) uses: connection pools, auth
//! headers marked sensitive, timeouts, the retry policy, a capped body read, and scrubbing of
//! secrets from anything an upstream echoes back.
//!
//! Every answer is checked in one place ([`json::read`] and [`json::check`], called by
//! [`UpstreamResponse::new`]): bounded in memory before decoding, then scrubbed of the tenant's
//! key after decoding (see [`scrub`]). Backends read answers only through
//! [`UpstreamResponse::json`] (refusals) and [`UpstreamResponse::read`] (typed), never raw bytes.
//!
//! A backend only says what to send ([`UpstreamRequest`]) and how to read an error answer (its
//! [`ErrorDecoder`]); this module decides whether and when to try again. It must never retry a
//! write that may have reached the upstream unless the backend marked it idempotent
//! ([`RetryMode::IdempotentWrite`], Stripe's `Idempotency-Key`).
//!
//! Every answer and every retry is reported to [`crate::observability`], which puts the status,
//! request id and retry count on the current tool call's log line and metrics.
//!
//! The files: `request` (what to send), `client` (sending it, pools, the retry loop),
//! `retry` (when to try again), `response` (the decoded answer and the [`ErrorDecoder`]),
//! [`json`] (the one bounded JSON reader) and [`scrub`] (the key scrubber).

mod client;
pub mod json;
mod request;
mod response;
mod retry;
pub mod scrub;

pub use client::{
    DEFAULT_BODY_CAP, UpstreamClient, UpstreamPools, UpstreamSettings, install_crypto_provider,
};
pub use request::{Body, RetryMode, UpstreamRequest, headers, sensitive_header};
pub use response::{ErrorDecoder, REQUEST_ID_MAX_CHARS, UpstreamResponse, json_body, typed_body};
pub use retry::retry_after;
pub use scrub::Scrubber;
