//! The one place that builds a backend, for stdio and HTTP alike: one match arm per backend
//! kind.
//!
//! Start-up calls [`BackendFactory::backend`] once for the stdio user's key; the HTTP transport
//! calls it on a tenant-cache miss, with the upstream key (the caller's own, or the operator's in
//! operator-key mode), the base URL and branch already checked. Both see the same key checks.
//! REST backends share one connection pool per base URL ([`UpstreamPools`]), so a new tenant
//! costs a few header values, never a TLS handshake.

use std::net::IpAddr;
use std::sync::Arc;

use super::Backend;
use super::sandbox::{SandboxBackend, SandboxLimits, SharedSandbox};
use super::stream::StreamBackend;
use super::stripe::StripeBackend;
use crate::model::BackendKind;
use crate::secret::ApiKey;
use crate::store::Store;
use crate::upstream::{UpstreamPools, UpstreamSettings};

/// Why a backend could not be built. Messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BuildError {
    /// The key cannot be used with this backend: the caller should fix it (HTTP 401).
    Key(String),
    /// This server cannot serve this backend (refused at start-up).
    Unavailable(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Key(m) | BuildError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// What a backend needs from the operator's configuration, checked at start-up.
#[derive(Debug, Clone)]
pub(crate) struct BackendSettings {
    pub kind: BackendKind,
    pub upstream: UpstreamSettings,
    /// The sandbox's bounds; every sandbox tenant built here shares its byte pool.
    pub sandbox: SandboxLimits,
    /// A checked `Stripe-Version` (see `stripe::check_version`).
    pub stripe_version: String,
    /// The store replicas share (`--store redis://...`): sandbox links live there then.
    pub store: Option<Store>,
}

/// Builds backends of one kind.
pub(crate) struct BackendFactory {
    settings: BackendSettings,
    pools: UpstreamPools,
}

impl BackendFactory {
    pub(crate) fn new(settings: BackendSettings) -> Self {
        BackendFactory {
            pools: UpstreamPools::new(settings.upstream),
            settings,
        }
    }

    pub(crate) fn kind(&self) -> BackendKind {
        self.settings.kind
    }

    /// A new backend for one tenant, named by `scope` (a hash, see `Tenant::scope`). `key` is
    /// what the backend sends upstream (`None` only for the sandbox); `base` (a checked base URL)
    /// and `branch` (a checked UUID, Stream only) say where.
    pub(crate) fn backend(
        &self,
        scope: &str,
        key: Option<&ApiKey>,
        base: &str,
        branch: Option<&str>,
    ) -> Result<Arc<dyn Backend>, BuildError> {
        self.backend_for(scope, key, base, branch, None)
    }

    /// [`backend`](Self::backend) for a tenant brought by `client`: a sandbox tenant's bytes
    /// count against that address's share of the sandbox pool.
    pub(crate) fn backend_for(
        &self,
        scope: &str,
        key: Option<&ApiKey>,
        base: &str,
        branch: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Arc<dyn Backend>, BuildError> {
        match self.settings.kind {
            // Each sandbox tenant has its own data, bounded; the byte pool is shared by all of
            // them. In this process, the data goes with the tenant, and over HTTP the tenants one
            // client address brought share a part of the pool; with a shared store the data is
            // there, under the tenant's scope, for every replica to see.
            BackendKind::Sandbox => Ok(match &self.settings.store {
                Some(store) => Arc::new(SharedSandbox::new(
                    store.clone(),
                    scope,
                    self.settings.sandbox.clone(),
                )),
                None => Arc::new(SandboxBackend::with_limits(SandboxLimits {
                    client,
                    ..self.settings.sandbox.clone()
                })),
            }),
            BackendKind::Stream => {
                let key = key.ok_or_else(|| BuildError::Key("a Stream key is required".into()))?;
                let client = self.pools.get(base);
                let backend = StreamBackend::new(client, key, branch)
                    .map_err(|e| BuildError::Key(e.to_string()))?;
                Ok(Arc::new(backend))
            }
            BackendKind::Stripe => {
                let key = key.ok_or_else(|| BuildError::Key("a Stripe key is required".into()))?;
                // Refused rather than sent: anything else is not a Stripe key.
                if !(key.expose().starts_with("sk_") || key.expose().starts_with("rk_")) {
                    return Err(BuildError::Key(
                        "a Stripe secret (sk_...) or restricted (rk_...) key is required".into(),
                    ));
                }
                let client = self.pools.get(base);
                let backend = StripeBackend::new(client, key, &self.settings.stripe_version)
                    .map_err(|e| BuildError::Unavailable(e.to_string()))?;
                Ok(Arc::new(backend))
            }
        }
    }

    /// Builds (and drops) one backend with a placeholder key, so that a backend this build
    /// cannot serve, or a bad base URL, stops the server at start-up rather than at the first
    /// request. Makes no network call.
    pub(crate) fn self_check(&self, base: &str) -> Result<(), String> {
        match self.backend(
            "start-up-check",
            Some(&ApiKey::new("start-up-check")),
            base,
            None,
        ) {
            Ok(_) | Err(BuildError::Key(_)) => Ok(()),
            Err(BuildError::Unavailable(m)) => Err(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sandbox::SandboxPool;

    fn factory(kind: BackendKind) -> BackendFactory {
        BackendFactory::new(BackendSettings {
            kind,
            upstream: UpstreamSettings::default(),
            sandbox: SandboxLimits {
                max_links: 10,
                max_tenant_bytes: 1 << 20,
                pool: SandboxPool::new(1 << 24),
                client: None,
            },
            stripe_version: crate::backend::stripe::DEFAULT_API_VERSION.into(),
            store: None,
        })
    }

    #[test]
    fn each_kind_builds_or_says_why_not() {
        let base = crate::backend::stream::STAGING_BASE_URL;
        let sandbox = factory(BackendKind::Sandbox);
        assert_eq!(
            sandbox.backend("t", None, base, None).unwrap().kind(),
            BackendKind::Sandbox
        );
        let stream = factory(BackendKind::Stream);
        assert!(stream.self_check(base).is_ok());
        let b = stream
            .backend("t", Some(&ApiKey::new("k:s")), base, None)
            .unwrap();
        assert_eq!(b.kind(), BackendKind::Stream);
        assert!(!b.livemode());
        assert!(matches!(
            stream.backend("t", None, base, None),
            Err(BuildError::Key(_))
        ));
        let stripe = factory(BackendKind::Stripe);
        assert!(stripe.self_check(base).is_ok());
        assert!(matches!(
            stripe.backend("t", Some(&ApiKey::new("not-a-stripe-key")), base, None),
            Err(BuildError::Key(_))
        ));
        assert!(
            stripe
                .backend("t", Some(&ApiKey::new("sk_test_x")), base, None)
                .is_ok()
        );
    }
}
