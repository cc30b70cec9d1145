//! Options of the write safety: when the user confirms a write, how long they have, the spend
//! caps and the products that may be sold; and the request-state key (a secret: environment or
//! file only). Checked at start-up: a cap with too many decimals, an unknown currency, an
//! unreadable or empty product list, or a key shorter than 32 bytes stops the server (exit 2)
//! with the option named.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::StartupError;
use crate::secret::ApiKey;
use crate::spend::{Caps, LedgerBounds, MemoryLedger, SharedLedger, SpendLedger, parse_cap};
use crate::store::Store;
use crate::tools::confirm::{ConfirmPolicy, ConfirmSettings};
use crate::tools::safety::{AllowedProducts, SpendRules};

/// When writes wait for the user's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ConfirmWrites {
    /// Never ask (test keys and the sandbox).
    Never,
    /// Ask before writes that move real money (any Stream host but staging and loopback, any Stripe key but a test-mode one).
    Live,
    /// Ask before every write.
    Always,
}

impl From<ConfirmWrites> for ConfirmPolicy {
    fn from(c: ConfirmWrites) -> Self {
        match c {
            ConfirmWrites::Never => ConfirmPolicy::Never,
            ConfirmWrites::Live => ConfirmPolicy::Live,
            ConfirmWrites::Always => ConfirmPolicy::Always,
        }
    }
}

/// The safety options (global: before or after the subcommand).
#[derive(Debug, Clone, Args)]
pub(crate) struct SafetyOpts {
    /// When create_payment_link and update_payment_link_status wait for the user's confirmation
    /// (an MCP elicitation showing the exact lines and total): never, live (when the backend
    /// moves real money) or always. A client that cannot be asked gets `confirmation_required`.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_CONFIRM_WRITES",
        value_enum,
        default_value = "live"
    )]
    pub confirm_writes: ConfirmWrites,

    /// How long the user has to answer a confirmation, in seconds; no answer is `declined`.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_CONFIRM_TIMEOUT_SECS",
        default_value_t = ConfirmSettings::DEFAULT_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub confirm_timeout_secs: u64,

    /// The most one link may total, as CUR:AMOUNT (e.g. SAR:5000, KWD:250.500); repeat for more
    /// currencies (comma-separated in the variable). A currency without a cap is uncapped.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_MAX_LINK_AMOUNT",
        value_delimiter = ','
    )]
    pub max_link_amount: Vec<String>,

    /// A rolling 24-hour budget per caller (tenant) and currency, as CUR:AMOUNT; repeatable. A
    /// create counts when it succeeds or its outcome is unknown. Kept in memory: lost on restart.
    #[arg(
        long,
        global = true,
        env = "PAYLINK_MAX_DAILY_AMOUNT",
        value_delimiter = ','
    )]
    pub max_daily_amount: Vec<String>,

    /// A file listing the product (or Stripe price) ids that may be sold, one per line (`#`
    /// comments); any other id is refused (`product_not_allowed`) before any upstream call.
    #[arg(long, global = true, env = "PAYLINK_ALLOWED_PRODUCTS")]
    pub allowed_products: Option<PathBuf>,
}

impl SafetyOpts {
    /// The confirmation settings, with `key` (from `PAYLINK_REQUEST_STATE_KEY` or its `_FILE`)
    /// sealing request states, or a random key when none is set.
    pub(crate) fn confirm_settings(
        &self,
        key: Option<ApiKey>,
    ) -> Result<ConfirmSettings, StartupError> {
        const KEY: &str = "PAYLINK_REQUEST_STATE_KEY";
        let bytes = key.as_ref().map(|k| k.expose().as_bytes().to_vec());
        if let Some(b) = &bytes
            && b.len() < 32
        {
            return Err(StartupError::Safety {
                option: KEY,
                message: format!(
                    "is {} bytes; a request-state key must be at least 32 bytes (e.g. `openssl rand -base64 48`)",
                    b.len()
                ),
            });
        }
        ConfirmSettings::new(
            self.confirm_writes.into(),
            Duration::from_secs(self.confirm_timeout_secs),
            bytes,
        )
        .map_err(|message| StartupError::Safety {
            option: KEY,
            message,
        })
    }

