//! `create_payment_link`'s arguments, their validation into a [`NewPaymentLink`], and the
//! reference a create carries upstream (the call itself: see `write`).

use std::collections::BTreeMap;

use chrono::Utc;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::backend::{BackendRules, NewItem, NewPaymentLink};
use crate::domain::{
    CouponId, CurrencyCode, Description, LinkName, MaxPayments, Metadata, ProductId, Quantity,
    RedirectUrl, ValidUntil,
};
use crate::error::{Error, Result};

/// The most line items one link may carry (see [`crate::domain::MAX_LINE_ITEMS`]).
pub(crate) const MAX_ITEMS: usize = crate::domain::MAX_LINE_ITEMS;

fn one() -> i64 {
    1
}

/// One product on the link.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemArgs {
    /// The product to sell, from list_products (`id`). Stream and sandbox: a UUID v4. Stripe: a
    /// `price_...` id, or a `prod_...` id meaning that product's default price.
    pub product_id: String,
    /// How many units. At least 1; default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = Quantity::MAX), default = "one")]
    pub quantity: i64,
    /// Coupon ids (UUID v4) applied to this item only. Stream and sandbox only.
    #[serde(default)]
    pub coupons: Vec<String>,
}

/// Create a payment link: a hosted checkout page for one or more products, to share with payers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentLinkArgs {
    /// Name of the link, shown to payers (1 to 160 characters), e.g. "Order #1042".
    #[schemars(length(min = 1, max = LinkName::MAX_CHARS))]
    pub name: String,
    /// The products to sell: 1 to 20 items. On Stream and the sandbox, one-time and recurring
    /// products cannot be mixed on one link, and every product needs a price in the link's currency.
    #[schemars(length(min = 1, max = MAX_ITEMS))]
    pub items: Vec<ItemArgs>,
    /// Longer description shown to payers (up to 500 characters).
    #[schemars(length(min = 1, max = Description::MAX_CHARS))]
    pub description: Option<String>,
    /// ISO 4217 currency code, case-insensitive (e.g. SAR, USD, KWD). Default: SAR on Stream and the
    /// sandbox (which accept SAR USD EUR GBP AED BHD KWD OMR QAR); on Stripe, the prices' currency.
    pub currency: Option<String>,
    /// Coupon ids (UUID v4) applied to the whole link.
    #[serde(default)]
    pub coupons: Vec<String>,
    /// When the link stops accepting payments: an RFC 3339 timestamp in the future, e.g.
    /// "2030-01-31T23:59:00Z". Without an offset it is taken as UTC.
    pub valid_until: Option<String>,
    /// How many payments the link accepts before it completes (at least 1). Omit for unlimited.
    #[schemars(range(min = 1))]
    pub max_number_of_payments: Option<i64>,
    /// Absolute http(s) URL (up to 2000 characters) the payer is sent to after paying.
    #[schemars(length(min = 1, max = RedirectUrl::MAX_LEN))]
    pub success_redirect_url: Option<String>,
    /// Absolute http(s) URL (up to 2000 characters) the payer is sent to after a failed payment.
    #[schemars(length(min = 1, max = RedirectUrl::MAX_LEN))]
    pub failure_redirect_url: Option<String>,
    /// UUID of an existing Stream customer who alone may pay this link (then usually set
    /// max_number_of_payments to 1).
    pub organization_consumer_id: Option<String>,
    /// Your own key-value strings kept on the link: at most 50 keys (some are used by the server
    /// itself), keys up to 40 characters, values up to 500. Keys starting with `paylink_` are reserved.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A key of your choosing (1 to 255 printable characters): a repeat with the SAME key and
    /// arguments returns the link already created instead of a second one. A new key per link.
    #[schemars(length(min = 1, max = IdempotencyKey::MAX_LEN))]
    pub idempotency_key: Option<String>,
}

