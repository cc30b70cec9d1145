//! The resource server: an access token in, a [`Grant`] or a refusal out.
//!
//! A JWT is checked against the issuer's keys, with one refetch for a key id not yet seen; an
//! opaque token goes to introspection when it is configured. Whatever cannot be checked now
//! (issuer down) is [`Failure::Unavailable`], never let through.

use std::sync::Arc;
use std::time::Duration;

use super::challenge::{Challenge, ErrorCode};
use super::fetch::IdpClient;
use super::grant::{Access, FingerprintKey, Grant};
use super::introspect::{Introspector, Refused};
use super::jwks::{IssuerKeys, KeySource, Keys, Unavailable};
use super::metadata::protected_resource;
use super::settings::OAuthSettings;
use super::verify::{self, Expect, Verdict};
use crate::secret::ApiKey;

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not valid (401); the text says why, shortly, without quoting the token.
    Invalid(&'static str),
    /// Cannot be checked now (503); retry after this long.
    Unavailable(Duration),
}

/// OAuth mode's checker, built once at start-up; does no I/O until the first token.
pub(crate) struct ResourceServer {
    settings: OAuthSettings,
    keys: Keys,
    introspector: Option<Introspector>,
    /// The protected-resource metadata document, rendered once.
    document: String,
    fingerprint_key: FingerprintKey,
}

impl ResourceServer {
    /// `Err` only when no random key can be had for the log fingerprints.
    pub(crate) fn new(settings: OAuthSettings) -> Result<Self, String> {
        let client = Arc::new(IdpClient::default());
        let source = IssuerKeys::new(client.clone(), settings.issuer.clone());
        Self::with_source(settings, Box::new(source), client)
    }

    /// With another key source (tests).
    pub(crate) fn with_source(
        settings: OAuthSettings,
        source: Box<dyn KeySource>,
        client: Arc<IdpClient>,
    ) -> Result<Self, String> {
        let fingerprint_key = match &settings.fingerprint_key {
            Some(secret) => FingerprintKey::configured(secret.expose().as_bytes()),
            None => FingerprintKey::random()?,
        };
        let keys = Keys::new(source, settings.min_refresh, settings.jwks_max_stale);
        let introspector = settings
            .introspection
            .clone()
            .map(|i| Introspector::new(client, i, settings.min_refresh));
        let document = protected_resource(&settings).to_string();
        Ok(ResourceServer {
            settings,
            keys,
            introspector,
            document,
            fingerprint_key,
        })
    }

    /// The name of `grant`'s caller in logs and audit lines (see [`FingerprintKey`]).
    pub(crate) fn fingerprint(&self, grant: &Grant) -> String {
        grant.fingerprint(&self.fingerprint_key)
    }

    pub(crate) fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// The protected-resource metadata document (JSON).
    pub(crate) fn document(&self) -> &str {
        &self.document
    }

    /// The scope name `need` stands for.
    pub(crate) fn scope_for(&self, need: Access) -> &str {
        match need {
            Access::Write => &self.settings.scopes.write,
            _ => &self.settings.scopes.read,
        }
    }

    /// The challenge of a 401: no token (`reason` None) or a bad one.
    pub(crate) fn challenge_401(&self, reason: Option<&str>) -> String {
        Challenge {
            resource_metadata: &self.settings.metadata_url,
            scope: &self.settings.scopes.read,
            error: reason.map(|_| ErrorCode::InvalidToken),
            description: reason,
        }
        .render()
    }

    /// The challenge of a 403: a valid token without the scope `need` calls for.
    pub(crate) fn challenge_403(&self, need: Access) -> String {
        let scope = self.scope_for(need);
        Challenge {
            resource_metadata: &self.settings.metadata_url,
            scope,
            error: Some(ErrorCode::InsufficientScope),
            description: Some(match need {
                Access::Write => "this tool needs the write scope",
                _ => "this server needs the read scope",
            }),
        }
        .render()
    }

    fn expect(&self) -> Expect<'_> {
        Expect {
            issuer: &self.settings.issuer,
            audience: &self.settings.audience,
            leeway_secs: self.settings.leeway_secs,
            scopes: &self.settings.scopes,
        }
    }

    /// Checks an access token.
    pub(crate) async fn authenticate(&self, presented: &ApiKey) -> Result<Grant, Failure> {
        let token = presented.expose();
        if token.len() > verify::MAX_TOKEN_BYTES {
            return Err(Failure::Invalid("the token is too long"));
        }
        if !verify::is_jwt(token) {
            return match &self.introspector {
                Some(i) => i
                    .check(presented, &self.expect())
                    .await
                    .map_err(|r| match r {
                        Refused::Invalid(why) => Failure::Invalid(why),
                        Refused::Unavailable(wait) => Failure::Unavailable(wait),
                    }),
                None => Err(Failure::Invalid("the token is not a JWT access token")),
            };
        }
        // The header first: garbage never costs a key fetch.
        let header = verify::check_header(token).map_err(Failure::Invalid)?;
        let unavailable = |Unavailable(wait)| Failure::Unavailable(wait);
        let snapshot = self.keys.current().await.map_err(unavailable)?;
        let expect = self.expect();
        match verify::verify(token, &header, &snapshot.set, &expect) {
            Ok(grant) => Ok(grant),
            Err(Verdict::Invalid(why)) => Err(Failure::Invalid(why)),
            Err(Verdict::UnknownKey) => {
                let Some(newer) = self
                    .keys
                    .after_unknown_key(&snapshot)
                    .await
                    .map_err(unavailable)?
                else {
                    return Err(Failure::Invalid("the token's key (kid) is unknown"));
                };
                verify::verify(token, &header, &newer.set, &expect).map_err(|v| match v {
                    Verdict::Invalid(why) => Failure::Invalid(why),
                    Verdict::UnknownKey => Failure::Invalid("the token's key (kid) is unknown"),
                })
            }
        }
    }
}
