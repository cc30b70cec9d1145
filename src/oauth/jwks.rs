//! The issuer's signing keys (JWKS), fetched on first need and cached.
//!
//! - The metadata is discovered on the first fetch, not at start-up: the server starts while the
//!   authorization server is briefly down, and the first token finds out (503, never a crash).
//! - A token naming a key id the cached set lacks triggers one refetch, at most one per
//!   `--oauth-jwks-min-refresh-secs` (failed fetches count too: a dead issuer is not hammered),
//!   and concurrent tokens share that one fetch.
//! - A set older than [`MAX_AGE`] (or half the hard limit, if that is shorter) is fetched again on
//!   next use, so that removed keys stop being trusted. If that fetch fails the old set is used
//!   on, but only up to the hard limit (`--oauth-jwks-max-stale-secs`) after it was fetched: a key
//!   the issuer removed while this server could not reach it is not trusted for ever.
//! - No set, or one past the hard limit, and no way to get one: [`Unavailable`], with how long to
//!   wait.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::Value;
use tokio::time::Instant;

use super::fetch::IdpClient;
use super::metadata::{IssuerMetadata, discover};

/// A key set older than this is fetched again on next use.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(600);

/// The issuer's keys cannot be had now; retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable(pub Duration);

/// Where key sets come from.
#[async_trait]
pub(crate) trait KeySource: Send + Sync {
    /// Fetches the key set now. `Err` says why (for the log; never a token).
    async fn fetch(&self) -> Result<JwkSet, String>;
}

/// One fetched key set.
#[derive(Clone)]
pub(crate) struct Snapshot {
    pub set: Arc<JwkSet>,
    fetched: Instant,
    generation: u64,
}

struct Attempts {
    last: Option<Instant>,
    last_failed: bool,
    generation: u64,
    /// The set's passing the hard limit is logged once, not on every request after it.
    stale_reported: bool,
}

/// The cache.
pub(crate) struct Keys {
    source: Box<dyn KeySource>,
    min_refresh: Duration,
    /// Longest a set is trusted after it was fetched, however the refreshes fare.
    max_stale: Duration,
    current: RwLock<Option<Snapshot>>,
    /// Held while fetching: one fetch at a time, and the record of the last one.
    attempts: tokio::sync::Mutex<Attempts>,
}

impl Keys {
    /// `min_refresh`: fewest time between two fetches; `max_stale`: longest a fetched set is
    /// trusted (at least twice `min_refresh`, as the settings check, so that a refresh is allowed
    /// well before the limit).
    pub(crate) fn new(
        source: Box<dyn KeySource>,
        min_refresh: Duration,
        max_stale: Duration,
    ) -> Self {
        Keys {
            source,
            min_refresh,
            max_stale,
            current: RwLock::new(None),
            attempts: tokio::sync::Mutex::new(Attempts {
                last: None,
                last_failed: false,
                generation: 0,
                stale_reported: false,
            }),
        }
    }