/// An idempotency key as the caller gave it, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest key, in bytes (printable ASCII: one byte a character).
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str, field: &str) -> Result<Self> {
        if raw.is_empty()
            || raw.len() > Self::MAX_LEN
            || !raw.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(Error::validation(
                field,
                format!("must be 1 to {} printable ASCII characters", Self::MAX_LEN),
            ));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated create request and its idempotency key. `link.reference` is left empty: the tool
/// layer sets it (see [`reference_for`]).
#[derive(Debug)]
pub struct CreateRequest {
    pub link: NewPaymentLink,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// The reference of a create: derived from (tenant, idempotency key) when the caller gave a key,
/// so that repeats (even after a restart, or on another replica) carry the same reference and
/// Stripe's `Idempotency-Key` derived from it; otherwise random.
pub(crate) fn reference_for(scope: &str, key: Option<&IdempotencyKey>) -> String {
    use sha2::{Digest, Sha256};
    match key {
        None => uuid::Uuid::new_v4().to_string(),
        Some(key) => {
            let digest = Sha256::new()
                .chain_update(b"paylink-reference\0")
                .chain_update(scope.as_bytes())
                .chain_update([0])
                .chain_update(key.as_str().as_bytes())
                .finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .to_string()
        }
    }
}

fn present(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Refuses arguments the backend cannot honour before anything else, so that a refused field is
/// reported as unsupported rather than unknown.
pub fn refuse_unsupported(args: Option<&Map<String, Value>>, rules: &BackendRules) -> Result<()> {
    let Some(args) = args else { return Ok(()) };
    for field in rules.unsupported_create_fields {
        if let Some(nested) = field.strip_prefix("items[].") {
            if let Some(Value::Array(items)) = args.get("items") {
                for (i, item) in items.iter().enumerate() {
                    if present(item.get(nested)) {
                        return Err(Error::unsupported(
                            format!("items[{i}].{nested}"),
                            rules.kind.as_str(),
                        ));
                    }
                }
            }
        } else if present(args.get(*field)) {
            return Err(Error::unsupported(*field, rules.kind.as_str()));
        }
    }
    Ok(())
}

/// Coupon ids, each a UUID v4, none twice (a coupon applies once; listing it again would not
/// discount twice upstream, so it is refused rather than guessed at).
fn parse_coupons(raw: &[String], field: &str) -> Result<Vec<CouponId>> {
    let mut out: Vec<CouponId> = Vec::with_capacity(raw.len());
    for (c, id) in raw.iter().enumerate() {
        let coupon = CouponId::parse(id, &format!("{field}[{c}]"))?;
        if out.contains(&coupon) {
            return Err(Error::validation(
                format!("{field}[{c}]"),
                format!("coupon {coupon} is listed twice; list each coupon once"),
            ));
        }
        out.push(coupon);
    }
    Ok(out)
}

impl CreatePaymentLinkArgs {
    /// Checks every rule and builds the domain request.
    pub fn validate(self, rules: &BackendRules) -> Result<CreateRequest> {
        let name = LinkName::parse(&self.name, "name")?;
        if self.items.is_empty() {
            return Err(Error::validation("items", "at least one item is required"));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(Error::validation(
                "items",
                format!(
                    "at most {MAX_ITEMS} items per link, got {}",
                    self.items.len()
                ),
            ));
        }
        let mut items = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.into_iter().enumerate() {
            let product_id = ProductId::parse(
                &item.product_id,
                &format!("items[{i}].product_id"),
                rules.id_format,
            )?;
            let quantity = Quantity::parse(item.quantity, &format!("items[{i}].quantity"))?;
            let coupons = parse_coupons(&item.coupons, &format!("items[{i}].coupons"))?;
            items.push(NewItem {
                product_id,
                quantity,
                coupons,
            });
        }
        let description = self
            .description
            .as_deref()
            .map(|d| Description::parse(d, "description"))
            .transpose()?;
        let currency = self
            .currency
            .as_deref()
            .map(|c| match rules.currencies {
                Some(allowed) => CurrencyCode::parse_in(c, "currency", allowed),
                None => CurrencyCode::parse(c, "currency"),
            })
            .transpose()?;
        let coupons = parse_coupons(&self.coupons, "coupons")?;
        let valid_until = self
            .valid_until
            .as_deref()
            .map(|v| ValidUntil::parse(v, "valid_until", Utc::now()))
            .transpose()?;
        let max_number_of_payments = self
            .max_number_of_payments
            .map(|m| MaxPayments::parse(m, "max_number_of_payments"))
            .transpose()?;
        let success_redirect_url = self
            .success_redirect_url
            .as_deref()
            .map(|u| RedirectUrl::parse(u, "success_redirect_url"))
            .transpose()?;
        let failure_redirect_url = self
            .failure_redirect_url
            .as_deref()
            .map(|u| RedirectUrl::parse(u, "failure_redirect_url"))
            .transpose()?;
        let organization_consumer_id = self
            .organization_consumer_id
            .as_deref()
            .map(|id| {
                uuid::Uuid::try_parse(id.trim())
                    .map(|u| u.hyphenated().to_string())
                    .map_err(|_| {
                        Error::validation("organization_consumer_id", "must be a customer UUID")
                    })
            })
            .transpose()?;
        let metadata = Metadata::parse(self.metadata, "metadata", rules.reserved_metadata_keys)?;
        let idempotency_key = self
            .idempotency_key
            .as_deref()
            .map(|k| IdempotencyKey::parse(k, "idempotency_key"))
            .transpose()?;
        Ok(CreateRequest {
            link: NewPaymentLink {
                name,
                items,
                description,
                currency,
                coupons,
                valid_until,
                max_number_of_payments,
                success_redirect_url,
                failure_redirect_url,
                organization_consumer_id,
                metadata,
                reference: String::new(),
                idempotency_key: idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            },
            idempotency_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coupon_listed_twice_is_refused_on_the_second() {
        let id = "7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a".to_owned();
        let e = parse_coupons(&[id.clone(), id.to_uppercase()], "items[0].coupons").unwrap_err();
        assert_eq!(e.field(), Some("items[0].coupons[1]"));
        assert_eq!(parse_coupons(&[id], "coupons").unwrap().len(), 1);
    }

    #[test]
    fn references_are_stable_per_tenant_and_key() {
        let k = IdempotencyKey::parse("order-1", "idempotency_key").unwrap();
        let a = reference_for("tenant-a", Some(&k));
        assert_eq!(a, reference_for("tenant-a", Some(&k)));
        assert_ne!(a, reference_for("tenant-b", Some(&k)));
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
        assert_ne!(reference_for("t", None), reference_for("t", None));
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse("abc-123_X", "k").is_ok());
        for bad in ["", "tab\there", "é", &"x".repeat(256)] {
            assert!(IdempotencyKey::parse(bad, "k").is_err(), "{bad:?}");
        }
    }
}
