//! A mock of Stripe's API on 127.0.0.1, strict the way the real API is: it checks
//! `Authorization: Bearer`, the pinned `Stripe-Version` and the form content type; it decodes
//! bracket-encoded forms and queries on its own (not with the code under test) and refuses
//! unknown or mistyped parameters with 400 `parameter_unknown` / `parameter_invalid_integer` and
//! the offending `param`; it requires an `Idempotency-Key` on creates, replays the first answer
//! for a repeated key (a stored 500 included) and answers `idempotency_error` when the same key
//! comes with other parameters. It stores products, prices and links, and pages like Stripe.
//! Faults can be scripted per test; each request's arrival can be awaited.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

use crate::harness::stdio;

pub const VERSION: &str = "2024-04-10";

/// A price of the mock catalog: (id, product, currency, unit_amount, type, interval,
/// currency options).
pub type MockPrice = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, i64)],
);

pub const PRICES: &[MockPrice] = &[
    (
        "price_espresso_usd",
        "prod_espresso",
        "usd",
        350,
        "one_time",
        None,
        &[("eur", 320)],
    ),
    (
        "price_espresso_eur",
        "prod_espresso",
        "eur",
        330,
        "one_time",
        None,
        &[],
    ),
    (
        "price_club_month",
        "prod_club",
        "usd",
        1900,
        "recurring",
        Some("month"),
        &[],
    ),
    (
        "price_matcha_jpy",
        "prod_matcha",
        "jpy",
        1200,
        "one_time",
        None,
        &[],
    ),
    (
        "price_dates_kwd",
        "prod_dates",
        "kwd",
        1250,
        "one_time",
        None,
        &[],
    ),
    (
        "price_old_usd",
        "prod_old",
        "usd",
        999,
        "one_time",
        None,
        &[],
    ),
];

/// A product of the mock catalog: (id, name, default price, active).
pub type MockProduct = (&'static str, &'static str, Option<&'static str>, bool);

pub const PRODUCTS: &[MockProduct] = &[
    (
        "prod_espresso",
        "Espresso",
        Some("price_espresso_usd"),
        true,
    ),
    ("prod_club", "Beans club", Some("price_club_month"), true),
    ("prod_gift", "Gift card", None, true),
    ("prod_matcha", "Matcha", Some("price_matcha_jpy"), true),
    ("prod_dates", "Dates", Some("price_dates_kwd"), true),
    ("prod_old", "Discontinued", Some("price_old_usd"), false),
];

/// How many `prod_teaNN` products (each with a USD price of NN dollars) the catalog adds.
pub const TEAS: usize = 12;

pub fn tea_product(i: usize) -> String {
    format!("prod_tea{i:02}")
}

pub fn tea_price(i: usize) -> String {
    format!("price_tea{i:02}")
}

/// A scripted fault for the next matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, body and headers instead of processing. On a create carrying an
    /// Idempotency-Key, a 5xx without `Stripe-Should-Retry: true` is stored under the key, as
    /// Stripe stores answers of requests that started executing.
    Status(u16, Value, Vec<(&'static str, &'static str)>),
    /// Answer with this raw body and content type, after processing normally.
    Raw(u16, &'static str, &'static str),
    /// Process normally (store, remember the key), answer after this delay.
    Delay(Duration),
}

/// A stored idempotent answer.
#[derive(Clone, Debug)]
pub struct Stored {
    pub params: Vec<(String, String)>,
    pub status: u16,
    pub body: Value,
}

#[derive(Default)]
pub struct State {
    pub products: Vec<Value>,
    pub prices: Vec<Value>,
    /// Links in creation order, each with its line items.
    pub links: Vec<(Value, Vec<Value>)>,
    pub idempotency: HashMap<String, Stored>,
    pub faults: VecDeque<(String, String, Fault)>,
    pub next_id: u64,
    pub next_request_id: u64,
    /// Number of answers that were idempotent replays.
    pub replays: usize,
}

pub struct MockStripe {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
    pub key: String,
    /// How many requests have arrived, to await rather than poll.
    arrived: tokio::sync::watch::Receiver<usize>,
}

struct Handler {
    state: Arc<Mutex<State>>,
    key: String,
    arrived: tokio::sync::watch::Sender<usize>,
}

