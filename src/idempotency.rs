//! Server-side idempotency for `create_payment_link`.
//!
//! With an `idempotency_key`, a repeat of the same create (same tenant, same key, same
//! arguments) within 24 hours returns the first result without calling the upstream; the same key
//! with other arguments is refused (`idempotency_conflict`); concurrent duplicates wait for the
//! first call and share its outcome. When the first call's outcome was unknown, a repeat asks the
//! backend to look for the link by the first call's reference before creating anything.
//!
//! The store is separate from the tenant cache (evicting an idle tenant must not forget its keys
//! on Stream or Stripe) and lives in this process only: replicas behind a load balancer do not
//! share it. Links of the sandbox live in this process too, and die with their tenant; entries
//! made against them are scoped to that data and forgotten with it ([`LocalData`]).
//!
//! # Bounds
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
//! a tenant bound, anyone's for a store bound, so one tenant flushes another's keys only through
//! the store-wide bounds, which its own caps keep it from filling alone. An entry in flight is
//! never dropped (its caller and any waiting twin need its outcome). So the only refusal a new
//! key can meet is about the caller's own concurrency: a tenant with
//! `max_in_flight_per_tenant` creates in flight is told to wait (`rate_limited`, retry_safe).
//! (The store itself refuses in the same way only if every one of its `max_entries` entries is in
//! flight, far above the HTTP server's limit on requests in flight.)
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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::{Error, UpstreamContext};
use crate::observability::metrics;
use crate::observability::metrics::IdempotencyStats;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What every entry is charged for its bookkeeping, on top of its payload: its map slot and key,
/// its nodes in the age indexes and, in flight, its channel (measured at about 200 bytes on
/// 64-bit targets; rounded up).
pub const ENTRY_OVERHEAD: usize = 256;

/// What an unknown outcome's reference is charged (ours are 36-character UUIDs). An entry in
/// flight is charged as much, so that finishing as unknown never needs room.
const REFERENCE_BYTES: usize = 64;

/// An entry in flight or unknown: the smallest an entry ever is.
const SMALL_ENTRY: usize = ENTRY_OVERHEAD + REFERENCE_BYTES;

/// What a tenant with entries is charged for its own book (counters and two index maps).
const TENANT_OVERHEAD: usize = 256;

/// The store's bounds; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Entries in the whole store.
    pub max_entries: usize,
    /// Bytes charged in the whole store.
    pub max_bytes: usize,
    /// Entries of one tenant.
    pub max_per_tenant: usize,
    /// Bytes charged to one tenant.
    pub max_bytes_per_tenant: usize,
    /// Unknown outcomes one tenant keeps; beyond it the oldest is dropped.
    pub max_unknown_per_tenant: usize,
    /// Creates of one tenant in flight at once; beyond it a new key is refused until one ends.
    pub max_in_flight_per_tenant: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_entries: 100_000,
            max_bytes: 32 * 1024 * 1024,
            max_per_tenant: 1_000,
            max_bytes_per_tenant: 4 * 1024 * 1024,
            max_unknown_per_tenant: 100,
            max_in_flight_per_tenant: 64,
        }
    }
}

impl StoreLimits {
    /// The limits made consistent: every one at least 1, no more creates in flight than
    /// entries, and bytes enough for a tenant's (and the store's first tenant's) creates in
    /// flight. Then making room for a tenant under its in-flight cap always succeeds within its
    /// own entries.
    fn normalized(self) -> Self {
        let max_per_tenant = self.max_per_tenant.max(1);
        let max_in_flight_per_tenant = self.max_in_flight_per_tenant.clamp(1, max_per_tenant);
        let floor = (max_in_flight_per_tenant + 1) * SMALL_ENTRY + TENANT_OVERHEAD;
        let max_bytes_per_tenant = self.max_bytes_per_tenant.max(floor);
        StoreLimits {
            max_entries: self.max_entries.max(1),
            max_bytes: self.max_bytes.max(max_bytes_per_tenant),
            max_per_tenant,
            max_bytes_per_tenant,
            max_unknown_per_tenant: self.max_unknown_per_tenant.max(1),
            max_in_flight_per_tenant,
        }
    }
}

