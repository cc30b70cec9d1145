//! Idempotency keys in the shared store, so that replicas behind one load balancer answer a
//! repeated key alike: the `idem` key family and its Lua scripts.
//!
//! A claim is atomic (one script): it replays a created link, refuses other arguments, tells a
//! twin to wait while a live lease holds the key, or takes the key with a lease of its own. A
//! lease outlives the create it covers (see [`lease_for`]) and is renewed while the create runs;
//! before the create is sent the holder checks that its lease has room for one whole upstream
//! attempt. A holder that dies leaves its lease to expire, and an expired lease is read as an
//! *unknown* outcome, never as a free key: the next claim (on any replica) takes it over with
//! the first attempt's reference and looks the link up before creating anything.
//!
//! The happy path is two round trips: the claim, and the outcome. Waiters poll the entry with
//! backoff (one small `HMGET` each); a key is rarely contended.
//!
//! Bounds, per tenant, as in this process's store: at most `max_per_tenant` entries and
//! `max_bytes_per_tenant` bytes (an entry is charged [`ENTRY_OVERHEAD`] plus its payload). Room
//! is made by dropping the tenant's oldest finished entry (created, unknown, or a dead holder's
//! lease), never a live lease; a tenant whose every entry in reach is a live lease is told to
//! wait (`rate_limited`). A created result too large for the bytes is kept as an unknown outcome
//! with its reference. Store-wide bounds are Redis's own (`maxmemory`). The number of creates in
//! flight per tenant is bounded per replica by the HTTP gate, not here.
//!
//! Keys (see the layout in [`crate::store`]): `paylink:v1:idem:{S}:e:<id>` (hash: `a` arguments
//! hash, `s` state `L`/`C`/`U`, `r` reference, `o` the last claim's owner, `x` its lease's
//! expiry in Redis's milliseconds, `p` whether it took over an unknown outcome, `v` the
//! created link), `...:index` (the entries by claim time) and `...:book`
//! (bytes per entry, `#` in all). Every one expires 24 h after the claim that wrote it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::entries::Outcome;
use super::keys::{Claimed, Hold, IdempotencyKeys};
use super::limits::{ENTRY_OVERHEAD, KEY_TTL, REFERENCE_BYTES, SMALL_ENTRY, StoreLimits};
use super::local::LocalData;
use super::store::entry_hex;
use crate::error::{Error, Result, UpstreamContext};
use crate::observability::metrics;
use crate::store::{Family, Store, StoreError};

mod scripts;

use scripts::{CLAIM_SCRIPT, FINISH_SCRIPT, RENEW_SCRIPT};

const FAMILY: Family = Family::new("idem");

/// Scans for an entry to drop: at most this many of the tenant's oldest.
const EVICT_SCAN: usize = 128;

/// How long a claim holds its key without renewal: two upstream attempts and five seconds.
/// Before it sends the create a holder makes sure one whole attempt fits in what is left, so by
/// the time a lease lapses, the create it covered has been answered or given up on.
pub(crate) fn lease_for(attempt_timeout: Duration) -> Duration {
    attempt_timeout * 2 + Duration::from_secs(5)
}

/// The three keys of one entry: the entry, the tenant's index and book; and the entry prefix.
#[derive(Clone)]
struct EntryKeys {
    entry: String,
    index: String,
    book: String,
    prefix: String,
    id: String,
}

impl EntryKeys {
    fn new(scope: &str, key: &str) -> Self {
        let id = entry_hex(scope, key);
        let prefix = FAMILY.tenant_key(scope, "e:");
        EntryKeys {
            entry: format!("{prefix}{id}"),
            index: FAMILY.tenant_key(scope, "index"),
            book: FAMILY.tenant_key(scope, "book"),
            prefix,
            id,
        }
    }
}

/// Idempotency keys in the shared store.
pub(crate) struct SharedKeys {
    store: Store,
    limits: StoreLimits,
    lease: Duration,
    /// What one upstream attempt may take: a holder sends only with this much lease left.
    attempt: Duration,
}

