//! Prometheus metrics of the HTTP server, encoded for `/metrics` (see
//! `transport::http::metrics`).
//!
//! One process-wide set, installed by the HTTP transport only ([`install`]). The recording
//! functions below are called from wherever the event happens (the upstream layer, the gate, the
//! tenant cache) and do nothing until then: stdio has no endpoint, so it pays one atomic load per
//! event and keeps no series. A global rather than a value threaded through every constructor:
//! the events happen deep in layers that have no other reason to know about each other.
//!
//! Every label value is one of a closed set chosen by this server (a tool name from
//! [`ToolId`], an error kind, a backend, an HTTP status, a fixed reason): never a tenant, a key,
//! a link id or anything else a caller controls, so the number of series is bounded and nothing
//! secret or per-tenant can appear in a scrape.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::tools::id::ToolId;

mod store;
pub(crate) use store::SHARED_LIMITS;

/// The counts of the idempotency store, as `/metrics` shows them (the store reports them; this
/// module only encodes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IdempotencyStats {
    pub entries: usize,
    pub in_flight: usize,
    pub created: usize,
    pub unknown: usize,
    pub bytes: usize,
    pub tenants: usize,
}

/// Upper bounds of the latency buckets, in seconds: from a sandbox call (well under a
/// millisecond) to the default 30 s deadline of an upstream call with retries.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Refusals for load, as counted in `paylink_rate_limited_total{reason}`: the HTTP gate's, and
/// `parse_memory` (an upstream answer not read for want of `--max-parse-bytes`, any transport).
pub(crate) const RATE_LIMIT_REASONS: &[&str] = &[
    "process_in_flight",
    "client_rate",
    "client_in_flight",
    "new_tenants",
    "tenant_rate",
    "tenant_in_flight",
    "request_bytes",
    "client_request_bytes",
    "parse_memory",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    backend: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The states of an idempotency entry, as in `paylink_idempotency_entries{state}`.
pub(crate) const IDEMPOTENCY_STATES: &[&str] = &["in_flight", "created", "unknown"];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// Why a tenant left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// The cache was full: the least recently used tenant made room.
    Capacity,
    /// Unused for longer than `--tenant-idle-secs`.
    Idle,
}

impl Eviction {
    fn as_str(self) -> &'static str {
        match self {
            Eviction::Capacity => "capacity",
            Eviction::Idle => "idle",
        }
    }
}

/// Where an audit line failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditStage {
    /// The file could not be opened before the call: the write was refused, nothing sent.
    Open,
    /// The line could not be written or synced after the call.
    Write,
}

impl AuditStage {
    fn as_str(self) -> &'static str {
        match self {
            AuditStage::Open => "open",
            AuditStage::Write => "write",
        }
    }
}

/// Every metric of the server, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<ToolLabel, Histogram, fn() -> Histogram>,
    upstream_responses: Family<UpstreamLabels, Counter>,
    upstream_retries: Family<BackendLabel, Counter>,
    idempotent_replays: Counter,
    tenants: Gauge,
    tenant_evictions: Family<ReasonLabel, Counter>,
    rate_limited: Family<ReasonLabel, Counter>,
    audit_failures: Family<StageLabel, Counter>,
    idempotency_entries: Family<StateLabel, Gauge>,
    idempotency_bytes: Gauge,
    idempotency_evictions: Family<KindLabel, Counter>,
    sandbox_bytes: Gauge,
    parse_bytes: Gauge,
    store: store::StoreMetrics,
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// Installs the process's metrics (idempotent) and returns them. Called by the HTTP transport.
pub(crate) fn install() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::new)
}

