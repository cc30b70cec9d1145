//! Stream (streampay.sa): payment links over Stream's JSON API v2.
//!
//! Facts this module relies on: auth is `x-api-key: base64(key:secret)` (or a ready token), an
//! optional `x-branch-id` selects a branch; create is `POST /api/v2/payment_links` and answers the
//! detailed link; there is no line-item endpoint (items are the link's `items[]`); Stream has no
//! idempotency, so a create that may have reached it is never retried. Answers are parsed
//! tolerantly (every field optional, unknown fields ignored): see [`super::tolerant`].

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

use super::tolerant::Obj;
use super::{
    Backend, LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate, TargetStatus,
    page_by_item_id,
};
use crate::domain::{CurrencyCode, Cursor, Money, PageBytes, PageCursor, PaymentLinkId};
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

/// Stream's production API: live money.
pub const PRODUCTION_BASE_URL: &str = "https://stream-app-service.streampay.sa";
/// Stream's staging API: no real money.
pub const STAGING_BASE_URL: &str = "https://staging.streampay.sa";

const RECOVERY_PAGES: u32 = 2;
const RECOVERY_PAGE_SIZE: u32 = 50;
const RECOVERY_ATTEMPTS: u32 = 2;
const RECOVERY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// True when `base` is Stream's production host, where links take real money.
pub fn is_live_base_url(base: &str) -> bool {
    url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| h == "stream-app-service.streampay.sa")
}

/// The value of `x-api-key` for a configured key: `key:secret` is Base64-encoded, anything else
/// is a ready token sent as is.
pub fn token_for(key: &ApiKey) -> String {
    let raw = key.expose();
    if raw.contains(':') {
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    } else {
        raw.to_owned()
    }
}

/// One tenant's view of Stream.
pub struct StreamBackend {
    client: Arc<UpstreamClient>,
    api_key: HeaderValue,
    branch_id: Option<HeaderValue>,
    scrubber: Scrubber,
    live: bool,
}

impl StreamBackend {
    /// `branch_id` must already be a validated UUID.
    pub fn new(client: Arc<UpstreamClient>, key: &ApiKey, branch_id: Option<&str>) -> Result<Self> {
        let token = token_for(key);
        let api_key = sensitive_header(&token)?;
        let branch_id = branch_id
            .map(|b| {
                HeaderValue::from_str(b)
                    .map_err(|_| Error::validation("branch_id", "must be a UUID"))
            })
            .transpose()?;
        let mut secrets = vec![token.clone()];
        // Base64 without its padding is still the whole key.
        let unpadded = token.trim_end_matches('=');
        if unpadded != token {
            secrets.push(unpadded.to_owned());
        }
        if token != key.expose() {
            secrets.push(key.expose().to_owned());
            if let Some((_, secret)) = key.expose().split_once(':') {
                secrets.push(secret.to_owned());
            }
        }
        Ok(StreamBackend {
            live: is_live_base_url(client.base()),
            client,
            api_key,
            branch_id,
            scrubber: Scrubber::new(secrets),
        })
    }

    fn request(
        &self,
        method: Method,
        path_and_query: String,
        body: Body,
        retry: RetryMode,
    ) -> UpstreamRequest {
        let mut headers = reqwest::header::HeaderMap::with_capacity(3);
        headers.insert("x-api-key", self.api_key.clone());
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if let Some(branch) = &self.branch_id {
            headers.insert("x-branch-id", branch.clone());
        }
        UpstreamRequest {
            method,
            path_and_query,
            headers,
            body,
            retry,
        }
    }

    async fn send(&self, request: UpstreamRequest) -> Result<Value> {
        let response = self
            .client
            .send(&request, &StreamErrors, &self.scrubber)
            .await?;
        json_body(response, "Stream")
    }

