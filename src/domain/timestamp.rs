//! When a link stops accepting payments.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::error::Error;

/// A moment strictly in the future. Parsed from RFC 3339; a timestamp without an offset is taken
/// as UTC, as Stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidUntil(DateTime<Utc>);

impl ValidUntil {
    pub fn parse(raw: &str, field: &str, now: DateTime<Utc>) -> Result<Self, Error> {
        let s = raw.trim();
        let at = DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
            })
            .map_err(|_| {
                Error::validation(
                    field,
                    format!(
                        "must be an RFC 3339 timestamp such as 2030-01-31T23:59:00Z, got `{}`",
                        super::currency::truncate(s, 40)
                    ),
                )
            })?;
        if at <= now {
            return Err(Error::validation(
                field,
                format!("must be in the future; {} has passed", at.to_rfc3339()),
            ));
        }
        Ok(ValidUntil(at))
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }

    /// RFC 3339 in UTC with a `Z`, the form sent upstream.
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_offsets_and_normalises_to_utc() {
        let v = ValidUntil::parse("2026-06-01T12:00:00+03:00", "valid_until", now()).unwrap();
        assert_eq!(v.to_rfc3339(), "2026-06-01T09:00:00Z");
    }

    #[test]
    fn no_offset_means_utc() {
        let v = ValidUntil::parse("2026-06-01T12:00:00", "valid_until", now()).unwrap();
        assert_eq!(v.to_rfc3339(), "2026-06-01T12:00:00Z");
        let v = ValidUntil::parse("2026-06-01T12:00:00.5", "valid_until", now()).unwrap();
        assert_eq!(v.to_rfc3339(), "2026-06-01T12:00:00.500Z");
    }

    #[test]
    fn refuses_the_past_and_garbage() {
        let e = ValidUntil::parse("2025-12-31T23:59:59Z", "valid_until", now()).unwrap_err();
        assert_eq!(e.field(), Some("valid_until"));
        assert!(ValidUntil::parse("2026-01-01T00:00:00Z", "valid_until", now()).is_err());
        for bad in ["tomorrow", "2026-06-01", "2026-13-01T00:00:00Z", ""] {
            assert!(
                ValidUntil::parse(bad, "valid_until", now()).is_err(),
                "{bad}"
            );
        }
    }
}
