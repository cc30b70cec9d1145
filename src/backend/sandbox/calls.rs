//! The sandbox backend: a create checked and priced against the catalog the way Stream would
//! (products must exist, kinds not mixed, a price in the link's currency, exact totals), kept in
//! the tenant's store within its byte budget; reads, listings and status changes over that store.
//!
//! It must not reach the network, and must not store anything a refused create built.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::catalog::{PRODUCTS, not_found};
use super::pricing::{Priced, price_link};
#[cfg(test)]
use super::store::{DEFAULT_MAX_BYTES, DEFAULT_MAX_TENANT_BYTES, SandboxPool};
use super::store::{
    SandboxLimits, Store, StoredLink, completed_link, heap_opt, stored_size, too_many_links,
};
use crate::backend::paging::{page_by_item_id, page_numbered};
use crate::backend::request::{
    LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate, TargetStatus,
};
use crate::backend::{Backend, Preview};
use crate::domain::{CurrencyCode, Cursor, Money, PageBytes, PageCursor, PaymentLinkId};
use crate::error::Result;
use crate::idempotency::LocalData;
use crate::model::{
    BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product, visible_metadata,
};

/// Links of the sandbox live under this host, which can never resolve (RFC 6761 `.invalid`).
pub(crate) const SANDBOX_URL_BASE: &str = "https://sandbox.paylink.invalid/pay/";

/// One page of `entries` (in listing order) at `cursor`, within the byte cap: a page-number
/// cursor names a window of `limit` entries (see [`page_numbered`]).
pub(super) fn page_of<T: Clone + serde::Serialize>(
    entries: &[&T],
    cursor: PageCursor,
    max_bytes: PageBytes,
) -> Page<T> {
    let start = cursor.offset().min(entries.len());
    let window_end = (cursor.page as usize)
        .saturating_mul(cursor.limit.get())
        .min(entries.len())
        .max(start);
    // Each entry with its position in the cursor's page.
    let window = entries[start..window_end]
        .iter()
        .enumerate()
        .map(|(i, e)| (cursor.skip as usize + i, *e))
        .collect();
    let page = page_numbered(window, cursor, max_bytes, window_end < entries.len());
    Page {
        data: page.data.into_iter().cloned().collect(),
        has_more: page.has_more,
        next_cursor: page.next_cursor,
    }
}

/// One tenant's sandbox.
pub(crate) struct SandboxBackend {
    store: Mutex<Store>,
    limits: SandboxLimits,
    /// The lifetime of this tenant's data: its idempotency keys go with it.
    local: LocalData,
}

impl SandboxBackend {
    /// A tenant with at most `max_links` links, the default byte budget and a pool of its own.
    #[cfg(test)]
    pub(crate) fn new(max_links: usize) -> Self {
        Self::with_limits(SandboxLimits {
            max_links,
            max_tenant_bytes: DEFAULT_MAX_TENANT_BYTES,
            pool: SandboxPool::new(DEFAULT_MAX_BYTES),
            client: None,
        })
    }

    /// A tenant within `limits`, sharing their pool with every other tenant built from them.
    pub(crate) fn with_limits(limits: SandboxLimits) -> Self {
        SandboxBackend {
            store: Mutex::new(Store::default()),
            limits,
            local: LocalData::new(),
        }
    }

    /// Bytes this tenant's links hold.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.store().bytes
    }

    pub(super) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-written (every mutation is
        // a single insert), so a poisoned lock is still consistent: keep serving.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn build(&self, request: NewPaymentLink, now: DateTime<Utc>) -> Result<StoredLink> {
        build_link(request, now)
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

/// Builds the link a create asks for, checked and priced against the catalog the way Stream
/// would; stores nothing.
pub(super) fn build_link(request: NewPaymentLink, now: DateTime<Utc>) -> Result<StoredLink> {
    // The same pricing as the preview: what a user confirmed is what the link shows.
    let Priced {
        preview,
        original_total,
        kinds,
        interval,
    } = price_link(&request)?;
    let currency = preview.currency;
    let total = preview.total;
    let items: Vec<LineItem> = preview
        .lines
        .into_iter()
        .zip(kinds)
        .map(|(line, kind)| LineItem {
            id: Uuid::new_v4().to_string(),
            product_id: Some(line.sells),
            product_name: line.name,
            quantity: Some(line.quantity),
            unit_amount: Some(line.unit.view()),
            total: Some(line.total.view()),
            kind: Some(kind),
            interval: line.interval,
        })
        .collect();
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

#[async_trait]
impl Backend for SandboxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }

    fn livemode(&self) -> bool {
        false
    }

    fn default_currency(&self) -> Option<CurrencyCode> {
        Some(CurrencyCode::sar())
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let stored = self.build(request, Utc::now())?;
        let size = stored_size(&stored);
        let mut store = self.store();
        if store.links.len() >= self.limits.max_links {
            return Err(too_many_links(self.limits.max_links));
        }
        store.charge(&self.limits, size, "this link")?;
        let link = stored.link.clone();
        store.order.push_back(link.id.clone());
        store.links.insert(link.id.clone(), stored);
        Ok(link)
    }

    async fn preview_payment_link(&self, request: &NewPaymentLink) -> Result<Preview> {
        price_link(request).map(|priced| priced.preview)
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
            return Err(completed_link());
        }
        // The only thing that changes size is the message payers see: charge or refund it
        // before the change, so a refused update changes nothing.
        let new_message = match update.status {
            TargetStatus::Inactive => heap_opt(&update.message),
            TargetStatus::Active => 0,
        };
        if new_message > old_message {
            store.charge(&self.limits, new_message - old_message, "this message")?;
        } else {
            store.refund(&self.limits, old_message - new_message);
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
        let store = self.store.get_mut().unwrap_or_else(|p| p.into_inner());
        store.release_all(&self.limits);
    }
}
