//! Options of the shared store (`paylink-mcp http --store ...`): where replicas keep what they
//! share, and how long one store operation may take.
//!
//! The store URL is read by [`StoreOpts::choice`], not by clap's `env`: a URL with a password
//! is a secret, accepted from `PAYLINK_STORE` or `PAYLINK_STORE_FILE` but refused on the
//! command line, and clap cannot tell the two sources apart.

use std::time::Duration;

use clap::Args;

use crate::error::StartupError;
use crate::store::{Store, StoreChoice, choose};

/// The shared store's options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Shared store options")]
pub(crate) struct StoreOpts {
    /// Where state shared by replicas lives (idempotency keys, abuse-limit counts, sandbox
    /// links): `memory` (this process only; the default) or a Redis/Valkey URL,
    /// redis://HOST[:PORT][/DB] or rediss:// for TLS. Also PAYLINK_STORE or the file named by
    /// PAYLINK_STORE_FILE; a URL with a password only from those two.
    #[arg(long = "store", value_name = "memory|redis://…|rediss://…")]
    pub store: Option<String>,

    /// Deadline of one operation on the shared store, in milliseconds. A write whose store
    /// operation misses it is refused (`unavailable`) before anything is sent upstream.
    #[arg(
        long,
        env = "PAYLINK_STORE_TIMEOUT_MS",
        default_value_t = crate::store::DEFAULT_TIMEOUT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(10..=2000)
    )]
    pub store_timeout_ms: u64,
}

impl StoreOpts {
    /// The shared store, when the operator chose Redis: checked, not connected (the connection
    /// opens on first use, so a server whose Redis is down still starts and serves reads).
    pub(crate) fn store(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Store>, StartupError> {
        match choose(self.store.as_deref(), env).map_err(StartupError::Store)? {
            StoreChoice::Memory => Ok(None),
            StoreChoice::Redis(url) => {
                Store::new(url, Duration::from_millis(self.store_timeout_ms))
                    .map(Some)
                    .map_err(StartupError::Store)
            }
        }
    }
}
