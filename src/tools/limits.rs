//! The operator's bounds on what the tools keep and answer: the idempotency store's limits and
//! the byte cap of a list page. Read from the options once, at start-up (see
//! `config::GlobalOpts::tool_limits`).

use crate::domain::PageBytes;
use crate::idempotency::StoreLimits;

/// Bounds the tool layer applies, whatever the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ToolLimits {
    pub idempotency: StoreLimits,
    pub page_bytes: PageBytes,
}
