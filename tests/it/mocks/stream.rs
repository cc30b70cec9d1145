//! A mock of Stream's API v2 on 127.0.0.1, strict the way the real API is: it checks the key,
//! the JSON body against the documented `CreatePaymentLinkDto` (UUID v4 ids, integer quantities
//! of at least 1, currency enum, no nulls, no unknown fields), enforces the product rules, stores links,
//! and answers with realistic `PaymentLinkDetailed` bodies (decimal strings, nested products).
//! Faults can be scripted per test; each request's arrival can be awaited.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

use crate::harness::stdio;

/// The mock catalog's one-off Espresso: SAR 12.50, KWD 1.025.
pub const ESPRESSO: &str = "11111111-1111-4111-8111-111111111111";
/// The one-off Grinder: SAR 349.00.
pub const GRINDER: &str = "22222222-2222-4222-8222-222222222222";
/// The monthly Beans club: SAR 59.00.
pub const CLUB: &str = "33333333-3333-4333-8333-333333333333";

pub const CURRENCIES: &[&str] = &[
    "SAR", "USD", "EUR", "GBP", "AED", "BHD", "KWD", "OMR", "QAR",
];

/// A product of the mock catalog: (id, name, type, interval, [(currency, amount)]).
pub type MockProduct = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
);

pub const PRODUCTS: &[MockProduct] = &[
    (
        ESPRESSO,
        "Espresso",
        "ONE_OFF",
        None,
        &[("SAR", "12.50"), ("KWD", "1.025")],
    ),
    (GRINDER, "Grinder", "ONE_OFF", None, &[("SAR", "349.00")]),
    (
        CLUB,
        "Beans club",
        "RECURRING",
        Some("MONTH"),
        &[("SAR", "59.00")],
    ),
];

/// A scripted fault for the next matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and body.
    Status(u16, Value),
    /// Store the link, then answer 500 (the outcome-unknown case).
    StoreThen500,
    /// Store the link, then answer with this status, content type and raw body.
    StoreThenRaw(u16, &'static str, &'static str),
    /// Answer with this raw body and content type.
    Raw(u16, &'static str, &'static str),
    /// Like `Raw`, with this `x-request-id` instead of the mock's own.
    RawWithRequestId(u16, &'static str, &'static str, String),
    /// Answer normally, but only after this delay.
    Delay(Duration),
    /// Set this product's price in this currency (as [`set_price`]), then process the
    /// request normally: a price that changes between a preview's reads and the create.
    Reprice(&'static str, &'static str, &'static str),
}

/// The token that makes the mock accept any non-empty key, each key its own account
/// ([`MockStream::start_any_key`]).
pub const ANY_KEY: &str = "*";

#[derive(Default)]
pub struct State {
    pub links: Vec<Value>,
    /// Any-key mode: the key that created each link, by link id.
    pub owners: std::collections::HashMap<String, String>,
    /// Any-key mode: requests that named a link created with another key (must stay empty).
    pub cross_tenant: Vec<String>,
    /// Faults for the next requests, in order, by (method, path prefix).
    pub faults: VecDeque<(String, String, Fault)>,
    pub next_request_id: u64,
    /// When each request arrived, with its method and path.
    pub arrivals: Vec<(std::time::Instant, String, String)>,
    /// Prices changed by the test, by (product id, currency): the amount, and whether it
    /// includes VAT (the catalog's own are all VAT-inclusive).
    pub prices: std::collections::HashMap<(String, String), (String, bool)>,
}

impl State {
    /// `product`'s price in `currency` now: the amount, and whether it includes VAT.
    fn price(&self, p: &MockProduct, currency: &str) -> Option<(String, bool)> {
        if let Some(changed) = self.prices.get(&(p.0.to_owned(), currency.to_owned())) {
            return Some(changed.clone());
        }
        p.4.iter()
            .find(|(c, _)| *c == currency)
            .map(|(_, a)| ((*a).to_owned(), true))
    }
}

pub struct MockStream {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
    pub token: String,
    /// How many requests have arrived, to await rather than poll.
    arrived: tokio::sync::watch::Receiver<usize>,
}

struct Handler {
    state: Arc<Mutex<State>>,
    token: String,
    arrived: tokio::sync::watch::Sender<usize>,
}

fn err(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(
        json!({"error": {"code": code, "message": message, "additional_info": null}}),
    )
}

