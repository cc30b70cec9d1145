//! Which tenant opened which MCP session: a session answers only the key that opened it.
//!
//! rmcp creates sessions and knows nothing of keys, so the gate records the owner (and the client
//! address it came from) when an `initialize` answer carries a new `Mcp-Session-Id`, and checks
//! it on every later request. A session id this table does not know is refused (fail closed),
//! whether rmcp still has it or not.
//!
//! The table is bounded three ways, and no tenant can close another tenant's session:
//! - per tenant (`--max-sessions-per-tenant`): a tenant at its cap that opens one more loses its
//!   own least recently used session;
//! - per client address (`--max-sessions-per-client`): an address at its cap gets `429` for a new
//!   session, unless the opening tenant gives up one of its own sessions from that address;
//! - in all (`--max-sessions`), the last bound: a full table refuses new sessions with `503`
//!   rather than close anyone's, again unless the opening tenant gives up one of its own.
//!
//! A session that is given up or refused is closed in rmcp too, so sessions (each a task in rmcp)
//! stay bounded. Idle ones are forgotten and closed by the periodic sweep.

use std::collections::HashMap;
use std::net::IpAddr;
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
    client: IpAddr,
    last_seen: Instant,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// Opened by this tenant.
    Mine,
    /// Opened by another tenant.
    Foreign,
    /// Not a session this server knows (closed, expired, forgotten, or made up).
    Unknown,
}

/// Why a new session was not recorded (and was closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// The client address is at its cap, and the tenant has no session from it to give up.
    Client,
    /// The table is full, and the tenant has no session to give up.
    Full,
}

/// The caps of a [`SessionOwners`] table (`0` turns a per-tenant or per-client cap off).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionCaps {
    pub total: NonZeroUsize,
    pub per_tenant: u32,
    pub per_client: u32,
}

struct Table {
    /// Every session, in order of last use.
    all: LruCache<Arc<str>, Owner>,
    /// Each tenant's sessions in the same order, with the client address each came from.
    by_tenant: HashMap<TenantKey, LruCache<Arc<str>, IpAddr>>,
    /// How many sessions each client address opened.
    by_client: HashMap<IpAddr, u32>,
}

impl Table {
    fn remove(&mut self, id: &str) -> bool {
        let Some(owner) = self.all.pop(id) else {
            return false;
        };
        if let Some(mine) = self.by_tenant.get_mut(&owner.tenant) {
            mine.pop(id);
            if mine.is_empty() {
                self.by_tenant.remove(&owner.tenant);
            }
        }
        if let Some(count) = self.by_client.get_mut(&owner.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_client.remove(&owner.client);
            }
        }
        true
    }
}

pub(crate) struct SessionOwners {
    table: Mutex<Table>,
    caps: SessionCaps,
    idle: Duration,
    manager: Arc<LocalSessionManager>,
}