    /// The caps and the product list, checked.
    /// The spend rules; the daily budgets are kept in `store` when replicas share one.
    pub(crate) fn spend_rules(&self, store: Option<&Store>) -> Result<SpendRules, StartupError> {
        let per_link = caps_of(&self.max_link_amount, "--max-link-amount")?;
        let daily = caps_of(&self.max_daily_amount, "--max-daily-amount")?;
        let caps = Caps::new(per_link, daily).map_err(|message| StartupError::Safety {
            option: "--max-link-amount/--max-daily-amount",
            message,
        })?;
        let allowed = self
            .allowed_products
            .as_ref()
            .map(|path| {
                let refuse = |message: String| StartupError::Safety {
                    option: "--allowed-products",
                    message: format!("{}: {message}", path.display()),
                };
                let text = std::fs::read_to_string(path)
                    .map_err(|e| refuse(format!("cannot be read: {e}")))?;
                AllowedProducts::parse(&text).map_err(refuse)
            })
            .transpose()?;
        let ledger: Arc<dyn SpendLedger> = match store {
            Some(store) => Arc::new(SharedLedger::new(store.clone(), LedgerBounds::DEFAULT)),
            None => Arc::new(MemoryLedger::new(LedgerBounds::DEFAULT)),
        };
        Ok(SpendRules::new(caps, allowed, ledger))
    }
}

fn caps_of(
    raw: &[String],
    option: &'static str,
) -> Result<Vec<crate::domain::Money>, StartupError> {
    raw.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| parse_cap(s).map_err(|message| StartupError::Safety { option, message }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Cli;
    use super::*;
    use clap::Parser;

    fn opts(args: &[&str]) -> SafetyOpts {
        let mut all = vec!["paylink-mcp"];
        all.extend(args);
        Cli::try_parse_from(all).unwrap().global.safety
    }

    #[test]
    fn caps_and_policy_parse_from_flags() {
        let o = opts(&[
            "--max-link-amount",
            "SAR:5000",
            "--max-link-amount",
            "KWD:250.500,USD:10",
            "--confirm-writes",
            "always",
            "--confirm-timeout-secs",
            "5",
        ]);
        let rules = o.spend_rules(None).unwrap();
        let kwd = crate::domain::CurrencyCode::parse("KWD", "c").unwrap();
        assert_eq!(rules.caps.per_link(kwd).map(|m| m.minor()), Some(250_500));
        assert!(rules.caps.daily(kwd).is_none());
        let settings = o.confirm_settings(None).unwrap();
        assert_eq!(settings.policy, ConfirmPolicy::Always);
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert!(Cli::try_parse_from(["paylink-mcp", "--confirm-writes", "sometimes"]).is_err());
    }

    #[test]
    fn bad_safety_options_name_the_option() {
        let e = opts(&["--max-daily-amount", "SAR:1.001"])
            .spend_rules(None)
            .unwrap_err();
        assert!(e.to_string().starts_with("--max-daily-amount:"), "{e}");
        let e = opts(&["--allowed-products", "/nonexistent/list"])
            .spend_rules(None)
            .unwrap_err();
        assert!(e.to_string().starts_with("--allowed-products:"), "{e}");
        let e = opts(&[])
            .confirm_settings(Some(ApiKey::new("short")))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("PAYLINK_REQUEST_STATE_KEY:"),
            "{e}"
        );
        assert!(
            !e.to_string().contains("short"),
            "the key is never echoed: {e}"
        );
        let long = ApiKey::new("k".repeat(32));
        assert!(opts(&[]).confirm_settings(Some(long)).is_ok());
    }
}
