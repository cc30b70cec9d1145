//! Stripe: payment links over Stripe's form-encoded REST API (`/v1/...`).
//!
//! Facts this backend relies on (Stripe's OpenAPI, version [`DEFAULT_API_VERSION`]): auth is
//! `Authorization: Bearer sk_...|rk_...` and the API version is pinned with `Stripe-Version`;
//! bodies are bracket-nested forms (see [`form`]); a payment link sells *prices*, a product
//! stands for its `default_price`; a link has no name, description or amount of its own, so the
//! name and description travel in reserved metadata keys and the total is summed from the line
//! items; a create carries an `Idempotency-Key`, which Stripe honours for 24 hours — replaying the
//! first answer, a 500 included — so a create is retried only with the same key.
//! Answers are read tolerantly (see [`super::tolerant`]).
//!
//! The files, by job: `request` (host, version, headers, the create's form and the listings'
//! queries), [`form`] (the bracket form encoding), `calls` (the [`Backend`](super::Backend)
//! implementation: which request for which method, price resolution, what a failed create lets
//! the caller do), `parse` (answers as our model) and `errors` (Stripe's error shapes). This file
//! only re-exports.

mod calls;
mod errors;
pub(crate) mod form;
mod parse;
mod request;

pub(crate) use calls::StripeBackend;
pub use errors::{StripeErrors, our_field};
pub use parse::{apply_line_items, line_item_from_stripe, link_from_stripe, product_from_stripe};
pub(crate) use request::{DEFAULT_API_VERSION, DEFAULT_BASE_URL, check_version};
