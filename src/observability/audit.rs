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

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use rmcp::model::JsonObject;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::record::CallRecord;
use crate::error::Error;
use crate::model::{Page, PaymentLink};
use crate::tools::id::ToolId;

/// The append-only audit file.
pub struct AuditLog {
    path: PathBuf,
    /// Serializes write-and-sync, so lines of concurrent calls never interleave.
    lock: Mutex<()>,
}

/// Arguments whose compact JSON is longer than this many bytes are not recorded in full.
pub const ARGUMENTS_CAP: usize = 8 * 1024;

/// The same cap for a write refused before any upstream call (its short line has no prefix).
pub const REFUSED_ARGUMENTS_CAP: usize = 1024;

/// The longest an audit line can be, newline included. What makes it so: the arguments take at
/// most [`ARGUMENTS_CAP`] bytes, every other string is cut (see the caps below), and a line that
/// would still be longer (it cannot, by the sum of the caps; a unit test checks it) is replaced by
/// its short form.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The longest line of a write refused before any upstream call (see [`REFUSED_ARGUMENTS_CAP`]),
/// newline included: what a flood of invalid writes can add per call.
pub const MAX_REFUSED_LINE_BYTES: usize = 4 * 1024;

/// Error messages, as escaped JSON.
const MESSAGE_CAP: usize = 1024;
/// The link's url.
const URL_CAP: usize = 2048;
/// Every other string: ids, field names, codes, the tenant.
const SHORT_CAP: usize = 256;

/// The outcomes that refuse a write on this server's own checks: with no upstream answer during
/// the call, nothing was sent and the line is short.
const LOCAL_REFUSALS: [&str; 4] = [
    "validation",
    "unsupported_by_backend",
    "live_guard",
    "idempotency_conflict",
];

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
    /// The arguments as the caller sent them (`null` when none), when they fit the cap; absent
    /// when `arguments_truncated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// SHA-256 (hex) of the arguments as compact JSON with keys sorted (how `arguments` is
    /// written): matches a line to a request even when the arguments are cut.
    pub arguments_sha256: String,
    /// Length in bytes of that compact JSON.
    pub arguments_bytes: u64,
    /// Set (true) when the arguments are not in the line in full.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub arguments_truncated: bool,
    /// When truncated, on a call that went past this server's own checks: the start of the
    /// arguments' compact JSON, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_prefix: Option<String>,
    /// `ok`, the error envelope's `kind`, or `cancelled`.
    pub outcome: &'static str,
    /// On success: the link's id and url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<AuditResult>,
    /// On failure: the error envelope's body (`{kind, message, field, retry_safe, ...}`), each
    /// string cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// The upstream's request id of the last answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AuditResult {
    pub id: Option<String>,
    pub url: Option<String>,
}

fn tool_name<S: serde::Serializer>(tool: &ToolId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tool.name())
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

/// The arguments as the line records them.
struct RecordedArguments {
    full: Option<Value>,
    sha256: String,
    bytes: u64,
    prefix: Option<String>,
}

/// Serializes into a hash, a length and the first `keep` bytes, never holding the whole text.
struct Digesting {
    hash: Sha256,
    len: u64,
    head: Vec<u8>,
    keep: usize,
}

impl Write for Digesting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.update(buf);
        self.len += buf.len() as u64;
        let room = self.keep.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..room.min(buf.len())]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn record_arguments(
    arguments: Option<&Map<String, Value>>,
    cap: usize,
    prefix: bool,
) -> RecordedArguments {
    let mut digest = Digesting {
        hash: Sha256::new(),
        len: 0,
        head: Vec::new(),
        keep: ARGUMENTS_CAP,
    };
    // Writing JSON of a map into an infallible writer cannot fail.
    let _ = match arguments {
        Some(map) => serde_json::to_writer(&mut digest, map),
        None => serde_json::to_writer(&mut digest, &Value::Null),
    };
    let sha256 = digest
        .hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fits = digest.len <= cap as u64;
    let full = fits.then(|| arguments.map_or(Value::Null, |m| Value::Object(m.clone())));
    let prefix = (!fits && prefix).then(|| {
        let text = match std::str::from_utf8(&digest.head) {
            Ok(t) => t,
            // Cut inside a character: keep the whole ones (the prefix up to the error is valid).
            Err(e) => std::str::from_utf8(&digest.head[..e.valid_up_to()]).unwrap_or(""),
        };
        clip(text, ARGUMENTS_CAP)
    });
    RecordedArguments {
        full,
        sha256,
        bytes: digest.len,
        prefix,
    }
}

