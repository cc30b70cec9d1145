//! Backends: the payments APIs behind the tools, all behind one [`Backend`] trait.
//!
//! A backend instance belongs to one tenant (one caller key, or the stdio user): it holds that
//! tenant's credentials or, for the sandbox, its data. Requests arrive already validated as domain
//! types; a backend only says what to send upstream and how to read the answer.

pub mod factory;
pub mod form;
pub mod sandbox;
pub mod stream;
pub mod stripe;
pub mod tolerant;
pub mod unconfigured;

use async_trait::async_trait;

use crate::domain::{
    CouponId, CurrencyCode, Cursor, Description, IdFormat, LinkName, MaxPayments, Metadata,
    PageBytes, PageLimit, PaymentLinkId, ProductId, Quantity, RedirectUrl, ValidUntil,
};
use crate::error::Result;
use crate::idempotency::LocalData;
use crate::model::{BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product};
use chrono::{DateTime, Utc};

/// One item of a link to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub coupons: Vec<CouponId>,
}

/// A validated `create_payment_link` request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPaymentLink {
    pub name: LinkName,
    pub items: Vec<NewItem>,
    pub description: Option<Description>,
    /// `None`: the backend's default (SAR on Stream and the sandbox).
    pub currency: Option<CurrencyCode>,
    pub coupons: Vec<CouponId>,
    pub valid_until: Option<ValidUntil>,
    pub max_number_of_payments: Option<MaxPayments>,
    pub success_redirect_url: Option<RedirectUrl>,
    pub failure_redirect_url: Option<RedirectUrl>,
    pub organization_consumer_id: Option<String>,
    pub metadata: Metadata,
    /// Our own reference for this create (a UUID), stored with the link upstream
    /// (`paylink_request_id`) so that a create whose answer was lost can be found again. Derived
    /// from the caller's idempotency key when there is one, so repeats share it.
    pub reference: String,
    /// The caller's `idempotency_key`, already checked. A backend whose upstream deduplicates
    /// writes (Stripe) derives its own key from it, so that the caller's retry of the same intent
    /// reaches the upstream under the same key.
    pub idempotency_key: Option<String>,
}

/// Which line items to list, by item id.
#[derive(Debug, Clone, PartialEq)]
pub struct LineItemsQuery {
    pub payment_link_id: PaymentLinkId,
    pub limit: PageLimit,
    /// The page's byte cap: a page that would pass it ends early (`has_more`).
    pub max_bytes: PageBytes,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

/// Which page of the product catalog to list.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductsQuery {
    pub limit: PageLimit,
    /// The page's byte cap: a page that would pass it ends early (`has_more`).
    pub max_bytes: PageBytes,
    /// Where to continue; `None` starts at the first page.
    pub cursor: Option<Cursor>,
}

/// Which payment links to list. Newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct LinksQuery {
    pub limit: PageLimit,
    /// The page's byte cap: a page that would pass it ends early (`has_more`).
    pub max_bytes: PageBytes,
    pub cursor: Option<Cursor>,
    pub status: Option<LinkStatus>,
    /// Created at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Created at or before this time.
    pub created_to: Option<DateTime<Utc>>,
}

/// The statuses a caller may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStatus {
    Active,
    Inactive,
}

/// A validated `update_payment_link_status` request.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub payment_link_id: PaymentLinkId,
    pub status: TargetStatus,
    /// Shown to payers of a deactivated link.
    pub message: Option<String>,
}

/// What differs between backends in how tool arguments are validated. Static per backend kind, so
/// the tool schemas can be built once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct BackendRules {
    pub kind: BackendKind,
    pub id_format: IdFormat,
    /// Currencies a link may be created in; `None` means any known ISO 4217 code.
    pub currencies: Option<&'static [&'static str]>,
    /// `create_payment_link` arguments this backend cannot honour: pruned from the schema and
    /// refused with `unsupported_by_backend` when sent anyway.
    pub unsupported_create_fields: &'static [&'static str],
    /// Metadata keys the server adds on create (they count against the caller's 50).
    pub reserved_metadata_keys: usize,
}