impl SharedKeys {
    /// `attempt_timeout` is the upstream's, which the lease is sized from.
    pub(crate) fn new(store: Store, limits: StoreLimits, attempt_timeout: Duration) -> Self {
        SharedKeys {
            store,
            limits: limits.normalized(),
            lease: lease_for(attempt_timeout),
            attempt: attempt_timeout,
        }
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    async fn claim_once(
        &self,
        keys: &EntryKeys,
        args: &str,
        owner: &str,
        reference: &str,
    ) -> Result<Vec<String>> {
        let mut inv = CLAIM_SCRIPT.prepare();
        inv.key(&keys.entry).key(&keys.index).key(&keys.book);
        inv.arg(args)
            .arg(owner)
            .arg(reference)
            .arg(Self::ms(self.lease))
            .arg(Self::ms(KEY_TTL))
            .arg(&keys.id)
            .arg(&keys.prefix)
            .arg(self.limits.max_per_tenant)
            .arg(self.limits.max_bytes_per_tenant)
            .arg(SMALL_ENTRY)
            .arg(EVICT_SCAN);
        match self.store.invoke(CLAIM_SCRIPT.op, &inv).await {
            Ok(answer) => Ok(answer),
            Err(e) => {
                // Redis may still apply a claim it did not answer in time: the key would then
                // be leased to a call that has given up. Nothing was sent, so release it (only
                // if it is still this claim's) once the store answers again.
                if matches!(e, StoreError::Timeout | StoreError::Unreachable(_)) {
                    tokio::spawn(release_later(
                        self.store.clone(),
                        keys.clone(),
                        owner.to_owned(),
                        self.limits,
                    ));
                }
                Err(e.unavailable("claim this idempotency_key"))
            }
        }
    }

    /// Waits (polling the entry with backoff) until the entry stops being a live lease of
    /// another call, or `for_ms` has passed. Store failures end the wait: the next claim
    /// reports them.
    async fn await_change(&self, keys: &EntryKeys, for_ms: u64) {
        let until = Instant::now() + Duration::from_millis(for_ms);
        let mut pause = Duration::from_millis(10);
        while Instant::now() < until {
            tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(250));
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&keys.entry).arg("s");
            match self
                .store
                .command::<Option<String>>("idempotency_poll", &cmd)
                .await
            {
                Ok(Some(state)) if state == "L" => {}
                _ => return,
            }
        }
    }
}

fn dropped_unknown(references: &[String]) {
    for reference in references {
        tracing::warn!(
            reference = %reference,
            "idempotency: dropped the oldest unknown outcome to stay within bounds; a repeat of its key will create without first looking for the link (search the upstream for this reference)"
        );
        metrics::idempotency_evicted("unknown");
    }
}

fn busy() -> Error {
    Error::rate_limited(
        "this caller's idempotency keys are all held by creates in flight; wait for one to finish, then call again",
        Some(1),
        UpstreamContext::default(),
    )
}

#[async_trait]
impl IdempotencyKeys for SharedKeys {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        args: [u8; 32],
        reference: String,
    ) -> Result<Claimed> {
        let keys = EntryKeys::new(scope, key);
        let args: String = args.iter().map(|b| format!("{b:02x}")).collect();
        let owner = uuid::Uuid::new_v4().simple().to_string();
        // Waiting is bounded: a live holder renews its lease for as long as its create runs,
        // which is bounded by the upstream's timeouts; past twice a lease, give up and say so.
        let give_up = Instant::now() + self.lease * 2;
        loop {
            let sent = Instant::now();
            let answer = self.claim_once(&keys, &args, &owner, &reference).await?;
            match answer.first().map(String::as_str) {
                Some("run") if answer.len() >= 4 => {
                    dropped_unknown(&answer[4..]);
                    return Ok(Claimed::Run(Box::new(SharedHold::start(
                        self,
                        keys,
                        owner,
                        answer[1].clone(),
                        (answer[2] == "1", from_hex(&answer[3])),
                        sent,
                    ))));
                }
                Some("replay") => {
                    let text = answer.get(1).map_or("", String::as_str);
                    return Ok(Claimed::Done(super::store::created(text)));
                }
                Some("conflict") => return Err(super::store::conflict()),
                Some("busy") => return Err(busy()),
                Some("wait") if Instant::now() < give_up => {
                    let ms = answer.get(1).and_then(|m| m.parse().ok()).unwrap_or(1000);
                    self.await_change(&keys, ms).await;
                }
                Some("wait") => {
                    return Err(Error::internal_retryable(
                        "another call with this idempotency_key is still running; call again with the same key in a moment",
                    ));
                }
                _ => {
                    return Err(StoreError::Server("unexpected claim answer".into())
                        .unavailable("claim this idempotency_key"));
                }
            }
        }
    }

    fn local_scope(&self, data: &LocalData, tenant: &str) -> String {
        // Entries against this process's data cannot be found by another process anyway; the
        // process's own nonce in the name keeps a later process from meeting them.
        data.name(tenant)
    }

    async fn ready(&self) -> Result<()> {
        self.store
            .ping()
            .await
            .map_err(|e| e.unavailable("accept a write"))
    }
}

