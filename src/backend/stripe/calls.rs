//! The Stripe backend: which request each [`Backend`] method sends (see [`super::request`]),
//! how its answer is read (see [`super::parse`]), the prices a create resolves before it is sent
//! (a `prod_` id sells its default price), the line items a link's totals are summed from, and
//! what a failed create lets the caller do.
//!
//! A create is sent with one `Idempotency-Key` for all our attempts; it must never be sent under
//! a new key within one call.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;

use super::errors::{StripeErrors, item_error};
use super::form::Form;
use super::parse::{
    apply_line_items, line_items_page, link_from_stripe, preview_of, price_facts,
    product_from_stripe, stripe_page,
};
use super::request::{
    PriceFacts, StripeHeaders, after_id, all_line_items_query, check_currencies, create_body,
    create_form, idempotency_header, is_live_key, line_items_query, links_query, price_query,
    product_query, products_query, status_body, with_query,
};
use crate::backend::paging::cap_line_items;
use crate::backend::request::{
    LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate,
};
use crate::backend::rest::{name_not_found, unreadable_created, unreadable_write};
use crate::backend::tolerant::Obj;
use crate::backend::{Backend, Preview};
use crate::domain::{IdFormat, PaymentLinkId, ProductId};
use crate::error::{Error, Result, UpstreamContext};
use crate::model::{BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product};
use crate::secret::ApiKey;
use crate::upstream::{
    Body, Parsed, RetryMode, Scrubber, UpstreamClient, UpstreamRequest, json_body,
};

/// How many pages of line items one link may take before we stop summing. One page always
/// suffices (see `request::PAGE_MAX`); the bound only guards against an upstream that keeps
/// answering `has_more`.
const MAX_LINE_ITEM_PAGES: usize = 10;

/// What a caller should do after a create whose 2xx answer could not be read.
const CREATED_UNREADABLE: &str = "the link was probably created but its answer could not be read. Look for it with list_payment_links before creating it again";

/// One tenant's view of Stripe.
pub(crate) struct StripeBackend {
    client: Arc<UpstreamClient>,
    headers: StripeHeaders,
    scrubber: Scrubber,
    live: bool,
}

impl StripeBackend {
    /// `api_version` must have passed [`super::check_version`].
    pub(crate) fn new(
        client: Arc<UpstreamClient>,
        key: &ApiKey,
        api_version: &str,
    ) -> Result<Self> {
        let (headers, scrubber) = StripeHeaders::new(key, api_version)?;
        Ok(StripeBackend {
            live: is_live_key(key.expose()),
            client,
            headers,
            scrubber,
        })
    }

    async fn send(&self, request: UpstreamRequest, errors: &StripeErrors) -> Result<Parsed> {
        let response = self.client.send(&request, errors, &self.scrubber).await?;
        json_body(response, "Stripe")
    }

    /// A GET; reads are always safe to retry.
    async fn get(&self, path: &str, query: &Form) -> Result<Parsed> {
        self.send(
            self.headers.request(
                Method::GET,
                with_query(path, query),
                Body::None,
                RetryMode::Read,
                None,
            )?,
            &StripeErrors::default(),
        )
        .await
    }

    fn link(&self, v: &Value) -> Result<PaymentLink> {
        link_from_stripe(v, self.live)
    }

    /// Every line item of a link, and whether the list is complete.
    async fn all_line_items(&self, id: &PaymentLinkId) -> Result<(Vec<Value>, bool)> {
        let path = format!("/v1/payment_links/{id}/line_items");
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LINE_ITEM_PAGES {
            let v = self
                .get(&path, &all_line_items_query(after.as_deref())?)
                .await
                .map_err(|e| name_not_found(e, "payment_link_id"))?;
            let root = Obj(&v);
            let data = root.array("data");
            let last = data
                .last()
                .and_then(|i| Obj(i).str("id"))
                .map(str::to_owned);
            items.extend(data.iter().cloned());
            match (root.bool("has_more").unwrap_or(false), last) {
                (false, _) => return Ok((items, true)),
                // A page that does not move forward would loop: stop, incomplete.
                (true, Some(l)) if after.as_deref() != Some(l.as_str()) => after = Some(l),
                (true, _) => return Ok((items, false)),
            }
        }
        Ok((items, false))
    }

    /// Fills what a link only has through its line items: total, count, interval.
    async fn with_line_items(&self, mut link: PaymentLink) -> Result<PaymentLink> {
        let id = PaymentLinkId::from_upstream(link.id.clone());
        let (items, complete) = self.all_line_items(&id).await?;
        apply_line_items(&mut link, &items, complete);
        Ok(link)
    }

