//! What we send to Stripe: its host and API version, the auth and version headers, the
//! `Idempotency-Key` of a create, the create's form (with the checks Stripe would make, under our
//! field names) and the query of every listing.
//!
//! It builds requests only: it must not send them or read answers.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};

use super::form::{BadKey, Form, Node};
use crate::backend::request::{LineItemsQuery, NewPaymentLink, StatusUpdate, TargetStatus};
use crate::domain::{CurrencyCode, Cursor, MAX_LINE_ITEMS, PageLimit};
use crate::error::{Error, Result, StartupError};
use crate::model::{LinkStatus, REQUEST_REF_KEY};
use crate::secret::ApiKey;
use crate::upstream::{Body, RetryMode, Scrubber, UpstreamRequest, sensitive_header};

/// Stripe's API host.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// The API version this module was written against: pinned so that an account's default version
/// (which the dashboard can move) never changes the shapes we read.
pub(crate) const DEFAULT_API_VERSION: &str = "2024-04-10";

/// Metadata key holding the link's name: a Stripe payment link has no name field.
pub(crate) const NAME_KEY: &str = "paylink_name";
/// Metadata key holding the link's description.
pub(crate) const DESCRIPTION_KEY: &str = "paylink_description";

/// Stripe's page size ceiling (`limit` of every list).
pub(super) const PAGE_MAX: usize = 100;

/// Stripe caps a link at [`MAX_LINE_ITEMS`] line items, so reading them all takes one page; and a
/// list call's `limit` is passed to Stripe as is.
const _: () = assert!(MAX_LINE_ITEMS <= PAGE_MAX && PageLimit::MAX as usize <= PAGE_MAX);

/// The longest release name of an API version we accept (`acacia` in `2024-09-30.acacia`).
const VERSION_NAME_MAX_CHARS: usize = 40;

/// A refused `STRIPE_VERSION` is quoted in its start-up error up to this many characters.
const VERSION_QUOTE_MAX_CHARS: usize = 40;

/// True for keys that may move real money: every key but a test-mode one (`sk_test_`,
/// `rk_test_`). A key of another shape counts as live, so the confirmation and the live guard
/// fail closed.
pub(crate) fn is_live_key(key: &str) -> bool {
    !(key.starts_with("sk_test_") || key.starts_with("rk_test_"))
}

/// Checks `STRIPE_VERSION`: a date such as `2024-04-10`, optionally with a release name
/// (`2024-09-30.acacia`). Anything else could not be sent as a header, or is a typo that Stripe
/// would answer with a confusing error on every call.
pub(crate) fn check_version(raw: &str) -> std::result::Result<String, StartupError> {
    let v = raw.trim();
    let date_ok = v
        .get(..10)
        .is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok());
    let rest_ok = match v.get(10..) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('.').is_some_and(|name| {
            !name.is_empty()
                && name.len() <= VERSION_NAME_MAX_CHARS
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }),
        None => false,
    };
    if date_ok && rest_ok {
        Ok(v.to_owned())
    } else {
        Err(StartupError::StripeVersion {
            value: v.chars().take(VERSION_QUOTE_MAX_CHARS).collect(),
            example: DEFAULT_API_VERSION,
        })
    }
}

/// The `Idempotency-Key` of a create: our reference, prefixed so that our keys are recognisable in
/// Stripe's request logs. The reference is derived from (tenant, caller's idempotency_key) when the
/// caller gave one — stable across the caller's retries, restarts and replicas, and distinct for
/// two tenants sharing one Stripe account (operator-key mode) — and random otherwise.
pub(crate) fn idempotency_header(reference: &str) -> String {
    format!("paylink-{reference}")
}

/// The headers every request of one tenant carries: its key (marked sensitive) and the pinned
/// API version.
pub(super) struct StripeHeaders {
    auth: HeaderValue,
    version: HeaderValue,
}

impl StripeHeaders {
    /// The headers for `key` and `api_version` (which must have passed [`check_version`]), and
    /// the scrubber of the key.
    pub(super) fn new(key: &ApiKey, api_version: &str) -> Result<(Self, Scrubber)> {
        let auth = sensitive_header(&format!("Bearer {}", key.expose()))?;
        let version = HeaderValue::from_str(api_version).map_err(|_| {
            Error::internal("STRIPE_VERSION cannot be sent as an HTTP header; fix it and restart")
        })?;
        let scrubber = Scrubber::new(vec![key.expose().to_owned()]);
        Ok((StripeHeaders { auth, version }, scrubber))
    }

    /// A request with this tenant's headers, and `idempotency_key` when it is a create.
    pub(super) fn request(
        &self,
        method: Method,
        path_and_query: String,
        body: Body,
        retry: RetryMode,
        idempotency_key: Option<&str>,
    ) -> Result<UpstreamRequest> {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(AUTHORIZATION, self.auth.clone());
        headers.insert("stripe-version", self.version.clone());
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
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
}

/// A form we built that cannot be encoded: a bug of ours, never the caller's.
pub(super) fn internal_form(e: BadKey) -> Error {
    Error::internal(format!("could not encode a Stripe request: {e}"))
}

/// `path` with `query` encoded, if any.
pub(super) fn with_query(path: &str, query: &Form) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.encode())
    }
}