fn detail(loc: Vec<Value>, msg: &str, kind: &str) -> ResponseTemplate {
    ResponseTemplate::new(422)
        .set_body_json(json!({"detail": [{"loc": loc, "msg": msg, "type": kind, "input": null}]}))
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && s.chars().enumerate().all(|(i, c)| {
            [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
        })
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(contains_null),
        Value::Object(o) => o.values().any(contains_null),
        _ => false,
    }
}

fn minor(amount: &str, exp: u32) -> i64 {
    let (w, f) = amount.split_once('.').unwrap_or((amount, ""));
    let mut f = f.to_string();
    while (f.len() as u32) < exp {
        f.push('0');
    }
    format!("{w}{f}").parse().unwrap()
}

fn exp_of(c: &str) -> u32 {
    if matches!(c, "BHD" | "KWD" | "OMR") {
        3
    } else {
        2
    }
}

fn decimal(minor: i64, exp: u32) -> String {
    let scale = 10i64.pow(exp);
    format!(
        "{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = exp as usize
    )
}

fn product_json(p: &MockProduct, state: &State) -> Value {
    let prices: Vec<Value> = p
        .4
        .iter()
        .filter_map(|(c, _)| {
            let (amount, inclusive) = state.price(p, c)?;
            Some(json!({"id": "00000000-0000-4000-8000-000000000000", "currency": c, "amount": amount, "is_active": true, "is_price_inclusive_of_vat": inclusive, "is_price_exempt_from_vat": false}))
        })
        .collect();
    json!({
        "id": p.0, "name": p.1, "description": null, "type": p.2, "recurring_interval": p.3,
        "recurring_interval_count": 1, "price": prices[0]["amount"], "currency": p.4[0].0,
        "is_active": true, "created_at": "2026-01-01T00:00:00Z",
        "prices": prices,
    })
}

