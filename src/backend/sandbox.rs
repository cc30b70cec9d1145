//! The embedded sandbox: behaves like Stream, in memory, with no network and no key.
//!
//! It enforces what Stream enforces (products must exist, one-time and recurring products cannot
//! be mixed, every product needs a price in the link's currency, exact totals, statuses, limits)
//! so that what works here works on Stream. One [`SandboxBackend`] is one tenant's data; it
//! disappears with the tenant.
//!
//! # Memory
//!
//! The sandbox is for trying things out, and over HTTP anyone with any token is a tenant, so what
//! it holds is bounded three ways ([`SandboxLimits`]): links per tenant, bytes per tenant, and
//! bytes for all tenants of the process together ([`SandboxPool`]). A link is charged what it
//! really holds ([`stored_size`]): every string's heap allocation as the allocator rounds it, plus
//! the fixed size of the link, its line items, and each metadata entry's share of the map —
//! never an estimate from character counts that a hostile input could beat. A create past a
//! budget is refused and nothing is stored; a full process budget refuses new links for every
//! tenant and never removes anyone's links to make room. Bytes return to the pool when a tenant
//! is dropped (evicted or idle, see the tenant cache).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Backend, LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate, TargetStatus,
    page_by_item_id,
};
use crate::domain::{CurrencyCode, Cursor, Money, MoneyView, PaymentLinkId};
use crate::error::{Error, Result, UpstreamContext};
use crate::idempotency::LocalData;
use crate::model::{
    BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product, ProductKind, visible_metadata,
};
use crate::observability::metrics;

/// Links of the sandbox live under this host, which can never resolve (RFC 6761 `.invalid`).
pub const SANDBOX_URL_BASE: &str = "https://sandbox.paylink.invalid/pay/";

/// Default cap on links one sandbox tenant may hold.
pub const DEFAULT_MAX_LINKS: usize = 1000;

/// Default bytes one sandbox tenant's links may hold: a thousand links of about 8 KB, or about
/// seventy carrying the most metadata allowed.
pub const DEFAULT_MAX_TENANT_BYTES: usize = 8 * 1024 * 1024;

/// Default bytes all sandbox tenants of the process may hold together.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The most JSON one sandbox link can take in an answer, from the input limits: 49 metadata
/// entries (keys of 40 four-byte characters, values of 500 control characters, each escaped as 6
/// bytes), a 160-character name, 500-character description and inactive message of four-byte
/// characters, two 2000-byte redirect URLs of escaped bytes, and the fixed fields. About 185 KB;
/// so a sandbox list page is at most `max(--max-page-bytes, MAX_LINK_JSON + PAGE_ENVELOPE)`.
pub const MAX_LINK_JSON: usize = 192 * 1024;

/// The byte budget shared by every sandbox tenant of a process.
#[derive(Debug)]
pub struct SandboxPool {
    max_bytes: usize,
    used: AtomicUsize,
}

impl SandboxPool {
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(SandboxPool {
            max_bytes,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held by all tenants now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Takes `bytes` from the budget, or nothing if they do not fit.
    fn reserve(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.max_bytes)
            });
        if let Ok(before) = taken {
            metrics::sandbox_bytes(before + bytes);
        }
        taken.is_ok()
    }

    fn release(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        metrics::sandbox_bytes(before.saturating_sub(bytes));
    }
}

/// The bounds of one sandbox tenant, and the pool it shares with the others.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    pub max_links: usize,
    pub max_tenant_bytes: usize,
    pub pool: Arc<SandboxPool>,
}

struct CatalogProduct {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    interval: Option<&'static str>,
    /// (currency, decimal price)
    prices: &'static [(&'static str, &'static str)],
}

