//! The named constructors of [`Error`]: one per way a call can fail, so that each kind's
//! retry-safety and wording are decided in one place rather than in struct literals at every
//! call site.

use super::{Error, UpstreamContext};

impl Error {
    /// A validation error on `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            message: message.into(),
            upstream: None,
        }
    }

    /// A refusal of an argument the backend cannot honour.
    pub fn unsupported(field: impl Into<String>, backend: &str) -> Self {
        let field = field.into();
        Error::UnsupportedByBackend {
            message: format!(
                "the {backend} backend cannot honour `{field}`; remove it and call again (it is refused, never silently dropped)"
            ),
            field,
        }
    }

    /// A validation error the upstream found (it answered with the refusal).
    pub(crate) fn upstream_validation(
        field: impl Into<String>,
        message: impl Into<String>,
        upstream: UpstreamContext,
    ) -> Self {
        Error::Validation {
            field: field.into(),
            message: message.into(),
            upstream: Some(upstream),
        }
    }

    /// The thing asked for does not exist; [`Error::on_field`] names the argument.
    pub(crate) fn not_found(message: impl Into<String>, upstream: UpstreamContext) -> Self {
        Error::NotFound {
            field: None,
            message: message.into(),
            upstream,
        }
    }

    /// The credentials were refused, or none were configured.
    pub(crate) fn auth(message: impl Into<String>, upstream: UpstreamContext) -> Self {
        Error::Auth {
            message: message.into(),
            upstream,
        }
    }

    /// A write against live money that the operator did not allow.
    pub(crate) fn live_guard(message: impl Into<String>) -> Self {
        Error::LiveGuard {
            message: message.into(),
        }
    }

    /// Too many requests: waiting (`retry_after_secs`, when known) and sending the same call
    /// again is safe.
    pub(crate) fn rate_limited(
        message: impl Into<String>,
        retry_after_secs: Option<u64>,
        upstream: UpstreamContext,
    ) -> Self {
        Error::RateLimited {
            message: message.into(),
            retry_after_secs,
            retry_safe: true,
            upstream,
        }
    }

    /// A quota that waiting will not lift: `rate_limited`, but not retry-safe.
    pub(crate) fn quota_exhausted(message: impl Into<String>) -> Self {
        Error::RateLimited {
            message: message.into(),
            retry_after_secs: None,
            retry_safe: false,
            upstream: UpstreamContext::default(),
        }
    }

    /// The upstream failed or refused, and sending the same call again would not help (or
    /// could repeat a write).
    pub(crate) fn upstream_failure(message: impl Into<String>, upstream: UpstreamContext) -> Self {
        Error::Upstream {
            field: None,
            message: message.into(),
            retry_safe: false,
            maybe_written: false,
            upstream,
        }
    }

    /// The upstream failed in a way that sending the same call again cannot make worse: nothing
    /// was done, or the call only reads.
    pub(crate) fn upstream_retryable(
        message: impl Into<String>,
        upstream: UpstreamContext,
    ) -> Self {
        Error::Upstream {
            field: None,
            message: message.into(),
            retry_safe: true,
            maybe_written: false,
            upstream,
        }
    }

    /// A write reached the upstream and got no answer (or one saying an earlier attempt of it is
    /// still running), and the upstream deduplicates it: the link may exist, and sending the same
    /// call again (the same idempotency key) is safe, as it cannot make a second one.
    pub(crate) fn retry_with_same_key(
        message: impl Into<String>,
        upstream: UpstreamContext,
    ) -> Self {
        Error::Upstream {
            field: None,
            message: message.into(),
            retry_safe: true,
            maybe_written: true,
            upstream,
        }
    }

    /// A write may or may not have happened upstream.
    pub(crate) fn outcome_unknown(message: impl Into<String>, upstream: UpstreamContext) -> Self {
        Error::OutcomeUnknown {
            message: message.into(),
            upstream,
        }
    }

    /// The same `idempotency_key` was used with other arguments.
    pub(crate) fn idempotency_conflict(message: impl Into<String>) -> Self {
        Error::IdempotencyConflict {
            message: message.into(),
        }
    }

    /// The user did not confirm the write.
    pub(crate) fn declined(message: impl Into<String>) -> Self {
        Error::Declined {
            message: message.into(),
        }
    }

    /// The write needs a confirmation this client or transport cannot carry.
    pub(crate) fn confirmation_required(message: impl Into<String>) -> Self {
        Error::ConfirmationRequired {
            message: message.into(),
        }
    }

    /// Over a spend cap.
    pub(crate) fn cap_exceeded(message: impl Into<String>) -> Self {
        Error::CapExceeded {
            message: message.into(),
        }
    }

    /// A product outside the operator's list, at `field`.
    pub(crate) fn product_not_allowed(
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::ProductNotAllowed {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A fault of this server.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            retry_safe: false,
        }
    }

    /// A fault of this server that has done nothing yet: the same call may simply be sent again.
    pub(crate) fn internal_retryable(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            retry_safe: true,
        }
    }

    /// A dependency of this server (its shared store) is down; nothing was sent upstream.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable {
            message: message.into(),
        }
    }
}
