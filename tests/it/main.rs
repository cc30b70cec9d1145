//! The integration tests of paylink-mcp: one test crate (one binary to build and link), run by
//! `cargo test`. Run one module with `cargo test --test it MODULE::`, e.g.
//! `cargo test --test it contract::`.
//!
//! Every test drives the real binary as a client does (over stdio or HTTP, see [`harness`]),
//! against the embedded sandbox or a mock of an upstream on 127.0.0.1 ([`mocks`]). The exceptions
//! call pure library functions on purpose: the upstream answer parsers and domain parsers in
//! [`properties`], the JSON reader's memory bound in [`parse_budget`], and the source-tree checks of
//! [`architecture`].

mod harness;
mod mocks;

/// The import graph and sizes of `src/`.
mod architecture;
/// The operator's hard limits on creates: spend caps per link and per day, allowed products.
mod caps;
/// Confirmation of writes by a human: elicitation, InputRequired, previews, refusals.
mod confirm;
/// What the Dockerfile relies on, without Docker.
mod container;
/// The same behaviour tests on the sandbox, the Stream mock and the Stripe mock.
mod contract;
/// The deployment files of `deploy/` against the binary.
mod deploy;
/// The documentation's links and the README's size.
mod docs;
/// `paylink-mcp healthcheck`, the container probe.
mod healthcheck;
/// Hostile or broken upstream answers, through the binary.
mod hostile_upstream;
/// The HTTP server under attack, with small limits.
mod http_attacks;
/// The attacks of the second hardening review: memory without a key, the total connection cap,
/// slow readers, shared budgets.
mod http_attacks_2;
/// Bounded memory over HTTP.
mod http_bounds;
/// Cancellation over HTTP.
mod http_cancellation;
/// Listener and operator-mode hardening.
mod http_hardening;
/// Stripe callers over HTTP.
mod http_stripe;
/// Tenants over HTTP: isolation, limits, operator mode, per-tenant idempotency.
mod http_tenants;
/// `paylink-mcp http` as a client sees it.
mod http_transport;
/// Smoke tests through the official MCP Inspector.
mod inspector;
/// OAuth mode against a real authorization server (oidc-provider).
mod oauth;
/// Metrics, the audit log, JSON logs.
mod observability;
/// The memory bound of decoding an upstream answer, measured by a counting allocator.
mod parse_budget;
/// Property tests: arbitrary tool arguments through the binary, arbitrary upstream answers to the
/// parsers.
mod properties;
/// Retries, unknown outcomes and idempotency against the Stream mock.
mod reliability;
/// Two replicas sharing one Redis: idempotency, limits, sandbox data and faults across them.
mod replicas;
/// Tool definitions, snapshotted.
mod schemas;
/// The server over stdio on the sandbox: tools/list, round trips, validation, stdout hygiene.
mod stdio;
/// The shared store (`--store redis://...`) of one server, against a real redis-server.
mod store_redis;
/// The Stream backend against its mock: requests sent, answers read, failures, reliability.
mod stream;
/// The Stripe backend against its mock: forms, idempotency keys, refusals, failures.
mod stripe;
/// The link card (MCP Apps): the resource as clients see it, and the card in a real browser.
mod ui_card;