/// A Stripe error answer.
pub fn stripe_error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> ResponseTemplate {
    let mut error = Map::new();
    error.insert("type".into(), json!(kind));
    error.insert("message".into(), json!(message));
    if let Some(c) = code {
        error.insert("code".into(), json!(c));
        error.insert(
            "doc_url".into(),
            json!(format!("https://stripe.com/docs/error-codes/{c}")),
        );
    }
    if let Some(p) = param {
        error.insert("param".into(), json!(p));
    }
    ResponseTemplate::new(status).set_body_json(json!({ "error": error }))
}

/// A refusal: (status, type, code, param, message).
type Refusal = (
    u16,
    &'static str,
    Option<&'static str>,
    Option<String>,
    String,
);

fn invalid(code: &'static str, param: &str, message: String) -> Refusal {
    (
        400,
        "invalid_request_error",
        Some(code),
        Some(param.to_owned()),
        message,
    )
}

fn refuse(r: Refusal) -> ResponseTemplate {
    stripe_error(r.0, r.1, r.2, r.3.as_deref(), &r.4)
}

/// Splits `a[b][0]` into `["a", "b", "0"]`, or `None` for broken brackets.
fn segments(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() || head.contains(']') {
        return None;
    }
    let mut out = vec![head.to_owned()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        out.push(inner[..end].to_owned());
        rest = &inner[end + 1..];
    }
    Some(out)
}

/// Decodes `application/x-www-form-urlencoded` pairs with Stripe's bracket nesting into JSON:
/// maps and indexed lists become objects (keys as given), `key[]` becomes an array of strings.
pub fn decode_form(raw: &[u8]) -> Result<(Value, Vec<(String, String)>), Refusal> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw).into_owned().collect();
    let mut root = Value::Object(Map::new());
    for (key, value) in &pairs {
        let segs = segments(key).ok_or_else(|| {
            invalid(
                "parameter_unknown",
                key,
                format!("Invalid parameter name: {key}"),
            )
        })?;
        let mut node = &mut root;
        for (i, seg) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let next_is_array = segs.get(i + 1).is_some_and(|s| s.is_empty());
            let Value::Object(obj) = node else {
                return Err(invalid(
                    "parameter_invalid_string",
                    key,
                    format!("Invalid structure for {key}"),
                ));
            };
            if last {
                if obj.contains_key(seg) {
                    return Err(invalid(
                        "parameter_invalid_string",
                        key,
                        format!("Received {key} twice"),
                    ));
                }
                obj.insert(seg.clone(), Value::String(value.clone()));
                break;
            }
            if next_is_array {
                if i + 2 != segs.len() {
                    return Err(invalid(
                        "parameter_unknown",
                        key,
                        format!("Invalid array parameter: {key}"),
                    ));
                }
                let arr = obj
                    .entry(seg.clone())
                    .or_insert_with(|| Value::Array(vec![]));
                match arr {
                    Value::Array(a) => a.push(Value::String(value.clone())),
                    _ => {
                        return Err(invalid(
                            "parameter_invalid_string",
                            key,
                            format!("Invalid structure for {key}"),
                        ));
                    }
                }
                break;
            }
            node = obj
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    Ok((root, pairs))
}

