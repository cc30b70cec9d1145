//! Server-side idempotency for `create_payment_link`.
//!
//! With an `idempotency_key`, a repeat of the same create (same tenant, same key, same
//! arguments) within 24 hours returns the first result without calling the upstream; the same key
//! with other arguments is refused (`idempotency_conflict`); concurrent duplicates wait for the
//! first call and share its outcome. When the first call's outcome was unknown, a repeat asks the
//! backend to look for the link by the first call's reference before creating anything.
//!
//! The store is separate from the tenant cache (evicting an idle tenant must not forget its keys)
//! and bounded: at most [`StoreLimits::max_entries`] entries, [`StoreLimits::max_bytes`] of stored
//! results, and [`StoreLimits::max_per_tenant`] per tenant so that one tenant cannot flush
//! another's keys. It lives in this process only: replicas behind a load balancer do not share it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::Error;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
    pub max_per_tenant: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_per_tenant: 1_000,
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

enum Slot {
    InFlight(Shared),
    Done { outcome: Outcome, bytes: usize },
}

struct Entry {
    args_hash: [u8; 32],
    /// The tenant's scope (a hash, never a key), for the per-tenant budget.
    tenant: Arc<str>,
    created: Instant,
    slot: Slot,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<[u8; 32], Entry>,
    /// Insertion order, for expiry and eviction; may hold ids of entries already removed.
    order: VecDeque<([u8; 32], Instant)>,
    per_tenant: HashMap<Arc<str>, usize>,
    bytes: usize,
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
/// was cancelled), it clears the key so that a repeat runs again, and wakes any waiters.
pub struct Ticket {
    store: Arc<IdempotencyStore>,
    id: [u8; 32],
    sender: Option<watch::Sender<Option<Outcome>>>,
    pub reference: String,
    pub previous_unknown: bool,
}

fn entry_id(tenant: &str, key: &str) -> [u8; 32] {
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

impl IdempotencyStore {
    pub fn new(limits: StoreLimits) -> Arc<Self> {
        Self::with_ttl(limits, KEY_TTL)
    }

    pub fn with_ttl(limits: StoreLimits, ttl: Duration) -> Arc<Self> {
        Arc::new(IdempotencyStore {
            inner: Mutex::new(Inner::default()),
            limits,
            ttl,
        })
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
        self.expire(&mut inner, now);
        let mut previous_unknown = None;
        if let Some(entry) = inner.entries.get(&id) {
            if entry.args_hash != args {
                return Err(Error::IdempotencyConflict {
                    message: "this idempotency_key was already used with different arguments in the last 24 hours; use a new key for a new link, or repeat the original arguments exactly".into(),
                });
            }
            match &entry.slot {
                Slot::InFlight(rx) => return Ok(Claim::Wait(rx.clone())),
                Slot::Done {
                    outcome: Outcome::Unknown { reference },
                    ..
                } => previous_unknown = Some(reference.clone()),
                Slot::Done { outcome, .. } => return Ok(Claim::Replay(outcome.clone())),
            }
            self.remove(&mut inner, &id);
        }
        while inner.per_tenant.get(tenant).copied().unwrap_or(0)
            >= self.limits.max_per_tenant.max(1)
        {
            if !self.evict_oldest(&mut inner, Some(tenant)) {
                // Every entry of this tenant is in flight: refuse rather than grow.
                return Err(Error::RateLimited {
                    retry_safe: true,
                    message: format!(
                        "{} creates with an idempotency_key are already in flight for this caller; wait for them to finish",
                        self.limits.max_per_tenant
                    ),
                    retry_after_secs: Some(1),
                    upstream: Default::default(),
                });
            }
        }
        while inner.entries.len() >= self.limits.max_entries.max(1) {
            if !self.evict_oldest(&mut inner, None) {
                break;
            }
        }
        let (tx, rx) = watch::channel(None);
        let reference = previous_unknown.clone().unwrap_or_else(fresh_reference);
        let tenant_scope: Arc<str> = Arc::from(tenant);
        inner.entries.insert(
            id,
            Entry {
                args_hash: args,
                tenant: tenant_scope.clone(),
                created: now,
                slot: Slot::InFlight(rx),
            },
        );
        inner.order.push_back((id, now));
        *inner.per_tenant.entry(tenant_scope).or_default() += 1;
        Ok(Claim::Run(Ticket {
            store: self.clone(),
            id,
            sender: Some(tx),
            reference,
            previous_unknown: previous_unknown.is_some(),
        }))
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((id, at)) = inner.order.front().copied() {
            if now.duration_since(at) < self.ttl {
                break;
            }
            inner.order.pop_front();
            if inner.entries.get(&id).is_some_and(|e| e.created == at) {
                self.remove(inner, &id);
            }
        }
    }

    fn remove(&self, inner: &mut Inner, id: &[u8; 32]) {
        // Records of removed entries stay in `order` until they expire; compact it when they
        // outnumber the live ones, so a stream of failing creates cannot grow it for 24 hours.
        if inner.order.len() > 2 * inner.entries.len() + 1024 {
            let entries = &inner.entries;
            inner
                .order
                .retain(|(k, at)| k == id || entries.get(k).is_some_and(|e| e.created == *at));
        }
        if let Some(entry) = inner.entries.remove(id) {
            if let Slot::Done { bytes, .. } = entry.slot {
                inner.bytes = inner.bytes.saturating_sub(bytes);
            }
            if let Some(count) = inner.per_tenant.get_mut(&entry.tenant) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    inner.per_tenant.remove(&entry.tenant);
                }
            }
        }
    }

