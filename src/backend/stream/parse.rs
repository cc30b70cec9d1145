//! Stream's answers as our model: a `PaymentLinkDetailed` as a [`PaymentLink`], its items as
//! [`LineItem`]s, a `ProductDto` as a [`Product`], and one page of a listing within its byte cap.
//!
//! Answers are read straight into the tolerant structs below (see [`super::super::tolerant`]),
//! never into a `Value` first: only a link without an id is an error, an entry that cannot be
//! read is skipped, an amount that cannot be read is null. It must not send anything or decide
//! what a failure means.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::backend::paging::page_numbered;
use crate::backend::preview::PreviewLine;
use crate::backend::prices::{one_per_currency, unit_from_subtotal};
use crate::backend::rest::no_link_id;
use crate::backend::tolerant::object::{Metadata, Nested, tolerant_object};
use crate::backend::tolerant::typed::{Count, Decimal, Flag, Int, List, Text};
use crate::domain::{CurrencyCode, Money, PageBytes, PageCursor};
use crate::error::{Error, Result};
use crate::model::{BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product, ProductKind};

tolerant_object! {
    /// One of a product's `prices[]`.
    pub struct StreamPrice<'a> {
        "currency" => currency: Text<'a>,
        "is_active" => is_active: Flag,
        "amount_in_smallest_unit" => minor: Int,
        "amount" => amount: Decimal<'a>,
        "is_price_inclusive_of_vat" => vat_inclusive: Flag,
        "is_price_exempt_from_vat" => vat_exempt: Flag,
    }
}

tolerant_object! {
    /// A `ProductDto` (also nested in a link's items).
    pub struct StreamProduct<'a> {
        "id" => id: Text<'a>,
        "name" => name: Text<'a>,
        "description" => description: Text<'a>,
        "type" => kind: Text<'a>,
        "recurring_interval" => interval: Text<'a>,
        "currency" => currency: Text<'a>,
        "price_in_smallest_unit" => price_minor: Int,
        "price" => price: Decimal<'a>,
        "prices" => prices: List<Nested<StreamPrice<'a>>>,
    }
}

tolerant_object! {
    /// A `PaymentLinkItemDto`.
    pub struct StreamItem<'a> {
        "id" => id: Text<'a>,
        "product_id" => product_id: Text<'a>,
        "quantity" => quantity: Int,
        "currency" => currency: Text<'a>,
        "original_amount_in_smallest_unit" => original_minor: Int,
        "original_amount" => original: Decimal<'a>,
        "discounted_amount_in_smallest_unit" => discounted_minor: Int,
        "discounted_amount" => discounted: Decimal<'a>,
        "product" => product: Nested<StreamProduct<'a>>,
    }
}

tolerant_object! {
    /// A `PaymentLinkDetailed`. `I` is what its `items` are read as: [`Count`] where only their
    /// number is shown, a [`List`] of [`StreamItem`] where the items themselves are.
    pub struct StreamLink<'a, I> {
        "id" => id: Text<'a>,
        "url" => url: Text<'a>,
        "name" => name: Text<'a>,
        "description" => description: Text<'a>,
        "status" => status: Text<'a>,
        "currency" => currency: Text<'a>,
        "amount_in_smallest_unit" => total_minor: Int,
        "amount" => total: Decimal<'a>,
        "original_amount_in_smallest_unit" => original_minor: Int,
        "original_amount" => original: Decimal<'a>,
        "amount_collected_in_smallest_unit" => collected_minor: Int,
        "amount_collected" => collected: Decimal<'a>,
        "items" => items: I,
        "max_number_of_payments" => max_payments: Int,
        "valid_until" => valid_until: Text<'a>,
        "success_redirect_url" => success_url: Text<'a>,
        "failure_redirect_url" => failure_url: Text<'a>,
        "recurring_interval" => interval: Text<'a>,
        "deactivate_message" => inactive_message: Text<'a>,
        "created_at" => created_at: Text<'a>,
        "custom_metadata" => metadata: Metadata<'a>,
    }
}

/// A link whose items are only counted.
pub type CountedLink<'a> = StreamLink<'a, Count>;
/// A link with its items.
pub type ItemizedLink<'a> = StreamLink<'a, List<Nested<StreamItem<'a>>>>;

