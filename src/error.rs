//! The one error type of the server, and the JSON envelope a caller sees.
//!
//! Every failure a caller can cause (bad arguments, an upstream refusal, a network fault) becomes an
//! [`Error`]; the tool layer turns it into an `isError: true` tool result whose text is exactly
//! `{"error": {...}}` as built by [`Error::envelope`]. Protocol-level problems (an unknown tool) never
//! pass through here: they stay JSON-RPC errors.
//!
//! This module must never format a secret: messages are built from field names, upstream codes and
//! upstream messages that have already been scrubbed (see `upstream::scrub`). Formatting can still
//! reassemble a key the upstream sent in pieces (a validation location's parts joined with dots)
//! or wrote as a number (`9.8765432e7`), so the tool layer scrubs each error once more at the
//! edge (`Scrubber::scrub_error`).

use serde::Serialize;

/// What the upstream said about a failed request, kept so the caller can quote it to support.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamContext {
    /// HTTP status of the upstream answer, when there was one.
    pub status: Option<u16>,
    /// The upstream's own error code (Stream `error.code`, Stripe `error.code` or `error.type`).
    pub code: Option<String>,
    /// The upstream's request id (Stream `x-request-id`, Stripe `Request-Id`).
    pub request_id: Option<String>,
}

/// Everything that can go wrong in a tool call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The arguments are wrong; `field` names the offending argument (`items[2].quantity`).
    /// `upstream` is set when the upstream, not this server, found the problem.
    #[error("{field}: {message}")]
    Validation {
        field: String,
        message: String,
        upstream: Option<UpstreamContext>,
    },

    /// The thing asked for does not exist (for this caller).
    #[error("{message}")]
    NotFound {
        field: Option<String>,
        message: String,
        upstream: UpstreamContext,
    },

    /// The upstream refused the credentials, or none were configured.
    #[error("{message}")]
    Auth {
        message: String,
        upstream: UpstreamContext,
    },

    /// The active backend cannot honour this argument; it is refused rather than dropped.
    #[error("{field}: {message}")]
    UnsupportedByBackend { field: String, message: String },

    /// A write against live money that the operator did not allow (`--allow-live`).
    #[error("{message}")]
    LiveGuard { message: String },

    /// Too many requests, from us or from the upstream; or a quota that waiting will not lift
    /// (then `retry_safe` is false).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: Option<u64>,
        retry_safe: bool,
        upstream: UpstreamContext,
    },

    /// The upstream failed or refused for a reason that is not one of the above.
    /// `maybe_written`: a write reached the upstream and no answer said it was refused, but the
    /// upstream deduplicates it, so sending the same call again is safe (see
    /// [`Error::may_have_written`]).
    #[error("{message}")]
    Upstream {
        field: Option<String>,
        message: String,
        retry_safe: bool,
        maybe_written: bool,
        upstream: UpstreamContext,
    },

    /// A write may or may not have happened upstream; retrying blindly could duplicate it.
    #[error("{message}")]
    OutcomeUnknown {
        message: String,
        upstream: UpstreamContext,
    },

    /// The same `idempotency_key` was used with different arguments.
    #[error("{message}")]
    IdempotencyConflict { message: String },

    /// The user did not confirm a write (declined, cancelled, unchecked, or no answer in time):
    /// nothing was sent upstream.
    #[error("{message}")]
    Declined { message: String },

    /// A write needs the user's confirmation and this client or transport cannot carry the
    /// question: nothing was sent upstream.
    #[error("{message}")]
    ConfirmationRequired { message: String },

    /// A link over the operator's spend cap (per link, or what is left of the daily budget).
    #[error("{message}")]
    CapExceeded { message: String },

    /// A product the operator's `--allowed-products` list does not hold; `field` names it.
    #[error("{field}: {message}")]
    ProductNotAllowed { field: String, message: String },

    /// A fault of this server (configuration, I/O). Never caused by a secret.
    #[error("{message}")]
    Internal { message: String, retry_safe: bool },

    /// Something this server needs for the call (its shared store) cannot be reached now; the
    /// call was refused before anything was sent upstream, so sending it again is safe.
    #[error("{message}")]
    Unavailable { message: String },
}

/// The `kind` of an error envelope: a closed vocabulary a model can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Validation,
    NotFound,
    Auth,
    UnsupportedByBackend,
    LiveGuard,
    RateLimited,
    Upstream,
    OutcomeUnknown,
    IdempotencyConflict,
    Declined,
    ConfirmationRequired,
    CapExceeded,
    ProductNotAllowed,
    Internal,
    Unavailable,
}