/// The parameter types this mock checks, as Stripe's OpenAPI declares them.
#[derive(Clone, Debug)]
pub enum Ty {
    Str,
    Int,
    Bool,
    Enum(&'static [&'static str]),
    Obj(Vec<(&'static str, Ty)>),
    /// string -> string (metadata).
    Map,
    /// `x[0][...]`, `x[1][...]`.
    List(Box<Ty>),
    /// `x[]=a&x[]=b`.
    StrArray,
}

fn check(value: &Value, ty: &Ty, path: &str) -> Result<(), Refusal> {
    let child = |name: &str| format!("{path}[{name}]");
    match (ty, value) {
        (Ty::Str, Value::String(_)) => Ok(()),
        (Ty::Int, Value::String(s)) if s.parse::<i64>().is_ok() => Ok(()),
        (Ty::Int, _) => Err(invalid(
            "parameter_invalid_integer",
            path,
            format!("Invalid integer: {}", short(value)),
        )),
        (Ty::Bool, Value::String(s)) if s == "true" || s == "false" => Ok(()),
        (Ty::Bool, _) => Err(invalid(
            "parameter_invalid_boolean",
            path,
            format!("Invalid boolean: {}", short(value)),
        )),
        (Ty::Enum(allowed), Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        (Ty::Enum(allowed), _) => Err(invalid(
            "parameter_invalid_string",
            path,
            format!("Invalid {path}: must be one of {}", allowed.join(", ")),
        )),
        (Ty::Obj(fields), Value::Object(o)) => {
            for (k, v) in o {
                match fields.iter().find(|(name, _)| name == k) {
                    Some((_, t)) => check(v, t, &child(k))?,
                    None => {
                        return Err(invalid(
                            "parameter_unknown",
                            &child(k),
                            format!("Received unknown parameter: {}", child(k)),
                        ));
                    }
                }
            }
            Ok(())
        }
        (Ty::Map, Value::Object(o)) => {
            for (k, v) in o {
                if !v.is_string() {
                    return Err(invalid(
                        "parameter_invalid_string",
                        &child(k),
                        "Metadata values must be strings".into(),
                    ));
                }
            }
            Ok(())
        }
        (Ty::List(inner), Value::Object(o)) => {
            for i in 0..o.len() {
                let Some(v) = o.get(&i.to_string()) else {
                    return Err(invalid(
                        "parameter_invalid_integer",
                        path,
                        format!("Invalid array: {path} must be indexed from 0 without gaps"),
                    ));
                };
                check(v, inner, &child(&i.to_string()))?;
            }
            Ok(())
        }
        (Ty::StrArray, Value::Array(a)) if a.iter().all(Value::is_string) => Ok(()),
        _ => Err(invalid(
            "parameter_invalid_string",
            path,
            format!("Invalid value for {path}"),
        )),
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(40).collect()
}

fn check_top(value: &Value, fields: Vec<(&'static str, Ty)>) -> Result<(), Refusal> {
    let Value::Object(o) = value else {
        return Ok(());
    };
    for (k, v) in o {
        match fields.iter().find(|(name, _)| name == k) {
            Some((_, t)) => check(v, t, k)?,
            None => {
                return Err(invalid(
                    "parameter_unknown",
                    k,
                    format!("Received unknown parameter: {k}"),
                ));
            }
        }
    }
    Ok(())
}

fn list_query() -> Vec<(&'static str, Ty)> {
    vec![
        ("limit", Ty::Int),
        ("starting_after", Ty::Str),
        ("ending_before", Ty::Str),
        ("expand", Ty::StrArray),
    ]
}

fn create_params() -> Vec<(&'static str, Ty)> {
    vec![
        (
            "line_items",
            Ty::List(Box::new(Ty::Obj(vec![
                ("price", Ty::Str),
                ("quantity", Ty::Int),
            ]))),
        ),
        ("currency", Ty::Str),
        ("metadata", Ty::Map),
        (
            "after_completion",
            Ty::Obj(vec![
                ("type", Ty::Enum(&["hosted_confirmation", "redirect"])),
                ("redirect", Ty::Obj(vec![("url", Ty::Str)])),
            ]),
        ),
        (
            "restrictions",
            Ty::Obj(vec![(
                "completed_sessions",
                Ty::Obj(vec![("limit", Ty::Int)]),
            )]),
        ),
        ("inactive_message", Ty::Str),
        ("expand", Ty::StrArray),
    ]
}

fn update_params() -> Vec<(&'static str, Ty)> {
    vec![
        ("active", Ty::Bool),
        ("inactive_message", Ty::Str),
        ("metadata", Ty::Map),
        ("expand", Ty::StrArray),
    ]
}

fn check_expand(params: &Value, allowed: &[&str]) -> Result<Vec<String>, Refusal> {
    let expand: Vec<String> = params
        .get("expand")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for e in &expand {
        if !allowed.contains(&e.as_str()) {
            return Err(invalid(
                "parameter_invalid_string",
                "expand",
                format!("This property cannot be expanded ({e})."),
            ));
        }
    }
    Ok(expand)
}

fn limit_of(params: &Value) -> Result<usize, Refusal> {
    match params.get("limit").and_then(Value::as_str) {
        None => Ok(10),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(invalid(
                "parameter_invalid_integer",
                "limit",
                "This value must be between 1 and 100.".into(),
            )),
        },
    }
}

/// Pages `items` (in list order) like Stripe: `starting_after`/`ending_before` by id.
fn page(items: &[Value], params: &Value) -> Result<Value, Refusal> {
    let limit = limit_of(params)?;
    let find = |field: &str| -> Result<Option<usize>, Refusal> {
        match params.get(field).and_then(Value::as_str) {
            None => Ok(None),
            Some(id) => items
                .iter()
                .position(|i| i["id"] == id)
                .map(Some)
                .ok_or_else(|| {
                    (
                        404,
                        "invalid_request_error",
                        Some("resource_missing"),
                        Some(field.to_owned()),
                        format!("No such object: '{id}'"),
                    )
                }),
        }
    };
    let after = find("starting_after")?;
    let before = find("ending_before")?;
    let (data, has_more): (Vec<Value>, bool) = match (after, before) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "parameter_invalid_string",
                "ending_before",
                "You may only specify one of these parameters: starting_after, ending_before."
                    .into(),
            ));
        }
        (None, Some(end)) => {
            let start = end.saturating_sub(limit);
            (items[start..end].to_vec(), start > 0)
        }
        (after, None) => {
            let start = after.map_or(0, |a| a + 1);
            let end = (start + limit).min(items.len());
            (items[start..end].to_vec(), end < items.len())
        }
    };
    Ok(json!({"object": "list", "data": data, "has_more": has_more, "url": "/v1/mock"}))
}

