//! Stripe: payment links over Stripe's form-encoded REST API (`/v1/...`).
//!
//! Facts this module relies on (Stripe's OpenAPI, version [`DEFAULT_API_VERSION`]): auth is
//! `Authorization: Bearer sk_...|rk_...` and the API version is pinned with `Stripe-Version`;
//! bodies are bracket-nested forms (see [`super::form`]); a payment link sells *prices*, a product
//! stands for its `default_price`; a link has no name, description or amount of its own, so the
//! name and description travel in reserved metadata keys and the total is summed from the line
//! items; a create carries an `Idempotency-Key`, which Stripe honours for 24 hours — replaying the
//! first answer, a 500 included — so a create is retried only with the same key.
//! Answers are read tolerantly (see [`super::tolerant`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde_json::Value;

use super::form::{Form, Node};
use super::tolerant::Obj;
use super::{
    Backend, LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate, TargetStatus,
    cap_line_items,
};
use crate::domain::{CurrencyCode, Cursor, Money, PageBytes, PageLimit, PaymentLinkId};
use crate::error::{Error, Result, UpstreamContext};
use crate::model::{
    BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product, ProductKind, REQUEST_REF_KEY,
    visible_metadata,
};
use crate::secret::ApiKey;
use crate::upstream::{
    Body, ErrorDecoder, RetryMode, Scrubber, UpstreamClient, UpstreamRequest, UpstreamResponse,
    json_body, sensitive_header,
};

/// Stripe's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// The API version this module was written against: pinned so that an account's default version
/// (which the dashboard can move) never changes the shapes we read.
pub const DEFAULT_API_VERSION: &str = "2024-04-10";

/// Metadata key holding the link's name: a Stripe payment link has no name field.
pub const NAME_KEY: &str = "paylink_name";
/// Metadata key holding the link's description.
pub const DESCRIPTION_KEY: &str = "paylink_description";

/// Stripe's page size ceiling, used when we read every line item of a link.
const MAX_PAGE: u32 = 100;

/// How many pages of line items one link may take before we stop summing. Stripe caps a link at
/// 20 line items, so one page always suffices; the bound only guards against an upstream that
/// keeps answering `has_more`.
const MAX_LINE_ITEM_PAGES: usize = 10;

/// True for keys that move real money.
pub fn is_live_key(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

/// Checks `STRIPE_VERSION`: a date such as `2024-04-10`, optionally with a release name
/// (`2024-09-30.acacia`). Anything else could not be sent as a header, or is a typo that Stripe
/// would answer with a confusing error on every call.
pub fn check_version(raw: &str) -> std::result::Result<String, crate::error::StartupError> {
    let v = raw.trim();
    let date_ok = v
        .get(..10)
        .is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok());
    let rest_ok = match v.get(10..) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('.').is_some_and(|name| {
            !name.is_empty()
                && name.len() <= 40
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }),
        None => false,
    };
    if date_ok && rest_ok {
        Ok(v.to_owned())
    } else {
        Err(crate::error::StartupError::StripeVersion {
            value: v.chars().take(40).collect(),
            example: DEFAULT_API_VERSION,
        })
    }
}

/// The `Idempotency-Key` of a create: our reference, prefixed so that our keys are recognisable in
/// Stripe's request logs. The reference is derived from (tenant, caller's idempotency_key) when the
/// caller gave one — stable across the caller's retries, restarts and replicas, and distinct for
/// two tenants sharing one Stripe account (operator-key mode) — and random otherwise.
pub fn idempotency_header(reference: &str) -> String {
    format!("paylink-{reference}")
}

/// One tenant's view of Stripe.
pub struct StripeBackend {
    client: Arc<UpstreamClient>,
    auth: HeaderValue,
    version: HeaderValue,
    scrubber: Scrubber,
    live: bool,
}

/// A price as far as creating a link needs it.
#[derive(Debug, Clone)]
struct PriceFacts {
    id: String,
    /// Lower-case ISO code, as Stripe writes it.
    currency: Option<String>,
    /// Further currencies the price can be charged in (`currency_options`), lower-case.
    options: Vec<String>,
}

impl StripeBackend {
    /// `api_version` must have passed [`check_version`].
    pub fn new(client: Arc<UpstreamClient>, key: &ApiKey, api_version: &str) -> Result<Self> {
        let auth = sensitive_header(&format!("Bearer {}", key.expose()))?;
        let version = HeaderValue::from_str(api_version).map_err(|_| {
            Error::internal("STRIPE_VERSION cannot be sent as an HTTP header; fix it and restart")
        })?;
        Ok(StripeBackend {
            live: is_live_key(key.expose()),
            client,
            auth,
            version,
            scrubber: Scrubber::new(vec![key.expose().to_owned()]),
        })
    }

