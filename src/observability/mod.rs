//! What an operator sees of the server at work: one span and one log line per tool call,
//! Prometheus [`metrics`] (HTTP only), and the [`audit`] trail of writes.
//!
//! Everything about a tool call is gathered in one place, [`observe`], which the MCP handler
//! wraps around [`ToolSet::call`](crate::tools::ToolSet::call). Facts only the upstream layer
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

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use self::audit::{AuditEntry, AuditLog};
use crate::tenant::Tenant;
use crate::tools::error_result;

/// The operator's observability choices that belong to one server value (metrics and logs are
/// process-wide).
#[derive(Clone, Default)]
pub struct Observer {
    /// `--audit-log`: where write tool calls are recorded.
    pub audit: Option<Arc<AuditLog>>,
}

impl Observer {
    /// From the options: checks `--audit-log` once so that a wrong path shows in the log at
    /// start-up. A path that does not work is not fatal: reads are still served, and every write
    /// is refused (`internal`, nothing sent upstream) until the path works.
    pub fn from_options(opts: &crate::config::GlobalOpts) -> Self {
        let audit = opts.audit_log.as_ref().map(|path| {
            let log = AuditLog::new(path.clone());
            match log.check() {
                Ok(()) => tracing::info!(path = %path.display(), "audit log: one line per write tool call"),
                Err(e) => tracing::error!(
                    path = %path.display(),
                    "the audit log cannot be opened for append ({e}): write tools will be refused until it can"
                ),
            }
            log
        });
        Observer { audit }
    }
}

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

/// One tool call, as the handler knows it before running it.
pub struct CallInfo<'a> {
    /// The tool's name, from the server's own list (never the caller's string).
    pub tool: &'static str,
    /// Whether the tool writes (audited).
    pub write: bool,
    pub tenant: &'a Tenant,
    pub arguments: Option<&'a JsonObject>,
}

/// How an observed call ended.
pub enum Observed {
    /// A result to send: success or an `isError` envelope.
    Done(CallToolResult),
    /// The tool does not exist (`ToolSet::call` said so).
    Unknown,
    /// The client cancelled the call, or went away.
    Cancelled,
}

/// The outcome label of a result: `ok`, or the error envelope's `kind`.
fn outcome_of(result: &CallToolResult) -> (&'static str, Option<Value>) {
    if result.is_error != Some(true) {
        return ("ok", None);
    }
    let envelope: Option<Value> = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .and_then(|t| serde_json::from_str(&t.text).ok());
    let kind = envelope
        .as_ref()
        .and_then(|e| e["error"]["kind"].as_str())
        .and_then(error_kind_label)
        .unwrap_or("internal");
    (kind, envelope)
}

/// The `'static` label of an error kind named in an envelope.
fn error_kind_label(kind: &str) -> Option<&'static str> {
    crate::error::ErrorKind::ALL
        .into_iter()
        .map(|k| k.as_str())
        .find(|k| *k == kind)
}

/// Runs one tool call inside its span, then logs it, counts it and, for a write, audits it.
///
/// For a write with `--audit-log`, the audit file is opened *before* `call` is first polled: if
/// it cannot be, `call` is dropped unpolled (nothing reaches the upstream) and the answer is an
/// `internal` error. After the call, the line is written and synced before the answer goes out;
/// if that fails, the answer becomes an `internal` error that names what was done upstream.
pub async fn observe<F>(
    info: CallInfo<'_>,
    audit: Option<&Arc<AuditLog>>,
    cancel: &CancellationToken,
    call: F,
) -> Observed
where
    F: Future<Output = Option<CallToolResult>>,
{
    let started = Instant::now();
    let backend = info.tenant.backend.kind().as_str();
    let span = tracing::info_span!(
        "tool_call",
        tool = info.tool,
        backend,
        tenant = %info.tenant.fingerprint,
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
    let audit = if info.write { audit } else { None };

    let ran = async {
        let file = match audit {
            Some(log) => match log.open().await {
                Ok(file) => Some(file),
                Err(e) => {
                    metrics::audit_failure(metrics::AuditStage::Open);
                    tracing::error!(
                        path = %log.path().display(),
                        "the audit log cannot be opened ({e}): write refused, nothing sent upstream"
                    );
                    return Some(Some(error_result(&audit::refused_before_call())));
                }
            },
            None => None,
        };
        // Cancellation (notifications/cancelled, a dropped HTTP connection) drops `call`, which
        // drops any upstream request in flight.
        let result = tokio::select! {
            r = CALL.scope(record.clone(), call) => match r {
                Some(result) => Some(result),
                None => return Some(None),
            },
            () = cancel.cancelled() => None,
        };
        let (Some(log), Some(file)) = (audit, file) else {
            return result.map(Some);
        };
        let snapshot = record.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let entry = AuditEntry::new(&info, &snapshot, result.as_ref());
        match log.append(file, &entry).await {
            Ok(()) => result.map(Some),
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
                result.map(|_| Some(error_result(&entry.unrecorded(&e))))
            }
        }
    }
    .instrument(span.clone())
    .await;

    let latency = started.elapsed();
    let record = record.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (observed, outcome) = match ran {
        Some(Some(result)) => {
            let (outcome, _) = outcome_of(&result);
            (Observed::Done(result), outcome)
        }
        Some(None) => return Observed::Unknown,
        None => (Observed::Cancelled, "cancelled"),
    };
    log_call(&span, &info, backend, &record, latency, outcome);
    if let Some(m) = metrics::get() {
        m.tool_call(info.tool, outcome, latency);
    }
    observed
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
    let tenant = info.tenant.fingerprint.as_str();
    let request_id = record.request_id.as_deref();
    tracing::info!(
        tool = info.tool,
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
