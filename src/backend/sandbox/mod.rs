//! The embedded sandbox: behaves like Stream, in memory, with no network and no key.
//!
//! It enforces what Stream enforces (products must exist, one-time and recurring products cannot
//! be mixed, every product needs a price in the link's currency, exact totals, statuses, limits)
//! so that what works here works on Stream. One [`SandboxBackend`] is one tenant's data; it
//! disappears with the tenant.
//!
//! # Memory
//!
//! The sandbox is for trying things out, and over HTTP anyone with any token is a tenant, so what
//! it holds is bounded four ways ([`SandboxLimits`]): links per tenant, bytes per tenant, bytes
//! for all tenants of the process together ([`SandboxPool`]), and, over HTTP, bytes for all the
//! tenants one client address brought (a tenant counts against the address that brought its
//! token first), so that one address cannot fill the pool for everyone. A link is charged what it
//! really holds (`store::stored_size`): every string's heap allocation as the allocator rounds it, plus
//! the fixed size of the link, its line items, and each metadata entry's share of the map —
//! never an estimate from character counts that a hostile input could beat. A create past a
//! budget is refused and nothing is stored; a full process budget refuses new links for every
//! tenant and never removes anyone's links to make room; an address past its share is refused its
//! own new links, and nobody else's. Bytes return to the pool when a tenant
//! is dropped (evicted or idle, see the tenant cache).
//!
//! With a shared store (`--store redis://...`) a tenant's links live in Redis instead
//! ([`SharedSandbox`]), with the same bounds, so that every replica sees them.
//!
//! The files, by job: `catalog` (the seeded products and coupons), `pricing` (a create's lines
//! and totals, for its preview and for the link), `store` (a tenant's links and their byte
//! accounting, the shared pool), `calls` (the [`Backend`](super::Backend) implementation) and
//! `shared` (the same in Redis); `tests` drives the backend through that trait. This file only
//! re-exports.

mod calls;
mod catalog;
mod pricing;
mod shared;
mod store;
#[cfg(test)]
mod tests;

pub(crate) use calls::SandboxBackend;
pub(crate) use catalog::coupon_summary;
pub(crate) use shared::SharedSandbox;
pub(crate) use store::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_CLIENT_BYTES, DEFAULT_MAX_LINKS, DEFAULT_MAX_TENANT_BYTES,
    SandboxLimits, SandboxPool,
};
