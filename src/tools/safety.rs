//! The operator's hard limits on creates, checked before anything is written upstream and
//! before the user is asked: the products that may be sold (`--allowed-products`) and the spend
//! caps (`--max-link-amount`, `--max-daily-amount`, see [`crate::spend`]).
//!
//! Refusals are `product_not_allowed` (naming the item's field) and `cap_exceeded` (naming the
//! cap, the link's amount and what is left of the budget); neither is ever retry-safe. The
//! amount a create holds against its daily budget is given back when nothing was created.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;

use crate::backend::{NewPaymentLink, Preview};
use crate::domain::{CurrencyCode, Money};
use crate::error::{Error, Result};
use crate::observability::record;
use crate::spend::{Caps, LedgerBounds, MemoryLedger, Refusal, Reservation, SpendLedger};

/// The product ids that may be sold, from `--allowed-products`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AllowedProducts(HashSet<String>);

impl AllowedProducts {
    /// One id per line; blank lines and `#` comments (whole-line or trailing) ignored. A UUID is
    /// kept in its canonical lower-case form, as the tools validate product ids. A list that
    /// names nothing is refused: it would allow no create at all (`--read-only` says that).
    pub(crate) fn parse(text: &str) -> std::result::Result<Self, String> {
        let ids: HashSet<String> = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|id| !id.is_empty())
            .map(|id| match uuid::Uuid::try_parse(id) {
                Ok(u) => u.hyphenated().to_string(),
                Err(_) => id.to_owned(),
            })
            .collect();
        if ids.is_empty() {
            return Err("names no product; list one id per line (or use --read-only to refuse every create)".into());
        }
        Ok(AllowedProducts(ids))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn check(&self, link: &NewPaymentLink) -> Result<()> {
        for (i, item) in link.items.iter().enumerate() {
            let id = item.product_id.as_str();
            if !self.0.contains(id) {
                return Err(Error::product_not_allowed(
                    format!("items[{i}].product_id"),
                    format!(
                        "{id} is not on this server's list of products that may be sold (--allowed-products); nothing was sent. Choose a listed product, or ask the operator"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What the operator allows a create to sell and to total.
#[derive(Clone)]
pub(crate) struct SpendRules {
    pub caps: Caps,
    pub allowed: Option<AllowedProducts>,
    ledger: Arc<dyn SpendLedger>,
}

impl std::fmt::Debug for SpendRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendRules")
            .field("caps", &self.caps)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl Default for SpendRules {
    /// No cap, no list: every product, any amount.
    fn default() -> Self {
        SpendRules::new(
            Caps::default(),
            None,
            Arc::new(MemoryLedger::new(LedgerBounds::DEFAULT)),
        )
    }
}

impl SpendRules {
    pub(crate) fn new(
        caps: Caps,
        allowed: Option<AllowedProducts>,
        ledger: Arc<dyn SpendLedger>,
    ) -> Self {
        SpendRules {
            caps,
            allowed,
            ledger,
        }
    }

    /// Whether a create's amount must be known before it is sent: a cap applies to its
    /// `currency`, or, when the currency is not known before the catalog is read, to any.
    pub(crate) fn needs_amount(&self, currency: Option<CurrencyCode>) -> bool {
        match currency {
            Some(c) => self.caps.per_link(c).is_some() || self.caps.daily(c).is_some(),
            None => !self.caps.is_empty(),
        }
    }

    /// Refuses a product the operator's list does not hold: before any upstream call.
    pub(crate) fn check_products(&self, link: &NewPaymentLink) -> Result<()> {
        match &self.allowed {
            Some(allowed) => allowed.check(link),
            None => Ok(()),
        }
    }

    /// Checks `preview`'s total against the caps of its currency and holds it against `scope`'s
    /// daily budget. The decision is recorded for the audit line.
    pub(crate) async fn hold(&self, scope: &str, preview: &Preview) -> Result<Hold> {
        let currency = preview.currency;
        let total = preview.total;
        let per_link = self.caps.per_link(currency);
        let daily = self.caps.daily(currency);
        if per_link.is_none() && daily.is_none() {
            record::cap("uncapped");
            return Ok(Hold::none());
        }
        if let Some(cap) = per_link
            && total.minor() > cap.minor()
        {
            record::cap("exceeded");
            return Err(Error::cap_exceeded(format!(
                "this link totals {}, over this server's cap of {} per link (--max-link-amount){}; nothing was sent. Split it into smaller links only if the user wants that, or ask the operator",
                show(total),
                show(cap),
                before_coupons(preview)
            )));
        }
        let Some(cap) = daily else {
            record::cap("within");
            return Ok(Hold::none());
        };
        match self.ledger.reserve(scope, total, cap, Utc::now()).await {
            Ok(reservation) => {
                record::cap("within");
                Ok(Hold {
                    ledger: Some(self.ledger.clone()),
                    reservation: Some(reservation),
                    sent: false,
                })
            }
            Err(Refusal::OverBudget { left }) => {
                record::cap("exceeded");
                Err(Error::cap_exceeded(format!(
                    "this link totals {}{}, and only {} is left of this caller's budget of {} per 24 hours (--max-daily-amount); nothing was sent. The budget frees up as earlier links leave the 24-hour window",
                    show(total),
                    before_coupons(preview),
                    show(left),
                    show(cap)
                )))
            }
            Err(Refusal::Store(e)) => {
                record::cap("unavailable");
                Err(e.unavailable("count this link against the daily budget"))
            }
            Err(Refusal::Unavailable { reason }) => {
                record::cap("exceeded");
                Err(Error::cap_exceeded(format!(
                    "the daily budget cannot count this link ({reason}); nothing was sent"
                )))
            }
        }
    }
}

fn show(m: Money) -> String {
    format!("{} {}", m.to_decimal_string(), m.currency())
}

fn before_coupons(preview: &Preview) -> &'static str {
    if preview.coupons_unknown {
        " before coupons"
    } else {
        ""
    }
}

/// An amount held against a daily budget until the create's outcome is known: committed when
/// the link exists (or may), released when nothing was created. Dropped unsettled (the call was
/// cancelled), it is released if the write was not sent yet, and committed once it may have been.
pub(crate) struct Hold {
    ledger: Option<Arc<dyn SpendLedger>>,
    reservation: Option<Reservation>,
    sent: bool,
}

impl Hold {
    /// Nothing held: no daily cap applies.
    pub(crate) fn none() -> Self {
        Hold {
            ledger: None,
            reservation: None,
            sent: false,
        }
    }

    /// The write is about to be sent: from here on, a dropped call may have created the link.
    pub(crate) fn sending(&mut self) {
        self.sent = true;
    }

    /// The link was created, or may have been: the amount stays counted.
    pub(crate) async fn commit(mut self) {
        if let (Some(ledger), Some(r)) = (self.ledger.take(), self.reservation.take()) {
            ledger.commit(r).await;
        }
    }

    /// Nothing was created: the amount goes back to the budget.
    pub(crate) async fn release(mut self) {
        if let (Some(ledger), Some(r)) = (self.ledger.take(), self.reservation.take()) {
            ledger.release(r).await;
        }
    }

    /// The link was created with `spent`, not the amount held (the upstream priced it at the
    /// moment of the write): that is what counts.
    pub(crate) async fn commit_as(mut self, spent: Money) {
        if let (Some(ledger), Some(r)) = (self.ledger.take(), self.reservation.take()) {
            ledger.commit_as(r, spent).await;
        }
    }

    /// Settles on how a create ended: a link that may have been made (an unknown outcome, or a
    /// timeout the upstream deduplicates on retry) counts like a created one.
    pub(crate) async fn settle<T>(self, result: &Result<T>) {
        match result {
            Ok(_) => self.commit().await,
            Err(e) if e.may_have_written() => self.commit().await,
            Err(_) => self.release().await,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Dropped unsettled: the call was cancelled. Before the write nothing was sent and the
        // amount goes back; after it, the outcome is unknown and the amount stays counted. From
        // a task (a drop cannot wait); without a runtime it simply stays until it expires.
        if let (Some(ledger), Some(r), Ok(runtime)) = (
            self.ledger.take(),
            self.reservation.take(),
            tokio::runtime::Handle::try_current(),
        ) {
            let sent = self.sent;
            runtime.spawn(async move {
                if sent {
                    ledger.commit(r).await;
                } else {
                    ledger.release(r).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::NewItem;
    use crate::domain::{IdFormat, LinkName, Metadata, ProductId, Quantity};

    fn link(ids: &[&str]) -> NewPaymentLink {
        NewPaymentLink {
            name: LinkName::parse("n", "name").unwrap(),
            items: ids
                .iter()
                .map(|id| NewItem {
                    product_id: ProductId::parse(id, "p", IdFormat::Stripe)
                        .or_else(|_| ProductId::parse(id, "p", IdFormat::Uuid))
                        .unwrap(),
                    quantity: Quantity::one(),
                    coupons: vec![],
                })
                .collect(),
            description: None,
            currency: None,
            coupons: vec![],
            valid_until: None,
            max_number_of_payments: None,
            success_redirect_url: None,
            failure_redirect_url: None,
            organization_consumer_id: None,
            metadata: Metadata::parse(Default::default(), "metadata", 1).unwrap(),
            reference: String::new(),
            idempotency_key: None,
        }
    }

    #[test]
    fn the_allowed_list_reads_ids_and_comments_and_names_the_refused_item() {
        let list = AllowedProducts::parse(
            "# products we sell\n\nprice_A  # espresso\n  6F1C2A7E-3B4D-4C5E-9F60-7A8B9C0D1E2F\nprod_B\n",
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert!(list.check(&link(&["price_A", "prod_B"])).is_ok());
        assert!(
            list.check(&link(&["6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f"]))
                .is_ok()
        );
        let e = list
            .check(&link(&["price_A", "prod_B", "price_C"]))
            .unwrap_err();
        assert_eq!(e.kind().as_str(), "product_not_allowed");
        assert_eq!(e.field(), Some("items[2].product_id"));
        assert!(!e.retry_safe());
        assert!(AllowedProducts::parse("# nothing\n\n").is_err());
    }
}
