//! The operator's bounds on what the tools keep and answer: the idempotency store's limits and
//! the byte cap of a list page. Read from the options once, at start-up.

use crate::config::GlobalOpts;
use crate::domain::PageBytes;
use crate::idempotency::StoreLimits;

/// Bounds the tool layer applies, whatever the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolLimits {
    pub idempotency: StoreLimits,
    pub page_bytes: PageBytes,
}

impl ToolLimits {
    pub fn from_opts(opts: &GlobalOpts) -> Self {
        ToolLimits {
            idempotency: StoreLimits {
                max_entries: opts.idempotency_max_entries,
                max_bytes: opts.idempotency_max_bytes,
                max_per_tenant: opts.idempotency_max_per_tenant,
                max_bytes_per_tenant: opts.idempotency_max_tenant_bytes,
                max_unknown_per_tenant: opts.idempotency_max_unknown_per_tenant,
                ..StoreLimits::default()
            },
            page_bytes: PageBytes::new(opts.max_page_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_defaults_of_the_options_are_the_defaults_of_the_limits() {
        let cli = crate::config::Cli::parse_from(["paylink-mcp"]);
        assert_eq!(ToolLimits::from_opts(&cli.global), ToolLimits::default());
        let cli = crate::config::Cli::parse_from([
            "paylink-mcp",
            "--max-page-bytes",
            "4096",
            "--idempotency-max-unknown-per-tenant",
            "7",
        ]);
        let limits = ToolLimits::from_opts(&cli.global);
        assert_eq!(limits.page_bytes.get(), 4096);
        assert_eq!(limits.idempotency.max_unknown_per_tenant, 7);
    }
}