/// What a finished create left behind.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The link was created: its JSON.
    Created(Value),
    /// Nobody knows; the reference lets a repeat look for it.
    Unknown { reference: String },
    /// Nothing was created; a repeat runs again.
    Failed(Error),
}

type Shared = watch::Receiver<Option<Outcome>>;
type Id = [u8; 32];
/// When an entry was claimed, then a sequence number: a total order, oldest first.
type Age = (Instant, u64);

enum Slot {
    InFlight(Shared),
    /// The created link as JSON text: compact, and exactly the bytes it is charged.
    Created(Box<str>),
    Unknown(String),
}

struct Entry {
    args_hash: [u8; 32],
    /// The tenant's scope (a hash, never a key), for the per-tenant bounds.
    tenant: Arc<str>,
    age: Age,
    /// What this entry is charged, overhead included.
    bytes: usize,
    slot: Slot,
}

/// One tenant's share of the store.
struct Book {
    entries: usize,
    /// Charged to this tenant: its entries and [`TENANT_OVERHEAD`].
    bytes: usize,
    in_flight: usize,
    /// Its created and unknown entries, oldest first.
    finished: BTreeMap<Age, Id>,
    /// Its unknown entries, oldest first.
    unknown: BTreeMap<Age, Id>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Id, Entry>,
    /// Every created and unknown entry, oldest first: for expiry and the store-wide bounds.
    finished: BTreeMap<Age, Id>,
    tenants: HashMap<Arc<str>, Book>,
    bytes: usize,
    in_flight: usize,
    unknown: usize,
    seq: u64,
}

/// The store.
pub struct IdempotencyStore {
    inner: Mutex<Inner>,
    limits: StoreLimits,
    ttl: Duration,
}

