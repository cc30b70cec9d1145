//! Stripe's answers as our model: a `payment_link` as a [`PaymentLink`] (its total, item count
//! and interval from its line items), a line `item` as a [`LineItem`], a `product` with its
//! default price as a [`Product`], a price as far as a create needs it ([`PriceFacts`]), and one
//! page of a listing within its byte cap, continued after the last id returned.
//!
//! Read tolerantly (see [`super::super::tolerant`]): only a link without an id is an error, an
//! entry that cannot be read is skipped, an amount that cannot be read is null. It must not send
//! anything or decide what a failure means.

use serde::Serialize;
use serde_json::Value;

use super::request::{DESCRIPTION_KEY, NAME_KEY, PriceFacts};
use crate::backend::preview::{Preview, PreviewLine};
use crate::backend::prices::{one_per_currency, unit_from_subtotal};
use crate::backend::request::NewPaymentLink;
use crate::backend::rest::no_link_id;
use crate::backend::tolerant::{Obj, known_currency};
use crate::domain::{CurrencyCode, Cursor, Money, PageBytes, PageLimit};
use crate::error::{Error, Result};
use crate::model::{
    BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product, ProductKind, visible_metadata,
};

/// A Stripe `price` as [`PriceFacts`]; `None` without an id.
pub(super) fn price_facts(v: &Value) -> Option<PriceFacts> {
    let o = Obj(v);
    let currency = o.str("currency").map(str::to_ascii_lowercase);
    let options = o.obj("currency_options").and_then(|m| m.0.as_object());
    let mut units: Vec<(String, i64)> = Vec::new();
    if let (Some(c), Some(minor)) = (&currency, o.i64("unit_amount")) {
        units.push((c.clone(), minor));
    }
    for (code, option) in options.into_iter().flatten() {
        let code = code.to_ascii_lowercase();
        if let Some(minor) = Obj(option).i64("unit_amount")
            && !units.iter().any(|(c, _)| *c == code)
        {
            units.push((code, minor));
        }
    }
    Some(PriceFacts {
        id: o.str("id")?.to_owned(),
        currency,
        options: options
            .map(|m| m.keys().map(|k| k.to_ascii_lowercase()).collect())
            .unwrap_or_default(),
        units,
        name: o
            .obj("product")
            .and_then(|p| p.str("name"))
            .map(str::to_owned),
        interval: interval_of(&o),
        transformed: o.obj("transform_quantity").is_some(),
    })
}

/// The preview of a create selling `prices` (one per item, in order, already checked to share a
/// currency): each line at its price's fixed unit amount in the link's currency. A price without
/// one (tiered, or chosen by the customer) cannot be previewed: it is refused on its item rather
/// than shown with a guessed amount.
pub(super) fn preview_of(request: &NewPaymentLink, prices: &[PriceFacts]) -> Result<Preview> {
    let currency = match request.currency {
        Some(c) => c,
        None => {
            let code = prices
                .iter()
                .find_map(|p| p.currency.as_deref())
                .unwrap_or("");
            known_currency(code).ok_or_else(|| {
                Error::validation(
                    "currency",
                    format!(
                        "the prices are in `{}`, a currency this server does not know; it cannot show their amounts",
                        code.to_ascii_uppercase()
                    ),
                )
            })?
        }
    };
    let want = currency.code().to_ascii_lowercase();
    let mut lines = Vec::with_capacity(prices.len());
    for (i, (item, price)) in request.items.iter().zip(prices).enumerate() {
        if price.transformed {
            return Err(Error::validation(
                format!("items[{i}].product_id"),
                format!(
                    "Stripe price {} bills a transformed quantity (transform_quantity: the quantity is divided and rounded first): its total cannot be shown as quantity × unit price for confirmation or checked against the spend caps; sell a price without it",
                    price.id
                ),
            ));
        }
        let unit = price
            .units
            .iter()
            .find(|(c, _)| *c == want)
            .map(|(_, minor)| Money::from_minor(*minor, currency))
            .ok_or_else(|| {
                Error::validation(
                    format!("items[{i}].product_id"),
                    format!(
                        "Stripe price {} has no fixed unit amount in {currency} (a tiered or customer-chosen price): its total cannot be shown for confirmation or checked against the spend caps; sell a price with a fixed amount",
                        price.id
                    ),
                )
            })?;
        lines.push(PreviewLine::new(
            i,
            price.id.clone(),
            price.name.clone(),
            item.quantity.get(),
            unit,
            price.interval.clone(),
        )?);
    }
    Preview::summed(currency, lines, false)
}