impl SessionOwners {
    /// `manager` is the one rmcp serves sessions from: sessions given up, refused or expired are
    /// closed in it.
    pub(crate) fn new(caps: SessionCaps, manager: Arc<LocalSessionManager>) -> Self {
        SessionOwners {
            table: Mutex::new(Table {
                // Bounded by `caps.total`, which `record` enforces itself: a full table refuses
                // rather than evict.
                all: LruCache::unbounded(),
                by_tenant: HashMap::new(),
                by_client: HashMap::new(),
            }),
            caps,
            // rmcp closes a session idle this long; a little slack so we never forget first.
            idle: SessionConfig::DEFAULT_KEEP_ALIVE + Duration::from_secs(60),
            manager,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who owns session `id`, from `tenant`'s point of view. Marks the session as just used.
    pub(crate) fn check(&self, id: &str, tenant: &TenantKey) -> Ownership {
        if id.len() > MAX_SESSION_ID_LEN {
            return Ownership::Unknown;
        }
        let mut table = self.lock();
        match table.all.get_mut(id) {
            Some(owner) if owner.tenant == *tenant => {
                owner.last_seen = Instant::now();
                if let Some(mine) = table.by_tenant.get_mut(tenant) {
                    mine.promote(id);
                }
                Ownership::Mine
            }
            Some(_) => Ownership::Foreign,
            None => Ownership::Unknown,
        }
    }

    /// Records that `tenant` opened session `id` from `client`, giving up the tenant's own least
    /// recently used session if a cap requires it. With no room (and nothing of its own to give
    /// up), the new session is closed and not recorded.
    pub(crate) fn record(&self, id: &str, tenant: TenantKey, client: IpAddr) -> Result<(), NoRoom> {
        let id: Arc<str> = Arc::from(id);
        let mut given_up = None;
        let outcome = {
            let mut table = self.lock();
            if table.all.contains(&id) {
                return Ok(());
            }
            let mine = table.by_tenant.get(&tenant);
            let tenant_full = self.caps.per_tenant > 0
                && mine.is_some_and(|m| m.len() >= self.caps.per_tenant as usize);
            let client_full = self.caps.per_client > 0
                && table.by_client.get(&client).copied().unwrap_or(0) >= self.caps.per_client;
            let table_full = table.all.len() >= self.caps.total.get();
            let room = if tenant_full || client_full || table_full {
                // The tenant's least recently used session; from this address if the address is
                // what is full. Giving up any one of them frees a place in every cap it counts in.
                let victim = mine.and_then(|m| {
                    m.iter()
                        .rev()
                        .find(|(_, from)| !client_full || **from == client)
                        .map(|(old, _)| old.clone())
                });
                match victim {
                    Some(old) => {
                        table.remove(&old);
                        given_up = Some(old);
                        Ok(())
                    }
                    None if client_full => Err(NoRoom::Client),
                    None => Err(NoRoom::Full),
                }
            } else {
                Ok(())
            };
            if room.is_ok() {
                table.all.push(
                    id.clone(),
                    Owner {
                        tenant,
                        client,
                        last_seen: Instant::now(),
                    },
                );
                table
                    .by_tenant
                    .entry(tenant)
                    .or_insert_with(LruCache::unbounded)
                    .push(id.clone(), client);
                *table.by_client.entry(client).or_insert(0) += 1;
            }
            room
        };
        if let Some(old) = given_up {
            tracing::info!(
                "a session cap is reached: closing the opening tenant's least recently used session"
            );
            self.close(old);
        }
        if outcome.is_err() {
            self.close(id);
        }
        outcome
    }

    /// Forgets session `id` (the client deleted it).
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Forgets and closes sessions unused for longer than rmcp keeps them.
    pub(crate) fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut table = self.lock();
            while let Some((id, owner)) = table.all.peek_lru() {
                if now.duration_since(owner.last_seen) <= self.idle {
                    break;
                }
                let id = id.clone();
                table.remove(&id);
                expired.push(id);
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

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().all.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(total: usize, per_tenant: u32, per_client: u32) -> SessionOwners {
        SessionOwners::new(
            SessionCaps {
                total: NonZeroUsize::new(total).unwrap(),
                per_tenant,
                per_client,
            },
            Arc::new(LocalSessionManager::default()),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn sessions_answer_their_owner_only() {
        let owners = table(8, 0, 0);
        let a = TenantKey::derive(&[b"a"]);
        let b = TenantKey::derive(&[b"b"]);
        owners.record("s1", a, ip("10.0.0.1")).unwrap();
        assert_eq!(owners.check("s1", &a), Ownership::Mine);
        assert_eq!(owners.check("s1", &b), Ownership::Foreign);
        assert_eq!(owners.check("nope", &a), Ownership::Unknown);
        assert_eq!(owners.check(&"x".repeat(500), &a), Ownership::Unknown);
        owners.forget("s1");
        assert_eq!(owners.check("s1", &a), Ownership::Unknown);
        assert_eq!(owners.sweep(), 0);
        assert!(owners.is_empty());
    }

    #[tokio::test]
    async fn a_tenant_at_its_cap_loses_its_own_oldest_session_only() {
        let owners = table(100, 2, 0);
        let victim = TenantKey::derive(&[b"victim"]);
        let flood = TenantKey::derive(&[b"flood"]);
        owners.record("v", victim, ip("10.0.0.1")).unwrap();
        owners.record("f0", flood, ip("10.0.0.2")).unwrap();
        owners.record("f1", flood, ip("10.0.0.2")).unwrap();
        // f0 was used since: f1 is the flood's least recently used.
        assert_eq!(owners.check("f0", &flood), Ownership::Mine);
        for i in 2..50 {
            owners
                .record(&format!("f{i}"), flood, ip("10.0.0.2"))
                .unwrap();
        }
        assert_eq!(owners.len(), 3);
        assert_eq!(owners.check("v", &victim), Ownership::Mine);
        assert_eq!(owners.check("f1", &flood), Ownership::Unknown);
        assert_eq!(owners.check("f49", &flood), Ownership::Mine);
    }

    #[tokio::test]
    async fn a_full_table_refuses_rather_than_evict_another_tenant() {
        let owners = table(3, 0, 0);
        let (a, b, c) = (
            TenantKey::derive(&[b"a"]),
            TenantKey::derive(&[b"b"]),
            TenantKey::derive(&[b"c"]),
        );
        owners.record("a1", a, ip("10.0.0.1")).unwrap();
        owners.record("b1", b, ip("10.0.0.2")).unwrap();
        owners.record("b2", b, ip("10.0.0.2")).unwrap();
        // A brand-new tenant: nothing of its own to give up.
        assert_eq!(owners.record("c1", c, ip("10.0.0.3")), Err(NoRoom::Full));
        assert_eq!(owners.check("c1", &c), Ownership::Unknown);
        // A tenant with sessions rotates its own.
        owners.record("b3", b, ip("10.0.0.2")).unwrap();
        assert_eq!(owners.check("b1", &b), Ownership::Unknown);
        assert_eq!(owners.check("a1", &a), Ownership::Mine);
        assert_eq!(owners.len(), 3);
    }

    #[tokio::test]
    async fn an_address_at_its_cap_cannot_close_other_tenants_sessions() {
        let owners = table(100, 0, 2);
        let here = ip("10.0.0.9");
        let (a, b) = (TenantKey::derive(&[b"a"]), TenantKey::derive(&[b"b"]));
        owners.record("a1", a, here).unwrap();
        owners.record("b1", b, here).unwrap();
        // b elsewhere does not count against this address.
        owners.record("b-away", b, ip("10.0.0.10")).unwrap();
        // At the address's cap: b gives up its own session from here, never a's.
        owners.record("b2", b, here).unwrap();
        assert_eq!(owners.check("b1", &b), Ownership::Unknown);
        assert_eq!(owners.check("b-away", &b), Ownership::Mine);
        assert_eq!(owners.check("a1", &a), Ownership::Mine);
        // A third tenant from the same address has nothing here to give up.
        let c = TenantKey::derive(&[b"c"]);
        assert_eq!(owners.record("c1", c, here), Err(NoRoom::Client));
        assert_eq!(owners.check("a1", &a), Ownership::Mine);
        assert_eq!(owners.check("b2", &b), Ownership::Mine);
        // Closing one makes room again.
        owners.forget("a1");
        owners.record("c1", c, here).unwrap();
    }
}
