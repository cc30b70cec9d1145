//! The daily budgets in the store replicas share (`--store redis://...`), so that a budget holds
//! across every replica and every restart, not once per process.
//!
//! One sorted set per tenant and currency, `paylink:v1:ledger:{S}:day:<CUR>`: each member is one
//! reserved or committed create, `<id>:<minor units>`, scored by when it leaves the 24-hour
//! window (milliseconds). A reservation is one Lua script: drop what left the window, refuse if
//! the book is full, sum what is left, refuse if the amount does not fit the cap, add it. The
//! key expires with its newest entry. A commit changes nothing (the entry stays until it leaves
//! the window); a release removes it.
//!
//! Fails closed: a reservation the store cannot make is refused (`unavailable`, safe to repeat),
//! before anything is sent upstream; a release the store does not take leaves the amount counted
//! until it leaves the window (the caller's budget is smaller for a while, never larger).

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::ledger::{Refusal, Reservation, SpendLedger, WINDOW};
use super::memory::LedgerBounds;
use crate::domain::Money;
use crate::store::{Family, Script, Store};

const FAMILY: Family = Family::new("ledger");

/// KEYS[1]: the book. ARGV: now (ms), the entry's expiry (ms), its minor units, the cap's minor
/// units, its member, the most entries a book may hold. Answers `{'ok'}`, `{'over', held}` or
/// `{'full', count}`. Safe to run twice: an entry already there is the answer.
const RESERVE: &str = r#"
if redis.call('ZSCORE', KEYS[1], ARGV[5]) then return {'ok'} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[6]) then return {'full', tostring(count)} end
local held = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  held = held + tonumber(string.match(member, ':(%d+)$'))
end
if held + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return {'over', tostring(held)} end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], newest[2])
return {'ok'}
"#;

/// KEYS[1]: the reservation's book, KEYS[2]: the book of the amount it was made at (the same
/// book, or another currency's). ARGV: the reservation's member, the spent one. The entry keeps
/// its place in the window. Safe to run twice: a moved entry is not there to move again.
const COMMIT_AS: &str = r#"
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expires then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], expires, ARGV[2])
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], newest[2])
return 1
"#;

static COMMIT_AS_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new("ledger_commit_as", COMMIT_AS));

static RESERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new("ledger_reserve", RESERVE));

/// The daily budgets in the shared store.
pub(crate) struct SharedLedger {
    store: Store,
    bounds: LedgerBounds,
}

impl SharedLedger {
    pub(crate) fn new(store: Store, bounds: LedgerBounds) -> Self {
        SharedLedger { store, bounds }
    }
}

fn book(scope: &str, amount: &Money) -> String {
    FAMILY.tenant_key(scope, &format!("day:{}", amount.currency().code()))
}

/// A reservation's member: its id and its amount, which the script sums.
fn member(reservation: &Reservation) -> String {
    format!("{}:{}", reservation.id, reservation.amount.minor())
}

#[async_trait]
impl SpendLedger for SharedLedger {
    async fn reserve(
        &self,
        scope: &str,
        amount: Money,
        cap: Money,
        now: DateTime<Utc>,
    ) -> Result<Reservation, Refusal> {
        let (Ok(minor), Ok(cap_minor)) =
            (u64::try_from(amount.minor()), u64::try_from(cap.minor()))
        else {
            return Err(Refusal::Unavailable {
                reason: "a negative amount cannot be counted".into(),
            });
        };
        let reservation = Reservation {
            id: uuid::Uuid::new_v4().simple().to_string(),
            scope: scope.to_owned(),
            amount,
        };
        let expires = now + WINDOW;
        let mut invocation = RESERVE_SCRIPT.prepare();
        invocation
            .key(book(scope, &amount))
            .arg(now.timestamp_millis())
            .arg(expires.timestamp_millis())
            .arg(minor)
            .arg(cap_minor)
            .arg(member(&reservation))
            .arg(self.bounds.max_per_tenant);
        let answer: Vec<String> = self
            .store
            .invoke(RESERVE_SCRIPT.op, &invocation)
            .await
            .map_err(Refusal::Store)?;
        match answer.first().map(String::as_str) {
            Some("ok") => Ok(reservation),
            Some("over") => {
                let held: i64 = answer.get(1).and_then(|h| h.parse().ok()).unwrap_or(0);
                let left = (cap.minor() - held).max(0);
                Err(Refusal::OverBudget {
                    left: Money::from_minor(left, cap.currency()),
                })
            }
            Some("full") => Err(Refusal::Unavailable {
                reason: format!(
                    "the daily budget counts at most {} capped links per tenant and currency in 24 hours",
                    self.bounds.max_per_tenant
                ),
            }),
            _ => Err(Refusal::Unavailable {
                reason: "the shared store gave an answer this server does not know".into(),
            }),
        }
    }

    async fn commit(&self, _reservation: Reservation) {
        // Counted from its reservation until it leaves the window: nothing to change.
    }

    async fn commit_as(&self, reservation: Reservation, amount: Money) {
        let Ok(minor) = u64::try_from(amount.minor()) else {
            return;
        };
        let spent = format!("{}:{minor}", reservation.id);
        let mut invocation = COMMIT_AS_SCRIPT.prepare();
        invocation
            .key(book(&reservation.scope, &reservation.amount))
            .key(book(&reservation.scope, &amount))
            .arg(member(&reservation))
            .arg(spent);
        if let Err(e) = self
            .store
            .invoke::<i64>(COMMIT_AS_SCRIPT.op, &invocation)
            .await
        {
            tracing::warn!(error = %e, "spend: the amount a link was made at could not replace its reservation in the shared daily budget; the reserved amount stays counted");
        }
    }

    async fn release(&self, reservation: Reservation) {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(book(&reservation.scope, &reservation.amount))
            .arg(member(&reservation));
        if let Err(e) = self.store.command::<i64>("ledger_release", &cmd).await {
            tracing::warn!(error = %e, "spend: a reservation could not be given back to the shared daily budget; it stays counted until it leaves the 24-hour window");
        }
    }
}
