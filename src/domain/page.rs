//! Pagination inputs shared by every list tool: the page size in items ([`PageLimit`]) and in
//! bytes ([`PageBytes`]), and the opaque cursors that say where a list continues.

use base64::Engine;
use serde::Serialize;

use crate::error::Error;

/// How many entries one list call returns: 1 ..= 100, default 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u8);

impl PageLimit {
    pub const DEFAULT: u8 = 10;
    pub const MAX: u8 = 100;

    pub fn parse(raw: Option<i64>, field: &str) -> Result<Self, Error> {
        match raw {
            None => Ok(PageLimit(Self::DEFAULT)),
            Some(n) if (1..=i64::from(Self::MAX)).contains(&n) => Ok(PageLimit(n as u8)),
            Some(n) => Err(Error::validation(
                field,
                format!("must be between 1 and {}, got {n}", Self::MAX),
            )),
        }
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// The most bytes of JSON one page of a list answer may hold (`--max-page-bytes`), so that an
/// answer's size is bounded whatever the entries carry.
///
/// A page stops early, with `has_more: true` and a cursor that continues exactly after the last
/// entry returned, when the next entry would take it past the cap. Its first entry is always
/// returned, however large (otherwise paging would stall on it): so a page is at most
/// `max(cap, one entry + PAGE_ENVELOPE)` bytes. The answer of a tool call carries the page twice
/// (`structuredContent`, and its text copy in `content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBytes(usize);

/// Room kept in a page's byte budget for what surrounds the entries: `{"data":[...],
/// "has_more":..,"next_cursor":..}` with the longest cursor this server issues (an id cursor:
/// a 255-character id, Base64-encoded).
pub(crate) const PAGE_ENVELOPE: usize = 512;

impl PageBytes {
    pub const DEFAULT: usize = 256 * 1024;
    /// The smallest cap accepted: below it, the envelope alone would not fit.
    pub const MIN: usize = 1024;

    pub fn new(bytes: usize) -> Self {
        PageBytes(bytes.max(Self::MIN))
    }

    pub fn get(self) -> usize {
        self.0
    }

    /// How many of `items` (in order, at most `max_items`) fit in this budget: at least one
    /// when there is one. `cut` is true when the budget, not `max_items` or the end of `items`,
    /// ended the page. Measures each entry's JSON without keeping it.
    pub fn fit<'a, T: Serialize + 'a>(
        self,
        items: impl IntoIterator<Item = &'a T>,
        max_items: usize,
    ) -> Fit {
        let mut used = PAGE_ENVELOPE;
        let mut count = 0;
        for item in items.into_iter().take(max_items) {
            // One byte for the comma between entries.
            used = used.saturating_add(json_len(item) + 1);
            if count > 0 && used > self.0 {
                return Fit { count, cut: true };
            }
            count += 1;
        }
        Fit { count, cut: false }
    }
}

impl Default for PageBytes {
    fn default() -> Self {
        PageBytes(Self::DEFAULT)
    }
}

/// How much of a list fits in a page: see [`PageBytes::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub count: usize,
    pub cut: bool,
}

/// The length of `value`'s compact JSON, without building it.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing our own model types into a sink that never fails cannot fail; if it did, the
    // entry counts as too large for any page but a page of its own.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX / 2,
    }
}

/// A position in a paged upstream listing, handed to callers as an opaque `next_cursor`.
///
/// It carries the page size it was made with, because an upstream page number only means
/// something together with its page size; and how many entries of that page were already
/// returned, when a page was cut short by its byte cap ([`PageBytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// 1-based page number.
    pub page: u32,
    pub limit: PageLimit,
    /// Entries of this page already returned: continue after them. Below `limit`.
    pub skip: u32,
}

const PAGE_PREFIX: &str = "pg1.";
const AFTER_PREFIX: &str = "af1.";

/// Where a list continues, handed to callers as an opaque `next_cursor`: a page number for
/// page-based upstreams (Stream, the sandbox), or the last id seen for id-based ones (Stripe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Page(PageCursor),
    After { id: String, limit: PageLimit },
}

