//! Money as an integer count of minor units plus its currency: never a float.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;

use super::currency::CurrencyCode;

/// An exact amount of money.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: CurrencyCode,
}

/// Why a decimal string could not become [`Money`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyParseError {
    #[error("`{0}` is not a decimal amount")]
    NotDecimal(String),
    #[error("`{amount}` has more than {exponent} decimal places for {currency}")]
    TooPrecise {
        amount: String,
        exponent: u8,
        currency: &'static str,
    },
    #[error("`{0}` is too large")]
    Overflow(String),
}

impl Money {
    pub fn from_minor(minor: i64, currency: CurrencyCode) -> Self {
        Money { minor, currency }
    }

    /// Parses a decimal string such as `"100.50"`, `"1.250"` or `"-3"` exactly, in `currency`'s
    /// exponent. Trailing zeros past the exponent are accepted (`"10.500"` in SAR); any other
    /// extra precision is an error, never a rounding.
    pub fn parse_decimal(raw: &str, currency: CurrencyCode) -> Result<Self, MoneyParseError> {
        let s = raw.trim();
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
            return Err(MoneyParseError::NotDecimal(super::currency::truncate(
                s, 32,
            )));
        }
        let exponent = usize::from(currency.exponent());
        let (kept, extra) = frac.split_at(frac.len().min(exponent));
        if extra.bytes().any(|b| b != b'0') {
            return Err(MoneyParseError::TooPrecise {
                amount: super::currency::truncate(s, 32),
                exponent: currency.exponent(),
                currency: currency.code(),
            });
        }
        let overflow = || MoneyParseError::Overflow(super::currency::truncate(s, 32));
        let mut minor: i64 = 0;
        let padded = kept
            .bytes()
            .chain(std::iter::repeat_n(b'0', exponent - kept.len()));
        for b in whole.bytes().chain(padded) {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or_else(overflow)?;
        }
        Ok(Money {
            minor: if negative { -minor } else { minor },
            currency,
        })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> CurrencyCode {
        self.currency
    }

    /// `self * quantity`, or `None` on overflow.
    pub fn checked_mul(self, quantity: u32) -> Option<Money> {
        self.minor
            .checked_mul(i64::from(quantity))
            .map(|minor| Money { minor, ..self })
    }

    /// `self + other`, or `None` on overflow or a currency mismatch.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        self.minor
            .checked_add(other.minor)
            .map(|minor| Money { minor, ..self })
    }

    /// The decimal string with exactly the currency's exponent: `1.250` KWD, `100.00` SAR, `500` JPY.
    pub fn to_decimal_string(self) -> String {
        let exp = u32::from(self.currency.exponent());
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if exp == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(exp);
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = exp as usize
        )
    }

    /// The wire shape shown to callers.
    pub fn view(self) -> MoneyView {
        MoneyView {
            amount_minor: self.minor,
            amount: self.to_decimal_string(),
            currency: self.currency.code().to_owned(),
        }
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

impl JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        MoneyView::json_schema(generator)
    }
}

/// An exact amount of money. `amount_minor` is the integer count of the currency's smallest unit
/// (halalas for SAR, fils for KWD); `amount` is the same value as a decimal string with the
/// currency's real number of decimals; `currency` is the ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
pub struct MoneyView {
    /// Integer amount in the currency's minor unit, e.g. 12550 for 125.50 SAR or 1250 for 1.250 KWD.
    pub amount_minor: i64,
    /// The amount as an exact decimal string, e.g. "125.50" (SAR) or "1.250" (KWD).
    pub amount: String,
    /// ISO 4217 currency code, upper-case.
    pub currency: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(c: &str) -> CurrencyCode {
        CurrencyCode::parse(c, "c").unwrap()
    }

    #[test]
    fn parses_two_three_and_zero_decimal_currencies_exactly() {
        assert_eq!(
            Money::parse_decimal("100.50", cur("SAR")).unwrap().minor(),
            10050
        );
        assert_eq!(
            Money::parse_decimal("100.5", cur("SAR")).unwrap().minor(),
            10050
        );
        assert_eq!(
            Money::parse_decimal("100", cur("SAR")).unwrap().minor(),
            10000
        );
        assert_eq!(
            Money::parse_decimal("1.250", cur("KWD")).unwrap().minor(),
            1250
        );
        assert_eq!(
            Money::parse_decimal("0.001", cur("KWD")).unwrap().minor(),
            1
        );
        assert_eq!(
            Money::parse_decimal("500", cur("JPY")).unwrap().minor(),
            500
        );
        assert_eq!(Money::parse_decimal(".5", cur("SAR")).unwrap().minor(), 50);
        assert_eq!(
            Money::parse_decimal("-2.00", cur("SAR")).unwrap().minor(),
            -200
        );
        assert_eq!(
            Money::parse_decimal("10.500", cur("SAR")).unwrap().minor(),
            1050
        );
    }

    #[test]
    fn refuses_extra_precision_instead_of_rounding() {
        assert!(matches!(
            Money::parse_decimal("1.005", cur("SAR")),
            Err(MoneyParseError::TooPrecise { .. })
        ));
        assert!(Money::parse_decimal("1.5", cur("JPY")).is_err());
    }

    #[test]
    fn refuses_garbage_and_overflow() {
        for bad in ["", ".", "abc", "1.2.3", "1e5", "--1", "1,00", " - 1"] {
            assert!(Money::parse_decimal(bad, cur("SAR")).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Money::parse_decimal("99999999999999999999", cur("SAR")),
            Err(MoneyParseError::Overflow(_))
        ));
    }

    #[test]
    fn formats_with_the_real_exponent() {
        assert_eq!(
            Money::from_minor(10050, cur("SAR")).to_decimal_string(),
            "100.50"
        );
        assert_eq!(Money::from_minor(5, cur("SAR")).to_decimal_string(), "0.05");
        assert_eq!(
            Money::from_minor(1250, cur("KWD")).to_decimal_string(),
            "1.250"
        );
        assert_eq!(
            Money::from_minor(500, cur("JPY")).to_decimal_string(),
            "500"
        );
        assert_eq!(
            Money::from_minor(-5, cur("SAR")).to_decimal_string(),
            "-0.05"
        );
        assert_eq!(
            Money::from_minor(i64::MIN, cur("SAR")).to_decimal_string(),
            "-92233720368547758.08"
        );
    }

    #[test]
    fn round_trips_through_the_decimal_string() {
        for minor in [0, 1, 99, 100, 12345, 9_999_999] {
            for c in ["SAR", "KWD", "JPY"] {
                let m = Money::from_minor(minor, cur(c));
                assert_eq!(
                    Money::parse_decimal(&m.to_decimal_string(), cur(c)).unwrap(),
                    m
                );
            }
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let m = Money::from_minor(i64::MAX / 2 + 1, cur("SAR"));
        assert!(m.checked_mul(2).is_none());
        assert!(m.checked_add(m).is_none());
        assert!(
            Money::from_minor(1, cur("SAR"))
                .checked_add(Money::from_minor(1, cur("USD")))
                .is_none()
        );
        assert_eq!(
            Money::from_minor(250, cur("SAR"))
                .checked_mul(3)
                .unwrap()
                .minor(),
            750
        );
    }

    #[test]
    fn serializes_as_the_three_field_view() {
        let v = serde_json::to_value(Money::from_minor(1250, cur("KWD"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"amount_minor": 1250, "amount": "1.250", "currency": "KWD"})
        );
    }
}