    /// After a write succeeded, the totals are a courtesy: failing to read them must not make
    /// the caller believe the write failed (and retry it).
    async fn with_line_items_best_effort(&self, link: PaymentLink) -> PaymentLink {
        let id = PaymentLinkId::from_upstream(link.id.clone());
        match self.all_line_items(&id).await {
            Ok((items, complete)) => {
                let mut link = link;
                apply_line_items(&mut link, &items, complete);
                link
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the write succeeded but the link's line items could not be read; total left null"
                );
                link
            }
        }
    }

    /// The price behind each item, in item order; a `prod_` id is resolved to its default price.
    /// With `names`, each price carries its product's name (a price is read with its product).
    async fn resolve_prices(
        &self,
        request: &NewPaymentLink,
        names: bool,
    ) -> Result<Vec<PriceFacts>> {
        // Currency options are only worth their payload when the caller chose a currency.
        let with_options = request.currency.is_some();
        let mut by_id: HashMap<String, PriceFacts> = HashMap::new();
        let mut out = Vec::with_capacity(request.items.len());
        for (i, item) in request.items.iter().enumerate() {
            let field = format!("items[{i}].product_id");
            let id = item.product_id.as_str();
            if let Some(known) = by_id.get(id) {
                out.push(known.clone());
                continue;
            }
            let facts = if item.product_id.is_stripe_product() {
                let product = self
                    .get(&format!("/v1/products/{id}"), &product_query(with_options)?)
                    .await
                    .map_err(|e| item_error(e, &field))?;
                let name = Obj(&product).str("name").map(str::to_owned);
                match Obj(&product).get("default_price") {
                    Some(p @ Value::Object(_)) => price_facts(p),
                    Some(Value::String(price_id)) => {
                        self.read_price(price_id, with_options, false, &field)
                            .await?
                    }
                    _ => None,
                }
                .map(|facts| PriceFacts {
                    name: facts.name.or(name),
                    ..facts
                })
                .ok_or_else(|| {
                    Error::validation(
                        field.clone(),
                        format!(
                            "Stripe product {id} has no default price, so it cannot be sold by its product id; pass one of its `price_...` ids instead, or set a default price in the Stripe dashboard"
                        ),
                    )
                })?
            } else {
                self.read_price(id, with_options, names, &field)
                    .await?
                    .ok_or_else(|| {
                        Error::upstream_failure(
                            format!("Stripe's answer for price {id} has no id"),
                            UpstreamContext::default(),
                        )
                        .on_field(field.clone())
                    })?
            };
            if item.product_id.is_stripe_product() {
                by_id.insert(id.to_owned(), facts.clone());
            }
            by_id.insert(facts.id.clone(), facts.clone());
            out.push(facts);
        }
        Ok(out)
    }

    /// Creates a link selling `price_ids` (one per item, in order), under one Idempotency-Key.
    async fn create_selling(
        &self,
        request: NewPaymentLink,
        price_ids: Vec<String>,
    ) -> Result<PaymentLink> {
        let caller_key = request.idempotency_key.as_deref();
        let form = create_form(&request, &price_ids, &request.reference)?;
        // Without a caller key every call is a new intent (a random reference), but our own
        // retries of this one call still share one key: that is what makes retrying safe at all.
        let key = idempotency_header(&request.reference);
        let errors = StripeErrors {
            caller_key: caller_key.is_some(),
        };
        let answer = self
            .send(
                self.headers.request(
                    Method::POST,
                    "/v1/payment_links".into(),
                    create_body(&form),
                    RetryMode::IdempotentWrite,
                    Some(&key),
                )?,
                &errors,
            )
            .await;
        let v = answer.map_err(|e| create_failure(e, caller_key.is_some()))?;
        let link = self.link(&v).map_err(|e| {
            unreadable_created(
                e,
                "Stripe",
                ", so the link was probably created. Look for it with list_payment_links before creating it again",
            )
        })?;
        Ok(self.with_line_items_best_effort(link).await)
    }

    async fn read_price(
        &self,
        id: &str,
        with_options: bool,
        with_product: bool,
        field: &str,
    ) -> Result<Option<PriceFacts>> {
        // Only ids of Stripe's own grammar reach a path: the caller's were validated, and one
        // from an answer is checked here.
        ProductId::parse(id, field, IdFormat::Stripe)?;
        let v = self
            .get(
                &format!("/v1/prices/{id}"),
                &price_query(with_options, with_product)?,
            )
            .await
            .map_err(|e| item_error(e, field))?;
        Ok(price_facts(&v))
    }
}