fn bad_cursor() -> Error {
    Error::validation(
        "cursor",
        "is not a cursor this server issued; pass `next_cursor` from the previous answer unchanged, or omit it to start from the beginning",
    )
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self {
            // `page.limit`, plus `.skip` only when a page was cut: cursors issued before pages
            // were capped in bytes stay valid, and mean the same.
            Cursor::Page(p) if p.skip == 0 => {
                format!("{PAGE_PREFIX}{}", b64(&format!("{}.{}", p.page, p.limit.0)))
            }
            Cursor::Page(p) => format!(
                "{PAGE_PREFIX}{}",
                b64(&format!("{}.{}.{}", p.page, p.limit.0, p.skip))
            ),
            Cursor::After { id, limit } => {
                format!("{AFTER_PREFIX}{}", b64(&format!("{}.{id}", limit.0)))
            }
        }
    }

    /// Decodes a cursor and reconciles it with an explicit `limit` argument, if one was given.
    pub fn decode(raw: &str, explicit_limit: Option<PageLimit>) -> Result<Self, Error> {
        let raw = raw.trim();
        let (is_page, body) = if let Some(b) = raw.strip_prefix(PAGE_PREFIX) {
            (true, b)
        } else if let Some(b) = raw.strip_prefix(AFTER_PREFIX) {
            (false, b)
        } else {
            return Err(bad_cursor());
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad_cursor())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad_cursor())?;
        let (first, rest) = text.split_once('.').ok_or_else(bad_cursor)?;
        let cursor = if is_page {
            let page: u32 = first.parse().map_err(|_| bad_cursor())?;
            let (limit, skip) = match rest.split_once('.') {
                Some((limit, skip)) => (limit, skip.parse().map_err(|_| bad_cursor())?),
                None => (rest, 0u32),
            };
            let limit: i64 = limit.parse().map_err(|_| bad_cursor())?;
            let limit = PageLimit::parse(Some(limit), "cursor").map_err(|_| bad_cursor())?;
            if page == 0 || rest.is_empty() || skip as usize >= limit.get() {
                return Err(bad_cursor());
            }
            Cursor::Page(PageCursor { page, limit, skip })
        } else {
            let limit: i64 = first.parse().map_err(|_| bad_cursor())?;
            let limit = PageLimit::parse(Some(limit), "cursor").map_err(|_| bad_cursor())?;
            let id = super::ids::parse_item_id(rest, "cursor").map_err(|_| bad_cursor())?;
            if first.is_empty() {
                return Err(bad_cursor());
            }
            Cursor::After { id, limit }
        };
        let limit = cursor.limit();
        if let Some(explicit) = explicit_limit
            && explicit != limit
        {
            return Err(Error::validation(
                "limit",
                format!(
                    "this cursor was issued for limit {}; omit `limit` or pass {} when continuing with it",
                    limit.0, limit.0
                ),
            ));
        }
        Ok(cursor)
    }

    /// Reads a list tool's `limit` and `cursor` arguments together: the page size is the
    /// cursor's when continuing (an explicit, different `limit` is refused), else `limit`, else
    /// the default.
    pub fn resolve(
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<(PageLimit, Option<Cursor>), Error> {
        let explicit = limit
            .map(|l| PageLimit::parse(Some(l), "limit"))
            .transpose()?;
        let cursor = cursor.map(|c| Cursor::decode(c, explicit)).transpose()?;
        let limit = match (&cursor, explicit) {
            (Some(c), _) => c.limit(),
            (None, Some(l)) => l,
            (None, None) => PageLimit(PageLimit::DEFAULT),
        };
        Ok((limit, cursor))
    }

    pub fn limit(&self) -> PageLimit {
        match self {
            Cursor::Page(p) => p.limit,
            Cursor::After { limit, .. } => *limit,
        }
    }

    /// The page to fetch for a page-based backend: the cursor's, or the first one.
    pub fn page_or_first(cursor: Option<&Cursor>, limit: PageLimit) -> Result<PageCursor, Error> {
        match cursor {
            None => Ok(PageCursor {
                page: 1,
                limit,
                skip: 0,
            }),
            Some(Cursor::Page(p)) => Ok(*p),
            Some(Cursor::After { .. }) => Err(bad_cursor()),
        }
    }
}

impl PageCursor {
    /// The cursor of the page after this one.
    pub fn next(self) -> Cursor {
        Cursor::Page(PageCursor {
            page: self.page.saturating_add(1),
            limit: self.limit,
            skip: 0,
        })
    }

    /// Where to continue after `returned` more entries of this page were returned: later in the
    /// same page, or the next page once the whole page was.
    pub fn after(self, returned: usize) -> Cursor {
        self.at((self.skip as usize).saturating_add(returned))
    }

    /// Where to continue at entry `skip` of this page (0-based): in this page, or the next
    /// page once `skip` is past its end.
    pub fn at(self, skip: usize) -> Cursor {
        match u32::try_from(skip) {
            Ok(skip) if (skip as usize) < self.limit.get() => {
                Cursor::Page(PageCursor { skip, ..self })
            }
            _ => self.next(),
        }
    }

