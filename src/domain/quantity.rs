//! Counts: how many items a link carries, how many of an item, how many payments a link accepts.

use crate::error::Error;

/// The most line items one link may carry: Stripe's limit, applied on every backend so that a
/// link that works on one works on all.
pub(crate) const MAX_LINE_ITEMS: usize = 20;

/// How many units of a product a line item sells: 1 ..= 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity accepted; far above any real basket, low enough that
    /// `unit price * quantity` of any sane price fits in an `i64` of minor units.
    pub const MAX: i64 = 1_000_000;

    pub fn parse(raw: i64, field: &str) -> Result<Self, Error> {
        if raw < 1 {
            Err(Error::validation(
                field,
                format!("must be at least 1, got {raw}"),
            ))
        } else if raw > Self::MAX {
            Err(Error::validation(
                field,
                format!("must be at most {}, got {raw}", Self::MAX),
            ))
        } else {
            // 1 ..= 1_000_000 fits in u32.
            Ok(Quantity(raw as u32))
        }
    }

    pub fn one() -> Self {
        Quantity(1)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// How many payments a link accepts before it completes: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxPayments(u32);

impl MaxPayments {
    pub fn parse(raw: i64, field: &str) -> Result<Self, Error> {
        if raw < 1 {
            return Err(Error::validation(
                field,
                format!("must be at least 1, got {raw}"),
            ));
        }
        u32::try_from(raw).map(MaxPayments).map_err(|_| {
            Error::validation(field, format!("must be at most {}, got {raw}", u32::MAX))
        })
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_bounds() {
        assert_eq!(Quantity::parse(1, "q").unwrap().get(), 1);
        assert_eq!(
            Quantity::parse(Quantity::MAX, "q").unwrap().get(),
            1_000_000
        );
        for bad in [0, -1, i64::MIN, Quantity::MAX + 1, i64::MAX] {
            assert_eq!(
                Quantity::parse(bad, "items[1].quantity")
                    .unwrap_err()
                    .field(),
                Some("items[1].quantity")
            );
        }
    }

    #[test]
    fn max_payments_bounds() {
        assert_eq!(MaxPayments::parse(1, "m").unwrap().get(), 1);
        assert_eq!(
            MaxPayments::parse(u32::MAX.into(), "m").unwrap().get(),
            u32::MAX
        );
        assert!(MaxPayments::parse(0, "m").is_err());
        assert!(MaxPayments::parse(i64::from(u32::MAX) + 1, "m").is_err());
    }
}