fn price_json(p: &MockPrice) -> Value {
    let mut options = Map::new();
    options.insert(
        p.2.into(),
        json!({"unit_amount": p.3, "tax_behavior": "unspecified"}),
    );
    for (c, a) in p.6 {
        options.insert(
            (*c).into(),
            json!({"unit_amount": a, "tax_behavior": "unspecified"}),
        );
    }
    json!({
        "id": p.0, "object": "price", "active": true, "billing_scheme": "per_unit",
        "created": 1_700_000_000, "currency": p.2, "currency_options": options,
        "livemode": false, "lookup_key": null, "metadata": {}, "nickname": null, "product": p.1,
        "recurring": p.5.map(|i| json!({"interval": i, "interval_count": 1, "usage_type": "licensed", "aggregate_usage": null, "meter": null})),
        "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
        "type": p.4, "unit_amount": p.3, "unit_amount_decimal": p.3.to_string(),
    })
}

fn product_json(id: &str, name: &str, default_price: Option<&str>, active: bool) -> Value {
    json!({
        "id": id, "object": "product", "active": active, "created": 1_700_000_000,
        "default_price": default_price, "description": format!("{name}, from the mock"),
        "images": [], "livemode": false, "marketing_features": [], "metadata": {},
        "name": name, "package_dimensions": null, "shippable": null,
        "statement_descriptor": null, "tax_code": null, "unit_label": null,
        "updated": 1_700_000_000, "url": null,
    })
}

/// A price as an answer shows it: `currency_options` only when expanded.
fn shown_price(price: &Value, with_options: bool) -> Value {
    let mut p = price.clone();
    if !with_options && let Some(o) = p.as_object_mut() {
        o.remove("currency_options");
    }
    p
}

impl State {
    fn seed() -> Self {
        let mut s = State::default();
        for p in PRICES {
            s.prices.push(price_json(p));
        }
        for p in PRODUCTS {
            s.products.push(product_json(p.0, p.1, p.2, p.3));
        }
        for i in 1..=TEAS {
            let price: MockPrice = (
                Box::leak(tea_price(i).into_boxed_str()),
                Box::leak(tea_product(i).into_boxed_str()),
                "usd",
                100 * i as i64,
                "one_time",
                None,
                &[],
            );
            s.prices.push(price_json(&price));
            s.products.push(product_json(
                price.1,
                &format!("Tea {i}"),
                Some(price.0),
                true,
            ));
        }
        s
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_Mock{:06}", self.next_id)
    }

    fn price(&self, id: &str) -> Option<&Value> {
        self.prices.iter().find(|p| p["id"] == id)
    }

