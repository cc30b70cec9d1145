//! Server-side idempotency for `create_payment_link`.
//!
//! With an `idempotency_key`, a repeat of the same create (same tenant, same key, same
//! arguments) within 24 hours returns the first result without calling the upstream; the same key
//! with other arguments is refused (`idempotency_conflict`); concurrent duplicates wait for the
//! first call and share its outcome. When the first call's outcome was unknown, a repeat asks the
//! backend to look for the link by the first call's reference before creating anything.
//!
//! The keys are kept behind one trait, [`IdempotencyKeys`]: in this process ([`LocalKeys`] over
//! [`IdempotencyStore`], the default, described below), or in the store replicas share
//! ([`SharedKeys`], `--store redis://...`: claims with a lease, see `shared`). Either is separate
//! from the tenant cache (evicting an idle tenant must not forget its keys on Stream or Stripe).
//! Links of the in-memory sandbox live in this process and die with their tenant; entries made
//! against them are scoped to that data and forgotten with it ([`LocalData`]).
//!
//! # Bounds (this process's store; the shared store keeps the per-tenant ones, see `shared`)
//!
//! Every entry counts against every bound, whatever its state (in flight, created, unknown):
//! the store holds at most [`StoreLimits::max_entries`] entries and [`StoreLimits::max_bytes`]
//! bytes; one tenant at most [`StoreLimits::max_per_tenant`] entries and
//! [`StoreLimits::max_bytes_per_tenant`] bytes, of which at most
//! [`StoreLimits::max_unknown_per_tenant`] unknown outcomes and
//! [`StoreLimits::max_in_flight_per_tenant`] creates in flight. An entry is charged
//! [`ENTRY_OVERHEAD`] for its bookkeeping plus its payload: the created link as JSON text (kept
//! as text, so the charge is exactly what is held), or the reference of an unknown outcome.
//!
//! Room is made by dropping the oldest *finished* entry (created or unknown): the tenant's own for
//! a tenant bound; for a store bound, the oldest of the tenant holding the largest share of the
//! store (the larger of its fractions of the store's entries and bytes). Tenants at their own
//! caps can fill the store together (eight at 4 MiB fill 32 MiB), but then they flush their own
//! results, never those of a tenant holding less while they hold a finished entry: otherwise an
//! honest tenant's created result would go, and its retry on Stream create a second link. An
//! entry in flight is never dropped (its caller and any waiting twin need its outcome). So the
//! only refusal a new key can meet is about the caller's own concurrency: a tenant with
//! `max_in_flight_per_tenant` creates in flight is told to wait (`rate_limited`, retry_safe).
//! (The store itself refuses in the same way only if every one of its `max_entries` entries is in
//! flight, far above the HTTP server's limit on requests in flight.)
//!
//! That refusal is the tenant's own concurrency, never other keys', but it is a refusal of a new
//! key. Over HTTP the gate's per-tenant in-flight limit (`--max-concurrent-per-tenant`, 16)
//! refuses first: the HTTP server raises the store's cap to that limit when the limit is higher
//! than 64. Over stdio, or with that limit off (0), a tenant with 64 creates in flight at once
//! gets `rate_limited` (retry_safe, nothing sent) for the 65th.
//!
//! # Dropping an unknown outcome: the trade-off
//!
//! An unknown entry exists so that a repeat with its key looks for the link before creating it
//! again. Once dropped, a repeat of that key creates without looking: on Stream that is a second
//! link if the first attempt had in fact created one (on Stripe, Stripe's own `Idempotency-Key`,
//! derived from the same reference, still replays the first create). Keeping unknown outcomes
//! instead let a caller that cancels its own creates fill its quota with them and be refused every
//! new key for 24 hours. So a tenant keeps its newest `max_unknown_per_tenant` unknown outcomes;
//! each one dropped is logged (warn, with the reference to look for upstream) and counted
//! (`paylink_idempotency_evictions_total{kind="unknown"}`). A created result too large for the
//! byte budgets is kept as an unknown outcome rather than forgotten, so a repeat still looks first.
//!
//! Eviction and expiry cost O(log n): entries are indexed by age (claim time, then a sequence
//! number) in ordered maps, for the whole store and per tenant.
//!
//! The files: `keys` (the trait, and this process's store behind it), `limits` (the bounds and
//! charges), `entries` (the entries and their age indexes), `store` (claims, room, outcomes),
//! `local` (data that lives in this process) and `shared` (the keys in Redis). This file only
//! re-exports.

mod entries;
mod keys;
mod limits;
mod local;
mod shared;
mod store;
#[cfg(test)]
mod tests;

pub(crate) use entries::Outcome;
pub(crate) use keys::{Claimed, Hold, IdempotencyKeys, LocalKeys};
pub(crate) use limits::{KEY_TTL, StoreLimits};
pub(crate) use local::LocalData;
pub(crate) use shared::SharedKeys;
#[cfg(test)]
use store::{Claim, Ticket, wait};
pub(crate) use store::{IdempotencyStore, args_hash};