#[async_trait]
impl Backend for StripeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Stripe
    }

    fn livemode(&self) -> bool {
        self.live
    }

    fn scrubber(&self) -> Option<&Scrubber> {
        Some(&self.scrubber)
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let prices = self.resolve_prices(&request, false).await?;
        check_currencies(&prices, request.currency)?;
        let price_ids: Vec<String> = prices.into_iter().map(|p| p.id).collect();
        self.create_selling(request, price_ids).await
    }

    /// The prices are read once, with their products' names, and must share a currency.
    async fn preview_payment_link(&self, request: &NewPaymentLink) -> Result<Preview> {
        let prices = self.resolve_prices(request, true).await?;
        check_currencies(&prices, request.currency)?;
        preview_of(request, &prices)
    }

    /// Every create carries an `Idempotency-Key` derived from its reference.
    fn dedupes_creates(&self) -> bool {
        true
    }

    /// Sells exactly the prices the preview resolved: they are not looked up again, and a
    /// Stripe price's amount cannot change.
    async fn create_previewed(
        &self,
        request: NewPaymentLink,
        preview: &Preview,
    ) -> Result<PaymentLink> {
        let price_ids = preview.lines.iter().map(|l| l.sells.clone()).collect();
        self.create_selling(request, price_ids).await
    }

    async fn get_payment_link(&self, id: &PaymentLinkId) -> Result<PaymentLink> {
        let v = self
            .get(&format!("/v1/payment_links/{id}"), &Form::new())
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        let link = self.link(&v)?;
        self.with_line_items(link).await
    }

    async fn list_line_items(&self, query: LineItemsQuery) -> Result<Page<LineItem>> {
        if query.starting_after.is_some() && query.ending_before.is_some() {
            return Err(Error::validation(
                "ending_before",
                "pass either starting_after or ending_before, not both",
            ));
        }
        let v = self
            .get(
                &format!("/v1/payment_links/{}/line_items", query.payment_link_id),
                &line_items_query(&query)?,
            )
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        let (data, has_more) = line_items_page(&v);
        Ok(cap_line_items(data, has_more, &query))
    }

    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>> {
        let after = after_id(query.cursor.as_ref())?;
        let v = self
            .get("/v1/products", &products_query(query.limit, after)?)
            .await?;
        Ok(stripe_page(
            &Obj(&v),
            query.limit,
            query.max_bytes,
            product_from_stripe,
        ))
    }

    async fn list_payment_links(&self, query: LinksQuery) -> Result<Page<PaymentLink>> {
        if query.status == Some(LinkStatus::Completed) {
            return Err(Error::unsupported("status", "stripe"));
        }
        if query.created_from.is_some() {
            return Err(Error::unsupported("created_from", "stripe"));
        }
        if query.created_to.is_some() {
            return Err(Error::unsupported("created_to", "stripe"));
        }
        let after = after_id(query.cursor.as_ref())?;
        let v = self
            .get(
                "/v1/payment_links",
                &links_query(query.limit, after, query.status)?,
            )
            .await?;
        Ok(stripe_page(&Obj(&v), query.limit, query.max_bytes, |l| {
            self.link(l).ok()
        }))
    }

    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink> {
        // Setting `active` is an absolute state: sending it twice leaves the same link, so it
        // is retried like a read and needs no idempotency key.
        let v = self
            .send(
                self.headers.request(
                    Method::POST,
                    format!("/v1/payment_links/{}", update.payment_link_id),
                    status_body(&update)?,
                    RetryMode::Read,
                    None,
                )?,
                &StripeErrors::default(),
            )
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        let link = self.link(&v)?;
        Ok(self.with_line_items_best_effort(link).await)
    }
}

/// Turns a failed create into what the caller may do next. Our own retries already reused the
/// key; what matters here is whether the *caller* can retry without a duplicate.
fn create_failure(e: Error, caller_key: bool) -> Error {
    match e {
        // A timeout or reset after the request left. With the caller's idempotency_key, a retry
        // reaches Stripe under the same Idempotency-Key and is replayed: safe. Without one, the
        // key died with this call and a new call would be a new create.
        Error::OutcomeUnknown { message, upstream } if upstream.status.is_none() => {
            if caller_key {
                Error::retry_with_same_key(
                    format!(
                        "{message}; retrying with the same idempotency_key is safe: Stripe replays the first answer instead of creating a second link"
                    ),
                    upstream,
                )
            } else {
                Error::outcome_unknown(
                    format!(
                        "{message} — and no idempotency_key was given, so a new call would be a new create. Look for the link with list_payment_links before creating it again, and pass an idempotency_key next time"
                    ),
                    upstream,
                )
            }
        }
        // A 2xx whose body cannot be read: Stripe created the link, we cannot say which.
        other => unreadable_write(other, CREATED_UNREADABLE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_failures_say_what_the_caller_may_do() {
        let timeout = || {
            Error::outcome_unknown(
                "Stripe did not answer in time (x); the write may or may not have happened",
                UpstreamContext::default(),
            )
        };
        assert_eq!(
            create_failure(timeout(), false).kind().as_str(),
            "outcome_unknown"
        );
        assert!(create_failure(timeout(), true).retry_safe());
        assert!(
            create_failure(timeout(), true).may_have_written(),
            "the link may exist: its amount stays counted"
        );
        let refused = Error::upstream_retryable(
            "could not connect to Stripe: refused; nothing was sent, retrying is safe",
            UpstreamContext::default(),
        );
        assert!(create_failure(refused.clone(), false).retry_safe());
        assert!(!create_failure(refused, true).may_have_written());
        let unreadable = Error::upstream_failure(
            "Stripe answered 200 with malformed JSON",
            UpstreamContext {
                status: Some(200),
                ..UpstreamContext::default()
            },
        );
        assert_eq!(
            create_failure(unreadable, true).kind().as_str(),
            "outcome_unknown"
        );
    }
}
