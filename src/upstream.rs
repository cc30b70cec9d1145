//! The one HTTP client layer every REST backend (Stream, Stripe) uses: connection pools, auth
//! headers marked sensitive, timeouts, the retry policy, a capped body read, and scrubbing of
//! secrets from anything an upstream echoes back.
//!
//! Every answer is checked in one place ([`json::read`] and `json::check_estimated`, called by
//! [`UpstreamResponse::new`]): bounded in memory before decoding, per answer and for all answers
//! being read at once (`budget`), then scrubbed of the tenant's key after decoding (see
//! [`scrub`]). Backends read answers only through [`UpstreamResponse::json`] (refusals),
//! [`UpstreamResponse::read`] (typed) and [`json_body`], never raw bytes.
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
//! `retry` (when to try again), `budget` (the process's memory for reading answers),
//! `response` (the decoded answer and the [`ErrorDecoder`]),
//! [`json`] (the one bounded JSON reader) and [`scrub`] (the key scrubber).

mod budget;
mod client;
pub(crate) mod json;
mod request;
mod response;
mod retry;
pub(crate) mod scrub;

pub(crate) use client::{UpstreamClient, UpstreamPools, UpstreamSettings, install_crypto_provider};
pub use request::RetryMode;
pub(crate) use request::{Body, UpstreamRequest, sensitive_header};
pub use response::{ErrorDecoder, UpstreamResponse, json_body};
pub(crate) use response::{Parsed, typed_body};
pub(crate) use retry::retry_after;
pub use scrub::Scrubber;
