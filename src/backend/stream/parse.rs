//! Stream's answers as our model: a `PaymentLinkDetailed` as a [`PaymentLink`], its items as
//! [`LineItem`]s, a `ProductDto` as a [`Product`], and one page of a listing within its byte cap.
//!
//! Read tolerantly (see [`super::super::tolerant`]): only a link without an id is an error, an
//! entry that cannot be read is skipped, an amount that cannot be read is null. It must not send
//! anything or decide what a failure means.

use serde::Serialize;
use serde_json::Value;

use crate::backend::paging::page_numbered;
use crate::backend::preview::PreviewLine;
use crate::backend::prices::{one_per_currency, unit_from_subtotal};
use crate::backend::rest::no_link_id;
use crate::backend::tolerant::Obj;
use crate::domain::{CurrencyCode, Money, PageBytes, PageCursor};
use crate::error::{Error, Result};
use crate::model::{
    BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product, ProductKind, REQUEST_REF_KEY,
    visible_metadata,
};

/// An amount in `currency`, from the integer minor-unit field or else the decimal one.
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
    let id = o.str("id").ok_or_else(|| no_link_id("Stream"))?;
    let currency = o.currency("currency");
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

/// The items of a `PaymentLinkDetailed`, in order; items without an id are skipped.
pub(super) fn line_items_of(link: &Value) -> Vec<LineItem> {
    let link = Obj(link);
    let currency = link.currency("currency");
    link.array("items")
        .iter()
        .filter_map(|i| line_item_from_stream(i, currency))
        .collect()
}

/// A `PaymentLinkItemDto` as our [`LineItem`]; an item without an id is skipped (it could not
/// be paged to).
pub fn line_item_from_stream(v: &Value, link_currency: Option<CurrencyCode>) -> Option<LineItem> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    // Unreadable stays unknown: reading it as 1 made the line's total look like its unit price.
    let quantity = o.count("quantity");
    let currency = o.currency("currency").or(link_currency);
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
            );
            unit_from_subtotal(original, quantity)
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

/// A product's active prices (`prices[]`).
fn active_prices<'a>(p: &Obj<'a>) -> impl Iterator<Item = Obj<'a>> {
    p.array("prices")
        .iter()
        .map(Obj)
        .filter(|pr| pr.bool("is_active") != Some(false))
}