    fn product(&self, id: &str) -> Option<&Value> {
        self.products.iter().find(|p| p["id"] == id)
    }

    fn create_link(&mut self, params: &Value, livemode: bool) -> Result<Value, Refusal> {
        let Some(line_items) = params.get("line_items").and_then(Value::as_object) else {
            return Err(invalid(
                "parameter_missing",
                "line_items",
                "Missing required param: line_items.".into(),
            ));
        };
        if line_items.is_empty() || line_items.len() > 20 {
            return Err(invalid(
                "parameter_invalid_integer",
                "line_items",
                "A payment link takes 1 to 20 line items.".into(),
            ));
        }
        let currency = match params.get("currency").and_then(Value::as_str) {
            Some(c) if c.chars().all(|ch| ch.is_ascii_lowercase()) && c.len() == 3 => {
                Some(c.to_owned())
            }
            Some(c) => {
                return Err(invalid(
                    "parameter_invalid_string",
                    "currency",
                    format!("Invalid currency: {c}. Stripe currencies are lower-case."),
                ));
            }
            None => None,
        };
        let mut resolved = Vec::new();
        for i in 0..line_items.len() {
            let item = &line_items[&i.to_string()];
            let param = |f: &str| format!("line_items[{i}][{f}]");
            let price_id = item.get("price").and_then(Value::as_str).ok_or_else(|| {
                invalid(
                    "parameter_missing",
                    &param("price"),
                    "Missing required param.".into(),
                )
            })?;
            let quantity: i64 = item
                .get("quantity")
                .and_then(Value::as_str)
                .and_then(|q| q.parse().ok())
                .ok_or_else(|| {
                    invalid(
                        "parameter_missing",
                        &param("quantity"),
                        "Missing required param.".into(),
                    )
                })?;
            if !(1..=999_999).contains(&quantity) {
                return Err(invalid(
                    "parameter_invalid_integer",
                    &param("quantity"),
                    "Quantity must be between 1 and 999999.".into(),
                ));
            }
            let Some(price) = self.price(price_id).cloned() else {
                return Err((
                    400,
                    "invalid_request_error",
                    Some("resource_missing"),
                    Some(param("price")),
                    format!("No such price: '{price_id}'"),
                ));
            };
            resolved.push((price, quantity));
        }
        let link_currency = match &currency {
            Some(c) => c.clone(),
            None => resolved[0].0["currency"].as_str().unwrap_or("").to_owned(),
        };
        let mut items = Vec::new();
        for (i, (price, quantity)) in resolved.iter().enumerate() {
            let Some(unit) = price["currency_options"][&link_currency]["unit_amount"].as_i64()
            else {
                return Err((
                    400,
                    "invalid_request_error",
                    None,
                    Some(if currency.is_some() {
                        "currency".to_owned()
                    } else {
                        format!("line_items[{i}][price]")
                    }),
                    format!(
                        "The price {} cannot be charged in {link_currency}; all line items must share a currency.",
                        price["id"]
                    ),
                ));
            };
            let product = self
                .product(price["product"].as_str().unwrap_or(""))
                .cloned()
                .unwrap_or(json!({}));
            let amount = unit * quantity;
            let id = self.id("li");
            items.push(json!({
                "id": id, "object": "item", "amount_discount": 0, "amount_subtotal": amount,
                "amount_tax": 0, "amount_total": amount, "currency": link_currency,
                "description": product["name"], "price": shown_price(price, false),
                "quantity": quantity,
            }));
        }
        let metadata = params.get("metadata").cloned().unwrap_or(json!({}));
        if let Some(m) = metadata.as_object() {
            if m.len() > 50 {
                return Err(invalid(
                    "parameter_invalid_string",
                    "metadata",
                    "Metadata takes at most 50 keys.".into(),
                ));
            }
            for (k, v) in m {
                if k.chars().count() > 40 || v.as_str().is_some_and(|v| v.chars().count() > 500) {
                    return Err(invalid(
                        "parameter_invalid_string",
                        &format!("metadata[{k}]"),
                        "Metadata keys take 40 characters, values 500.".into(),
                    ));
                }
            }
        }
        let after_completion = match params.get("after_completion") {
            Some(a) if a["type"] == "redirect" => {
                let Some(url) = a["redirect"]["url"].as_str() else {
                    return Err(invalid(
                        "parameter_missing",
                        "after_completion[redirect][url]",
                        "Missing required param: after_completion[redirect][url].".into(),
                    ));
                };
                json!({"type": "redirect", "redirect": {"url": url}})
            }
            Some(a) => {
                json!({"type": a["type"], "hosted_confirmation": {"custom_message": null}})
            }
            None => {
                json!({"type": "hosted_confirmation", "hosted_confirmation": {"custom_message": null}})
            }
        };
        let restrictions = match params["restrictions"]["completed_sessions"]["limit"].as_str() {
            Some(l) => {
                let limit: i64 = l.parse().unwrap_or(0);
                if limit < 1 {
                    return Err(invalid(
                        "parameter_invalid_integer",
                        "restrictions[completed_sessions][limit]",
                        "This value must be greater than or equal to 1.".into(),
                    ));
                }
                json!({"completed_sessions": {"count": 0, "limit": limit}})
            }
            None => Value::Null,
        };
        let id = self.id("plink");
        let link = json!({
            "id": id, "object": "payment_link", "active": true,
            "after_completion": after_completion, "allow_promotion_codes": false,
            "application": null, "application_fee_amount": null, "application_fee_percent": null,
            "automatic_tax": {"enabled": false, "liability": null},
            "billing_address_collection": "auto", "consent_collection": null,
            "currency": link_currency, "custom_fields": [], "custom_text": {},
            "customer_creation": "if_required", "inactive_message": params.get("inactive_message"),
            "invoice_creation": null, "livemode": livemode, "metadata": metadata,
            "on_behalf_of": null, "payment_intent_data": null,
            "payment_method_collection": "always", "payment_method_types": null,
            "phone_number_collection": {"enabled": false}, "restrictions": restrictions,
            "shipping_address_collection": null, "shipping_options": [], "submit_type": "auto",
            "subscription_data": null, "tax_id_collection": {"enabled": false},
            "transfer_data": null, "url": format!("https://buy.stripe.com/test_{id}"),
        });
        self.links.push((link.clone(), items));
        Ok(link)
    }
}

