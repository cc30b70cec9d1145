//! Identifiers of upstream objects. Each backend has its own id format, so parsing takes an
//! [`IdFormat`]; whatever the format, an id that reaches a backend is known to be safe to place in
//! a URL path (no `/`, `?`, `%`, whitespace or control characters).

use std::fmt;

use uuid::Uuid;

use crate::error::Error;

/// The id grammar of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// Stream and the sandbox: UUIDs (v4 for products and coupons).
    Uuid,
    /// Stripe: `prefix_` followed by letters and digits (`price_1Nx...`, `plink_...`).
    Stripe,
}

const MAX_STRIPE_ID: usize = 255;

fn parse_uuid(raw: &str, field: &str, what: &str, require_v4: bool) -> Result<String, Error> {
    let s = raw.trim();
    let uuid = Uuid::try_parse(s)
        .ok()
        .filter(|_| s.len() == 36)
        .ok_or_else(|| {
            Error::validation(
                field,
                format!(
                    "{what} must be a UUID such as 3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b, got `{}`",
                    super::currency::truncate(s, 64)
                ),
            )
        })?;
    if require_v4 && uuid.get_version_num() != 4 {
        return Err(Error::validation(
            field,
            format!(
                "{what} must be a version 4 UUID; `{s}` is version {}",
                uuid.get_version_num()
            ),
        ));
    }
    Ok(uuid.hyphenated().to_string())
}

fn parse_stripe(raw: &str, field: &str, what: &str, prefixes: &[&str]) -> Result<String, Error> {
    let s = raw.trim();
    let body_ok = |rest: &str| {
        !rest.is_empty()
            && rest.len() <= MAX_STRIPE_ID
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if prefixes
        .iter()
        .any(|p| s.strip_prefix(p).is_some_and(body_ok))
    {
        Ok(s.to_owned())
    } else {
        Err(Error::validation(
            field,
            format!(
                "{what} must be a Stripe id starting with {}, got `{}`",
                prefixes.join(" or "),
                super::currency::truncate(s, 64)
            ),
        ))
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A product to sell: a UUID v4 on Stream and the sandbox; on Stripe a `price_...` id, or a
    /// `prod_...` id that stands for the product's default price.
    ProductId
);
id_type!(
    /// A payment link: a UUID on Stream and the sandbox, `plink_...` on Stripe.
    PaymentLinkId
);
id_type!(
    /// A coupon (Stream and the sandbox only): a UUID v4.
    CouponId
);

impl ProductId {
    pub fn parse(raw: &str, field: &str, format: IdFormat) -> Result<Self, Error> {
        match format {
            IdFormat::Uuid => parse_uuid(raw, field, "a product id", true).map(ProductId),
            IdFormat::Stripe => {
                parse_stripe(raw, field, "a product id", &["price_", "prod_"]).map(ProductId)
            }
        }
    }

    /// True for a Stripe product id (`prod_...`) that must be resolved to its default price.
    pub fn is_stripe_product(&self) -> bool {
        self.0.starts_with("prod_")
    }
}

impl PaymentLinkId {
    pub fn parse(raw: &str, field: &str, format: IdFormat) -> Result<Self, Error> {
        match format {
            IdFormat::Uuid => parse_uuid(raw, field, "a payment link id", false).map(PaymentLinkId),
            IdFormat::Stripe => {
                parse_stripe(raw, field, "a payment link id", &["plink_"]).map(PaymentLinkId)
            }
        }
    }

    /// Wraps an id that came from an upstream answer (not from a caller).
    pub fn from_upstream(id: String) -> Self {
        PaymentLinkId(id)
    }
}

impl CouponId {
    pub fn parse(raw: &str, field: &str) -> Result<Self, Error> {
        parse_uuid(raw, field, "a coupon id", true).map(CouponId)
    }
}

/// Checks an opaque pagination token or upstream item id that will be sent back upstream:
/// non-empty, at most 255 characters of `[A-Za-z0-9_-]`.
pub(crate) fn parse_item_id(raw: &str, field: &str) -> Result<String, Error> {
    let s = raw.trim();
    if !s.is_empty()
        && s.len() <= MAX_STRIPE_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(s.to_owned())
    } else {
        Err(Error::validation(
            field,
            "must be a line item id taken from a previous list_line_items answer",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b";

    #[test]
    fn uuid_v4_product_ids_are_accepted_and_canonicalised() {
        let id =
            ProductId::parse(&V4.to_uppercase(), "items[0].product_id", IdFormat::Uuid).unwrap();
        assert_eq!(id.as_str(), V4);
    }

    #[test]
    fn non_v4_and_non_hyphenated_uuids_are_refused() {
        let v1 = "3f2b8c1e-9a4d-1e5f-8b6a-1c2d3e4f5a6b";
        let e = ProductId::parse(v1, "items[0].product_id", IdFormat::Uuid).unwrap_err();
        assert_eq!(e.field(), Some("items[0].product_id"));
        assert!(ProductId::parse(&V4.replace('-', ""), "f", IdFormat::Uuid).is_err());
        assert!(ProductId::parse("prod_123", "f", IdFormat::Uuid).is_err());
        // Any UUID version is fine for a link id: Stream assigns them.
        assert!(PaymentLinkId::parse(v1, "payment_link_id", IdFormat::Uuid).is_ok());
    }

    #[test]
    fn stripe_ids_need_their_prefix_and_a_safe_body() {
        assert!(ProductId::parse("price_1AbC", "f", IdFormat::Stripe).is_ok());
        let prod = ProductId::parse("prod_Xy9", "f", IdFormat::Stripe).unwrap();
        assert!(prod.is_stripe_product());
        for bad in [
            "price_",
            "plink_1",
            "price_1/../x",
            "price_1?x=1",
            "price_a b",
            V4,
        ] {
            assert!(
                ProductId::parse(bad, "f", IdFormat::Stripe).is_err(),
                "{bad}"
            );
        }
        assert!(PaymentLinkId::parse("plink_1MoC3", "f", IdFormat::Stripe).is_ok());
        assert!(PaymentLinkId::parse("price_1", "f", IdFormat::Stripe).is_err());
    }

    #[test]
    fn path_unsafe_link_ids_are_refused_on_every_backend() {
        for bad in ["../x", "a/b", "", "  ", "%2e%2e", "x\u{0}"] {
            assert!(PaymentLinkId::parse(bad, "f", IdFormat::Uuid).is_err());
            assert!(PaymentLinkId::parse(bad, "f", IdFormat::Stripe).is_err());
        }
    }

    #[test]
    fn coupons_are_uuid_v4() {
        assert!(CouponId::parse(V4, "coupons[0]").is_ok());
        assert_eq!(
            CouponId::parse("x", "coupons[0]").unwrap_err().field(),
            Some("coupons[0]")
        );
    }

    #[test]
    fn item_ids_are_safe_tokens() {
        assert_eq!(
            parse_item_id(" li_123 ", "starting_after").unwrap(),
            "li_123"
        );
        assert!(parse_item_id(V4, "starting_after").is_ok());
        assert!(parse_item_id("a/b", "starting_after").is_err());
        assert!(parse_item_id("", "starting_after").is_err());
        assert!(parse_item_id(&"a".repeat(256), "starting_after").is_err());
    }
}
