//! Who a request is from and which tenant serves it: the caller's credentials read as an
//! identity (own key, an operator access token, or an OAuth access token checked by
//! [`ResourceServer`]), the Stream API and branch a request targets
//! (`X-Stream-Base-URL`, `X-Stream-Branch-Id`, refused when not allowed), and the tenant from the
//! cache or built now, behind the client's rate of new tenants.
//!
//! It answers each refusal with its own status, but must not hold slots, sessions or the
//! request body (the [`gate`](super::gate) does, in its order).

// The error side of these results is the refusal to send; it is built only on that path.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::sync::Arc;

use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::auth::{AccessTokens, BadHeader, MAX_TOKEN_LEN, Presented};
use super::door;
use super::limits::RateLimiter;
use super::reply::{refuse, too_many, unauthorized};
use crate::backend::factory::{BackendFactory, BuildError};
use crate::config::check_base_url;
use crate::model::BackendKind;
use crate::oauth::{Access, Failure, ResourceServer};
use crate::observability::metrics;
use crate::secret::ApiKey;
use crate::tenant::Tenant;
use crate::tenant::cache::{TenantCache, TenantKey};

/// Header a caller uses to pick a Stream API (from the allow-list).
pub(crate) const BASE_URL_HEADER: &str = "x-stream-base-url";
/// Header a caller uses to pick a Stream branch (a UUID).
pub(crate) const BRANCH_HEADER: &str = "x-stream-branch-id";

/// How callers prove who they are.
pub(crate) enum Callers {
    /// Each caller's Bearer token is its own upstream key (on the sandbox: a tenant name).
    OwnKeys {
        /// The tenant of requests with no `Authorization` header at all: only on the sandbox
        /// bound to loopback.
        anonymous: Option<Arc<Tenant>>,
    },
    /// Operator-key mode: callers present a server access token; upstream calls use the
    /// operator's key. The access token names the tenant and is never forwarded.
    Operator {
        tokens: AccessTokens,
        upstream_key: Option<ApiKey>,
        /// `STREAM_BRANCH_ID`, used when a request names no branch.
        default_branch: Option<String>,
    },
    /// OAuth mode: callers present access tokens from the operator's authorization server;
    /// upstream calls use the operator's key, as in operator-key mode. The tenant is the
    /// token's (issuer, subject); the token is never forwarded, logged or kept.
    OAuth {
        server: Arc<ResourceServer>,
        upstream_key: Option<ApiKey>,
        /// `STREAM_BRANCH_ID`, used when a request names no branch.
        default_branch: Option<String>,
    },
}

impl Callers {
    /// Whether callers use the operator's upstream key (so may not redirect it).
    fn operators_key(&self) -> bool {
        matches!(self, Callers::Operator { .. } | Callers::OAuth { .. })
    }
}

/// Who a request is from, once authenticated.
pub(super) struct Identity {
    /// Names the tenant for sessions and limits (a hash of the key and, once scoped, the base
    /// URL).
    pub tenant: TenantKey,
    /// What the backend sends upstream.
    upstream_key: Option<ApiKey>,
    pub fingerprint: String,
    /// The fixed anonymous tenant, when that is who this is.
    fixed: Option<Arc<Tenant>>,
    /// In OAuth mode, what the token's scopes allow.
    pub access: Option<Access>,
}

/// Everything that resolves a request's tenant, built once at start-up.
pub(super) struct Tenancy {
    pub callers: Callers,
    pub factory: BackendFactory,
    pub cache: TenantCache,
    /// The Stream API used when a request names none (checked, normalized).
    pub default_base: String,
    /// The Stream APIs a request may name (checked, normalized).
    pub allowed_bases: Vec<String>,
    /// New tenants per client address.
    pub new_tenants: RateLimiter<IpAddr>,
}

impl Tenancy {
    /// The backend every tenant of this server uses.
    pub(super) fn kind(&self) -> BackendKind {
        self.factory.kind()
    }

    /// Tenants in the cache now.
    pub(super) fn tenant_count(&self) -> usize {
        self.cache.len()
    }

    /// Drops idle tenants; says how many.
    pub(super) fn sweep(&self) -> usize {
        self.cache.sweep()
    }

    /// Longest Bearer token read: OAuth access tokens (JWTs) run longer than keys.
    pub(super) fn max_token_len(&self) -> usize {
        match self.callers {
            Callers::OAuth { .. } => crate::oauth::verify::MAX_TOKEN_BYTES,
            _ => MAX_TOKEN_LEN,
        }
    }

