//! The daily budgets in this process's memory: one list of entries per tenant and currency,
//! behind one lock (so a reservation is atomic), every entry expiring [`WINDOW`] after it was
//! made, and the whole bounded: per tenant and in total. A reservation that finds its bound
//! full is refused (`Unavailable`): a create that cannot be counted does not happen.
//!
//! Lost on restart: the budgets start empty again. Not shared between replicas.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::ledger::{Refusal, Reservation, SpendLedger, WINDOW};
use crate::domain::Money;

/// How many creates the ledger remembers at once (each for 24 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LedgerBounds {
    /// Entries of one tenant, all currencies together.
    pub max_per_tenant: usize,
    /// Entries of every tenant together.
    pub max_total: usize,
}

impl LedgerBounds {
    /// Ten thousand capped creates a day per tenant, two hundred thousand in all: a few
    /// megabytes at most.
    pub(crate) const DEFAULT: LedgerBounds = LedgerBounds {
        max_per_tenant: 10_000,
        max_total: 200_000,
    };
}

struct Entry {
    id: u64,
    minor: i64,
    expires: DateTime<Utc>,
}

#[derive(Default)]
struct Tenant {
    /// Entries by currency code.
    books: HashMap<&'static str, Vec<Entry>>,
    entries: usize,
}

impl Tenant {
    /// Drops what left the window; answers how many entries went.
    fn expire(&mut self, now: DateTime<Utc>) -> usize {
        let before = self.entries;
        for book in self.books.values_mut() {
            book.retain(|e| e.expires > now);
        }
        self.books.retain(|_, book| !book.is_empty());
        self.entries = self.books.values().map(Vec::len).sum();
        before - self.entries
    }
}

#[derive(Default)]
struct Inner {
    tenants: HashMap<String, Tenant>,
    total: usize,
    next_id: u64,
}

impl Inner {
    fn expire_tenant(&mut self, scope: &str, now: DateTime<Utc>) {
        if let Some(t) = self.tenants.get_mut(scope) {
            self.total -= t.expire(now);
            if t.entries == 0 {
                self.tenants.remove(scope);
            }
        }
    }

    fn expire_all(&mut self, now: DateTime<Utc>) {
        let mut gone = 0;
        for t in self.tenants.values_mut() {
            gone += t.expire(now);
        }
        self.total -= gone;
        self.tenants.retain(|_, t| t.entries > 0);
    }
}

/// The in-memory [`SpendLedger`].
pub(crate) struct MemoryLedger {
    inner: Mutex<Inner>,
    bounds: LedgerBounds,
}

