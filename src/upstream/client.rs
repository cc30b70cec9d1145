//! The HTTP client every REST backend sends through: one connection pool per base URL
//! ([`UpstreamPools`]), timeouts, the retry loop within the call's deadline, a capped body read,
//! and the errors of attempts that got no answer.
//!
//! It decides whether and when to try again (see [`super::retry`]); it must never read an
//! answer's meaning (that is the backend's [`ErrorDecoder`]) nor retry a write that may have
//! reached the upstream unless the backend marked it idempotent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::budget::{DEFAULT_MAX_PARSE_BYTES, ParseBudget, ParseCharge, READ_WAIT};
use super::json;
use super::request::{Body, RetryMode, UpstreamRequest};
use super::response::{ErrorDecoder, UpstreamResponse};
use super::retry::{full_jitter, retry_after, should_retry_response};
use super::scrub::Scrubber;
use crate::error::{Error, UpstreamContext};

/// Answers larger than this are cut off and reported, not buffered.
pub(crate) const DEFAULT_BODY_CAP: usize = 4 * 1024 * 1024;

/// Timeouts and retries, from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamSettings {
    pub connect_timeout: Duration,
    /// One attempt's timeout.
    pub attempt_timeout: Duration,
    /// The whole call's deadline, retries and waits included.
    pub deadline: Duration,
    pub max_retries: u32,
    /// First backoff step; doubles each retry, with full jitter.
    pub backoff_base: Duration,
    pub body_cap: usize,
    /// Bytes all answers being read at once may hold, bodies and decoded trees (0: no bound):
    /// the size of the [`ParseBudget`] a set of [`UpstreamPools`] shares.
    pub max_parse_bytes: usize,
}

impl UpstreamSettings {
    /// The defaults, which the command line's defaults are read from.
    pub(crate) const DEFAULT: UpstreamSettings = UpstreamSettings {
        connect_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(15),
        deadline: Duration::from_secs(30),
        max_retries: 2,
        backoff_base: Duration::from_millis(200),
        body_cap: DEFAULT_BODY_CAP,
        max_parse_bytes: DEFAULT_MAX_PARSE_BYTES,
    };
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A connection pool to one base URL, shared by every tenant of that URL.
pub(crate) struct UpstreamClient {
    /// Built on first use: building it loads the machine's root certificates (milliseconds of
    /// file reading and parsing), which a server that starts for every Claude Desktop launch
    /// should not pay before its first upstream call.
    http: OnceLock<Result<reqwest::Client, String>>,
    base: String,
    settings: UpstreamSettings,
    /// Shared by every pool of the process (see [`UpstreamPools`]).
    budget: Arc<ParseBudget>,
}

/// One failed attempt, before it becomes an [`Error`].
enum AttemptError {
    /// Nothing reached the upstream.
    Connect(String),
    /// Sent (or maybe sent) but no complete answer: timeout, reset.
    Transport { timeout: bool, message: String },
    /// The answer was larger than the cap.
    TooLarge,
    /// The answer came, but the process's parse budget had no room for it within the wait.
    Busy,
}

impl UpstreamClient {
    /// [`new`](Self::new), charging answers to `budget`.
    pub(crate) fn with_budget(
        base: &str,
        settings: UpstreamSettings,
        budget: Arc<ParseBudget>,
    ) -> Self {
        UpstreamClient {
            http: OnceLock::new(),
            base: base.trim_end_matches('/').to_owned(),
            settings,
            budget,
        }
    }

