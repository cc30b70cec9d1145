//! What an operator sees of the server at work: one span and one log line per tool call,
//! Prometheus [`metrics`] (HTTP only), and the [`audit`] trail of writes.
//!
//! Everything about a tool call is gathered in one place, [`observe`], which the MCP handler
//! wraps around every tool call (see `tools::route`). Facts only the upstream layer
//! knows (the HTTP status, the upstream's request id, how many retries) reach it through a
//! task-local [`CallRecord`]: `upstream.rs` reports each answer and retry with
//! [`upstream_answer`] and [`upstream_retry`], and no backend method needs an extra parameter.
//! The record is read back at the end of the call, which a span field cannot be: the same values
//! feed the log line, the metrics and the audit line.
//!
//! Logs never carry a key: a tenant appears only as its fingerprint.

pub mod audit;
pub mod metrics;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::JsonObject;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use self::audit::{AuditEntry, AuditLog, AuditView};
use crate::error::Error;
use crate::model::BackendKind;
use crate::tools::id::ToolId;

/// What the upstream layer learnt during one tool call. A call may make several upstream
/// requests (a Stripe create reads prices first); the last answer is the one reported.
#[derive(Debug, Default, Clone)]
pub struct CallRecord {
    pub backend: &'static str,
    /// HTTP status of the last upstream answer.
    pub status: Option<u16>,
    /// The upstream's request id of the last answer that had one.
    pub request_id: Option<String>,
    /// Upstream attempts sent again, over the whole call.
    pub retries: u32,
}

tokio::task_local! {
    static CALL: Arc<Mutex<CallRecord>>;
}

fn with_record(f: impl FnOnce(&mut CallRecord)) {
    // Outside a tool call (unit tests of a backend) there is nothing to record into.
    let _ = CALL.try_with(|record| f(&mut record.lock().unwrap_or_else(|p| p.into_inner())));
}

fn current_backend() -> &'static str {
    CALL.try_with(|r| r.lock().unwrap_or_else(|p| p.into_inner()).backend)
        .unwrap_or("unknown")
}

/// The upstream layer received an answer (any status, every attempt).
pub fn upstream_answer(status: u16, request_id: Option<&str>) {
    let backend = current_backend();
    with_record(|r| {
        r.status = Some(status);
        if let Some(id) = request_id {
            r.request_id = Some(id.to_owned());
        }
    });
    if let Some(m) = metrics::get() {
        m.upstream_response(backend, status);
    }
}

/// The upstream layer is about to send a request again.
pub fn upstream_retry() {
    let backend = current_backend();
    with_record(|r| r.retries += 1);
    if let Some(m) = metrics::get() {
        m.upstream_retry(backend);
    }
}

/// One tool call, as the tool layer knows it before running it.
pub struct CallInfo<'a> {
    /// Which tool (its name labels metrics: never the caller's string).
    pub tool: ToolId,
    pub backend: BackendKind,
    /// The tenant's fingerprint (a short hash of its key), never the key.
    pub tenant: &'a str,
    pub arguments: Option<&'a JsonObject>,
}

/// How an observed call ended.
pub enum Observed<T> {
    /// The tool's own answer: its output, or the error to put in an `isError` result.
    Done(Result<T, Error>),
    /// The client cancelled the call, or went away.
    Cancelled,
}

/// The outcome label of a finished call: `ok`, or the error's kind.
fn outcome_of<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.kind().as_str(),
    }
}

/// Runs one tool call inside its span, then logs it, counts it and, for a write, audits it.
///
/// For a write with `--audit-log`, the audit file is opened *before* `call` is first polled: if
/// it cannot be, `call` is dropped unpolled (nothing reaches the upstream) and the answer is an
/// `internal` error. After the call, the line is written and synced before the answer goes out;
/// if that fails, the answer becomes an `internal` error that names what was done upstream.
pub async fn observe<T, F>(
    info: CallInfo<'_>,
    audit: Option<&Arc<AuditLog>>,
    cancel: &CancellationToken,
    call: F,
) -> Observed<T>
where
    T: AuditView,
    F: Future<Output = Result<T, Error>>,
{
    let started = Instant::now();
    let backend = info.backend.as_str();
    let span = tracing::info_span!(
        "tool_call",
        tool = info.tool.name(),
        backend,
        tenant = %info.tenant,
        status = Empty,
        request_id = Empty,
        retries = Empty,
        latency_ms = Empty,
        outcome = Empty,
    );
    let record = Arc::new(Mutex::new(CallRecord {
        backend,
        ..CallRecord::default()
    }));
    let audit = if info.tool.writes() { audit } else { None };

    let ran: Option<Result<T, Error>> = async {
        let file = match audit {
            Some(log) => match log.open().await {
                Ok(file) => Some(file),
                Err(e) => {
                    metrics::audit_failure(metrics::AuditStage::Open);
                    tracing::error!(
                        path = %log.path().display(),
                        "the audit log cannot be opened ({e}): write refused, nothing sent upstream"
                    );
                    return Some(Err(audit::refused_before_call()));
                }
            },
            None => None,
        };
        // Cancellation (notifications/cancelled, a dropped HTTP connection) drops `call`, which
        // drops any upstream request in flight.
        let result = tokio::select! {
            r = CALL.scope(record.clone(), call) => Some(r),
            () = cancel.cancelled() => None,
        };
        let (Some(log), Some(file)) = (audit, file) else {
            return result;
        };
        let snapshot = record.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let entry = AuditEntry::new(&info, &snapshot, result.as_ref());
        match log.append(file, &entry).await {
            Ok(()) => result,
            Err(e) => {
                metrics::audit_failure(metrics::AuditStage::Write);
                // The line itself goes to the log, so that the operator can reconcile.
                tracing::error!(
                    path = %log.path().display(),
                    entry = %serde_json::to_string(&entry).unwrap_or_default(),
                    "the audit line of a finished {} call could not be written: {e}",
                    info.tool
                );
                // A cancelled call has no one to tell but the log.
                result.map(|_| Err(entry.unrecorded(&e)))
            }
        }
    }
    .instrument(span.clone())
    .await;

    let latency = started.elapsed();
    let record = record.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let outcome = ran.as_ref().map_or("cancelled", outcome_of);
    log_call(&span, &info, backend, &record, latency, outcome);
    if let Some(m) = metrics::get() {
        m.tool_call(info.tool, outcome, latency);
    }
    match ran {
        Some(result) => Observed::Done(result),
        None => Observed::Cancelled,
    }
}

/// Records the late fields into the span, then writes the call's one log line (outside the
/// span, so that the text format does not print every field twice).
fn log_call(
    span: &tracing::Span,
    info: &CallInfo<'_>,
    backend: &'static str,
    record: &CallRecord,
    latency: Duration,
    outcome: &'static str,
) {
    let latency_ms = (latency.as_secs_f64() * 1_000_000.0).round() / 1_000.0;
    if let Some(status) = record.status {
        span.record("status", status);
    }
    if let Some(id) = &record.request_id {
        span.record("request_id", id.as_str());
    }
    span.record("retries", record.retries);
    span.record("latency_ms", latency_ms);
    span.record("outcome", outcome);
    let tenant = info.tenant;
    let request_id = record.request_id.as_deref();
    tracing::info!(
        tool = info.tool.name(),
        backend,
        tenant,
        status = record.status,
        request_id,
        retries = record.retries,
        latency_ms,
        outcome,
        "tool call"
    );
}
