//! The Stream backend: which request each [`Backend`] method sends (see [`super::request`]),
//! how its answer is read (see [`super::parse`]), and what happens when a create's outcome is
//! unknown: Stream may have stored the link before failing, so the newest links are searched for
//! the create's reference before the caller is told "unknown".
//!
//! It must never send a create twice: Stream cannot deduplicate writes.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use std::sync::Arc;

use super::errors::{CREATE_MAY_HAVE_HAPPENED, StreamErrors};
use super::parse::{
    CountedLink, ItemizedLink, StreamPage, StreamProduct, find_reference, line_items_of, link_of,
    preview_line, product_of, stream_page,
};
use super::request::{
    LINKS_PATH, LinksFilter, StreamHeaders, create_body, is_live_base_url, link_path, links_path,
    product_path, products_path, status_body, status_path,
};
use crate::backend::paging::page_by_item_id;
use crate::backend::request::{
    LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate,
};
use crate::backend::rest::{name_not_found, unreadable_created, unreadable_write};
use crate::backend::{Backend, Preview};
use crate::domain::{CurrencyCode, Cursor, PaymentLinkId};
use crate::error::{Error, Result};
use crate::model::{BackendKind, LineItem, Page, PaymentLink, Product, ProductKind};
use crate::secret::ApiKey;
use crate::upstream::{
    Body, RetryMode, Scrubber, UpstreamClient, UpstreamRequest, UpstreamResponse, typed_body,
};

const RECOVERY_PAGES: u32 = 2;
const RECOVERY_PAGE_SIZE: usize = 50;
const RECOVERY_ATTEMPTS: u32 = 2;
const RECOVERY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// One tenant's view of Stream.
pub(crate) struct StreamBackend {
    client: Arc<UpstreamClient>,
    headers: StreamHeaders,
    scrubber: Scrubber,
    live: bool,
}

impl StreamBackend {
    /// `branch_id` must already be a validated UUID.
    pub(crate) fn new(
        client: Arc<UpstreamClient>,
        key: &ApiKey,
        branch_id: Option<&str>,
    ) -> Result<Self> {
        let (headers, scrubber) = StreamHeaders::new(key, branch_id)?;
        Ok(StreamBackend {
            live: is_live_base_url(client.base()),
            client,
            headers,
            scrubber,
        })
    }

    /// A 2xx answer, to be read with [`read`].
    async fn send(&self, request: UpstreamRequest) -> Result<UpstreamResponse> {
        self.client
            .send(&request, &StreamErrors, &self.scrubber)
            .await
    }

    /// A GET; reads are always safe to retry.
    async fn get(&self, path_and_query: String) -> Result<UpstreamResponse> {
        self.send(
            self.headers
                .request(Method::GET, path_and_query, Body::None, RetryMode::Read),
        )
        .await
    }

    /// A GET of one link: a 404 names `payment_link_id`.
    async fn get_link(&self, id: &PaymentLinkId) -> Result<UpstreamResponse> {
        self.get(link_path(id))
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))
    }

    fn link(&self, link: CountedLink<'_>) -> Result<PaymentLink> {
        link_of(link, self.live)
    }

    /// Looks through the most recent links for one carrying `reference` in its metadata.
    /// Bounded: [`RECOVERY_PAGES`] pages of [`RECOVERY_PAGE_SIZE`], newest first, tried
    /// [`RECOVERY_ATTEMPTS`] times a short while apart (a link stored just before a 500 may take a
    /// moment to be listed).
    async fn find_by_reference(&self, reference: &str) -> Result<Option<PaymentLink>> {
        for attempt in 0..RECOVERY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(RECOVERY_PAUSE).await;
            }
            for page in 1..=RECOVERY_PAGES {
                let answer = self
                    .get(links_path(page, RECOVERY_PAGE_SIZE, &LinksFilter::NONE))
                    .await?;
                let (found, more) = find_reference(read(&answer)?, reference);
                if let Some(link) = found {
                    return self.link(link).map(Some);
                }
                if !more {
                    break;
                }
            }
        }
        Ok(None)
    }
}

/// A 2xx answer of Stream's, read as `T` (see [`super::parse`]).
fn read<'a, T: Deserialize<'a>>(answer: &'a UpstreamResponse) -> Result<T> {
    typed_body(answer, "Stream")
}