    fn link(&self, v: &Value) -> Result<PaymentLink> {
        link_from_stream(v, self.live)
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
                let v = self
                    .send(self.request(
                        Method::GET,
                        format!(
                            "/api/v2/payment_links?page={page}&limit={RECOVERY_PAGE_SIZE}&sort_field=created_at&sort_direction=desc"
                        ),
                        Body::None,
                        RetryMode::Read,
                    ))
                    .await?;
                let root = Obj(&v);
                let found = root.array("data").iter().find(|l| {
                    Obj(l)
                        .obj("custom_metadata")
                        .and_then(|m| m.str(REQUEST_REF_KEY))
                        == Some(reference)
                });
                if let Some(link) = found {
                    return self.link(link).map(Some);
                }
                let more = root
                    .obj("pagination")
                    .and_then(|p| p.bool("has_next_page"))
                    .unwrap_or(false);
                if !more {
                    break;
                }
            }
        }
        Ok(None)
    }
}

/// The JSON body of `POST /api/v2/payment_links`: exactly the documented fields, absent ones
/// omitted (never null), `quantity` always sent, currency upper-case.
pub fn create_body(request: &NewPaymentLink) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(request.name.as_str()));
    let items: Vec<Value> = request
        .items
        .iter()
        .map(|item| {
            let mut i = Map::new();
            i.insert("product_id".into(), json!(item.product_id.as_str()));
            i.insert("quantity".into(), json!(item.quantity.get()));
            if !item.coupons.is_empty() {
                i.insert(
                    "coupons".into(),
                    json!(item.coupons.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
                );
            }
            Value::Object(i)
        })
        .collect();
    body.insert("items".into(), Value::Array(items));
    if let Some(d) = &request.description {
        body.insert("description".into(), json!(d.as_str()));
    }
    if let Some(c) = request.currency {
        body.insert("currency".into(), json!(c.code()));
    }
    if !request.coupons.is_empty() {
        body.insert(
            "coupons".into(),
            json!(
                request
                    .coupons
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
            ),
        );
    }
    if let Some(m) = request.max_number_of_payments {
        body.insert("max_number_of_payments".into(), json!(m.get()));
    }
    if let Some(v) = request.valid_until {
        body.insert("valid_until".into(), json!(v.to_rfc3339()));
    }
    if let Some(u) = &request.success_redirect_url {
        body.insert("success_redirect_url".into(), json!(u.as_str()));
    }
    if let Some(u) = &request.failure_redirect_url {
        body.insert("failure_redirect_url".into(), json!(u.as_str()));
    }
    if let Some(c) = &request.organization_consumer_id {
        body.insert("organization_consumer_id".into(), json!(c));
    }
    let mut metadata: Map<String, Value> = request
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    metadata.insert(REQUEST_REF_KEY.into(), json!(request.reference));
    body.insert("custom_metadata".into(), Value::Object(metadata));
    Value::Object(body)
}