/// A price as far as creating (and previewing) a link needs it.
#[derive(Debug, Clone)]
pub(super) struct PriceFacts {
    pub id: String,
    /// Lower-case ISO code, as Stripe writes it.
    pub currency: Option<String>,
    /// Further currencies the price can be charged in (`currency_options`), lower-case.
    pub options: Vec<String>,
    /// The fixed unit amount in minor units, by lower-case currency (its own and the options
    /// read); a tiered or customer-chosen price has none.
    pub units: Vec<(String, i64)>,
    /// The name of the product sold, when read.
    pub name: Option<String>,
    /// The billing interval of a recurring price.
    pub interval: Option<String>,
    /// The price bills a transformed quantity (`transform_quantity`: the quantity divided and
    /// rounded before it is multiplied), so `quantity × unit` is not what it charges.
    pub transformed: bool,
}

/// Refuses what Stripe would refuse, but with our field names: one currency per link.
pub(super) fn check_currencies(
    prices: &[PriceFacts],
    requested: Option<CurrencyCode>,
) -> Result<()> {
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
pub(crate) fn create_form(
    request: &NewPaymentLink,
    prices: &[String],
    request_ref: &str,
) -> Result<Form> {
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

/// The body of a create.
pub(super) fn create_body(form: &Form) -> Body {
    Body::Form(Bytes::from(form.encode()))
}

/// Where a list continues: Stripe pages by the last id seen.
pub(super) fn after_id(cursor: Option<&Cursor>) -> Result<Option<&str>> {
    match cursor {
        None => Ok(None),
        Some(Cursor::After { id, .. }) => Ok(Some(id.as_str())),
        Some(Cursor::Page(_)) => Err(Error::validation(
            "cursor",
            "is not a cursor this server issued for Stripe; pass `next_cursor` from the previous answer unchanged, or omit it to start from the beginning",
        )),
    }
}

/// One page of `limit` after the id `after`.
fn page_query(limit: usize, after: Option<&str>) -> Result<Form> {
    let mut form = Form::new().with("limit", limit).map_err(internal_form)?;
    if let Some(a) = after {
        form.add("starting_after", a).map_err(internal_form)?;
    }
    Ok(form)
}

/// The query of a full page of a link's line items, after the id `after`.
pub(super) fn all_line_items_query(after: Option<&str>) -> Result<Form> {
    page_query(PAGE_MAX, after)
}

/// The query of one page of a link's line items, as the caller asked for it.
pub(super) fn line_items_query(query: &LineItemsQuery) -> Result<Form> {
    let mut form = page_query(query.limit.get(), query.starting_after.as_deref())?;
    if let Some(b) = &query.ending_before {
        form.add("ending_before", b.as_str())
            .map_err(internal_form)?;
    }
    Ok(form)
}

/// The query of one page of active products, with their default price and its currency options.
pub(super) fn products_query(limit: PageLimit, after: Option<&str>) -> Result<Form> {
    let mut form = Form::new().with("active", true).map_err(internal_form)?;
    form.add("limit", limit.get()).map_err(internal_form)?;
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
    Ok(form)
}

/// The query of one page of payment links; `status` is Stripe's `active` flag.
pub(super) fn links_query(
    limit: PageLimit,
    after: Option<&str>,
    status: Option<LinkStatus>,
) -> Result<Form> {
    let mut form = page_query(limit.get(), after)?;
    if let Some(s) = status {
        form.add("active", s == LinkStatus::Active)
            .map_err(internal_form)?;
    }
    Ok(form)
}

/// The query of a product read during a create: its default price, and that price's currency
/// options when the caller chose a currency (only then are they worth their payload).
pub(super) fn product_query(with_options: bool) -> Result<Form> {
    let mut expand = vec!["default_price".to_owned()];
    if with_options {
        expand.push("default_price.currency_options".to_owned());
    }
    Form::new()
        .with("expand", Node::Repeated(expand))
        .map_err(internal_form)
}

/// The query of a price read during a create (see [`product_query`]), with its product when a
/// preview shows the product's name.
pub(super) fn price_query(with_options: bool, with_product: bool) -> Result<Form> {
    let mut expand = Vec::new();
    if with_options {
        expand.push("currency_options".to_owned());
    }
    if with_product {
        expand.push("product".to_owned());
    }
    let mut query = Form::new();
    if !expand.is_empty() {
        query
            .add("expand", Node::Repeated(expand))
            .map_err(internal_form)?;
    }
    Ok(query)
}

/// The body of a status change: Stripe's `active` flag, and the message payers see.
pub(super) fn status_body(update: &StatusUpdate) -> Result<Body> {
    let mut form = Form::new()
        .with("active", update.status == TargetStatus::Active)
        .map_err(internal_form)?;
    if let Some(m) = &update.message {
        form.add("inactive_message", m.as_str())
            .map_err(internal_form)?;
    }
    Ok(Body::Form(Bytes::from(form.encode())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::request::NewItem;
    use crate::domain::{
        Description, IdFormat, LinkName, MaxPayments, Metadata, ProductId, Quantity, RedirectUrl,
    };
    use std::collections::BTreeMap;

    #[test]
    fn live_keys_are_recognised() {
        assert!(is_live_key("sk_live_abc"));
        assert!(is_live_key("rk_live_abc"));
        assert!(!is_live_key("sk_test_abc"));
        assert!(!is_live_key("rk_test_abc"));
        // Not known to be a test key: live (fail closed). The factory refuses what is not an
        // sk_/rk_ key before this is asked.
        assert!(is_live_key("sk_abc"));
        assert!(is_live_key("rk_prod_abc"));
        assert!(is_live_key(""));
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
            units: Vec::new(),
            name: None,
            interval: None,
            transformed: false,
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
}
