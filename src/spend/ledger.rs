//! The daily budgets as a trait: reserve an amount atomically against a cap, then commit or
//! release it. Small, async and free of in-memory assumptions, so that a shared store can
//! implement it for replicas.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::Money;
use crate::store::StoreError;

/// How long a create counts against a daily budget.
pub(crate) const WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// An amount held against a budget until it is committed or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reservation {
    /// Opaque to callers: the ledger's own name for the entry.
    pub id: String,
    /// The tenant whose budget it is.
    pub scope: String,
    pub amount: Money,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The amount does not fit: this much of the budget is left in the window.
    OverBudget { left: Money },
    /// The ledger cannot record another entry (its bounds, or a shared store that cannot be
    /// reached): the create is refused rather than left uncounted.
    Unavailable { reason: String },
    /// The shared store of replicas did not answer: the create is refused (`unavailable`, safe
    /// to repeat), and nothing was sent.
    Store(StoreError),
}

/// A tenant's rolling budgets: what the last 24 hours of creates hold, per currency.
#[async_trait]
pub(crate) trait SpendLedger: Send + Sync + 'static {
    /// Holds `amount` against `scope`'s budget in its currency, from `now` for [`WINDOW`], if
    /// what the window already holds (committed and reserved) plus `amount` stays within `cap`.
    /// Atomic: of concurrent reservations, only those that fit together pass.
    async fn reserve(
        &self,
        scope: &str,
        amount: Money,
        cap: Money,
        now: DateTime<Utc>,
    ) -> Result<Reservation, Refusal>;

    /// The create happened, or its outcome is unknown: the amount stays counted for the window.
    async fn commit(&self, reservation: Reservation);

    /// The create happened with another amount than was reserved (the upstream priced it at
    /// the moment of the write): `amount` counts instead, for the same window, even past the cap
    /// (it was spent).
    async fn commit_as(&self, reservation: Reservation, amount: Money);

    /// Nothing was created: the amount is given back to the budget.
    async fn release(&self, reservation: Reservation);
}
