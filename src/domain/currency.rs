//! ISO 4217 currency codes with their real minor-unit exponent.

use std::fmt;

use crate::error::Error;

/// One row of the currency table.
#[derive(Debug, PartialEq, Eq)]
struct CurrencyInfo {
    code: &'static str,
    exponent: u8,
}

// The exponents are ISO 4217's, cross-checked with Stripe's zero- and three-decimal lists.
// Stream's enum (SAR USD EUR GBP AED BHD KWD OMR QAR) is a subset; backends narrow further.
const CURRENCIES: &[CurrencyInfo] = &[
    CurrencyInfo {
        code: "AED",
        exponent: 2,
    },
    CurrencyInfo {
        code: "AUD",
        exponent: 2,
    },
    CurrencyInfo {
        code: "BHD",
        exponent: 3,
    },
    CurrencyInfo {
        code: "BIF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "CAD",
        exponent: 2,
    },
    CurrencyInfo {
        code: "CHF",
        exponent: 2,
    },
    CurrencyInfo {
        code: "CLP",
        exponent: 0,
    },
    CurrencyInfo {
        code: "CNY",
        exponent: 2,
    },
    CurrencyInfo {
        code: "DJF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "DKK",
        exponent: 2,
    },
    CurrencyInfo {
        code: "EGP",
        exponent: 2,
    },
    CurrencyInfo {
        code: "EUR",
        exponent: 2,
    },
    CurrencyInfo {
        code: "GBP",
        exponent: 2,
    },
    CurrencyInfo {
        code: "GNF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "HKD",
        exponent: 2,
    },
    CurrencyInfo {
        code: "INR",
        exponent: 2,
    },
    CurrencyInfo {
        code: "JOD",
        exponent: 3,
    },
    CurrencyInfo {
        code: "JPY",
        exponent: 0,
    },
    CurrencyInfo {
        code: "KMF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "KRW",
        exponent: 0,
    },
    CurrencyInfo {
        code: "KWD",
        exponent: 3,
    },
    CurrencyInfo {
        code: "MGA",
        exponent: 0,
    },
    CurrencyInfo {
        code: "MXN",
        exponent: 2,
    },
    CurrencyInfo {
        code: "NOK",
        exponent: 2,
    },
    CurrencyInfo {
        code: "NZD",
        exponent: 2,
    },
    CurrencyInfo {
        code: "OMR",
        exponent: 3,
    },
    CurrencyInfo {
        code: "PYG",
        exponent: 0,
    },
    CurrencyInfo {
        code: "QAR",
        exponent: 2,
    },
    CurrencyInfo {
        code: "RWF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "SAR",
        exponent: 2,
    },
    CurrencyInfo {
        code: "SEK",
        exponent: 2,
    },
    CurrencyInfo {
        code: "SGD",
        exponent: 2,
    },
    CurrencyInfo {
        code: "TND",
        exponent: 3,
    },
    CurrencyInfo {
        code: "UGX",
        exponent: 0,
    },
    CurrencyInfo {
        code: "USD",
        exponent: 2,
    },
    CurrencyInfo {
        code: "VND",
        exponent: 0,
    },
    CurrencyInfo {
        code: "VUV",
        exponent: 0,
    },
    CurrencyInfo {
        code: "XAF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "XOF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "XPF",
        exponent: 0,
    },
    CurrencyInfo {
        code: "ZAR",
        exponent: 2,
    },
];

/// The currencies Stream (and so the sandbox) accepts on a payment link.
pub(crate) const STREAM_CURRENCIES: &[&str] = &[
    "SAR", "USD", "EUR", "GBP", "AED", "BHD", "KWD", "OMR", "QAR",
];

/// A known ISO 4217 currency. Parsed case-insensitively; always shown upper-case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CurrencyCode(&'static CurrencyInfo);

impl std::hash::Hash for CurrencyInfo {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.code.hash(state);
    }
}

impl CurrencyCode {
    /// Parses a code such as `sar` or `KWD`. `field` names the argument in the error.
    pub fn parse(raw: &str, field: &str) -> Result<Self, Error> {
        let trimmed = raw.trim();
        CURRENCIES
            .iter()
            .find(|c| c.code.eq_ignore_ascii_case(trimmed))
            .map(CurrencyCode)
            .ok_or_else(|| {
                Error::validation(
                    field,
                    format!(
                        "`{}` is not a supported ISO 4217 currency code (e.g. SAR, USD, KWD)",
                        truncate(trimmed, 16)
                    ),
                )
            })
    }

    /// Parses a code and checks it is one of `allowed` (a backend's list).
    pub fn parse_in(raw: &str, field: &str, allowed: &[&str]) -> Result<Self, Error> {
        let code = Self::parse(raw, field)?;
        if allowed.contains(&code.code()) {
            Ok(code)
        } else {
            Err(Error::validation(
                field,
                format!(
                    "{} is not accepted by this backend; use one of {}",
                    code.code(),
                    allowed.join(", ")
                ),
            ))
        }
    }

    /// Saudi riyal, Stream's default currency.
    pub fn sar() -> Self {
        // SAR is in the table above; the lookup cannot fail.
        Self::parse("SAR", "currency").unwrap_or(CurrencyCode(&CURRENCIES[0]))
    }

    /// The upper-case ISO code.
    pub fn code(self) -> &'static str {
        self.0.code
    }

    /// Digits after the decimal point in this currency (SAR 2, KWD 3, JPY 0).
    pub fn exponent(self) -> u8 {
        self.0.exponent
    }
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

impl fmt::Debug for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for CurrencyCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_shows_upper_case() {
        let c = CurrencyCode::parse("kwd", "currency").unwrap();
        assert_eq!(c.code(), "KWD");
        assert_eq!(c.to_string(), "KWD");
        assert_eq!(
            CurrencyCode::parse(" Sar ", "currency").unwrap().code(),
            "SAR"
        );
    }

    #[test]
    fn exponents_are_real() {
        for (code, exp) in [
            ("SAR", 2),
            ("USD", 2),
            ("EUR", 2),
            ("GBP", 2),
            ("AED", 2),
            ("QAR", 2),
            ("BHD", 3),
            ("KWD", 3),
            ("OMR", 3),
            ("JPY", 0),
        ] {
            assert_eq!(
                CurrencyCode::parse(code, "c").unwrap().exponent(),
                exp,
                "{code}"
            );
        }
    }

    #[test]
    fn unknown_code_names_the_field() {
        let e = CurrencyCode::parse("XYZ", "currency").unwrap_err();
        assert_eq!(e.field(), Some("currency"));
        assert!(CurrencyCode::parse("", "currency").is_err());
        assert!(CurrencyCode::parse("SARR", "currency").is_err());
    }

    #[test]
    fn parse_in_narrows_to_a_backend_list() {
        assert!(CurrencyCode::parse_in("usd", "currency", STREAM_CURRENCIES).is_ok());
        let e = CurrencyCode::parse_in("JPY", "currency", STREAM_CURRENCIES).unwrap_err();
        assert!(e.to_string().contains("SAR"));
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in CURRENCIES.windows(2) {
            assert!(pair[0].code < pair[1].code);
        }
        for code in STREAM_CURRENCIES {
            assert!(CurrencyCode::parse(code, "c").is_ok());
        }
    }
}
