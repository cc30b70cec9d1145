//! Stream (streampay.sa): payment links over Stream's JSON API v2.
//!
//! Facts this backend relies on: auth is `x-api-key: base64(key:secret)` (or a ready token), an
//! optional `x-branch-id` selects a branch; create is `POST /api/v2/payment_links` and answers the
//! detailed link; there is no line-item endpoint (items are the link's `items[]`); Stream has no
//! idempotency, so a create that may have reached it is never retried. Answers are parsed
//! tolerantly (every field optional, unknown fields ignored): see [`super::tolerant`].
//!
//! The files, by job: `request` (hosts, auth headers, the create body and query strings),
//! `calls` (the [`Backend`](super::Backend) implementation: which request for which method, and
//! the recovery of a create whose outcome is unknown), `parse` (answers read into tolerant
//! structs, then as our model) and
//! `errors` (Stream's error shapes). This file only re-exports.

mod calls;
mod errors;
mod parse;
mod request;

pub(crate) use calls::StreamBackend;
pub use errors::StreamErrors;
pub use parse::{
    CountedLink, ItemizedLink, StreamPage, StreamProduct, line_item_from_stream, link_from_stream,
    product_from_stream,
};
pub(crate) use request::{PRODUCTION_BASE_URL, STAGING_BASE_URL};