// Stable UUID v4 ids (version nibble 4, variant 8..b) so tests, docs and models can rely on them.
const CATALOG: &[CatalogProduct] = &[
    CatalogProduct {
        id: "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f",
        name: "Arabica coffee beans, 1 kg",
        description: "Single-origin beans from Jazan, roasted weekly.",
        interval: None,
        prices: &[("SAR", "89.00"), ("USD", "23.75")],
    },
    CatalogProduct {
        id: "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d",
        name: "Ceramic mug",
        description: "Hand-glazed 350 ml mug.",
        interval: None,
        prices: &[("SAR", "35.50"), ("KWD", "2.950")],
    },
    CatalogProduct {
        id: "d4e5f6a7-b8c9-4d0e-a1f2-a3b4c5d6e7f8",
        name: "Dallah coffee pot",
        description: "Brass dallah, hand-finished.",
        interval: None,
        prices: &[("SAR", "420.00"), ("KWD", "34.125"), ("BHD", "42.300")],
    },
    CatalogProduct {
        id: "5e6f7a8b-9c0d-4e1f-b2a3-c4d5e6f7a8b9",
        name: "Barista workshop ticket",
        description: "Three-hour hands-on class.",
        interval: None,
        prices: &[("SAR", "250.00"), ("USD", "66.67"), ("AED", "245.00")],
    },
    CatalogProduct {
        id: "9c8b7a6f-5e4d-4c3b-9a2f-1e0d9c8b7a6f",
        name: "Coffee club, monthly",
        description: "A bag of beans every month.",
        interval: Some("month"),
        prices: &[("SAR", "59.00"), ("USD", "15.75")],
    },
    CatalogProduct {
        id: "2b3c4d5e-6f7a-4b8c-8d9e-0f1a2b3c4d5e",
        name: "Coffee club, yearly",
        description: "Twelve bags of beans a year, two months free.",
        interval: Some("year"),
        prices: &[("SAR", "590.00"), ("USD", "157.50")],
    },
];

struct CatalogCoupon {
    id: &'static str,
    code: &'static str,
    percent_off: u8,
}

const COUPONS: &[CatalogCoupon] = &[
    CatalogCoupon {
        id: "7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a",
        code: "WELCOME10",
        percent_off: 10,
    },
    CatalogCoupon {
        id: "1a2b3c4d-5e6f-4a7b-9c8d-e9f0a1b2c3d4",
        code: "VIP25",
        percent_off: 25,
    },
];

/// The seeded catalog as products, built once.
static PRODUCTS: LazyLock<Vec<Product>> = LazyLock::new(|| {
    CATALOG
        .iter()
        .map(|p| Product {
            id: p.id.to_owned(),
            name: Some(p.name.to_owned()),
            description: Some(p.description.to_owned()),
            kind: Some(kind_of(p)),
            interval: p.interval.map(str::to_owned),
            prices: p
                .prices
                .iter()
                .filter_map(|(c, amount)| price(c, amount))
                .map(Money::view)
                .collect(),
        })
        .collect()
});

fn kind_of(p: &CatalogProduct) -> ProductKind {
    if p.interval.is_some() {
        ProductKind::Recurring
    } else {
        ProductKind::OneTime
    }
}

fn price(currency: &str, amount: &str) -> Option<Money> {
    let currency = CurrencyCode::parse(currency, "currency").ok()?;
    Money::parse_decimal(amount, currency).ok()
}

/// A human-readable list of the seeded coupons, for the server instructions.
pub fn coupon_summary() -> String {
    COUPONS
        .iter()
        .map(|c| format!("{} ({}% off, id {})", c.code, c.percent_off, c.id))
        .collect::<Vec<_>>()
        .join("; ")
}

fn not_found(what: &str, id: &str, field: &str) -> Error {
    Error::not_found(
        format!("no {what} with id {id} in the sandbox"),
        UpstreamContext::default(),
    )
    .on_field(field)
}

fn coupon_percent(id: &str, field: &str) -> Result<u8> {
    COUPONS
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.percent_off)
        .ok_or_else(|| not_found("coupon", id, field))
}

/// `amount` less `percent`% of it, rounding the discount down (the payer never pays less than
/// the exact discounted amount rounded up to the minor unit).
fn discounted(amount: Money, percent: u32) -> Money {
    let percent = i128::from(percent.min(100));
    let discount = i128::from(amount.minor()) * percent / 100;
    // discount <= amount, so the difference fits back in an i64.
    Money::from_minor(amount.minor() - discount as i64, amount.currency())
}

