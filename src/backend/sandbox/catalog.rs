//! The sandbox's seeded catalog: six products with prices in several currencies (one-time and
//! recurring), two coupons, and the arithmetic of a coupon's discount.
//!
//! Static data, the same for every tenant: it must not hold any tenant's links.

use std::sync::LazyLock;

use crate::domain::{CurrencyCode, Money};
use crate::error::{Error, Result, UpstreamContext};
use crate::model::{Product, ProductKind};

pub(super) struct CatalogProduct {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub interval: Option<&'static str>,
    /// (currency, decimal price)
    pub prices: &'static [(&'static str, &'static str)],
}

// Stable UUID v4 ids (version nibble 4, variant 8..b) so tests, docs and models can rely on them.
pub(super) const CATALOG: &[CatalogProduct] = &[
    CatalogProduct {
        id: "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f",
        name: "Arabica coffee beans, 1 kg",
        description: "Single-origin beans from Jazan, roasted weekly.",
        interval: None,
        prices: &[("SAR", "89.00"), ("USD", "23.75")],
    },
    CatalogProduct {
        id: "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d",
        name: "Ceramic mug",
        description: "Hand-glazed 350 ml mug.",
        interval: None,
        prices: &[("SAR", "35.50"), ("KWD", "2.950")],
    },
    CatalogProduct {
        id: "d4e5f6a7-b8c9-4d0e-a1f2-a3b4c5d6e7f8",
        name: "Dallah coffee pot",
        description: "Brass dallah, hand-finished.",
        interval: None,
        prices: &[("SAR", "420.00"), ("KWD", "34.125"), ("BHD", "42.300")],
    },
    CatalogProduct {
        id: "5e6f7a8b-9c0d-4e1f-b2a3-c4d5e6f7a8b9",
        name: "Barista workshop ticket",
        description: "Three-hour hands-on class.",
        interval: None,
        prices: &[("SAR", "250.00"), ("USD", "66.67"), ("AED", "245.00")],
    },
    CatalogProduct {
        id: "9c8b7a6f-5e4d-4c3b-9a2f-1e0d9c8b7a6f",
        name: "Coffee club, monthly",
        description: "A bag of beans every month.",
        interval: Some("month"),
        prices: &[("SAR", "59.00"), ("USD", "15.75")],
    },
    CatalogProduct {
        id: "2b3c4d5e-6f7a-4b8c-8d9e-0f1a2b3c4d5e",
        name: "Coffee club, yearly",
        description: "Twelve bags of beans a year, two months free.",
        interval: Some("year"),
        prices: &[("SAR", "590.00"), ("USD", "157.50")],
    },
];

struct CatalogCoupon {
    id: &'static str,
    code: &'static str,
    percent_off: u8,
}

const COUPONS: &[CatalogCoupon] = &[
    CatalogCoupon {
        id: "7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a",
        code: "WELCOME10",
        percent_off: 10,
    },
    CatalogCoupon {
        id: "1a2b3c4d-5e6f-4a7b-9c8d-e9f0a1b2c3d4",
        code: "VIP25",
        percent_off: 25,
    },
];

/// The seeded catalog as products, built once.
pub(super) static PRODUCTS: LazyLock<Vec<Product>> = LazyLock::new(|| {
    CATALOG
        .iter()
        .map(|p| Product {
            id: p.id.to_owned(),
            name: Some(p.name.to_owned()),
            description: Some(p.description.to_owned()),
            kind: Some(kind_of(p)),
            interval: p.interval.map(str::to_owned),
            prices: p
                .prices
                .iter()
                .filter_map(|(c, amount)| price(c, amount))
                .map(Money::view)
                .collect(),
        })
        .collect()
});

pub(super) fn kind_of(p: &CatalogProduct) -> ProductKind {
    if p.interval.is_some() {
        ProductKind::Recurring
    } else {
        ProductKind::OneTime
    }
}

pub(super) fn price(currency: &str, amount: &str) -> Option<Money> {
    let currency = CurrencyCode::parse(currency, "currency").ok()?;
    Money::parse_decimal(amount, currency).ok()
}

/// A human-readable list of the seeded coupons, for the server instructions.
pub(crate) fn coupon_summary() -> String {
    COUPONS
        .iter()
        .map(|c| format!("{} ({}% off, id {})", c.code, c.percent_off, c.id))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn not_found(what: &str, id: &str, field: &str) -> Error {
    Error::not_found(
        format!("no {what} with id {id} in the sandbox"),
        UpstreamContext::default(),
    )
    .on_field(field)
}

pub(super) fn coupon_percent(id: &str, field: &str) -> Result<u8> {
    COUPONS
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.percent_off)
        .ok_or_else(|| not_found("coupon", id, field))
}

/// `amount` less `percent`% of it, rounding the discount down (the payer never pays less than
/// the exact discounted amount rounded up to the minor unit).
pub(super) fn discounted(amount: Money, percent: u32) -> Money {
    let percent = i128::from(percent.min(100));
    let discount = i128::from(amount.minor()) * percent / 100;
    // discount <= amount, so the difference fits back in an i64.
    Money::from_minor(amount.minor() - discount as i64, amount.currency())
}

/// The catalog product with `id`.
pub(super) fn product(id: &str) -> Option<&'static CatalogProduct> {
    CATALOG.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn catalog_ids_are_uuid_v4_and_prices_parse() {
        for p in CATALOG {
            let u = Uuid::parse_str(p.id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{}", p.id);
            assert!(matches!(u.as_bytes()[8] >> 6, 0b10), "variant of {}", p.id);
            for (c, a) in p.prices {
                assert!(price(c, a).is_some(), "{c} {a}");
            }
        }
        for c in COUPONS {
            assert_eq!(Uuid::parse_str(c.id).unwrap().get_version_num(), 4);
        }
        assert!(CATALOG.len() >= 6);
    }

    #[test]
    fn discount_rounds_the_discount_down() {
        let sar = CurrencyCode::sar();
        assert_eq!(discounted(Money::from_minor(999, sar), 10).minor(), 900);
        assert_eq!(discounted(Money::from_minor(1000, sar), 150).minor(), 0);
    }
}
