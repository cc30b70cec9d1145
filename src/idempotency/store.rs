//! The idempotency store: claiming a key (run, replay, or wait for the twin in flight), making
//! room within the bounds, recording how a create ended, and forgetting a tenant's entries.
//!
//! It decides what a key's repeat gets and what is evicted; it must never evict an entry in
//! flight, nor call an upstream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::entries::{Book, Entry, Id, Inner, Outcome, Shared, Slot, short};
use super::limits::{
    ENTRY_OVERHEAD, KEY_TTL, REFERENCE_BYTES, SMALL_ENTRY, StoreLimits, TENANT_OVERHEAD,
};
use crate::error::{Error, UpstreamContext};
use crate::observability::metrics;
#[cfg(test)]
use crate::observability::metrics::IdempotencyStats;

/// The store.
pub(crate) struct IdempotencyStore {
    inner: Mutex<Inner>,
    pub(super) limits: StoreLimits,
    ttl: Duration,
}

/// What the caller should do.
pub(crate) enum Claim {
    /// Run the create; report the outcome through the ticket. `previous_reference` is set when
    /// an earlier attempt's outcome was unknown: look for that link first.
    Run(Ticket),
    /// Return this outcome, without any upstream call.
    Replay(Outcome),
    /// Another call with the same key is running: wait for its outcome.
    Wait(Shared),
}

/// The right and duty to report the outcome of one create. Dropped without reporting (the call
/// was cancelled), it records the outcome as unknown and wakes any waiters.
pub(crate) struct Ticket {
    store: Arc<IdempotencyStore>,
    id: Id,
    sender: Option<watch::Sender<Option<Outcome>>>,
    pub reference: String,
    pub previous_unknown: bool,
    /// What the earlier attempt with an unknown outcome was sent as, if it was confirmed and
    /// counted first (see [`Outcome::Unknown`]).
    pub previous_sent: Option<[u8; 32]>,
    /// What this attempt is sent as, for an unknown outcome (kept from the previous attempt
    /// until this one sends).
    sent: Option<[u8; 32]>,
}

