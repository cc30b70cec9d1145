//! What the tools ask of a backend: validated requests built from domain types (a create, the
//! queries of the three listings, a status change). Plain data: it must not know any upstream's
//! wire format.

use chrono::{DateTime, Utc};

use crate::domain::{
    CouponId, CurrencyCode, Cursor, Description, LinkName, MaxPayments, Metadata, PageBytes,
    PageLimit, PaymentLinkId, ProductId, Quantity, RedirectUrl, ValidUntil,
};
use crate::model::LinkStatus;

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