/// The bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `text` cut so that, written as a JSON string, it takes at most `cap` bytes (quotes aside); a
/// cut text ends with `…`.
pub fn clip(text: &str, cap: usize) -> String {
    if text.chars().map(escaped_len).sum::<usize>() <= cap {
        return text.to_owned();
    }
    const MARK: char = '…';
    let budget = cap.saturating_sub(MARK.len_utf8());
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        used += escaped_len(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push(MARK);
    out
}

/// The error envelope's body with only its known fields, each string cut.
fn clipped_error(body: &Value) -> Value {
    let mut out = Map::new();
    for (key, cap) in [
        ("kind", SHORT_CAP),
        ("message", MESSAGE_CAP),
        ("field", SHORT_CAP),
        ("status", 0),
        ("upstream_code", SHORT_CAP),
        ("request_id", SHORT_CAP),
        ("retry_after_secs", 0),
        ("retry_safe", 0),
    ] {
        let kept = match body.get(key) {
            Some(Value::String(s)) => Value::String(clip(s, cap)),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.clone(),
            _ => continue,
        };
        out.insert(key.to_owned(), kept);
    }
    Value::Object(out)
}

/// The refusal of a write whose audit line could not even be started.
pub fn refused_before_call() -> Error {
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

    /// Appends `entry` as one line (at most [`MAX_LINE_BYTES`]) and syncs it.
    pub async fn append(self: &Arc<Self>, mut file: File, entry: &AuditEntry) -> io::Result<()> {
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
        let success = result
            .and_then(|r| r.as_ref().ok())
            .and_then(AuditView::audit_result);
        let error = result
            .and_then(|r| r.as_ref().err())
            .map(|e| clipped_error(&serde_json::to_value(e.body()).unwrap_or_default()));
        let request_id = record
            .request_id
            .as_deref()
            .or_else(|| error.as_ref().and_then(|e| e["request_id"].as_str()))
            .map(|id| clip(id, SHORT_CAP));
        // Refused on this server's own checks, with nothing sent: nothing to reconcile upstream.
        let refused_here = LOCAL_REFUSALS.contains(&outcome) && record.status.is_none();
        let arguments = if refused_here {
            record_arguments(arguments, REFUSED_ARGUMENTS_CAP, false)
        } else {
            record_arguments(arguments, ARGUMENTS_CAP, true)
        };
        AuditEntry {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            tool,
            backend: record.backend,
            tenant: clip(tenant, SHORT_CAP),
            arguments_truncated: arguments.full.is_none(),
            arguments: arguments.full,
            arguments_sha256: arguments.sha256,
            arguments_bytes: arguments.bytes,
            arguments_prefix: arguments.prefix,
            outcome,
            result: success.map(|r| AuditResult {
                id: r.id.as_deref().map(|s| clip(s, SHORT_CAP)),
                url: r.url.as_deref().map(|s| clip(s, URL_CAP)),
            }),
            error,
            request_id,
        }
    }

    /// The line as written: JSON and a newline, at most [`MAX_LINE_BYTES`]. Should the caps ever
    /// add up to more, the line loses its arguments, prefix and url, and its message is cut
    /// shorter, rather than break the bound.
    pub fn line(&self) -> io::Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self).map_err(io::Error::other)?;
        if line.len() >= MAX_LINE_BYTES {
            let short = AuditEntry {
                time: self.time.clone(),
                tool: self.tool,
                backend: self.backend,
                tenant: clip(&self.tenant, SHORT_CAP),
                arguments: None,
                arguments_sha256: self.arguments_sha256.clone(),
                arguments_bytes: self.arguments_bytes,
                arguments_truncated: true,
                arguments_prefix: None,
                outcome: self.outcome,
                result: self.result.as_ref().map(|r| AuditResult {
                    id: r.id.as_deref().map(|s| clip(s, SHORT_CAP)),
                    url: None,
                }),
                error: self.error.as_ref().map(|e| {
                    let mut e = clipped_error(e);
                    if let Some(Value::String(m)) = e.get_mut("message") {
                        *m = clip(m, SHORT_CAP);
                    }
                    e
                }),
                request_id: self.request_id.as_deref().map(|s| clip(s, SHORT_CAP)),
            };
            line = serde_json::to_vec(&short).map_err(io::Error::other)?;
        }
        line.push(b'\n');
        Ok(line)
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
        Error::internal(format!(
            "{done}, but the server's audit log could not record it ({cause}); tell the operator, who must add it to the audit log by hand"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UpstreamContext;
    use crate::model::BackendKind;
    use serde_json::json;

    type Answer = Result<PaymentLink, Error>;

    /// A created link, as a write's result.
    fn link(id: &str, url: &str) -> Answer {
        Ok(PaymentLink {
            id: id.to_owned(),
            url: Some(url.to_owned()),
            name: None,
            description: None,
            status: None,
            currency: None,
            total: None,
            original_total: None,
            amount_collected: None,
            item_count: None,
            max_number_of_payments: None,
            valid_until: None,
            success_redirect_url: None,
            failure_redirect_url: None,
            recurring_interval: None,
            inactive_message: None,
            created_at: None,
            metadata: Default::default(),
            backend: BackendKind::Sandbox,
            livemode: false,
        })
    }

    fn entry() -> AuditEntry {
        AuditEntry {
            time: "t".into(),
            tool: ToolId::CreatePaymentLink,
            backend: "sandbox",
            tenant: "fp".into(),
            arguments: Some(Value::Null),
            arguments_sha256: "0".repeat(64),
            arguments_bytes: 4,
            arguments_truncated: false,
            arguments_prefix: None,
            outcome: "ok",
            result: Some(AuditResult {
                id: Some("pl_1".into()),
                url: None,
            }),
            error: None,
            request_id: None,
        }
    }

    /// A tenant's fingerprint.
    fn tenant(fingerprint: &str) -> String {
        fingerprint.to_owned()
    }

    /// The line `AuditEntry::new` writes for this call, parsed, and its length.
    fn line_for(
        tenant: &str,
        arguments: &Value,
        record: &CallRecord,
        result: &Answer,
    ) -> (Value, usize) {
        let entry = AuditEntry::new(
            ToolId::CreatePaymentLink,
            tenant,
            arguments.as_object(),
            record,
            Some(result),
        );
        let unbounded = serde_json::to_vec(&entry).unwrap().len() + 1;
        let line = entry.line().unwrap();
        assert_eq!(line.len(), unbounded, "the caps alone keep the line short");
        let text = std::str::from_utf8(&line).unwrap();
        (serde_json::from_str(text).unwrap(), line.len())
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[tokio::test]
    async fn lines_append_and_a_directory_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"));
        let entry = entry();
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

    #[test]
    fn clip_counts_escapes_and_keeps_whole_characters() {
        assert_eq!(clip("short", 5), "short");
        assert_eq!(clip("abcdef", 5), "ab…");
        // Each quote takes 2 bytes escaped, each control character 6.
        let quotes = clip(&"\"".repeat(100), 20);
        assert_eq!(serde_json::to_string(&quotes).unwrap().len() - 2, 2 * 8 + 3);
        let controls = clip(&"\u{1}".repeat(100), 20);
        assert!(serde_json::to_string(&controls).unwrap().len() - 2 <= 20);
        let arabic = clip(&"ع".repeat(100), 21);
        assert_eq!(arabic, format!("{}…", "ع".repeat(9)));
        for text in ["\"\\\n\u{1f}x", &"é\u{7}".repeat(50)] {
            for cap in 0..40 {
                let out = clip(text, cap);
                assert!(
                    serde_json::to_string(&out).unwrap().len() - 2 <= cap.max(3),
                    "{text:?} at {cap}: {out:?}"
                );
            }
        }
    }

    #[test]
    fn arguments_are_recorded_whole_up_to_the_cap_with_their_hash() {
        let t = tenant("fp");
        let ok = link("pl_1", "https://x");
        let record = CallRecord {
            status: Some(200),
            ..CallRecord::default()
        };
        let small = json!({"name": "Order", "items": [{"product_id": "p", "quantity": 2}]});
        let (line, _) = line_for(&t, &small, &record, &ok);
        assert_eq!(line["arguments"], small);
        assert!(line.get("arguments_truncated").is_none());
        let compact = serde_json::to_vec(&small).unwrap();
        assert_eq!(line["arguments_sha256"], sha256_hex(&compact));
        assert_eq!(line["arguments_bytes"], compact.len());

        let big = json!({"name": "x", "metadata": {"k": "\"".repeat(ARGUMENTS_CAP)}});
        let (line, len) = line_for(&t, &big, &record, &ok);
        assert!(line.get("arguments").is_none(), "{line}");
        assert_eq!(line["arguments_truncated"], true);
        let compact = serde_json::to_vec(&big).unwrap();
        assert_eq!(line["arguments_sha256"], sha256_hex(&compact));
        assert_eq!(line["arguments_bytes"], compact.len());
        let prefix = line["arguments_prefix"].as_str().unwrap();
        assert!(prefix.ends_with('…'));
        let kept = prefix.trim_end_matches('…');
        assert!(std::str::from_utf8(&compact).unwrap().starts_with(kept));
        assert!(len < ARGUMENTS_CAP + 1024, "{len}");
    }

    /// A write refused by the server's own checks, with nothing sent upstream: a short line, with
    /// the hash and length but neither the arguments nor a prefix once they pass 1 KiB.
    #[test]
    fn a_write_refused_before_the_upstream_gets_a_short_line() {
        let t = tenant("fp");
        let refused: Answer = Err(Error::validation("name", "must be at most 200 characters"));
        let junk = json!({"name": "x".repeat(1024 * 1024), "items": []});
        let (line, len) = line_for(&t, &junk, &CallRecord::default(), &refused);
        assert_eq!(line["outcome"], "validation");
        assert_eq!(line["arguments_truncated"], true);
        assert!(line.get("arguments").is_none() && line.get("arguments_prefix").is_none());
        assert_eq!(
            line["arguments_sha256"],
            sha256_hex(&serde_json::to_vec(&junk).unwrap())
        );
        assert_eq!(line["error"]["field"], "name");
        assert!(len < 1024, "{len}: {line}");
        // At its worst (a huge field name and message, arguments just under the cap, all of
        // characters that grow when escaped), a short line stays under its own bound.
        let worst: Answer = Err(Error::validation(
            "\"".repeat(100_000),
            "\u{1}".repeat(100_000),
        ));
        let under_cap = json!({"n": "\"".repeat(REFUSED_ARGUMENTS_CAP / 2 - 4)});
        let (line, len) = line_for(
            &tenant(&"\"".repeat(1000)),
            &under_cap,
            &CallRecord::default(),
            &worst,
        );
        assert!(line["arguments"].is_object(), "{line}");
        assert!(len <= MAX_REFUSED_LINE_BYTES, "{len}");
        // Small arguments are still recorded whole.
        let small = json!({"name": "", "items": []});
        let (line, _) = line_for(&t, &small, &CallRecord::default(), &refused);
        assert_eq!(line["arguments"], small);
        // A validation error found by the upstream (it answered): the full form, with a prefix.
        let upstream_said = CallRecord {
            status: Some(422),
            ..CallRecord::default()
        };
        let (line, _) = line_for(&t, &junk, &upstream_said, &refused);
        assert!(line["arguments_prefix"].is_string(), "{line}");
    }

    /// Every string a line holds at its worst (quotes and control characters, which grow when
    /// escaped, far beyond every cap): the line stays under MAX_LINE_BYTES without its fallback.
    #[test]
    fn the_longest_possible_line_is_within_the_bound() {
        let huge = |c: char| c.to_string().repeat(200_000);
        let t = tenant(&huge('"'));
        let record = CallRecord {
            backend: "sandbox",
            status: Some(500),
            request_id: Some(huge('\u{1}')),
            retries: 9,
        };
        let arguments = json!({ huge('\u{2}'): huge('"') });
        let created = link(&huge('\\'), &huge('\u{3}'));
        let (ok_line, ok_len) = line_for(&t, &arguments, &record, &created);
        // 126 backslashes (2 bytes each, escaped) and the mark fill the 256 bytes.
        let id = ok_line["result"]["id"].as_str().unwrap();
        assert_eq!(id, format!("{}…", "\\".repeat(126)));
        let failed: Answer = Err(Error::RateLimited {
            message: huge('\u{4}'),
            retry_after_secs: Some(u64::MAX),
            retry_safe: true,
            upstream: UpstreamContext {
                status: Some(599),
                code: Some(huge('"')),
                request_id: Some(huge('\u{5}')),
            },
        });
        let (_, failed_len) = line_for(&t, &arguments, &record, &failed);
        // Both results and errors at once cannot happen; the sum bounds it anyway.
        let mut both = AuditEntry::new(
            ToolId::UpdatePaymentLinkStatus,
            &t,
            arguments.as_object(),
            &record,
            Some(&failed),
        );
        both.result = Some(AuditResult {
            id: Some(clip(&huge('"'), SHORT_CAP)),
            url: Some(clip(&huge('"'), URL_CAP)),
        });
        let both_len = serde_json::to_vec(&both).unwrap().len() + 1;
        for len in [ok_len, failed_len, both_len] {
            assert!(len <= MAX_LINE_BYTES, "{len}");
        }
        // And should an entry ever be built past the caps, its line falls back to the short form.
        let mut over = entry();
        over.arguments = Some(Value::String("x".repeat(MAX_LINE_BYTES)));
        let line = over.line().unwrap();
        assert!(line.len() <= MAX_LINE_BYTES);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["arguments_truncated"], true);
        assert_eq!(v["result"]["id"], "pl_1");
    }
}
