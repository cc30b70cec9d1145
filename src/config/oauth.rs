//! Options of OAuth mode (`paylink-mcp http --oauth-issuer URL`): the server as an OAuth 2.1
//! resource server that checks access tokens from the operator's authorization server.
//!
//! Only what the operator chooses is here, unchecked; [`crate::oauth`] checks it at start-up.
//! The introspection client's credentials are secrets: they come from the environment or a file
//! (`PAYLINK_OAUTH_CLIENT_ID`, `PAYLINK_OAUTH_CLIENT_SECRET`, or their `_FILE` forms), never from
//! a flag.

use clap::Args;

/// The read scope's name by default.
pub(crate) const DEFAULT_READ_SCOPE: &str = "payment_links:read";
/// The write scope's name by default.
pub(crate) const DEFAULT_WRITE_SCOPE: &str = "payment_links:write";
/// Most clock skew tolerated on `exp`/`nbf` (the bound).
pub(crate) const MAX_LEEWAY_SECS: u64 = 60;
/// Longest the issuer's keys are trusted after their last fetch, by default: a day.
pub(crate) const DEFAULT_JWKS_MAX_STALE_SECS: u64 = 86_400;
/// The most `--oauth-jwks-max-stale-secs` may be: a week.
pub(crate) const MAX_JWKS_MAX_STALE_SECS: u64 = 7 * 86_400;

/// The OAuth options of `paylink-mcp http`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "OAuth mode (resource server)")]
pub(crate) struct OAuthOpts {
    /// OAuth mode: accept access tokens issued by this authorization server (its `issuer`,
    /// exactly as its metadata says it). Callers' tokens are checked, never forwarded; upstream
    /// calls use STREAM_API_KEY/STRIPE_API_KEY as in operator-key mode.
    #[arg(long, env = "PAYLINK_OAUTH_ISSUER")]
    pub oauth_issuer: Option<String>,

    /// The canonical URL of this server's MCP endpoint as clients reach it (e.g.
    /// `https://mcp.example.com/mcp`): the resource tokens are issued for, and the base of the
    /// protected-resource metadata URL. Required in OAuth mode; https unless loopback.
    #[arg(long, env = "PAYLINK_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The audience a token must carry, when the authorization server does not use the
    /// resource URL (e.g. an Auth0 API identifier). Default: --public-url.
    #[arg(long, env = "PAYLINK_OAUTH_AUDIENCE")]
    pub oauth_audience: Option<String>,

    /// The scope that allows the read tools.
    #[arg(long, env = "PAYLINK_OAUTH_READ_SCOPE", default_value = DEFAULT_READ_SCOPE)]
    pub oauth_read_scope: String,

    /// The scope that allows the write tools (and, being broader, the read tools too).
    #[arg(long, env = "PAYLINK_OAUTH_WRITE_SCOPE", default_value = DEFAULT_WRITE_SCOPE)]
    pub oauth_write_scope: String,

    /// RFC 7662 introspection endpoint for opaque (non-JWT) access tokens; the client
    /// credentials come from PAYLINK_OAUTH_CLIENT_ID and PAYLINK_OAUTH_CLIENT_SECRET (or their
    /// `_FILE` forms). Without it only JWT access tokens are accepted.
    #[arg(long, env = "PAYLINK_OAUTH_INTROSPECTION_URL")]
    pub oauth_introspection_url: Option<String>,

    /// Seconds of clock skew tolerated on a token's `exp` and `nbf` (at most 60).
    #[arg(long, env = "PAYLINK_OAUTH_LEEWAY_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_LEEWAY_SECS))]
    pub oauth_leeway_secs: u64,

    /// Fewest seconds between two fetches of the issuer's keys (JWKS) or metadata, successful or
    /// not: a token with an unknown key id triggers at most one refetch per this interval. Also
    /// how long an introspection endpoint that failed is left alone (tokens not in the cache get
    /// 503 meanwhile) and how long an introspection's refusal is remembered. At least 1: no interval would let a stream of made-up key ids turn into
    /// a stream of fetches.
    #[arg(long, env = "PAYLINK_OAUTH_JWKS_MIN_REFRESH_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub oauth_jwks_min_refresh_secs: u64,

    /// Longest the issuer's keys are trusted after they were last fetched. The set is fetched
    /// again after 10 minutes (or half this, if shorter); while that fails the old set serves on
    /// until this limit, then every token gets 503 until the keys can be fetched again (a key the
    /// issuer removed is not trusted for ever). At least twice --oauth-jwks-min-refresh-secs.
    #[arg(long, env = "PAYLINK_OAUTH_JWKS_MAX_STALE_SECS", default_value_t = DEFAULT_JWKS_MAX_STALE_SECS,
          value_parser = clap::value_parser!(u64).range(2..=MAX_JWKS_MAX_STALE_SECS))]
    pub oauth_jwks_max_stale_secs: u64,
}