impl Handler {
    #[allow(clippy::result_large_err)] // test code: the error is the answer to send
    fn create(&self, body: &Value, state: &State) -> Result<Value, ResponseTemplate> {
        let Some(obj) = body.as_object() else {
            return Err(detail(
                vec![json!("body")],
                "Input should be a valid dictionary",
                "dict_type",
            ));
        };
        if contains_null(body) {
            return Err(detail(
                vec![json!("body")],
                "null is not accepted by this mock: omit absent fields",
                "null",
            ));
        }
        const ALLOWED: &[&str] = &[
            "name",
            "description",
            "currency",
            "items",
            "coupons",
            "max_number_of_payments",
            "valid_until",
            "confirmation_message",
            "payment_methods",
            "custom_fields",
            "success_redirect_url",
            "failure_redirect_url",
            "organization_consumer_id",
            "custom_metadata",
            "contact_information_type",
        ];
        for k in obj.keys() {
            if !ALLOWED.contains(&k.as_str()) {
                return Err(detail(
                    vec![json!("body"), json!(k)],
                    "Extra inputs are not permitted",
                    "extra_forbidden",
                ));
            }
        }
        let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(detail(
                vec![json!("body"), json!("name")],
                "Field required",
                "missing",
            ));
        }
        let currency = match obj.get("currency") {
            None => "SAR",
            Some(Value::String(c)) if CURRENCIES.contains(&c.as_str()) => c.as_str(),
            Some(_) => {
                return Err(detail(
                    vec![json!("body"), json!("currency")],
                    "Input should be 'SAR', 'USD', ...",
                    "enum",
                ));
            }
        };
        let Some(items) = obj
            .get("items")
            .and_then(Value::as_array)
            .filter(|i| !i.is_empty())
        else {
            return Err(detail(
                vec![json!("body"), json!("items")],
                "List should have at least 1 item",
                "too_short",
            ));
        };
        if let Some(m) = obj.get("custom_metadata")
            && !m.is_object()
        {
            return Err(detail(
                vec![json!("body"), json!("custom_metadata")],
                "Input should be a valid dictionary",
                "dict_type",
            ));
        }
        for key in ["max_number_of_payments"] {
            if let Some(v) = obj.get(key)
                && !(v.is_u64() && v.as_u64() >= Some(1))
            {
                return Err(detail(
                    vec![json!("body"), json!(key)],
                    "Input should be a valid integer",
                    "int_type",
                ));
            }
        }
        let mut out_items = Vec::new();
        let mut kinds = Vec::new();
        let mut total = 0i64;
        for (i, item) in items.iter().enumerate() {
            let pid = item.get("product_id").and_then(Value::as_str).unwrap_or("");
            if !is_uuid_v4(pid) {
                return Err(detail(
                    vec![json!("body"), json!("items"), json!(i), json!("product_id")],
                    "Input should be a valid UUID version 4",
                    "uuid_version",
                ));
            }
            let q = item.get("quantity");
            let Some(q) = q
                .and_then(Value::as_i64)
                .filter(|q| *q >= 1 && q.is_positive())
            else {
                return Err(detail(
                    vec![json!("body"), json!("items"), json!(i), json!("quantity")],
                    "Input should be greater than or equal to 1",
                    "greater_than_equal",
                ));
            };
            if !q.is_positive() || !item["quantity"].is_i64() {
                return Err(detail(
                    vec![json!("body"), json!("items"), json!(i), json!("quantity")],
                    "Input should be a valid integer",
                    "int_type",
                ));
            }
            let Some(p) = PRODUCTS.iter().find(|p| p.0 == pid) else {
                return Err(err(
                    404,
                    "PRODUCT_NOT_FOUND",
                    &format!("Product {pid} not found"),
                ));
            };
            let Some((amount, _)) = state.price(p, currency) else {
                return Err(err(
                    400,
                    "PRODUCT_PRICE_NOT_FOUND",
                    &format!("Product {} has no price in {currency}", p.1),
                ));
            };
            kinds.push(p.2);
            let unit = minor(&amount, exp_of(currency));
            let line = unit * q;
            total += line;
            out_items.push(json!({
                "id": uuid::Uuid::new_v4().to_string(), "product_id": pid, "quantity": q,
                "original_amount": decimal(line, exp_of(currency)), "discounted_amount": decimal(line, exp_of(currency)),
                "original_amount_in_smallest_unit": line, "discounted_amount_in_smallest_unit": line,
                "currency": currency, "allow_custom_quantity": false, "product": product_json(p, state),
            }));
        }
        if kinds.contains(&"ONE_OFF") && kinds.contains(&"RECURRING") {
            return Err(err(
                400,
                "MIXED_PRODUCT_TYPES",
                "Cannot mix one-time and recurring products",
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let e = exp_of(currency);
        Ok(json!({
            "id": id, "name": name, "description": obj.get("description"), "status": "ACTIVE",
            "url": format!("https://pay.streampay.example/l/{id}"), "currency": currency,
            "amount": decimal(total, e), "original_amount": decimal(total, e), "amount_collected": decimal(0, e),
            "amount_in_smallest_unit": total, "original_amount_in_smallest_unit": total, "amount_collected_in_smallest_unit": 0,
            "item_level_discounted_amount": "0.00",
            "max_number_of_payments": obj.get("max_number_of_payments"), "valid_until": obj.get("valid_until"),
            "success_redirect_url": obj.get("success_redirect_url"), "failure_redirect_url": obj.get("failure_redirect_url"),
            "custom_metadata": obj.get("custom_metadata"), "created_at": "2026-11-23T10:00:00Z",
            "organization_id": "99999999-9999-4999-8999-999999999999", "items": out_items, "coupons": [],
            "some_future_field": {"nested": [1, 2, 3]},
        }))
    }
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        state.next_request_id += 1;
        let rid = format!("req-{}", state.next_request_id);
        let method = req.method.as_str().to_string();
        let path = req.url.path().to_string();
        state
            .arrivals
            .push((std::time::Instant::now(), method.clone(), path.clone()));
        self.arrived.send_modify(|n| *n += 1);
        let fault = state
            .faults
            .iter()
            .position(|(m, p, _)| *m == method && path.starts_with(p.as_str()))
            .and_then(|i| state.faults.remove(i))
            .map(|(_, _, f)| f);
        if let Some(Fault::Reprice(product, currency, amount)) = &fault {
            state.prices.insert(
                ((*product).to_owned(), (*currency).to_owned()),
                ((*amount).to_owned(), true),
            );
        }
        let with_id = |t: ResponseTemplate| t.insert_header("x-request-id", rid.as_str());
        match &fault {
            Some(Fault::Status(s, b)) => {
                return with_id(ResponseTemplate::new(*s).set_body_json(b.clone()));
            }
            Some(Fault::Raw(s, ct, body)) => {
                return with_id(
                    ResponseTemplate::new(*s).set_body_raw(body.as_bytes().to_vec(), ct),
                );
            }
            Some(Fault::RawWithRequestId(s, ct, body, id)) => {
                return ResponseTemplate::new(*s)
                    .set_body_raw(body.as_bytes().to_vec(), ct)
                    .insert_header("x-request-id", id.as_str());
            }
            _ => {}
        }
        let delay = match &fault {
            Some(Fault::Delay(d)) => *d,
            _ => Duration::ZERO,
        };
        let key = req
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if key.is_empty() || (self.token != ANY_KEY && key != self.token) {
            return with_id(err(401, "UNAUTHORIZED", "Invalid API key"));
        }
        // Any-key mode: each key is its own account; touching another's link is recorded.
        if self.token == ANY_KEY
            && let Some(rest) = path.strip_prefix("/api/v2/payment_links/")
        {
            let id = rest.trim_end_matches("/status");
            if let Some(owner) = state.owners.get(id)
                && owner != key
            {
                state.cross_tenant.push(format!("{method} {path}"));
                return with_id(err(404, "PAYMENT_LINK_NOT_FOUND", "Payment link not found"));
            }
        }
        let response = match (method.as_str(), path.as_str()) {
            ("POST", "/api/v2/payment_links") => {
                let ct = req
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !ct.starts_with("application/json") {
                    return with_id(detail(
                        vec![json!("body")],
                        "Content-Type must be application/json",
                        "json_type",
                    ));
                }
                let body: Value = match serde_json::from_slice(&req.body) {
                    Ok(b) => b,
                    Err(_) => {
                        return with_id(detail(
                            vec![json!("body")],
                            "JSON decode error",
                            "json_invalid",
                        ));
                    }
                };
                match self.create(&body, &state) {
                    Ok(link) => {
                        if let Some(id) = link["id"].as_str() {
                            state.owners.insert(id.to_owned(), key.to_owned());
                        }
                        state.links.push(link.clone());
                        if matches!(fault, Some(Fault::StoreThen500)) {
                            err(500, "INTERNAL_ERROR", "Internal server error")
                        } else if let Some(Fault::StoreThenRaw(status, ct, body)) = fault {
                            ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), ct)
                        } else {
                            ResponseTemplate::new(200).set_body_json(link)
                        }
                    }
                    Err(t) => t,
                }
            }
            ("GET", "/api/v2/payment_links") => {
                let q: std::collections::HashMap<String, String> =
                    req.url.query_pairs().into_owned().collect();
                let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let limit: usize = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(10);
                let mut links: Vec<Value> = state.links.iter().rev().cloned().collect();
                if let Some(statuses) = Some(
                    req.url
                        .query_pairs()
                        .filter(|(k, _)| k == "statuses")
                        .map(|(_, v)| v.into_owned())
                        .collect::<Vec<_>>(),
                )
                .filter(|s| !s.is_empty())
                {
                    links.retain(|l| statuses.iter().any(|s| l["status"] == *s));
                }
                let total = links.len();
                let data: Vec<Value> = links
                    .into_iter()
                    .skip((page - 1) * limit)
                    .take(limit)
                    .collect();
                let max_page = total.div_ceil(limit).max(1);
                ResponseTemplate::new(200).set_body_json(json!({"data": data, "pagination": {"total_count": total, "max_page": max_page, "current_page": page, "limit": limit, "has_next_page": page < max_page, "has_previous_page": page > 1}}))
            }
            ("GET", p) if p.starts_with("/api/v2/payment_links/") => {
                let id = &p["/api/v2/payment_links/".len()..];
                match state.links.iter().find(|l| l["id"] == id) {
                    Some(l) => ResponseTemplate::new(200).set_body_json(l.clone()),
                    None => err(
                        404,
                        "PAYMENT_LINK_NOT_FOUND",
                        &format!("Payment link {id} not found"),
                    ),
                }
            }
            ("PATCH", p) if p.starts_with("/api/v2/payment_links/") && p.ends_with("/status") => {
                let id = p["/api/v2/payment_links/".len()..p.len() - "/status".len()].to_string();
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                let status = body.get("status").and_then(Value::as_str).unwrap_or("");
                if !["ACTIVE", "INACTIVE", "COMPLETED"].contains(&status) {
                    return with_id(detail(
                        vec![json!("body"), json!("status")],
                        "Input should be 'INACTIVE', 'ACTIVE' or 'COMPLETED'",
                        "enum",
                    ));
                }
                match state.links.iter_mut().find(|l| l["id"] == id.as_str()) {
                    Some(l) => {
                        l["status"] = json!(status);
                        if let Some(m) = body.get("deactivate_message") {
                            l["deactivate_message"] = m.clone();
                        }
                        ResponseTemplate::new(200).set_body_json(l.clone())
                    }
                    None => err(404, "PAYMENT_LINK_NOT_FOUND", "Payment link not found"),
                }
            }
            ("GET", p) if p.starts_with("/api/v2/products/") => {
                let id = &p["/api/v2/products/".len()..];
                match PRODUCTS.iter().find(|pr| pr.0 == id) {
                    Some(pr) => ResponseTemplate::new(200).set_body_json(product_json(pr, &state)),
                    None => err(404, "PRODUCT_NOT_FOUND", &format!("Product {id} not found")),
                }
            }
            ("GET", "/api/v2/products") => {
                let q: std::collections::HashMap<String, String> =
                    req.url.query_pairs().into_owned().collect();
                let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let limit: usize = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(10);
                if page == 0 || limit == 0 || limit > 100 {
                    return with_id(detail(
                        vec![json!("query"), json!("limit")],
                        "Input should be less than or equal to 100",
                        "less_than_equal",
                    ));
                }
                let data: Vec<Value> = PRODUCTS
                    .iter()
                    .skip((page - 1) * limit)
                    .take(limit)
                    .map(|p| product_json(p, &state))
                    .collect();
                let max_page = PRODUCTS.len().div_ceil(limit);
                ResponseTemplate::new(200).set_body_json(json!({"data": data, "pagination": {"total_count": PRODUCTS.len(), "max_page": max_page, "current_page": page, "limit": limit, "has_next_page": page < max_page, "has_previous_page": page > 1}}))
            }
            _ => err(404, "NOT_FOUND", "Not found"),
        };
        with_id(response.set_delay(delay))
    }
}

