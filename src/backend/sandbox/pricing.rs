//! The sandbox's pricing of a create, the way Stream prices one: each product must exist and
//! have a price in the link's currency, one-time and recurring products are not mixed, recurring
//! ones share an interval, coupons discount a line or the whole link.
//!
//! One computation for both the preview and the create (see `calls`), so that the numbers a
//! user confirms are the numbers the link shows. It must not store anything.

use super::catalog::{self, coupon_percent, discounted, kind_of, not_found, price};
use crate::backend::preview::{Preview, PreviewLine};
use crate::backend::request::NewPaymentLink;
use crate::domain::{CurrencyCode, Money};
use crate::error::{Error, Result};
use crate::model::ProductKind;

/// A create, priced.
pub(super) struct Priced {
    /// The lines (after their own coupons) and the total (after the link's).
    pub preview: Preview,
    /// The total before any coupon.
    pub original_total: Money,
    /// Each line's kind, in line order.
    pub kinds: Vec<ProductKind>,
    /// The billing interval of the link's recurring products, if any.
    pub interval: Option<&'static str>,
}

/// Prices `request` against the catalog.
pub(super) fn price_link(request: &NewPaymentLink) -> Result<Priced> {
    let currency = request.currency.unwrap_or_else(CurrencyCode::sar);
    let overflow = |field: String| Error::validation(field, "the total is too large");
    let mut kinds = Vec::with_capacity(request.items.len());
    let mut lines = Vec::with_capacity(request.items.len());
    let mut intervals = Vec::new();
    let mut original_total = Money::from_minor(0, currency);
    for (i, item) in request.items.iter().enumerate() {
        let field = format!("items[{i}].product_id");
        let product = catalog::product(item.product_id.as_str())
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
        intervals.extend(product.interval);
        let mut line = PreviewLine::new(
            i,
            product.id.to_owned(),
            Some(product.name.to_owned()),
            item.quantity.get(),
            unit,
            product.interval.map(str::to_owned),
        )?;
        let mut percent = 0u32;
        for (c, coupon) in item.coupons.iter().enumerate() {
            percent += u32::from(coupon_percent(
                coupon.as_str(),
                &format!("items[{i}].coupons[{c}]"),
            )?);
        }
        line.total = discounted(line.subtotal, percent);
        original_total = original_total
            .checked_add(line.subtotal)
            .ok_or_else(|| overflow("items".into()))?;
        lines.push(line);
    }
    if kinds.contains(&ProductKind::OneTime) && kinds.contains(&ProductKind::Recurring) {
        return Err(Error::validation(
            "items",
            "one-time and recurring products cannot be mixed in one payment link; create one link per kind",
        ));
    }
    if intervals.windows(2).any(|w| w[0] != w[1]) {
        return Err(Error::validation(
            "items",
            "recurring products on one link must share a billing interval",
        ));
    }
    let mut link_percent = 0u32;
    for (c, coupon) in request.coupons.iter().enumerate() {
        link_percent += u32::from(coupon_percent(coupon.as_str(), &format!("coupons[{c}]"))?);
    }
    let mut preview = Preview::summed(currency, lines, false)?;
    preview.total = discounted(preview.total, link_percent);
    Ok(Priced {
        preview,
        original_total,
        kinds,
        interval: intervals.first().copied(),
    })
}