fn money(minor: Option<i64>, currency: Option<CurrencyCode>) -> Option<Money> {
    Some(Money::from_minor(minor?, currency?))
}

/// A Stripe `payment_link` as our [`PaymentLink`], without what only its line items tell (total,
/// item count, interval). Only a missing `id` is an error.
pub fn link_from_stripe(v: &Value, key_is_live: bool) -> Result<PaymentLink> {
    let o = Obj(v);
    let id = o.str("id").ok_or_else(|| no_link_id("Stripe"))?;
    let raw_currency = o.str("currency");
    let metadata = o.obj("metadata");
    let meta_str = |k: &str| metadata.and_then(|m| m.str(k)).map(str::to_owned);
    Ok(PaymentLink {
        id: id.to_owned(),
        url: o.str("url").map(str::to_owned),
        name: meta_str(NAME_KEY),
        description: meta_str(DESCRIPTION_KEY),
        status: o.bool("active").map(|a| {
            if a {
                LinkStatus::Active
            } else {
                LinkStatus::Inactive
            }
        }),
        currency: raw_currency.map(|c| match known_currency(c) {
            Some(code) => code.code().to_owned(),
            None => c.to_ascii_uppercase(),
        }),
        total: None,
        original_total: None,
        // Stripe keeps payments on checkout sessions, not on the link.
        amount_collected: None,
        item_count: None,
        max_number_of_payments: o
            .obj("restrictions")
            .and_then(|r| r.obj("completed_sessions"))
            .and_then(|c| c.i64("limit"))
            .and_then(|l| u32::try_from(l).ok()),
        valid_until: None,
        success_redirect_url: o
            .obj("after_completion")
            .and_then(|a| a.obj("redirect"))
            .and_then(|r| r.str("url"))
            .map(str::to_owned),
        failure_redirect_url: None,
        recurring_interval: None,
        inactive_message: o.str("inactive_message").map(str::to_owned),
        // Stripe's payment link object has no creation time.
        created_at: None,
        metadata: metadata
            .and_then(|m| m.0.as_object())
            .map(|m| visible_metadata(m.iter()))
            .unwrap_or_default(),
        backend: BackendKind::Stripe,
        livemode: o.bool("livemode").unwrap_or(key_is_live),
    })
}

/// Sets total, original total, item count and interval from a link's line items. A total is
/// only given when every item has an amount in the link's currency and the list is complete: a
/// partial sum would be a wrong amount, and null is honest.
pub fn apply_line_items(link: &mut PaymentLink, items: &[Value], complete: bool) {
    let currency = link.currency.as_deref().and_then(known_currency);
    let sum = |key: &str| -> Option<i64> {
        if !complete {
            return None;
        }
        items.iter().try_fold(0i64, |acc, item| {
            let o = Obj(item);
            let same_currency = o.str("currency").is_none_or(|c| {
                currency.is_some_and(|link_c| c.eq_ignore_ascii_case(link_c.code()))
            });
            if !same_currency {
                return None;
            }
            acc.checked_add(o.i64(key)?)
        })
    };
    link.total = money(sum("amount_total"), currency).map(Money::view);
    link.original_total = money(sum("amount_subtotal"), currency).map(Money::view);
    link.item_count = if complete {
        u32::try_from(items.len()).ok()
    } else {
        None
    };
    link.recurring_interval = items.iter().find_map(|i| {
        Obj(i)
            .obj("price")
            .and_then(|p| p.obj("recurring"))
            .and_then(|r| r.str("interval"))
            .map(str::to_ascii_lowercase)
    });
}

