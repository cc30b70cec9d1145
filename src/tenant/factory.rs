//! Building a new tenant's backend: one match arm per backend kind.
//!
//! The HTTP transport calls [`TenantFactory::backend`] on a cache miss, with the upstream key
//! (the caller's own, or the operator's in operator-key mode), the base URL and branch already
//! checked. REST backends share one connection pool per base URL ([`UpstreamPools`]), so a new
//! tenant costs a few header values, never a TLS handshake.

use std::sync::Arc;

use crate::backend::Backend;
use crate::backend::sandbox::{SandboxBackend, SandboxLimits};
use crate::backend::stream::StreamBackend;
use crate::backend::stripe::StripeBackend;
use crate::config::GlobalOpts;
use crate::model::BackendKind;
use crate::secret::ApiKey;
use crate::upstream::UpstreamPools;

/// Why a tenant could not be built. Messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantError {
    /// The key cannot be used with this backend: the caller should fix it (HTTP 401).
    Key(String),
    /// This server cannot serve this backend over HTTP (refused at start-up).
    Unavailable(String),
}

impl std::fmt::Display for TenantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TenantError::Key(m) | TenantError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Builds tenant backends of one kind.
pub struct TenantFactory {
    kind: BackendKind,
    pools: Arc<UpstreamPools>,
    /// The operator's options, so that a backend's arm finds its own settings (a Stripe API
    /// version) without a new constructor parameter per backend.
    opts: GlobalOpts,
    /// The sandbox's bounds, and the byte pool every sandbox tenant of the process shares.
    sandbox: SandboxLimits,
}

impl TenantFactory {
    pub fn new(kind: BackendKind, pools: Arc<UpstreamPools>, opts: &GlobalOpts) -> Self {
        TenantFactory {
            kind,
            pools,
            opts: opts.clone(),
            sandbox: SandboxLimits::from_opts(opts),
        }
    }

    /// Sandbox tenants share `limits`' pool (with tenants built elsewhere from the same limits,
    /// such as the anonymous loopback tenant) instead of a pool of the factory's own.
    pub fn with_sandbox_limits(mut self, limits: SandboxLimits) -> Self {
        self.sandbox = limits;
        self
    }

    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// A new backend for one tenant. `key` is what the backend sends upstream (`None` only for
    /// the sandbox); `base` (a checked Stream base URL) and `branch` (a checked UUID) are the
    /// request's `X-Stream-*` choices, which other backends ignore.
    pub fn backend(
        &self,
        key: Option<&ApiKey>,
        base: &str,
        branch: Option<&str>,
    ) -> Result<Arc<dyn Backend>, TenantError> {
        match self.kind {
            // Each sandbox tenant has its own data, bounded, gone with the tenant; the byte pool
            // is shared by all of them.
            BackendKind::Sandbox => Ok(Arc::new(SandboxBackend::with_limits(self.sandbox.clone()))),
            BackendKind::Stream => {
                let key = key.ok_or_else(|| TenantError::Key("a Stream key is required".into()))?;
                let client = self.pools.get(base);
                let backend = StreamBackend::new(client, key, branch)
                    .map_err(|e| TenantError::Key(e.to_string()))?;
                Ok(Arc::new(backend))
            }
            BackendKind::Stripe => {
                let key = key.ok_or_else(|| TenantError::Key("a Stripe key is required".into()))?;
                // Refused at the door (401) rather than sent: anything else is not a Stripe key.
                if !(key.expose().starts_with("sk_") || key.expose().starts_with("rk_")) {
                    return Err(TenantError::Key(
                        "a Stripe secret (sk_...) or restricted (rk_...) key is required".into(),
                    ));
                }
                let client = self.pools.get(base);
                let backend = StripeBackend::new(client, key, &self.opts.stripe_version)
                    .map_err(|e| TenantError::Unavailable(e.to_string()))?;
                Ok(Arc::new(backend))
            }
        }
    }

    /// Builds (and drops) one backend with a placeholder key, so that a backend this build
    /// cannot serve, or a bad base URL, stops the server at start-up rather than at the first
    /// request. Makes no network call.
    pub fn self_check(&self, base: &str) -> Result<(), String> {
        match self.backend(Some(&ApiKey::new("start-up-check")), base, None) {
            Ok(_) | Err(TenantError::Key(_)) => Ok(()),
            Err(TenantError::Unavailable(m)) => Err(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamSettings;
    use clap::Parser;

    fn factory(kind: BackendKind) -> TenantFactory {
        let cli = crate::config::Cli::parse_from(["paylink-mcp"]);
        TenantFactory::new(
            kind,
            Arc::new(UpstreamPools::new(UpstreamSettings::default())),
            &cli.global,
        )
    }

    #[test]
    fn each_kind_builds_or_says_why_not() {
        let base = "https://staging.streampay.sa";
        let sandbox = factory(BackendKind::Sandbox);
        assert_eq!(
            sandbox.backend(None, base, None).unwrap().kind(),
            BackendKind::Sandbox
        );
        let stream = factory(BackendKind::Stream);
        assert!(stream.self_check(base).is_ok());
        let b = stream
            .backend(Some(&ApiKey::new("k:s")), base, None)
            .unwrap();
        assert_eq!(b.kind(), BackendKind::Stream);
        assert!(!b.livemode());
        assert!(matches!(
            stream.backend(None, base, None),
            Err(TenantError::Key(_))
        ));
        let stripe = factory(BackendKind::Stripe);
        assert!(stripe.self_check(base).is_ok());
        assert!(matches!(
            stripe.backend(Some(&ApiKey::new("not-a-stripe-key")), base, None),
            Err(TenantError::Key(_))
        ));
        assert!(
            stripe
                .backend(Some(&ApiKey::new("sk_test_x")), base, None)
                .is_ok()
        );
    }
}