#[async_trait]
impl Backend for StreamBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Stream
    }

    fn livemode(&self) -> bool {
        self.live
    }

    fn scrubber(&self) -> Option<&Scrubber> {
        Some(&self.scrubber)
    }

    fn default_currency(&self) -> Option<CurrencyCode> {
        Some(CurrencyCode::sar())
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let body = Body::Json(Bytes::from(create_body(&request).to_string()));
        let answer = self
            .send(self.headers.request(
                Method::POST,
                LINKS_PATH.into(),
                body,
                RetryMode::UnsafeWrite,
            ))
            .await;
        // A 5xx is already an unknown outcome (see `StreamErrors`); so is a 2xx we cannot read.
        let created = answer
            .and_then(|answer| {
                read(&answer).and_then(|link| {
                    self.link(link)
                        .map_err(|e| unreadable_created(e, "Stream", ""))
                })
            })
            .map_err(|e| unreadable_write(e, CREATE_MAY_HAVE_HAPPENED));
        match created {
            Ok(link) => Ok(link),
            Err(e @ Error::OutcomeUnknown { .. }) => {
                // Stream may have stored the link before failing: look for our reference.
                match self.find_by_reference(&request.reference).await {
                    Ok(Some(link)) => {
                        tracing::info!(reference = %request.reference, "create outcome recovered by reference");
                        Ok(link)
                    }
                    Ok(None) => Err(e),
                    Err(lookup) => {
                        tracing::warn!(error = %lookup, "could not look for a create's outcome");
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    /// One `GET /api/v2/products/{id}` per distinct product. Coupons are Stream's to compute
    /// (percentage or fixed, per item and per link, rounded its own way): the preview does not
    /// guess their effect, it says they apply and totals the link before them.
    async fn preview_payment_link(&self, request: &NewPaymentLink) -> Result<Preview> {
        let currency = request.currency.unwrap_or_else(CurrencyCode::sar);
        let mut products: Vec<(&str, UpstreamResponse)> = Vec::new();
        let mut lines = Vec::with_capacity(request.items.len());
        let mut kinds = Vec::with_capacity(request.items.len());
        for (i, item) in request.items.iter().enumerate() {
            let id = item.product_id.as_str();
            let known = products.iter().position(|(seen, _)| *seen == id);
            let at = match known {
                Some(at) => at,
                None => {
                    let field = format!("items[{i}].product_id");
                    let product = self
                        .get(product_path(&item.product_id))
                        .await
                        .map_err(|e| name_not_found(e, &field))?;
                    products.push((id, product));
                    products.len() - 1
                }
            };
            let product: StreamProduct = read(&products[at].1)?;
            let (line, kind) = preview_line(i, &product, id, item.quantity.get(), currency)?;
            lines.push(line);
            kinds.extend(kind);
        }
        if kinds.contains(&ProductKind::OneTime) && kinds.contains(&ProductKind::Recurring) {
            return Err(Error::validation(
                "items",
                "one-time and recurring products cannot be mixed in one payment link; create one link per kind",
            ));
        }
        let coupons =
            !request.coupons.is_empty() || request.items.iter().any(|i| !i.coupons.is_empty());
        Preview::summed(currency, lines, coupons)
    }

    /// Reads the products again (one `GET` per distinct product): Stream charges the prices of
    /// the moment the create is sent, so a price changed while the user was confirming is refused
    /// here, before anything is written.
    async fn recheck_preview(&self, request: &NewPaymentLink, preview: &Preview) -> Result<()> {
        let fresh = self.preview_payment_link(request).await?;
        preview.still_priced_as(&fresh)
    }

    /// Sends the currency the preview priced in, never leaving it to a default. Whether Stream's
    /// total is the previewed one is checked by the caller, for every backend alike.
    async fn create_previewed(
        &self,
        mut request: NewPaymentLink,
        preview: &Preview,
    ) -> Result<PaymentLink> {
        request.currency.get_or_insert(preview.currency);
        self.create_payment_link(request).await
    }

    async fn recover_create(&self, reference: &str) -> Result<Option<PaymentLink>> {
        self.find_by_reference(reference).await
    }

    async fn get_payment_link(&self, id: &PaymentLinkId) -> Result<PaymentLink> {
        let answer = self.get_link(id).await?;
        self.link(read(&answer)?)
    }

    async fn list_line_items(&self, query: LineItemsQuery) -> Result<Page<LineItem>> {
        // Stream has no line-item endpoint: the items are the link's.
        let answer = self.get_link(&query.payment_link_id).await?;
        let link: ItemizedLink = read(&answer)?;
        page_by_item_id(line_items_of(&link), &query)
    }

    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let answer = self.get(products_path(cursor)).await?;
        let page: StreamPage<StreamProduct> = read(&answer)?;
        Ok(stream_page(page, cursor, query.max_bytes, |p| {
            product_of(&p)
        }))
    }

    async fn list_payment_links(&self, query: LinksQuery) -> Result<Page<PaymentLink>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let filter = LinksFilter {
            status: query.status,
            created_from: query.created_from,
            created_to: query.created_to,
        };
        let answer = self
            .get(links_path(cursor.page, cursor.limit.get(), &filter))
            .await?;
        let page: StreamPage<CountedLink> = read(&answer)?;
        Ok(stream_page(page, cursor, query.max_bytes, |l| {
            self.link(l).ok()
        }))
    }

    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink> {
        // Setting a status is idempotent: sending it twice leaves the same state.
        let answer = self
            .send(self.headers.request(
                Method::PATCH,
                status_path(&update.payment_link_id),
                status_body(&update),
                RetryMode::Read,
            ))
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        self.link(read(&answer)?)
    }
}
