//! OAuth mode's settings, checked once at start-up: the issuer, this server's resource URL and
//! the audience, the scope names, the clock leeway, the refetch interval and the introspection
//! client. A refused setting stops the server with a [`StartupError`] naming the option.

use std::time::Duration;

use url::{Host, Url};

use crate::config::oauth::OAuthOpts;
use crate::error::StartupError;
use crate::secret::ApiKey;

/// The path of RFC 9728's well-known document, before the resource's own path.
pub(crate) const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// Fewest bytes of a configured key for the log fingerprints (`PAYLINK_OAUTH_FINGERPRINT_KEY`).
pub(crate) const MIN_FINGERPRINT_KEY_BYTES: usize = 32;

/// The names of the two scopes. Write is the broader one: it covers reads too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScopeNames {
    pub read: String,
    pub write: String,
}

/// The introspection endpoint (RFC 7662) and this server's credentials there.
#[derive(Debug, Clone)]
pub(crate) struct IntrospectionSettings {
    pub url: String,
    pub client_id: ApiKey,
    pub client_secret: ApiKey,
}

/// Everything OAuth mode needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct OAuthSettings {
    /// The issuer exactly as configured: the metadata's `issuer` and every token's `iss` must
    /// equal it byte for byte.
    pub issuer: String,
    /// This server's resource identifier: the canonical URL of its MCP endpoint.
    pub resource: String,
    /// What a token's `aud` must contain (the resource unless overridden).
    pub audience: String,
    /// The URL of this server's protected-resource metadata (path-inserted, RFC 9728 §3.1).
    pub metadata_url: String,
    /// The paths on this server that serve that document.
    pub metadata_paths: Vec<String>,
    pub scopes: ScopeNames,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Fewest time between two fetches of the issuer's keys or metadata (and between two tries
    /// of an introspection endpoint that failed).
    pub min_refresh: Duration,
    /// Longest the issuer's keys are trusted after their last fetch.
    pub jwks_max_stale: Duration,
    pub introspection: Option<IntrospectionSettings>,
    /// The operator's key for callers' log fingerprints (`PAYLINK_OAUTH_FINGERPRINT_KEY`), so that
    /// replicas and restarts agree; without it each process makes its own.
    pub fingerprint_key: Option<ApiKey>,
}