/// A claim in the shared store, renewed in the background while the create runs.
struct SharedHold {
    store: Store,
    keys: Arc<EntryKeys>,
    owner: Arc<str>,
    reference: String,
    previous_unknown: bool,
    /// What the earlier attempt with an unknown outcome sent, as kept in the store.
    previous_sent: Option<[u8; 32]>,
    /// What this call is sending, kept with an unknown outcome.
    sent: Option<[u8; 32]>,
    lease: Duration,
    attempt: Duration,
    limits: StoreLimits,
    /// Until when the lease is surely ours (our clock, from before the claim or renewal left).
    held_until: Arc<Mutex<Instant>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    done: bool,
}

impl SharedHold {
    fn start(
        keys_store: &SharedKeys,
        keys: EntryKeys,
        owner: String,
        reference: String,
        (previous_unknown, previous_sent): (bool, Option<[u8; 32]>),
        sent: Instant,
    ) -> Self {
        let keys = Arc::new(keys);
        let owner: Arc<str> = Arc::from(owner);
        let held_until = Arc::new(Mutex::new(sent + keys_store.lease));
        let renewer = tokio::spawn(renew_loop(
            keys_store.store.clone(),
            keys.clone(),
            owner.clone(),
            keys_store.lease,
            held_until.clone(),
        ));
        SharedHold {
            store: keys_store.store.clone(),
            keys,
            owner,
            reference,
            previous_unknown,
            previous_sent,
            sent: None,
            lease: keys_store.lease,
            attempt: keys_store.attempt,
            limits: keys_store.limits,
            held_until,
            renewer: Some(renewer),
            done: false,
        }
    }

    fn held_until(&self) -> Instant {
        *self.held_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn finish(
        &self,
        state: &str,
        value: &str,
        bytes: usize,
    ) -> std::result::Result<Vec<String>, StoreError> {
        finish(
            &self.store,
            &self.keys,
            &self.owner,
            state,
            value,
            bytes,
            &self.limits,
        )
        .await
    }
}

async fn finish(
    store: &Store,
    keys: &EntryKeys,
    owner: &str,
    state: &str,
    value: &str,
    bytes: usize,
    limits: &StoreLimits,
) -> std::result::Result<Vec<String>, StoreError> {
    let mut inv = FINISH_SCRIPT.prepare();
    inv.key(&keys.entry).key(&keys.index).key(&keys.book);
    inv.arg(owner)
        .arg(state)
        .arg(value)
        .arg(&keys.id)
        .arg(bytes)
        .arg(limits.max_bytes_per_tenant)
        .arg(SMALL_ENTRY)
        .arg(&keys.prefix)
        .arg(EVICT_SCAN);
    store.invoke(FINISH_SCRIPT.op, &inv).await
}

/// Releases a claim that may have been applied after its caller gave up (see
/// `SharedKeys::claim_once`): a few tries, a second apart and doubling, then the lease is left
/// to lapse (into an unknown outcome, which a repeat looks up before creating).
async fn release_later(store: Store, keys: EntryKeys, owner: String, limits: StoreLimits) {
    let mut pause = Duration::from_secs(1);
    for _ in 0..5 {
        tokio::time::sleep(pause).await;
        if finish(&store, &keys, &owner, "F", "", 0, &limits)
            .await
            .is_ok()
        {
            return;
        }
        pause *= 2;
    }
}

/// Renews the lease every third of it until aborted (the hold completes or drops).
async fn renew_loop(
    store: Store,
    keys: Arc<EntryKeys>,
    owner: Arc<str>,
    lease: Duration,
    held_until: Arc<Mutex<Instant>>,
) {
    loop {
        tokio::time::sleep(lease / 3).await;
        if renew(&store, &keys, &owner, lease, &held_until).await == Some(false) {
            // Taken over: the lease is no longer ours; nothing left to renew.
            return;
        }
    }
}

/// One renewal: `Some(true)` renewed, `Some(false)` the key is no longer ours, `None` the
/// store did not answer.
async fn renew(
    store: &Store,
    keys: &EntryKeys,
    owner: &str,
    lease: Duration,
    held_until: &Mutex<Instant>,
) -> Option<bool> {
    let sent = Instant::now();
    let mut inv = RENEW_SCRIPT.prepare();
    inv.key(&keys.entry).arg(owner).arg(SharedKeys::ms(lease));
    match store.invoke::<i64>(RENEW_SCRIPT.op, &inv).await {
        Ok(1) => {
            *held_until.lock().unwrap_or_else(|p| p.into_inner()) = sent + lease;
            Some(true)
        }
        Ok(_) => Some(false),
        Err(_) => None,
    }
}

#[async_trait]
impl Hold for SharedHold {
    fn reference(&self) -> &str {
        &self.reference
    }