/// How many items a link's `items` held: `None` when absent (or null), `Some(0)` when it held
/// something other than an array.
pub(super) trait ItemsSeen {
    fn seen(&self) -> Option<usize>;
}

impl ItemsSeen for Count {
    fn seen(&self) -> Option<usize> {
        self.present.then_some(self.len)
    }
}

impl<T> ItemsSeen for List<T> {
    fn seen(&self) -> Option<usize> {
        self.present.then_some(self.items.len())
    }
}

/// One page of a Stream listing: `data[]`, each entry read as `T` (`None` for one that is not
/// an object), and whether a page follows.
#[derive(Debug, Default)]
pub struct StreamPage<T> {
    pub data: List<Nested<T>>,
    pub has_next_page: bool,
}

tolerant_object! {
    /// A listing's `pagination`.
    struct Pagination {
        "has_next_page" => has_next_page: Flag,
    }
}

tolerant_object! {
    struct RawPage<T> {
        "data" => data: T,
        "pagination" => pagination: Nested<Pagination>,
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StreamPage<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawPage::<List<Nested<T>>>::deserialize(d)?;
        Ok(StreamPage {
            data: raw.data,
            has_next_page: raw
                .pagination
                .get()
                .and_then(|p| p.has_next_page.0)
                .unwrap_or(false),
        })
    }
}

