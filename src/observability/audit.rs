//! The audit trail (`--audit-log PATH`): one JSON line per write tool call
//! (`create_payment_link`, `update_payment_link_status`), none per read.
//!
//! A line is written and synced to disk before the tool answers, and a write that cannot be
//! recorded does not happen silently:
//!
//! - The file is opened for append *before* the call. If that fails, the call is refused with
//!   `internal` (retry-safe) and nothing is sent upstream.
//! - If the line cannot be written after the call (disk full, I/O error), the answer becomes an
//!   `internal` error that names what was done upstream (the created link's id), so the operator
//!   can reconcile and the model knows not to create it again.
//!
//! The file is opened anew for every write call: a rotated-away file is simply recreated, and an
//! operator can fix a broken path without a restart. Lines from concurrent calls never interleave
//! (one lock around write and sync). A line holds the tenant's fingerprint, never a key: the
//! arguments are the tool's own (no header reaches them) and results and envelopes are already
//! scrubbed of keys by the upstream layer.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use rmcp::model::JsonObject;

use super::record::CallRecord;
use crate::error::{Error, ErrorBody};
use crate::model::{Page, PaymentLink};
use crate::tools::id::ToolId;

/// The append-only audit file.
pub struct AuditLog {
    path: PathBuf,
    /// Serializes write-and-sync, so lines of concurrent calls never interleave.
    lock: Mutex<()>,
}

/// One line of the audit file.
#[derive(Debug, Serialize)]
pub struct AuditEntry {
    /// When the call finished, RFC 3339 UTC with milliseconds.
    pub time: String,
    #[serde(serialize_with = "tool_name")]
    pub tool: ToolId,
    pub backend: &'static str,
    /// The tenant's fingerprint (a short hash of its key), never the key.
    pub tenant: String,
    /// The arguments as the caller sent them (`null` when none).
    pub arguments: Value,
    /// `ok`, the error envelope's `kind`, or `cancelled`.
    pub outcome: &'static str,
    /// On success: the link's id and url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<AuditResult>,
    /// On failure: the error envelope's body (`{kind, message, field, retry_safe, ...}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// The upstream's request id of the last answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn tool_name<S: serde::Serializer>(tool: &ToolId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tool.name())
}

#[derive(Debug, Serialize)]
pub struct AuditResult {
    pub id: Option<String>,
    pub url: Option<String>,
}

/// What a tool's output says about the thing a write touched, for its audit line.
pub trait AuditView {
    /// The link a write created or changed; `None` for outputs that are not one link.
    fn audit_result(&self) -> Option<AuditResult>;
}

impl AuditView for PaymentLink {
    fn audit_result(&self) -> Option<AuditResult> {
        Some(AuditResult {
            id: Some(self.id.clone()),
            url: self.url.clone(),
        })
    }
}

impl<T> AuditView for Page<T> {
    fn audit_result(&self) -> Option<AuditResult> {
        None
    }
}

/// The outcome label of a finished call: `ok`, or the error's kind.
pub fn outcome_of<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.kind().as_str(),
    }
}

/// The refusal of a write whose audit line could not even be started.
pub fn refused_before_call() -> Error {
    Error::Internal {
        message: "the server's audit log cannot be written, so this write was refused before anything was sent to the payments API (nothing was created or changed). Reads still work; ask the operator to fix --audit-log, then call again".into(),
        retry_safe: true,
    }
}

/// Runs blocking file I/O off the async workers (a sync can take milliseconds).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("audit task failed: {e}"))))
}

