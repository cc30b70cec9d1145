//! The embedded sandbox: behaves like Stream, in memory, with no network and no key.
//!
//! It enforces what Stream enforces (products must exist, one-time and recurring products cannot
//! be mixed, every product needs a price in the link's currency, exact totals, statuses, limits)
//! so that what works here works on Stream. One [`SandboxBackend`] is one tenant's data, bounded by
//! `max_links`; it disappears with the tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Backend, LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate, TargetStatus,
    page_by_item_id,
};
use crate::domain::{CurrencyCode, Cursor, Money, PaymentLinkId};
use crate::error::{Error, Result, UpstreamContext};
use crate::model::{
    BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product, ProductKind, visible_metadata,
};

/// Links of the sandbox live under this host, which can never resolve (RFC 6761 `.invalid`).
pub const SANDBOX_URL_BASE: &str = "https://sandbox.paylink.invalid/pay/";

/// Default cap on links one sandbox tenant may hold.
pub const DEFAULT_MAX_LINKS: usize = 1000;

struct CatalogProduct {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    interval: Option<&'static str>,
    /// (currency, decimal price)
    prices: &'static [(&'static str, &'static str)],
}

// Stable UUID v4 ids (version nibble 4, variant 8..b) so tests, docs and models can rely on them.
const CATALOG: &[CatalogProduct] = &[
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
static PRODUCTS: LazyLock<Vec<Product>> = LazyLock::new(|| {
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

fn kind_of(p: &CatalogProduct) -> ProductKind {
    if p.interval.is_some() {
        ProductKind::Recurring
    } else {
        ProductKind::OneTime
    }
}

fn price(currency: &str, amount: &str) -> Option<Money> {
    let currency = CurrencyCode::parse(currency, "currency").ok()?;
    Money::parse_decimal(amount, currency).ok()
}

/// A human-readable list of the seeded coupons, for the server instructions.
pub fn coupon_summary() -> String {
    COUPONS
        .iter()
        .map(|c| format!("{} ({}% off, id {})", c.code, c.percent_off, c.id))
        .collect::<Vec<_>>()
        .join("; ")
}

fn not_found(what: &str, id: &str, field: &str) -> Error {
    Error::NotFound {
        field: Some(field.to_owned()),
        message: format!("no {what} with id {id} in the sandbox"),
        upstream: UpstreamContext::default(),
    }
}

fn coupon_percent(id: &str, field: &str) -> Result<u8> {
    COUPONS
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.percent_off)
        .ok_or_else(|| not_found("coupon", id, field))
}

/// `amount` less `percent`% of it, rounding the discount down (the payer never pays less than
/// the exact discounted amount rounded up to the minor unit).
fn discounted(amount: Money, percent: u32) -> Money {
    let percent = i128::from(percent.min(100));
    let discount = i128::from(amount.minor()) * percent / 100;
    // discount <= amount, so the difference fits back in an i64.
    Money::from_minor(amount.minor() - discount as i64, amount.currency())
}

struct StoredLink {
    link: PaymentLink,
    items: Vec<LineItem>,
    created: DateTime<Utc>,
}

#[derive(Default)]
struct Store {
    links: HashMap<String, StoredLink>,
    /// Creation order, oldest first: the order listings use.
    order: VecDeque<String>,
}

/// One tenant's sandbox.
pub struct SandboxBackend {
    store: Mutex<Store>,
    max_links: usize,
}

impl SandboxBackend {
    pub fn new(max_links: usize) -> Self {
        SandboxBackend {
            store: Mutex::new(Store::default()),
            max_links,
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-written (every mutation is
        // a single insert), so a poisoned lock is still consistent: keep serving.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build(&self, request: NewPaymentLink, now: DateTime<Utc>) -> Result<StoredLink> {
        let currency = request.currency.unwrap_or_else(CurrencyCode::sar);
        let mut kinds = Vec::with_capacity(request.items.len());
        let mut items = Vec::with_capacity(request.items.len());
        let mut original_total = Money::from_minor(0, currency);
        let mut item_total = Money::from_minor(0, currency);
        let overflow = |field: String| Error::validation(field, "the total is too large");
        let mut interval = None;
        for (i, item) in request.items.iter().enumerate() {
            let field = format!("items[{i}].product_id");
            let product = CATALOG
                .iter()
                .find(|p| p.id == item.product_id.as_str())
                .ok_or_else(|| not_found("product", item.product_id.as_str(), &field))?;
            let unit = product
                .prices
                .iter()
                .find(|(c, _)| *c == currency.code())
                .and_then(|(c, a)| price(c, a))
                .ok_or_else(|| {
                    let have: Vec<&str> = product.prices.iter().map(|(c, _)| *c).collect();
                    Error::validation(
                        &field,
                        format!(
                            "product {} has no price in {currency}; it is priced in {}",
                            product.name,
                            have.join(", ")
                        ),
                    )
                })?;
            kinds.push(kind_of(product));
            interval = interval.or(product.interval);
            let line = unit
                .checked_mul(item.quantity.get())
                .ok_or_else(|| overflow(format!("items[{i}].quantity")))?;
            let mut percent = 0u32;
            for (c, coupon) in item.coupons.iter().enumerate() {
                percent += u32::from(coupon_percent(
                    coupon.as_str(),
                    &format!("items[{i}].coupons[{c}]"),
                )?);
            }
            let line_total = discounted(line, percent);
            original_total = original_total
                .checked_add(line)
                .ok_or_else(|| overflow("items".into()))?;
            item_total = item_total
                .checked_add(line_total)
                .ok_or_else(|| overflow("items".into()))?;
            items.push(LineItem {
                id: Uuid::new_v4().to_string(),
                product_id: Some(product.id.to_owned()),
                product_name: Some(product.name.to_owned()),
                quantity: Some(item.quantity.get()),
                unit_amount: Some(unit.view()),
                total: Some(line_total.view()),
                kind: Some(kind_of(product)),
                interval: product.interval.map(str::to_owned),
            });
        }
        if kinds.contains(&ProductKind::OneTime) && kinds.contains(&ProductKind::Recurring) {
            return Err(Error::validation(
                "items",
                "one-time and recurring products cannot be mixed in one payment link; create one link per kind",
            ));
        }
        let recurring: Vec<_> = request
            .items
            .iter()
            .filter_map(|i| CATALOG.iter().find(|p| p.id == i.product_id.as_str()))
            .filter_map(|p| p.interval)
            .collect();
        if recurring.windows(2).any(|w| w[0] != w[1]) {
            return Err(Error::validation(
                "items",
                "recurring products on one link must share a billing interval",
            ));
        }
        let mut link_percent = 0u32;
        for (c, coupon) in request.coupons.iter().enumerate() {
            link_percent += u32::from(coupon_percent(coupon.as_str(), &format!("coupons[{c}]"))?);
        }
        let total = discounted(item_total, link_percent);
        let id = Uuid::new_v4().to_string();
        let metadata: Vec<(String, serde_json::Value)> = request
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let link = PaymentLink {
            url: Some(format!("{SANDBOX_URL_BASE}{id}")),
            id,
            name: Some(request.name.as_str().to_owned()),
            description: request.description.map(|d| d.as_str().to_owned()),
            status: Some(LinkStatus::Active),
            currency: Some(currency.code().to_owned()),
            total: Some(total.view()),
            original_total: Some(original_total.view()),
            amount_collected: Some(Money::from_minor(0, currency).view()),
            item_count: Some(items.len() as u32),
            max_number_of_payments: request.max_number_of_payments.map(|m| m.get()),
            valid_until: request.valid_until.map(|v| v.to_rfc3339()),
            success_redirect_url: request.success_redirect_url.map(|u| u.as_str().to_owned()),
            failure_redirect_url: request.failure_redirect_url.map(|u| u.as_str().to_owned()),
            recurring_interval: interval.map(str::to_owned),
            inactive_message: None,
            created_at: Some(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            metadata: visible_metadata(metadata.iter().map(|(k, v)| (k, v))),
            backend: BackendKind::Sandbox,
            livemode: false,
        };
        Ok(StoredLink {
            link,
            items,
            created: now,
        })
    }

    fn with_link<T>(&self, id: &PaymentLinkId, f: impl FnOnce(&StoredLink) -> T) -> Result<T> {
        let store = self.store();
        store
            .links
            .get(id.as_str())
            .map(f)
            .ok_or_else(|| not_found("payment link", id.as_str(), "payment_link_id"))
    }
}

#[async_trait]
impl Backend for SandboxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }

    fn livemode(&self) -> bool {
        false
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let stored = self.build(request, Utc::now())?;
        let mut store = self.store();
        if store.links.len() >= self.max_links {
            return Err(Error::RateLimited {
                retry_safe: false,
                message: format!(
                    "this sandbox tenant already holds the maximum of {} links; the sandbox is for trying things out, its data is not kept",
                    self.max_links
                ),
                retry_after_secs: None,
                upstream: UpstreamContext::default(),
            });
        }
        let link = stored.link.clone();
        store.order.push_back(link.id.clone());
        store.links.insert(link.id.clone(), stored);
        Ok(link)
    }

    async fn get_payment_link(&self, id: &PaymentLinkId) -> Result<PaymentLink> {
        self.with_link(id, |s| s.link.clone())
    }

    async fn list_line_items(&self, query: LineItemsQuery) -> Result<Page<LineItem>> {
        let items = self.with_link(&query.payment_link_id, |s| s.items.clone())?;
        page_by_item_id(items, &query)
    }

    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let limit = cursor.limit.get();
        let start = (cursor.page as usize - 1).saturating_mul(limit);
        let data: Vec<Product> = PRODUCTS.iter().skip(start).take(limit).cloned().collect();
        let has_more = start.saturating_add(limit) < PRODUCTS.len();
        Ok(Page {
            data,
            has_more,
            next_cursor: has_more.then(|| cursor.next().encode()),
        })
    }

    async fn list_payment_links(&self, query: LinksQuery) -> Result<Page<PaymentLink>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let limit = cursor.limit.get();
        let start = (cursor.page as usize - 1).saturating_mul(limit);
        let store = self.store();
        let matching: Vec<&StoredLink> = store
            .order
            .iter()
            .rev()
            .filter_map(|id| store.links.get(id))
            .filter(|s| query.status.is_none_or(|st| s.link.status == Some(st)))
            .filter(|s| query.created_from.is_none_or(|f| s.created >= f))
            .filter(|s| query.created_to.is_none_or(|t| s.created <= t))
            .collect();
        let has_more = start.saturating_add(limit) < matching.len();
        let data = matching
            .into_iter()
            .skip(start)
            .take(limit)
            .map(|s| s.link.clone())
            .collect();
        Ok(Page {
            data,
            has_more,
            next_cursor: has_more.then(|| cursor.next().encode()),
        })
    }

    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink> {
        let mut store = self.store();
        let stored = store
            .links
            .get_mut(update.payment_link_id.as_str())
            .ok_or_else(|| {
                not_found(
                    "payment link",
                    update.payment_link_id.as_str(),
                    "payment_link_id",
                )
            })?;
        if stored.link.status == Some(LinkStatus::Completed) {
            return Err(Error::validation(
                "status",
                "this link is completed (it reached its payment limit); a completed link cannot be reactivated or deactivated",
            ));
        }
        match update.status {
            TargetStatus::Active => {
                stored.link.status = Some(LinkStatus::Active);
                stored.link.inactive_message = None;
            }
            TargetStatus::Inactive => {
                stored.link.status = Some(LinkStatus::Inactive);
                stored.link.inactive_message = update.message;
            }
        }
        Ok(stored.link.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