    fn request(
        &self,
        method: Method,
        path_and_query: String,
        body: Body,
        retry: RetryMode,
        idempotency_key: Option<&str>,
    ) -> Result<UpstreamRequest> {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(reqwest::header::AUTHORIZATION, self.auth.clone());
        headers.insert("stripe-version", self.version.clone());
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key)
                .map_err(|_| Error::internal("an idempotency key could not be sent as a header"))?;
            headers.insert("idempotency-key", value);
        }
        Ok(UpstreamRequest {
            method,
            path_and_query,
            headers,
            body,
            retry,
        })
    }

    async fn send(&self, request: UpstreamRequest, errors: &StripeErrors) -> Result<Value> {
        let response = self.client.send(&request, errors, &self.scrubber).await?;
        json_body(response, "Stripe")
    }

    /// A GET; reads are always safe to retry.
    async fn get(&self, path: &str, query: &Form) -> Result<Value> {
        let path_and_query = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.encode())
        };
        self.send(
            self.request(
                Method::GET,
                path_and_query,
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
            let mut query = Form::new().with("limit", MAX_PAGE).map_err(internal_form)?;
            if let Some(a) = &after {
                query
                    .add("starting_after", a.as_str())
                    .map_err(internal_form)?;
            }
            let v = self
                .get(&path, &query)
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
    async fn resolve_prices(&self, request: &NewPaymentLink) -> Result<Vec<PriceFacts>> {
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
                let mut expand = vec!["default_price".to_owned()];
                if with_options {
                    expand.push("default_price.currency_options".to_owned());
                }
                let query = Form::new()
                    .with("expand", Node::Repeated(expand))
                    .map_err(internal_form)?;
                let product = self
                    .get(&format!("/v1/products/{id}"), &query)
                    .await
                    .map_err(|e| item_error(e, &field))?;
                match Obj(&product).get("default_price") {
                    Some(p @ Value::Object(_)) => price_facts(p),
                    Some(Value::String(price_id)) => {
                        self.read_price(price_id, with_options, &field).await?
                    }
                    _ => None,
                }
                .ok_or_else(|| {
                    Error::validation(
                        field.clone(),
                        format!(
                            "Stripe product {id} has no default price, so it cannot be sold by its product id; pass one of its `price_...` ids instead, or set a default price in the Stripe dashboard"
                        ),
                    )
                })?
            } else {
                self.read_price(id, with_options, &field)
                    .await?
                    .ok_or_else(|| Error::Upstream {
                        field: Some(field.clone()),
                        message: format!("Stripe's answer for price {id} has no id"),
                        retry_safe: false,
                        upstream: UpstreamContext::default(),
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

    async fn read_price(
        &self,
        id: &str,
        with_options: bool,
        field: &str,
    ) -> Result<Option<PriceFacts>> {
        // Only ids of Stripe's own grammar reach a path: the caller's were validated, and one
        // from an answer is checked here.
        crate::domain::ProductId::parse(id, field, crate::domain::IdFormat::Stripe)?;
        let mut query = Form::new();
        if with_options {
            query
                .add("expand", Node::Repeated(vec!["currency_options".into()]))
                .map_err(internal_form)?;
        }
        let v = self
            .get(&format!("/v1/prices/{id}"), &query)
            .await
            .map_err(|e| item_error(e, field))?;
        Ok(price_facts(&v))
    }
}

fn internal_form(e: super::form::BadKey) -> Error {
    Error::internal(format!("could not encode a Stripe request: {e}"))
}

fn price_facts(v: &Value) -> Option<PriceFacts> {
    let o = Obj(v);
    Some(PriceFacts {
        id: o.str("id")?.to_owned(),
        currency: o.str("currency").map(str::to_ascii_lowercase),
        options: o
            .obj("currency_options")
            .and_then(|m| m.0.as_object())
            .map(|m| m.keys().map(|k| k.to_ascii_lowercase()).collect())
            .unwrap_or_default(),
    })
}

/// Refuses what Stripe would refuse, but with our field names: one currency per link.
fn check_currencies(prices: &[PriceFacts], requested: Option<CurrencyCode>) -> Result<()> {
    match requested {
        Some(c) => {
            let want = c.code().to_ascii_lowercase();
            for (i, p) in prices.iter().enumerate() {
                let Some(have) = &p.currency else { continue };
                if *have != want && !p.options.contains(&want) {
                    return Err(Error::validation(
                        "currency",
                        format!(
                            "items[{i}] ({}) is priced in {}, not {}; omit `currency` to charge in the prices' currency, or choose prices in {}",
                            p.id,
                            have.to_ascii_uppercase(),
                            c.code(),
                            c.code()
                        ),
                    ));
                }
            }
        }
        None => {
            let mut first: Option<(usize, &str)> = None;
            for (i, p) in prices.iter().enumerate() {
                let Some(have) = p.currency.as_deref() else {
                    continue;
                };
                match first {
                    None => first = Some((i, have)),
                    Some((j, seen)) if seen != have => {
                        return Err(Error::validation(
                            "items",
                            format!(
                                "the prices are in different currencies (items[{j}] in {}, items[{i}] in {}); a Stripe payment link charges one currency: choose prices in one currency",
                                seen.to_ascii_uppercase(),
                                have.to_ascii_uppercase()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

/// The form of `POST /v1/payment_links`: exactly the parameters Stripe documents, absent ones
/// omitted. `prices` holds the resolved price of each item, in order.
pub fn create_form(request: &NewPaymentLink, prices: &[String], request_ref: &str) -> Result<Form> {
    let line_items = request
        .items
        .iter()
        .zip(prices)
        .map(|(item, price)| {
            Node::map([
                ("price", Node::from(price.as_str())),
                ("quantity", Node::from(item.quantity.get())),
            ])
        })
        .collect();
    let mut form = Form::new();
    form.add("line_items", Node::List(line_items))
        .map_err(internal_form)?;
    if let Some(c) = request.currency {
        form.add("currency", c.code().to_ascii_lowercase())
            .map_err(internal_form)?;
    }
    if let Some(m) = request.max_number_of_payments {
        form.add(
            "restrictions",
            Node::map([("completed_sessions", Node::map([("limit", m.get())]))]),
        )
        .map_err(internal_form)?;
    }
    if let Some(u) = &request.success_redirect_url {
        form.add(
            "after_completion",
            Node::map([
                ("type", Node::from("redirect")),
                ("redirect", Node::map([("url", u.as_str())])),
            ]),
        )
        .map_err(internal_form)?;
    }
    let mut metadata: Vec<(String, Node)> = request
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Node::from(v.as_str())))
        .collect();
    metadata.push((NAME_KEY.into(), request.name.as_str().into()));
    if let Some(d) = &request.description {
        metadata.push((DESCRIPTION_KEY.into(), d.as_str().into()));
    }
    metadata.push((REQUEST_REF_KEY.into(), request_ref.into()));
    form.add("metadata", Node::Map(metadata))
        .map_err(|e| Error::validation(format!("metadata.{}", e.0), e.to_string()))?;
    Ok(form)
}

/// Where a list continues: Stripe pages by the last id seen.
fn after_id(cursor: Option<&Cursor>) -> Result<Option<&str>> {
    match cursor {
        None => Ok(None),
        Some(Cursor::After { id, .. }) => Ok(Some(id.as_str())),
        Some(Cursor::Page(_)) => Err(Error::validation(
            "cursor",
            "is not a cursor this server issued for Stripe; pass `next_cursor` from the previous answer unchanged, or omit it to start from the beginning",
        )),
    }
}

/// A page of a Stripe listing, within the byte cap. Stripe pages by the last id seen, so a page
/// cut by the byte cap continues exactly after the last entry returned.
fn stripe_page<T: Serialize>(
    root: &Obj<'_>,
    limit: PageLimit,
    max_bytes: PageBytes,
    parse: impl Fn(&Value) -> Option<T>,
) -> Page<T> {
    let raw = root.array("data");
    // Each entry with Stripe's own id for it: what `starting_after` continues after.
    let parsed: Vec<(Option<&str>, T)> = raw
        .iter()
        .filter_map(|v| parse(v).map(|t| (Obj(v).str("id"), t)))
        .collect();
    let fit = max_bytes.fit(parsed.iter().map(|(_, t)| t), parsed.len());
    let (has_more, last) = if fit.cut {
        (
            true,
            parsed
                .get(fit.count.wrapping_sub(1))
                .and_then(|(id, _)| *id),
        )
    } else {
        (
            root.bool("has_more").unwrap_or(false),
            raw.last().and_then(|v| Obj(v).str("id")),
        )
    };
    Page {
        has_more,
        next_cursor: next_cursor(has_more, last, limit),
        data: parsed.into_iter().take(fit.count).map(|(_, t)| t).collect(),
    }
}

fn next_cursor(has_more: bool, last_id: Option<&str>, limit: PageLimit) -> Option<String> {
    if !has_more {
        return None;
    }
    last_id.map(|id| {
        Cursor::After {
            id: id.to_owned(),
            limit,
        }
        .encode()
    })
}

#[async_trait]
impl Backend for StripeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Stripe
    }

    fn livemode(&self) -> bool {
        self.live
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let prices = self.resolve_prices(&request).await?;
        check_currencies(&prices, request.currency)?;
        let caller_key = request.idempotency_key.as_deref();
        let price_ids: Vec<String> = prices.into_iter().map(|p| p.id).collect();
        let form = create_form(&request, &price_ids, &request.reference)?;
        // Without a caller key every call is a new intent (a random reference), but our own
        // retries of this one call still share one key: that is what makes retrying safe at all.
        let key = idempotency_header(&request.reference);
        let errors = StripeErrors {
            caller_key: caller_key.is_some(),
        };
        let answer = self
            .send(
                self.request(
                    Method::POST,
                    "/v1/payment_links".into(),
                    Body::Form(Bytes::from(form.encode())),
                    RetryMode::IdempotentWrite,
                    Some(&key),
                )?,
                &errors,
            )
            .await;
        let v = answer.map_err(|e| create_failure(e, caller_key.is_some()))?;
        let link = self.link(&v).map_err(|e| Error::OutcomeUnknown {
            message: format!(
                "{e}; Stripe accepted the create but its answer could not be read, so the link was probably created. Look for it with list_payment_links before creating it again"
            ),
            upstream: UpstreamContext::default(),
        })?;
        Ok(self.with_line_items_best_effort(link).await)
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
        let mut form = Form::new()
            .with("limit", query.limit.get())
            .map_err(internal_form)?;
        if let Some(a) = &query.starting_after {
            form.add("starting_after", a.as_str())
                .map_err(internal_form)?;
        }
        if let Some(b) = &query.ending_before {
            form.add("ending_before", b.as_str())
                .map_err(internal_form)?;
        }
        let v = self
            .get(
                &format!("/v1/payment_links/{}/line_items", query.payment_link_id),
                &form,
            )
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        let root = Obj(&v);
        let data: Vec<LineItem> = root
            .array("data")
            .iter()
            .filter_map(|i| line_item_from_stripe(i, None))
            .collect();
        let has_more = root.bool("has_more").unwrap_or(false);
        Ok(cap_line_items(data, has_more, &query))
    }

    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>> {
        let after = after_id(query.cursor.as_ref())?;
        let mut form = Form::new()
            .with("active", true)
            .and_then(|f| f.with("limit", query.limit.get()))
            .map_err(internal_form)?;
        if let Some(a) = after {
            form.add("starting_after", a).map_err(internal_form)?;
        }
        form.add(
            "expand",
            Node::Repeated(vec![
                "data.default_price".into(),
                "data.default_price.currency_options".into(),
            ]),
        )
        .map_err(internal_form)?;
        let v = self.get("/v1/products", &form).await?;
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
        let mut form = Form::new()
            .with("limit", query.limit.get())
            .map_err(internal_form)?;
        if let Some(a) = after {
            form.add("starting_after", a).map_err(internal_form)?;
        }
        if let Some(s) = query.status {
            form.add("active", s == LinkStatus::Active)
                .map_err(internal_form)?;
        }
        let v = self.get("/v1/payment_links", &form).await?;
        Ok(stripe_page(&Obj(&v), query.limit, query.max_bytes, |l| {
            self.link(l).ok()
        }))
    }

    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink> {
        let mut form = Form::new()
            .with("active", update.status == TargetStatus::Active)
            .map_err(internal_form)?;
        if let Some(m) = &update.message {
            form.add("inactive_message", m.as_str())
                .map_err(internal_form)?;
        }
        // Setting `active` is an absolute state: sending it twice leaves the same link, so it
        // is retried like a read and needs no idempotency key.
        let v = self
            .send(
                self.request(
                    Method::POST,
                    format!("/v1/payment_links/{}", update.payment_link_id),
                    Body::Form(Bytes::from(form.encode())),
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
                Error::Upstream {
                    field: None,
                    message: format!(
                        "{message}; retrying with the same idempotency_key is safe: Stripe replays the first answer instead of creating a second link"
                    ),
                    retry_safe: true,
                    upstream,
                }
            } else {
                Error::OutcomeUnknown {
                    message: format!(
                        "{message} — and no idempotency_key was given, so a new call would be a new create. Look for the link with list_payment_links before creating it again, and pass an idempotency_key next time"
                    ),
                    upstream,
                }
            }
        }
        // A 2xx whose body cannot be read: Stripe created the link, we cannot say which.
        Error::Upstream {
            message, upstream, ..
        } if upstream.status.is_some_and(|s| (200..300).contains(&s)) => Error::OutcomeUnknown {
            message: format!(
                "{message}; the link was probably created but its answer could not be read. Look for it with list_payment_links before creating it again"
            ),
            upstream,
        },
        other => other,
    }
}

/// Names `field` on a 404 about the object in the path: Stripe calls that parameter `id` (or
/// names none), which means nothing to a caller of our tools. A 404 naming a query parameter
/// (`starting_after`) keeps it.
fn name_not_found(e: Error, field: &str) -> Error {
    match e {
        Error::NotFound {
            field: path_field,
            message,
            upstream,
        } if matches!(path_field.as_deref(), None | Some("id")) => Error::NotFound {
            field: Some(field.to_owned()),
            message,
            upstream,
        },
        other => other,
    }
}

/// A failed product or price read during a create belongs to the item that named it.
fn item_error(e: Error, field: &str) -> Error {
    match e {
        Error::NotFound {
            message, upstream, ..
        } => Error::NotFound {
            field: Some(field.to_owned()),
            message,
            upstream,
        },
        Error::Validation {
            message, upstream, ..
        } => Error::Validation {
            field: field.to_owned(),
            message,
            upstream,
        },
        other => other,
    }
}

/// Splits `line_items[0][price]` into `["line_items", "0", "price"]`.
fn param_segments(param: &str) -> Vec<&str> {
    let (head, mut rest) = match param.find('[') {
        Some(i) => (&param[..i], &param[i..]),
        None => (param, ""),
    };
    let mut out = vec![head];
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) => {
                out.push(&inner[..end]);
                rest = &inner[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Maps a Stripe `param` to the argument a caller of our tools would fix.
pub fn our_field(param: &str) -> String {
    let segments = param_segments(param);
    let index = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    match segments.as_slice() {
        ["line_items"] => "items".into(),
        ["line_items", i, "price", ..] if index(i) => format!("items[{i}].product_id"),
        ["line_items", i, "quantity", ..] if index(i) => format!("items[{i}].quantity"),
        ["line_items", i, ..] if index(i) => format!("items[{i}]"),
        ["metadata", key, ..] if *key == NAME_KEY => "name".into(),
        ["metadata", key, ..] if *key == DESCRIPTION_KEY => "description".into(),
        ["metadata", key, ..] if !key.is_empty() => {
            format!("metadata.{}", key.chars().take(40).collect::<String>())
        }
        ["metadata", ..] => "metadata".into(),
        ["restrictions", ..] => "max_number_of_payments".into(),
        ["after_completion", ..] => "success_redirect_url".into(),
        ["currency"] => "currency".into(),
        ["active"] => "status".into(),
        ["inactive_message"] => "message".into(),
        _ => param.chars().take(100).collect(),
    }
}

/// Reads Stripe's `{"error": {type, code, message, param, doc_url}}` answers. One per request:
/// whether the caller holds the idempotency key changes what a failed create lets them do.
#[derive(Debug, Clone, Copy, Default)]
pub struct StripeErrors {
    /// The create's `Idempotency-Key` came from the caller's `idempotency_key`.
    pub caller_key: bool,
}

fn should_retry_header(response: &UpstreamResponse) -> Option<bool> {
    let v = response.headers.get("stripe-should-retry")?.to_str().ok()?;
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn error_code(response: &UpstreamResponse) -> Option<&str> {
    let v = response.json.as_ref().ok()?;
    Obj(v).obj("error").and_then(|e| e.str("code"))
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

impl ErrorDecoder for StripeErrors {
    fn upstream_name(&self) -> &'static str {
        "Stripe"
    }

    fn request_id_header(&self) -> &'static str {
        "request-id"
    }

    fn upstream_says_retry(&self, response: &UpstreamResponse) -> Option<bool> {
        if let Some(says) = should_retry_header(response) {
            return Some(says);
        }
        // The first request with this key is still running: asking again with the same key
        // either waits for it or replays its answer.
        if response.status.as_u16() == 409 && error_code(response) == Some("idempotency_key_in_use")
        {
            return Some(true);
        }
        None
    }

    fn decode_error(&self, response: &UpstreamResponse, retry: RetryMode) -> Error {
        let status = response.status.as_u16();
        let mut ctx = response.context();
        let parsed: Option<&Value> = response.json.as_ref().ok();
        let error = parsed.and_then(|v| Obj(v).obj("error"));
        let kind = error.and_then(|e| e.str("type"));
        let code = error.and_then(|e| e.str("code"));
        let message = error.and_then(|e| e.str("message")).map(truncate);
        let field = error.and_then(|e| e.str("param")).map(our_field);
        ctx.code = code
            .or(kind)
            .map(|c| c.chars().take(80).collect::<String>());
        let described = match (&message, parsed.is_some()) {
            (Some(m), _) => format!("Stripe answered {status}: {m}"),
            (None, true) => format!("Stripe answered {status}"),
            (None, false) if response.body_len == 0 => {
                format!("Stripe answered {status} with an empty body")
            }
            (None, false) => format!(
                "Stripe answered {status} with a {} body",
                response.content_type()
            ),
        };
        let should_retry = should_retry_header(response);
        // A create whose key is ours alone cannot be retried by the caller: a new call is a new key.
        let own_key_write = retry == RetryMode::IdempotentWrite && !self.caller_key;
        match status {
            400 if kind == Some("idempotency_error") => Error::IdempotencyConflict {
                message: format!(
                    "{described}; this idempotency_key was already used with different arguments. Reuse a key only to retry the very same create; use a new key for a new link"
                ),
            },
            400 if field.is_some() => Error::Validation {
                field: field.unwrap_or_default(),
                message: format!(
                    "Stripe refused it: {}",
                    message.as_deref().unwrap_or("invalid value")
                ),
                upstream: Some(ctx),
            },
            401 => Error::Auth {
                message: format!(
                    "{described}; the Stripe API key was refused (check STRIPE_API_KEY or your Bearer token)"
                ),
                upstream: ctx,
            },
            403 => Error::Auth {
                message: format!(
                    "{described}; this key may not do that (a restricted key needs write access to payment links and read access to products and prices)"
                ),
                upstream: ctx,
            },
            404 => Error::NotFound {
                field,
                message: described,
                upstream: ctx,
            },
            409 if code == Some("idempotency_key_in_use") && own_key_write => {
                Error::OutcomeUnknown {
                    message: format!(
                        "{described}; an earlier attempt of this create is still running at Stripe, so the link may or may not be created. Look for it with list_payment_links before creating it again"
                    ),
                    upstream: ctx,
                }
            }
            409 if code == Some("idempotency_key_in_use") => Error::Upstream {
                field: None,
                message: format!(
                    "{described}; a request with the same idempotency_key is still running: retry shortly with the same key"
                ),
                retry_safe: true,
                upstream: ctx,
            },
            429 => Error::RateLimited {
                retry_safe: true,
                message: format!("{described}; slow down and retry later"),
                retry_after_secs: crate::upstream::retry_after(&response.headers)
                    .map(|d| d.as_secs()),
                upstream: ctx,
            },
            s if s >= 500 && retry == RetryMode::Read => Error::Upstream {
                field: None,
                message: format!("{described}; retrying is safe"),
                retry_safe: true,
                upstream: ctx,
            },
            // Stripe says the request was not carried out: nothing to duplicate.
            s if s >= 500 && should_retry == Some(true) => Error::Upstream {
                field: None,
                message: format!(
                    "{described}; Stripe says the request was not carried out and may be sent again"
                ),
                retry_safe: true,
                upstream: ctx,
            },
            s if s >= 500 => Error::OutcomeUnknown {
                message: if self.caller_key {
                    format!(
                        "{described}; the link may or may not have been created. Stripe replays this answer for the same idempotency_key for 24 hours, so retrying with it changes nothing: look for the link with list_payment_links before creating it with a new key"
                    )
                } else {
                    format!(
                        "{described}; the link may or may not have been created. Look for it with list_payment_links before creating it again"
                    )
                },
                upstream: ctx,
            },
            _ => Error::Upstream {
                field,
                message: described,
                retry_safe: false,
                upstream: ctx,
            },
        }
    }
}

fn currency_of(raw: Option<&str>) -> Option<CurrencyCode> {
    raw.and_then(|c| CurrencyCode::parse(c, "currency").ok())
}

fn money(minor: Option<i64>, currency: Option<CurrencyCode>) -> Option<Money> {
    Some(Money::from_minor(minor?, currency?))
}

/// A Stripe `payment_link` as our [`PaymentLink`], without what only its line items tell (total,
/// item count, interval). Only a missing `id` is an error.
pub fn link_from_stripe(v: &Value, key_is_live: bool) -> Result<PaymentLink> {
    let o = Obj(v);
    let id = o.str("id").ok_or_else(|| Error::Upstream {
        field: None,
        message: "Stripe's answer has no payment link id".into(),
        retry_safe: false,
        upstream: UpstreamContext::default(),
    })?;
    let raw_currency = o.str("currency");
    let metadata = o.obj("metadata");
    let meta_str = |k: &str| metadata.and_then(|m| m.str(k)).map(str::to_owned);
    Ok(PaymentLink {
        id: id.to_owned(),
        url: o.str("url").map(str::to_owned),
        name: meta_str(NAME_KEY),
        description: meta_str(DESCRIPTION_KEY),
        status: o.bool("active").map(|a| {
            if a {
                LinkStatus::Active
            } else {
                LinkStatus::Inactive
            }
        }),
        currency: raw_currency.map(|c| match currency_of(Some(c)) {
            Some(code) => code.code().to_owned(),
            None => c.to_ascii_uppercase(),
        }),
        total: None,
        original_total: None,
        // Stripe keeps payments on checkout sessions, not on the link.
        amount_collected: None,
        item_count: None,
        max_number_of_payments: o
            .obj("restrictions")
            .and_then(|r| r.obj("completed_sessions"))
            .and_then(|c| c.i64("limit"))
            .and_then(|l| u32::try_from(l).ok()),
        valid_until: None,
        success_redirect_url: o
            .obj("after_completion")
            .and_then(|a| a.obj("redirect"))
            .and_then(|r| r.str("url"))
            .map(str::to_owned),
        failure_redirect_url: None,
        recurring_interval: None,
        inactive_message: o.str("inactive_message").map(str::to_owned),
        // Stripe's payment link object has no creation time.
        created_at: None,
        metadata: metadata
            .and_then(|m| m.0.as_object())
            .map(|m| visible_metadata(m.iter()))
            .unwrap_or_default(),
        backend: BackendKind::Stripe,
        livemode: o.bool("livemode").unwrap_or(key_is_live),
    })
}

/// Sets total, original total, item count and interval from a link's line items. A total is
/// only given when every item has an amount in the link's currency and the list is complete: a
/// partial sum would be a wrong amount, and null is honest.
pub fn apply_line_items(link: &mut PaymentLink, items: &[Value], complete: bool) {
    let currency = currency_of(link.currency.as_deref());
    let sum = |key: &str| -> Option<i64> {
        if !complete {
            return None;
        }
        items.iter().try_fold(0i64, |acc, item| {
            let o = Obj(item);
            let same_currency = o.str("currency").is_none_or(|c| {
                currency.is_some_and(|link_c| c.eq_ignore_ascii_case(link_c.code()))
            });
            if !same_currency {
                return None;
            }
            acc.checked_add(o.i64(key)?)
        })
    };
    link.total = money(sum("amount_total"), currency).map(Money::view);
    link.original_total = money(sum("amount_subtotal"), currency).map(Money::view);
    link.item_count = if complete {
        u32::try_from(items.len()).ok()
    } else {
        None
    };
    link.recurring_interval = items.iter().find_map(|i| {
        Obj(i)
            .obj("price")
            .and_then(|p| p.obj("recurring"))
            .and_then(|r| r.str("interval"))
            .map(str::to_ascii_lowercase)
    });
}

fn kind_of(price: &Obj<'_>) -> Option<ProductKind> {
    match price.str("type")? {
        "one_time" => Some(ProductKind::OneTime),
        "recurring" => Some(ProductKind::Recurring),
        _ => None,
    }
}

fn interval_of(price: &Obj<'_>) -> Option<String> {
    price
        .obj("recurring")
        .and_then(|r| r.str("interval"))
        .map(str::to_ascii_lowercase)
}

/// The unit price of `price` in `currency`: its own amount, or its currency option's.
fn unit_amount_in(price: &Obj<'_>, currency: CurrencyCode) -> Option<Money> {
    let own = price
        .str("currency")
        .is_some_and(|c| c.eq_ignore_ascii_case(currency.code()));
    let minor = if own {
        price.i64("unit_amount")
    } else {
        price
            .obj("currency_options")
            .and_then(|opts| {
                opts.0.as_object().and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(currency.code()))
                        .map(|(_, v)| Obj(v))
                })
            })
            .and_then(|opt| opt.i64("unit_amount"))
    };
    minor.map(|m| Money::from_minor(m, currency))
}

/// A Stripe line `item` as our [`LineItem`]; an item without an id is skipped (it could not be
/// paged to).
pub fn line_item_from_stripe(v: &Value, link_currency: Option<CurrencyCode>) -> Option<LineItem> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    let price = o.obj("price");
    let currency = currency_of(o.str("currency"))
        .or_else(|| price.and_then(|p| currency_of(p.str("currency"))))
        .or(link_currency);
    // Unreadable stays unknown (null), never 1: see `LineItem::quantity`.
    let quantity = o.count("quantity");
    let unit = currency
        .and_then(|c| price.and_then(|p| unit_amount_in(&p, c)))
        .or_else(|| {
            // Tiered or converted prices: the unit is the subtotal over the quantity, when exact.
            let subtotal = money(o.i64("amount_subtotal"), currency)?;
            let q = i64::from(quantity.filter(|q| *q > 0)?);
            (subtotal.minor() % q == 0)
                .then(|| Money::from_minor(subtotal.minor() / q, subtotal.currency()))
        });
    let product = price.and_then(|p| p.get("product"));
    Some(LineItem {
        id,
        product_id: price
            .and_then(|p| p.str("id"))
            .or_else(|| match product {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(p @ Value::Object(_)) => Obj(p).str("id"),
                _ => None,
            })
            .map(str::to_owned),
        product_name: o
            .str("description")
            .or_else(|| product.and_then(|p| Obj(p).str("name")))
            .or_else(|| price.and_then(|p| p.str("nickname")))
            .map(str::to_owned),
        quantity,
        unit_amount: unit.map(Money::view),
        total: money(o.i64("amount_total"), currency).map(Money::view),
        kind: price.as_ref().and_then(kind_of),
        interval: price.as_ref().and_then(interval_of),
    })
}

/// A Stripe `product` (with `default_price` expanded) as our [`Product`]: its default price in
/// its own currency first, then in each currency option; currencies we do not know are left out.
pub fn product_from_stripe(v: &Value) -> Option<Product> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    let price = o.obj("default_price");
    let mut prices: Vec<Money> = Vec::new();
    if let Some(p) = &price {
        if let Some(m) = money(p.i64("unit_amount"), currency_of(p.str("currency"))) {
            prices.push(m);
        }
        if let Some(opts) = p.obj("currency_options").and_then(|m| m.0.as_object()) {
            for (code, opt) in opts {
                if let Some(m) = money(Obj(opt).i64("unit_amount"), currency_of(Some(code)))
                    && !prices.iter().any(|seen| seen.currency() == m.currency())
                {
                    prices.push(m);
                }
            }
        }
    }
    Some(Product {
        id,
        name: o.str("name").map(str::to_owned),
        description: o.str("description").map(str::to_owned),
        kind: price.as_ref().and_then(kind_of),
        interval: price.as_ref().and_then(interval_of),
        prices: prices.into_iter().map(Money::view).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::NewItem;
    use crate::domain::PAGE_ENVELOPE;

    #[test]
    fn a_page_cut_by_its_byte_cap_continues_after_the_last_id_returned() {
        let entry = |id: &str| serde_json::json!({"id": id, "name": id.repeat(100)});
        let v = serde_json::json!({
            "data": [entry("p1a"), {"no": "id"}, entry("p2b"), entry("p3c")],
            "has_more": false
        });
        let parse = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
        let limit = PageLimit::parse(Some(10), "limit").unwrap();
        let cap = PageBytes::new(PAGE_ENVELOPE + 2 * 303);
        let page = stripe_page(&Obj(&v), limit, cap, parse);
        assert_eq!(page.data.len(), 2);
        assert!(page.has_more, "cut, though Stripe's page was the last");
        assert_eq!(
            Cursor::decode(&page.next_cursor.unwrap(), None).unwrap(),
            Cursor::After {
                id: "p2b".into(),
                limit
            }
        );
        let page = stripe_page(&Obj(&v), limit, PageBytes::new(1 << 20), parse);
        assert_eq!(page.data.len(), 3);
        assert!(!page.has_more && page.next_cursor.is_none());
    }
    use crate::domain::{
        Description, IdFormat, LinkName, MaxPayments, Metadata, ProductId, Quantity, RedirectUrl,
    };
    use serde_json::json;
    use std::collections::BTreeMap;

    fn response(status: u16, headers: &[(&'static str, &str)], body: Value) -> UpstreamResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        raw_response(status, map, body.to_string().as_bytes())
    }

    fn raw_response(status: u16, headers: HeaderMap, body: &[u8]) -> UpstreamResponse {
        UpstreamResponse::new(
            reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body,
            Some("req_1"),
            &Scrubber::default(),
        )
    }

    fn stripe_error(kind: &str, code: Option<&str>, param: Option<&str>) -> Value {
        json!({"error": {"type": kind, "code": code, "message": "nope", "param": param, "doc_url": "https://stripe.com/docs/error-codes"}})
    }

    #[test]
    fn live_keys_are_recognised() {
        assert!(is_live_key("sk_live_abc"));
        assert!(is_live_key("rk_live_abc"));
        assert!(!is_live_key("sk_test_abc"));
        assert!(!is_live_key("rk_test_abc"));
        assert!(!is_live_key("pk_live_abc"), "publishable keys cannot write");
        assert!(!is_live_key(""));
    }

    #[test]
    fn versions_are_dates_with_an_optional_release_name() {
        assert_eq!(check_version(" 2024-04-10 ").unwrap(), "2024-04-10");
        assert!(check_version("2024-09-30.acacia").is_ok());
        for bad in [
            "",
            "2024-13-01",
            "latest",
            "2024-04-10.",
            "2024-04-10x",
            "2024-04-10.a b",
            "٢٠٢٤-٠٤-١٠",
            "2024-04-1é",
        ] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_headers_are_the_reference_prefixed_and_header_safe() {
        let reference = uuid::Uuid::new_v4().to_string();
        let a = idempotency_header(&reference);
        assert_eq!(a, format!("paylink-{reference}"));
        assert_eq!(a.len(), "paylink-".len() + 36);
        assert!(HeaderValue::from_str(&a).is_ok());
    }

    #[test]
    fn params_map_to_our_fields() {
        for (param, field) in [
            ("line_items", "items"),
            ("line_items[0][price]", "items[0].product_id"),
            ("line_items[12][quantity]", "items[12].quantity"),
            ("line_items[3]", "items[3]"),
            ("line_items[3][adjustable_quantity][enabled]", "items[3]"),
            ("metadata[order]", "metadata.order"),
            ("metadata[paylink_name]", "name"),
            ("metadata[paylink_description]", "description"),
            ("metadata", "metadata"),
            (
                "restrictions[completed_sessions][limit]",
                "max_number_of_payments",
            ),
            ("after_completion[redirect][url]", "success_redirect_url"),
            ("after_completion[type]", "success_redirect_url"),
            ("currency", "currency"),
            ("active", "status"),
            ("inactive_message", "message"),
            ("limit", "limit"),
            ("starting_after", "starting_after"),
            ("line_items[x][price]", "line_items[x][price]"),
            ("weird[", "weird["),
            ("", ""),
        ] {
            assert_eq!(our_field(param), field, "{param}");
        }
    }

    #[test]
    fn errors_become_envelopes() {
        let d = StripeErrors::default();
        let e = d.decode_error(
            &response(
                400,
                &[],
                stripe_error(
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    Some("line_items[1][quantity]"),
                ),
            ),
            RetryMode::IdempotentWrite,
        );
        assert_eq!(e.kind().as_str(), "validation");
        assert_eq!(e.field(), Some("items[1].quantity"));
        let body = e.body();
        assert_eq!(body.status, Some(400));
        assert_eq!(
            body.upstream_code.as_deref(),
            Some("parameter_invalid_integer")
        );
        assert_eq!(body.request_id.as_deref(), Some("req_1"));

        let e = d.decode_error(
            &response(400, &[], stripe_error("idempotency_error", None, None)),
            RetryMode::IdempotentWrite,
        );
        assert_eq!(e.kind().as_str(), "idempotency_conflict");

        let e = d.decode_error(
            &response(400, &[], stripe_error("invalid_request_error", None, None)),
            RetryMode::Read,
        );
        assert_eq!(e.kind().as_str(), "upstream");
        assert_eq!(
            e.body().upstream_code.as_deref(),
            Some("invalid_request_error"),
            "the type stands in for a missing code"
        );

        for (status, kind, retry_safe) in [
            (401, "auth", false),
            (402, "upstream", false),
            (403, "auth", false),
            (404, "not_found", false),
            (409, "upstream", false),
            (429, "rate_limited", true),
        ] {
            let e = d.decode_error(
                &response(
                    status,
                    &[],
                    stripe_error("invalid_request_error", Some("x"), None),
                ),
                RetryMode::Read,
            );
            assert_eq!(e.kind().as_str(), kind, "{status}");
            assert_eq!(e.retry_safe(), retry_safe, "{status}");
        }
    }

    #[test]
    fn a_5xx_on_a_create_is_final_unless_stripe_says_retry() {
        let body = stripe_error("api_error", None, None);
        for caller_key in [false, true] {
            let d = StripeErrors { caller_key };
            let e = d.decode_error(
                &response(500, &[], body.clone()),
                RetryMode::IdempotentWrite,
            );
            assert_eq!(e.kind().as_str(), "outcome_unknown");
            assert!(!e.retry_safe());
            let e = d.decode_error(
                &response(500, &[("stripe-should-retry", "false")], body.clone()),
                RetryMode::IdempotentWrite,
            );
            assert_eq!(e.kind().as_str(), "outcome_unknown");
            let e = d.decode_error(
                &response(503, &[("stripe-should-retry", "true")], body.clone()),
                RetryMode::IdempotentWrite,
            );
            assert_eq!(e.kind().as_str(), "upstream");
            assert!(e.retry_safe());
        }
        let e = StripeErrors::default().decode_error(&response(500, &[], body), RetryMode::Read);
        assert!(e.retry_safe(), "a failed read can be sent again");
    }

    #[test]
    fn stripe_should_retry_and_key_in_use_drive_retries() {
        let d = StripeErrors::default();
        let plain = stripe_error("api_error", None, None);
        assert_eq!(
            d.upstream_says_retry(&response(
                500,
                &[("stripe-should-retry", "true")],
                plain.clone()
            )),
            Some(true)
        );
        assert_eq!(
            d.upstream_says_retry(&response(
                503,
                &[("stripe-should-retry", " False ")],
                plain.clone()
            )),
            Some(false)
        );
        assert_eq!(
            d.upstream_says_retry(&response(500, &[], plain.clone())),
            None
        );
        let in_use = stripe_error(
            "invalid_request_error",
            Some("idempotency_key_in_use"),
            None,
        );
        assert_eq!(
            d.upstream_says_retry(&response(409, &[], in_use.clone())),
            Some(true)
        );
        // Exhausted retries on our own key: the caller cannot know whether the link exists.
        let e = d.decode_error(
            &response(409, &[], in_use.clone()),
            RetryMode::IdempotentWrite,
        );
        assert_eq!(e.kind().as_str(), "outcome_unknown");
        let e = StripeErrors { caller_key: true }
            .decode_error(&response(409, &[], in_use), RetryMode::IdempotentWrite);
        assert_eq!(e.kind().as_str(), "upstream");
        assert!(e.retry_safe());
    }

    #[test]
    fn undecodable_error_bodies_are_described() {
        let d = StripeErrors::default();
        let mut html = HeaderMap::new();
        html.insert("content-type", HeaderValue::from_static("text/html"));
        let r = raw_response(502, html.clone(), b"<html>bad gateway</html>");
        let e = d.decode_error(&r, RetryMode::Read);
        assert!(e.to_string().contains("text/html"), "{e}");
        let r = raw_response(502, html, b"");
        assert!(
            d.decode_error(&r, RetryMode::Read)
                .to_string()
                .contains("empty body")
        );
    }

    fn request(currency: Option<&str>) -> NewPaymentLink {
        let meta: BTreeMap<String, String> = [("order".to_string(), "42 & co".to_string())].into();
        NewPaymentLink {
            name: LinkName::parse("Order 7", "name").unwrap(),
            items: vec![
                NewItem {
                    product_id: ProductId::parse("prod_A", "f", IdFormat::Stripe).unwrap(),
                    quantity: Quantity::parse(2, "q").unwrap(),
                    coupons: vec![],
                },
                NewItem {
                    product_id: ProductId::parse("price_B", "f", IdFormat::Stripe).unwrap(),
                    quantity: Quantity::one(),
                    coupons: vec![],
                },
            ],
            description: Some(Description::parse("Friday", "description").unwrap()),
            currency: currency.map(|c| CurrencyCode::parse(c, "currency").unwrap()),
            coupons: vec![],
            valid_until: None,
            max_number_of_payments: Some(MaxPayments::parse(5, "m").unwrap()),
            success_redirect_url: Some(RedirectUrl::parse("https://shop.example/ok", "u").unwrap()),
            failure_redirect_url: None,
            organization_consumer_id: None,
            metadata: Metadata::parse(meta, "metadata", 3).unwrap(),
            idempotency_key: None,
            reference: "ref-1".into(),
        }
    }

    #[test]
    fn the_create_form_has_exactly_stripes_parameters() {
        let form = create_form(
            &request(Some("KWD")),
            &["price_A1".into(), "price_B".into()],
            "ref-1",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = form
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("line_items[0][price]", "price_A1"),
                ("line_items[0][quantity]", "2"),
                ("line_items[1][price]", "price_B"),
                ("line_items[1][quantity]", "1"),
                ("currency", "kwd"),
                ("restrictions[completed_sessions][limit]", "5"),
                ("after_completion[type]", "redirect"),
                ("after_completion[redirect][url]", "https://shop.example/ok"),
                ("metadata[order]", "42 & co"),
                ("metadata[paylink_name]", "Order 7"),
                ("metadata[paylink_description]", "Friday"),
                ("metadata[paylink_request_id]", "ref-1"),
            ]
        );
    }

    fn facts(id: &str, currency: &str, options: &[&str]) -> PriceFacts {
        PriceFacts {
            id: id.into(),
            currency: Some(currency.into()),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_currency_per_link() {
        let usd = facts("price_1", "usd", &[]);
        let eur = facts("price_2", "eur", &[]);
        let multi = facts("price_3", "usd", &["eur"]);
        assert!(check_currencies(&[usd.clone(), usd.clone()], None).is_ok());
        let e = check_currencies(&[usd.clone(), eur.clone()], None).unwrap_err();
        assert_eq!(e.field(), Some("items"));
        assert!(e.to_string().contains("USD") && e.to_string().contains("EUR"));
        let usd_code = CurrencyCode::parse("usd", "c").ok();
        let eur_code = CurrencyCode::parse("eur", "c").ok();
        assert!(check_currencies(std::slice::from_ref(&usd), usd_code).is_ok());
        let e = check_currencies(std::slice::from_ref(&usd), eur_code).unwrap_err();
        assert_eq!(e.field(), Some("currency"));
        assert!(check_currencies(&[multi, eur], eur_code).is_ok());
    }

    #[test]
    fn links_read_tolerantly() {
        let v = json!({
            "id": "plink_1", "object": "payment_link", "active": false, "currency": "jpy",
            "livemode": true, "url": "https://buy.stripe.com/x",
            "inactive_message": "closed",
            "metadata": {"paylink_name": "N", "paylink_request_id": "r", "order": "1"},
            "restrictions": {"completed_sessions": {"count": 0, "limit": 3}},
            "after_completion": {"type": "redirect", "redirect": {"url": "https://x.example"}},
        });
        let mut l = link_from_stripe(&v, false).unwrap();
        assert_eq!(l.name.as_deref(), Some("N"));
        assert_eq!(l.status, Some(LinkStatus::Inactive));
        assert_eq!(l.currency.as_deref(), Some("JPY"));
        assert!(l.livemode, "the object's livemode wins");
        assert_eq!(l.max_number_of_payments, Some(3));
        assert_eq!(l.success_redirect_url.as_deref(), Some("https://x.example"));
        assert_eq!(l.metadata.len(), 1);
        let items = [
            json!({"id": "li_1", "amount_total": 1200, "amount_subtotal": 1200, "currency": "jpy"}),
            json!({"id": "li_2", "amount_total": 300, "amount_subtotal": 400, "currency": "jpy",
                   "price": {"recurring": {"interval": "month"}}}),
        ];
        apply_line_items(&mut l, &items, true);
        let total = l.total.clone().unwrap();
        assert_eq!(serde_json::to_value(total).unwrap()["amount"], "1500");
        assert_eq!(l.item_count, Some(2));
        assert_eq!(l.recurring_interval.as_deref(), Some("month"));
        apply_line_items(&mut l, &items, false);
        assert!(l.total.is_none() && l.item_count.is_none());
        // An item in another currency, or without an amount: no total rather than a wrong one.
        let odd = [json!({"id": "li_3", "amount_total": 5, "currency": "usd"})];
        apply_line_items(&mut l, &odd, true);
        assert!(l.total.is_none());
        let overflow = [
            json!({"id": "a", "amount_total": i64::MAX, "currency": "jpy"}),
            json!({"id": "b", "amount_total": 1, "currency": "jpy"}),
        ];
        apply_line_items(&mut l, &overflow, true);
        assert!(l.total.is_none());

        assert!(link_from_stripe(&json!({"active": true}), false).is_err());
        for junk in [json!(null), json!([1]), json!("x"), json!({"id": 5})] {
            assert!(link_from_stripe(&junk, false).is_err());
        }
        let bare = link_from_stripe(&json!({"id": "plink_2", "currency": "xts"}), false).unwrap();
        assert_eq!(bare.currency.as_deref(), Some("XTS"));
        let mut bare = bare;
        apply_line_items(&mut bare, &[json!({"id": "li", "amount_total": 5})], true);
        assert!(bare.total.is_none(), "an unknown currency has no amounts");
    }

    #[test]
    fn line_items_and_products_read_tolerantly() {
        let item = json!({
            "id": "li_1", "object": "item", "amount_subtotal": 7000, "amount_total": 7000,
            "currency": "kwd", "description": "Dates", "quantity": 2,
            "price": {"id": "price_D", "product": "prod_D", "currency": "kwd", "unit_amount": 3500,
                      "type": "recurring", "recurring": {"interval": "Year"}},
        });
        let li = line_item_from_stripe(&item, None).unwrap();
        assert_eq!(li.product_id.as_deref(), Some("price_D"));
        assert_eq!(li.product_name.as_deref(), Some("Dates"));
        assert_eq!(li.quantity, Some(2));
        assert_eq!(
            serde_json::to_value(li.unit_amount.unwrap()).unwrap(),
            json!({"amount_minor": 3500, "amount": "3.500", "currency": "KWD"})
        );
        assert_eq!(li.kind, Some(ProductKind::Recurring));
        assert_eq!(li.interval.as_deref(), Some("year"));
        // A price in another currency charged through its currency option.
        let converted = json!({"id": "li_2", "amount_subtotal": 900, "amount_total": 900,
            "currency": "eur", "quantity": 3,
            "price": {"id": "price_E", "currency": "usd", "unit_amount": 350}});
        let li = line_item_from_stripe(&converted, None).unwrap();
        assert_eq!(
            serde_json::to_value(li.unit_amount.unwrap()).unwrap()["amount_minor"],
            300
        );
        assert!(line_item_from_stripe(&json!({"amount_total": 1}), None).is_none());
        let weird = line_item_from_stripe(
            &json!({"id": "li", "quantity": -3, "currency": "zzz"}),
            None,
        )
        .unwrap();
        assert_eq!(weird.quantity, None, "-3 is unreadable, not 1");
        assert!(weird.total.is_none() && weird.unit_amount.is_none());

        let product = json!({"id": "prod_1", "name": "Tea", "default_price": {
            "id": "price_1", "currency": "usd", "unit_amount": 450, "type": "one_time",
            "currency_options": {"eur": {"unit_amount": 400}, "usd": {"unit_amount": 450}, "xts": {"unit_amount": 1}}}});
        let p = product_from_stripe(&product).unwrap();
        assert_eq!(p.kind, Some(ProductKind::OneTime));
        let prices = serde_json::to_value(&p.prices).unwrap();
        assert_eq!(
            prices,
            json!([
                {"amount_minor": 450, "amount": "4.50", "currency": "USD"},
                {"amount_minor": 400, "amount": "4.00", "currency": "EUR"}
            ])
        );
        let unexpanded =
            product_from_stripe(&json!({"id": "prod_2", "default_price": "price_2"})).unwrap();
        assert!(unexpanded.prices.is_empty() && unexpanded.kind.is_none());
        assert!(product_from_stripe(&json!({"name": "no id"})).is_none());
    }

    #[test]
    fn an_unreadable_quantity_is_null_and_so_is_the_unit_derived_from_it() {
        // A tiered price has no unit_amount: the unit can only be derived from the quantity.
        let line = |q: Option<Value>| {
            let mut v = json!({"id": "li_1", "currency": "usd", "amount_subtotal": 50_000_000_000i64,
                "amount_total": 50_000_000_000i64, "price": {"id": "price_T", "currency": "usd",
                "billing_scheme": "tiered", "unit_amount": null}});
            if let Some(q) = q {
                v["quantity"] = q;
            }
            v
        };
        let minor = |m: Option<crate::domain::MoneyView>| {
            m.map(|m| {
                serde_json::to_value(m).unwrap()["amount_minor"]
                    .as_i64()
                    .unwrap()
            })
        };
        for (what, q) in [
            ("missing", None),
            ("negative", Some(json!(-3))),
            ("above u32", Some(json!(5_000_000_000u64))),
            ("fraction", Some(json!(2.5))),
            ("word", Some(json!("two"))),
            ("null", Some(Value::Null)),
        ] {
            let item = line_item_from_stripe(&line(q), None).unwrap();
            assert_eq!(item.quantity, None, "{what}");
            assert_eq!(item.unit_amount, None, "{what}: no unit without a quantity");
            assert_eq!(
                minor(item.total),
                Some(50_000_000_000),
                "{what}: the total stays"
            );
        }
        let zero = line_item_from_stripe(&line(Some(json!(0))), None).unwrap();
        assert_eq!((zero.quantity, zero.unit_amount), (Some(0), None));
        for q in [json!(4), json!(4.0), json!("4")] {
            let item = line_item_from_stripe(&line(Some(q.clone())), None).unwrap();
            assert_eq!(item.quantity, Some(4), "{q}");
            assert_eq!(minor(item.unit_amount), Some(12_500_000_000), "{q}");
        }
        // The price's own unit_amount does not depend on the quantity.
        let mut priced = line(Some(json!(-1)));
        priced["price"]["unit_amount"] = json!(700);
        let item = line_item_from_stripe(&priced, None).unwrap();
        assert_eq!((item.quantity, minor(item.unit_amount)), (None, Some(700)));
    }

    #[test]
    fn cursors_must_be_id_cursors() {
        let limit = PageLimit::parse(Some(5), "limit").unwrap();
        let c = next_cursor(true, Some("prod_9"), limit).unwrap();
        let decoded = Cursor::decode(&c, None).unwrap();
        assert_eq!(after_id(Some(&decoded)).unwrap(), Some("prod_9"));
        assert_eq!(next_cursor(false, Some("prod_9"), limit), None);
        assert_eq!(next_cursor(true, None, limit), None);
        let page = Cursor::Page(crate::domain::PageCursor {
            page: 2,
            limit,
            skip: 0,
        });
        assert_eq!(after_id(Some(&page)).unwrap_err().field(), Some("cursor"));
    }

    #[test]
    fn a_404_about_the_path_names_our_argument_and_others_keep_theirs() {
        let nf = |field: Option<&str>| Error::NotFound {
            field: field.map(str::to_owned),
            message: "No such thing".into(),
            upstream: UpstreamContext::default(),
        };
        for path in [None, Some("id")] {
            let e = name_not_found(nf(path), "payment_link_id");
            assert_eq!(e.field(), Some("payment_link_id"));
        }
        let e = name_not_found(nf(Some("starting_after")), "payment_link_id");
        assert_eq!(e.field(), Some("starting_after"));
        let e = item_error(nf(Some("id")), "items[2].product_id");
        assert_eq!(e.field(), Some("items[2].product_id"));
    }

    #[test]
    fn create_failures_say_what_the_caller_may_do() {
        let timeout = || Error::OutcomeUnknown {
            message: "Stripe did not answer in time (x); the write may or may not have happened"
                .into(),
            upstream: UpstreamContext::default(),
        };
        assert_eq!(
            create_failure(timeout(), false).kind().as_str(),
            "outcome_unknown"
        );
        assert!(create_failure(timeout(), true).retry_safe());
        let refused = Error::Upstream {
            field: None,
            message: "could not connect to Stripe: refused; nothing was sent, retrying is safe"
                .into(),
            retry_safe: true,
            upstream: UpstreamContext::default(),
        };
        assert!(create_failure(refused, false).retry_safe());
        let unreadable = Error::Upstream {
            field: None,
            message: "Stripe answered 200 with malformed JSON".into(),
            retry_safe: false,
            upstream: UpstreamContext {
                status: Some(200),
                ..UpstreamContext::default()
            },
        };
        assert_eq!(
            create_failure(unreadable, true).kind().as_str(),
            "outcome_unknown"
        );
    }
}
