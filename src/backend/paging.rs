//! Paging rules shared by the backends: line items paged by item id (a complete list, or a page an
//! upstream answered, cut to its byte cap), and page-numbered listings (Stream's pages, the
//! sandbox's) cut to their byte cap with a cursor that continues in the same page.
//!
//! It owns where a page ends and what its cursor says; it must not fetch anything or know an
//! upstream's answer shape.

use serde::Serialize;

use super::request::LineItemsQuery;
use crate::domain::{PageBytes, PageCursor};
use crate::error::{Error, Result};
use crate::model::{LineItem, Page};

/// Pages a complete, ordered list of line items by item id: the rule shared by every backend
/// that has no line-item endpoint of its own (Stream, the sandbox).
pub(crate) fn page_by_item_id(
    items: Vec<LineItem>,
    query: &LineItemsQuery,
) -> Result<Page<LineItem>> {
    let position = |id: &str, field: &str| {
        items.iter().position(|i| i.id == id).ok_or_else(|| {
            Error::validation(
                field,
                format!(
                    "no line item `{id}` on payment link {}",
                    query.payment_link_id
                ),
            )
        })
    };
    let limit = query.limit.get();
    let (start, end) = match (&query.starting_after, &query.ending_before) {
        (Some(_), Some(_)) => {
            return Err(Error::validation(
                "ending_before",
                "pass either starting_after or ending_before, not both",
            ));
        }
        (Some(after), None) => {
            let start = position(after, "starting_after")? + 1;
            (start, start.saturating_add(limit).min(items.len()))
        }
        (None, Some(before)) => {
            let end = position(before, "ending_before")?;
            (end.saturating_sub(limit), end)
        }
        (None, None) => (0, limit.min(items.len())),
    };
    let backwards = query.ending_before.is_some();
    let window = &items[start..end];
    // `has_more` looks in the direction of travel, as Stripe's does.
    let (start, end, has_more) = if backwards {
        // Walking backwards, the entries nearest `ending_before` are the page: a cut drops the
        // earliest ones, which the next backward call returns.
        let fit = query.max_bytes.fit(window.iter().rev(), window.len());
        (end - fit.count, end, start > 0 || fit.cut)
    } else {
        let fit = query.max_bytes.fit(window, window.len());
        (start, start + fit.count, end < items.len() || fit.cut)
    };
    let data: Vec<LineItem> = items.into_iter().skip(start).take(end - start).collect();
    Ok(Page::of_items(data, has_more, backwards))
}

/// Cuts a page of line items read from an upstream to its byte cap (see [`PageBytes`]): keeps
/// the first entries walking forwards, the last ones walking backwards (those nearest
/// `ending_before`), and says `has_more` when it cut.
pub(crate) fn cap_line_items(
    mut data: Vec<LineItem>,
    has_more: bool,
    query: &LineItemsQuery,
) -> Page<LineItem> {
    let backwards = query.ending_before.is_some();
    let fit = if backwards {
        query.max_bytes.fit(data.iter().rev(), data.len())
    } else {
        query.max_bytes.fit(&data, data.len())
    };
    if backwards {
        data.drain(..data.len() - fit.count);
    } else {
        data.truncate(fit.count);
    }
    Page::of_items(data, has_more || fit.cut, backwards)
}

/// One page of a page-numbered listing (Stream's pages, the sandbox's) at `cursor`, within the
/// byte cap.
///
/// `entries` are the readable entries of the cursor's page from `cursor.skip` on, each with its
/// position in that page (positions skip the entries that could not be read); `more_pages` says
/// whether a page follows this one.
///
/// A page-numbered upstream cannot be told where a page cut by the byte cap continues: the cursor
/// names the same page and how many of its entries were already returned (`skip`), and the next
/// call reads that page again and goes on after them. That is exact while the listing does not
/// change between the two calls — the guarantee page numbers give anyway (a link created
/// meanwhile shifts a newest-first listing by one, cut or not).
pub(crate) fn page_numbered<T: Serialize>(
    entries: Vec<(usize, T)>,
    cursor: PageCursor,
    max_bytes: PageBytes,
    more_pages: bool,
) -> Page<T> {
    let fit = max_bytes.fit(entries.iter().map(|(_, t)| t), entries.len());
    let next = match entries.get(fit.count.wrapping_sub(1)) {
        Some((last, _)) if fit.cut => Some(cursor.at(last + 1)),
        _ => more_pages.then(|| cursor.next()),
    };
    Page {
        data: entries
            .into_iter()
            .take(fit.count)
            .map(|(_, t)| t)
            .collect(),
        has_more: next.is_some(),
        next_cursor: next.map(|c| c.encode()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IdFormat, PAGE_ENVELOPE, json_len};
    use crate::domain::{PageLimit, PaymentLinkId};

    fn items(n: usize) -> Vec<LineItem> {
        (0..n)
            .map(|i| LineItem {
                id: format!("li_{i}"),
                product_id: None,
                product_name: Some("x".repeat(200)),
                quantity: Some(1),
                unit_amount: None,
                total: None,
                kind: None,
                interval: None,
            })
            .collect()
    }

    fn query(after: Option<&str>, before: Option<&str>, per_page: usize) -> LineItemsQuery {
        let each = json_len(&items(1)[0]) + 1;
        LineItemsQuery {
            payment_link_id: PaymentLinkId::parse(
                "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f",
                "id",
                IdFormat::Uuid,
            )
            .unwrap(),
            limit: PageLimit::parse(Some(10), "limit").unwrap(),
            max_bytes: PageBytes::new(PAGE_ENVELOPE + per_page * each),
            starting_after: after.map(str::to_owned),
            ending_before: before.map(str::to_owned),
        }
    }

    fn ids(page: &Page<LineItem>) -> Vec<&str> {
        page.data.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn line_item_pages_stop_at_their_byte_cap_in_the_direction_of_travel() {
        let page = page_by_item_id(items(5), &query(None, None, 2)).unwrap();
        assert_eq!(ids(&page), ["li_0", "li_1"]);
        assert!(page.has_more);
        assert_eq!(page.next_cursor.as_deref(), Some("li_1"));
        let page = page_by_item_id(items(5), &query(Some("li_1"), None, 2)).unwrap();
        assert_eq!(ids(&page), ["li_2", "li_3"]);
        let page = page_by_item_id(items(5), &query(Some("li_3"), None, 2)).unwrap();
        assert_eq!(ids(&page), ["li_4"]);
        assert!(!page.has_more);
        // Backwards, the items nearest `ending_before` are kept; earlier ones follow.
        let page = page_by_item_id(items(5), &query(None, Some("li_4"), 2)).unwrap();
        assert_eq!(ids(&page), ["li_2", "li_3"]);
        assert!(page.has_more);
        // The same rule for a page an upstream answered (Stripe).
        let page = cap_line_items(items(3), false, &query(None, Some("li_9"), 2));
        assert_eq!(ids(&page), ["li_1", "li_2"]);
        assert!(page.has_more);
        let page = cap_line_items(items(3), false, &query(None, None, 2));
        assert_eq!(ids(&page), ["li_0", "li_1"]);
        assert!(page.has_more);
        assert_eq!(page.next_cursor.as_deref(), Some("li_1"));
        let page = cap_line_items(items(3), false, &query(None, None, 5));
        assert_eq!(ids(&page).len(), 3);
        assert!(!page.has_more);
    }
}