fn kind_of(price: &Obj<'_>) -> Option<ProductKind> {
    match price.str("type")? {
        "one_time" => Some(ProductKind::OneTime),
        "recurring" => Some(ProductKind::Recurring),
        _ => None,
    }
}

fn interval_of(price: &Obj<'_>) -> Option<String> {
    price
        .obj("recurring")
        .and_then(|r| r.str("interval"))
        .map(str::to_ascii_lowercase)
}

/// The unit price of `price` in `currency`: its own amount, or its currency option's.
fn unit_amount_in(price: &Obj<'_>, currency: CurrencyCode) -> Option<Money> {
    let own = price
        .str("currency")
        .is_some_and(|c| c.eq_ignore_ascii_case(currency.code()));
    let minor = if own {
        price.i64("unit_amount")
    } else {
        price
            .obj("currency_options")
            .and_then(|opts| {
                opts.0.as_object().and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(currency.code()))
                        .map(|(_, v)| Obj(v))
                })
            })
            .and_then(|opt| opt.i64("unit_amount"))
    };
    minor.map(|m| Money::from_minor(m, currency))
}

/// A Stripe line `item` as our [`LineItem`]; an item without an id is skipped (it could not be
/// paged to).
pub fn line_item_from_stripe(v: &Value, link_currency: Option<CurrencyCode>) -> Option<LineItem> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    let price = o.obj("price");
    let currency = o
        .currency("currency")
        .or_else(|| price.and_then(|p| p.currency("currency")))
        .or(link_currency);
    // Unreadable stays unknown (null), never 1: see `LineItem::quantity`.
    let quantity = o.count("quantity");
    let unit = currency
        .and_then(|c| price.and_then(|p| unit_amount_in(&p, c)))
        // Tiered or converted prices: the unit is the subtotal over the quantity, when exact.
        .or_else(|| unit_from_subtotal(money(o.i64("amount_subtotal"), currency), quantity));
    let product = price.and_then(|p| p.get("product"));
    Some(LineItem {
        id,
        product_id: price
            .and_then(|p| p.str("id"))
            .or_else(|| match product {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(p @ Value::Object(_)) => Obj(p).str("id"),
                _ => None,
            })
            .map(str::to_owned),
        product_name: o
            .str("description")
            .or_else(|| product.and_then(|p| Obj(p).str("name")))
            .or_else(|| price.and_then(|p| p.str("nickname")))
            .map(str::to_owned),
        quantity,
        unit_amount: unit.map(Money::view),
        total: money(o.i64("amount_total"), currency).map(Money::view),
        kind: price.as_ref().and_then(kind_of),
        interval: price.as_ref().and_then(interval_of),
    })
}

/// A Stripe `product` (with `default_price` expanded) as our [`Product`]: its default price in
/// its own currency first, then in each currency option; currencies we do not know are left out.
pub fn product_from_stripe(v: &Value) -> Option<Product> {
    let o = Obj(v);
    let id = o.str("id")?.to_owned();
    let price = o.obj("default_price");
    let mut prices: Vec<Money> = Vec::new();
    if let Some(p) = &price {
        prices.extend(money(p.i64("unit_amount"), p.currency("currency")));
        if let Some(opts) = p.obj("currency_options").and_then(|m| m.0.as_object()) {
            prices.extend(opts.iter().filter_map(|(code, opt)| {
                money(Obj(opt).i64("unit_amount"), known_currency(code))
            }));
        }
    }
    Some(Product {
        id,
        name: o.str("name").map(str::to_owned),
        description: o.str("description").map(str::to_owned),
        kind: price.as_ref().and_then(kind_of),
        interval: price.as_ref().and_then(interval_of),
        prices: one_per_currency(prices)
            .into_iter()
            .map(Money::view)
            .collect(),
    })
}