impl BackendRules {
    pub fn for_kind(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Sandbox | BackendKind::Stream => BackendRules {
                kind,
                id_format: IdFormat::Uuid,
                currencies: Some(crate::domain::STREAM_CURRENCIES),
                unsupported_create_fields: &[],
                reserved_metadata_keys: 1,
            },
            BackendKind::Stripe => BackendRules {
                kind,
                id_format: IdFormat::Stripe,
                currencies: None,
                unsupported_create_fields: &[
                    "valid_until",
                    "failure_redirect_url",
                    "coupons",
                    "organization_consumer_id",
                    "items[].coupons",
                ],
                reserved_metadata_keys: 3,
            },
        }
    }
}

/// A payments API, as seen by one tenant.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Which API this is.
    fn kind(&self) -> BackendKind;

    /// True when writes move real money (Stream production, Stripe live keys).
    fn livemode(&self) -> bool;

    /// Creates a link. Must make at most one upstream write that could create a link.
    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink>;

    /// Looks for a link an earlier create made with `reference`, when that create's outcome was
    /// unknown. `Ok(None)`: not found (or the backend needs no lookup: Stripe replays by
    /// idempotency key).
    async fn recover_create(&self, _reference: &str) -> Result<Option<PaymentLink>> {
        Ok(None)
    }

    /// The in-process data this backend's links live in, when they live in this process (the
    /// sandbox): idempotency entries are then scoped to it and go with it. `None`: the links live
    /// upstream and outlive this instance.
    fn local_data(&self) -> Option<&LocalData> {
        None
    }

    /// Reads one link; always from the upstream, never from a cache.
    async fn get_payment_link(&self, id: &PaymentLinkId) -> Result<PaymentLink>;

    /// Lists a link's line items, paged by item id.
    async fn list_line_items(&self, query: LineItemsQuery) -> Result<Page<LineItem>>;

    /// Lists the product catalog.
    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>>;

    /// Lists payment links, newest first. A filter the upstream cannot apply is refused with
    /// `unsupported_by_backend`, never ignored.
    async fn list_payment_links(&self, query: LinksQuery) -> Result<Page<PaymentLink>>;

    /// Activates or deactivates a link; answers the link as it now is.
    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink>;
}

/// Pages a complete, ordered list of line items by item id: the rule shared by every backend
/// that has no line-item endpoint of its own (Stream, the sandbox).
pub fn page_by_item_id(items: Vec<LineItem>, query: &LineItemsQuery) -> Result<Page<LineItem>> {
    let position = |id: &str, field: &str| {
        items.iter().position(|i| i.id == id).ok_or_else(|| {
            crate::error::Error::validation(
                field,
                format!(
                    "no line item `{id}` on payment link {}",
                    query.payment_link_id
                ),
            )
        })
    };
    let limit = query.limit.get();
    let (start, end) = match (&query.starting_after, &query.ending_before) {
        (Some(_), Some(_)) => {
            return Err(crate::error::Error::validation(
                "ending_before",
                "pass either starting_after or ending_before, not both",
            ));
        }
        (Some(after), None) => {
            let start = position(after, "starting_after")? + 1;
            (start, start.saturating_add(limit).min(items.len()))
        }
        (None, Some(before)) => {
            let end = position(before, "ending_before")?;
            (end.saturating_sub(limit), end)
        }
        (None, None) => (0, limit.min(items.len())),
    };
    let backwards = query.ending_before.is_some();
    let window = &items[start..end];
    // `has_more` looks in the direction of travel, as Stripe's does.
    let (start, end, has_more) = if backwards {
        // Walking backwards, the entries nearest `ending_before` are the page: a cut drops the
        // earliest ones, which the next backward call returns.
        let fit = query.max_bytes.fit(window.iter().rev(), window.len());
        (end - fit.count, end, start > 0 || fit.cut)
    } else {
        let fit = query.max_bytes.fit(window, window.len());
        (start, start + fit.count, end < items.len() || fit.cut)
    };
    let data: Vec<LineItem> = items.into_iter().skip(start).take(end - start).collect();
    Ok(Page::of_items(data, has_more, backwards))
}