    fn http(&self) -> Result<&reqwest::Client, Error> {
        self.http
            .get_or_init(|| {
                install_crypto_provider();
                reqwest::Client::builder()
                    .connect_timeout(self.settings.connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(90))
                    .tcp_nodelay(true)
                    .user_agent(concat!("paylink-mcp/", env!("CARGO_PKG_VERSION")))
                    // Never follow a redirect: it could carry the auth header to another host.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| Error::internal(e.clone()))
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends `request`, retrying as its [`RetryMode`] allows, within the deadline. A 2xx answer
    /// is returned; anything else becomes an [`Error`] via `decoder`.
    pub(crate) async fn send(
        &self,
        request: &UpstreamRequest,
        decoder: &dyn ErrorDecoder,
        scrubber: &Scrubber,
    ) -> Result<UpstreamResponse, Error> {
        let http = self.http()?;
        let started = Instant::now();
        let deadline = started + self.settings.deadline;
        let name = decoder.upstream_name();
        let mut attempt: u32 = 0;
        // A write's attempt that may have reached the upstream and got no answer: a later
        // attempt that could not even connect does not make it "nothing was sent".
        let mut unanswered: Option<Error> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.deadline_error(name, request.retry));
            }
            let outcome = tokio::time::timeout(
                remaining,
                self.attempt(http, request, decoder, scrubber, remaining),
            )
            .await
            .unwrap_or_else(|_| {
                Err(AttemptError::Transport {
                    timeout: true,
                    message: "the call's deadline passed".into(),
                })
            });
            if let Ok(response) = &outcome {
                crate::observability::record::upstream_answer(
                    response.status.as_u16(),
                    response.request_id.as_deref(),
                );
            }
            let can_retry = attempt < self.settings.max_retries;
            let (retry, wait_hint, error) = match outcome {
                Ok(response) if response.status.is_success() => return Ok(response),
                Ok(response) => {
                    let error = decoder.decode_error(&response, request.retry);
                    let retry =
                        can_retry && should_retry_response(&response, request.retry, decoder);
                    (retry, retry_after(&response.headers), error)
                }
                Err(AttemptError::Connect(message)) => (
                    can_retry,
                    None,
                    unanswered.clone().unwrap_or_else(|| {
                        Error::upstream_retryable(
                            format!(
                                "could not connect to {name}: {message}; nothing was sent, retrying is safe"
                            ),
                            UpstreamContext::default(),
                        )
                    }),
                ),
                Err(AttemptError::Transport { timeout, message }) => {
                    let retry = can_retry && request.retry != RetryMode::UnsafeWrite;
                    let error = self.transport_error(name, request.retry, timeout, &message);
                    if request.retry != RetryMode::Read {
                        unanswered = Some(error.clone());
                    }
                    (retry, None, error)
                }
                Err(AttemptError::TooLarge) => {
                    let message = format!(
                        "{name}'s answer was larger than {} bytes and was not read",
                        self.settings.body_cap
                    );
                    // A write was answered, so it may well have happened.
                    let error = if request.retry == RetryMode::Read {
                        Error::upstream_retryable(message, UpstreamContext::default())
                    } else {
                        Error::outcome_unknown(
                            format!("{message}; the write may or may not have happened"),
                            UpstreamContext::default(),
                        )
                    };
                    (false, None, error)
                }
                Err(AttemptError::Busy) => {
                    crate::observability::metrics::rate_limited("parse_memory");
                    // Not retried here: the wait was the retry, and the server is loaded.
                    (false, None, self.busy_error(name, request.retry))
                }
            };
            if !retry {
                return Err(error);
            }
            let wait =
                wait_hint.unwrap_or_else(|| full_jitter(self.settings.backoff_base, attempt));
            if Instant::now() + wait >= deadline {
                // The upstream asked for a wait we cannot afford: answer now, honestly.
                return Err(error);
            }
            tracing::debug!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying upstream request"
            );
            crate::observability::record::upstream_retry();
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        http: &reqwest::Client,
        request: &UpstreamRequest,
        decoder: &dyn ErrorDecoder,
        scrubber: &Scrubber,
        remaining: Duration,
    ) -> Result<UpstreamResponse, AttemptError> {
        let url = format!("{}{}", self.base, request.path_and_query);
        let mut builder = http
            .request(request.method.clone(), &url)
            .headers(request.headers.clone())
            .timeout(self.settings.attempt_timeout.min(remaining));
        builder = match &request.body {
            Body::None => builder,
            Body::Json(b) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            Body::Form(b) => builder
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(b.clone()),
        };
        let mut response = builder.send().await.map_err(|e| classify(&e, scrubber))?;
        let status = response.status();
        let headers = response.headers().clone();
        let declared = response.content_length();
        if declared.is_some_and(|len| len > self.settings.body_cap as u64) {
            return Err(AttemptError::TooLarge);
        }
        // The process's parse budget (see `budget`): room for the body before it is read, then
        // for its decoded tree. A read waits briefly for it (READ_WAIT in all), then is refused:
        // retry-safe, nothing to undo, and a caller told to come back in a second beats one kept
        // waiting on an overloaded server. The answer to a write waits as long as the call's
        // deadline allows: the write has happened, and refusing to read its answer would turn a
        // success into an unknown outcome.
        let until = (request.retry == RetryMode::Read).then(|| Instant::now() + READ_WAIT);
        let mut charge = ParseCharge::default();
        let declared = declared.map(|len| len as usize);
        // Without a declared length, room for the cap, given back once the body is in: taken
        // in one piece, so that a call never holds body room while waiting for more of it.
        let room = declared.unwrap_or(self.settings.body_cap);
        self.budget
            .charge_body(&mut charge, room, wait_for(until))
            .await
            .map_err(|_| AttemptError::Busy)?;
        // Sized once when the length is declared: growing by doubling would hold up to twice
        // the body at the end.
        let mut body = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, scrubber))? {
            if body.len() + chunk.len() > self.settings.body_cap {
                return Err(AttemptError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        self.budget.shrink_body(&mut charge, body.len());
        // Then what decoding will allocate; nothing for an answer that will be refused unread.
        let estimate = json::estimate(&body);
        let (cost, depth) = estimate;
        if cost <= json::MEMORY_BUDGET && depth <= json::MAX_DEPTH {
            self.budget
                .charge_tree(&mut charge, cost, wait_for(until))
                .await
                .map_err(|_| AttemptError::Busy)?;
        }
        let request_id = headers
            .get(decoder.request_id_header())
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(UpstreamResponse::charged(
            status,
            headers,
            &body,
            request_id.as_deref(),
            scrubber,
            estimate,
            charge,
        ))
    }

    /// An answer left unread for want of parse budget.
    fn busy_error(&self, name: &str, mode: RetryMode) -> Error {
        let message = format!(
            "{name} answered, but this server is reading too many large answers at once to read this one now (its memory for them, --max-parse-bytes, is in use)"
        );
        match mode {
            RetryMode::Read => Error::rate_limited(
                format!("{message}; nothing was changed by reading, retrying is safe"),
                Some(1),
                UpstreamContext::default(),
            ),
            // Not reached: a write's answer waits for as long as the deadline allows.
            RetryMode::UnsafeWrite | RetryMode::IdempotentWrite => Error::outcome_unknown(
                format!("{message}; the write may or may not have happened"),
                UpstreamContext::default(),
            ),
        }
    }

    fn deadline_error(&self, name: &str, mode: RetryMode) -> Error {
        self.transport_error(name, mode, true, "the call's deadline passed")
    }

    fn transport_error(&self, name: &str, mode: RetryMode, timeout: bool, message: &str) -> Error {
        let what = if timeout {
            "did not answer in time"
        } else {
            "failed mid-request"
        };
        match mode {
            RetryMode::UnsafeWrite => Error::outcome_unknown(
                format!(
                    "{name} {what} ({message}); the link may or may not have been created. Do not create it again blindly: look for it first"
                ),
                UpstreamContext::default(),
            ),
            // Our retries reused the key; whether the *caller* can retry safely depends on
            // whether the key outlives this call, which only the backend knows. The cautious
            // answer here; a backend whose key came from the caller turns it into a retry-safe
            // one (see stripe::create_failure).
            RetryMode::IdempotentWrite => Error::outcome_unknown(
                format!("{name} {what} ({message}); the write may or may not have happened"),
                UpstreamContext::default(),
            ),
            RetryMode::Read => Error::upstream_retryable(
                format!("{name} {what} ({message}); retrying is safe"),
                UpstreamContext::default(),
            ),
        }
    }
}

/// The wait left until `until` (`None`: no limit of its own).
fn wait_for(until: Option<Instant>) -> Option<Duration> {
    until.map(|t| t.saturating_duration_since(Instant::now()))
}

fn classify(e: &reqwest::Error, scrubber: &Scrubber) -> AttemptError {
    // reqwest's messages hold the URL (never a key: keys travel in headers), scrub anyway.
    let message = scrubber.scrub(&e.without_url_ref().to_string());
    if e.is_connect() {
        AttemptError::Connect(message)
    } else {
        AttemptError::Transport {
            timeout: e.is_timeout(),
            message,
        }
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), "<upstream>");
        }
        // reqwest nests the cause; include it, it says "connection refused" or "reset".
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// Makes ring the process's TLS crypto provider (reqwest is built without one): the same TLS as
/// aws-lc-rs for our purposes, in a much smaller binary. Safe to call more than once; a provider
/// already installed is kept.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The shared pools, one per base URL, so that tenants of one upstream reuse connections (no TLS
/// handshake per tenant), and the one parse budget all their answers are charged to.
pub(crate) struct UpstreamPools {
    settings: UpstreamSettings,
    budget: Arc<ParseBudget>,
    pools: Mutex<HashMap<String, Arc<UpstreamClient>>>,
}

impl Default for UpstreamPools {
    fn default() -> Self {
        Self::new(UpstreamSettings::default())
    }
}

impl UpstreamPools {
    pub(crate) fn new(settings: UpstreamSettings) -> Self {
        UpstreamPools {
            budget: ParseBudget::new(settings.max_parse_bytes),
            settings,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pool for `base`, created on first use.
    pub(crate) fn get(&self, base: &str) -> Arc<UpstreamClient> {
        let key = base.trim_end_matches('/').to_owned();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = pools.get(&key) {
            return client.clone();
        }
        let client = Arc::new(UpstreamClient::with_budget(
            &key,
            self.settings,
            self.budget.clone(),
        ));
        pools.insert(key, client.clone());
        client
    }
}
