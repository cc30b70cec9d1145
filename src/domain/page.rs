//! Pagination inputs shared by every list tool.

use base64::Engine;

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

/// A position in a paged upstream listing, handed to callers as an opaque `next_cursor`.
///
/// It carries the page size it was made with, because an upstream page number only means
/// something together with its page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// 1-based page number.
    pub page: u32,
    pub limit: PageLimit,
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
            Cursor::Page(p) => {
                format!("{PAGE_PREFIX}{}", b64(&format!("{}.{}", p.page, p.limit.0)))
            }
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
            let limit: i64 = rest.parse().map_err(|_| bad_cursor())?;
            let limit = PageLimit::parse(Some(limit), "cursor").map_err(|_| bad_cursor())?;
            if page == 0 || rest.is_empty() {
                return Err(bad_cursor());
            }
            Cursor::Page(PageCursor { page, limit })
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
            None => Ok(PageCursor { page: 1, limit }),
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
        })
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
        });
        assert_eq!(Cursor::decode(&c.encode(), None).unwrap(), c);
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
}
