//! The preview of a create: the exact lines and total a link will have, worked out from the
//! catalog before anything is written, so that the user confirms (and the spend caps check) the
//! numbers the link will show.
//!
//! Plain data and its arithmetic: each backend finds the prices in its own catalog; it must not
//! read any upstream's answers itself.

use sha2::{Digest, Sha256};

use crate::domain::{CurrencyCode, Money, MoneyView};
use crate::error::{Error, Result, UpstreamContext};

/// One line of a previewed link.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreviewLine {
    /// What the create sells on this line, as it will send it: the item's product id, or on
    /// Stripe the price id that product id resolved to.
    pub sells: String,
    /// The product's name, when the catalog gives one.
    pub name: Option<String>,
    pub quantity: u32,
    /// The price of one unit, in the link's currency.
    pub unit: Money,
    /// `quantity × unit`.
    pub subtotal: Money,
    /// The subtotal less this line's coupons, where the catalog tells their effect (else the
    /// subtotal).
    pub total: Money,
    /// The billing interval of a recurring product (`month`, `year`).
    pub interval: Option<String>,
}

impl PreviewLine {
    /// A line of `quantity` units at `unit`, without coupons; `index` names the item in an
    /// overflow error.
    pub(crate) fn new(
        index: usize,
        sells: String,
        name: Option<String>,
        quantity: u32,
        unit: Money,
        interval: Option<String>,
    ) -> Result<Self> {
        let subtotal = unit.checked_mul(quantity).ok_or_else(|| {
            Error::validation(format!("items[{index}].quantity"), "the total is too large")
        })?;
        Ok(PreviewLine {
            sells,
            name,
            quantity,
            unit,
            subtotal,
            total: subtotal,
            interval,
        })
    }
}

/// A previewed link.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Preview {
    pub currency: CurrencyCode,
    pub lines: Vec<PreviewLine>,
    /// What the link will total: its lines' totals, less the link's coupons where their effect
    /// is known.
    pub total: Money,
    /// Coupons apply whose effect the catalog does not tell (Stream computes them when it
    /// creates the link): `total` is then the total before them, the most the link can come to.
    pub coupons_unknown: bool,
}

impl Preview {
    /// The preview of `lines` in `currency`, totalled without link coupons.
    pub(crate) fn summed(
        currency: CurrencyCode,
        lines: Vec<PreviewLine>,
        coupons_unknown: bool,
    ) -> Result<Self> {
        let mut total = Money::from_minor(0, currency);
        for line in &lines {
            total = total
                .checked_add(line.total)
                .ok_or_else(|| Error::validation("items", "the total is too large"))?;
        }
        Ok(Preview {
            currency,
            lines,
            total,
            coupons_unknown,
        })
    }
}

impl Preview {
    /// Refuses when `fresh` (the catalog read again after the user took time to confirm) would
    /// charge otherwise than this preview: nothing is sent, and calling again asks the user about
    /// the numbers that are true now. Retry-safe, naming the first line that changed.
    pub(crate) fn still_priced_as(&self, fresh: &Preview) -> Result<()> {
        let changed = |field: String, what: String| {
            Err(Error::upstream_retryable(
                format!(
                    "{what} after the user was shown a total of {}; nothing was sent. Call again: the user will be asked about the new total",
                    money_text(self.total)
                ),
                UpstreamContext::default(),
            )
            .on_field(field))
        };
        for (i, (was, now)) in self.lines.iter().zip(&fresh.lines).enumerate() {
            if was.unit != now.unit || was.sells != now.sells {
                return changed(
                    format!("items[{i}].product_id"),
                    format!(
                        "the price of {} changed from {} to {}",
                        was.name.as_deref().unwrap_or(&was.sells),
                        money_text(was.unit),
                        money_text(now.unit)
                    ),
                );
            }
        }
        if self.lines.len() != fresh.lines.len()
            || self.total != fresh.total
            || self.coupons_unknown != fresh.coupons_unknown
        {
            return changed(
                "items".into(),
                format!("the link's total changed to {}", money_text(fresh.total)),
            );
        }
        Ok(())
    }

    /// The created link's `total` when it is not what this preview showed: another currency or
    /// amount, or, with coupons whose effect the preview could not tell, more than the total
    /// before them. `None` when it matches, or when the link's total is unknown.
    pub(crate) fn differs_from(&self, total: Option<&MoneyView>) -> Option<Money> {
        let total = total?;
        let currency = CurrencyCode::parse(&total.currency, "total").ok()?;
        let created = Money::from_minor(total.amount_minor, currency);
        let matches = currency == self.currency
            && if self.coupons_unknown {
                created.minor() <= self.total.minor()
            } else {
                created.minor() == self.total.minor()
            };
        (!matches).then_some(created)
    }

    /// A digest of everything this preview charges (currency, each line's product, quantity and
    /// unit price, the total): two previews with the same digest describe the same charge.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"paylink-preview\0");
        h.update(self.currency.code().as_bytes());
        for line in &self.lines {
            h.update([0]);
            h.update(line.sells.as_bytes());
            h.update([0]);
            h.update(line.quantity.to_be_bytes());
            h.update(line.unit.minor().to_be_bytes());
            h.update(line.total.minor().to_be_bytes());
        }
        h.update([0, u8::from(self.coupons_unknown)]);
        h.update(self.total.minor().to_be_bytes());
        h.finalize().into()
    }
}

/// `12.50 SAR`.
pub(crate) fn money_text(m: Money) -> String {
    format!("{} {}", m.to_decimal_string(), m.currency())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_multiply_and_previews_sum_exactly() {
        let kwd = CurrencyCode::parse("KWD", "c").unwrap();
        let line = |i, q, minor| {
            PreviewLine::new(i, "p".into(), None, q, Money::from_minor(minor, kwd), None).unwrap()
        };
        let preview =
            Preview::summed(kwd, vec![line(0, 3, 2_950), line(1, 7, 34_125)], false).unwrap();
        assert_eq!(preview.lines[1].subtotal.minor(), 238_875);
        assert_eq!(preview.total.minor(), 8_850 + 238_875);
        assert_eq!(preview.total.to_decimal_string(), "247.725");
        let e = PreviewLine::new(
            2,
            "p".into(),
            None,
            u32::MAX,
            Money::from_minor(i64::MAX / 2, kwd),
            None,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("items[2].quantity"));
    }
}