    /// Evicts the oldest finished entry (of `tenant`, if given); in-flight ones are never
    /// evicted, their callers are waiting on them.
    fn evict_oldest(&self, inner: &mut Inner, tenant: Option<&str>) -> bool {
        let position = inner.order.iter().position(|(id, at)| {
            inner.entries.get(id).is_some_and(|e| {
                e.created == *at
                    && matches!(
                        e.slot,
                        Slot::Done {
                            outcome: Outcome::Created(_),
                            ..
                        }
                    )
                    && tenant.is_none_or(|t| &*e.tenant == t)
            })
        });
        match position {
            Some(p) => {
                if let Some((id, _)) = inner.order.remove(p) {
                    self.remove(inner, &id);
                }
                true
            }
            None => false,
        }
    }

    fn finish(&self, id: &[u8; 32], outcome: Option<Outcome>) {
        let mut inner = self.lock();
        let keep = matches!(outcome, Some(Outcome::Created(_) | Outcome::Unknown { .. }));
        if keep && let Some(outcome) = outcome {
            let bytes = match &outcome {
                Outcome::Created(v) => v.to_string().len(),
                _ => 64,
            };
            let mut over_budget = false;
            if let Some(entry) = inner.entries.get_mut(id) {
                entry.slot = Slot::Done { outcome, bytes };
                over_budget = true;
            }
            if over_budget {
                inner.bytes += bytes;
                while inner.bytes > self.limits.max_bytes {
                    if !self.evict_oldest(&mut inner, None) {
                        break;
                    }
                }
            }
        } else {
            self.remove(&mut inner, id);
        }
    }
}

impl Ticket {
    /// Records the outcome and wakes every waiter with it.
    pub fn complete(mut self, outcome: Outcome) {
        self.store.finish(&self.id, Some(outcome.clone()));
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
            self.store.finish(
                &self.id,
                Some(Outcome::Unknown {
                    reference: self.reference.clone(),
                }),
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Arc<IdempotencyStore> {
        IdempotencyStore::new(StoreLimits::default())
    }

    fn run(c: Claim) -> Ticket {
        match c {
            Claim::Run(t) => t,
            _ => panic!("expected Run"),
        }
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
    }

    #[test]
    fn unknown_outcomes_are_never_evicted() {
        let s = IdempotencyStore::new(StoreLimits {
            max_entries: 3,
            max_bytes: 1 << 20,
            max_per_tenant: 100,
        });
        run(s.claim("t", "unknown", [1; 32], || "r0".into()).unwrap()).complete(Outcome::Unknown {
            reference: "r0".into(),
        });
        for i in 0..10 {
            run(s
                .claim("t", &format!("k{i}"), [1; 32], || "r".into())
                .unwrap())
            .complete(Outcome::Created(json!({"i": i})));
        }
        let t = run(s.claim("t", "unknown", [1; 32], || "new".into()).unwrap());
        assert!(t.previous_unknown);
    }

    #[test]
    fn failed_creates_do_not_grow_the_order_queue() {
        let s = store();
        for i in 0..10_000 {
            run(s
                .claim("t", &format!("k{i}"), [1; 32], || "r".into())
                .unwrap())
            .complete(Outcome::Failed(Error::validation("name", "x")));
        }
        assert!(s.lock().order.len() <= 1024 + 1, "{}", s.lock().order.len());
    }

    #[test]
    fn entries_expire_and_the_store_is_bounded() {
        let s = IdempotencyStore::with_ttl(
            StoreLimits {
                max_entries: 3,
                max_bytes: 1 << 20,
                max_per_tenant: 100,
            },
            Duration::from_secs(3600),
        );
        for i in 0..10 {
            run(s
                .claim("t", &format!("k{i}"), [1; 32], || "r".into())
                .unwrap())
            .complete(Outcome::Created(json!({"i": i})));
        }
        assert_eq!(s.len(), 3);
        let s = IdempotencyStore::with_ttl(StoreLimits::default(), Duration::ZERO);
        run(s.claim("t", "k", [1; 32], || "r".into()).unwrap())
            .complete(Outcome::Created(json!({})));
        assert!(matches!(
            s.claim("t", "k", [2; 32], || "r".into()).unwrap(),
            Claim::Run(_)
        ));
    }

    #[test]
    fn one_tenant_cannot_flush_another() {
        let s = IdempotencyStore::new(StoreLimits {
            max_entries: 1000,
            max_bytes: 1 << 20,
            max_per_tenant: 5,
        });
        run(s.claim("victim", "k", [1; 32], || "r".into()).unwrap())
            .complete(Outcome::Created(json!({"id": "V"})));
        for i in 0..50 {
            run(s
                .claim("noisy", &format!("k{i}"), [1; 32], || "r".into())
                .unwrap())
            .complete(Outcome::Created(json!({})));
        }
        assert!(matches!(
            s.claim("victim", "k", [1; 32], || "r".into()).unwrap(),
            Claim::Replay(_)
        ));
        assert_eq!(s.len(), 6);
        // All of one tenant's slots in flight: refused, not grown.
        let held: Vec<Ticket> = (0..5)
            .map(|i| {
                run(s
                    .claim("busy", &format!("k{i}"), [1; 32], || "r".into())
                    .unwrap())
            })
            .collect();
        let e = s.claim("busy", "k9", [1; 32], || "r".into()).err().unwrap();
        assert_eq!(e.kind().as_str(), "rate_limited");
        drop(held);
    }

    #[test]
    fn memory_is_bounded() {
        let s = IdempotencyStore::new(StoreLimits {
            max_entries: 1000,
            max_bytes: 1000,
            max_per_tenant: 1000,
        });
        for i in 0..50 {
            run(s
                .claim("t", &format!("k{i}"), [1; 32], || "r".into())
                .unwrap())
            .complete(Outcome::Created(json!({"pad": "x".repeat(100)})));
        }
        assert!(s.lock().bytes <= 1000);
        assert!(s.len() < 50);
    }
}
