//! Abuse limits, answered at the HTTP layer with 429 and `Retry-After`: request rates and
//! requests in flight, per client address and per tenant.
//!
//! Rates are counted in this process (token buckets), or with a shared store (`--store
//! redis://...`) in Redis, so that replicas share one count: the `rate` key family,
//! `paylink:v1:rate:<limit>:<who>`, counted atomically by one Lua script in **fixed windows of 60
//! seconds**, each starting at the first request it counts (the key expires with it). A limit of
//! N per minute lets N requests through per window, over all replicas together; the next is
//! refused with `Retry-After` set to what is left of the window. (Unlike a token bucket, a fixed
//! window may let up to 2N through across a window's end.) When the store does not answer, a
//! rate fails open to this replica's own bucket: a warning in the log, and
//! `paylink_store_limit_fail_open_total{limit}`. Requests in flight are always counted per
//! replica: they are held for a call's length, and a count in Redis would outlive a replica that
//! dies holding it.
//!
//! Every table is bounded: rate buckets live in an LRU of fixed size (a forgotten bucket comes
//! back full, which only ever favours the caller, never another one), and in-flight counters
//! exist only while a request holds them.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::observability::metrics;
use crate::store::{Family, Script, Store};
use crate::tenant::cache::TenantKey;

const FAMILY: Family = Family::new("rate");

/// The window of a shared rate.
pub(crate) const SHARED_WINDOW: Duration = Duration::from_secs(60);

/// KEYS: the counter. ARGV: the window in ms. Returns {count, ms left in the window}.
static COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "rate_count",
        r#"
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"#,
    )
});

/// How a limited thing is named in a shared key: never a caller's key (tenants are hashes).
pub(crate) trait LimitKey {
    fn limit_id(&self) -> String;
}

impl LimitKey for IpAddr {
    fn limit_id(&self) -> String {
        self.to_string()
    }
}

impl LimitKey for TenantKey {
    fn limit_id(&self) -> String {
        self.hex()
    }
}

/// A rate counted in the shared store.
struct SharedRate {
    store: Store,
    /// The limit's name, as in `paylink_rate_limited_total{reason}`.
    limit: &'static str,
    /// When a fail-open was last logged (ms since `epoch`), so an outage logs a line every
    /// ten seconds per limit rather than one per request.
    warned: AtomicU64,
    epoch: Instant,
}

impl SharedRate {
    /// `Some(verdict)` from the shared count, `None` when the store did not answer.
    async fn check(&self, id: &str, per_minute: u32) -> Option<Result<(), Duration>> {
        if !self.store.recently_failed() {
            let mut inv = COUNT.prepare();
            inv.key(FAMILY.key(&format!("{}:{id}", self.limit)))
                .arg(SHARED_WINDOW.as_millis() as u64);
            match self.store.invoke::<(u64, i64)>(COUNT.op, &inv).await {
                Ok((count, _)) if count <= u64::from(per_minute) => return Some(Ok(())),
                Ok((_, left)) => {
                    return Some(Err(Duration::from_millis(left.max(1) as u64)));
                }
                Err(_) => {}
            }
        }
        metrics::store_fail_open(self.limit);
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.warned.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .warned
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                limit = self.limit,
                "the shared store did not answer: this limit is counted by this replica alone until it does (fail open)"
            );
        }
        None
    }
}