    /// The 401 of an `Authorization` header that cannot be read.
    pub(super) fn refuse_header(&self, bad: BadHeader) -> Response {
        match &self.callers {
            // Another scheme is no credentials at all: the challenge carries no error then.
            Callers::OAuth { server, .. } if bad == BadHeader::NotBearer => {
                door::unauthorized(server, None)
            }
            Callers::OAuth { server, .. } => door::unauthorized(server, Some(bad.message())),
            _ => unauthorized(bad.message()),
        }
    }

    pub(super) async fn identify(&self, presented: Presented) -> Result<Identity, Response> {
        let kind = self.factory.kind().as_str().as_bytes();
        match (&self.callers, presented) {
            (Callers::OAuth { server, .. }, Presented::Nothing) => {
                Err(door::unauthorized(server, None))
            }
            (
                Callers::OAuth {
                    server,
                    upstream_key,
                    ..
                },
                Presented::Bearer(token),
            ) => match server.authenticate(&token).await {
                Ok(grant) => Ok(Identity {
                    tenant: TenantKey::derive(&[
                        b"oauth",
                        kind,
                        grant.issuer.as_bytes(),
                        grant.subject.as_bytes(),
                    ]),
                    fingerprint: server.fingerprint(&grant),
                    upstream_key: upstream_key.clone(),
                    fixed: None,
                    access: Some(grant.access),
                }),
                Err(Failure::Invalid(why)) => {
                    tracing::info!("refused: access token not valid: {why}");
                    Err(door::unauthorized(server, Some(why)))
                }
                Err(Failure::Unavailable(wait)) => {
                    tracing::warn!(
                        "refused: the access token cannot be checked now (issuer unavailable)"
                    );
                    Err(door::unavailable(wait))
                }
            },
            (Callers::OwnKeys { anonymous }, Presented::Nothing) => match anonymous {
                Some(tenant) => Ok(Identity {
                    tenant: TenantKey::derive(&[b"anonymous"]),
                    upstream_key: None,
                    fingerprint: tenant.fingerprint.clone(),
                    fixed: Some(tenant.clone()),
                    access: None,
                }),
                None => Err(unauthorized(
                    "send your API key as `Authorization: Bearer <key>`",
                )),
            },
            (Callers::OwnKeys { .. }, Presented::Bearer(key)) => Ok(Identity {
                tenant: TenantKey::derive(&[b"own-key", kind, key.expose().as_bytes()]),
                fingerprint: key.fingerprint(),
                upstream_key: Some(key),
                fixed: None,
                access: None,
            }),
            (Callers::Operator { .. }, Presented::Nothing) => Err(unauthorized(
                "send your server access token as `Authorization: Bearer <token>`",
            )),
            (
                Callers::Operator {
                    tokens,
                    upstream_key,
                    ..
                },
                Presented::Bearer(token),
            ) => {
                if !tokens.accepts(&token) {
                    return Err(unauthorized("this access token is not accepted here"));
                }
                Ok(Identity {
                    tenant: TenantKey::derive(&[b"access-token", kind, token.expose().as_bytes()]),
                    fingerprint: token.fingerprint(),
                    upstream_key: upstream_key.clone(),
                    fixed: None,
                    access: None,
                })
            }
        }
    }

    /// On Stream a tenant is a key and a base URL: the same key on staging and production is
    /// two tenants. Other backends have no caller-chosen base URL: one tenant per key.
    pub(super) fn scope(&self, who: &mut Identity, base: &str) {
        if self.factory.kind() == BackendKind::Stream && who.fixed.is_none() {
            who.tenant = who.tenant.with(&[b"base", base.as_bytes()]);
        }
    }

