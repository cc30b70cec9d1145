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

const CURSOR_PREFIX: &str = "pg1.";

impl PageCursor {
    pub fn encode(self) -> String {
        let raw = format!("{}.{}", self.page, self.limit.0);
        format!(
            "{CURSOR_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    /// Decodes a cursor and reconciles it with an explicit `limit` argument, if one was given.
    pub fn decode(raw: &str, explicit_limit: Option<PageLimit>) -> Result<Self, Error> {
        let bad = || {
            Error::validation(
                "cursor",
                "is not a cursor this server issued; pass `next_cursor` from the previous answer unchanged, or omit it to start from the beginning",
            )
        };
        let body = raw.trim().strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let (page, limit) = text.split_once('.').ok_or_else(bad)?;
        let page: u32 = page.parse().map_err(|_| bad())?;
        let limit: u8 = limit.parse().map_err(|_| bad())?;
        if page == 0 || limit == 0 || limit > PageLimit::MAX {
            return Err(bad());
        }
        let limit = PageLimit(limit);
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
        Ok(PageCursor { page, limit })
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
    fn cursor_round_trips() {
        let c = PageCursor {
            page: 3,
            limit: PageLimit(25),
        };
        assert_eq!(PageCursor::decode(&c.encode(), None).unwrap(), c);
        assert_eq!(
            PageCursor::decode(&c.encode(), Some(PageLimit(25))).unwrap(),
            c
        );
    }

    #[test]
    fn cursor_with_another_limit_is_refused_on_limit() {
        let c = PageCursor {
            page: 2,
            limit: PageLimit(5),
        };
        let e = PageCursor::decode(&c.encode(), Some(PageLimit(10))).unwrap_err();
        assert_eq!(e.field(), Some("limit"));
    }

    #[test]
    fn forged_cursors_are_refused_on_cursor() {
        for bad in [
            "",
            "abc",
            "pg1.",
            "pg1.!!!",
            "pg1.MC4xMA",
            "pg1.MS4w",
            "pg1.MS4xMDE",
        ] {
            assert_eq!(
                PageCursor::decode(bad, None).unwrap_err().field(),
                Some("cursor"),
                "{bad}"
            );
        }
    }
}