/// What the caller should do.
pub enum Claim {
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
pub struct Ticket {
    store: Arc<IdempotencyStore>,
    id: Id,
    sender: Option<watch::Sender<Option<Outcome>>>,
    pub reference: String,
    pub previous_unknown: bool,
}

fn entry_id(tenant: &str, key: &str) -> Id {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// A stable digest of validated arguments.
pub fn args_hash(canonical: &str) -> [u8; 32] {
    Sha256::digest(canonical.as_bytes()).into()
}

/// The first characters of a tenant's scope (itself a hash), enough to tell tenants apart in a log.
fn short(scope: &str) -> &str {
    scope.get(..12).unwrap_or(scope)
}

impl Inner {
    fn next_age(&mut self, now: Instant) -> Age {
        self.seq += 1;
        (now, self.seq)
    }

    /// Unlinks an entry from every map and counter. O(log n).
    fn remove(&mut self, id: &Id) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        let in_flight = matches!(entry.slot, Slot::InFlight(_));
        let unknown = matches!(entry.slot, Slot::Unknown(_));
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
    fn evict(&mut self, id: &Id, bound: &'static str) {
        let Some(entry) = self.remove(id) else { return };
        match entry.slot {
            Slot::Unknown(reference) => {
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

    fn oldest_finished(&self) -> Option<Id> {
        self.finished.first_key_value().map(|(_, id)| *id)
    }

    fn oldest_finished_of(&self, tenant: &str) -> Option<Id> {
        self.tenants
            .get(tenant)?
            .finished
            .first_key_value()
            .map(|(_, id)| *id)
    }

    fn oldest_unknown_of(&self, tenant: &str) -> Option<Id> {
        self.tenants
            .get(tenant)?
            .unknown
            .first_key_value()
            .map(|(_, id)| *id)
    }

    /// Removes finished entries older than `ttl`: only the expired ones and one more are looked at.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((age, id)) = self.finished.first_key_value().map(|(a, i)| (*a, *i)) {
            if now.duration_since(age.0) < ttl {
                break;
            }
            self.remove(&id);
        }
    }

    fn stats(&self) -> IdempotencyStats {
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

fn busy(message: String) -> Error {
    Error::rate_limited(message, Some(1), UpstreamContext::default())
}

impl IdempotencyStore {
    pub fn new(limits: StoreLimits) -> Arc<Self> {
        Self::with_ttl(limits, KEY_TTL)
    }

    pub fn with_ttl(limits: StoreLimits, ttl: Duration) -> Arc<Self> {
        Arc::new(IdempotencyStore {
            inner: Mutex::new(Inner::default()),
            limits: limits.normalized(),
            ttl,
        })
    }

    /// The limits in force (after [`StoreLimits`] normalisation).
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below leaves the maps consistent before any call that could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's counts now.
    pub fn stats(&self) -> IdempotencyStats {
        self.lock().stats()
    }

    fn publish(inner: &Inner) {
        metrics::idempotency_store(&inner.stats());
    }

    /// Claims `key` for `tenant` with arguments hashing to `args`.
    pub fn claim(
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
        if let Some(entry) = inner.entries.get(&id) {
            if entry.args_hash != args {
                return Err(Error::idempotency_conflict(
                    "this idempotency_key was already used with different arguments in the last 24 hours; use a new key for a new link, or repeat the original arguments exactly",
                ));
            }
            match &entry.slot {
                Slot::InFlight(rx) => return Ok(Claim::Wait(rx.clone())),
                Slot::Created(text) => return Ok(Claim::Replay(created(text))),
                Slot::Unknown(reference) => previous_unknown = Some(reference.clone()),
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
        }))
    }

    /// Makes room for one more entry in flight of `tenant`: its own oldest finished entries
    /// for its bounds, then anyone's oldest for the store's.
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
            let Some(victim) = inner.oldest_finished() else {
                return Err(busy(format!(
                    "this server has {} creates with an idempotency_key in flight, its limit; try again in a moment",
                    inner.in_flight
                )));
            };
            inner.evict(&victim, bound);
        }
    }

    /// Records how the create holding `id` ended.
    fn finish(&self, id: &Id, outcome: &Outcome, reference: &str) {
        let mut inner = self.lock();
        self.finish_locked(&mut inner, id, outcome, reference);
        Self::publish(&inner);
    }

    fn finish_locked(&self, inner: &mut Inner, id: &Id, outcome: &Outcome, reference: &str) {
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
            Outcome::Unknown { reference } => Slot::Unknown(reference.clone()),
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
                slot = Slot::Unknown(reference.to_owned());
            }
        }
        let unknown = matches!(slot, Slot::Unknown(_));
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
            Slot::Unknown(r) => ENTRY_OVERHEAD + r.len().max(REFERENCE_BYTES),
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
    }

