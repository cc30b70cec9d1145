//! Data a backend keeps in this process ([`LocalData`], the sandbox's links), and the scoping
//! that makes idempotency entries made against it go with it.
//!
//! It must not read or change entries itself: it only asks the store to forget a scope.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::store::IdempotencyStore;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// Names this process among every process that ever ran: instance numbers restart at 1 with each
/// process, and a scope kept in a shared store must not meet a later process's data.
static PROCESS: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// Data a backend keeps in this process and loses with the backend instance: the sandbox's links.
///
/// Idempotency entries made against it are scoped to this instance, so once the data is gone (its
/// tenant evicted from the cache, or idle too long) a repeat of a key finds no entry and creates
/// afresh: no replay can answer a link that no longer exists. And they leave the store when the
/// instance drops, rather than waiting for their 24 hours.
pub(crate) struct LocalData {
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
    pub(crate) fn new() -> Self {
        LocalData {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            scopes: Mutex::new(Vec::new()),
        }
    }

    /// The scope of `tenant`'s entries against this data, wherever they are kept.
    pub(crate) fn name(&self, tenant: &str) -> String {
        format!("{tenant}#local-{}-{}", &PROCESS[..12], self.instance)
    }

    /// The scope of `tenant`'s entries against this data in `store`, which forgets them when
    /// the data is dropped.
    pub(crate) fn scope(&self, store: &Arc<IdempotencyStore>, tenant: &str) -> String {
        let scope = self.name(tenant);
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