/// The installed metrics, if any: `None` over stdio.
pub(crate) fn get() -> Option<&'static Metrics> {
    GLOBAL.get()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry (tests use their own; the server uses [`install`]).
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("paylink");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "Tool calls answered, by tool and outcome (ok, or the error kind: validation, not_found, upstream, internal, ...; cancelled)",
            calls.clone(),
        );
        let latency = Family::<ToolLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register_with_unit(
            "tool_call_duration",
            "Time from the start of a tool call to its answer, by tool",
            Unit::Seconds,
            latency.clone(),
        );
        let upstream_responses = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_responses",
            "HTTP answers received from the payments API, by backend and status (every attempt, retries included)",
            upstream_responses.clone(),
        );
        let upstream_retries = Family::<BackendLabel, Counter>::default();
        registry.register(
            "upstream_retries",
            "Upstream requests sent again after a failed attempt, by backend",
            upstream_retries.clone(),
        );
        let idempotent_replays = Counter::default();
        registry.register(
            "idempotent_replays",
            "create_payment_link calls answered from the idempotency store (a repeated idempotency_key) without an upstream call",
            idempotent_replays.clone(),
        );
        let tenants = Gauge::default();
        registry.register(
            "tenant_cache_tenants",
            "Tenants (caller keys) currently held in the tenant cache",
            tenants.clone(),
        );
        let tenant_evictions = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "tenant_cache_evictions",
            "Tenants dropped from the cache, by reason (capacity: least recently used made room; idle: unused too long)",
            tenant_evictions.clone(),
        );
        let rate_limited = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "HTTP requests refused by the gate's load limits (429/503), by reason",
            rate_limited.clone(),
        );
        let audit_failures = Family::<StageLabel, Counter>::default();
        registry.register(
            "audit_failures",
            "Write tool calls whose audit line could not be written, by stage (open: refused before any upstream call; write: after it)",
            audit_failures.clone(),
        );
        let idempotency_entries = Family::<StateLabel, Gauge>::default();
        registry.register(
            "idempotency_entries",
            "Entries of the idempotency store, by state (in_flight: a create running; created: a result to replay; unknown: an outcome a repeat looks up first)",
            idempotency_entries.clone(),
        );
        let idempotency_bytes = Gauge::default();
        registry.register_with_unit(
            "idempotency",
            "Bytes charged in the idempotency store (stored results and bookkeeping), against --idempotency-max-bytes",
            Unit::Bytes,
            idempotency_bytes.clone(),
        );
        let idempotency_evictions = Family::<KindLabel, Counter>::default();
        registry.register(
            "idempotency_evictions",
            "Finished idempotency entries dropped to stay within the store's bounds, by kind (created, unknown); a repeat of a dropped key is treated as new",
            idempotency_evictions.clone(),
        );
        let sandbox_bytes = Gauge::default();
        registry.register_with_unit(
            "sandbox",
            "Bytes held by sandbox links, all tenants together, against --sandbox-max-bytes",
            Unit::Bytes,
            sandbox_bytes.clone(),
        );
        let parse_bytes = Gauge::default();
        registry.register_with_unit(
            "upstream_parse",
            "Bytes of upstream answers being read and decoded, all calls together (body plus the estimate of its decoded tree), against --max-parse-bytes",
            Unit::Bytes,
            parse_bytes.clone(),
        );
        let store = store::StoreMetrics::register(&mut registry);
        // Series a dashboard or alert looks for are present at zero from the start, so that
        // `rate()` and absence alerts work before the first event.
        for reason in RATE_LIMIT_REASONS {
            rate_limited.get_or_create_owned(&ReasonLabel { reason });
        }
        for reason in [Eviction::Capacity, Eviction::Idle] {
            tenant_evictions.get_or_create_owned(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        for stage in [AuditStage::Open, AuditStage::Write] {
            audit_failures.get_or_create_owned(&StageLabel {
                stage: stage.as_str(),
            });
        }
        for state in IDEMPOTENCY_STATES {
            idempotency_entries.get_or_create_owned(&StateLabel { state });
        }
        for kind in ["created", "unknown"] {
            idempotency_evictions.get_or_create_owned(&KindLabel { kind });
        }
        Metrics {
            registry,
            calls,
            latency,
            upstream_responses,
            upstream_retries,
            idempotent_replays,
            tenants,
            tenant_evictions,
            rate_limited,
            audit_failures,
            idempotency_entries,
            idempotency_bytes,
            idempotency_evictions,
            sandbox_bytes,
            parse_bytes,
            store,
        }
    }

    /// The OpenMetrics text exposition, with the tenant gauge set to `tenants` first (it is
    /// read at scrape time rather than tracked on every cache change).
    pub(crate) fn encode(&self, tenants: usize) -> String {
        self.tenants.set(i64::try_from(tenants).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; an encoder error would be a bug in a label type.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        out
    }

    pub(crate) fn tool_call(&self, tool: ToolId, outcome: &'static str, latency: Duration) {
        let tool = tool.name();
        self.calls
            .get_or_create(&CallLabels { tool, outcome })
            .inc();
        self.latency
            .get_or_create(&ToolLabel { tool })
            .observe(latency.as_secs_f64());
    }

    pub(crate) fn upstream_response(&self, backend: &'static str, status: u16) {
        self.upstream_responses
            .get_or_create(&UpstreamLabels { backend, status })
            .inc();
    }

    pub(crate) fn upstream_retry(&self, backend: &'static str) {
        self.upstream_retries
            .get_or_create(&BackendLabel { backend })
            .inc();
    }

    pub(crate) fn idempotent_replay(&self) {
        self.idempotent_replays.inc();
    }

    pub(crate) fn tenant_evicted(&self, why: Eviction, count: u64) {
        self.tenant_evictions
            .get_or_create(&ReasonLabel {
                reason: why.as_str(),
            })
            .inc_by(count);
    }

    pub(crate) fn rate_limited(&self, reason: &'static str) {
        self.rate_limited
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn audit_failure(&self, stage: AuditStage) {
        self.audit_failures
            .get_or_create(&StageLabel {
                stage: stage.as_str(),
            })
            .inc();
    }

    pub(crate) fn idempotency_store(&self, stats: &IdempotencyStats) {
        for (state, n) in [
            ("in_flight", stats.in_flight),
            ("created", stats.created),
            ("unknown", stats.unknown),
        ] {
            self.idempotency_entries
                .get_or_create(&StateLabel { state })
                .set(gauge_value(n));
        }
        self.idempotency_bytes.set(gauge_value(stats.bytes));
    }

    pub(crate) fn idempotency_evicted(&self, kind: &'static str) {
        self.idempotency_evictions
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub(crate) fn sandbox_bytes(&self, bytes: usize) {
        self.sandbox_bytes.set(gauge_value(bytes));
    }

    pub(crate) fn parse_bytes_taken(&self, bytes: usize) {
        self.parse_bytes.inc_by(gauge_value(bytes));
    }

    pub(crate) fn parse_bytes_released(&self, bytes: usize) {
        self.parse_bytes.dec_by(gauge_value(bytes));
    }

    pub(crate) fn store_operation(&self, op: &'static str, outcome: &'static str, took: Duration) {
        self.store.operation(op, outcome, took);
    }

    pub(crate) fn store_fail_open(&self, limit: &'static str) {
        self.store.fail_open(limit);
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// The recording functions the rest of the server calls: no-ops until `install`.

/// An idempotent replay answered without an upstream call.
pub(crate) fn idempotent_replay() {
    if let Some(m) = get() {
        m.idempotent_replay();
    }
}

/// `count` tenants left the cache for `why`.
pub(crate) fn tenant_evicted(why: Eviction, count: usize) {
    if count > 0
        && let Some(m) = get()
    {
        m.tenant_evicted(why, count as u64);
    }
}

/// The gate refused a request for load; `reason` is one of [`RATE_LIMIT_REASONS`].
pub(crate) fn rate_limited(reason: &'static str) {
    debug_assert!(RATE_LIMIT_REASONS.contains(&reason));
    if let Some(m) = get() {
        m.rate_limited(reason);
    }
}

/// An audit line could not be written.
pub(crate) fn audit_failure(stage: AuditStage) {
    if let Some(m) = get() {
        m.audit_failure(stage);
    }
}

/// The idempotency store's counts changed (the server has one store).
pub(crate) fn idempotency_store(stats: &IdempotencyStats) {
    if let Some(m) = get() {
        m.idempotency_store(stats);
    }
}

/// A finished idempotency entry was dropped for the bounds; `kind` is `created` or `unknown`.
pub(crate) fn idempotency_evicted(kind: &'static str) {
    if let Some(m) = get() {
        m.idempotency_evicted(kind);
    }
}

/// The bytes held by sandbox links, all tenants together, changed.
pub(crate) fn sandbox_bytes(bytes: usize) {
    if let Some(m) = get() {
        m.sandbox_bytes(bytes);
    }
}

/// `bytes` more of upstream answers are being read and decoded (counted up and down, not set:
/// calls take and give back room concurrently).
pub(crate) fn parse_bytes_taken(bytes: usize) {
    if bytes > 0
        && let Some(m) = get()
    {
        m.parse_bytes_taken(bytes);
    }
}

/// `bytes` of upstream answers were given back (decoded and dropped, or never read).
pub(crate) fn parse_bytes_released(bytes: usize) {
    if bytes > 0
        && let Some(m) = get()
    {
        m.parse_bytes_released(bytes);
    }
}

/// One shared-store operation ended: `op` is its fixed name, `outcome` one of
/// [`STORE_OUTCOMES`].
pub(crate) fn store_operation(op: &'static str, outcome: &'static str, took: Duration) {
    if let Some(m) = get() {
        m.store_operation(op, outcome, took);
    }
}

/// A request's `limit` (one of [`SHARED_LIMITS`]) was checked by this replica alone: the shared
/// store did not answer.
pub(crate) fn store_fail_open(limit: &'static str) {
    debug_assert!(SHARED_LIMITS.contains(&limit));
    if let Some(m) = get() {
        m.store_fail_open(limit);
    }
}

#[cfg(test)]
mod tests;