    /// Index of this cursor's first entry in the whole listing (0-based).
    pub fn offset(self) -> usize {
        (self.page as usize - 1)
            .saturating_mul(self.limit.get())
            .saturating_add(self.skip as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(PageLimit::parse(None, "limit").unwrap().get(), 10);
        assert_eq!(PageLimit::parse(Some(100), "limit").unwrap().get(), 100);
        for bad in [0, -5, 101, i64::MAX] {
            assert_eq!(
                PageLimit::parse(Some(bad), "limit").unwrap_err().field(),
                Some("limit")
            );
        }
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor::Page(PageCursor {
            page: 3,
            limit: PageLimit(25),
            skip: 0,
        });
        assert_eq!(Cursor::decode(&c.encode(), None).unwrap(), c);
        assert_eq!(
            c.encode(),
            format!("pg1.{}", b64("3.25")),
            "unchanged format"
        );
        let cut = Cursor::Page(PageCursor {
            page: 3,
            limit: PageLimit(25),
            skip: 7,
        });
        assert_eq!(Cursor::decode(&cut.encode(), None).unwrap(), cut);
        assert_eq!(Cursor::decode(&c.encode(), Some(PageLimit(25))).unwrap(), c);
        let a = Cursor::After {
            id: "plink_123".into(),
            limit: PageLimit(7),
        };
        assert_eq!(Cursor::decode(&a.encode(), None).unwrap(), a);
    }

    #[test]
    fn cursor_with_another_limit_is_refused_on_limit() {
        let c = Cursor::Page(PageCursor {
            page: 2,
            limit: PageLimit(5),
            skip: 0,
        });
        let e = Cursor::decode(&c.encode(), Some(PageLimit(10))).unwrap_err();
        assert_eq!(e.field(), Some("limit"));
    }

    #[test]
    fn forged_cursors_are_refused_on_cursor() {
        let forged = [
            String::new(),
            "abc".into(),
            "pg1.".into(),
            "pg1.!!!".into(),
            "af1.".into(),
            "af1.!!".into(),
            format!("pg1.{}", b64("0.10")),
            format!("pg1.{}", b64("1.0")),
            format!("pg1.{}", b64("1.101")),
            format!("pg1.{}", b64("1.")),
            format!("af1.{}", b64("10.a/b")),
            format!("af1.{}", b64(".x")),
            format!("pg1.{}", b64("2.\0")),
            format!("af1.{}", b64("x.id")),
            format!("pg1.{}", b64("1.10.10")),
            format!("pg1.{}", b64("1.10.-1")),
            format!("pg1.{}", b64("1.10.x")),
            format!("pg1.{}", b64("1.10.")),
        ];
        for bad in &forged {
            assert_eq!(
                Cursor::decode(bad, None).unwrap_err().field(),
                Some("cursor"),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_backends_refuse_id_cursors() {
        let a = Cursor::After {
            id: "x".into(),
            limit: PageLimit(7),
        };
        assert!(Cursor::page_or_first(Some(&a), PageLimit(7)).is_err());
        assert_eq!(Cursor::page_or_first(None, PageLimit(7)).unwrap().page, 1);
    }

    #[test]
    fn a_cut_page_continues_in_the_same_page_then_the_next() {
        let p = PageCursor {
            page: 2,
            limit: PageLimit(10),
            skip: 0,
        };
        assert_eq!(p.offset(), 10);
        let Cursor::Page(cut) = p.after(3) else {
            panic!("a page cursor")
        };
        assert_eq!((cut.page, cut.skip, cut.offset()), (2, 3, 13));
        let Cursor::Page(next) = cut.after(7) else {
            panic!("a page cursor")
        };
        assert_eq!((next.page, next.skip, next.offset()), (3, 0, 20));
    }

    #[test]
    fn a_page_fits_its_byte_budget_but_always_holds_one_entry() {
        let items: Vec<String> = (0..10).map(|i| format!("{i}").repeat(300)).collect();
        let each = json_len(&items[0]) + 1;
        assert_eq!(each, 303);
        let budget = PageBytes::new(PAGE_ENVELOPE + 3 * each);
        assert_eq!(
            budget.fit(&items, 100),
            Fit {
                count: 3,
                cut: true
            }
        );
        assert_eq!(
            budget.fit(&items, 2),
            Fit {
                count: 2,
                cut: false
            }
        );
        assert_eq!(
            budget.fit(&items[..3], 100),
            Fit {
                count: 3,
                cut: false
            }
        );
        let huge = vec!["x".repeat(5000)];
        assert_eq!(
            PageBytes::new(0).fit(&huge, 100),
            Fit {
                count: 1,
                cut: false
            },
            "the first entry is always returned"
        );
        assert_eq!(PageBytes::new(0).get(), PageBytes::MIN);
        let none: Vec<String> = Vec::new();
        assert_eq!(
            budget.fit(&none, 100),
            Fit {
                count: 0,
                cut: false
            }
        );
    }
}