#[async_trait]
impl Backend for StreamBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Stream
    }

    fn livemode(&self) -> bool {
        self.live
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let body = create_body(&request);
        let bytes = Bytes::from(body.to_string());
        let answer = self
            .send(self.request(
                Method::POST,
                "/api/v2/payment_links".into(),
                Body::Json(bytes),
                RetryMode::UnsafeWrite,
            ))
            .await;
        let created = answer.and_then(|v| {
            self.link(&v).map_err(|e| Error::OutcomeUnknown {
                message: format!(
                    "{e}; Stream accepted the create but its answer could not be read"
                ),
                upstream: UpstreamContext::default(),
            })
        });
        match created.map_err(unknown_outcome_for_5xx) {
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

    async fn recover_create(&self, reference: &str) -> Result<Option<PaymentLink>> {
        self.find_by_reference(reference).await
    }

    async fn get_payment_link(&self, id: &PaymentLinkId) -> Result<PaymentLink> {
        let v = self
            .send(self.request(
                Method::GET,
                format!("/api/v2/payment_links/{id}"),
                Body::None,
                RetryMode::Read,
            ))
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        self.link(&v)
    }

    async fn list_line_items(&self, query: LineItemsQuery) -> Result<Page<LineItem>> {
        let v = self
            .send(self.request(
                Method::GET,
                format!("/api/v2/payment_links/{}", query.payment_link_id),
                Body::None,
                RetryMode::Read,
            ))
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        let link = Obj(&v);
        let currency = link
            .str("currency")
            .and_then(|c| CurrencyCode::parse(c, "currency").ok());
        let items = link
            .array("items")
            .iter()
            .filter_map(|i| line_item_from_stream(i, currency))
            .collect();
        page_by_item_id(items, &query)
    }

    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let v = self
            .send(self.request(
                Method::GET,
                format!(
                    "/api/v2/products?page={}&limit={}",
                    cursor.page,
                    cursor.limit.get()
                ),
                Body::None,
                RetryMode::Read,
            ))
            .await?;
        Ok(stream_page(
            &Obj(&v),
            cursor,
            query.max_bytes,
            product_from_stream,
        ))
    }

    async fn list_payment_links(&self, query: LinksQuery) -> Result<Page<PaymentLink>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let mut path = format!(
            "/api/v2/payment_links?page={}&limit={}&sort_field=created_at&sort_direction=desc",
            cursor.page,
            cursor.limit.get()
        );
        if let Some(status) = query.status {
            path.push_str(match status {
                LinkStatus::Active => "&statuses=ACTIVE",
                LinkStatus::Inactive => "&statuses=INACTIVE",
                LinkStatus::Completed => "&statuses=COMPLETED",
            });
        }
        for (name, at) in [
            ("from_date", query.created_from),
            ("to_date", query.created_to),
        ] {
            if let Some(at) = at {
                // RFC 3339 in UTC: only digits, `-`, `:`, `T`, `.` and `Z`, all query-safe.
                let text = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                path.push_str(&format!("&{name}={text}"));
            }
        }
        let v = self
            .send(self.request(Method::GET, path, Body::None, RetryMode::Read))
            .await?;
        Ok(stream_page(&Obj(&v), cursor, query.max_bytes, |l| {
            self.link(l).ok()
        }))
    }

    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink> {
        let mut body = Map::new();
        body.insert(
            "status".into(),
            json!(match update.status {
                TargetStatus::Active => "ACTIVE",
                TargetStatus::Inactive => "INACTIVE",
            }),
        );
        if let Some(m) = &update.message {
            body.insert("deactivate_message".into(), json!(m));
        }
        // Setting a status is idempotent: sending it twice leaves the same state.
        let v = self
            .send(self.request(
                Method::PATCH,
                format!("/api/v2/payment_links/{}/status", update.payment_link_id),
                Body::Json(Bytes::from(Value::Object(body).to_string())),
                RetryMode::Read,
            ))
            .await
            .map_err(|e| name_not_found(e, "payment_link_id"))?;
        self.link(&v)
    }
}

/// A page of a Stream listing, within the byte cap: Stream says whether a next page exists;
/// our cursor names it.
///
/// Stream pages by number, so a page cut by the byte cap cannot name its continuation to
/// Stream: the cursor names the same page and how many of its entries were already returned
/// (`skip`), and the next call asks Stream for that page again and goes on after them. That is
/// exact while the listing does not change between the two calls — the guarantee page numbers
/// give anyway (a link created meanwhile shifts a newest-first listing by one, cut or not).
fn stream_page<T: Serialize>(
    root: &Obj<'_>,
    cursor: PageCursor,
    max_bytes: PageBytes,
    parse: impl Fn(&Value) -> Option<T>,
) -> Page<T> {
    let upstream_more = root
        .obj("pagination")
        .and_then(|p| p.bool("has_next_page"))
        .unwrap_or(false);
    // Each entry with its position in Stream's page, so that a cut resumes after the last one
    // returned even when entries that cannot be read were skipped.
    let parsed: Vec<(usize, T)> = root
        .array("data")
        .iter()
        .enumerate()
        .skip(cursor.skip as usize)
        .filter_map(|(i, v)| parse(v).map(|t| (i, t)))
        .collect();
    let fit = max_bytes.fit(parsed.iter().map(|(_, t)| t), parsed.len());
    let next = match parsed.get(fit.count.wrapping_sub(1)) {
        Some((last, _)) if fit.cut => Some(cursor.at(last + 1)),
        _ => upstream_more.then(|| cursor.next()),
    };
    Page {
        data: parsed.into_iter().take(fit.count).map(|(_, t)| t).collect(),
        has_more: next.is_some(),
        next_cursor: next.map(|c| c.encode()),
    }
}

