#![warn(unreachable_pub)]
//! # paylink-mcp
//!
//! A Model Context Protocol server that lets AI assistants create and inspect payment links on
//! Stream, Stripe, or an embedded sandbox.
//!
//! The modules read like the architecture, from the outside in:
//!
//! - [`startup`] and [`config`]: the command line, the environment, secrets; building the server.
//! - [`transport`]: stdio and streamable HTTP.
//! - [`oauth`]: OAuth mode's resource server (access tokens from the operator's issuer).
//! - [`server`]: the MCP handler; finds the caller's [`tenant`] and hands calls to [`tools`].
//! - [`tools`]: tool names, schemas, argument decoding and validation, result shaping.
//! - [`spend`]: the operator's spend caps and the tenants' rolling daily budgets.
//! - [`domain`]: values that can only exist valid (`Money`, `Quantity`, `ProductId`, ...).
//! - [`model`]: the normalized objects every backend returns.
//! - [`backend`]: the payments APIs behind one trait: sandbox, Stream, Stripe.
//! - [`store`]: state replicas share through Redis (idempotency, abuse limits, sandbox data).
//! - [`error`]: the one error type and the JSON envelope callers see.
//! - [`secret`]: keys that cannot be printed and are wiped on drop.
//! - [`ui`]: the MCP Apps link card, a `ui://` resource that hosts render for link results.
//! - [`healthcheck`]: the `healthcheck` subcommand, a container's probe of the HTTP server.
//! - [`observability`] and [`telemetry`]: the per-call span and log line, Prometheus metrics,
//!   the audit trail of writes; the log subscriber.

mod backend;
mod config;
mod domain;
mod error;
mod healthcheck;
mod idempotency;
mod model;
mod oauth;
mod observability;
mod secret;
mod server;
mod spend;
/// Start-up: what `main` runs.
pub mod startup;
mod store;
mod telemetry;
mod tenant;
mod tools;
mod transport;
mod ui;
mod upstream;

/// What the integration tests, property tests and fuzz targets call directly, beside the binary:
/// the upstream answers' parsers and error decoders, the tools' argument decoding, the domain
/// parsers and the JSON reader's memory bound. Not an API: it changes with the code it shows.
#[doc(hidden)]
pub mod testing {
    pub use crate::backend::BackendRules;
    pub use crate::backend::stream::{
        CountedLink, ItemizedLink, StreamErrors, StreamPage, StreamProduct, line_item_from_stream,
        link_from_stream, product_from_stream,
    };
    pub use crate::backend::stripe::{
        StripeErrors, apply_line_items, line_item_from_stripe, link_from_stripe, our_field,
        product_from_stripe,
    };
    pub use crate::domain::{CurrencyCode, Cursor, Money, PageBytes, RedirectUrl, ValidUntil};
    pub use crate::error::{Error, ErrorKind};
    pub use crate::model::BackendKind;
    pub use crate::tools::args::decode;
    pub use crate::tools::create::{CreatePaymentLinkArgs, refuse_unsupported};
    pub use crate::tools::lifecycle::{ListPaymentLinksArgs, UpdatePaymentLinkStatusArgs};
    pub use crate::tools::read::{GetPaymentLinkArgs, ListLineItemsArgs, ListProductsArgs};
    pub use crate::upstream::json::{MEMORY_BUDGET, Refusal, estimate, parse, read};
    pub use crate::upstream::{ErrorDecoder, RetryMode, Scrubber, UpstreamResponse, json_body};
}
