//! What the sandbox holds and what it costs: one tenant's [`Store`] of links, the bytes each link
//! really holds ([`stored_size`]), the tenant's budget and the process-wide [`SandboxPool`].
//!
//! It owns the byte accounting (charge before storing, refund on change, release on drop); it
//! must not decide what a link contains (see `calls`) nor remove anyone's links to make room.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::domain::MoneyView;
use crate::error::{Error, Result, UpstreamContext};
use crate::model::{LineItem, PaymentLink};
use crate::observability::metrics;

/// Default cap on links one sandbox tenant may hold.
pub(crate) const DEFAULT_MAX_LINKS: usize = 1000;

/// Default bytes one sandbox tenant's links may hold: a thousand links of about 8 KB, or about
/// seventy carrying the most metadata allowed.
pub(crate) const DEFAULT_MAX_TENANT_BYTES: usize = 8 * 1024 * 1024;

/// Default bytes all sandbox tenants of the process may hold together.
pub(crate) const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Default bytes the sandbox tenants brought by one client address may hold together: one full
/// tenant's worth, an eighth of the pool.
pub(crate) const DEFAULT_MAX_CLIENT_BYTES: usize = DEFAULT_MAX_TENANT_BYTES;

/// The most JSON one sandbox link can take in an answer, from the input limits: 49 metadata
/// entries (keys of 40 four-byte characters, values of 500 control characters, each escaped as 6
/// bytes), a 160-character name, 500-character description and inactive message of four-byte
/// characters, two 2000-byte redirect URLs of escaped bytes, and the fixed fields. About 185 KB;
/// so a sandbox list page is at most `max(--max-page-bytes, MAX_LINK_JSON + PAGE_ENVELOPE)`.
#[cfg(test)]
pub(crate) const MAX_LINK_JSON: usize = 192 * 1024;

/// The byte budget shared by every sandbox tenant of a process, and the share of it the tenants
/// of one client address may hold.
#[derive(Debug)]
pub(crate) struct SandboxPool {
    max_bytes: usize,
    /// 0: no share of its own.
    max_per_client: usize,
    used: AtomicUsize,
    /// What each client address's tenants hold; only addresses holding something.
    clients: Mutex<HashMap<IpAddr, usize>>,
}

/// Which budget a charge did not fit.
enum Full {
    Pool,
    /// The client address's share; what its tenants hold.
    Client(usize),
}

impl SandboxPool {
    /// A pool with no per-address share (stdio: one user).
    #[cfg(test)]
    pub(crate) fn new(max_bytes: usize) -> Arc<Self> {
        Self::with_client_share(max_bytes, 0)
    }

    /// A pool of which the tenants of one client address may hold at most `max_per_client`
    /// bytes together (0: no share of its own).
    pub(crate) fn with_client_share(max_bytes: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(SandboxPool {
            max_bytes,
            max_per_client,
            used: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // One addition or subtraction per update: a poisoned lock is still consistent.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes held by all tenants now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Takes `bytes` from the budget, and from `client`'s share, or nothing if they do not fit.
    fn reserve(&self, client: Option<IpAddr>, bytes: usize) -> Result<(), Full> {
        // Held while the pool is charged, so that the share's check and charge are one step.
        let mut clients = self.clients();
        let share = client.filter(|_| self.max_per_client > 0);
        if let Some(ip) = share {
            let held = clients.get(&ip).copied().unwrap_or(0);
            if held.saturating_add(bytes) > self.max_per_client {
                return Err(Full::Client(held));
            }
        }
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.max_bytes)
            })
            .map_err(|_| Full::Pool)?;
        metrics::sandbox_bytes(before + bytes);
        if let Some(ip) = share {
            *clients.entry(ip).or_insert(0) += bytes;
        }
        Ok(())
    }

    fn release(&self, client: Option<IpAddr>, bytes: usize) {
        if let Some(ip) = client.filter(|_| self.max_per_client > 0) {
            let mut clients = self.clients();
            if let Some(held) = clients.get_mut(&ip) {
                *held = held.saturating_sub(bytes);
                if *held == 0 {
                    clients.remove(&ip);
                }
            }
        }
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        metrics::sandbox_bytes(before.saturating_sub(bytes));
    }
}

/// The bounds of one sandbox tenant, and the pool it shares with the others.
#[derive(Debug, Clone)]
pub(crate) struct SandboxLimits {
    pub max_links: usize,
    pub max_tenant_bytes: usize,
    pub pool: Arc<SandboxPool>,
    /// The client address whose share of the pool this tenant's bytes count against: over HTTP,
    /// the address that brought its token first. `None`: no share (stdio).
    pub client: Option<IpAddr>,
}

/// A link as the sandbox keeps it: the link, its line items, its creation time.
pub(super) struct StoredLink {
    pub link: PaymentLink,
    pub items: Vec<LineItem>,
    pub created: DateTime<Utc>,
}

/// What a heap allocation of `capacity` bytes costs: glibc's chunks are the request plus an
/// 8-byte header, rounded up to 16, at least 32. Nothing for an empty string.
pub(super) fn heap(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        (capacity.saturating_add(8 + 15) & !15).max(32)
    }
}

fn heap_str(s: &str) -> usize {
    heap(s.len())
}

pub(super) fn heap_opt(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, |s| heap(s.capacity()))
}

fn heap_money(m: &Option<MoneyView>) -> usize {
    m.as_ref().map_or(0, |m| {
        heap(m.amount.capacity()) + heap(m.currency.capacity())
    })
}