/// A 5xx answer to a create means Stream may have stored the link before failing.
/// A 2xx whose body cannot be read means Stream created the link and we cannot say which: unknown
/// too, never "nothing created".
fn unknown_outcome_for_5xx(e: Error) -> Error {
    match e {
        Error::Upstream {
            upstream, message, ..
        } if upstream
            .status
            .is_some_and(|s| s >= 500 || (200..300).contains(&s)) =>
        {
            Error::OutcomeUnknown {
                message: format!(
                    "{message}; the link may or may not have been created. Do not create it again blindly: look for it first"
                ),
                upstream,
            }
        }
        other => other,
    }
}

fn name_not_found(e: Error, field: &str) -> Error {
    match e {
        Error::NotFound {
            field: None,
            message,
            upstream,
        } => Error::NotFound {
            field: Some(field.to_owned()),
            message,
            upstream,
        },
        other => other,
    }
}

/// Reads Stream's error shapes.
pub struct StreamErrors;

/// Maps Stream's field names (in `loc`) to ours.
fn our_field(loc: &[Value]) -> String {
    let mut out = String::new();
    for (i, part) in loc.iter().enumerate() {
        match part {
            // FastAPI prefixes the location: body, query, path.
            Value::String(s) if i == 0 && matches!(s.as_str(), "body" | "query" | "path") => {}
            Value::String(s) => {
                let name = match s.as_str() {
                    "custom_metadata" => "metadata",
                    other => other,
                };
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Value::Number(n) => out.push_str(&format!("[{n}]")),
            _ => {}
        }
    }
    if out.is_empty() {
        "arguments".into()
    } else {
        out
    }
}

impl ErrorDecoder for StreamErrors {
    fn upstream_name(&self) -> &'static str {
        "Stream"
    }

    fn request_id_header(&self) -> &'static str {
        "x-request-id"
    }

    fn decode_error(&self, response: &UpstreamResponse, retry: RetryMode) -> Error {
        let status = response.status.as_u16();
        let mut ctx = response.context();
        let parsed: Option<&Value> = response.json.as_ref().ok();
        let root = parsed.map(Obj);
        // 422 {"detail": [{"loc": [...], "msg": ...}]}
        if let Some(detail) = root
            .as_ref()
            .map(|r| r.array("detail"))
            .filter(|d| !d.is_empty())
        {
            // Not empty: filtered just above.
            let first = Obj(&detail[0]);
            let field = our_field(first.array("loc"));
            let msg = first.str("msg").unwrap_or("is invalid");
            ctx.code = first.str("type").map(|t| t.chars().take(80).collect());
            return Error::Validation {
                message: format!("Stream refused it: {}", truncate(msg)),
                field,
                upstream: Some(ctx),
            };
        }
        // {"error": {"code", "message", "additional_info"}}; FastAPI also sends {"detail": "..."}.
        let (code, message) = match &root {
            Some(r) => match r.obj("error") {
                Some(e) => (
                    e.str("code")
                        .map(|c| c.chars().take(80).collect::<String>()),
                    e.str("message").map(truncate),
                ),
                None => (None, r.str("detail").or(r.str("message")).map(truncate)),
            },
            None => (None, None),
        };
        ctx.code = code;
        let described = match (&message, parsed.is_some()) {
            (Some(m), _) => format!("Stream answered {status}: {m}"),
            (None, true) => format!("Stream answered {status}"),
            (None, false) if response.body_len == 0 => {
                format!("Stream answered {status} with an empty body")
            }
            (None, false) => format!(
                "Stream answered {status} with a {} body",
                response.content_type()
            ),
        };
        match status {
            401 => Error::Auth {
                message: format!(
                    "{described}; the Stream API key was refused (check STREAM_API_KEY or your Bearer token)"
                ),
                upstream: ctx,
            },
            403 => Error::Auth {
                message: format!("{described}; this key may not do that (permissions or branch)"),
                upstream: ctx,
            },
            404 | 410 => Error::NotFound {
                field: None,
                message: described,
                upstream: ctx,
            },
            429 => Error::RateLimited {
                retry_safe: true,
                message: format!("{described}; slow down and retry later"),
                retry_after_secs: crate::upstream::retry_after(&response.headers)
                    .map(|d| d.as_secs()),
                upstream: ctx,
            },
            400 | 409 | 422 => Error::Upstream {
                field: None,
                message: described,
                retry_safe: false,
                upstream: ctx,
            },
            s => Error::Upstream {
                field: None,
                message: described,
                // A failed read can always be sent again; a failed write is the caller's call.
                retry_safe: s >= 500 && retry == RetryMode::Read,
                upstream: ctx,
            },
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

fn money(
    v: &Obj<'_>,
    minor_key: &str,
    decimal_key: &str,
    currency: Option<CurrencyCode>,
) -> Option<Money> {
    let currency = currency?;
    if let Some(minor) = v.i64(minor_key) {
        return Some(Money::from_minor(minor, currency));
    }
    v.decimal_str(decimal_key)
        .and_then(|s| Money::parse_decimal(&s, currency).ok())
}

fn status_of(s: &str) -> Option<LinkStatus> {
    match s.to_ascii_uppercase().as_str() {
        "ACTIVE" => Some(LinkStatus::Active),
        "INACTIVE" => Some(LinkStatus::Inactive),
        "COMPLETED" => Some(LinkStatus::Completed),
        _ => None,
    }
}

fn kind_of(s: &str) -> Option<ProductKind> {
    match s.to_ascii_uppercase().as_str() {
        "ONE_OFF" => Some(ProductKind::OneTime),
        "RECURRING" => Some(ProductKind::Recurring),
        "METERED" => Some(ProductKind::Metered),
        _ => None,
    }
}

/// A `PaymentLinkDetailed` as our [`PaymentLink`]. Only a missing `id` is an error.
pub fn link_from_stream(v: &Value, live: bool) -> Result<PaymentLink> {
    let o = Obj(v);
    let id = o.str("id").ok_or_else(|| Error::Upstream {
        field: None,
        message: "Stream's answer has no payment link id".into(),
        retry_safe: false,
        upstream: UpstreamContext::default(),
    })?;
    let currency = o
        .str("currency")
        .and_then(|c| CurrencyCode::parse(c, "currency").ok());
    let items = o.array("items");
    Ok(PaymentLink {
        id: id.to_owned(),
        url: o.str("url").map(str::to_owned),
        name: o.str("name").map(str::to_owned),
        description: o.str("description").map(str::to_owned),
        status: o.str("status").and_then(status_of),
        currency: currency
            .map(|c| c.code().to_owned())
            .or_else(|| o.str("currency").map(str::to_owned)),
        total: money(&o, "amount_in_smallest_unit", "amount", currency).map(Money::view),
        original_total: money(
            &o,
            "original_amount_in_smallest_unit",
            "original_amount",
            currency,
        )
        .map(Money::view),
        amount_collected: money(
            &o,
            "amount_collected_in_smallest_unit",
            "amount_collected",
            currency,
        )
        .map(Money::view),
        item_count: o.get("items").map(|_| items.len() as u32),
        max_number_of_payments: o
            .i64("max_number_of_payments")
            .and_then(|m| u32::try_from(m).ok()),
        valid_until: o.str("valid_until").map(str::to_owned),
        success_redirect_url: o.str("success_redirect_url").map(str::to_owned),
        failure_redirect_url: o.str("failure_redirect_url").map(str::to_owned),
        recurring_interval: o.str("recurring_interval").map(str::to_ascii_lowercase),
        inactive_message: o.str("deactivate_message").map(str::to_owned),
        created_at: o.str("created_at").map(str::to_owned),
        metadata: o
            .obj("custom_metadata")
            .map(|m| visible_metadata(m.0.as_object().into_iter().flatten()))
            .unwrap_or_default(),
        backend: BackendKind::Stream,
        livemode: live,
    })
}

/// A `PaymentLinkItemDto` as our [`LineItem`]; an item without an id is skipped (it could not
/// be paged to).
pub fn line_item_from_stream(v: &Value, link_currency: Option<CurrencyCode>) -> Option<LineItem> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    // Unreadable stays unknown: reading it as 1 made the line's total look like its unit price.
    let quantity = o.count("quantity");
    let currency = o
        .str("currency")
        .and_then(|c| CurrencyCode::parse(c, "currency").ok())
        .or(link_currency);
    let product = o.obj("product");
    let unit = product
        .as_ref()
        .and_then(|p| product_price(p, currency))
        .or_else(|| {
            let original = money(
                &o,
                "original_amount_in_smallest_unit",
                "original_amount",
                currency,
            )?;
            let q = i64::from(quantity.filter(|q| *q > 0)?);
            (original.minor() % q == 0)
                .then(|| Money::from_minor(original.minor() / q, original.currency()))
        });
    Some(LineItem {
        id,
        product_id: o
            .str("product_id")
            .or_else(|| product.as_ref().and_then(|p| p.str("id")))
            .map(str::to_owned),
        product_name: product
            .as_ref()
            .and_then(|p| p.str("name"))
            .map(str::to_owned),
        quantity,
        unit_amount: unit.map(Money::view),
        total: money(
            &o,
            "discounted_amount_in_smallest_unit",
            "discounted_amount",
            currency,
        )
        .map(Money::view),
        kind: product
            .as_ref()
            .and_then(|p| p.str("type"))
            .and_then(kind_of),
        interval: product
            .as_ref()
            .and_then(|p| p.str("recurring_interval"))
            .map(str::to_ascii_lowercase),
    })
}

/// The product's price in `currency`, from its `prices[]` or its default price.
fn product_price(p: &Obj<'_>, currency: Option<CurrencyCode>) -> Option<Money> {
    let currency = currency?;
    p.array("prices")
        .iter()
        .map(Obj)
        .filter(|pr| pr.bool("is_active") != Some(false))
        .find(|pr| {
            pr.str("currency")
                .is_some_and(|c| c.eq_ignore_ascii_case(currency.code()))
        })
        .and_then(|pr| money(&pr, "amount_in_smallest_unit", "amount", Some(currency)))
        .or_else(|| {
            p.str("currency")
                .filter(|c| c.eq_ignore_ascii_case(currency.code()))
                .and_then(|_| money(p, "price_in_smallest_unit", "price", Some(currency)))
        })
}

/// A `ProductDto` as our [`Product`].
pub fn product_from_stream(v: &Value) -> Option<Product> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    let mut prices: Vec<Money> = o
        .array("prices")
        .iter()
        .map(Obj)
        .filter(|pr| pr.bool("is_active") != Some(false))
        .filter_map(|pr| {
            let c = CurrencyCode::parse(pr.str("currency")?, "currency").ok()?;
            money(&pr, "amount_in_smallest_unit", "amount", Some(c))
        })
        .collect();
    if prices.is_empty()
        && let Some(c) = o
            .str("currency")
            .and_then(|c| CurrencyCode::parse(c, "currency").ok())
        && let Some(m) = money(&o, "price_in_smallest_unit", "price", Some(c))
    {
        prices.push(m);
    }
    // One price per currency: the first active one wins.
    let mut seen = Vec::new();
    prices.retain(|m| {
        let fresh = !seen.contains(&m.currency());
        seen.push(m.currency());
        fresh
    });
    Some(Product {
        id,
        name: o.str("name").map(str::to_owned),
        description: o.str("description").map(str::to_owned),
        kind: o.str("type").and_then(kind_of),
        interval: o.str("recurring_interval").map(str::to_ascii_lowercase),
        prices: prices.into_iter().map(Money::view).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PAGE_ENVELOPE, PageLimit};

    fn names(page: &Page<String>) -> Vec<&str> {
        page.data.iter().map(|s| &s[..1]).collect()
    }

    #[test]
    fn a_page_cut_by_its_byte_cap_resumes_in_the_same_stream_page() {
        // Five entries on Stream's page, one of them unreadable (skipped).
        let entry = |c: &str| json!({"name": c.repeat(300)});
        let v = json!({
            "data": [entry("a"), {"name": 7}, entry("b"), entry("c"), entry("d")],
            "pagination": {"has_next_page": true}
        });
        let parse = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
        let cap = PageBytes::new(PAGE_ENVELOPE + 2 * 303);
        let first = PageCursor {
            page: 4,
            limit: PageLimit::parse(Some(5), "limit").unwrap(),
            skip: 0,
        };
        let page = stream_page(&Obj(&v), first, cap, parse);
        assert_eq!(names(&page), ["a", "b"]);
        assert!(page.has_more);
        let Cursor::Page(resume) = Cursor::decode(&page.next_cursor.unwrap(), None).unwrap() else {
            panic!("a page cursor")
        };
        assert_eq!(
            (resume.page, resume.skip),
            (4, 3),
            "after `b`, in Stream's page 4"
        );
        // The same Stream page again, from there: the rest, then Stream's next page.
        let page = stream_page(&Obj(&v), resume, cap, parse);
        assert_eq!(names(&page), ["c", "d"]);
        let Cursor::Page(next) = Cursor::decode(&page.next_cursor.unwrap(), None).unwrap() else {
            panic!("a page cursor")
        };
        assert_eq!((next.page, next.skip), (5, 0));
        // Uncut and last: no cursor.
        let last = json!({"data": [entry("a")], "pagination": {"has_next_page": false}});
        let page = stream_page(&Obj(&last), first, cap, parse);
        assert!(!page.has_more && page.next_cursor.is_none());
    }

    /// A line of 500,000,000.00 SAR, with no product price to read the unit from: the unit can
    /// only be derived from the quantity.
    fn line(quantity: Option<Value>) -> Value {
        let mut v = json!({
            "id": "li-1", "currency": "SAR", "product_id": "p-1",
            "original_amount_in_smallest_unit": 50_000_000_000i64,
            "discounted_amount_in_smallest_unit": 50_000_000_000i64,
        });
        if let Some(q) = quantity {
            v["quantity"] = q;
        }
        v
    }

    fn minor(m: Option<crate::domain::MoneyView>) -> Option<i64> {
        m.map(|m| {
            serde_json::to_value(m).unwrap()["amount_minor"]
                .as_i64()
                .unwrap()
        })
    }

    #[test]
    fn an_unreadable_quantity_is_null_and_so_is_the_unit_derived_from_it() {
        for (what, q) in [
            ("missing", None),
            ("negative", Some(json!(-3))),
            ("above u32", Some(json!(5_000_000_000u64))),
            ("fraction", Some(json!(2.5))),
            ("word", Some(json!("two"))),
            ("null", Some(Value::Null)),
            ("object", Some(json!({"value": 2}))),
        ] {
            let item = line_item_from_stream(&line(q), None).unwrap();
            assert_eq!(item.quantity, None, "{what}");
            assert_eq!(item.unit_amount, None, "{what}: no unit without a quantity");
            assert_eq!(
                minor(item.total),
                Some(50_000_000_000),
                "{what}: the total stays"
            );
        }
        // Zero is what the answer says: shown as 0, but no unit can be derived from it.
        let zero = line_item_from_stream(&line(Some(json!(0))), None).unwrap();
        assert_eq!(zero.quantity, Some(0));
        assert_eq!(zero.unit_amount, None);
        // Readable forms: an integer, an integral float, a string of digits.
        for q in [json!(4), json!(4.0), json!("4")] {
            let item = line_item_from_stream(&line(Some(q.clone())), None).unwrap();
            assert_eq!(item.quantity, Some(4), "{q}");
            assert_eq!(minor(item.unit_amount), Some(12_500_000_000), "{q}");
        }
        // A unit price read from the product does not depend on the quantity.
        let mut priced = line(Some(json!(-1)));
        priced["product"] =
            json!({"id": "p-1", "prices": [{"currency": "SAR", "amount": "12.50"}]});
        let item = line_item_from_stream(&priced, None).unwrap();
        assert_eq!(item.quantity, None);
        assert_eq!(minor(item.unit_amount), Some(1250));
    }
}