fn method_path(req: &Request) -> (String, String) {
    (req.method.as_str().to_owned(), req.url.path().to_owned())
}

impl Handler {
    #[allow(clippy::result_large_err)] // test code: the error is the answer to send
    fn route(&self, state: &mut State, req: &Request) -> Result<ResponseTemplate, Refusal> {
        let (method, path) = method_path(req);
        let livemode = self.key.starts_with("sk_live_") || self.key.starts_with("rk_live_");
        let query = req.url.query().unwrap_or("");
        let (params, pairs) = if method == "POST" {
            let ct = req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct.starts_with("application/x-www-form-urlencoded") {
                return Err((
                    400,
                    "invalid_request_error",
                    None,
                    None,
                    format!(
                        "Invalid request: Content-Type must be application/x-www-form-urlencoded, got {ct}"
                    ),
                ));
            }
            if !query.is_empty() {
                return Err((
                    400,
                    "invalid_request_error",
                    None,
                    None,
                    "Parameters belong in the body of a POST.".into(),
                ));
            }
            decode_form(&req.body)?
        } else {
            decode_form(query.as_bytes())?
        };
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let ok = |v: Value| Ok(ResponseTemplate::new(200).set_body_json(v));
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "payment_links"]) => {
                check_top(&params, create_params())?;
                let Some(key) = req
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                else {
                    return Err((
                        400,
                        "invalid_request_error",
                        None,
                        None,
                        "This mock requires an Idempotency-Key on every create.".into(),
                    ));
                };
                let mut sorted = pairs.clone();
                sorted.sort();
                if let Some(stored) = state.idempotency.get(&key) {
                    if stored.params != sorted {
                        return Err((
                            400,
                            "idempotency_error",
                            None,
                            None,
                            format!(
                                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                            ),
                        ));
                    }
                    let stored = stored.clone();
                    state.replays += 1;
                    return Ok(ResponseTemplate::new(stored.status)
                        .set_body_json(stored.body)
                        .insert_header("idempotent-replayed", "true"));
                }
                let link = state.create_link(&params, livemode)?;
                state.idempotency.insert(
                    key,
                    Stored {
                        params: sorted,
                        status: 200,
                        body: link.clone(),
                    },
                );
                ok(link)
            }
            ("GET", ["v1", "payment_links"]) => {
                let mut fields = list_query();
                fields.push(("active", Ty::Bool));
                check_top(&params, fields)?;
                check_expand(&params, &[])?;
                let mut links: Vec<Value> =
                    state.links.iter().rev().map(|(l, _)| l.clone()).collect();
                if let Some(a) = params.get("active").and_then(Value::as_str) {
                    links.retain(|l| l["active"] == (a == "true"));
                }
                ok(page(&links, &params)?)
            }
            ("GET", ["v1", "payment_links", id]) => {
                check_top(&params, vec![("expand", Ty::StrArray)])?;
                check_expand(&params, &[])?;
                match state.links.iter().find(|(l, _)| l["id"] == *id) {
                    Some((l, _)) => ok(l.clone()),
                    None => Err(missing("payment_link", id)),
                }
            }
            ("POST", ["v1", "payment_links", id]) => {
                check_top(&params, update_params())?;
                let Some((link, _)) = state.links.iter_mut().find(|(l, _)| l["id"] == *id) else {
                    return Err(missing("payment_link", id));
                };
                if let Some(a) = params.get("active").and_then(Value::as_str) {
                    link["active"] = json!(a == "true");
                }
                if let Some(m) = params.get("inactive_message") {
                    link["inactive_message"] = m.clone();
                }
                ok(link.clone())
            }
            ("GET", ["v1", "payment_links", id, "line_items"]) => {
                check_top(&params, list_query())?;
                check_expand(&params, &[])?;
                match state.links.iter().find(|(l, _)| l["id"] == *id) {
                    Some((_, items)) => ok(page(items, &params)?),
                    None => Err(missing("payment_link", id)),
                }
            }
            ("GET", ["v1", "products"]) => {
                let mut fields = list_query();
                fields.push(("active", Ty::Bool));
                check_top(&params, fields)?;
                let expand = check_expand(
                    &params,
                    &["data.default_price", "data.default_price.currency_options"],
                )?;
                let mut products: Vec<Value> = state.products.clone();
                if let Some(a) = params.get("active").and_then(Value::as_str) {
                    products.retain(|p| p["active"] == (a == "true"));
                }
                let mut listed = page(&products, &params)?;
                let expand_price = !expand.is_empty();
                let with_options = expand
                    .iter()
                    .any(|e| e == "data.default_price.currency_options");
                if expand_price && let Some(data) = listed["data"].as_array_mut() {
                    for p in data {
                        if let Some(pid) = p["default_price"].as_str()
                            && let Some(price) = state.price(pid)
                        {
                            p["default_price"] = shown_price(price, with_options);
                        }
                    }
                }
                ok(listed)
            }
            ("GET", ["v1", "products", id]) => {
                check_top(&params, vec![("expand", Ty::StrArray)])?;
                let expand = check_expand(
                    &params,
                    &["default_price", "default_price.currency_options"],
                )?;
                let Some(mut product) = state.product(id).cloned() else {
                    return Err(missing("product", id));
                };
                if !expand.is_empty()
                    && let Some(pid) = product["default_price"].as_str()
                    && let Some(price) = state.price(pid)
                {
                    let with_options = expand.iter().any(|e| e == "default_price.currency_options");
                    product["default_price"] = shown_price(price, with_options);
                }
                ok(product)
            }
            ("GET", ["v1", "prices", id]) => {
                check_top(&params, vec![("expand", Ty::StrArray)])?;
                let expand = check_expand(&params, &["currency_options", "product"])?;
                let Some(p) = state.price(id) else {
                    return Err(missing("price", id));
                };
                let mut shown = shown_price(p, expand.iter().any(|e| e == "currency_options"));
                if expand.iter().any(|e| e == "product")
                    && let Some(product) = state.product(p["product"].as_str().unwrap_or(""))
                {
                    shown["product"] = product.clone();
                }
                ok(shown)
            }
            _ => Err((
                404,
                "invalid_request_error",
                None,
                None,
                format!("Unrecognized request URL ({method}: {path})."),
            )),
        }
    }
}