impl MockStream {
    /// Starts the mock on 127.0.0.1 expecting `token` in `x-api-key`.
    pub async fn start(token: &str) -> Self {
        let server = MockServer::builder()
            .listener(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .start()
            .await;
        let state = Arc::new(Mutex::new(State::default()));
        let (arrived_tx, arrived) = tokio::sync::watch::channel(0);
        Mock::given(any())
            .respond_with(Handler {
                state: state.clone(),
                token: token.to_string(),
                arrived: arrived_tx,
            })
            .mount(&server)
            .await;
        MockStream {
            server,
            state,
            token: token.to_string(),
            arrived,
        }
    }

    /// Resolves once `n` requests in all have arrived (answered or not yet).
    pub async fn arrivals_reach(&self, n: usize) {
        let mut rx = self.arrived.clone();
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    /// The real binary over stdio on this mock, with the mock's own key (see
    /// [`stdio::Server::on_upstream`]).
    pub async fn stdio(&self) -> stdio::Server {
        self.stdio_with(&self.token, &[], &[]).await
    }

    /// The real binary over stdio on this mock, with `key` (its `key:secret` form, say), `args`
    /// and `env`.
    pub async fn stdio_with(
        &self,
        key: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> stdio::Server {
        stdio::Server::on_upstream("stream", &self.uri(), key, args, env).await
    }

    /// Starts the mock accepting any non-empty key, each key an account of its own.
    pub async fn start_any_key() -> Self {
        Self::start(ANY_KEY).await
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Scripts a fault for the next `method` request whose path starts with `path`.
    pub fn fault(&self, method: &str, path: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push_back((method.into(), path.into(), fault));
    }

    /// [`set_price`] on this mock.
    pub fn set_price(&self, product: &str, currency: &str, amount: &str, inclusive_of_vat: bool) {
        set_price(&self.state, product, currency, amount, inclusive_of_vat);
    }

    pub fn link_count(&self) -> usize {
        self.state.lock().unwrap().links.len()
    }

    /// Every request received, in order.
    pub async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    pub async fn posts(&self) -> Vec<Request> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r.method.as_str() == "POST")
            .collect()
    }
}

/// Changes `product`'s price in `currency` (one it already has) to `amount`, from the next
/// request on; `inclusive_of_vat: false` makes it a price VAT is added to. On the mock's state,
/// so that a test's client handler can change a price while the user is being asked.
pub fn set_price(
    state: &Mutex<State>,
    product: &str,
    currency: &str,
    amount: &str,
    inclusive_of_vat: bool,
) {
    state.lock().unwrap().prices.insert(
        (product.to_owned(), currency.to_owned()),
        (amount.to_owned(), inclusive_of_vat),
    );
}