    /// Age from which a set is fetched again on next use: halfway to the hard limit at the
    /// latest, so that a short outage at refresh time does not reach it.
    fn refresh_after(&self) -> Duration {
        MAX_AGE.min(self.max_stale / 2)
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current key set: the cached one, or fetched now if there is none or it is old.
    pub(crate) async fn current(&self) -> Result<Snapshot, Unavailable> {
        let fresh = |s: &Snapshot| s.fetched.elapsed() < self.refresh_after();
        if let Some(s) = self.snapshot().filter(fresh) {
            return Ok(s);
        }
        let mut attempts = self.attempts.lock().await;
        let cached = self.snapshot();
        if let Some(s) = cached.clone().filter(fresh) {
            return Ok(s);
        }
        let failed = match self.too_soon(&attempts) {
            Some(wait) => Unavailable(wait),
            None => match self.fetch(&mut attempts).await {
                Ok(s) => return Ok(s),
                Err(u) => u,
            },
        };
        match cached {
            // The old set is still the issuer's last word: better than refusing everyone, until
            // the hard limit.
            Some(s) if s.fetched.elapsed() < self.max_stale => Ok(s),
            Some(s) => {
                if !attempts.stale_reported {
                    attempts.stale_reported = true;
                    tracing::error!(
                        "the OAuth issuer's keys were last fetched {} s ago, longer than --oauth-jwks-max-stale-secs ({} s): every token is refused (503) until they can be fetched again",
                        s.fetched.elapsed().as_secs(),
                        self.max_stale.as_secs()
                    );
                }
                Err(failed)
            }
            None => Err(failed),
        }
    }

    /// After a token named a key id that `seen` lacks: a newer set, fetched now unless one was
    /// fetched within the refetch interval. `Ok(None)`: no newer set (the key id is unknown).
    pub(crate) async fn after_unknown_key(
        &self,
        seen: &Snapshot,
    ) -> Result<Option<Snapshot>, Unavailable> {
        let mut attempts = self.attempts.lock().await;
        if let Some(s) = self.snapshot().filter(|s| s.generation != seen.generation) {
            // Another request refetched while this one waited.
            return Ok(Some(s));
        }
        if let Some(wait) = self.too_soon(&attempts) {
            // Only a failed fetch leaves the question open; after a good one the answer stands.
            return if attempts.last_failed {
                Err(Unavailable(wait))
            } else {
                Ok(None)
            };
        }
        self.fetch(&mut attempts).await.map(Some)
    }

    /// How long until the next fetch is allowed, if it is not now.
    fn too_soon(&self, attempts: &Attempts) -> Option<Duration> {
        let since = attempts.last?.elapsed();
        (since < self.min_refresh).then(|| (self.min_refresh - since).max(Duration::from_secs(1)))
    }

    async fn fetch(&self, attempts: &mut Attempts) -> Result<Snapshot, Unavailable> {
        attempts.last = Some(Instant::now());
        match self.source.fetch().await {
            Ok(set) => {
                attempts.last_failed = false;
                attempts.stale_reported = false;
                attempts.generation += 1;
                let snapshot = Snapshot {
                    set: Arc::new(set),
                    fetched: Instant::now(),
                    generation: attempts.generation,
                };
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
                Ok(snapshot)
            }
            Err(why) => {
                attempts.last_failed = true;
                tracing::warn!("cannot fetch the OAuth issuer's keys: {why}");
                Err(Unavailable(self.min_refresh.max(Duration::from_secs(1))))
            }
        }
    }
}

/// The production source: the issuer's metadata (discovered once, again after a failure), then
/// its `jwks_uri`.
pub(crate) struct IssuerKeys {
    client: Arc<IdpClient>,
    issuer: String,
    metadata: tokio::sync::Mutex<Option<IssuerMetadata>>,
}

impl IssuerKeys {
    pub(crate) fn new(client: Arc<IdpClient>, issuer: String) -> Self {
        IssuerKeys {
            client,
            issuer,
            metadata: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl KeySource for IssuerKeys {
    async fn fetch(&self) -> Result<JwkSet, String> {
        let mut metadata = self.metadata.lock().await;
        let jwks_uri = match &*metadata {
            Some(m) => m.jwks_uri.clone(),
            None => {
                let found = discover(&self.client, &self.issuer)
                    .await
                    .map_err(|why| format!("issuer metadata: {why}"))?;
                tracing::info!(jwks_uri = %found.jwks_uri, "OAuth issuer metadata read");
                let uri = found.jwks_uri.clone();
                *metadata = Some(found);
                uri
            }
        };
        match self.client.get_json(&jwks_uri).await {
            Ok(doc) => parse_set(&doc).map_err(|why| format!("{jwks_uri}: {why}")),
            Err(e) => {
                // The keys moved, perhaps: read the metadata again next time.
                *metadata = None;
                Err(format!("{jwks_uri}: {e}"))
            }
        }
    }
}

/// A JWKS document, leniently: a key this server cannot read (an unknown type, an encryption
/// key with an unknown `alg`) is skipped rather than spoiling the whole set.
pub(crate) fn parse_set(doc: &Value) -> Result<JwkSet, &'static str> {
    let keys = doc["keys"].as_array().ok_or("no `keys` array")?;
    Ok(JwkSet {
        keys: keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Serves scripted answers and counts fetches.
    struct Script {
        fetches: Arc<AtomicUsize>,
        answers: Mutex<Vec<Result<JwkSet, String>>>,
    }

    #[async_trait]
    impl KeySource for Script {
        async fn fetch(&self) -> Result<JwkSet, String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            }
        }
    }

    fn set(kids: &[&str]) -> JwkSet {
        let keys: Vec<Value> = kids
            .iter()
            .map(|k| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": k, "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
            .collect();
        parse_set(&serde_json::json!({ "keys": keys })).unwrap()
    }

    fn keys(answers: Vec<Result<JwkSet, String>>, min: u64) -> (Keys, Arc<AtomicUsize>) {
        keys_trusted_for(answers, min, 86_400)
    }

    fn keys_trusted_for(
        answers: Vec<Result<JwkSet, String>>,
        min: u64,
        max_stale: u64,
    ) -> (Keys, Arc<AtomicUsize>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = Script {
            fetches: fetches.clone(),
            answers: Mutex::new(answers),
        };
        (
            Keys::new(
                Box::new(source),
                Duration::from_secs(min),
                Duration::from_secs(max_stale),
            ),
            fetches,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_key_refetches_at_most_once_per_interval() {
        let (keys, fetches) = keys(vec![Ok(set(&["a"])), Ok(set(&["a", "b"]))], 5);
        let first = keys.current().await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Cached: no fetch.
        keys.current().await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Within the interval: no refetch, and the kid stays unknown.
        assert!(keys.after_unknown_key(&first).await.unwrap().is_none());
        assert!(keys.after_unknown_key(&first).await.unwrap().is_none());
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        let second = keys.after_unknown_key(&first).await.unwrap().unwrap();
        assert!(second.set.find("b").is_some());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // A request that saw the old set gets the new one without a fetch.
        let again = keys.after_unknown_key(&first).await.unwrap().unwrap();
        assert_eq!(again.generation, second.generation);
        // Many unknown kids at once: still one fetch per interval.
        tokio::time::advance(Duration::from_secs(5)).await;
        let keys = Arc::new(keys);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (keys, seen) = (keys.clone(), second.clone());
            tasks.spawn(async move { keys.after_unknown_key(&seen).await.map(|s| s.is_some()) });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap(), Ok(true));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_issuer_is_unavailable_and_not_hammered() {
        let (keys, fetches) = keys(vec![Err("down".into()), Ok(set(&["a"]))], 5);
        assert_eq!(
            keys.current().await.err(),
            Some(Unavailable(Duration::from_secs(5)))
        );
        // Asked again at once: no fetch, the rest of the interval to wait.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            keys.current().await.err(),
            Some(Unavailable(Duration::from_secs(3)))
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(3)).await;
        let got = keys.current().await.unwrap();
        assert!(got.set.find("a").is_some());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_set_is_refreshed_and_kept_if_the_issuer_is_down() {
        let (keys, fetches) = keys(
            vec![Ok(set(&["a"])), Err("down".into()), Ok(set(&["c"]))],
            0,
        );
        keys.current().await.unwrap();
        tokio::time::advance(MAX_AGE).await;
        // The refresh fails: the old set serves on.
        assert!(keys.current().await.unwrap().set.find("a").is_some());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // Asked again (interval 0): fetched again, and the new set replaces the old.
        let seen = keys.current().await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
        assert!(seen.set.find("c").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_past_the_hard_limit_is_not_trusted() {
        let down = || Err("down".to_owned());
        // Trusted for 20 s: fetched again from 10 s on.
        let (keys, fetches) = keys_trusted_for(
            vec![Ok(set(&["a"])), down(), down(), down(), Ok(set(&["b"]))],
            1,
            20,
        );
        keys.current().await.unwrap();
        tokio::time::advance(Duration::from_secs(9)).await;
        keys.current().await.unwrap();
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "fresh until half the limit"
        );
        // From 10 s the refresh fails; the old set serves on up to the limit.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(keys.current().await.unwrap().set.find("a").is_some());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(keys.current().await.unwrap().set.find("a").is_some());
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
        // At the limit, with the issuer still down: refused, however often asked.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            keys.current().await.err(),
            Some(Unavailable(Duration::from_secs(1)))
        );
        assert_eq!(
            keys.current().await.err(),
            Some(Unavailable(Duration::from_secs(1)))
        );
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            4,
            "the second within the interval"
        );
        // The issuer is back: the new set, trusted again.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(keys.current().await.unwrap().set.find("b").is_some());
        assert_eq!(fetches.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_key_while_the_issuer_is_down_is_unavailable() {
        let (keys, _) = keys(vec![Ok(set(&["a"])), Err("down".into())], 5);
        let first = keys.current().await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            keys.after_unknown_key(&first).await.err(),
            Some(Unavailable(Duration::from_secs(5)))
        );
        assert_eq!(
            keys.after_unknown_key(&first).await.err(),
            Some(Unavailable(Duration::from_secs(5)))
        );
    }

    #[test]
    fn unreadable_keys_are_skipped_not_fatal() {
        let doc = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ok", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "weird", "kid": "w"},
            {"kty": "RSA", "kid": "enc", "alg": "RSA-OAEP-512-X", "n": "AQAB", "e": "AQAB"},
            "not an object"
        ]});
        let set = parse_set(&doc).unwrap();
        assert!(set.find("ok").is_some());
        assert!(parse_set(&serde_json::json!({})).is_err());
    }
}