fn missing(what: &str, id: &str) -> Refusal {
    (
        404,
        "invalid_request_error",
        Some("resource_missing"),
        Some("id".to_owned()),
        format!("No such {what}: '{id}'"),
    )
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.arrived.send_modify(|n| *n += 1);
        state.next_request_id += 1;
        let rid = format!("req_Mock{}", state.next_request_id);
        let (method, path) = method_path(req);
        let with_id = |t: ResponseTemplate| t.insert_header("request-id", rid.as_str());
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {}", self.key) {
            // Like Stripe, name the key that was sent (Stripe masks it; this mock does not, to
            // prove the server scrubs it).
            let sent = auth.strip_prefix("Bearer ").unwrap_or(auth);
            return with_id(stripe_error(
                401,
                "invalid_request_error",
                None,
                None,
                &format!("Invalid API Key provided: {sent}"),
            ));
        }
        let version = req
            .headers
            .get("stripe-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if version != VERSION {
            return with_id(stripe_error(
                400,
                "invalid_request_error",
                None,
                None,
                &format!("Invalid Stripe API version: {version}"),
            ));
        }
        let fault = state
            .faults
            .iter()
            .position(|(m, p, _)| *m == method && path.starts_with(p.as_str()))
            .and_then(|i| state.faults.remove(i))
            .map(|(_, _, f)| f);
        if let Some(Fault::Status(status, body, headers)) = &fault {
            let retryable = headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("stripe-should-retry") && *v == "true");
            if method == "POST" && path == "/v1/payment_links" && *status >= 500 && !retryable {
                let key = req
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let (Some(key), Ok((_, mut pairs))) = (key, decode_form(&req.body)) {
                    pairs.sort();
                    state.idempotency.entry(key).or_insert(Stored {
                        params: pairs,
                        status: *status,
                        body: body.clone(),
                    });
                }
            }
            let mut t = ResponseTemplate::new(*status).set_body_json(body.clone());
            for (k, v) in headers {
                t = t.insert_header(*k, *v);
            }
            return with_id(t);
        }
        let response = match self.route(&mut state, req) {
            Ok(t) => t,
            Err(r) => refuse(r),
        };
        match fault {
            Some(Fault::Raw(status, ct, body)) => {
                with_id(ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), ct))
            }
            Some(Fault::Delay(d)) => with_id(response.set_delay(d)),
            _ => with_id(response),
        }
    }
}

