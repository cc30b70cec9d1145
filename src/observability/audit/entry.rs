//! One line of the audit file ([`AuditEntry`]): what a finished write call did, for whom and
//! with which arguments, bounded to [`MAX_LINE_BYTES`]; and the error that replaces a call's
//! answer when its line could not be written.
//!
//! It builds lines only: it must not open, write or sync the file (see the parent module).

use std::io;

use chrono::{SecondsFormat, Utc};
use rmcp::model::JsonObject;
use serde::Serialize;
use serde_json::Value;

use super::bound::{
    ARGUMENTS_CAP, MAX_LINE_BYTES, REFUSED_ARGUMENTS_CAP, SHORT_CAP, URL_CAP, clip, clipped_error,
    record_arguments,
};
use crate::domain::{Money, MoneyView};
use crate::error::Error;
use crate::model::{Page, PaymentLink};
use crate::observability::record::CallRecord;
use crate::tools::id::ToolId;

/// The outcomes that refuse a write on this server's own checks: with no upstream answer during
/// the call, nothing was sent and the line is short.
const LOCAL_REFUSALS: [&str; 9] = [
    "validation",
    "unsupported_by_backend",
    "live_guard",
    "idempotency_conflict",
    "declined",
    "confirmation_required",
    "cap_exceeded",
    "product_not_allowed",
    "unavailable",
];

/// One line of the audit file.
#[derive(Debug, Serialize)]
pub(crate) struct AuditEntry {
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
    /// `ok`, the error envelope's `kind`, `input_required` (a 2026-07-28 client was asked to
    /// confirm; its answer comes with a new call), or `cancelled`.
    pub outcome: &'static str,
    /// The total the create's preview showed, when one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_total: Option<MoneyView>,
    /// How the confirmation ended: `confirmed`, `declined`, `not_required`, `required` (refused:
    /// the client could not be asked) or `asked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<&'static str>,
    /// What the spend caps decided for a create: `within`, `exceeded` or `uncapped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<&'static str>,
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
pub(crate) struct AuditResult {
    pub id: Option<String>,
    pub url: Option<String>,
}

fn tool_name<S: serde::Serializer>(tool: &ToolId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tool.name())
}

/// What a tool's output says about the thing a write touched, for its audit line.
pub(crate) trait AuditView {
    /// The link a write created or changed; `None` for outputs that are not one link.
    fn audit_result(&self) -> Option<AuditResult>;

    /// The outcome label of a successful call: `ok`, unless the output only asks a question.
    fn outcome(&self) -> &'static str {
        "ok"
    }
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

/// The outcome label of a finished call: `ok` (or what the output says it is), or the error's
/// kind.
pub(crate) fn outcome_of<T: AuditView>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(output) => output.outcome(),
        Err(e) => e.kind().as_str(),
    }
}

impl AuditEntry {
    /// The line for a finished call; `result` is `None` when the call was cancelled.
    pub(crate) fn new<T: AuditView>(
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
            preview_total: record.safety.preview_total.map(Money::view),
            confirmation: record.safety.confirmation,
            cap: record.safety.cap,
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
    pub(crate) fn line(&self) -> io::Result<Vec<u8>> {
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
                preview_total: self.preview_total.clone(),
                confirmation: self.confirmation,
                cap: self.cap,
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
    pub(crate) fn unrecorded(&self, cause: &io::Error) -> Error {
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
    use super::super::AuditLog;
    use super::super::bound::MAX_REFUSED_LINE_BYTES;
    use super::*;
    use crate::error::UpstreamContext;
    use crate::model::BackendKind;
    use serde_json::json;
    use sha2::{Digest, Sha256};

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
            preview_total: None,
            confirmation: None,
            cap: None,
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
            safety: crate::observability::record::SafetyRecord {
                preview_total: Some(Money::from_minor(
                    i64::MIN,
                    crate::domain::CurrencyCode::sar(),
                )),
                confirmation: Some("not_required"),
                cap: Some("uncapped"),
            },
        };
        let arguments = json!({ huge('\u{2}'): huge('"') });
        let created = link(&huge('\\'), &huge('\u{3}'));
        let (ok_line, ok_len) = line_for(&t, &arguments, &record, &created);
        // 126 backslashes (2 bytes each, escaped) and the mark fill the 256 bytes.
        let id = ok_line["result"]["id"].as_str().unwrap();
        assert_eq!(id, format!("{}…", "\\".repeat(126)));
        let failed: Answer = Err(Error::rate_limited(
            huge('\u{4}'),
            Some(u64::MAX),
            UpstreamContext {
                status: Some(599),
                code: Some(huge('"')),
                request_id: Some(huge('\u{5}')),
            },
        ));
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