/// A client, as far as limits are concerned: an IPv4 address, or an IPv6 /64 (one host
/// usually owns a whole /64, and would otherwise have 2^64 fresh buckets).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// `per_minute` requests a minute per key: in this process, in bursts of up to a minute's
/// worth; with a shared store, per fixed window over every replica (see the module
/// documentation).
pub(crate) struct RateLimiter<K: Hash + Eq> {
    buckets: Mutex<LruCache<K, Bucket>>,
    per_minute: u32,
    shared: Option<SharedRate>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_minute == 0` disables the limit; `keys` bounds the table.
    pub(crate) fn new(per_minute: u32, keys: NonZeroUsize) -> Self {
        RateLimiter {
            buckets: Mutex::new(LruCache::new(keys)),
            per_minute,
            shared: None,
        }
    }

    /// [`new`](Self::new), counted in `store` when there is one; `limit` names it there and in
    /// the metrics (one of `metrics::SHARED_LIMITS`).
    pub(crate) fn shared(
        per_minute: u32,
        keys: NonZeroUsize,
        limit: &'static str,
        store: Option<Store>,
    ) -> Self {
        RateLimiter {
            shared: store.map(|store| SharedRate {
                store,
                limit,
                warned: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
            ..Self::new(per_minute, keys)
        }
    }

    /// Counts one request of `key`: the shared count when there is one and it answers, else
    /// this process's bucket. `Err` says how long until one more is allowed.
    pub(crate) async fn check(&self, key: K) -> Result<(), Duration>
    where
        K: LimitKey,
    {
        if self.per_minute == 0 {
            return Ok(());
        }
        if let Some(shared) = &self.shared
            && let Some(verdict) = shared.check(&key.limit_id(), self.per_minute).await
        {
            return verdict;
        }
        self.check_local(key)
    }

    /// Takes one token of this process's bucket for `key`, or says how long until one is
    /// available.
    pub(crate) fn check_local(&self, key: K) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.get_or_insert_mut(key, || Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

/// Requests in flight per key, at most `max` each. The table holds only keys with at least one
/// request in flight.
pub(crate) struct InFlight<K: Hash + Eq + Clone + Send + 'static> {
    counts: Mutex<HashMap<K, u32>>,
    max: u32,
}

/// Releases one in-flight slot when dropped.
pub(crate) struct Slot<K: Hash + Eq + Clone + Send + 'static> {
    table: Arc<InFlight<K>>,
    key: K,
    /// False when the limit is off: nothing was counted, nothing to release.
    counted: bool,
}

impl<K: Hash + Eq + Clone + Send + 'static> InFlight<K> {
    /// `max == 0` disables the limit (nothing is counted).
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(InFlight {
            counts: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// A slot for `key`, or `None` when `key` already has `max` requests in flight.
    #[cfg(test)]
    pub(crate) fn acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        self.acquire_if(true, key)
    }

    /// [`acquire`](Self::acquire) when `count`, else a slot that counts nothing.
    pub(crate) fn acquire_if(self: &Arc<Self>, count: bool, key: K) -> Option<Slot<K>> {
        if self.max == 0 || !count {
            return Some(Slot {
                table: self.clone(),
                key,
                counted: false,
            });
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            table: self.clone(),
            key,
            counted: true,
        })
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.counts.lock().unwrap().len()
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> Drop for Slot<K> {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The in-flight slots of one request, released when the last clone is dropped, or earlier by
/// [`CallSlots::release`].
///
/// The gate puts one in the request's extensions; rmcp moves the request's `http::request::Parts`
/// (extensions included) into the MCP handler's context, and the handler keeps a clone while a
/// tool call runs. So the slots live as long as the call does: until it ends, even when the
/// caller hung up and rmcp's session worker keeps running it, and no longer (released before the
/// answer is written, so a client that sends its next request as soon as it reads an answer finds
/// its slot free). rmcp does not keep the parts past the handler: it moves them into the
/// handler's context (`service.rs`, `serve_inner`) or, for `initialize`, clones them into a
/// context dropped when the handshake's handler returns.
///
/// A notification is handled after its `202` has gone out, at a time the client cannot see: the
/// gate releases the slots of every answer that is not a request's (`200`) when it gets that
/// answer, so that a notification cannot hold a slot its sender's next request needs.
#[derive(Clone)]
pub(crate) struct CallSlots {
    held: Arc<Mutex<Option<Box<dyn Send>>>>,
}

impl CallSlots {
    pub(crate) fn new(held: impl Send + 'static) -> Self {
        CallSlots {
            held: Arc::new(Mutex::new(Some(Box::new(held)))),
        }
    }

    /// Releases the slots now, whoever still holds a clone.
    pub(crate) fn release(&self) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_say_when() {
        let limiter = RateLimiter::new(60, NonZeroUsize::new(8).unwrap());
        for _ in 0..60 {
            assert!(limiter.check_local("a").is_ok());
        }
        let wait = limiter.check_local("a").unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(limiter.check_local("b").is_ok());
        let off = RateLimiter::new(0, NonZeroUsize::new(1).unwrap());
        for _ in 0..1000 {
            assert!(off.check_local(1).is_ok());
        }
    }

    #[test]
    fn bucket_tables_are_bounded() {
        let limiter = RateLimiter::new(1, NonZeroUsize::new(2).unwrap());
        for k in 0..100 {
            assert!(limiter.check_local(k).is_ok());
        }
        assert_eq!(limiter.buckets.lock().unwrap().len(), 2);
    }

    #[test]
    fn in_flight_slots_are_released_on_drop() {
        let table = InFlight::new(2);
        let a = table.acquire("t").unwrap();
        let b = table.acquire("t").unwrap();
        assert!(table.acquire("t").is_none());
        assert!(table.acquire("u").is_some());
        drop(a);
        assert!(table.acquire("t").is_some());
        drop(b);
        assert_eq!(table.keys(), 0);
        let held = table.acquire("t").unwrap();
        let _free: Vec<_> = (0..10)
            .map(|_| table.acquire_if(false, "t").unwrap())
            .collect();
        assert!(table.acquire("t").is_some());
        drop(held);
        let off = InFlight::<u8>::new(0);
        let slots: Vec<_> = (0..100).map(|_| off.acquire(1).unwrap()).collect();
        assert_eq!(off.keys(), 0);
        drop(slots);
    }

    #[test]
    fn call_slots_end_with_the_last_holder_or_on_release() {
        let table = InFlight::new(1);
        let slots = CallSlots::new(table.acquire("t").unwrap());
        let handler = slots.clone();
        drop(slots);
        assert!(table.acquire("t").is_none(), "the handler still holds it");
        drop(handler);
        assert!(table.acquire("t").is_some());
        let slots = CallSlots::new(table.acquire("t").unwrap());
        let notification = slots.clone();
        slots.release();
        assert!(
            table.acquire("t").is_some(),
            "released while still referenced"
        );
        drop(notification);
        assert_eq!(table.keys(), 0);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(m), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
