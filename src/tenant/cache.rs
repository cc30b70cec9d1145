//! The bounded tenant cache of the HTTP transport.
//!
//! Keyed by a [`TenantKey`] (SHA-256 of what identifies the tenant), never by a raw key, so a heap
//! dump or a debug print of the map shows no secret. Bounded twice: by count (least recently used
//! out first) and by idleness. Entries are `Arc`s: a call in flight keeps its tenant alive after
//! eviction, and the next call simply builds a fresh one.
//!
//! Strict LRU (the `lru` crate) rather than an admission-filtered cache such as TinyLFU: a new
//! tenant must always be admitted, or a sandbox tenant's link would vanish between two calls.
//! Flooding is handled before the cache is touched (new tenants are rate-limited per client).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::Tenant;
use crate::observability::metrics::{self, Eviction};

/// SHA-256 over length-prefixed parts: what the cache, the session table and the limiters key on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TenantKey([u8; 32]);

impl TenantKey {
    /// Hashes `parts`, each prefixed with its length so that ("ab", "c") and ("a", "bc") differ.
    pub(crate) fn derive(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        TenantKey(hasher.finalize().into())
    }

    /// A key derived from this one and more parts (a tenant's branch, for instance).
    /// The hash in hex: a name for the tenant that says nothing about its key (used to scope
    /// idempotency keys).
    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn with(&self, parts: &[&[u8]]) -> Self {
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&self.0);
        all.extend_from_slice(parts);
        TenantKey::derive(&all)
    }
}

impl std::fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash of a key is not a key, but there is no reason to print all of it either.
        write!(
            f,
            "TenantKey({:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2]
        )
    }
}

struct Entry {
    tenant: Arc<Tenant>,
    last_used: Instant,
}

/// At most `capacity` tenants, none idle longer than `idle`.
pub(crate) struct TenantCache {
    entries: Mutex<LruCache<TenantKey, Entry>>,
    idle: Duration,
}

impl TenantCache {
    pub(crate) fn new(capacity: NonZeroUsize, idle: Duration) -> Self {
        TenantCache {
            entries: Mutex::new(LruCache::new(capacity)),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<TenantKey, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters
        // (every operation is one call on the LRU), so a poisoned lock is used as is.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached tenant, marked as just used; `None` if absent or idle too long (then dropped).
    pub(crate) fn get(&self, key: &TenantKey) -> Option<Arc<Tenant>> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some(entry) if now.duration_since(entry.last_used) <= self.idle => {
                entry.last_used = now;
                Some(entry.tenant.clone())
            }
            Some(_) => {
                entries.pop(key);
                metrics::tenant_evicted(Eviction::Idle, 1);
                None
            }
            None => None,
        }
    }

    /// The cached tenant, or the one `make` builds, inserted (evicting the least recently used if
    /// full). The boolean says whether `make` ran. `make` runs under the cache lock: it must be
    /// cheap and must not touch this cache.
    pub(crate) fn get_or_try_insert<E>(
        &self,
        key: TenantKey,
        make: impl FnOnce() -> Result<Arc<Tenant>, E>,
    ) -> Result<(Arc<Tenant>, bool), E> {
        let now = Instant::now();
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&key)
            && now.duration_since(entry.last_used) <= self.idle
        {
            entry.last_used = now;
            return Ok((entry.tenant.clone(), false));
        }
        let tenant = make()?;
        // `push` hands back what it displaced: the same key's idle entry (expired), or the
        // least recently used tenant (the cache was full).
        let displaced = entries.push(
            key,
            Entry {
                tenant: tenant.clone(),
                last_used: now,
            },
        );
        match displaced {
            Some((old, _)) if old == key => metrics::tenant_evicted(Eviction::Idle, 1),
            Some(_) => metrics::tenant_evicted(Eviction::Capacity, 1),
            None => {}
        }
        Ok((tenant, true))
    }

    /// Drops every tenant idle longer than the limit. The LRU order is the order of last use, so
    /// this only looks at the entries it removes (plus one).
    pub(crate) fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut entries = self.lock();
        let mut removed = 0;
        while let Some((_, entry)) = entries.peek_lru() {
            if now.duration_since(entry.last_used) <= self.idle {
                break;
            }
            entries.pop_lru();
            removed += 1;
        }
        metrics::tenant_evicted(Eviction::Idle, removed);
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sandbox::SandboxBackend;

    fn tenant(name: &str) -> Arc<Tenant> {
        Arc::new(Tenant {
            fingerprint: name.to_owned(),
            scope: name.to_owned(),
            backend: Arc::new(SandboxBackend::new(10)),
        })
    }

    fn key(s: &str) -> TenantKey {
        TenantKey::derive(&[s.as_bytes()])
    }

    #[test]
    fn keys_are_length_prefixed_and_debug_is_short() {
        assert_ne!(
            TenantKey::derive(&[b"ab", b"c"]),
            TenantKey::derive(&[b"a", b"bc"])
        );
        assert_eq!(key("x"), key("x"));
        assert_ne!(key("x").with(&[b"b"]), key("x"));
        assert!(format!("{:?}", key("x")).len() < 24);
    }

    #[test]
    fn the_least_recently_used_goes_first_and_arcs_outlive_eviction() {
        let cache = TenantCache::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(60));
        let (a, made) = cache
            .get_or_try_insert::<()>(key("a"), || Ok(tenant("a")))
            .unwrap();
        assert!(made);
        cache
            .get_or_try_insert::<()>(key("b"), || Ok(tenant("b")))
            .unwrap();
        assert!(cache.get(&key("a")).is_some()); // a is now more recent than b
        cache
            .get_or_try_insert::<()>(key("c"), || Ok(tenant("c")))
            .unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("b")).is_none());
        assert!(cache.get(&key("a")).is_some());
        drop(cache);
        assert_eq!(a.fingerprint, "a"); // still usable
        let (_, made) = TenantCache::new(NonZeroUsize::new(1).unwrap(), Duration::from_secs(1))
            .get_or_try_insert::<()>(key("a"), || Ok(tenant("a")))
            .unwrap();
        assert!(made);
    }

    #[test]
    fn idle_tenants_are_dropped() {
        let cache = TenantCache::new(NonZeroUsize::new(4).unwrap(), Duration::from_millis(20));
        cache
            .get_or_try_insert::<()>(key("a"), || Ok(tenant("a")))
            .unwrap();
        std::thread::sleep(Duration::from_millis(40));
        cache
            .get_or_try_insert::<()>(key("b"), || Ok(tenant("b")))
            .unwrap();
        assert_eq!(cache.sweep(), 1);
        assert_eq!(cache.len(), 1);
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(&key("b")).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_failed_build_inserts_nothing() {
        let cache = TenantCache::new(NonZeroUsize::new(4).unwrap(), Duration::from_secs(60));
        assert!(cache.get_or_try_insert(key("a"), || Err("no")).is_err());
        assert!(cache.is_empty());
    }
}