impl ErrorKind {
    /// Every kind, for code that maps a kind's name back to it.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::Validation,
        ErrorKind::NotFound,
        ErrorKind::Auth,
        ErrorKind::UnsupportedByBackend,
        ErrorKind::LiveGuard,
        ErrorKind::RateLimited,
        ErrorKind::Upstream,
        ErrorKind::OutcomeUnknown,
        ErrorKind::IdempotencyConflict,
        ErrorKind::Declined,
        ErrorKind::ConfirmationRequired,
        ErrorKind::CapExceeded,
        ErrorKind::ProductNotAllowed,
        ErrorKind::Internal,
        ErrorKind::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Validation => "validation",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Auth => "auth",
            ErrorKind::UnsupportedByBackend => "unsupported_by_backend",
            ErrorKind::LiveGuard => "live_guard",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Upstream => "upstream",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::IdempotencyConflict => "idempotency_conflict",
            ErrorKind::Declined => "declined",
            ErrorKind::ConfirmationRequired => "confirmation_required",
            ErrorKind::CapExceeded => "cap_exceeded",
            ErrorKind::ProductNotAllowed => "product_not_allowed",
            ErrorKind::Internal => "internal",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

/// The body of the `isError` result: `{"error": ErrorBody}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    pub retry_safe: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl Error {
    /// The same error, as belonging to the argument `field`: kinds that name a field
    /// (`validation`, `not_found`, `upstream`) take it, others are returned unchanged.
    pub(crate) fn on_field(self, field: impl Into<String>) -> Self {
        match self {
            Error::Validation {
                message, upstream, ..
            } => Error::Validation {
                field: field.into(),
                message,
                upstream,
            },
            Error::NotFound {
                message, upstream, ..
            } => Error::NotFound {
                field: Some(field.into()),
                message,
                upstream,
            },
            Error::Upstream {
                message,
                retry_safe,
                maybe_written,
                upstream,
                ..
            } => Error::Upstream {
                field: Some(field.into()),
                message,
                retry_safe,
                maybe_written,
                upstream,
            },
            other => other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Validation { .. } => ErrorKind::Validation,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::UnsupportedByBackend { .. } => ErrorKind::UnsupportedByBackend,
            Error::LiveGuard { .. } => ErrorKind::LiveGuard,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Upstream { .. } => ErrorKind::Upstream,
            Error::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Error::IdempotencyConflict { .. } => ErrorKind::IdempotencyConflict,
            Error::Declined { .. } => ErrorKind::Declined,
            Error::ConfirmationRequired { .. } => ErrorKind::ConfirmationRequired,
            Error::CapExceeded { .. } => ErrorKind::CapExceeded,
            Error::ProductNotAllowed { .. } => ErrorKind::ProductNotAllowed,
            Error::Internal { .. } => ErrorKind::Internal,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
        }
    }

    /// Whether sending the very same call again may succeed without side effects a caller would regret.
    pub fn retry_safe(&self) -> bool {
        match self {
            Error::RateLimited { retry_safe, .. }
            | Error::Upstream { retry_safe, .. }
            | Error::Internal { retry_safe, .. } => *retry_safe,
            Error::Unavailable { .. } => true,
            _ => false,
        }
    }

    /// Whether the write this error ended may have happened upstream: the request may have
    /// reached it and no answer definitely refused it (a timeout after sending, a 5xx to a
    /// write, an unreadable 2xx). What a create may have made counts against the spend budget
    /// and is never asked about again as if it were new.
    pub fn may_have_written(&self) -> bool {
        match self {
            Error::OutcomeUnknown { .. } => true,
            Error::Upstream { maybe_written, .. } => *maybe_written,
            _ => false,
        }
    }