    fn previous_unknown(&self) -> bool {
        self.previous_unknown
    }

    fn previous_sent(&self) -> Option<[u8; 32]> {
        self.previous_sent
    }

    fn sending(&mut self, sent: Option<[u8; 32]>) {
        self.sent = sent;
    }

    async fn complete_unknown(self: Box<Self>) {
        let outcome = Outcome::Unknown {
            reference: self.reference.clone(),
            sent: self.sent,
        };
        self.complete(outcome).await;
    }

    async fn before_send(&mut self) -> Result<()> {
        // One attempt and a margin must fit in the lease, or another replica could take the key
        // over (and look for the link, then create it) while ours is still on its way.
        let needed = self.attempt + Duration::from_secs(2);
        if self.held_until().saturating_duration_since(Instant::now()) >= needed {
            return Ok(());
        }
        match renew(
            &self.store,
            &self.keys,
            &self.owner,
            self.lease,
            &self.held_until,
        )
        .await
        {
            Some(true) => Ok(()),
            Some(false) => Err(Error::internal_retryable(
                "this call took too long and another call with the same idempotency_key took over; nothing was sent. Call again with the same key",
            )),
            None => Err(StoreError::Timeout.unavailable("keep its claim on this idempotency_key")),
        }
    }

    async fn complete(mut self: Box<Self>, outcome: Outcome) {
        self.done = true;
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let (state, value, bytes) = match &outcome {
            Outcome::Created(v) => {
                let text = v.to_string();
                let bytes = ENTRY_OVERHEAD + text.len();
                ("C", text, bytes)
            }
            Outcome::Unknown { reference, sent } => (
                "U",
                sent.map(|d| to_hex(&d)).unwrap_or_default(),
                ENTRY_OVERHEAD + reference.len().max(REFERENCE_BYTES),
            ),
            Outcome::Failed(_) => ("F", String::new(), 0),
        };
        match self.finish(state, &value, bytes).await {
            Ok(answer) => {
                if answer.first().map(String::as_str) == Some("lost") {
                    tracing::warn!(reference = %self.reference, "idempotency: a create ended after another call took its key over; its outcome was not recorded");
                }
                dropped_unknown(answer.get(1..).unwrap_or_default());
            }
            // The key stays leased until the lease lapses, then reads as unknown: a repeat
            // looks the link up first. Nothing is lost but a replay.
            Err(e) => {
                tracing::warn!(reference = %self.reference, error = %e, "idempotency: the outcome of a create could not be recorded in the shared store; a repeat of its key will look the link up first")
            }
        }
    }

    fn release(mut self: Box<Self>) {
        self.done = true;
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        // Deleting the entry is the whole of it. Not done, the lease lapses into an unknown
        // outcome, which a repeat looks up first.
        self.finish_in_background("F", String::new(), 0);
    }
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if self.done {
            return;
        }
        // Cancelled before an outcome: record it as unknown now rather than when the lease
        // lapses, so a waiting twin or a repeat looks the link up at once.
        let bytes = ENTRY_OVERHEAD + self.reference.len().max(REFERENCE_BYTES);
        let sent = self.sent.map(|d| to_hex(&d)).unwrap_or_default();
        self.finish_in_background("U", sent, bytes);
    }
}

impl SharedHold {
    /// Records `state` without waiting for the store: for where nothing can wait (a question
    /// going back to the client, a drop). Outside a runtime (the process ending), the lease
    /// lapses instead.
    fn finish_in_background(&self, state: &'static str, value: String, bytes: usize) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (store, keys, owner, limits) = (
                self.store.clone(),
                self.keys.clone(),
                self.owner.clone(),
                self.limits,
            );
            handle.spawn(async move {
                let _ = finish(&store, &keys, &owner, state, &value, bytes, &limits).await;
            });
        }
    }
}

fn to_hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest kept as hex; anything else (nothing kept) is `None`.
fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod digest_tests {
    use super::{from_hex, to_hex};

    #[test]
    fn a_digest_reads_back_from_its_hex_and_nothing_else_reads_as_one() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        for bad in ["", "00", &"zz".repeat(32), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }
}