/// Cuts a page of line items read from an upstream to its byte cap (see [`PageBytes`]): keeps
/// the first entries walking forwards, the last ones walking backwards (those nearest
/// `ending_before`), and says `has_more` when it cut.
pub fn cap_line_items(
    mut data: Vec<LineItem>,
    has_more: bool,
    query: &LineItemsQuery,
) -> Page<LineItem> {
    let backwards = query.ending_before.is_some();
    let fit = if backwards {
        query.max_bytes.fit(data.iter().rev(), data.len())
    } else {
        query.max_bytes.fit(&data, data.len())
    };
    if backwards {
        data.drain(..data.len() - fit.count);
    } else {
        data.truncate(fit.count);
    }
    Page::of_items(data, has_more || fit.cut, backwards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IdFormat, PAGE_ENVELOPE, json_len};

    fn items(n: usize) -> Vec<LineItem> {
        (0..n)
            .map(|i| LineItem {
                id: format!("li_{i}"),
                product_id: None,
                product_name: Some("x".repeat(200)),
                quantity: Some(1),
                unit_amount: None,
                total: None,
                kind: None,
                interval: None,
            })
            .collect()
    }

    fn query(after: Option<&str>, before: Option<&str>, per_page: usize) -> LineItemsQuery {
        let each = json_len(&items(1)[0]) + 1;
        LineItemsQuery {
            payment_link_id: PaymentLinkId::parse(
                "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f",
                "id",
                IdFormat::Uuid,
            )
            .unwrap(),
            limit: PageLimit::parse(Some(10), "limit").unwrap(),
            max_bytes: PageBytes::new(PAGE_ENVELOPE + per_page * each),
            starting_after: after.map(str::to_owned),
            ending_before: before.map(str::to_owned),
        }
    }

    fn ids(page: &Page<LineItem>) -> Vec<&str> {
        page.data.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn line_item_pages_stop_at_their_byte_cap_in_the_direction_of_travel() {
        let page = page_by_item_id(items(5), &query(None, None, 2)).unwrap();
        assert_eq!(ids(&page), ["li_0", "li_1"]);
        assert!(page.has_more);
        assert_eq!(page.next_cursor.as_deref(), Some("li_1"));
        let page = page_by_item_id(items(5), &query(Some("li_1"), None, 2)).unwrap();
        assert_eq!(ids(&page), ["li_2", "li_3"]);
        let page = page_by_item_id(items(5), &query(Some("li_3"), None, 2)).unwrap();
        assert_eq!(ids(&page), ["li_4"]);
        assert!(!page.has_more);
        // Backwards, the items nearest `ending_before` are kept; earlier ones follow.
        let page = page_by_item_id(items(5), &query(None, Some("li_4"), 2)).unwrap();
        assert_eq!(ids(&page), ["li_2", "li_3"]);
        assert!(page.has_more);
        // The same rule for a page an upstream answered (Stripe).
        let page = cap_line_items(items(3), false, &query(None, Some("li_9"), 2));
        assert_eq!(ids(&page), ["li_1", "li_2"]);
        assert!(page.has_more);
        let page = cap_line_items(items(3), false, &query(None, None, 2));
        assert_eq!(ids(&page), ["li_0", "li_1"]);
        assert!(page.has_more);
        assert_eq!(page.next_cursor.as_deref(), Some("li_1"));
        let page = cap_line_items(items(3), false, &query(None, None, 5));
        assert_eq!(ids(&page).len(), 3);
        assert!(!page.has_more);
    }
}