impl MockStripe {
    /// Starts the mock on 127.0.0.1 expecting `key` as the Bearer token.
    pub async fn start(key: &str) -> Self {
        let server = MockServer::builder()
            .listener(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .start()
            .await;
        let state = Arc::new(Mutex::new(State::seed()));
        let (arrived_tx, arrived) = tokio::sync::watch::channel(0);
        Mock::given(any())
            .respond_with(Handler {
                state: state.clone(),
                key: key.to_string(),
                arrived: arrived_tx,
            })
            .mount(&server)
            .await;
        MockStripe {
            server,
            state,
            key: key.to_string(),
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
        self.stdio_with(&self.key, &[], &[]).await
    }

    /// The real binary over stdio on this mock, with `key`, `args` and `env`.
    pub async fn stdio_with(
        &self,
        key: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> stdio::Server {
        stdio::Server::on_upstream("stripe", &self.uri(), key, args, env).await
    }

    /// The creates (`POST /v1/payment_links`) received so far.
    pub async fn creates(&self) -> usize {
        self.requests_to("POST", "/v1/payment_links").await.len()
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

    pub fn link_count(&self) -> usize {
        self.state.lock().unwrap().links.len()
    }

    pub fn replays(&self) -> usize {
        self.state.lock().unwrap().replays
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

    /// Requests to exactly `path`, in order.
    pub async fn requests_to(&self, method: &str, path: &str) -> Vec<Request> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.url.path() == path)
            .collect()
    }
}

/// A request's form body or query as decoded pairs, in order.
pub fn pairs_of(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// A request's query as decoded pairs.
pub fn query_of(req: &Request) -> Vec<(String, String)> {
    pairs_of(req.url.query().unwrap_or("").as_bytes())
}

/// The value of one header as text.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Pairs as a sorted map, for comparisons that ignore order.
pub fn as_map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}
