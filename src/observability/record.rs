//! The facts of one tool call that only lower layers learn, gathered in a task-local record that
//! the observation layer reads back when the call ends: what the upstream answered (status,
//! request id, retries), and what the write safety decided (the preview's total, the
//! confirmation, the spend caps), reported by the tool layer.

use std::sync::{Arc, Mutex};

use super::metrics;
use crate::domain::Money;

/// What the upstream layer learnt during one tool call. A call may make several upstream
/// requests (a Stripe create reads prices first); the last answer is the one reported.
#[derive(Debug, Default, Clone)]
pub(crate) struct CallRecord {
    pub backend: &'static str,
    /// HTTP status of the last upstream answer.
    pub status: Option<u16>,
    /// The upstream's request id of the last answer that had one.
    pub request_id: Option<String>,
    /// Upstream attempts sent again, over the whole call.
    pub retries: u32,
    /// A write's safety decisions, for its audit line.
    pub safety: SafetyRecord,
}

/// What a write's safety checks decided. Every value is one of a fixed set, and the total is a
/// bounded amount: the audit line stays bounded.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SafetyRecord {
    /// The total the preview showed (before coupons Stream computes), when one was made.
    pub preview_total: Option<Money>,
    /// `confirmed`, `declined`, `not_required`, `required` (refused: no way to ask), `asked`
    /// (a 2026-07-28 client was sent the question; its answer comes with a new call), or
    /// `earlier` (a create sent again after an unknown outcome, confirmed by its first attempt).
    pub confirmation: Option<&'static str>,
    /// `within`, `exceeded`, `uncapped`, or `earlier` (counted by the first attempt).
    pub cap: Option<&'static str>,
}

tokio::task_local! {
    pub(crate) static CALL: Arc<Mutex<CallRecord>>;
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
pub(crate) fn upstream_answer(status: u16, request_id: Option<&str>) {
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
pub(crate) fn upstream_retry() {
    let backend = current_backend();
    with_record(|r| r.retries += 1);
    if let Some(m) = metrics::get() {
        m.upstream_retry(backend);
    }
}

/// A write's preview was made, with this total.
pub(crate) fn preview_total(total: Money) {
    with_record(|r| r.safety.preview_total = Some(total));
}

/// How a write's confirmation ended (see [`SafetyRecord::confirmation`]).
pub(crate) fn confirmation(outcome: &'static str) {
    with_record(|r| r.safety.confirmation = Some(outcome));
}

/// What the spend caps decided for a create (see [`SafetyRecord::cap`]).
pub(crate) fn cap(decision: &'static str) {
    with_record(|r| r.safety.cap = Some(decision));
}