    /// Makes room for an entry in flight of `tenant` to grow to `bytes` when it finishes,
    /// evicting finished entries (the tenant's own, then anyone's). `false` when it cannot fit
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
            let Some(victim) = inner.oldest_finished() else {
                return false;
            };
            inner.evict(&victim, "store_bytes");
        }
        true
    }

    /// Forgets every finished entry of `tenant`: its data is gone, so are its replays. Entries in
    /// flight stay until their call ends.
    pub fn forget_tenant(&self, tenant: &str) -> usize {
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
fn created(text: &str) -> Outcome {
    match serde_json::from_str(text) {
        Ok(value) => Outcome::Created(value),
        // Our own serialization: cannot fail to parse. Said rather than guessed at if it did.
        Err(e) => Outcome::Failed(Error::internal(format!(
            "the stored result of this idempotency_key cannot be read ({e}); use a new key"
        ))),
    }
}

impl Ticket {
    /// Records the outcome and wakes every waiter with it.
    pub fn complete(mut self, outcome: Outcome) {
        self.store.finish(&self.id, &outcome, &self.reference);
        if let Some(tx) = self.sender.take() {
            let _ = tx.send(Some(outcome));
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
            let outcome = Outcome::Unknown {
                reference: self.reference.clone(),
            };
            self.store.finish(&self.id, &outcome, &self.reference);
            drop(tx);
        }
    }
}

/// Waits for the outcome of the call that holds the key. `None`: that call was cancelled.
pub async fn wait(mut rx: Shared) -> Option<Outcome> {
    loop {
        if let Some(outcome) = rx.borrow().clone() {
            return Some(outcome);
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// Data a backend keeps in this process and loses with the backend instance: the sandbox's links.
///
/// Idempotency entries made against it are scoped to this instance, so once the data is gone (its
/// tenant evicted from the cache, or idle too long) a repeat of a key finds no entry and creates
/// afresh: no replay can answer a link that no longer exists. And they leave the store when the
/// instance drops, rather than waiting for their 24 hours.
pub struct LocalData {
    instance: u64,
    /// The stores and scopes its entries went to, to forget them on drop.
    scopes: Mutex<Vec<(Weak<IdempotencyStore>, String)>>,
}

impl Default for LocalData {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalData {
    pub fn new() -> Self {
        LocalData {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            scopes: Mutex::new(Vec::new()),
        }
    }

    /// The scope of `tenant`'s entries against this data in `store`.
    pub fn scope(&self, store: &Arc<IdempotencyStore>, tenant: &str) -> String {
        let scope = format!("{tenant}#local-{}", self.instance);
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let weak = Arc::downgrade(store);
        if !scopes
            .iter()
            .any(|(s, name)| *name == scope && s.ptr_eq(&weak))
        {
            scopes.push((weak, scope.clone()));
        }
        scope
    }
}

impl Drop for LocalData {
    fn drop(&mut self) {
        let scopes = std::mem::take(self.scopes.get_mut().unwrap_or_else(|p| p.into_inner()));
        for (store, scope) in scopes {
            if let Some(store) = store.upgrade() {
                store.forget_tenant(&scope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Arc<IdempotencyStore> {
        IdempotencyStore::new(StoreLimits::default())
    }

    fn limits(max_entries: usize, max_per_tenant: usize, max_unknown: usize) -> StoreLimits {
        StoreLimits {
            max_entries,
            max_bytes: 64 << 20,
            max_per_tenant,
            max_bytes_per_tenant: 64 << 20,
            max_unknown_per_tenant: max_unknown,
            max_in_flight_per_tenant: 4,
        }
    }

    fn run(c: Claim) -> Ticket {
        match c {
            Claim::Run(t) => t,
            _ => panic!("expected Run"),
        }
    }

    fn claim(s: &Arc<IdempotencyStore>, tenant: &str, key: &str) -> Ticket {
        run(s
            .claim(tenant, key, [1; 32], || format!("ref-{key}"))
            .unwrap())
    }

    fn created(s: &Arc<IdempotencyStore>, tenant: &str, key: &str, pad: usize) {
        claim(s, tenant, key)
            .complete(Outcome::Created(json!({"id": key, "pad": "x".repeat(pad)})));
    }

    /// A create cancelled before it finished: the ticket dropped.
    fn cancelled(s: &Arc<IdempotencyStore>, tenant: &str, key: &str) {
        drop(claim(s, tenant, key));
    }

    /// Every index agrees with the entries, and every bound holds.
    fn check(s: &IdempotencyStore) {
        let inner = s.lock();
        let l = s.limits;
        let mut finished = 0;
        let mut per_tenant: HashMap<&str, (usize, usize, usize, usize)> = HashMap::new();
        let mut bytes = 0;
        for (id, e) in &inner.entries {
            let t = per_tenant.entry(&e.tenant).or_default();
            t.0 += 1;
            t.1 += e.bytes;
            bytes += e.bytes;
            match e.slot {
                Slot::InFlight(_) => t.2 += 1,
                Slot::Unknown(_) => {
                    t.3 += 1;
                    assert_eq!(inner.tenants[&e.tenant].unknown.get(&e.age), Some(id));
                }
                Slot::Created(_) => {}
            }
            if !matches!(e.slot, Slot::InFlight(_)) {
                finished += 1;
                assert_eq!(inner.finished.get(&e.age), Some(id));
                assert_eq!(inner.tenants[&e.tenant].finished.get(&e.age), Some(id));
            }
        }
        assert_eq!(inner.finished.len(), finished);
        assert_eq!(inner.tenants.len(), per_tenant.len());
        assert_eq!(
            inner.bytes,
            bytes + per_tenant.len() * TENANT_OVERHEAD,
            "bytes charged"
        );
        for (tenant, (entries, tbytes, in_flight, unknown)) in per_tenant {
            let book = &inner.tenants[tenant];
            assert_eq!(
                (book.entries, book.bytes, book.in_flight, book.unknown.len()),
                (entries, tbytes + TENANT_OVERHEAD, in_flight, unknown)
            );
            assert!(
                entries <= l.max_per_tenant,
                "{entries} entries for {tenant}"
            );
            assert!(book.bytes <= l.max_bytes_per_tenant, "{} bytes", book.bytes);
            assert!(unknown <= l.max_unknown_per_tenant, "{unknown} unknown");
            assert!(in_flight <= l.max_in_flight_per_tenant);
        }
        assert!(inner.entries.len() <= l.max_entries);
        assert!(
            inner.bytes <= l.max_bytes,
            "{} > {}",
            inner.bytes,
            l.max_bytes
        );
    }

    #[test]
    fn a_repeat_replays_the_first_result() {
        let s = store();
        let t = run(s.claim("t1", "k", [1; 32], || "ref-1".into()).unwrap());
        assert_eq!(t.reference, "ref-1");
        t.complete(Outcome::Created(json!({"id": "L1"})));
        match s.claim("t1", "k", [1; 32], || "ref-2".into()).unwrap() {
            Claim::Replay(Outcome::Created(v)) => assert_eq!(v["id"], "L1"),
            _ => panic!("expected a replay"),
        }
        check(&s);
    }

    #[test]
    fn other_arguments_conflict_and_other_tenants_are_separate() {
        let s = store();
        run(s.claim("t1", "k", [1; 32], || "r".into()).unwrap())
            .complete(Outcome::Created(json!({})));
        let e = s.claim("t1", "k", [2; 32], || "r".into()).err().unwrap();
        assert_eq!(e.kind().as_str(), "idempotency_conflict");
        assert!(matches!(
            s.claim("t2", "k", [2; 32], || "r".into()).unwrap(),
            Claim::Run(_)
        ));
    }

    #[test]
    fn failures_are_forgotten_and_unknowns_keep_their_reference() {
        let s = store();
        run(s.claim("t", "k", [1; 32], || "r1".into()).unwrap())
            .complete(Outcome::Failed(Error::validation("name", "x")));
        assert!(s.is_empty());
        run(s.claim("t", "k", [1; 32], || "r2".into()).unwrap()).complete(Outcome::Unknown {
            reference: "r2".into(),
        });
        let t = run(s.claim("t", "k", [1; 32], || "r3".into()).unwrap());
        assert!(t.previous_unknown);
        assert_eq!(t.reference, "r2");
        check(&s);
    }

    #[tokio::test]
    async fn concurrent_duplicates_wait_and_share() {
        let s = store();
        let t = run(s.claim("t", "k", [1; 32], || "r".into()).unwrap());
        let rx = match s.claim("t", "k", [1; 32], || "r".into()).unwrap() {
            Claim::Wait(rx) => rx,
            _ => panic!("expected Wait"),
        };
        let waiter = tokio::spawn(wait(rx));
        t.complete(Outcome::Created(json!({"id": "L"})));
        match waiter.await.unwrap() {
            Some(Outcome::Created(v)) => assert_eq!(v["id"], "L"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_cancelled_first_call_leaves_an_unknown_outcome_to_look_up() {
        let s = store();
        let t = run(s.claim("t", "k", [1; 32], || "r".into()).unwrap());
        let rx = match s.claim("t", "k", [1; 32], || "r".into()).unwrap() {
            Claim::Wait(rx) => rx,
            _ => panic!("expected Wait"),
        };
        drop(t);
        assert!(wait(rx).await.is_none());
        let again = run(s.claim("t", "k", [1; 32], || "other".into()).unwrap());
        assert!(
            again.previous_unknown,
            "the write may have happened: look first"
        );
        assert_eq!(again.reference, "r");
        check(&s);
    }

    #[test]
    fn unknown_outcomes_are_capped_per_tenant_and_the_oldest_go_first() {
        let s = IdempotencyStore::new(limits(1000, 100, 3));
        for i in 0..10 {
            cancelled(&s, "t", &format!("k{i}"));
            check(&s);
        }
        cancelled(&s, "other", "k0");
        let stats = s.stats();
        assert_eq!((stats.unknown, stats.in_flight), (4, 0));
        // The newest three are still looked up on a repeat; the oldest were dropped.
        for i in 7..10 {
            assert!(claim(&s, "t", &format!("k{i}")).previous_unknown, "k{i}");
        }
        assert!(!claim(&s, "t", "k0").previous_unknown);
        assert!(
            claim(&s, "other", "k0").previous_unknown,
            "another tenant's"
        );
    }

    #[test]
    fn a_thousand_cancelled_creates_never_lock_out_a_new_key() {
        let s = IdempotencyStore::new(limits(1000, 50, 10));
        for i in 0..1000 {
            cancelled(&s, "t", &format!("cancelled-{i}"));
        }
        check(&s);
        assert_eq!(s.stats().unknown, 10);
        let t = claim(&s, "t", "brand-new");
        assert!(!t.previous_unknown);
        t.complete(Outcome::Created(json!({"id": "L"})));
        check(&s);
    }

    #[test]
    fn a_new_key_is_refused_only_for_the_tenants_own_creates_in_flight() {
        let s = IdempotencyStore::new(limits(1000, 6, 100));
        // The tenant's quota full of finished entries: none of them refuses a new key.
        for i in 0..3 {
            cancelled(&s, "t", &format!("u{i}"));
            created(&s, "t", &format!("c{i}"), 0);
        }
        let held: Vec<Ticket> = (0..4).map(|i| claim(&s, "t", &format!("f{i}"))).collect();
        check(&s);
        let e = s.claim("t", "f9", [1; 32], || "r".into()).err().unwrap();
        assert_eq!(e.kind().as_str(), "rate_limited");
        assert!(e.retry_safe());
        // Another tenant is not concerned, and one create ending frees a place.
        claim(&s, "other", "k");
        drop(held);
        claim(&s, "t", "f9");
        check(&s);
    }

    #[test]
    fn the_entry_bound_holds_for_every_kind_of_entry() {
        let s = IdempotencyStore::new(limits(10, 1000, 1000));
        let mut held = Vec::new();
        for i in 0..40 {
            let tenant = format!("t{}", i % 4);
            match i % 3 {
                0 => created(&s, &tenant, &format!("k{i}"), 10),
                1 => cancelled(&s, &tenant, &format!("k{i}")),
                _ if held.len() < 3 => held.push(claim(&s, &tenant, &format!("k{i}"))),
                _ => {}
            }
            check(&s);
        }
        assert_eq!(s.len(), 10);
        assert_eq!(
            s.stats().in_flight,
            3,
            "creates in flight are never evicted"
        );
    }

    #[test]
    fn the_byte_bounds_hold_and_the_oldest_results_go_first() {
        let l = StoreLimits {
            max_bytes: 40_000,
            max_bytes_per_tenant: 16_000,
            ..limits(1000, 1000, 1000)
        };
        let s = IdempotencyStore::new(l);
        for i in 0..30 {
            created(&s, &format!("t{}", i % 5), &format!("k{i}"), 3_000);
            check(&s);
        }
        // The newest result of each tenant is still replayed; the oldest were evicted.
        assert!(matches!(
            s.claim("t4", "k29", [1; 32], || "r".into()).unwrap(),
            Claim::Replay(_)
        ));
        assert!(matches!(
            s.claim("t0", "k0", [1; 32], || "r".into()).unwrap(),
            Claim::Run(_)
        ));
        // One tenant alone stays within its own share.
        let s = IdempotencyStore::new(l);
        for i in 0..30 {
            created(&s, "big", &format!("k{i}"), 3_000);
        }
        check(&s);
        assert!(s.stats().bytes <= 16_000 + TENANT_OVERHEAD);
    }

    #[test]
    fn a_result_too_large_to_keep_is_kept_as_an_unknown_outcome() {
        let s = IdempotencyStore::new(StoreLimits {
            max_bytes: 20_000,
            max_bytes_per_tenant: 10_000,
            ..limits(1000, 1000, 1000)
        });
        created(&s, "t", "small", 10);
        created(&s, "t", "huge", 50_000);
        check(&s);
        let t = claim(&s, "t", "huge");
        assert!(t.previous_unknown, "a repeat looks for the link first");
        assert_eq!(t.reference, "ref-huge");
        assert!(matches!(
            s.claim("t", "small", [1; 32], || "r".into()).unwrap(),
            Claim::Replay(_)
        ));
    }

    #[test]
    fn one_tenant_cannot_flush_another() {
        let s = IdempotencyStore::new(limits(1000, 5, 100));
        created(&s, "victim", "k", 0);
        for i in 0..50 {
            created(&s, "noisy", &format!("k{i}"), 0);
            cancelled(&s, "noisy", &format!("u{i}"));
        }
        check(&s);
        assert!(matches!(
            s.claim("victim", "k", [1; 32], || "r".into()).unwrap(),
            Claim::Replay(_)
        ));
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn entries_expire() {
        let s = IdempotencyStore::with_ttl(StoreLimits::default(), Duration::ZERO);
        created(&s, "t", "k", 0);
        cancelled(&s, "t", "u");
        // Other arguments would conflict with a remembered key: this one was forgotten.
        let t = run(s.claim("t", "k", [2; 32], || "r".into()).unwrap());
        assert_eq!(s.stats().unknown, 0, "unknown outcomes expire too");
        assert_eq!(s.len(), 1);
        t.complete(Outcome::Failed(Error::validation("name", "x")));
    }

    #[test]
    fn the_indexes_stay_exact_under_a_mixed_workload() {
        // Eviction and expiry read the oldest entry off ordered indexes (O(log n)) instead of
        // scanning: this checks after every step that the indexes hold exactly the finished
        // entries, per tenant and store-wide, with the counters and bounds.
        let s = IdempotencyStore::new(StoreLimits {
            max_entries: 60,
            max_bytes: 30_000,
            max_per_tenant: 20,
            max_bytes_per_tenant: 12_000,
            max_unknown_per_tenant: 5,
            max_in_flight_per_tenant: 3,
        });
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut held: Vec<Ticket> = Vec::new();
        for step in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let tenant = format!("t{}", seed % 7);
            let key = format!("k{}", (seed >> 8) % 40);
            match (seed >> 20) % 6 {
                0 | 1 => match s.claim(&tenant, &key, [1; 32], || "r".into()) {
                    Ok(Claim::Run(t)) if held.len() < 15 => held.push(t),
                    Ok(Claim::Run(t)) => t.complete(Outcome::Created(
                        json!({"pad": "x".repeat((seed >> 30) as usize % 4000)}),
                    )),
                    Ok(_) => {}
                    Err(e) => assert_eq!(e.kind().as_str(), "rate_limited", "step {step}"),
                },
                2 if !held.is_empty() => drop(held.swap_remove((seed as usize) % held.len())),
                3 if !held.is_empty() => held
                    .swap_remove((seed as usize) % held.len())
                    .complete(Outcome::Created(json!({"pad": "y".repeat(2000)}))),
                4 if !held.is_empty() => held
                    .swap_remove((seed as usize) % held.len())
                    .complete(Outcome::Failed(Error::validation("name", "x"))),
                _ => {
                    s.forget_tenant(&tenant);
                }
            }
            check(&s);
        }
    }

    #[test]
    fn local_data_takes_its_entries_along() {
        let s = store();
        let data = LocalData::new();
        let scope = data.scope(&s, "t");
        assert_ne!(scope, "t");
        assert_eq!(scope, data.scope(&s, "t"), "stable for one instance");
        assert_ne!(scope, LocalData::new().scope(&s, "t"), "another instance");
        created(&s, &scope, "k", 0);
        cancelled(&s, &scope, "u");
        created(&s, "t", "k", 0);
        assert_eq!(s.len(), 3);
        drop(data);
        assert_eq!(
            s.len(),
            1,
            "only the tenant's own entries outside the data remain"
        );
        check(&s);
    }
}