fn entry_id(tenant: &str, key: &str) -> Id {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// The entry's id in hex: how the shared store names it (a hash of tenant and key, so no key a
/// caller chose appears in a store key).
pub(super) fn entry_hex(tenant: &str, key: &str) -> String {
    entry_id(tenant, key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The refusal of a key used again with other arguments.
pub(super) fn conflict() -> Error {
    Error::idempotency_conflict(
        "this idempotency_key was already used with different arguments in the last 24 hours; use a new key for a new link, or repeat the original arguments exactly",
    )
}

/// A stable digest of validated arguments.
pub(crate) fn args_hash(canonical: &str) -> [u8; 32] {
    Sha256::digest(canonical.as_bytes()).into()
}

fn busy(message: String) -> Error {
    Error::rate_limited(message, Some(1), UpstreamContext::default())
}

impl IdempotencyStore {
    pub(crate) fn new(limits: StoreLimits) -> Arc<Self> {
        Self::with_ttl(limits, KEY_TTL)
    }

    pub(crate) fn with_ttl(limits: StoreLimits, ttl: Duration) -> Arc<Self> {
        Arc::new(IdempotencyStore {
            inner: Mutex::new(Inner::new(
                limits.normalized().max_entries,
                limits.normalized().max_bytes,
            )),
            limits: limits.normalized(),
            ttl,
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below leaves the maps consistent before any call that could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's counts now.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> IdempotencyStats {
        self.lock().stats()
    }

    fn publish(inner: &Inner) {
        metrics::idempotency_store(&inner.stats());
    }

    /// Claims `key` for `tenant` with arguments hashing to `args`.
    pub(crate) fn claim(
        self: &Arc<Self>,
        tenant: &str,
        key: &str,
        args: [u8; 32],
        fresh_reference: impl FnOnce() -> String,
    ) -> Result<Claim, Error> {
        let id = entry_id(tenant, key);
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now, self.ttl);
        let claimed = self.claim_locked(&mut inner, tenant, id, args, now, fresh_reference);
        Self::publish(&inner);
        claimed
    }

    fn claim_locked(
        self: &Arc<Self>,
        inner: &mut Inner,
        tenant: &str,
        id: Id,
        args: [u8; 32],
        now: Instant,
        fresh_reference: impl FnOnce() -> String,
    ) -> Result<Claim, Error> {
        let mut previous_unknown = None;
        let mut previous_sent = None;
        if let Some(entry) = inner.entries.get(&id) {
            if entry.args_hash != args {
                return Err(conflict());
            }
            match &entry.slot {
                Slot::InFlight(rx) => return Ok(Claim::Wait(rx.clone())),
                Slot::Created(text) => return Ok(Claim::Replay(created(text))),
                Slot::Unknown(reference, sent) => {
                    previous_unknown = Some(reference.clone());
                    previous_sent = *sent;
                }
            }
        }
        // The one refusal a key can meet: this tenant's own creates in flight.
        let in_flight = inner.tenants.get(tenant).map_or(0, |b| b.in_flight);
        if in_flight >= self.limits.max_in_flight_per_tenant {
            return Err(busy(format!(
                "{in_flight} creates with an idempotency_key are already in flight for this caller; wait for one to finish, then call again"
            )));
        }
        if previous_unknown.is_some() {
            // The same key's next attempt takes its place: removing it frees at least the room
            // the new entry needs, so nothing else is evicted for it.
            inner.remove(&id);
        }
        self.make_room(inner, tenant)?;
        let (tx, rx) = watch::channel(None);
        let reference = previous_unknown.clone().unwrap_or_else(fresh_reference);
        let age = inner.next_age(now);
        let tenant_key = match inner.tenants.get_key_value(tenant) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(tenant);
                inner.tenants.insert(
                    k.clone(),
                    Book {
                        entries: 0,
                        bytes: TENANT_OVERHEAD,
                        in_flight: 0,
                        finished: BTreeMap::new(),
                        unknown: BTreeMap::new(),
                        share: 0,
                    },
                );
                inner.bytes += TENANT_OVERHEAD;
                k
            }
        };
        if let Some(book) = inner.tenants.get_mut(&tenant_key) {
            book.entries += 1;
            book.in_flight += 1;
            book.bytes += SMALL_ENTRY;
        }
        inner.rerank(&tenant_key);
        inner.bytes += SMALL_ENTRY;
        inner.in_flight += 1;
        inner.entries.insert(
            id,
            Entry {
                args_hash: args,
                tenant: tenant_key,
                age,
                bytes: SMALL_ENTRY,
                slot: Slot::InFlight(rx),
            },
        );
        Ok(Claim::Run(Ticket {
            store: self.clone(),
            id,
            sender: Some(tx),
            reference,
            previous_unknown: previous_unknown.is_some(),
            previous_sent,
            sent: previous_sent,
        }))
    }

    /// Makes room for one more entry in flight of `tenant`: its own oldest finished entries
    /// for its bounds, then for the store's the oldest of the tenant holding the largest share
    /// (so that a few tenants at their caps cannot flush everyone else's results).
    fn make_room(&self, inner: &mut Inner, tenant: &str) -> Result<(), Error> {
        let l = &self.limits;
        while let Some(book) = inner.tenants.get(tenant) {
            let bound = if book.entries >= l.max_per_tenant {
                "tenant_entries"
            } else if book.bytes + SMALL_ENTRY > l.max_bytes_per_tenant {
                "tenant_bytes"
            } else {
                break;
            };
            // None only if every entry of the tenant were in flight, which its in-flight cap
            // (checked before) and the normalised limits rule out.
            let Some(victim) = inner.oldest_finished_of(tenant) else {
                break;
            };
            inner.evict(&victim, bound);
        }
        loop {
            let extra = SMALL_ENTRY
                + if inner.tenants.contains_key(tenant) {
                    0
                } else {
                    TENANT_OVERHEAD
                };
            let bound = if inner.entries.len() >= l.max_entries {
                "store_entries"
            } else if inner.bytes + extra > l.max_bytes {
                "store_bytes"
            } else {
                return Ok(());
            };
            let Some(victim) = inner.oldest_finished_of_largest() else {
                return Err(busy(format!(
                    "this server has {} creates with an idempotency_key in flight, its limit; try again in a moment",
                    inner.in_flight
                )));
            };
            inner.evict(&victim, bound);
        }
    }

    /// Records how the create holding `id` ended.
    fn finish(&self, id: &Id, outcome: &Outcome, reference: &str, sent: Option<[u8; 32]>) {
        let mut inner = self.lock();
        self.finish_locked(&mut inner, id, outcome, reference, sent);
        Self::publish(&inner);
    }

    fn finish_locked(
        &self,
        inner: &mut Inner,
        id: &Id,
        outcome: &Outcome,
        reference: &str,
        sent: Option<[u8; 32]>,
    ) {
        let l = &self.limits;
        // Gone already: forgotten with the local data it was made against.
        let Some(entry) = inner.entries.get(id) else {
            return;
        };
        if !matches!(entry.slot, Slot::InFlight(_)) {
            return;
        }
        let tenant = entry.tenant.clone();
        let mut slot = match outcome {
            Outcome::Failed(_) => {
                inner.remove(id);
                return;
            }
            Outcome::Created(value) => Slot::Created(value.to_string().into_boxed_str()),
            Outcome::Unknown { reference, sent } => Slot::Unknown(reference.clone(), *sent),
        };
        if let Slot::Created(text) = &slot {
            let bytes = ENTRY_OVERHEAD + text.len();
            if !self.room_to_grow(inner, &tenant, bytes) {
                // Too large to keep beside the creates in flight: keep what keeps a repeat safe,
                // the reference to look for, rather than forgetting the key.
                tracing::debug!(
                    bytes,
                    scope = short(&tenant),
                    "idempotency: a created result too large for the byte budgets is kept as an unknown outcome"
                );
                slot = Slot::Unknown(reference.to_owned(), sent);
            }
        }
        let unknown = matches!(slot, Slot::Unknown(..));
        if unknown {
            while inner
                .tenants
                .get(&tenant)
                .is_some_and(|b| b.unknown.len() >= l.max_unknown_per_tenant)
            {
                let Some(victim) = inner.oldest_unknown_of(&tenant) else {
                    break;
                };
                inner.evict(&victim, "tenant_unknown");
            }
        }
        let bytes = match &slot {
            Slot::Created(text) => ENTRY_OVERHEAD + text.len(),
            Slot::Unknown(r, _) => ENTRY_OVERHEAD + r.len().max(REFERENCE_BYTES),
            Slot::InFlight(_) => SMALL_ENTRY,
        };
        let Some(entry) = inner.entries.get_mut(id) else {
            return;
        };
        let before = entry.bytes;
        let age = entry.age;
        entry.bytes = bytes;
        entry.slot = slot;
        inner.bytes = inner.bytes.saturating_sub(before) + bytes;
        inner.in_flight = inner.in_flight.saturating_sub(1);
        inner.finished.insert(age, *id);
        if unknown {
            inner.unknown += 1;
        }
        if let Some(book) = inner.tenants.get_mut(&tenant) {
            book.bytes = book.bytes.saturating_sub(before) + bytes;
            book.in_flight = book.in_flight.saturating_sub(1);
            book.finished.insert(age, *id);
            if unknown {
                book.unknown.insert(age, *id);
            }
        }
        inner.rerank(&tenant);
    }

    /// Makes room for an entry in flight of `tenant` to grow to `bytes` when it finishes,
    /// evicting finished entries (the tenant's own, then the largest holder's). `false` when it cannot fit
    /// even then; nothing is evicted in that case.
    fn room_to_grow(&self, inner: &mut Inner, tenant: &Arc<str>, bytes: usize) -> bool {
        let l = &self.limits;
        let growth = bytes.saturating_sub(SMALL_ENTRY);
        // What no eviction can free: the creates in flight and the tenants' own overhead.
        let (tenant_in_flight, tenant_floor) = inner
            .tenants
            .get(tenant)
            .map_or((0, 0), |b| (b.in_flight, b.in_flight * SMALL_ENTRY));
        let store_floor = inner.in_flight * SMALL_ENTRY + inner.tenants.len() * TENANT_OVERHEAD;
        if tenant_in_flight == 0
            || TENANT_OVERHEAD + tenant_floor + growth > l.max_bytes_per_tenant
            || store_floor + growth > l.max_bytes
        {
            return false;
        }
        while inner
            .tenants
            .get(tenant)
            .is_some_and(|b| b.bytes + growth > l.max_bytes_per_tenant)
        {
            let Some(victim) = inner.oldest_finished_of(tenant) else {
                return false;
            };
            inner.evict(&victim, "tenant_bytes");
        }
        while inner.bytes + growth > l.max_bytes {
            let Some(victim) = inner.oldest_finished_of_largest() else {
                return false;
            };
            inner.evict(&victim, "store_bytes");
        }
        true
    }

    /// Forgets every finished entry of `tenant`: its data is gone, so are its replays. Entries in
    /// flight stay until their call ends.
    pub(crate) fn forget_tenant(&self, tenant: &str) -> usize {
        let mut inner = self.lock();
        let ids: Vec<Id> = inner
            .tenants
            .get(tenant)
            .map(|b| b.finished.values().copied().collect())
            .unwrap_or_default();
        for id in &ids {
            inner.remove(id);
        }
        Self::publish(&inner);
        ids.len()
    }
}

/// A stored created result, read back.
pub(super) fn created(text: &str) -> Outcome {
    match serde_json::from_str(text) {
        Ok(value) => Outcome::Created(value),
        // Our own serialization: cannot fail to parse. Said rather than guessed at if it did.
        Err(e) => Outcome::Failed(Error::internal(format!(
            "the stored result of this idempotency_key cannot be read ({e}); use a new key"
        ))),
    }
}

impl Ticket {
    /// The write is about to be sent as `sent` (the digest of the preview the user confirmed and
    /// the caps counted, if one was made): an unknown outcome from here on remembers it.
    pub(crate) fn sending(&mut self, sent: Option<[u8; 32]>) {
        self.sent = sent;
    }

    /// The outcome is unknown: a repeat looks for the link by this ticket's reference first.
    pub(crate) fn complete_unknown(self) {
        let outcome = self.unknown();
        self.complete(outcome);
    }

    fn unknown(&self) -> Outcome {
        Outcome::Unknown {
            reference: self.reference.clone(),
            sent: self.sent,
        }
    }

    /// Records the outcome and wakes every waiter with it.
    pub(crate) fn complete(mut self, outcome: Outcome) {
        self.store
            .finish(&self.id, &outcome, &self.reference, self.sent);
        if let Some(tx) = self.sender.take() {
            let _ = tx.send(Some(outcome));
        }
    }

    /// Gives the key back without an outcome, when nothing was sent upstream (the call stopped
    /// while the user was being asked to confirm, or a 2026-07-28 client is asked first): the
    /// key is free again, and a waiting twin is told to call again.
    pub(crate) fn release(mut self) {
        if let Some(tx) = self.sender.take() {
            // `Failed` removes the entry without keeping anything; the waiters see the channel
            // close, not the placeholder error.
            let nothing = Outcome::Failed(Error::internal_retryable("released"));
            self.store.finish(&self.id, &nothing, &self.reference, None);
            drop(tx);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(tx) = self.sender.take() {
            // Dropped before an outcome (the call was cancelled, or failed in a way that skipped
            // `complete`): the write may already have reached the upstream, so remember the
            // outcome as unknown — a repeat then looks for the link before creating — rather than
            // forgetting the key. Waiters see the channel close and are told to call again.
            let outcome = self.unknown();
            self.store
                .finish(&self.id, &outcome, &self.reference, self.sent);
            drop(tx);
        }
    }
}

/// Waits for the outcome of the call that holds the key. `None`: that call was cancelled.
pub(crate) async fn wait(mut rx: Shared) -> Option<Outcome> {
    loop {
        if let Some(outcome) = rx.borrow().clone() {
            return Some(outcome);
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}
