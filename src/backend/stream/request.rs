//! What we send to Stream: its hosts, the auth headers (and the forms of the key the scrubber
//! removes from answers), the JSON body of a create or a status change, and the paths and query
//! strings of every call.
//!
//! It builds requests only: it must not send them or read answers.

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};

use crate::backend::request::{NewPaymentLink, StatusUpdate, TargetStatus};
use crate::domain::{PageCursor, PaymentLinkId, ProductId};
use crate::error::{Error, Result};
use crate::model::{LinkStatus, REQUEST_REF_KEY};
use crate::secret::ApiKey;
use crate::upstream::{Body, RetryMode, Scrubber, UpstreamRequest, sensitive_header};

/// Stream's production API: live money.
pub(crate) const PRODUCTION_BASE_URL: &str = "https://stream-app-service.streampay.sa";
/// Stream's staging API: no real money.
pub(crate) const STAGING_BASE_URL: &str = "https://staging.streampay.sa";

/// Payment links: create with a POST, list with a GET.
pub(super) const LINKS_PATH: &str = "/api/v2/payment_links";

/// The host of a base URL, lower-case.
fn host_of(base: &str) -> Option<String> {
    url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}

/// True unless `base` is known to move no real money: Stream's staging host
/// ([`STAGING_BASE_URL`]) or a loopback host (a local mock or test double). Any other host —
/// production, and anything in front of it (an egress proxy, a gateway) — counts as live: the
/// confirmation and the live guard fail closed.
pub(crate) fn is_live_base_url(base: &str) -> bool {
    let Ok(url) = url::Url::parse(base) else {
        return true;
    };
    let test = match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            let d = d.trim_end_matches('.');
            d == "localhost" || host_of(STAGING_BASE_URL).as_deref() == Some(d)
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    !test
}

/// The value of `x-api-key` for a configured key: `key:secret` is Base64-encoded, anything else
/// is a ready token sent as is.
pub(crate) fn token_for(key: &ApiKey) -> String {
    let raw = key.expose();
    if raw.contains(':') {
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    } else {
        raw.to_owned()
    }
}

/// The headers every request of one tenant carries: its key (marked sensitive) and branch.
pub(super) struct StreamHeaders {
    api_key: HeaderValue,
    branch_id: Option<HeaderValue>,
}

impl StreamHeaders {
    /// The headers for `key` and `branch_id` (already a validated UUID), and the scrubber of
    /// every form of the key we send.
    pub(super) fn new(key: &ApiKey, branch_id: Option<&str>) -> Result<(Self, Scrubber)> {
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
        Ok((StreamHeaders { api_key, branch_id }, Scrubber::new(secrets)))
    }

    /// A request with this tenant's headers.
    pub(super) fn request(
        &self,
        method: Method,
        path_and_query: String,
        body: Body,
        retry: RetryMode,
    ) -> UpstreamRequest {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert("x-api-key", self.api_key.clone());
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
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
}

/// The path of one link.
pub(super) fn link_path(id: &PaymentLinkId) -> String {
    format!("{LINKS_PATH}/{id}")
}

/// The path that sets a link's status.
pub(super) fn status_path(id: &PaymentLinkId) -> String {
    format!("{LINKS_PATH}/{id}/status")
}

/// One product of the catalog (`id` is a validated UUID).
pub(super) fn product_path(id: &ProductId) -> String {
    format!("/api/v2/products/{id}")
}

/// One page of the product catalog.
pub(super) fn products_path(cursor: PageCursor) -> String {
    format!(
        "/api/v2/products?page={}&limit={}",
        cursor.page,
        cursor.limit.get()
    )
}

/// Which links to list: a page of `limit`, newest first, filtered.
pub(super) struct LinksFilter {
    pub status: Option<LinkStatus>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
}

impl LinksFilter {
    pub(super) const NONE: LinksFilter = LinksFilter {
        status: None,
        created_from: None,
        created_to: None,
    };
}

/// Page `page` of `limit` links, newest first, filtered.
pub(super) fn links_path(page: u32, limit: usize, filter: &LinksFilter) -> String {
    let mut path =
        format!("{LINKS_PATH}?page={page}&limit={limit}&sort_field=created_at&sort_direction=desc");
    if let Some(status) = filter.status {
        path.push_str(match status {
            LinkStatus::Active => "&statuses=ACTIVE",
            LinkStatus::Inactive => "&statuses=INACTIVE",
            LinkStatus::Completed => "&statuses=COMPLETED",
        });
    }
    for (name, at) in [
        ("from_date", filter.created_from),
        ("to_date", filter.created_to),
    ] {
        if let Some(at) = at {
            // RFC 3339 in UTC: only digits, `-`, `:`, `T`, `.` and `Z`, all query-safe.
            let text = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            path.push_str(&format!("&{name}={text}"));
        }
    }
    path
}

/// The JSON body of `POST /api/v2/payment_links`: exactly the documented fields, absent ones
/// omitted (never null), `quantity` always sent, currency upper-case.
pub(crate) fn create_body(request: &NewPaymentLink) -> Value {
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

/// The JSON body of `PATCH .../status`.
pub(super) fn status_body(update: &StatusUpdate) -> Body {
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
    Body::Json(Bytes::from(Value::Object(body).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_but_staging_and_loopback_is_live() {
        assert!(is_live_base_url(PRODUCTION_BASE_URL));
        assert!(is_live_base_url(
            "HTTPS://Stream-App-Service.streampay.sa/some/path"
        ));
        // In front of production, or unknown: live (fail closed).
        assert!(is_live_base_url("https://egress-proxy.internal:8443"));
        assert!(is_live_base_url("http://10.0.0.7"));
        assert!(is_live_base_url(
            "https://staging.streampay.sa.evil.example"
        ));
        assert!(is_live_base_url("not a url"));
        assert!(!is_live_base_url(STAGING_BASE_URL));
        assert!(!is_live_base_url("https://STAGING.streampay.sa/"));
        assert!(!is_live_base_url("http://127.0.0.1:4010"));
        assert!(!is_live_base_url("http://[::1]:4010"));
        assert!(!is_live_base_url("http://localhost:4010"));
    }
}
