//! The operator's caps: at most one per link and one daily budget per currency, each parsed
//! exactly in its currency's exponent. It must not count anything (see `ledger`).

use crate::domain::{CurrencyCode, Money};

/// One cap as the operator wrote it (`SAR:5000`, `KWD:250.500`): the currency and the amount,
/// exact. More decimals than the currency has, a sign, or an unknown currency are refused with
/// the reason.
pub(crate) fn parse_cap(raw: &str) -> Result<Money, String> {
    let raw = raw.trim();
    let (code, amount) = raw
        .split_once(':')
        .ok_or_else(|| format!("`{raw}` is not CUR:AMOUNT (e.g. SAR:5000 or KWD:250.500)"))?;
    let currency = CurrencyCode::parse(code, "currency")
        .map_err(|_| format!("`{}` is not an ISO 4217 currency code", code.trim()))?;
    let amount = amount.trim();
    if amount.starts_with(['-', '+']) {
        return Err(format!("`{raw}`: a cap is a plain amount, without a sign"));
    }
    if let Some((_, decimals)) = amount.split_once('.')
        && decimals.len() > usize::from(currency.exponent())
    {
        return Err(format!(
            "`{raw}` has {} decimals; {} has {}",
            decimals.len(),
            currency.code(),
            currency.exponent()
        ));
    }
    Money::parse_decimal(amount, currency).map_err(|e| format!("`{raw}`: {e}"))
}

/// The operator's caps, at most one of each kind per currency.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Caps {
    per_link: Vec<Money>,
    daily: Vec<Money>,
}

impl Caps {
    /// Caps from parsed amounts; the same currency twice in one kind is refused (which one
    /// would the operator mean?).
    pub(crate) fn new(per_link: Vec<Money>, daily: Vec<Money>) -> Result<Self, String> {
        for list in [&per_link, &daily] {
            for (i, cap) in list.iter().enumerate() {
                if list[..i].iter().any(|c| c.currency() == cap.currency()) {
                    return Err(format!("{} is capped twice", cap.currency()));
                }
            }
        }
        Ok(Caps { per_link, daily })
    }

    /// No cap at all: a create needs no amount to be checked.
    pub(crate) fn is_empty(&self) -> bool {
        self.per_link.is_empty() && self.daily.is_empty()
    }

    /// The most one link in `currency` may total, if capped.
    pub(crate) fn per_link(&self, currency: CurrencyCode) -> Option<Money> {
        self.per_link
            .iter()
            .copied()
            .find(|c| c.currency() == currency)
    }

    /// A tenant's rolling 24-hour budget in `currency`, if capped.
    pub(crate) fn daily(&self, currency: CurrencyCode) -> Option<Money> {
        self.daily
            .iter()
            .copied()
            .find(|c| c.currency() == currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(raw: &str) -> Money {
        parse_cap(raw).unwrap()
    }

    #[test]
    fn caps_parse_exactly_in_the_currencys_exponent() {
        assert_eq!(money("SAR:5000").minor(), 500_000);
        assert_eq!(money(" kwd : 250.500 ").minor(), 250_500);
        assert_eq!(money("KWD:250.5").minor(), 250_500);
        assert_eq!(money("JPY:1200").minor(), 1200);
        assert_eq!(money("USD:0").minor(), 0);
        assert_eq!(money("KWD:250.500").currency().code(), "KWD");
        for (bad, says) in [
            ("SAR:10.001", "3 decimals; SAR has 2"),
            ("SAR:10.000", "3 decimals"),
            ("JPY:1.5", "JPY has 0"),
            ("XYZ:10", "`XYZ` is not an ISO 4217"),
            ("SAR", "not CUR:AMOUNT"),
            ("SAR:-5", "without a sign"),
            ("SAR:ten", "not a decimal"),
            ("SAR:", "not a decimal"),
            ("SAR:99999999999999999999", "too large"),
        ] {
            let e = parse_cap(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn one_cap_per_currency_and_kind() {
        let caps = Caps::new(
            vec![money("SAR:10"), money("KWD:1.500")],
            vec![money("SAR:100")],
        )
        .unwrap();
        let sar = CurrencyCode::sar();
        let kwd = CurrencyCode::parse("KWD", "c").unwrap();
        let usd = CurrencyCode::parse("USD", "c").unwrap();
        assert_eq!(caps.per_link(kwd).map(Money::minor), Some(1500));
        assert_eq!(caps.daily(sar).map(Money::minor), Some(10_000));
        assert_eq!(caps.daily(kwd), None, "no daily cap in KWD: uncapped");
        assert_eq!(caps.per_link(usd), None);
        assert!(!caps.is_empty() && Caps::default().is_empty());
        let e = Caps::new(vec![money("SAR:1"), money("sar:2")], vec![]).unwrap_err();
        assert!(e.contains("SAR is capped twice"), "{e}");
        assert!(Caps::new(vec![money("SAR:1")], vec![money("SAR:2")]).is_ok());
    }
}
