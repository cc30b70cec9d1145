//! Backends: the payments APIs behind the tools, all behind one [`Backend`] trait.
//!
//! A backend instance belongs to one tenant (one caller key, or the stdio user): it holds that
//! tenant's credentials or, for the sandbox, its data. Requests arrive already validated as domain
//! types; a backend only says what to send upstream and how to read the answer.
//!
//! The files: `request` (what the tools ask), `preview` (what a create will charge), the backends ([`sandbox`], [`stream`],
//! [`stripe`], [`unconfigured`]) and the one place that builds them ([`factory`]); what the
//! backends share is written once: `paging`, `rest` (how the REST backends read refusals and
//! unreadable answers), `prices` (unit prices from subtotals, one price per currency) and
//! [`tolerant`] (the lenient JSON reader).

pub(crate) mod factory;
mod paging;
mod preview;
mod prices;
mod request;
mod rest;
pub(crate) mod sandbox;
pub(crate) mod stream;
pub(crate) mod stripe;
pub(crate) mod tolerant;
pub(crate) mod unconfigured;

use async_trait::async_trait;

use crate::domain::{CurrencyCode, IdFormat, PaymentLinkId};
use crate::error::Result;
use crate::idempotency::LocalData;
use crate::model::{BackendKind, LineItem, Page, PaymentLink, Product};
use crate::upstream::Scrubber;

#[cfg(test)]
pub(crate) use preview::PreviewLine;
pub(crate) use preview::{Preview, money_text};
pub(crate) use request::{
    LineItemsQuery, LinksQuery, NewItem, NewPaymentLink, ProductsQuery, StatusUpdate, TargetStatus,
};

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
pub(crate) trait Backend: Send + Sync + 'static {
    /// Which API this is.
    fn kind(&self) -> BackendKind;

    /// True when writes move real money (any Stream host but staging and loopback, any Stripe key but a test-mode one).
    fn livemode(&self) -> bool;

    /// Creates a link. Must make at most one upstream write that could create a link.
    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink>;

    /// Works out the exact lines and total a create of `request` would make, from the catalog,
    /// without writing anything (reads only). Refuses what the create would refuse when the
    /// catalog tells it (a product without a price in the currency, ...).
    async fn preview_payment_link(&self, request: &NewPaymentLink) -> Result<Preview>;

    /// Creates the link `preview` showed: what was confirmed is what is sent. A backend that
    /// resolved upstream prices for the preview sells exactly those, without looking them up
    /// again; by default the request is created as is (its lines are priced the way the preview
    /// priced them).
    async fn create_previewed(
        &self,
        request: NewPaymentLink,
        _preview: &Preview,
    ) -> Result<PaymentLink> {
        self.create_payment_link(request).await
    }

    /// Checks, with reads only, that the catalog still prices `request` the way `preview` showed:
    /// called after the user took time to confirm, right before the write. A backend whose
    /// create charges the prices of the moment it is sent (Stream: its create takes product ids
    /// only) reads them again and refuses a change (retry-safe: nothing was sent); one that
    /// sells exactly the previewed prices needs no reads (the default).
    async fn recheck_preview(&self, _request: &NewPaymentLink, _preview: &Preview) -> Result<()> {
        Ok(())
    }

    /// The currency of a link created without one, when the backend knows it before reading the
    /// catalog (Stream and the sandbox: SAR); `None` when the products decide (Stripe).
    fn default_currency(&self) -> Option<CurrencyCode> {
        None
    }

    /// True when the upstream deduplicates a repeated create by our reference (Stripe's
    /// `Idempotency-Key`): a create sent again after an unknown outcome then makes at most one
    /// link, so it is the same write, not a new one.
    fn dedupes_creates(&self) -> bool {
        false
    }

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

    /// The scrubber of the key this backend sends, for the last pass over its errors at the edge
    /// (see `Scrubber::scrub_error`). `None`: it sends no key (the sandbox).
    fn scrubber(&self) -> Option<&Scrubber> {
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