/// True for `localhost` and loopback addresses: the only hosts where plain http is accepted.
pub(crate) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks that `raw` is an https URL (http only on loopback) without query or fragment.
/// `Err` is the reason.
pub(crate) fn check_endpoint(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a URL: {e}"))?;
    if url.host().is_none() {
        return Err("has no host".into());
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => return Err("must be https (plain http only on loopback)".into()),
        _ => return Err("must be an https URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    Ok(url)
}

/// The URL without a trailing slash (RFC 8707's canonical form of a resource).
fn canonical(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// A scope-token of RFC 6749 §3.3: visible ASCII except `"` and `\`, no spaces.
fn check_scope(option: &'static str, raw: &str) -> Result<String, StartupError> {
    let ok = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(StartupError::OAuthOption {
            option,
            value: raw.to_owned(),
            reason: "is not a scope name (visible ASCII, no spaces, quotes or backslashes)".into(),
        })
    }
}

/// OAuth mode's secrets, from the environment or files (never flags).
#[derive(Clone, Copy, Default)]
pub(crate) struct OAuthSecrets<'a> {
    /// The introspection client (`PAYLINK_OAUTH_CLIENT_ID`/`_SECRET`).
    pub client_id: Option<&'a ApiKey>,
    pub client_secret: Option<&'a ApiKey>,
    /// `PAYLINK_OAUTH_FINGERPRINT_KEY`.
    pub fingerprint_key: Option<&'a ApiKey>,
}

impl OAuthSettings {
    /// OAuth mode's settings, or `None` when `--oauth-issuer` is not set (then no other OAuth
    /// option may be). `access_tokens`: whether operator-key mode was asked for too.
    pub(crate) fn check(
        opts: &OAuthOpts,
        secrets: OAuthSecrets<'_>,
        access_tokens: bool,
    ) -> Result<Option<Self>, StartupError> {
        let OAuthSecrets {
            client_id,
            client_secret,
            fingerprint_key,
        } = secrets;
        let Some(issuer) = opts.oauth_issuer.as_deref().map(str::trim) else {
            if fingerprint_key.is_some() {
                tracing::warn!(
                    "PAYLINK_OAUTH_FINGERPRINT_KEY is set but not used: it is for OAuth mode (--oauth-issuer)"
                );
            }
            if opts.public_url.is_some()
                || opts.oauth_audience.is_some()
                || opts.oauth_introspection_url.is_some()
            {
                return Err(StartupError::OAuthMode(
                    "--public-url, --oauth-audience and --oauth-introspection-url belong to OAuth mode: set --oauth-issuer too",
                ));
            }
            return Ok(None);
        };
        if access_tokens {
            return Err(StartupError::OAuthMode(
                "--oauth-issuer and --access-tokens-file are two ways of checking callers: choose one",
            ));
        }
        let bad = |option: &'static str, value: &str, reason: String| StartupError::OAuthOption {
            option,
            value: value.to_owned(),
            reason,
        };
        let issuer_url = check_endpoint(issuer).map_err(|r| bad("--oauth-issuer", issuer, r))?;
        if issuer_url.query().is_some() {
            return Err(bad(
                "--oauth-issuer",
                issuer,
                "must not have a query".into(),
            ));
        }
        let Some(public) = opts.public_url.as_deref().map(str::trim) else {
            return Err(StartupError::OAuthMode(
                "OAuth mode needs --public-url: the URL clients use for this server's MCP endpoint (e.g. https://mcp.example.com/mcp), which tokens must be issued for",
            ));
        };
        let public_url = check_endpoint(public).map_err(|r| bad("--public-url", public, r))?;
        if public_url.query().is_some() {
            return Err(bad("--public-url", public, "must not have a query".into()));
        }
        let resource = canonical(&public_url);
        let audience = match opts.oauth_audience.as_deref().map(str::trim) {
            Some("") => return Err(bad("--oauth-audience", "", "is empty".into())),
            Some(a) => a.to_owned(),
            None => resource.clone(),
        };
        let scopes = ScopeNames {
            read: check_scope("--oauth-read-scope", opts.oauth_read_scope.trim())?,
            write: check_scope("--oauth-write-scope", opts.oauth_write_scope.trim())?,
        };
        if scopes.read == scopes.write {
            return Err(StartupError::OAuthMode(
                "--oauth-read-scope and --oauth-write-scope must differ",
            ));
        }
        let introspection = match (&opts.oauth_introspection_url, client_id, client_secret) {
            (Some(raw), Some(id), Some(secret)) => {
                let url =
                    check_endpoint(raw).map_err(|r| bad("--oauth-introspection-url", raw, r))?;
                Some(IntrospectionSettings {
                    url: url.to_string(),
                    client_id: id.clone(),
                    client_secret: secret.clone(),
                })
            }
            (Some(_), _, _) => {
                return Err(StartupError::OAuthMode(
                    "--oauth-introspection-url needs this server's client credentials there: set PAYLINK_OAUTH_CLIENT_ID and PAYLINK_OAUTH_CLIENT_SECRET (or their _FILE forms)",
                ));
            }
            (None, id, secret) => {
                if id.is_some() || secret.is_some() {
                    tracing::warn!(
                        "PAYLINK_OAUTH_CLIENT_ID/SECRET are set but not used: they are for --oauth-introspection-url"
                    );
                }
                None
            }
        };
        if fingerprint_key.is_some_and(|k| k.expose().len() < MIN_FINGERPRINT_KEY_BYTES) {
            return Err(StartupError::OAuthMode(
                "PAYLINK_OAUTH_FINGERPRINT_KEY must be at least 32 bytes (e.g. `openssl rand -base64 48`)",
            ));
        }
        if opts.oauth_jwks_max_stale_secs < 2 * opts.oauth_jwks_min_refresh_secs {
            return Err(bad(
                "--oauth-jwks-max-stale-secs",
                &opts.oauth_jwks_max_stale_secs.to_string(),
                "must be at least twice --oauth-jwks-min-refresh-secs, so that the keys can be fetched again before they stop being trusted".into(),
            ));
        }
        // Path-inserted (RFC 9728 §3.1): https://host/mcp -> https://host/.well-known/oauth-protected-resource/mcp
        let path = public_url.path().trim_end_matches('/');
        let metadata_url = format!(
            "{}{PRM_PATH}{path}",
            public_url.origin().ascii_serialization()
        );
        // Served at the path of the public URL, at /mcp (this server's own path, should a proxy
        // keep it) and at the root, where the MCP authorization spec has clients fall back to
        // when a 401 names no metadata URL. The root document names the MCP endpoint as its
        // `resource`, as the spec's clients expect (the MCP SDK checks it against the server URL
        // and asks for tokens for it); RFC 9728 §3.3 would have it be the origin, which would
        // get those clients tokens this server refuses. Clients that follow the 401's
        // `resource_metadata` (the path-inserted URL) get an exact match either way.
        let mut metadata_paths = vec![format!("{PRM_PATH}{path}")];
        for extra in [format!("{PRM_PATH}/mcp"), PRM_PATH.to_owned()] {
            if !metadata_paths.contains(&extra) {
                metadata_paths.push(extra);
            }
        }
        Ok(Some(OAuthSettings {
            issuer: issuer.to_owned(),
            resource,
            audience,
            metadata_url,
            metadata_paths,
            scopes,
            leeway_secs: opts
                .oauth_leeway_secs
                .min(crate::config::oauth::MAX_LEEWAY_SECS),
            min_refresh: Duration::from_secs(opts.oauth_jwks_min_refresh_secs),
            jwks_max_stale: Duration::from_secs(opts.oauth_jwks_max_stale_secs),
            introspection,
            fingerprint_key: fingerprint_key.cloned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        o: OAuthOpts,
    }

    fn opts(args: &[&str]) -> OAuthOpts {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        T::try_parse_from(all).unwrap().o
    }

    fn check(args: &[&str]) -> Result<Option<OAuthSettings>, String> {
        OAuthSettings::check(&opts(args), OAuthSecrets::default(), false).map_err(|e| e.to_string())
    }

    #[test]
    fn the_resource_and_metadata_urls_come_from_the_public_url() {
        let s = check(&[
            "--oauth-issuer",
            "https://auth.example.com/realms/pay",
            "--public-url",
            "https://MCP.example.com/mcp/",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.issuer, "https://auth.example.com/realms/pay");
        assert_eq!(s.resource, "https://mcp.example.com/mcp");
        assert_eq!(s.audience, s.resource);
        assert_eq!(
            s.metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            s.metadata_paths,
            [
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(s.scopes.read, "payment_links:read");
        assert_eq!(s.leeway_secs, 30);
        assert_eq!(s.jwks_max_stale, Duration::from_secs(86_400));

        let s = check(&[
            "--oauth-issuer",
            "http://127.0.0.1:9000",
            "--public-url",
            "http://localhost:8080/tenant/mcp",
            "--oauth-audience",
            "urn:paylink",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.audience, "urn:paylink");
        assert_eq!(
            s.metadata_url,
            "http://localhost:8080/.well-known/oauth-protected-resource/tenant/mcp"
        );
        assert_eq!(s.metadata_paths.len(), 3);
        assert!(check(&[]).unwrap().is_none());

        // The MCP endpoint at the origin: the root document is the exact one.
        let s = check(&[
            "--oauth-issuer",
            "https://auth.example.com",
            "--public-url",
            "https://mcp.example.com/",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.resource, "https://mcp.example.com");
        assert_eq!(
            s.metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(s.metadata_paths[0], PRM_PATH);
    }

    #[test]
    fn refused_settings_name_the_option() {
        for (args, needle) in [
            (
                &[
                    "--oauth-issuer",
                    "http://auth.example.com",
                    "--public-url",
                    "https://a/mcp",
                ][..],
                "--oauth-issuer",
            ),
            (&["--oauth-issuer", "https://a"][..], "--public-url"),
            (
                &[
                    "--oauth-issuer",
                    "https://a",
                    "--public-url",
                    "http://mcp.example.com/mcp",
                ],
                "--public-url",
            ),
            (
                &[
                    "--oauth-issuer",
                    "https://a",
                    "--public-url",
                    "https://m/mcp#x",
                ],
                "fragment",
            ),
            (&["--public-url", "https://m/mcp"], "--oauth-issuer"),
            (
                &[
                    "--oauth-issuer",
                    "https://a",
                    "--public-url",
                    "https://m/mcp",
                    "--oauth-read-scope",
                    "a b",
                ],
                "--oauth-read-scope",
            ),
            (
                &[
                    "--oauth-issuer",
                    "https://a",
                    "--public-url",
                    "https://m/mcp",
                    "--oauth-write-scope",
                    "payment_links:read",
                ],
                "must differ",
            ),
            (
                &[
                    "--oauth-issuer",
                    "https://a",
                    "--public-url",
                    "https://m/mcp",
                    "--oauth-introspection-url",
                    "https://a/introspect",
                ],
                "PAYLINK_OAUTH_CLIENT_ID",
            ),
        ] {
            let e = check(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        let e = OAuthSettings::check(
            &opts(&[
                "--oauth-issuer",
                "https://a",
                "--public-url",
                "https://m/mcp",
            ]),
            OAuthSecrets::default(),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--access-tokens-file"), "{e}");
        assert!(T::try_parse_from(["t", "--oauth-leeway-secs", "61"]).is_err());
        assert!(T::try_parse_from(["t", "--oauth-jwks-max-stale-secs", "1"]).is_err());
        assert!(T::try_parse_from(["t", "--oauth-jwks-min-refresh-secs", "0"]).is_err());
        let e = check(&[
            "--oauth-issuer",
            "https://a",
            "--public-url",
            "https://m/mcp",
            "--oauth-jwks-min-refresh-secs",
            "5",
            "--oauth-jwks-max-stale-secs",
            "9",
        ])
        .unwrap_err();
        assert!(e.contains("--oauth-jwks-max-stale-secs"), "{e}");
    }
}
