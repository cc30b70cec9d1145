//! The store's entries: what each one holds ([`Slot`]: in flight, created, unknown), what a
//! finished create left behind ([`Outcome`]), each tenant's share ([`Book`]), the age indexes
//! that make expiry and eviction O(log n), and the index of tenants by the share of the store
//! they hold, which says whose entry a store-wide bound evicts.
//!
//! It keeps the maps and counters consistent with each other; it must not decide when to
//! evict or refuse (see `store`), only how.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
pub(crate) enum Outcome {
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
    /// Its key in [`Inner::by_share`], as last indexed.
    pub share: u128,
}

/// Every entry of the store, its age indexes (store-wide and per tenant) and its counters.
pub(super) struct Inner {
    pub entries: HashMap<Id, Entry>,
    /// Every created and unknown entry, oldest first: for expiry.
    pub finished: BTreeMap<Age, Id>,
    pub tenants: HashMap<Arc<str>, Book>,
    /// Every tenant by the share of the store it holds (see [`Inner::share_of`]), largest last:
    /// a store-wide bound evicts from the largest holder first.
    by_share: BTreeSet<(u128, Arc<str>)>,
    /// The store's bounds in entries and bytes, which shares are fractions of.
    scale: (u128, u128),
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
    /// An empty store whose shares are counted against `max_entries` and `max_bytes`.
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Inner {
            entries: HashMap::new(),
            finished: BTreeMap::new(),
            tenants: HashMap::new(),
            by_share: BTreeSet::new(),
            scale: (max_entries.max(1) as u128, max_bytes.max(1) as u128),
            bytes: 0,
            in_flight: 0,
            unknown: 0,
            seq: 0,
        }
    }

    /// A tenant's share of the store: the larger of its fractions of the store's entries and
    /// bytes, on a common denominator (entries x max_bytes or bytes x max_entries).
    fn share_of(&self, book: &Book) -> u128 {
        let (max_entries, max_bytes) = self.scale;
        (book.entries as u128 * max_bytes).max(book.bytes as u128 * max_entries)
    }

    /// Indexes `tenant` again after its book changed (or drops it from the index when it has no
    /// book any more). O(log n).
    pub(super) fn rerank(&mut self, tenant: &Arc<str>) {
        let Some(book) = self.tenants.get(tenant) else {
            return;
        };
        let share = self.share_of(book);
        let before = book.share;
        self.by_share.remove(&(before, tenant.clone()));
        self.by_share.insert((share, tenant.clone()));
        if let Some(book) = self.tenants.get_mut(tenant) {
            book.share = share;
        }
    }

    /// Checks that every tenant is indexed once, at its current share.
    #[cfg(test)]
    pub(super) fn check_shares(&self) {
        assert_eq!(self.by_share.len(), self.tenants.len());
        for (tenant, book) in &self.tenants {
            assert_eq!(book.share, self.share_of(book), "{tenant}");
            assert!(self.by_share.contains(&(book.share, tenant.clone())));
        }
    }

    /// The oldest finished entry of the tenant holding the largest share of the store that has
    /// one (a tenant whose entries are all in flight has none to give).
    pub(super) fn oldest_finished_of_largest(&self) -> Option<Id> {
        self.by_share
            .iter()
            .rev()
            .find_map(|(_, tenant)| self.oldest_finished_of(tenant))
    }

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
        let share = self.tenants.get(&entry.tenant).map(|b| b.share);
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
            if let Some(share) = share {
                self.by_share.remove(&(share, entry.tenant.clone()));
            }
        } else {
            self.rerank(&entry.tenant);
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