/// One metadata entry's share of its map besides the two strings' own heap: the key and value
/// `String`s in a B-tree node holding up to 11 of them, nodes about two-thirds full, and the
/// node's own fields.
pub(super) const METADATA_ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<String>() * 3 / 2 + 16;

/// A link's fixed share of the tenant's store: the `StoredLink` itself in the map's slot, the
/// map's copy of the id as its key (its control byte and spare capacity rounded up), and the
/// order queue's copy of the id.
const LINK_OVERHEAD: usize =
    std::mem::size_of::<StoredLink>() + 3 * std::mem::size_of::<String>() + 32;

/// What a stored link holds, in bytes: see the module documentation.
pub(super) fn stored_size(s: &StoredLink) -> usize {
    let l = &s.link;
    // The id three times: in the link, as the map's key and in the order queue.
    let mut bytes = LINK_OVERHEAD + 3 * heap(l.id.len());
    for text in [
        &l.url,
        &l.name,
        &l.description,
        &l.currency,
        &l.valid_until,
        &l.success_redirect_url,
        &l.failure_redirect_url,
        &l.recurring_interval,
        &l.inactive_message,
        &l.created_at,
    ] {
        bytes += heap_opt(text);
    }
    for money in [&l.total, &l.original_total, &l.amount_collected] {
        bytes += heap_money(money);
    }
    for (k, v) in &l.metadata {
        bytes += heap(k.capacity()) + heap(v.capacity()) + METADATA_ENTRY_OVERHEAD;
    }
    bytes += heap(s.items.capacity() * std::mem::size_of::<LineItem>());
    for item in &s.items {
        bytes += heap_str(&item.id)
            + heap_opt(&item.product_id)
            + heap_opt(&item.product_name)
            + heap_money(&item.unit_amount)
            + heap_money(&item.total)
            + heap_opt(&item.interval);
    }
    bytes
}

/// One tenant's links, and the bytes they hold.
#[derive(Default)]
pub(super) struct Store {
    pub links: HashMap<String, StoredLink>,
    /// Creation order, oldest first: the order listings use.
    pub order: VecDeque<String>,
    /// What the links hold ([`stored_size`]), all taken from the pool.
    pub bytes: usize,
}

/// The refusal of a link past the tenant's count.
pub(super) fn too_many_links(max: usize) -> Error {
    Error::quota_exhausted(format!(
        "this sandbox tenant already holds the maximum of {max} links; the sandbox is for trying things out, its data is not kept"
    ))
}

/// The refusal of a change to a completed link.
pub(super) fn completed_link() -> Error {
    Error::validation(
        "status",
        "this link is completed (it reached its payment limit); a completed link cannot be reactivated or deactivated",
    )
}

/// The refusal of `bytes` more for `what`, past the tenant's budget of `max` (it holds `held`).
pub(super) fn over_tenant_budget(held: usize, max: usize, what: &str, bytes: usize) -> Error {
    Error::quota_exhausted(format!(
        "this sandbox tenant's links hold {held} of its {max} bytes and {what} needs {bytes} more, so nothing was stored. \
The sandbox is for trying things out and keeps no data: use less metadata or shorter texts, or start over with a fresh sandbox \
(over HTTP another Bearer token, or this one after it has been idle; over stdio restart the server). Deactivating links frees nothing"
    ))
}

/// The refusal of a link when the sandbox of the server (all tenants) holds `used` of `max`.
pub(super) fn pool_full(used: usize, max: usize) -> Error {
    Error::rate_limited(
        format!(
            "the sandbox of this server is full: all its tenants' links together hold {used} of {max} bytes, so nothing was stored. \
No tenant's links are removed to make room; space comes back as idle tenants are dropped. Try again later, or use a sandbox of your own \
(paylink-mcp over stdio)"
        ),
        None,
        UpstreamContext::default(),
    )
}

impl Store {
    /// Takes `bytes` more for this tenant, from its budget and the pool, or says why not.
    pub(super) fn charge(
        &mut self,
        limits: &SandboxLimits,
        bytes: usize,
        what: &str,
    ) -> Result<()> {
        let store = self;
        let max = limits.max_tenant_bytes;
        if store.bytes.saturating_add(bytes) > max {
            return Err(over_tenant_budget(store.bytes, max, what, bytes));
        }
        match limits.pool.reserve(limits.client, bytes) {
            Ok(()) => {}
            Err(Full::Pool) => {
                return Err(pool_full(limits.pool.used(), limits.pool.max_bytes()));
            }
            Err(Full::Client(held)) => {
                return Err(Error::quota_exhausted(format!(
                    "the sandbox tenants brought to this server from your address hold {held} of the {} bytes one address may hold, and {what} needs {bytes} more, so nothing was stored. \
The sandbox is for trying things out and keeps no data: use fewer tokens, less metadata or shorter texts; space comes back as your idle \
tenants are dropped, or use a sandbox of your own (paylink-mcp over stdio)",
                    limits.pool.max_per_client
                )));
            }
        }
        store.bytes += bytes;
        Ok(())
    }

    /// Gives `bytes` back, to the pool.
    pub(super) fn refund(&mut self, limits: &SandboxLimits, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        limits.pool.release(limits.client, bytes);
    }

    /// Gives every byte this tenant holds back to the pool: the tenant is gone.
    pub(super) fn release_all(&mut self, limits: &SandboxLimits) {
        limits.pool.release(limits.client, self.bytes);
        self.bytes = 0;
    }
}