/// An amount in `currency`, from the integer minor-unit field or else the decimal one.
fn money(minor: Int, decimal: &Decimal<'_>, currency: Option<CurrencyCode>) -> Option<Money> {
    let currency = currency?;
    if let Some(minor) = minor.0 {
        return Some(Money::from_minor(minor, currency));
    }
    decimal
        .get()
        .and_then(|s| Money::parse_decimal(s, currency).ok())
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
pub(super) fn link_of<I: ItemsSeen>(l: StreamLink<'_, I>, live: bool) -> Result<PaymentLink> {
    let id = l.id.owned().ok_or_else(|| no_link_id("Stream"))?;
    let currency = l.currency.currency();
    Ok(PaymentLink {
        id,
        url: l.url.owned(),
        name: l.name.owned(),
        description: l.description.owned(),
        status: l.status.get().and_then(status_of),
        currency: currency
            .map(|c| c.code().to_owned())
            .or_else(|| l.currency.owned()),
        total: money(l.total_minor, &l.total, currency).map(Money::view),
        original_total: money(l.original_minor, &l.original, currency).map(Money::view),
        amount_collected: money(l.collected_minor, &l.collected, currency).map(Money::view),
        item_count: l.items.seen().map(|n| n as u32),
        max_number_of_payments: l.max_payments.0.and_then(|m| u32::try_from(m).ok()),
        valid_until: l.valid_until.owned(),
        success_redirect_url: l.success_url.owned(),
        failure_redirect_url: l.failure_url.owned(),
        recurring_interval: l.interval.get().map(str::to_ascii_lowercase),
        inactive_message: l.inactive_message.owned(),
        created_at: l.created_at.owned(),
        metadata: l.metadata.visible.unwrap_or_default(),
        backend: BackendKind::Stream,
        livemode: live,
    })
}

/// A `PaymentLinkDetailed` (as a decoded tree) as our [`PaymentLink`]; see [`link_of`].
pub fn link_from_stream(v: &Value, live: bool) -> Result<PaymentLink> {
    link_of(CountedLink::deserialize(v).unwrap_or_default(), live)
}

/// The items of a `PaymentLinkDetailed`, in order; items without an id are skipped.
pub(super) fn line_items_of(link: &ItemizedLink<'_>) -> Vec<LineItem> {
    let currency = link.currency.currency();
    link.items
        .items
        .iter()
        .filter_map(|i| item_of(i.get()?, currency))
        .collect()
}

/// A `PaymentLinkItemDto` as our [`LineItem`]; an item without an id is skipped (it could not
/// be paged to).
pub(super) fn item_of(i: &StreamItem<'_>, link_currency: Option<CurrencyCode>) -> Option<LineItem> {
    let id = i.id.owned()?;
    // Unreadable stays unknown: reading it as 1 made the line's total look like its unit price.
    let quantity = i.quantity.count();
    let currency = i.currency.currency().or(link_currency);
    let product = i.product.get();
    let unit = product
        .and_then(|p| product_price(p, currency))
        .or_else(|| unit_from_subtotal(money(i.original_minor, &i.original, currency), quantity));
    Some(LineItem {
        id,
        product_id: i
            .product_id
            .get()
            .or_else(|| product.and_then(|p| p.id.get()))
            .map(str::to_owned),
        product_name: product.and_then(|p| p.name.owned()),
        quantity,
        unit_amount: unit.map(Money::view),
        total: money(i.discounted_minor, &i.discounted, currency).map(Money::view),
        kind: product.and_then(|p| p.kind.get()).and_then(kind_of),
        interval: product
            .and_then(|p| p.interval.get())
            .map(str::to_ascii_lowercase),
    })
}

/// A `PaymentLinkItemDto` (as a decoded tree) as our [`LineItem`]; see [`item_of`].
pub fn line_item_from_stream(v: &Value, link_currency: Option<CurrencyCode>) -> Option<LineItem> {
    item_of(
        &StreamItem::deserialize(v).unwrap_or_default(),
        link_currency,
    )
}

/// A product's active prices (`prices[]`).
fn active_prices<'p, 'a>(p: &'p StreamProduct<'a>) -> impl Iterator<Item = &'p StreamPrice<'a>> {
    p.prices
        .items
        .iter()
        .filter_map(Nested::get)
        .filter(|pr| pr.is_active.0 != Some(false))
}

/// The product's price in `currency`, from its `prices[]` or its default price.
fn product_price(p: &StreamProduct<'_>, currency: Option<CurrencyCode>) -> Option<Money> {
    let currency = currency?;
    active_prices(p)
        .find(|pr| {
            pr.currency
                .get()
                .is_some_and(|c| c.eq_ignore_ascii_case(currency.code()))
        })
        .and_then(|pr| money(pr.minor, &pr.amount, Some(currency)))
        .or_else(|| {
            p.currency
                .get()
                .filter(|c| c.eq_ignore_ascii_case(currency.code()))
                .and_then(|_| money(p.price_minor, &p.price, Some(currency)))
        })
}

/// True when the product's price in `currency` is set exclusive of VAT and is not VAT-exempt:
/// its `amount` is then before VAT, and Stream's API description does not say how the VAT a link
/// adds is computed or rounded (per unit or per line), so its total cannot be known exactly.
fn vat_added(p: &StreamProduct<'_>, currency: CurrencyCode) -> bool {
    active_prices(p)
        .find(|pr| {
            pr.currency
                .get()
                .is_some_and(|c| c.eq_ignore_ascii_case(currency.code()))
        })
        .is_some_and(|pr| pr.vat_inclusive.0 == Some(false) && pr.vat_exempt.0 != Some(true))
}

/// One line of a create's preview, from the `ProductDto` of its product: the unit price is the
/// product's price in `currency` as Stream lists it (the price with VAT, which is what a link
/// charges). A product without a price in the currency is refused on `items[index].product_id`,
/// as Stream would refuse the create; so is a price set exclusive of VAT (see [`vat_added`]),
/// rather than shown below what the link would charge.
pub(super) fn preview_line(
    index: usize,
    product: &StreamProduct<'_>,
    sells: &str,
    quantity: u32,
    currency: CurrencyCode,
) -> Result<(PreviewLine, Option<ProductKind>)> {
    let name = product.name.owned();
    if vat_added(product, currency) {
        return Err(Error::validation(
            format!("items[{index}].product_id"),
            format!(
                "product {}'s price in {currency} is set exclusive of VAT: Stream adds VAT to it, and this server cannot tell the exact total Stream will charge, so it cannot be shown for confirmation or checked against the spend caps. Nothing was sent. Sell a product whose price includes VAT (or is VAT-exempt)",
                name.as_deref().unwrap_or(sells)
            ),
        ));
    }
    let unit = product_price(product, Some(currency)).ok_or_else(|| {
        let have: Vec<String> = product_of(product)
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
        product.interval.get().map(str::to_ascii_lowercase),
    )?;
    Ok((line, product.kind.get().and_then(kind_of)))
}

/// A `ProductDto` as our [`Product`].
pub(super) fn product_of(p: &StreamProduct<'_>) -> Option<Product> {
    let id = p.id.owned()?;
    let mut prices: Vec<Money> = active_prices(p)
        .filter_map(|pr| {
            let c = pr.currency.currency()?;
            money(pr.minor, &pr.amount, Some(c))
        })
        .collect();
    if prices.is_empty()
        && let Some(c) = p.currency.currency()
        && let Some(m) = money(p.price_minor, &p.price, Some(c))
    {
        prices.push(m);
    }
    Some(Product {
        id,
        name: p.name.owned(),
        description: p.description.owned(),
        kind: p.kind.get().and_then(kind_of),
        interval: p.interval.get().map(str::to_ascii_lowercase),
        // The first active price of each currency.
        prices: one_per_currency(prices)
            .into_iter()
            .map(Money::view)
            .collect(),
    })
}

/// A `ProductDto` (as a decoded tree) as our [`Product`]; see [`product_of`].
pub fn product_from_stream(v: &Value) -> Option<Product> {
    product_of(&StreamProduct::deserialize(v).unwrap_or_default())
}

/// A page of a Stream listing, within the byte cap: Stream says whether a next page exists;
/// our cursor names it. A page cut by the byte cap continues in the same Stream page (see
/// [`page_numbered`]).
pub(super) fn stream_page<D, T: Serialize>(
    page: StreamPage<D>,
    cursor: PageCursor,
    max_bytes: PageBytes,
    parse: impl Fn(D) -> Option<T>,
) -> Page<T> {
    // Each entry with its position in Stream's page, so that a cut resumes after the last one
    // returned even when entries that cannot be read were skipped.
    let entries: Vec<(usize, T)> = page
        .data
        .items
        .into_iter()
        .enumerate()
        .skip(cursor.skip as usize)
        .filter_map(|(i, v)| parse(*v.0?).map(|t| (i, t)))
        .collect();
    page_numbered(entries, cursor, max_bytes, page.has_next_page)
}

/// What recovery finds on one page of the newest links: the link that carries `reference` in its
/// metadata, and whether older pages follow.
pub(super) fn find_reference<'a>(
    page: StreamPage<CountedLink<'a>>,
    reference: &str,
) -> (Option<CountedLink<'a>>, bool) {
    let more = page.has_next_page;
    let found = page
        .data
        .items
        .into_iter()
        .filter_map(|l| l.0)
        .find(|l| l.metadata.reference.as_deref() == Some(reference));
    (found.map(|l| *l), more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Cursor, PAGE_ENVELOPE, PageLimit};
    use serde_json::json;

    fn names(page: &Page<String>) -> Vec<&str> {
        page.data.iter().map(|s| &s[..1]).collect()
    }

    tolerant_object! {
        struct Named<'a> {
            "name" => name: Text<'a>,
        }
    }

    fn read(v: &Value) -> StreamPage<Named<'_>> {
        StreamPage::deserialize(v).unwrap()
    }

    #[test]
    fn a_page_cut_by_its_byte_cap_resumes_in_the_same_stream_page() {
        // Five entries on Stream's page, one of them unreadable (skipped).
        let entry = |c: &str| json!({"name": c.repeat(300)});
        let v = json!({
            "data": [entry("a"), {"name": 7}, entry("b"), entry("c"), entry("d")],
            "pagination": {"has_next_page": true}
        });
        let parse = |n: Named<'_>| n.name.owned();
        let cap = PageBytes::new(PAGE_ENVELOPE + 2 * 303);
        let first = PageCursor {
            page: 4,
            limit: PageLimit::parse(Some(5), "limit").unwrap(),
            skip: 0,
        };
        let page = stream_page(read(&v), first, cap, parse);
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
        let page = stream_page(read(&v), resume, cap, parse);
        assert_eq!(names(&page), ["c", "d"]);
        let Cursor::Page(next) = Cursor::decode(&page.next_cursor.unwrap(), None).unwrap() else {
            panic!("a page cursor")
        };
        assert_eq!((next.page, next.skip), (5, 0));
        // Uncut and last: no cursor.
        let last = json!({"data": [entry("a")], "pagination": {"has_next_page": false}});
        let page = stream_page(read(&last), first, cap, parse);
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
