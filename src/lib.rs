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

pub mod backend;
pub mod config;
pub mod domain;
pub mod error;
pub mod healthcheck;
pub mod idempotency;
pub mod model;
pub mod oauth;
pub mod observability;
pub mod secret;
pub mod server;
pub mod spend;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub mod tools;
pub mod transport;
pub mod ui;
pub mod upstream;

pub use error::{Error, Result};
