//! Options of `paylink-mcp http`: the listener, the tenant cache and the abuse limits.
//!
//! Kept apart from the global options because none of them means anything over stdio. Every
//! option has a `PAYLINK_*` variable; list options take a comma-separated value there. Secrets
//! (the access-token list) come from a file named here, never from the command line itself.
//! OAuth mode's options are in [`oauth`](super::oauth).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::oauth::OAuthOpts;
use super::store::StoreOpts;

/// Loopback names accepted in `Host` by default (any port): a browser page elsewhere that
/// rebinds its own DNS name to 127.0.0.1 still sends its own name, and is refused.
pub(crate) const DEFAULT_ALLOWED_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// Browser origins accepted by default: pages served from this machine, any port.
pub(crate) const DEFAULT_ALLOWED_ORIGINS: &[&str] =
    &["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// The Stream APIs a caller may pick with `X-Stream-Base-URL` by default: production, staging.
pub(crate) const DEFAULT_ALLOWED_BASE_URLS: &[&str] = &[
    crate::backend::stream::PRODUCTION_BASE_URL,
    crate::backend::stream::STAGING_BASE_URL,
];

/// `paylink-mcp http`: streamable HTTP at `/mcp`; every caller authenticates with
/// `Authorization: Bearer <their own upstream key>` (or a server access token, see
/// --access-tokens-file).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP options")]
pub(crate) struct HttpOpts {
    /// Address to listen on. A non-loopback address requires --tls-cert/--tls-key or
    /// --behind-tls-proxy. Port 0 picks a free port (the address is logged).
    #[arg(long, env = "PAYLINK_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// No MCP sessions: every request stands alone and is answered as JSON, so replicas behind a
    /// load balancer need no affinity.
    #[arg(long, env = "PAYLINK_STATELESS")]
    pub stateless: bool,

    /// A `Host` value to accept, `name` (any port) or `name:port` (repeatable). Set it to the
    /// public name when serving behind a proxy.
    #[arg(
        long = "allowed-host",
        env = "PAYLINK_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_values = DEFAULT_ALLOWED_HOSTS
    )]
    pub allowed_hosts: Vec<String>,

    /// A browser `Origin` to accept, `scheme://host[:port|:*]` (repeatable). Requests without an
    /// Origin (non-browser clients) always pass.
    #[arg(
        long = "allowed-origin",
        env = "PAYLINK_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_values = DEFAULT_ALLOWED_ORIGINS
    )]
    pub allowed_origins: Vec<String>,

    /// PEM certificate chain: serve HTTPS from this process (with --tls-key).
    #[arg(long, env = "PAYLINK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "PAYLINK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A TLS-terminating proxy in front of this server carries the traffic: allows a
    /// non-loopback bind without --tls-cert, and takes the client address from the last
    /// `X-Forwarded-For` entry (the one the proxy added).
    #[arg(long, env = "PAYLINK_BEHIND_TLS_PROXY")]
    pub behind_tls_proxy: bool,

    /// Most tenants (caller keys) kept in memory; the least recently used is dropped first. A
    /// dropped sandbox tenant loses its links.
    #[arg(long, env = "PAYLINK_MAX_TENANTS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tenants: u64,

    /// A tenant unused for this many seconds is dropped.
    #[arg(long, env = "PAYLINK_TENANT_IDLE_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tenant_idle_secs: u64,

    /// Most open MCP sessions in all. A full table refuses new sessions (503) rather than close
    /// another tenant's; a tenant at its own cap still rotates its own. An open session costs
    /// about 52 KB (rmcp's session worker and its channels): 2000 are about 100 MB.
    #[arg(long, env = "PAYLINK_MAX_SESSIONS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sessions: u64,

    /// Most open MCP sessions of one tenant (0: no cap of its own). Opening one more closes that
    /// tenant's least recently used session, never another tenant's.
    #[arg(long, env = "PAYLINK_MAX_SESSIONS_PER_TENANT", default_value_t = 64)]
    pub max_sessions_per_tenant: u32,

    /// Most open MCP sessions opened from one client address (0: no cap of its own). At the cap a
    /// new session is refused (429) unless its tenant gives up one of its own from that address.
    #[arg(long, env = "PAYLINK_MAX_SESSIONS_PER_CLIENT", default_value_t = 64)]
    pub max_sessions_per_client: u32,

    /// A Stream base URL callers may select with `X-Stream-Base-URL` (repeatable).
    #[arg(
        long = "allowed-base-url",
        env = "PAYLINK_ALLOWED_BASE_URLS",
        value_delimiter = ',',
        default_values = DEFAULT_ALLOWED_BASE_URLS
    )]
    pub allowed_base_urls: Vec<String>,

    /// Operator-key mode: a file of SHA-256 hex hashes of server access tokens, one per line
    /// (`#` starts a comment). Callers present an access token; the server calls the upstream
    /// with its own STREAM_API_KEY/STRIPE_API_KEY and never forwards the caller's token.
    #[arg(long, env = "PAYLINK_ACCESS_TOKENS_FILE")]
    pub access_tokens_file: Option<PathBuf>,

    /// Requests per minute one tenant may make (0: no limit).
    #[arg(long, env = "PAYLINK_RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_per_minute: u32,

    /// Requests one tenant may have in flight at once (0: no limit).
    #[arg(long, env = "PAYLINK_MAX_CONCURRENT_PER_TENANT", default_value_t = 16)]
    pub max_concurrent_per_tenant: u32,

    /// Requests per minute one client address may make, whatever the key (0: no limit).
    #[arg(
        long,
        env = "PAYLINK_CLIENT_RATE_LIMIT_PER_MINUTE",
        default_value_t = 1200
    )]
    pub client_rate_limit_per_minute: u32,

    /// Requests one client address may have in flight at once (0: no limit).
    #[arg(long, env = "PAYLINK_MAX_CONCURRENT_PER_CLIENT", default_value_t = 64)]
    pub max_concurrent_per_client: u32,

    /// New tenants (keys not in the cache) one client address may bring per minute, so that a
    /// spray of random keys cannot push real tenants out of the cache (0: no limit).
    #[arg(long, env = "PAYLINK_NEW_TENANTS_PER_MINUTE", default_value_t = 30)]
    pub new_tenants_per_minute: u32,

    /// Serve Prometheus `/metrics` on this separate listener (`ADDR:PORT`, or a bare `PORT` on
    /// 127.0.0.1) instead of on the main one; it needs no auth and has no Host check, so keep it
    /// on a private interface. Without it, `/metrics` is on the main listener (Host-checked).
    #[arg(long, env = "PAYLINK_METRICS_BIND",
          value_parser = parse_bind)]
    pub metrics_bind: Option<SocketAddr>,

    /// Requests in flight in the whole process (0: no limit).
    #[arg(long, env = "PAYLINK_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: u32,

    /// Open connections in the whole process, TLS handshakes included (0: no limit). One more is
    /// closed as soon as it is accepted. Keep it under the process's file-descriptor limit.
    #[arg(long, env = "PAYLINK_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: u32,

    /// Open connections from one client address (0: no limit). Not applied with
    /// --behind-tls-proxy, where every connection comes from the proxy.
    #[arg(
        long,
        env = "PAYLINK_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 128
    )]
    pub max_connections_per_client: u32,

    /// Seconds a client has to send a complete request head: from the connection's start (after
    /// TLS), or from the first byte of the next request on a kept-alive connection.
    #[arg(long, env = "PAYLINK_HEADER_READ_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,

    /// Seconds a client has to send a whole request body to /mcp (at most 1 MiB), counted once
    /// the head has arrived; answered 408 and the connection closed after that.
    #[arg(long, env = "PAYLINK_BODY_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_read_timeout_secs: u64,

    /// Bytes of request bodies held in memory at once, with what decoding them will take (0: no
    /// limit). Charged from `Content-Length` before a body is read, held until its request is
    /// done; over it, `503` and the connection closed. Requests over 16 KiB may use three
    /// quarters of it: the rest is kept for ordinary (small) requests.
    #[arg(long, env = "PAYLINK_MAX_REQUEST_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// The share of --max-request-bytes one client address may hold (0: no share of its own);
    /// over it, `429` and the connection closed.
    #[arg(
        long,
        env = "PAYLINK_MAX_REQUEST_BYTES_PER_CLIENT",
        default_value_t = 8 * 1024 * 1024
    )]
    pub max_request_bytes_per_client: usize,

    /// Seconds a TLS handshake may take (with --tls-cert).
    #[arg(long, env = "PAYLINK_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_handshake_timeout_secs: u64,

    /// Seconds a kept-alive connection may wait, after an answer, for the next request's first
    /// byte before it is closed.
    #[arg(long, env = "PAYLINK_KEEP_ALIVE_TIMEOUT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub keep_alive_timeout_secs: u64,

    /// Seconds a write to a client may make no progress (the client is not reading) before the
    /// connection is closed and its answer dropped. Not a cap on an SSE stream's life.
    #[arg(long, env = "PAYLINK_WRITE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub write_timeout_secs: u64,

    /// OAuth mode (`--oauth-issuer` and its companions).
    #[command(flatten)]
    pub oauth: OAuthOpts,
    /// Bytes per second a client must take of what the server sends it, counted only while the
    /// server waits on it (0: no minimum): beyond the write timeout's grace, a client may make
    /// the server wait at most one second per this many bytes it has taken. Cuts off a reader
    /// that is slow but steady; never a long tool call, nor an SSE stream the client reads.
    #[arg(long, env = "PAYLINK_MIN_WRITE_RATE", default_value_t = 1024)]
    pub min_write_rate: u32,
    /// Where state shared by replicas lives (see `config::store`).
    #[command(flatten)]
    pub store: StoreOpts,
}

/// Parses `--metrics-bind`: `ADDR:PORT`, or a bare `PORT` on 127.0.0.1 (loopback unless the
/// operator names another address).
pub(crate) fn parse_bind(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    if let Ok(port) = raw.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    raw.parse::<SocketAddr>()
        .map_err(|_| format!("`{raw}` is neither PORT nor ADDR:PORT (e.g. 127.0.0.1:9464)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_binds_loopback() {
        assert_eq!(
            parse_bind("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_bind("0.0.0.0:9464").unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
        assert_eq!(parse_bind("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        assert!(parse_bind("localhost").is_err());
    }
}