struct StoredLink {
    link: PaymentLink,
    items: Vec<LineItem>,
    created: DateTime<Utc>,
}

/// What a heap allocation of `capacity` bytes costs: glibc's chunks are the request plus an
/// 8-byte header, rounded up to 16, at least 32. Nothing for an empty string.
fn heap(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        (capacity.saturating_add(8 + 15) & !15).max(32)
    }
}

fn heap_str(s: &str) -> usize {
    heap(s.len())
}

fn heap_opt(s: &Option<String>) -> usize {
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
const METADATA_ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<String>() * 3 / 2 + 16;

/// A link's fixed share of the tenant's store: the `StoredLink` itself in the map's slot, the
/// map's copy of the id as its key (its control byte and spare capacity rounded up), and the
/// order queue's copy of the id.
const LINK_OVERHEAD: usize =
    std::mem::size_of::<StoredLink>() + 3 * std::mem::size_of::<String>() + 32;

/// What a stored link holds, in bytes: see the module documentation.
fn stored_size(s: &StoredLink) -> usize {
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

#[derive(Default)]
struct Store {
    links: HashMap<String, StoredLink>,
    /// Creation order, oldest first: the order listings use.
    order: VecDeque<String>,
    /// What the links hold ([`stored_size`]), all taken from the pool.
    bytes: usize,
}

/// One tenant's sandbox.
pub struct SandboxBackend {
    store: Mutex<Store>,
    limits: SandboxLimits,
    /// The lifetime of this tenant's data: its idempotency keys go with it.
    local: LocalData,
}

impl SandboxBackend {
    /// A tenant with at most `max_links` links, the default byte budget and a pool of its own.
    pub fn new(max_links: usize) -> Self {
        Self::with_limits(SandboxLimits {
            max_links,
            max_tenant_bytes: DEFAULT_MAX_TENANT_BYTES,
            pool: SandboxPool::new(DEFAULT_MAX_BYTES),
        })
    }

    /// A tenant within `limits`, sharing their pool with every other tenant built from them.
    pub fn with_limits(limits: SandboxLimits) -> Self {
        SandboxBackend {
            store: Mutex::new(Store::default()),
            limits,
            local: LocalData::new(),
        }
    }

    /// Bytes this tenant's links hold.
    pub fn bytes(&self) -> usize {
        self.store().bytes
    }

    /// Takes `bytes` more for this tenant, from its budget and the pool, or says why not.
    fn charge(&self, store: &mut Store, bytes: usize, what: &str) -> Result<()> {
        let max = self.limits.max_tenant_bytes;
        if store.bytes.saturating_add(bytes) > max {
            return Err(Error::quota_exhausted(format!(
                "this sandbox tenant's links hold {} of its {max} bytes and {what} needs {bytes} more, so nothing was stored. \
The sandbox is for trying things out and keeps no data: use less metadata or shorter texts, or start over with a fresh sandbox \
(over HTTP another Bearer token, or this one after it has been idle; over stdio restart the server). Deactivating links frees nothing",
                store.bytes
            )));
        }
        if !self.limits.pool.reserve(bytes) {
            return Err(Error::rate_limited(
                format!(
                    "the sandbox of this server is full: all its tenants' links together hold {} of {} bytes, so nothing was stored. \
No tenant's links are removed to make room; space comes back as idle tenants are dropped. Try again later, or use a sandbox of your own \
(paylink-mcp over stdio)",
                    self.limits.pool.used(),
                    self.limits.pool.max_bytes()
                ),
                None,
                UpstreamContext::default(),
            ));
        }
        store.bytes += bytes;
        Ok(())
    }

    fn refund(&self, store: &mut Store, bytes: usize) {
        let bytes = bytes.min(store.bytes);
        store.bytes -= bytes;
        self.limits.pool.release(bytes);
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-written (every mutation is
        // a single insert), so a poisoned lock is still consistent: keep serving.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build(&self, request: NewPaymentLink, now: DateTime<Utc>) -> Result<StoredLink> {
        let currency = request.currency.unwrap_or_else(CurrencyCode::sar);
        let mut kinds = Vec::with_capacity(request.items.len());
        let mut items = Vec::with_capacity(request.items.len());
        let mut original_total = Money::from_minor(0, currency);
        let mut item_total = Money::from_minor(0, currency);
        let overflow = |field: String| Error::validation(field, "the total is too large");
        let mut interval = None;
        for (i, item) in request.items.iter().enumerate() {
            let field = format!("items[{i}].product_id");
            let product = CATALOG
                .iter()
                .find(|p| p.id == item.product_id.as_str())
                .ok_or_else(|| not_found("product", item.product_id.as_str(), &field))?;
            let unit = product
                .prices
                .iter()
                .find(|(c, _)| *c == currency.code())
                .and_then(|(c, a)| price(c, a))
                .ok_or_else(|| {
                    let have: Vec<&str> = product.prices.iter().map(|(c, _)| *c).collect();
                    Error::validation(
                        &field,
                        format!(
                            "product {} has no price in {currency}; it is priced in {}",
                            product.name,
                            have.join(", ")
                        ),
                    )
                })?;
            kinds.push(kind_of(product));
            interval = interval.or(product.interval);
            let line = unit
                .checked_mul(item.quantity.get())
                .ok_or_else(|| overflow(format!("items[{i}].quantity")))?;
            let mut percent = 0u32;
            for (c, coupon) in item.coupons.iter().enumerate() {
                percent += u32::from(coupon_percent(
                    coupon.as_str(),
                    &format!("items[{i}].coupons[{c}]"),
                )?);
            }
            let line_total = discounted(line, percent);
            original_total = original_total
                .checked_add(line)
                .ok_or_else(|| overflow("items".into()))?;
            item_total = item_total
                .checked_add(line_total)
                .ok_or_else(|| overflow("items".into()))?;
            items.push(LineItem {
                id: Uuid::new_v4().to_string(),
                product_id: Some(product.id.to_owned()),
                product_name: Some(product.name.to_owned()),
                quantity: Some(item.quantity.get()),
                unit_amount: Some(unit.view()),
                total: Some(line_total.view()),
                kind: Some(kind_of(product)),
                interval: product.interval.map(str::to_owned),
            });
        }
        if kinds.contains(&ProductKind::OneTime) && kinds.contains(&ProductKind::Recurring) {
            return Err(Error::validation(
                "items",
                "one-time and recurring products cannot be mixed in one payment link; create one link per kind",
            ));
        }
        let recurring: Vec<_> = request
            .items
            .iter()
            .filter_map(|i| CATALOG.iter().find(|p| p.id == i.product_id.as_str()))
            .filter_map(|p| p.interval)
            .collect();
        if recurring.windows(2).any(|w| w[0] != w[1]) {
            return Err(Error::validation(
                "items",
                "recurring products on one link must share a billing interval",
            ));
        }
        let mut link_percent = 0u32;
        for (c, coupon) in request.coupons.iter().enumerate() {
            link_percent += u32::from(coupon_percent(coupon.as_str(), &format!("coupons[{c}]"))?);
        }
        let total = discounted(item_total, link_percent);
        let id = Uuid::new_v4().to_string();
        let metadata: Vec<(String, serde_json::Value)> = request
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let link = PaymentLink {
            url: Some(format!("{SANDBOX_URL_BASE}{id}")),
            id,
            name: Some(request.name.as_str().to_owned()),
            description: request.description.map(|d| d.as_str().to_owned()),
            status: Some(LinkStatus::Active),
            currency: Some(currency.code().to_owned()),
            total: Some(total.view()),
            original_total: Some(original_total.view()),
            amount_collected: Some(Money::from_minor(0, currency).view()),
            item_count: Some(items.len() as u32),
            max_number_of_payments: request.max_number_of_payments.map(|m| m.get()),
            valid_until: request.valid_until.map(|v| v.to_rfc3339()),
            success_redirect_url: request.success_redirect_url.map(|u| u.as_str().to_owned()),
            failure_redirect_url: request.failure_redirect_url.map(|u| u.as_str().to_owned()),
            recurring_interval: interval.map(str::to_owned),
            inactive_message: None,
            created_at: Some(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            metadata: visible_metadata(metadata.iter().map(|(k, v)| (k, v))),
            backend: BackendKind::Sandbox,
            livemode: false,
        };
        Ok(StoredLink {
            link,
            items,
            created: now,
        })
    }

    fn with_link<T>(&self, id: &PaymentLinkId, f: impl FnOnce(&StoredLink) -> T) -> Result<T> {
        let store = self.store();
        store
            .links
            .get(id.as_str())
            .map(f)
            .ok_or_else(|| not_found("payment link", id.as_str(), "payment_link_id"))
    }
}

#[async_trait]
impl Backend for SandboxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }

    fn livemode(&self) -> bool {
        false
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let stored = self.build(request, Utc::now())?;
        let size = stored_size(&stored);
        let mut store = self.store();
        if store.links.len() >= self.limits.max_links {
            return Err(Error::quota_exhausted(format!(
                "this sandbox tenant already holds the maximum of {} links; the sandbox is for trying things out, its data is not kept",
                self.limits.max_links
            )));
        }
        self.charge(&mut store, size, "this link")?;
        let link = stored.link.clone();
        store.order.push_back(link.id.clone());
        store.links.insert(link.id.clone(), stored);
        Ok(link)
    }

    fn local_data(&self) -> Option<&LocalData> {
        Some(&self.local)
    }

    async fn get_payment_link(&self, id: &PaymentLinkId) -> Result<PaymentLink> {
        self.with_link(id, |s| s.link.clone())
    }

    async fn list_line_items(&self, query: LineItemsQuery) -> Result<Page<LineItem>> {
        let items = self.with_link(&query.payment_link_id, |s| s.items.clone())?;
        page_by_item_id(items, &query)
    }

    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let products: Vec<&Product> = PRODUCTS.iter().collect();
        Ok(page_of(&products, cursor, query.max_bytes))
    }

    async fn list_payment_links(&self, query: LinksQuery) -> Result<Page<PaymentLink>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let store = self.store();
        let matching: Vec<&PaymentLink> = store
            .order
            .iter()
            .rev()
            .filter_map(|id| store.links.get(id))
            .filter(|s| query.status.is_none_or(|st| s.link.status == Some(st)))
            .filter(|s| query.created_from.is_none_or(|f| s.created >= f))
            .filter(|s| query.created_to.is_none_or(|t| s.created <= t))
            .map(|s| &s.link)
            .collect();
        Ok(page_of(&matching, cursor, query.max_bytes))
    }

    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink> {
        let mut store = self.store();
        let (completed, old_message) = store
            .links
            .get(update.payment_link_id.as_str())
            .map(|s| {
                (
                    s.link.status == Some(LinkStatus::Completed),
                    heap_opt(&s.link.inactive_message),
                )
            })
            .ok_or_else(|| {
                not_found(
                    "payment link",
                    update.payment_link_id.as_str(),
                    "payment_link_id",
                )
            })?;
        if completed {
            return Err(Error::validation(
                "status",
                "this link is completed (it reached its payment limit); a completed link cannot be reactivated or deactivated",
            ));
        }
        // The only thing that changes size is the message payers see: charge or refund it
        // before the change, so a refused update changes nothing.
        let new_message = match update.status {
            TargetStatus::Inactive => heap_opt(&update.message),
            TargetStatus::Active => 0,
        };
        if new_message > old_message {
            self.charge(&mut store, new_message - old_message, "this message")?;
        } else {
            self.refund(&mut store, old_message - new_message);
        }
        let Some(stored) = store.links.get_mut(update.payment_link_id.as_str()) else {
            return Err(not_found(
                "payment link",
                update.payment_link_id.as_str(),
                "payment_link_id",
            ));
        };
        match update.status {
            TargetStatus::Active => {
                stored.link.status = Some(LinkStatus::Active);
                stored.link.inactive_message = None;
            }
            TargetStatus::Inactive => {
                stored.link.status = Some(LinkStatus::Inactive);
                stored.link.inactive_message = update.message;
            }
        }
        Ok(stored.link.clone())
    }
}

