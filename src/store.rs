//! The shared store: state that replicas of the HTTP server share through Redis (or Valkey),
//! chosen with `--store redis://…` (`PAYLINK_STORE`). Without it (`--store memory`, the default)
//! each process keeps that state itself, as stdio and a single server do.
//!
//! This module owns the connection and the key layout; the data's owners own their key
//! families (their keys, values and Lua scripts) and build on [`Store`]:
//!
//! | family | owner | what |
//! | --- | --- | --- |
//! | `idem` | `idempotency::shared` | idempotency keys: claims with a lease, outcomes |
//! | `rate` | `transport::http::limits` | the abuse limits' request counts |
//! | `sandbox` | `backend::sandbox::shared` | the sandbox's links and their byte budgets |
//! | `ledger` | `spend::shared` | the daily spend budgets' reservations |
//!
//! # Key layout
//!
//! Every key starts with [`PREFIX`] (`paylink:v1:`), then its family. A tenant's keys carry its
//! scope in braces (a Redis Cluster hash tag: one tenant's keys in one family share a slot). A
//! scope is a SHA-256 of the caller's key and target (see `tenant::Tenant::scope`), never a key
//! or token. Every key expires, and every value is bounded:
//!
//! | key | type | holds | expires |
//! | --- | --- | --- | --- |
//! | `paylink:v1:idem:{S}:e:<id>` | hash | one idempotency key's entry: arguments hash, state, reference, lease, created link | 24 h after its claim |
//! | `paylink:v1:idem:{S}:index` | sorted set | the tenant's entries by claim time | 24 h after the last claim |
//! | `paylink:v1:idem:{S}:book` | hash | bytes charged per entry and in all | 24 h after the last claim |
//! | `paylink:v1:rate:<limit>:<who>` | string | requests counted in the current window | with the window (60 s) |
//! | `paylink:v1:sandbox:{S}:links` | hash | the tenant's sandbox links as JSON | 24 h after its last write |
//! | `paylink:v1:sandbox:{S}:order` | sorted set | the links by creation | as `links` |
//! | `paylink:v1:sandbox:pool` | hash | bytes per sandbox tenant and in all | 24 h after the last write |
//! | `paylink:v1:sandbox:pool:expiry` | sorted set | when each tenant's links expire | as `pool` |
//! | `paylink:v1:ledger:{S}:day:<CUR>` | sorted set | a tenant's capped creates in one currency, scored by when each leaves the 24-hour window | with its newest entry |
//!
//! (`<id>` is a SHA-256 of the tenant and the caller's idempotency key; `<who>` is a tenant's
//! scope or a client address.)
//!
//! # Adding a family
//!
//! A new kind of shared data (a spend ledger, say) is one file in its owner's module: a
//! [`Family`] constant (`Family::new("ledger")`) that names its keys, its Lua scripts as
//! `static` [`Script`]s (each with the operation name it is counted under in `/metrics`), and
//! typed functions that call [`Store::invoke`]. Nothing here changes but the table above. Keep a
//! tenant's keys under [`Family::tenant_key`] so one script can touch them together, give every
//! key a TTL in the same script that writes it, bound every value, and make every script safe
//! to run twice: after a dropped connection the store sends it once more (see [`Store`]). (The
//! rate count is the one exception, and errs by one request against the caller.) The docs for
//! operators, docs/replicas.md, hold the same tables.
//!
//! # Faults
//!
//! Every operation has a deadline (`--store-timeout-ms`) and is counted in `/metrics`
//! (`paylink_store_operations_total{op,outcome}`, `paylink_store_operation_duration_seconds`).
//! A failure is a [`StoreError`]; what it means is the caller's decision: writes are refused
//! (`unavailable`, retry-safe) before anything is sent upstream, the abuse limits fail open.

mod client;
mod keys;
mod url;

pub(crate) use client::{DEFAULT_TIMEOUT, Script, Store, StoreError};
pub(crate) use keys::{Family, safe_scope};
pub(crate) use url::{StoreChoice, choose};
