//! One tool call observed: its span, its log line, its metrics and, for a write, its audit line.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::JsonObject;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use super::audit::{self, AuditEntry, AuditLog, AuditView, outcome_of};
use super::metrics;
use super::record::{CALL, CallRecord};
use crate::error::Error;
use crate::model::BackendKind;
use crate::tools::id::ToolId;

/// One tool call, as the tool layer knows it before running it.
pub(crate) struct CallInfo<'a> {
    /// Which tool (its name labels metrics: never the caller's string).
    pub tool: ToolId,
    pub backend: BackendKind,
    /// The tenant's fingerprint (a short hash of its key), never the key.
    pub tenant: &'a str,
    pub arguments: Option<&'a JsonObject>,
}

/// How an observed call ended.
pub(crate) enum Observed<T> {
    /// The tool's own answer: its output, or the error to put in an `isError` result.
    Done(Result<T, Error>),
    /// The client cancelled the call, or went away.
    Cancelled,
}

/// Runs one tool call inside its span, then logs it, counts it and, for a write, audits it.
///
/// For a write with `--audit-log`, the audit file is opened *before* `call` is first polled: if
/// it cannot be, `call` is dropped unpolled (nothing reaches the upstream) and the answer is an
/// `internal` error. After the call, the line is written and synced before the answer goes out;
/// if that fails, the answer becomes an `internal` error that names what was done upstream.
pub(crate) async fn observe<T, F>(
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
        let entry = AuditEntry::new(
            info.tool,
            info.tenant,
            info.arguments,
            &snapshot,
            result.as_ref(),
        );
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
