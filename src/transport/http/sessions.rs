//! Which tenant opened which MCP session: a session answers only the key that opened it.
//!
//! rmcp creates sessions and knows nothing of keys, so the gate records the owner when an
//! `initialize` answer carries a new `Mcp-Session-Id`, and checks it on every later request. A
//! session id this table does not know is refused (fail closed), whether rmcp still has it or
//! not. The table is bounded: recording one more session than `--max-sessions` forgets the least
//! recently used one and closes it in rmcp too, so sessions (each a task in rmcp) are bounded.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};

use crate::tenant::cache::TenantKey;

/// Longest session id looked up (rmcp's are UUIDs).
const MAX_SESSION_ID_LEN: usize = 128;

struct Owner {
    tenant: TenantKey,
    last_seen: Instant,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Opened by this tenant.
    Mine,
    /// Opened by another tenant.
    Foreign,
    /// Not a session this server knows (closed, expired, forgotten, or made up).
    Unknown,
}

pub struct SessionOwners {
    owners: Mutex<LruCache<Arc<str>, Owner>>,
    idle: Duration,
    manager: Arc<LocalSessionManager>,
}

impl SessionOwners {
    /// `manager` is the one rmcp serves sessions from: forgotten sessions are closed in it.
    pub fn new(capacity: NonZeroUsize, manager: Arc<LocalSessionManager>) -> Self {
        SessionOwners {
            owners: Mutex::new(LruCache::new(capacity)),
            // rmcp closes a session idle this long; a little slack so we never forget first.
            idle: SessionConfig::DEFAULT_KEEP_ALIVE + Duration::from_secs(60),
            manager,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Arc<str>, Owner>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who owns session `id`, from `tenant`'s point of view. Marks the session as just used.
    pub fn check(&self, id: &str, tenant: &TenantKey) -> Ownership {
        if id.len() > MAX_SESSION_ID_LEN {
            return Ownership::Unknown;
        }
        let mut owners = self.lock();
        match owners.get_mut(id) {
            Some(owner) if owner.tenant == *tenant => {
                owner.last_seen = Instant::now();
                Ownership::Mine
            }
            Some(_) => Ownership::Foreign,
            None => Ownership::Unknown,
        }
    }

    /// Records that `tenant` opened session `id`; closes whichever session this pushes out.
    pub fn record(&self, id: &str, tenant: TenantKey) {
        let id: Arc<str> = Arc::from(id);
        let evicted = self.lock().push(
            id.clone(),
            Owner {
                tenant,
                last_seen: Instant::now(),
            },
        );
        if let Some((old, _)) = evicted
            && old != id
        {
            tracing::info!("session table full: closing the least recently used session");
            self.close(old);
        }
    }

    /// Forgets session `id` (the client deleted it).
    pub fn forget(&self, id: &str) {
        self.lock().pop(id);
    }

    /// Forgets and closes sessions unused for longer than rmcp keeps them.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut owners = self.lock();
            while let Some((_, owner)) = owners.peek_lru() {
                if now.duration_since(owner.last_seen) <= self.idle {
                    break;
                }
                if let Some((id, _)) = owners.pop_lru() {
                    expired.push(id);
                }
            }
        }
        let count = expired.len();
        for id in expired {
            self.close(id);
        }
        count
    }

    fn close(&self, id: Arc<str>) {
        let manager = self.manager.clone();
        // Only reachable from within the server's runtime (the gate and the sweeper).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = manager.close_session(&id).await;
            });
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_answer_their_owner_only_and_are_bounded() {
        let owners = SessionOwners::new(
            NonZeroUsize::new(2).unwrap(),
            Arc::new(LocalSessionManager::default()),
        );
        let a = TenantKey::derive(&[b"a"]);
        let b = TenantKey::derive(&[b"b"]);
        owners.record("s1", a);
        assert_eq!(owners.check("s1", &a), Ownership::Mine);
        assert_eq!(owners.check("s1", &b), Ownership::Foreign);
        assert_eq!(owners.check("nope", &a), Ownership::Unknown);
        assert_eq!(owners.check(&"x".repeat(500), &a), Ownership::Unknown);
        owners.record("s2", b);
        owners.record("s3", b);
        assert_eq!(owners.len(), 2);
        assert_eq!(owners.check("s1", &a), Ownership::Unknown);
        owners.forget("s2");
        assert_eq!(owners.check("s2", &b), Ownership::Unknown);
        assert_eq!(owners.sweep(), 0);
        assert!(!owners.is_empty());
    }
}