    /// The Stream API and branch this request targets.
    pub(super) fn target(&self, headers: &HeaderMap) -> Result<(String, Option<String>), Response> {
        let bad = |message: String| refuse(StatusCode::BAD_REQUEST, "validation", &message);
        let one = |name: &str| -> Result<Option<&str>, Response> {
            let mut values = headers.get_all(name).iter();
            let Some(first) = values.next() else {
                return Ok(None);
            };
            if values.next().is_some() {
                return Err(bad(format!("send at most one {name} header")));
            }
            first
                .to_str()
                .map(|s| Some(s.trim()))
                .map_err(|_| bad(format!("{name} must be ASCII")))
        };
        let base = match one(BASE_URL_HEADER)? {
            None => self.default_base.clone(),
            // Honouring it elsewhere would send another provider's key to a Stream host.
            Some(_) if self.factory.kind() != BackendKind::Stream => {
                return Err(bad(format!(
                    "{BASE_URL_HEADER} only applies to the Stream backend; this server talks to {}",
                    self.factory.kind().as_str()
                )));
            }
            // The operator's own key is for the environment the operator configured: callers
            // may name it, never another one.
            Some(raw)
                if self.callers.operators_key()
                    && check_base_url(raw, BASE_URL_HEADER).ok().as_deref()
                        != Some(self.default_base.as_str()) =>
            {
                return Err(bad(format!(
                    "{BASE_URL_HEADER} cannot redirect the operator's key (operator-key and OAuth modes); this server uses {}",
                    self.default_base
                )));
            }
            Some(raw) => {
                let allowed = || self.allowed_bases.join(", ");
                let normalized = (raw.len() <= 2048)
                    .then(|| check_base_url(raw, BASE_URL_HEADER).ok())
                    .flatten()
                    .ok_or_else(|| {
                        bad(format!(
                            "X-Stream-Base-URL is not a valid http(s) URL; allowed values: {}",
                            allowed()
                        ))
                    })?;
                if !self.allowed_bases.contains(&normalized) {
                    return Err(bad(format!(
                        "X-Stream-Base-URL names a Stream API this server does not allow; allowed values: {}",
                        allowed()
                    )));
                }
                normalized
            }
        };
        let named = match one(BRANCH_HEADER)? {
            Some(raw) => Some(
                uuid::Uuid::try_parse(raw)
                    .map(|u| u.hyphenated().to_string())
                    .map_err(|_| bad("X-Stream-Branch-Id must be a UUID".into()))?,
            ),
            None => None,
        };
        let branch = match &self.callers {
            // The operator's key works on the operator's branch: callers may name it, never
            // another one (as with the base URL above).
            Callers::Operator { default_branch, .. } | Callers::OAuth { default_branch, .. } => {
                if named.is_some() && named != *default_branch {
                    return Err(bad(
                        "X-Stream-Branch-Id cannot choose the branch with the operator's key (operator-key and OAuth modes); this server uses the operator's branch (STREAM_BRANCH_ID)".into(),
                    ));
                }
                default_branch.clone()
            }
            Callers::OwnKeys { .. } => named,
        };
        Ok((base, branch))
    }

    /// The tenant for `who`, from the cache or built now (rate-limited per client).
    pub(super) async fn tenant(
        &self,
        who: &Identity,
        base: &str,
        branch: Option<&str>,
        client: IpAddr,
    ) -> Result<Arc<Tenant>, Response> {
        if let Some(fixed) = &who.fixed {
            return Ok(fixed.clone());
        }
        let key = match self.factory.kind() {
            // The branch is baked into a Stream backend's headers: one backend per branch.
            BackendKind::Stream => match branch {
                Some(b) => who.tenant.with(&[b"branch", b.as_bytes()]),
                None => who.tenant.with(&[b"no-branch"]),
            },
            _ => who.tenant,
        };
        if let Some(tenant) = self.cache.get(&key) {
            return Ok(tenant);
        }
        if let Err(wait) = self.new_tenants.check(client).await {
            tracing::info!(%client, "refused: too many new keys from this client");
            metrics::rate_limited("new_tenants");
            return Err(too_many(
                StatusCode::TOO_MANY_REQUESTS,
                "too many different keys from this address; retry later",
                wait,
            ));
        }
        let built = self.cache.get_or_try_insert(key, || {
            let backend = self.factory.backend_for(
                &key.hex(),
                who.upstream_key.as_ref(),
                base,
                branch,
                Some(client),
            )?;
            Ok::<_, BuildError>(Arc::new(Tenant {
                fingerprint: who.fingerprint.clone(),
                // The cache key: caller, upstream and branch, so an idempotency key used on two
                // branches names two intents.
                scope: key.hex(),
                backend,
            }))
        });
        match built {
            Ok((tenant, created)) => {
                if created {
                    tracing::info!(tenant = %who.fingerprint, "new tenant");
                }
                Ok(tenant)
            }
            // The operator's key was tried at start-up; should it fail here all the same, it is
            // still not the caller's to fix: no challenge, no token of theirs would help.
            Err(BuildError::Key(message)) if self.callers.operators_key() => {
                tracing::error!(tenant = %who.fingerprint, "the operator's upstream key cannot be used: {message}");
                Err(refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "this server cannot serve this request",
                ))
            }
            Err(BuildError::Key(message)) => Err(unauthorized(&message)),
            Err(BuildError::Unavailable(message)) => {
                tracing::error!(tenant = %who.fingerprint, "cannot build a tenant: {message}");
                Err(refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "this server cannot serve this request",
                ))
            }
        }
    }
}