/// The product's price in `currency`, from its `prices[]` or its default price.
fn product_price(p: &Obj<'_>, currency: Option<CurrencyCode>) -> Option<Money> {
    let currency = currency?;
    active_prices(p)
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

/// True when the product's price in `currency` is set exclusive of VAT and is not VAT-exempt:
/// its `amount` is then before VAT, and Stream's API description does not say how the VAT a link
/// adds is computed or rounded (per unit or per line), so its total cannot be known exactly.
fn vat_added(p: &Obj<'_>, currency: CurrencyCode) -> bool {
    active_prices(p)
        .find(|pr| {
            pr.str("currency")
                .is_some_and(|c| c.eq_ignore_ascii_case(currency.code()))
        })
        .is_some_and(|pr| {
            pr.bool("is_price_inclusive_of_vat") == Some(false)
                && pr.bool("is_price_exempt_from_vat") != Some(true)
        })
}

/// One line of a create's preview, from the `ProductDto` of its product: the unit price is the
/// product's price in `currency` as Stream lists it (the price with VAT, which is what a link
/// charges). A product without a price in the currency is refused on `items[index].product_id`,
/// as Stream would refuse the create; so is a price set exclusive of VAT (see [`vat_added`]),
/// rather than shown below what the link would charge.
pub(super) fn preview_line(
    index: usize,
    product: &Value,
    sells: &str,
    quantity: u32,
    currency: CurrencyCode,
) -> Result<(PreviewLine, Option<ProductKind>)> {
    let p = Obj(product);
    let name = p.str("name").map(str::to_owned);
    if vat_added(&p, currency) {
        return Err(Error::validation(
            format!("items[{index}].product_id"),
            format!(
                "product {}'s price in {currency} is set exclusive of VAT: Stream adds VAT to it, and this server cannot tell the exact total Stream will charge, so it cannot be shown for confirmation or checked against the spend caps. Nothing was sent. Sell a product whose price includes VAT (or is VAT-exempt)",
                name.as_deref().unwrap_or(sells)
            ),
        ));
    }
    let unit = product_price(&p, Some(currency)).ok_or_else(|| {
        let have: Vec<String> = product_from_stream(product)
            .map(|pr| pr.prices.into_iter().map(|m| m.currency).collect())
            .unwrap_or_default();
        Error::validation(
            format!("items[{index}].product_id"),
            format!(
                "product {} has no price in {currency}{}",
                name.as_deref().unwrap_or(sells),
                if have.is_empty() {
                    String::new()
                } else {
                    format!("; it is priced in {}", have.join(", "))
                }
            ),
        )
    })?;
    let line = PreviewLine::new(
        index,
        sells.to_owned(),
        name,
        quantity,
        unit,
        p.str("recurring_interval").map(str::to_ascii_lowercase),
    )?;
    Ok((line, p.str("type").and_then(kind_of)))
}

/// A `ProductDto` as our [`Product`].
pub fn product_from_stream(v: &Value) -> Option<Product> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    let mut prices: Vec<Money> = active_prices(&o)
        .filter_map(|pr| {
            let c = pr.currency("currency")?;
            money(&pr, "amount_in_smallest_unit", "amount", Some(c))
        })
        .collect();
    if prices.is_empty()
        && let Some(c) = o.currency("currency")
        && let Some(m) = money(&o, "price_in_smallest_unit", "price", Some(c))
    {
        prices.push(m);
    }
    Some(Product {
        id,
        name: o.str("name").map(str::to_owned),
        description: o.str("description").map(str::to_owned),
        kind: o.str("type").and_then(kind_of),
        interval: o.str("recurring_interval").map(str::to_ascii_lowercase),
        // The first active price of each currency.
        prices: one_per_currency(prices)
            .into_iter()
            .map(Money::view)
            .collect(),
    })
}

/// Whether Stream says a page follows this one.
fn has_next_page(root: &Obj<'_>) -> bool {
    root.obj("pagination")
        .and_then(|p| p.bool("has_next_page"))
        .unwrap_or(false)
}

/// A page of a Stream listing, within the byte cap: Stream says whether a next page exists;
/// our cursor names it. A page cut by the byte cap continues in the same Stream page (see
/// [`page_numbered`]).
pub(super) fn stream_page<T: Serialize>(
    root: &Obj<'_>,
    cursor: PageCursor,
    max_bytes: PageBytes,
    parse: impl Fn(&Value) -> Option<T>,
) -> Page<T> {
    // Each entry with its position in Stream's page, so that a cut resumes after the last one
    // returned even when entries that cannot be read were skipped.
    let entries: Vec<(usize, T)> = root
        .array("data")
        .iter()
        .enumerate()
        .skip(cursor.skip as usize)
        .filter_map(|(i, v)| parse(v).map(|t| (i, t)))
        .collect();
    page_numbered(entries, cursor, max_bytes, has_next_page(root))
}

/// What recovery finds on one page of the newest links: the link that carries `reference` in its
/// metadata, and whether older pages follow.
pub(super) fn find_reference<'a>(root: &'a Value, reference: &str) -> (Option<&'a Value>, bool) {
    let root = Obj(root);
    let found = root.array("data").iter().find(|l| {
        Obj(l)
            .obj("custom_metadata")
            .and_then(|m| m.str(REQUEST_REF_KEY))
            == Some(reference)
    });
    (found, has_next_page(&root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Cursor, PAGE_ENVELOPE, PageLimit};
    use serde_json::json;

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
