//! What an operator sees of the server at work: one span and one log line per tool call
//! ([`call`]), Prometheus [`metrics`] (HTTP only), and the [`audit`] trail of writes.
//!
//! Everything about a tool call is gathered in one place, [`call::observe`], which every tool's
//! route wraps around its handler (see `tools::routes`). Facts only the upstream layer knows (the
//! HTTP status, the upstream's request id, how many retries) reach it through a task-local
//! [`record::CallRecord`]: the upstream client (`upstream/client.rs`) reports each answer and
//! retry with [`record::upstream_answer`] and [`record::upstream_retry`], and no backend method
//! needs an extra parameter. The record is read back at the end of the call, which a span field cannot
//! be: the same values feed the log line, the metrics and the audit line.
//!
//! The files depend on each other one way: `call` → `audit` (and its `entry`, `bound`) →
//! `record` → `metrics`.
//!
//! Logs never carry a key: a tenant appears only as its fingerprint.

pub(crate) mod audit;
pub(crate) mod call;
pub(crate) mod metrics;
pub(crate) mod record;