impl MemoryLedger {
    pub(crate) fn new(bounds: LedgerBounds) -> Self {
        MemoryLedger {
            inner: Mutex::new(Inner::default()),
            bounds,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation leaves the maps consistent before anything that could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held now, every tenant together (expired ones may linger until the next sweep).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().total
    }

    fn remove(&self, reservation: &Reservation) {
        let Ok(id) = reservation.id.parse::<u64>() else {
            return;
        };
        let mut inner = self.lock();
        let code = reservation.amount.currency().code();
        let Some(tenant) = inner.tenants.get_mut(&reservation.scope) else {
            return;
        };
        let Some(book) = tenant.books.get_mut(code) else {
            return;
        };
        let before = book.len();
        book.retain(|e| e.id != id);
        let removed = before - book.len();
        if book.is_empty() {
            tenant.books.remove(code);
        }
        tenant.entries -= removed;
        if tenant.entries == 0 {
            inner.tenants.remove(&reservation.scope);
        }
        inner.total -= removed;
    }
}

#[async_trait]
impl SpendLedger for MemoryLedger {
    async fn reserve(
        &self,
        scope: &str,
        amount: Money,
        cap: Money,
        now: DateTime<Utc>,
    ) -> Result<Reservation, Refusal> {
        let mut inner = self.lock();
        inner.expire_tenant(scope, now);
        let code = amount.currency().code();
        let held = inner.tenants.get(scope).map_or(0, |t| t.entries);
        if held >= self.bounds.max_per_tenant {
            return Err(Refusal::Unavailable {
                reason: format!(
                    "the daily budget counts at most {} capped links per tenant in 24 hours",
                    self.bounds.max_per_tenant
                ),
            });
        }
        if inner.total >= self.bounds.max_total {
            inner.expire_all(now);
            if inner.total >= self.bounds.max_total {
                return Err(Refusal::Unavailable {
                    reason: format!(
                        "the server's daily budgets count at most {} capped links in 24 hours",
                        self.bounds.max_total
                    ),
                });
            }
        }
        let used: i128 = inner
            .tenants
            .get(scope)
            .and_then(|t| t.books.get(code))
            .map_or(0, |b| b.iter().map(|e| i128::from(e.minor)).sum());
        let cap_minor = i128::from(cap.minor());
        if used + i128::from(amount.minor()) > cap_minor {
            let left = i64::try_from((cap_minor - used).max(0)).unwrap_or(0);
            return Err(Refusal::OverBudget {
                left: Money::from_minor(left, cap.currency()),
            });
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let tenant = inner.tenants.entry(scope.to_owned()).or_default();
        tenant.books.entry(code).or_default().push(Entry {
            id,
            minor: amount.minor(),
            expires: now + WINDOW,
        });
        tenant.entries += 1;
        inner.total += 1;
        Ok(Reservation {
            id: id.to_string(),
            scope: scope.to_owned(),
            amount,
        })
    }

    async fn commit(&self, _reservation: Reservation) {
        // In memory a reserved amount is already counted until it leaves the window: keeping it
        // is all a commit does.
    }

    async fn commit_as(&self, reservation: Reservation, amount: Money) {
        let Ok(id) = reservation.id.parse::<u64>() else {
            return;
        };
        let mut inner = self.lock();
        let code = reservation.amount.currency().code();
        let Some(tenant) = inner.tenants.get_mut(&reservation.scope) else {
            return;
        };
        let Some(book) = tenant.books.get_mut(code) else {
            return;
        };
        let Some(at) = book.iter().position(|e| e.id == id) else {
            return;
        };
        if amount.currency() == reservation.amount.currency() {
            book[at].minor = amount.minor();
            return;
        }
        // Spent in another currency: it counts in that currency's budget.
        let mut entry = book.remove(at);
        if book.is_empty() {
            tenant.books.remove(code);
        }
        entry.minor = amount.minor();
        tenant
            .books
            .entry(amount.currency().code())
            .or_default()
            .push(entry);
    }

    async fn release(&self, reservation: Reservation) {
        self.remove(&reservation);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::CurrencyCode;

    fn sar(minor: i64) -> Money {
        Money::from_minor(minor, CurrencyCode::sar())
    }

    fn kwd(minor: i64) -> Money {
        Money::from_minor(minor, CurrencyCode::parse("KWD", "c").unwrap())
    }

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::TimeDelta::hours(hours)
    }

    fn ledger() -> MemoryLedger {
        MemoryLedger::new(LedgerBounds::DEFAULT)
    }

    #[tokio::test]
    async fn a_budget_holds_up_to_its_cap_exactly_then_refuses_with_what_is_left() {
        let l = ledger();
        let cap = sar(10_000);
        l.reserve("a", sar(6_000), cap, at(0)).await.unwrap();
        l.reserve("a", sar(4_000), cap, at(1)).await.unwrap();
        let refused = l.reserve("a", sar(1), cap, at(2)).await.unwrap_err();
        assert_eq!(refused, Refusal::OverBudget { left: sar(0) });
        // Another tenant and another currency have budgets of their own.
        l.reserve("b", sar(10_000), cap, at(2)).await.unwrap();
        l.reserve("a", kwd(5), kwd(5), at(2)).await.unwrap();
        assert_eq!(
            l.reserve("b", sar(500), cap, at(2)).await.unwrap_err(),
            Refusal::OverBudget { left: sar(0) }
        );
    }

    #[tokio::test]
    async fn the_window_rolls_24_hours_after_each_create() {
        let l = ledger();
        let cap = sar(100);
        l.reserve("a", sar(60), cap, at(0)).await.unwrap();
        l.reserve("a", sar(40), cap, at(10)).await.unwrap();
        let e = l.reserve("a", sar(60), cap, at(23)).await.unwrap_err();
        assert_eq!(e, Refusal::OverBudget { left: sar(0) });
        // 24 h after the first, its 60 is free again; the 40 still counts.
        l.reserve("a", sar(60), cap, at(24)).await.unwrap();
        let e = l.reserve("a", sar(1), cap, at(33)).await.unwrap_err();
        assert_eq!(e, Refusal::OverBudget { left: sar(0) });
        l.reserve("a", sar(40), cap, at(34)).await.unwrap();
        assert_eq!(l.len(), 2, "expired entries are dropped");
    }

    #[tokio::test]
    async fn released_amounts_return_and_committed_ones_stay() {
        let l = ledger();
        let cap = sar(100);
        let first = l.reserve("a", sar(70), cap, at(0)).await.unwrap();
        let second = l.reserve("a", sar(30), cap, at(0)).await.unwrap();
        assert_ne!(first.id, second.id);
        l.release(first).await;
        let e = l.reserve("a", sar(71), cap, at(1)).await.unwrap_err();
        assert_eq!(e, Refusal::OverBudget { left: sar(70) });
        l.commit(second.clone()).await;
        l.reserve("a", sar(70), cap, at(1)).await.unwrap();
        // Releasing twice, or something unknown, changes nothing.
        l.release(second.clone()).await;
        l.release(second).await;
        assert_eq!(l.len(), 1);
    }

    #[tokio::test]
    async fn a_create_priced_otherwise_counts_what_it_was_priced_at() {
        let l = ledger();
        let cap = sar(100);
        let r = l.reserve("a", sar(50), cap, at(0)).await.unwrap();
        l.commit_as(r, sar(80)).await;
        let e = l.reserve("a", sar(21), cap, at(1)).await.unwrap_err();
        assert_eq!(e, Refusal::OverBudget { left: sar(20) });
        // Past the cap: it was spent, so it counts; nothing more fits.
        let r = l.reserve("a", sar(20), cap, at(1)).await.unwrap();
        l.commit_as(r, sar(30)).await;
        let e = l.reserve("a", sar(1), cap, at(2)).await.unwrap_err();
        assert_eq!(e, Refusal::OverBudget { left: sar(0) });
        // In another currency, it counts in that currency's budget.
        let r = l.reserve("b", sar(10), cap, at(0)).await.unwrap();
        l.commit_as(r, kwd(7)).await;
        l.reserve("b", sar(100), cap, at(1)).await.unwrap();
        let e = l.reserve("b", kwd(4), kwd(10), at(1)).await.unwrap_err();
        assert_eq!(e, Refusal::OverBudget { left: kwd(3) });
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_last_of_a_budget_twice() {
        let l = Arc::new(ledger());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let passed = runtime.block_on(async {
            let tasks: Vec<_> = (0..40)
                .map(|_| {
                    let l = l.clone();
                    tokio::spawn(async move { l.reserve("a", sar(10), sar(50), at(0)).await })
                })
                .collect();
            let mut passed = 0;
            for t in tasks {
                if t.await.unwrap().is_ok() {
                    passed += 1;
                }
            }
            passed
        });
        assert_eq!(passed, 5);
    }

    #[tokio::test]
    async fn the_ledger_is_bounded_per_tenant_and_in_total() {
        let l = MemoryLedger::new(LedgerBounds {
            max_per_tenant: 3,
            max_total: 5,
        });
        let cap = sar(1_000);
        for _ in 0..3 {
            l.reserve("a", sar(1), cap, at(0)).await.unwrap();
        }
        let e = l.reserve("a", kwd(1), kwd(10), at(0)).await.unwrap_err();
        assert!(matches!(e, Refusal::Unavailable { .. }), "{e:?}");
        l.reserve("b", sar(1), cap, at(0)).await.unwrap();
        l.reserve("b", sar(1), cap, at(0)).await.unwrap();
        let e = l.reserve("c", sar(1), cap, at(1)).await.unwrap_err();
        assert!(
            matches!(&e, Refusal::Unavailable { reason } if reason.contains("at most 5 capped")),
            "{e:?}"
        );
        // Every entry expires: a day later there is room for everyone again.
        l.reserve("c", sar(1), cap, at(25)).await.unwrap();
        assert_eq!(l.len(), 1);
        l.reserve("a", sar(1), cap, at(25)).await.unwrap();
    }
}
