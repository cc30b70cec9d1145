//! The store's entries: what each one holds ([`Slot`]: in flight, created, unknown), what a
//! finished create left behind ([`Outcome`]), each tenant's share ([`Book`]), and the age
//! indexes that make expiry and eviction O(log n).
//!
//! It keeps the maps and counters consistent with each other; it must not decide when to
//! evict or refuse (see `store`), only how.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::limits::TENANT_OVERHEAD;
use crate::error::Error;
use crate::observability::metrics;
use crate::observability::metrics::IdempotencyStats;

/// What a finished create left behind.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The link was created: its JSON.
    Created(Value),
    /// Nobody knows; the reference lets a repeat look for it. `sent`: the digest of what the
    /// write was sent as, once confirmed and counted against the caps (see
    /// [`super::Ticket::sending`]): an upstream that deduplicates creates may be sent exactly
    /// that again without asking or counting anew.
    Unknown {
        reference: String,
        sent: Option<[u8; 32]>,
    },
    /// Nothing was created; a repeat runs again.
    Failed(Error),
}

pub(super) type Shared = watch::Receiver<Option<Outcome>>;
pub(super) type Id = [u8; 32];
/// When an entry was claimed, then a sequence number: a total order, oldest first.
pub(super) type Age = (Instant, u64);

pub(super) enum Slot {
    InFlight(Shared),
    /// The created link as JSON text: compact, and exactly the bytes it is charged.
    Created(Box<str>),
    /// The reference, and the digest of what was sent (see [`Outcome::Unknown`]); the digest
    /// is fixed-size and within [`super::ENTRY_OVERHEAD`].
    Unknown(String, Option<[u8; 32]>),
}

pub(super) struct Entry {
    pub args_hash: [u8; 32],
    /// The tenant's scope (a hash, never a key), for the per-tenant bounds.
    pub tenant: Arc<str>,
    pub age: Age,
    /// What this entry is charged, overhead included.
    pub bytes: usize,
    pub slot: Slot,
}

/// One tenant's share of the store.
pub(super) struct Book {
    pub entries: usize,
    /// Charged to this tenant: its entries and [`TENANT_OVERHEAD`].
    pub bytes: usize,
    pub in_flight: usize,
    /// Its created and unknown entries, oldest first.
    pub finished: BTreeMap<Age, Id>,
    /// Its unknown entries, oldest first.
    pub unknown: BTreeMap<Age, Id>,
}

/// Every entry of the store, its age indexes (store-wide and per tenant) and its counters.
#[derive(Default)]
pub(super) struct Inner {
    pub entries: HashMap<Id, Entry>,
    /// Every created and unknown entry, oldest first: for expiry and the store-wide bounds.
    pub finished: BTreeMap<Age, Id>,
    pub tenants: HashMap<Arc<str>, Book>,
    pub bytes: usize,
    pub in_flight: usize,
    pub unknown: usize,
    seq: u64,
}

/// The first characters of a tenant's scope (itself a hash), enough to tell tenants apart in a log.
pub(super) fn short(scope: &str) -> &str {
    scope.get(..12).unwrap_or(scope)
}

impl Inner {
    pub(super) fn next_age(&mut self, now: Instant) -> Age {
        self.seq += 1;
        (now, self.seq)
    }

    /// Unlinks an entry from every map and counter. O(log n).
    pub(super) fn remove(&mut self, id: &Id) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        let in_flight = matches!(entry.slot, Slot::InFlight(_));
        let unknown = matches!(entry.slot, Slot::Unknown(..));
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        if in_flight {
            self.in_flight = self.in_flight.saturating_sub(1);
        } else {
            self.finished.remove(&entry.age);
        }
        if unknown {
            self.unknown = self.unknown.saturating_sub(1);
        }
        let mut gone = false;
        if let Some(book) = self.tenants.get_mut(&entry.tenant) {
            book.entries = book.entries.saturating_sub(1);
            book.bytes = book.bytes.saturating_sub(entry.bytes);
            if in_flight {
                book.in_flight = book.in_flight.saturating_sub(1);
            } else {
                book.finished.remove(&entry.age);
            }
            if unknown {
                book.unknown.remove(&entry.age);
            }
            gone = book.entries == 0;
        }
        if gone {
            self.tenants.remove(&entry.tenant);
            self.bytes = self.bytes.saturating_sub(TENANT_OVERHEAD);
        }
        Some(entry)
    }

    /// Drops a finished entry to make room, saying so when it was an unknown outcome.
    pub(super) fn evict(&mut self, id: &Id, bound: &'static str) {
        let Some(entry) = self.remove(id) else { return };
        match entry.slot {
            Slot::Unknown(reference, _) => {
                tracing::warn!(
                    bound,
                    reference = %reference,
                    scope = short(&entry.tenant),
                    "idempotency: dropped the oldest unknown outcome to stay within bounds; a repeat of its key will create without first looking for the link (search the upstream for this reference)"
                );
                metrics::idempotency_evicted("unknown");
            }
            _ => metrics::idempotency_evicted("created"),
        }
    }

    pub(super) fn oldest_finished(&self) -> Option<Id> {
        self.finished.first_key_value().map(|(_, id)| *id)
    }

    pub(super) fn oldest_finished_of(&self, tenant: &str) -> Option<Id> {
        self.tenants
            .get(tenant)?
            .finished
            .first_key_value()
            .map(|(_, id)| *id)
    }

    pub(super) fn oldest_unknown_of(&self, tenant: &str) -> Option<Id> {
        self.tenants
            .get(tenant)?
            .unknown
            .first_key_value()
            .map(|(_, id)| *id)
    }

    /// Removes finished entries older than `ttl`: only the expired ones and one more are looked at.
    pub(super) fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((age, id)) = self.finished.first_key_value().map(|(a, i)| (*a, *i)) {
            if now.duration_since(age.0) < ttl {
                break;
            }
            self.remove(&id);
        }
    }

    pub(super) fn stats(&self) -> IdempotencyStats {
        IdempotencyStats {
            entries: self.entries.len(),
            in_flight: self.in_flight,
            created: self
                .entries
                .len()
                .saturating_sub(self.in_flight + self.unknown),
            unknown: self.unknown,
            bytes: self.bytes,
            tenants: self.tenants.len(),
        }
    }
}