    /// The upstream context, when the error came from an upstream answer.
    pub fn upstream(&self) -> Option<&UpstreamContext> {
        match self {
            Error::Validation { upstream, .. } => upstream.as_ref(),
            Error::NotFound { upstream, .. }
            | Error::Auth { upstream, .. }
            | Error::RateLimited { upstream, .. }
            | Error::Upstream { upstream, .. }
            | Error::OutcomeUnknown { upstream, .. } => Some(upstream),
            _ => None,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Validation { field, .. }
            | Error::UnsupportedByBackend { field, .. }
            | Error::ProductNotAllowed { field, .. } => Some(field),
            Error::NotFound { field, .. } | Error::Upstream { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    fn message(&self) -> &str {
        match self {
            Error::Validation { message, .. }
            | Error::NotFound { message, .. }
            | Error::Auth { message, .. }
            | Error::UnsupportedByBackend { message, .. }
            | Error::LiveGuard { message }
            | Error::RateLimited { message, .. }
            | Error::Upstream { message, .. }
            | Error::OutcomeUnknown { message, .. }
            | Error::IdempotencyConflict { message }
            | Error::Declined { message }
            | Error::ConfirmationRequired { message }
            | Error::CapExceeded { message }
            | Error::ProductNotAllowed { message, .. }
            | Error::Internal { message, .. }
            | Error::Unavailable { message } => message,
        }
    }

    /// The structured body a caller sees.
    pub fn body(&self) -> ErrorBody {
        let upstream = self.upstream();
        ErrorBody {
            kind: self.kind(),
            message: self.message().to_owned(),
            field: self.field().map(str::to_owned),
            status: upstream.and_then(|u| u.status),
            upstream_code: upstream.and_then(|u| u.code.clone()),
            request_id: upstream.and_then(|u| u.request_id.clone()),
            retry_after_secs: match self {
                Error::RateLimited {
                    retry_after_secs, ..
                } => *retry_after_secs,
                _ => None,
            },
            retry_safe: self.retry_safe(),
        }
    }

    /// The exact text of the `isError` result: `{"error": {...}}`.
    pub fn envelope(&self) -> String {
        let body = self.body();
        // Serializing a struct of strings, integers and booleans into a String cannot fail.
        serde_json::to_string(&Envelope { error: &body }).unwrap_or_else(|_| {
            r#"{"error":{"kind":"internal","message":"error envelope could not be encoded","retry_safe":false}}"#.to_owned()
        })
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

mod build;
mod startup;
pub(crate) use startup::StartupError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_envelope_names_the_field_and_is_not_retry_safe() {
        let e = Error::validation("items[0].quantity", "must be at least 1");
        let v: serde_json::Value = serde_json::from_str(&e.envelope()).unwrap();
        assert_eq!(v["error"]["kind"], "validation");
        assert_eq!(v["error"]["field"], "items[0].quantity");
        assert_eq!(v["error"]["retry_safe"], false);
        assert!(v["error"].get("status").is_none());
    }

    #[test]
    fn upstream_envelope_carries_status_code_and_request_id() {
        let e = Error::upstream_retryable(
            "bad gateway",
            UpstreamContext {
                status: Some(502),
                code: Some("BAD_GATEWAY".into()),
                request_id: Some("req_1".into()),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&e.envelope()).unwrap();
        assert_eq!(v["error"]["kind"], "upstream");
        assert_eq!(v["error"]["status"], 502);
        assert_eq!(v["error"]["upstream_code"], "BAD_GATEWAY");
        assert_eq!(v["error"]["request_id"], "req_1");
        assert_eq!(v["error"]["retry_safe"], true);
    }

    #[test]
    fn outcome_unknown_is_never_retry_safe() {
        let e = Error::outcome_unknown("timed out", UpstreamContext::default());
        assert!(!e.retry_safe());
        assert_eq!(e.kind().as_str(), "outcome_unknown");
    }

    #[test]
    fn on_field_names_the_argument_only_where_a_field_belongs() {
        let ctx = UpstreamContext::default;
        for e in [
            Error::validation("x", "m"),
            Error::not_found("m", ctx()),
            Error::upstream_failure("m", ctx()),
            Error::upstream_retryable("m", ctx()),
        ] {
            let retry_safe = e.retry_safe();
            let named = e.on_field("items[1].quantity");
            assert_eq!(named.field(), Some("items[1].quantity"));
            assert_eq!(named.retry_safe(), retry_safe, "nothing else changes");
        }
        for e in [
            Error::auth("m", ctx()),
            Error::rate_limited("m", Some(1), ctx()),
            Error::outcome_unknown("m", ctx()),
            Error::internal("m"),
        ] {
            let kind = e.kind();
            let same = e.on_field("items");
            assert_eq!((same.kind(), same.field()), (kind, None));
        }
        assert!(!Error::quota_exhausted("m").retry_safe());
        assert!(Error::rate_limited("m", None, ctx()).retry_safe());
        assert!(Error::internal_retryable("m").retry_safe());
        let down = Error::unavailable("m");
        assert!(down.retry_safe());
        assert_eq!(down.kind().as_str(), "unavailable");
        assert_eq!(down.on_field("items").field(), None);
    }
}