/// The line items of one page of `/v1/payment_links/{id}/line_items`, and whether more follow.
pub(super) fn line_items_page(root: &Value) -> (Vec<LineItem>, bool) {
    let root = Obj(root);
    let data = root
        .array("data")
        .iter()
        .filter_map(|i| line_item_from_stripe(i, None))
        .collect();
    (data, root.bool("has_more").unwrap_or(false))
}

/// A page of a Stripe listing, within the byte cap. Stripe pages by the last id seen, so a page
/// cut by the byte cap continues exactly after the last entry returned.
pub(super) fn stripe_page<T: Serialize>(
    root: &Obj<'_>,
    limit: PageLimit,
    max_bytes: PageBytes,
    parse: impl Fn(&Value) -> Option<T>,
) -> Page<T> {
    let raw = root.array("data");
    // Each entry with Stripe's own id for it: what `starting_after` continues after.
    let parsed: Vec<(Option<&str>, T)> = raw
        .iter()
        .filter_map(|v| parse(v).map(|t| (Obj(v).str("id"), t)))
        .collect();
    let fit = max_bytes.fit(parsed.iter().map(|(_, t)| t), parsed.len());
    let (has_more, last) = if fit.cut {
        (
            true,
            parsed
                .get(fit.count.wrapping_sub(1))
                .and_then(|(id, _)| *id),
        )
    } else {
        (
            root.bool("has_more").unwrap_or(false),
            raw.last().and_then(|v| Obj(v).str("id")),
        )
    };
    Page {
        has_more,
        next_cursor: next_cursor(has_more, last, limit),
        data: parsed.into_iter().take(fit.count).map(|(_, t)| t).collect(),
    }
}

fn next_cursor(has_more: bool, last_id: Option<&str>, limit: PageLimit) -> Option<String> {
    if !has_more {
        return None;
    }
    last_id.map(|id| {
        Cursor::After {
            id: id.to_owned(),
            limit,
        }
        .encode()
    })
}

#[cfg(test)]
mod tests {
    use super::super::request::after_id;
    use super::*;
    use crate::domain::PAGE_ENVELOPE;
    use serde_json::json;

    #[test]
    fn a_page_cut_by_its_byte_cap_continues_after_the_last_id_returned() {
        let entry = |id: &str| serde_json::json!({"id": id, "name": id.repeat(100)});
        let v = serde_json::json!({
            "data": [entry("p1a"), {"no": "id"}, entry("p2b"), entry("p3c")],
            "has_more": false
        });
        let parse = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
        let limit = PageLimit::parse(Some(10), "limit").unwrap();
        let cap = PageBytes::new(PAGE_ENVELOPE + 2 * 303);
        let page = stripe_page(&Obj(&v), limit, cap, parse);
        assert_eq!(page.data.len(), 2);
        assert!(page.has_more, "cut, though Stripe's page was the last");
        assert_eq!(
            Cursor::decode(&page.next_cursor.unwrap(), None).unwrap(),
            Cursor::After {
                id: "p2b".into(),
                limit
            }
        );
        let page = stripe_page(&Obj(&v), limit, PageBytes::new(1 << 20), parse);
        assert_eq!(page.data.len(), 3);
        assert!(!page.has_more && page.next_cursor.is_none());
    }

