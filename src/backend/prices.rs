//! Price rules shared by the backends that read prices from an upstream: a line's unit price
//! derived from its subtotal, and a product's prices with one per currency.
//!
//! Pure functions over [`Money`]: they must not read JSON (each backend finds the amounts in its
//! own answer shape) nor guess a value that the answer does not support.

use crate::domain::Money;

/// A line's unit price from its subtotal: the subtotal over the quantity, when that divides
/// exactly. Unknown otherwise, and whenever the quantity is unknown (unreadable) or 0: a unit
/// price guessed from a wrong quantity would be a wrong amount, and null is honest.
pub(crate) fn unit_from_subtotal(subtotal: Option<Money>, quantity: Option<u32>) -> Option<Money> {
    let subtotal = subtotal?;
    let q = i64::from(quantity.filter(|q| *q > 0)?);
    (subtotal.minor() % q == 0)
        .then(|| Money::from_minor(subtotal.minor() / q, subtotal.currency()))
}

/// `prices` with one per currency: the first of each currency wins, in order.
pub(crate) fn one_per_currency(prices: impl IntoIterator<Item = Money>) -> Vec<Money> {
    let mut out: Vec<Money> = Vec::new();
    for price in prices {
        if !out.iter().any(|seen| seen.currency() == price.currency()) {
            out.push(price);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CurrencyCode;

    #[test]
    fn a_unit_is_derived_only_from_an_exact_division_by_a_known_quantity() {
        let sar = CurrencyCode::sar();
        let line = Some(Money::from_minor(1000, sar));
        let minor = |m: Option<Money>| m.map(|m| m.minor());
        assert_eq!(minor(unit_from_subtotal(line, Some(4))), Some(250));
        assert_eq!(minor(unit_from_subtotal(line, Some(3))), None, "inexact");
        assert_eq!(minor(unit_from_subtotal(line, Some(0))), None);
        assert_eq!(minor(unit_from_subtotal(line, None)), None);
        assert_eq!(minor(unit_from_subtotal(None, Some(2))), None);
    }

    #[test]
    fn the_first_price_of_each_currency_wins() {
        let c = |code: &str| CurrencyCode::parse(code, "c").unwrap();
        let prices = one_per_currency([
            Money::from_minor(1, c("USD")),
            Money::from_minor(2, c("EUR")),
            Money::from_minor(3, c("USD")),
        ]);
        let kept: Vec<(i64, &str)> = prices
            .iter()
            .map(|m| (m.minor(), m.currency().code()))
            .collect();
        assert_eq!(kept, [(1, "USD"), (2, "EUR")]);
    }
}