/// A file that cannot be synced (a pipe, `/dev/stderr` in a container) has nothing to sync:
/// the write itself is all there is. `fsync` answers EINVAL (InvalidInput) or ENOTSUP there.
fn sync_unsupported(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

impl AuditLog {
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(AuditLog {
            path,
            lock: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_now(path: &Path) -> io::Result<File> {
        OpenOptions::new().append(true).create(true).open(path)
    }

    /// Checked once at start-up so that a wrong path shows in the log at once. Not fatal: reads
    /// work without it, and writes are refused until the path works.
    pub fn check(&self) -> io::Result<()> {
        Self::open_now(&self.path).map(drop)
    }

    /// The log at `path`, checked once (see [`AuditLog::check`]) with the result logged: a path
    /// that does not work is not fatal, reads are still served and every write is refused
    /// (`internal`, nothing sent upstream) until the path works.
    pub fn at_start_up(path: PathBuf) -> Arc<Self> {
        let log = AuditLog::new(path);
        match log.check() {
            Ok(()) => {
                tracing::info!(path = %log.path.display(), "audit log: one line per write tool call")
            }
            Err(e) => tracing::error!(
                path = %log.path.display(),
                "the audit log cannot be opened for append ({e}): write tools will be refused until it can"
            ),
        }
        log
    }

    /// Opens the file for append; done before the upstream call.
    pub async fn open(&self) -> io::Result<File> {
        let path = self.path.clone();
        blocking(move || Self::open_now(&path)).await
    }

    /// Appends `entry` as one line and syncs it.
    pub async fn append(self: &Arc<Self>, mut file: File, entry: &AuditEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let log = self.clone();
        blocking(move || {
            let _one_at_a_time = log.lock.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(&line)?;
            match file.sync_data() {
                Err(e) if !sync_unsupported(&e) => Err(e),
                _ => Ok(()),
            }
        })
        .await
    }
}

impl AuditEntry {
    /// The line for a finished call; `result` is `None` when the call was cancelled.
    pub fn new<T: AuditView>(
        tool: ToolId,
        tenant: &str,
        arguments: Option<&JsonObject>,
        record: &CallRecord,
        result: Option<&Result<T, Error>>,
    ) -> Self {
        let outcome = result.map_or("cancelled", outcome_of);
        let error = result.and_then(|r| r.as_ref().err()).map(Error::body);
        let request_id = record
            .request_id
            .clone()
            .or_else(|| error.as_ref().and_then(|e| e.request_id.clone()));
        AuditEntry {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            tool,
            backend: record.backend,
            tenant: tenant.to_owned(),
            arguments: arguments.map_or(Value::Null, |a| Value::Object(a.clone())),
            outcome,
            result: result
                .and_then(|r| r.as_ref().ok())
                .and_then(AuditView::audit_result),
            error,
            request_id,
        }
    }

    /// The error that replaces a finished call's answer when its line could not be written:
    /// it says what happened upstream, so that nothing done goes unreported.
    pub fn unrecorded(&self, cause: &io::Error) -> Error {
        let done = match (&self.result, self.outcome) {
            (Some(AuditResult { id: Some(id), .. }), "ok") => match self.tool {
                ToolId::CreatePaymentLink => {
                    format!("the payment link {id} WAS created (do not create it again)")
                }
                _ => format!("the change to payment link {id} WAS made"),
            },
            (_, "ok") => "the call succeeded upstream".to_owned(),
            (_, kind) => format!("the call itself failed ({kind})"),
        };
        Error::Internal {
            message: format!(
                "{done}, but the server's audit log could not record it ({cause}); tell the operator, who must add it to the audit log by hand"
            ),
            retry_safe: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_append_and_a_directory_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"));
        let entry = AuditEntry {
            time: "t".into(),
            tool: ToolId::CreatePaymentLink,
            backend: "sandbox",
            tenant: "fp".into(),
            arguments: Value::Null,
            outcome: "ok",
            result: Some(AuditResult {
                id: Some("pl_1".into()),
                url: None,
            }),
            error: None,
            request_id: None,
        };
        for _ in 0..2 {
            let file = log.open().await.unwrap();
            log.append(file, &entry).await.unwrap();
        }
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["result"]["id"], "pl_1");
        assert!(line.get("error").is_none());

        let unusable = AuditLog::new(dir.path().to_owned());
        assert!(unusable.check().is_err());
        assert!(unusable.open().await.is_err());

        let e = entry.unrecorded(&io::Error::other("disk full"));
        assert_eq!(e.kind().as_str(), "internal");
        assert!(e.to_string().contains("pl_1"), "{e}");
        assert!(!e.retry_safe());
    }
}