impl Drop for SandboxBackend {
    fn drop(&mut self) {
        // The tenant is gone: its links' bytes go back to the pool.
        let bytes = self
            .store
            .get_mut()
            .map_or_else(|p| p.into_inner().bytes, |s| s.bytes);
        self.limits.pool.release(bytes);
    }
}

/// One page of `entries` (in listing order) at `cursor`, within the byte cap. A page-number
/// cursor names a window of `limit` entries; a page cut by the byte cap is continued in the same
/// window after its last entry ([`crate::domain::PageCursor::after`]).
fn page_of<T: Clone + serde::Serialize>(
    entries: &[&T],
    cursor: crate::domain::PageCursor,
    max_bytes: crate::domain::PageBytes,
) -> Page<T> {
    let start = cursor.offset().min(entries.len());
    let window_end = (cursor.page as usize)
        .saturating_mul(cursor.limit.get())
        .min(entries.len())
        .max(start);
    let window = &entries[start..window_end];
    let fit = max_bytes.fit(window.iter().copied(), window.len());
    let data = window[..fit.count].iter().map(|e| (*e).clone()).collect();
    let next = if fit.cut {
        Some(cursor.after(fit.count))
    } else {
        (window_end < entries.len()).then(|| cursor.next())
    };
    Page {
        data,
        has_more: next.is_some(),
        next_cursor: next.map(|c| c.encode()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_ids_are_uuid_v4_and_prices_parse() {
        for p in CATALOG {
            let u = Uuid::parse_str(p.id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{}", p.id);
            assert!(matches!(u.as_bytes()[8] >> 6, 0b10), "variant of {}", p.id);
            for (c, a) in p.prices {
                assert!(price(c, a).is_some(), "{c} {a}");
            }
        }
        for c in COUPONS {
            assert_eq!(Uuid::parse_str(c.id).unwrap().get_version_num(), 4);
        }
        assert!(CATALOG.len() >= 6);
    }

    use crate::backend::NewItem;
    use crate::domain::{
        Description, IdFormat, LinkName, Metadata, PageBytes, PageLimit, ProductId, Quantity,
        RedirectUrl, json_len,
    };
    use std::collections::BTreeMap;

    const COFFEE: &str = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";

    fn request(metadata: BTreeMap<String, String>) -> NewPaymentLink {
        NewPaymentLink {
            name: LinkName::parse("Order", "name").unwrap(),
            items: vec![NewItem {
                product_id: ProductId::parse(COFFEE, "p", IdFormat::Uuid).unwrap(),
                quantity: Quantity::parse(1, "q").unwrap(),
                coupons: vec![],
            }],
            description: None,
            currency: None,
            coupons: vec![],
            valid_until: None,
            max_number_of_payments: None,
            success_redirect_url: None,
            failure_redirect_url: None,
            organization_consumer_id: None,
            metadata: Metadata::parse(metadata, "metadata", 1).unwrap(),
            reference: String::new(),
            idempotency_key: None,
        }
    }

    /// The most metadata a create may carry: 49 values of 500 four-byte characters.
    fn heavy() -> BTreeMap<String, String> {
        (0..49)
            .map(|i| (format!("key-{i:02}"), "𝄞".repeat(500)))
            .collect()
    }

    fn limits(max_links: usize, tenant: usize, pool: &Arc<SandboxPool>) -> SandboxLimits {
        SandboxLimits {
            max_links,
            max_tenant_bytes: tenant,
            pool: pool.clone(),
        }
    }

    fn links_query(cursor: Option<Cursor>, max_bytes: usize) -> LinksQuery {
        LinksQuery {
            limit: PageLimit::parse(Some(10), "limit").unwrap(),
            max_bytes: PageBytes::new(max_bytes),
            cursor,
            status: None,
            created_from: None,
            created_to: None,
        }
    }

    #[test]
    fn a_link_is_charged_at_least_what_its_strings_hold() {
        let stored = SandboxBackend::new(10)
            .build(request(heavy()), Utc::now())
            .unwrap();
        let strings: usize = stored
            .link
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert_eq!(strings, 49 * (6 + 2000));
        let size = stored_size(&stored);
        assert!(size > strings + 49 * 64, "{size}");
        assert!(size < strings + 16 * 1024, "{size}: no wild over-charge");
        // Many tiny values cost their bookkeeping, not their two bytes.
        let tiny = (0..49).map(|i| (format!("{i}"), "x".into())).collect();
        let stored = SandboxBackend::new(10)
            .build(request(tiny), Utc::now())
            .unwrap();
        assert!(stored_size(&stored) > 49 * (2 * 32 + METADATA_ENTRY_OVERHEAD));
    }

    #[tokio::test]
    async fn a_tenant_over_its_budget_is_refused_and_nothing_is_stored() {
        let pool = SandboxPool::new(usize::MAX);
        let sandbox = SandboxBackend::with_limits(limits(1000, 500_000, &pool));
        let mut created = 0;
        let refusal = loop {
            match sandbox.create_payment_link(request(heavy())).await {
                Ok(_) => created += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(created, 4, "about 108 KB each");
        assert_eq!(refusal.kind().as_str(), "rate_limited");
        assert!(!refusal.retry_safe(), "waiting does not help");
        let message = refusal.to_string();
        assert!(message.contains("trying things out") && message.contains("fresh sandbox"));
        assert_eq!(sandbox.store().links.len(), 4);
        assert_eq!(pool.used(), sandbox.bytes());
        assert!(sandbox.bytes() <= 500_000);
        // Small links still fit in what is left.
        sandbox
            .create_payment_link(request(BTreeMap::new()))
            .await
            .unwrap();
        drop(sandbox);
        assert_eq!(pool.used(), 0, "a dropped tenant gives its bytes back");
    }

    #[tokio::test]
    async fn a_full_pool_refuses_every_tenant_and_removes_nobody() {
        let pool = SandboxPool::new(300_000);
        let a = SandboxBackend::with_limits(limits(1000, 250_000, &pool));
        let b = SandboxBackend::with_limits(limits(1000, 250_000, &pool));
        a.create_payment_link(request(heavy())).await.unwrap();
        a.create_payment_link(request(heavy())).await.unwrap();
        b.create_payment_link(request(heavy())).await.unwrap_err();
        let e = b.create_payment_link(request(heavy())).await.unwrap_err();
        assert_eq!(e.kind().as_str(), "rate_limited");
        assert!(e.retry_safe(), "space comes back as tenants leave");
        assert!(e.to_string().contains("sandbox of this server is full"));
        assert_eq!(a.store().links.len(), 2, "nobody's links removed");
        assert_eq!(b.store().links.len(), 0);
        assert!(pool.used() <= 300_000);
        drop(a);
        b.create_payment_link(request(heavy())).await.unwrap();
        assert_eq!(pool.used(), b.bytes());
    }

    #[tokio::test]
    async fn a_message_is_charged_and_refunded_and_a_refused_one_changes_nothing() {
        let pool = SandboxPool::new(usize::MAX);
        // Room for one link and a short message, not a long one.
        let one = SandboxBackend::new(1);
        one.create_payment_link(request(BTreeMap::new()))
            .await
            .unwrap();
        let sandbox = SandboxBackend::with_limits(limits(1000, one.bytes() + 100, &pool));
        let link = sandbox
            .create_payment_link(request(BTreeMap::new()))
            .await
            .unwrap();
        let id = PaymentLinkId::parse(&link.id, "id", IdFormat::Uuid).unwrap();
        let before = sandbox.bytes();
        let deactivate = |m: &str| StatusUpdate {
            payment_link_id: id.clone(),
            status: TargetStatus::Inactive,
            message: Some(m.to_owned()),
        };
        sandbox
            .update_payment_link_status(deactivate("Sold out"))
            .await
            .unwrap();
        assert_eq!(sandbox.bytes(), before + heap("Sold out".len()));
        let long = Description::parse(&"𝄞".repeat(500), "m").unwrap();
        let e = sandbox
            .update_payment_link_status(deactivate(long.as_str()))
            .await
            .unwrap_err();
        assert_eq!(e.kind().as_str(), "rate_limited");
        let l = sandbox.get_payment_link(&id).await.unwrap();
        assert_eq!(l.inactive_message.as_deref(), Some("Sold out"));
        assert_eq!(sandbox.bytes(), before + heap("Sold out".len()));
        sandbox
            .update_payment_link_status(StatusUpdate {
                payment_link_id: id.clone(),
                status: TargetStatus::Active,
                message: None,
            })
            .await
            .unwrap();
        assert_eq!(sandbox.bytes(), before);
        assert_eq!(pool.used(), before);
    }

    #[tokio::test]
    async fn pages_stop_at_their_byte_cap_and_continue_exactly_where_they_stopped() {
        let sandbox =
            SandboxBackend::with_limits(limits(1000, usize::MAX, &SandboxPool::new(usize::MAX)));
        let mut ids = Vec::new();
        for i in 0..25 {
            let metadata = if i % 3 == 0 { heavy() } else { BTreeMap::new() };
            ids.push(
                sandbox
                    .create_payment_link(request(metadata))
                    .await
                    .unwrap()
                    .id,
            );
        }
        ids.reverse(); // newest first
        let cap = 150_000;
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = sandbox
                .list_payment_links(links_query(cursor, cap))
                .await
                .unwrap();
            assert!(!page.data.is_empty());
            assert!(page.data.len() <= 10);
            let size = json_len(&page);
            assert!(size <= cap || page.data.len() == 1, "{size}");
            seen.extend(page.data.iter().map(|l| l.id.clone()));
            pages += 1;
            match page.next_cursor {
                Some(c) => {
                    assert!(page.has_more);
                    cursor = Some(Cursor::decode(&c, None).unwrap());
                }
                None => break,
            }
        }
        assert_eq!(seen, ids, "every link once, in order");
        assert!(pages > 3, "the cap, not the limit, made the pages: {pages}");
        // One link larger than the cap is still returned, alone.
        let page = sandbox
            .list_payment_links(links_query(None, 1024))
            .await
            .unwrap();
        assert_eq!(page.data.len(), 1);
        assert!(page.has_more);
    }

    #[test]
    fn the_largest_link_fits_the_stated_bound() {
        let control: String = "\u{1}".repeat(500);
        let metadata = (0..49)
            .map(|i| (format!("{i:02}{}", "𝄞".repeat(38)), control.clone()))
            .collect();
        let url = format!("https://example.com/{}", "\u{1}".repeat(1980));
        let mut r = request(metadata);
        r.name = LinkName::parse(&"𝄞".repeat(160), "name").unwrap();
        r.description = Some(Description::parse(&"𝄞".repeat(500), "d").unwrap());
        r.success_redirect_url = Some(RedirectUrl::parse(&url, "s").unwrap());
        r.failure_redirect_url = Some(RedirectUrl::parse(&url, "f").unwrap());
        let mut stored = SandboxBackend::new(1).build(r, Utc::now()).unwrap();
        stored.link.inactive_message = Some("𝄞".repeat(500));
        let size = json_len(&stored.link);
        assert!(size > 180_000, "the worst case is built: {size}");
        assert!(size <= MAX_LINK_JSON, "{size}");
    }

    #[test]
    fn discount_rounds_the_discount_down() {
        let sar = CurrencyCode::sar();
        assert_eq!(discounted(Money::from_minor(999, sar), 10).minor(), 900);
        assert_eq!(discounted(Money::from_minor(1000, sar), 150).minor(), 0);
    }
}
