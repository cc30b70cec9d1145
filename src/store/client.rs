//! The connection to Redis and the one way every operation goes through it: [`Store::invoke`]
//! (a Lua script) or [`Store::command`] (a plain command), each under the per-operation
//! deadline, timed and counted for `/metrics`, its failure classified ([`StoreError`]).
//!
//! One [`ConnectionManager`]: a single multiplexed connection on which concurrent operations
//! pipeline, reconnecting by itself with backoff after Redis goes away, so the server recovers
//! without a restart. It is opened lazily, on the first operation, inside the runtime (it spawns
//! its reader task there); nothing connects at start-up, so a server whose Redis is down still
//! starts and serves reads.
//!
//! The deadline is ours, around every operation, not only the client's response timeout: while
//! the manager reconnects, an operation awaits the whole reconnection (retries and backoff), which
//! can take far longer than one response timeout.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, ScriptInvocation};
use tokio::sync::OnceCell;

use super::url::StoreUrl;
use crate::error::Error;
use crate::observability::metrics;

/// The default deadline of one store operation: a few round trips on a LAN, far below what a
/// caller notices, and short enough that a dead Redis costs a write a quarter of a second.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// After a failed operation, operations that may do without the store (the abuse limits, which
/// fail open) skip it for this long rather than each wait for the deadline again.
const FAIL_OPEN_PAUSE: Duration = Duration::from_secs(1);

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// Our deadline passed. For a write the outcome is unknown: Redis may still apply it.
    Timeout,
    /// Redis is unreachable, the connection dropped, or it refused the connection.
    Unreachable(String),
    /// Redis answered with an error (out of memory, a script error, a wrong type).
    Server(String),
}

impl StoreError {
    /// The label of `paylink_store_operations_total{outcome}`.
    fn outcome(&self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::Unreachable(_) => "unreachable",
            StoreError::Server(_) => "error",
        }
    }

    /// The caller's error: `unavailable`, retry-safe, saying what could not be done. Nothing was
    /// sent upstream when this is returned before the upstream call, which is where every
    /// caller returns it.
    pub(crate) fn unavailable(&self, doing: &str) -> Error {
        let why = match self {
            StoreError::Timeout => "did not answer in time",
            StoreError::Unreachable(_) => "is unreachable",
            StoreError::Server(_) => "refused the operation",
        };
        Error::unavailable(format!(
            "this server's shared store {why}, so it could not {doing}; nothing was sent to the payments API. Call again in a moment (the same call is safe to repeat)"
        ))
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("the operation timed out"),
            StoreError::Unreachable(m) => write!(f, "unreachable: {m}"),
            StoreError::Server(m) => write!(f, "server error: {m}"),
        }
    }
}

/// A Lua script of one key family, with the name its operations are counted under. Build it once
/// (a `static` `LazyLock`): the SHA-1 the script runs by is computed when it is built.
pub(crate) struct Script {
    /// The `op` label of the store metrics: a fixed name, never data.
    pub op: &'static str,
    script: redis::Script,
}

impl Script {
    pub(crate) fn new(op: &'static str, code: &str) -> Self {
        Script {
            op,
            script: redis::Script::new(code),
        }
    }

    /// An invocation to add keys and arguments to, then to pass to [`Store::invoke`].
    pub(crate) fn prepare(&self) -> ScriptInvocation<'_> {
        self.script.prepare_invoke()
    }
}

/// The shared store: cheap to clone (clones share the connection).
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    url: StoreUrl,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
    /// Milliseconds since `epoch` of the last failure, 0 when the last operation succeeded.
    failed_at: AtomicU64,
    /// Whether the store is known to be down (to log the change once, not every failure).
    down: AtomicBool,
    epoch: Instant,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.url.redacted())
    }
}

impl Store {
    /// A store at `url` with `timeout` per operation. Checks the URL; opens nothing.
    pub(crate) fn new(url: StoreUrl, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url.expose()).map_err(|e| {
            format!(
                "the store URL {} cannot be used: {}",
                url.redacted(),
                url.scrub(&e.to_string())
            )
        })?;
        Ok(Store {
            inner: Arc::new(Inner {
                url,
                client,
                conn: OnceCell::new(),
                timeout,
                failed_at: AtomicU64::new(0),
                down: AtomicBool::new(false),
                epoch: Instant::now(),
            }),
        })
    }

    /// The URL, redacted, for logs.
    pub(crate) fn redacted_url(&self) -> &str {
        self.inner.url.redacted()
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let inner = &self.inner;
        inner
            .conn
            .get_or_try_init(|| async {
                if inner.url.is_tls() {
                    // rediss:// builds its rustls config from the process's default provider;
                    // the upstream client installs the same one (ring). Whoever comes first wins.
                    let _ = rustls::crypto::ring::default_provider().install_default();
                }
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.timeout))
                    .set_response_timeout(Some(inner.timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(inner.client.clone(), config)
                    .map_err(|e| self.classify(&e))
            })
            .await
            .cloned()
    }

    fn classify(&self, e: &RedisError) -> StoreError {
        let text = self.inner.url.scrub(&e.to_string());
        if e.is_timeout() {
            StoreError::Timeout
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            StoreError::Unreachable(text)
        } else {
            StoreError::Server(text)
        }
    }

    /// Runs one operation under the deadline, recording its time and outcome as `op`.
    ///
    /// An operation that finds the connection gone (Redis restarted: the first write on the old
    /// socket fails) is sent once more, on the connection the manager opens meanwhile, within
    /// the same deadline. So every operation must be safe to run twice: Redis may have applied
    /// the first one before the connection dropped.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let once = || async {
            let conn = self.connection().await?;
            f(conn).await.map_err(|e| self.classify(&e))
        };
        let result = match tokio::time::timeout(self.inner.timeout, async {
            match once().await {
                Err(StoreError::Unreachable(_)) => once().await,
                other => other,
            }
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::store_operation(op, outcome, started.elapsed());
        match &result {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(op, e),
        }
        result
    }

    fn succeeded(&self) {
        self.inner.failed_at.store(0, Ordering::Relaxed);
        if self.inner.down.swap(false, Ordering::Relaxed) {
            tracing::info!(store = %self.redacted_url(), "the shared store answers again");
        }
    }

    fn failed(&self, op: &'static str, e: &StoreError) {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.failed_at.store(now.max(1), Ordering::Relaxed);
        if !self.inner.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(store = %self.redacted_url(), op, error = %e, "the shared store failed; writes are refused (unavailable) and limits fail open until it answers again");
        } else {
            tracing::debug!(op, error = %e, "a store operation failed");
        }
    }

    /// Whether an operation failed within the last second: callers that fail open skip the
    /// store meanwhile. The next operation of any other caller (a write) probes it again.
    pub(crate) fn recently_failed(&self) -> bool {
        let at = self.inner.failed_at.load(Ordering::Relaxed);
        at != 0
            && self.inner.epoch.elapsed().as_millis() as u64
                <= at + FAIL_OPEN_PAUSE.as_millis() as u64
    }

    /// Runs a script invocation.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.run(op, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs a plain command.
    pub(crate) async fn command<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.run(
            op,
            |mut conn| async move { cmd.query_async(&mut conn).await },
        )
        .await
    }

    /// Whether the store answers now (`PING`): what a write that keeps nothing in the store
    /// checks before it sends anything upstream.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.command::<String>("ping", &redis::cmd("PING"))
            .await
            .map(|_| ())
    }
}
