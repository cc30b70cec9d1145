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
//!
//! A line is bounded, so that the file grows at a bounded rate whatever callers send: at most
//! [`MAX_LINE_BYTES`] per write call. The arguments are recorded in full only up to
//! [`ARGUMENTS_CAP`] bytes of compact JSON; beyond that the line keeps their first bytes as text,
//! marked `arguments_truncated`, and every line carries the SHA-256 and length of the whole
//! arguments, so a line still matches its request. A write refused before any upstream call
//! (validation and the like) gets a short line: arguments only up to [`REFUSED_ARGUMENTS_CAP`],
//! no prefix. Every other string in a line (error message, field, upstream code, request id,
//! the link's id and url, the tenant) is cut to a fixed length, measured as escaped JSON.
//!
//! The files: `bound` (the caps and the clipping that keep a line bounded), `entry` (one line:
//! what it records) and this one (the file: opened before the call, appended and synced after).

mod bound;
mod entry;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::Error;

pub(crate) use entry::{AuditEntry, AuditResult, AuditView, outcome_of};

/// The append-only audit file.
pub(crate) struct AuditLog {
    path: PathBuf,
    /// Serializes write-and-sync, so lines of concurrent calls never interleave.
    lock: Mutex<()>,
}

/// The refusal of a write whose audit line could not even be started.
pub(crate) fn refused_before_call() -> Error {
    Error::internal_retryable(
        "the server's audit log cannot be written, so this write was refused before anything was sent to the payments API (nothing was created or changed). Reads still work; ask the operator to fix --audit-log, then call again",
    )
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
    pub(crate) fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(AuditLog {
            path,
            lock: Mutex::new(()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn open_now(path: &Path) -> io::Result<File> {
        OpenOptions::new().append(true).create(true).open(path)
    }

    /// Checked once at start-up so that a wrong path shows in the log at once. Not fatal: reads
    /// work without it, and writes are refused until the path works.
    pub(crate) fn check(&self) -> io::Result<()> {
        Self::open_now(&self.path).map(drop)
    }

    /// The log at `path`, checked once (see [`AuditLog::check`]) with the result logged: a path
    /// that does not work is not fatal, reads are still served and every write is refused
    /// (`internal`, nothing sent upstream) until the path works.
    pub(crate) fn at_start_up(path: PathBuf) -> Arc<Self> {
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
    pub(crate) async fn open(&self) -> io::Result<File> {
        let path = self.path.clone();
        blocking(move || Self::open_now(&path)).await
    }

    /// Appends `entry` as one line (at most [`MAX_LINE_BYTES`]) and syncs it.
    pub(crate) async fn append(
        self: &Arc<Self>,
        mut file: File,
        entry: &AuditEntry,
    ) -> io::Result<()> {
        let line = entry.line()?;
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