    #[test]
    fn links_read_tolerantly() {
        let v = json!({
            "id": "plink_1", "object": "payment_link", "active": false, "currency": "jpy",
            "livemode": true, "url": "https://buy.stripe.com/x",
            "inactive_message": "closed",
            "metadata": {"paylink_name": "N", "paylink_request_id": "r", "order": "1"},
            "restrictions": {"completed_sessions": {"count": 0, "limit": 3}},
            "after_completion": {"type": "redirect", "redirect": {"url": "https://x.example"}},
        });
        let mut l = link_from_stripe(&v, false).unwrap();
        assert_eq!(l.name.as_deref(), Some("N"));
        assert_eq!(l.status, Some(LinkStatus::Inactive));
        assert_eq!(l.currency.as_deref(), Some("JPY"));
        assert!(l.livemode, "the object's livemode wins");
        assert_eq!(l.max_number_of_payments, Some(3));
        assert_eq!(l.success_redirect_url.as_deref(), Some("https://x.example"));
        assert_eq!(l.metadata.len(), 1);
        let items = [
            json!({"id": "li_1", "amount_total": 1200, "amount_subtotal": 1200, "currency": "jpy"}),
            json!({"id": "li_2", "amount_total": 300, "amount_subtotal": 400, "currency": "jpy",
                   "price": {"recurring": {"interval": "month"}}}),
        ];
        apply_line_items(&mut l, &items, true);
        let total = l.total.clone().unwrap();
        assert_eq!(serde_json::to_value(total).unwrap()["amount"], "1500");
        assert_eq!(l.item_count, Some(2));
        assert_eq!(l.recurring_interval.as_deref(), Some("month"));
        apply_line_items(&mut l, &items, false);
        assert!(l.total.is_none() && l.item_count.is_none());
        // An item in another currency, or without an amount: no total rather than a wrong one.
        let odd = [json!({"id": "li_3", "amount_total": 5, "currency": "usd"})];
        apply_line_items(&mut l, &odd, true);
        assert!(l.total.is_none());
        let overflow = [
            json!({"id": "a", "amount_total": i64::MAX, "currency": "jpy"}),
            json!({"id": "b", "amount_total": 1, "currency": "jpy"}),
        ];
        apply_line_items(&mut l, &overflow, true);
        assert!(l.total.is_none());

        assert!(link_from_stripe(&json!({"active": true}), false).is_err());
        for junk in [json!(null), json!([1]), json!("x"), json!({"id": 5})] {
            assert!(link_from_stripe(&junk, false).is_err());
        }
        let bare = link_from_stripe(&json!({"id": "plink_2", "currency": "xts"}), false).unwrap();
        assert_eq!(bare.currency.as_deref(), Some("XTS"));
        let mut bare = bare;
        apply_line_items(&mut bare, &[json!({"id": "li", "amount_total": 5})], true);
        assert!(bare.total.is_none(), "an unknown currency has no amounts");
    }

    #[test]
    fn line_items_and_products_read_tolerantly() {
        let item = json!({
            "id": "li_1", "object": "item", "amount_subtotal": 7000, "amount_total": 7000,
            "currency": "kwd", "description": "Dates", "quantity": 2,
            "price": {"id": "price_D", "product": "prod_D", "currency": "kwd", "unit_amount": 3500,
                      "type": "recurring", "recurring": {"interval": "Year"}},
        });
        let li = line_item_from_stripe(&item, None).unwrap();
        assert_eq!(li.product_id.as_deref(), Some("price_D"));
        assert_eq!(li.product_name.as_deref(), Some("Dates"));
        assert_eq!(li.quantity, Some(2));
        assert_eq!(
            serde_json::to_value(li.unit_amount.unwrap()).unwrap(),
            json!({"amount_minor": 3500, "amount": "3.500", "currency": "KWD"})
        );
        assert_eq!(li.kind, Some(ProductKind::Recurring));
        assert_eq!(li.interval.as_deref(), Some("year"));
        // A price in another currency charged through its currency option.
        let converted = json!({"id": "li_2", "amount_subtotal": 900, "amount_total": 900,
            "currency": "eur", "quantity": 3,
            "price": {"id": "price_E", "currency": "usd", "unit_amount": 350}});
        let li = line_item_from_stripe(&converted, None).unwrap();
        assert_eq!(
            serde_json::to_value(li.unit_amount.unwrap()).unwrap()["amount_minor"],
            300
        );
        assert!(line_item_from_stripe(&json!({"amount_total": 1}), None).is_none());
        let weird = line_item_from_stripe(
            &json!({"id": "li", "quantity": -3, "currency": "zzz"}),
            None,
        )
        .unwrap();
        assert_eq!(weird.quantity, None, "-3 is unreadable, not 1");
        assert!(weird.total.is_none() && weird.unit_amount.is_none());

        let product = json!({"id": "prod_1", "name": "Tea", "default_price": {
            "id": "price_1", "currency": "usd", "unit_amount": 450, "type": "one_time",
            "currency_options": {"eur": {"unit_amount": 400}, "usd": {"unit_amount": 450}, "xts": {"unit_amount": 1}}}});
        let p = product_from_stripe(&product).unwrap();
        assert_eq!(p.kind, Some(ProductKind::OneTime));
        let prices = serde_json::to_value(&p.prices).unwrap();
        assert_eq!(
            prices,
            json!([
                {"amount_minor": 450, "amount": "4.50", "currency": "USD"},
                {"amount_minor": 400, "amount": "4.00", "currency": "EUR"}
            ])
        );
        let unexpanded =
            product_from_stripe(&json!({"id": "prod_2", "default_price": "price_2"})).unwrap();
        assert!(unexpanded.prices.is_empty() && unexpanded.kind.is_none());
        assert!(product_from_stripe(&json!({"name": "no id"})).is_none());
    }

    #[test]
    fn an_unreadable_quantity_is_null_and_so_is_the_unit_derived_from_it() {
        // A tiered price has no unit_amount: the unit can only be derived from the quantity.
        let line = |q: Option<Value>| {
            let mut v = json!({"id": "li_1", "currency": "usd", "amount_subtotal": 50_000_000_000i64,
                "amount_total": 50_000_000_000i64, "price": {"id": "price_T", "currency": "usd",
                "billing_scheme": "tiered", "unit_amount": null}});
            if let Some(q) = q {
                v["quantity"] = q;
            }
            v
        };
        let minor = |m: Option<crate::domain::MoneyView>| {
            m.map(|m| {
                serde_json::to_value(m).unwrap()["amount_minor"]
                    .as_i64()
                    .unwrap()
            })
        };
        for (what, q) in [
            ("missing", None),
            ("negative", Some(json!(-3))),
            ("above u32", Some(json!(5_000_000_000u64))),
            ("fraction", Some(json!(2.5))),
            ("word", Some(json!("two"))),
            ("null", Some(Value::Null)),
        ] {
            let item = line_item_from_stripe(&line(q), None).unwrap();
            assert_eq!(item.quantity, None, "{what}");
            assert_eq!(item.unit_amount, None, "{what}: no unit without a quantity");
            assert_eq!(
                minor(item.total),
                Some(50_000_000_000),
                "{what}: the total stays"
            );
        }
        let zero = line_item_from_stripe(&line(Some(json!(0))), None).unwrap();
        assert_eq!((zero.quantity, zero.unit_amount), (Some(0), None));
        for q in [json!(4), json!(4.0), json!("4")] {
            let item = line_item_from_stripe(&line(Some(q.clone())), None).unwrap();
            assert_eq!(item.quantity, Some(4), "{q}");
            assert_eq!(minor(item.unit_amount), Some(12_500_000_000), "{q}");
        }
        // The price's own unit_amount does not depend on the quantity.
        let mut priced = line(Some(json!(-1)));
        priced["price"]["unit_amount"] = json!(700);
        let item = line_item_from_stripe(&priced, None).unwrap();
        assert_eq!((item.quantity, minor(item.unit_amount)), (None, Some(700)));
    }

    #[test]
    fn cursors_must_be_id_cursors() {
        let limit = PageLimit::parse(Some(5), "limit").unwrap();
        let c = next_cursor(true, Some("prod_9"), limit).unwrap();
        let decoded = Cursor::decode(&c, None).unwrap();
        assert_eq!(after_id(Some(&decoded)).unwrap(), Some("prod_9"));
        assert_eq!(next_cursor(false, Some("prod_9"), limit), None);
        assert_eq!(next_cursor(true, None, limit), None);
        let page = Cursor::Page(crate::domain::PageCursor {
            page: 2,
            limit,
            skip: 0,
        });
        assert_eq!(after_id(Some(&page)).unwrap_err().field(), Some("cursor"));
    }
}
