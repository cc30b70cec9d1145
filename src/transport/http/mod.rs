//! MCP over streamable HTTP: rmcp's service at `/mcp` inside an axum app, behind the [`gate`].
//!
//! - Sessions (`Mcp-Session-Id`) by default; `--stateless` for replicas behind a load balancer.
//!   Clients of protocol 2026-07-28 (no `initialize`) are always served statelessly.
//! - Every caller brings its own key as a Bearer token; there is no fallback to a key in the
//!   server's environment (except in operator-key mode, where callers present access tokens, and
//!   in OAuth mode, where they present access tokens from the operator's issuer: see [`door`]).
//! - `/healthz` answers 200 without auth; `/.well-known/*` a fast 404, except in OAuth mode,
//!   where the protected-resource metadata is served there.
//! - `/metrics` (Prometheus) without auth, here or on `--metrics-bind` (see [`metrics`]).
//! - A non-loopback bind needs TLS from this process or `--behind-tls-proxy`.
//! - SIGINT/SIGTERM: stop accepting, end open SSE streams, exit within a few seconds.
//! - Connections are ours to bound (see [`conn`]): caps on open connections, in all and per
//!   client address, and timeouts on every phase of a connection.
//!
//! Every option is checked before the socket is opened: a refused configuration never listens.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod conn;
mod door;
pub(crate) mod gate;
pub(crate) mod guard;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod reply;
pub(crate) mod sessions;
mod tenancy;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::{any, get};
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::auth::AccessTokens;
use self::body::MAX_BODY_BYTES;
use self::conn::ConnSettings;
use self::gate::{Callers, Gate, LimitSettings};
use self::guard::HostGuard;
use self::reply::refuse;
use self::sessions::{SessionCaps, SessionOwners};
use crate::backend::factory::BackendFactory;
use crate::config::{GlobalOpts, HttpOpts, Secrets, check_base_url};
use crate::model::BackendKind;
use crate::oauth::{OAuthSettings, ResourceServer};
use crate::server::PaylinkServer;
use crate::store::Store;
use crate::tenant::Tenant;
use crate::tenant::cache::TenantCache;

/// After a shutdown signal, connections get this long to finish before the process exits.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often idle tenants and sessions are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Everything checked and built from the options, before any socket exists.
struct Plan {
    bind: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    gate: Arc<Gate>,
    server: PaylinkServer,
    rmcp: StreamableHttpServerConfig,
    sessions: Arc<LocalSessionManager>,
    stop: CancellationToken,
    /// `--metrics-bind`: `/metrics` on a listener of its own instead of the main one.
    metrics_bind: Option<SocketAddr>,
    /// Connection caps and timeouts, for both listeners.
    conn: ConnSettings,
    /// OAuth mode's resource server, for the metadata routes.
    oauth: Option<Arc<ResourceServer>>,
}

/// What start-up built for the HTTP server beyond its options (start-up owns their typed
/// errors): OAuth mode's settings, already checked, and the store replicas share.
pub(crate) struct Shared {
    pub oauth: Option<OAuthSettings>,
    pub store: Option<Store>,
}

/// `paylink-mcp http`: checks the configuration, then serves until SIGINT/SIGTERM.
pub(crate) fn run(
    kind: BackendKind,
    global: &GlobalOpts,
    opts: &HttpOpts,
    secrets: &Secrets,
    server: PaylinkServer,
    factory: BackendFactory,
    shared: Shared,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Built inside the runtime: the session manager and pools may spawn.
    let result = runtime.block_on(async {
        let plan = plan(kind, global, opts, secrets, server, factory, shared)?;
        serve(plan).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The operator's key for `kind`'s upstream, which operator-key and OAuth modes call with.
fn operator_key(
    kind: BackendKind,
    secrets: &Secrets,
    mode: &str,
) -> Result<Option<crate::secret::ApiKey>, String> {
    let (key, name, var) = match kind {
        BackendKind::Sandbox => return Ok(None),
        BackendKind::Stream => (&secrets.stream, "Stream", "STREAM_API_KEY"),
        BackendKind::Stripe => (&secrets.stripe, "Stripe", "STRIPE_API_KEY"),
    };
    key.clone().map(Some).ok_or_else(|| {
        format!(
            "{mode} on {name} calls {name} with the server's own key: set {var} (or {var}_FILE)"
        )
    })
}

/// Builds (and drops) a backend with the operator's key, as every tenant of operator-key and
/// OAuth modes will: a key the backend refuses (not a Stripe key, say) stops the server here,
/// rather than answering every caller with a refusal they cannot act on. No network call.
fn try_operator_key(
    factory: &BackendFactory,
    key: Option<&crate::secret::ApiKey>,
    base: &str,
    branch: &Option<String>,
) -> Result<(), String> {
    if key.is_none() {
        return Ok(());
    }
    let name = match factory.kind() {
        BackendKind::Stripe => "STRIPE_API_KEY",
        _ => "STREAM_API_KEY",
    };
    match factory.backend("operator-check", key, base, branch.as_deref()) {
        Err(crate::backend::factory::BuildError::Key(why)) => {
            Err(format!("{name} cannot be used: {why}"))
        }
        // A backend this build cannot serve is the self-check's to report.
        _ => Ok(()),
    }
}

fn plan(
    kind: BackendKind,
    global: &GlobalOpts,
    opts: &HttpOpts,
    secrets: &Secrets,
    server: PaylinkServer,
    factory: BackendFactory,
    Shared { oauth, store }: Shared,
) -> Result<Plan, String> {
    let loopback = is_loopback(&opts.bind);
    if !loopback && opts.tls_cert.is_none() && !opts.behind_tls_proxy {
        return Err(format!(
            "refusing to listen on {}: on a non-loopback address callers' API keys would cross the network in clear text. \
Serve TLS with --tls-cert and --tls-key, or pass --behind-tls-proxy if a TLS-terminating proxy is in front of this server",
            opts.bind
        ));
    }
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let guard = HostGuard::new(&opts.allowed_hosts, &opts.allowed_origins)?;
    if !loopback
        && opts
            .allowed_hosts
            .iter()
            .all(|h| crate::config::http::DEFAULT_ALLOWED_HOSTS.contains(&h.as_str()))
    {
        tracing::warn!(
            "listening on a non-loopback address with only loopback names in --allowed-host: requests naming this server by its public name will be refused (403)"
        );
    }
    let allowed_bases = opts
        .allowed_base_urls
        .iter()
        .map(|u| check_base_url(u, "--allowed-base-url"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let default_base = global.base_url(kind).map_err(|e| e.to_string())?;
    // Naming the server's own default explicitly is always allowed: the operator chose it.
    let mut allowed_bases = allowed_bases;
    if !allowed_bases.contains(&default_base) {
        allowed_bases.push(default_base.clone());
    }

    let resource = oauth
        .map(|settings| ResourceServer::new(settings).map(Arc::new))
        .transpose()?;
    let callers = match (&resource, &opts.access_tokens_file) {
        (Some(server), _) => {
            // jsonwebtoken's provider is process-wide: ours (ring) must be the one in place.
            if !crate::oauth::crypto::install() {
                return Err("another JWT crypto provider is installed; OAuth mode verifies tokens with its own (ring)".into());
            }
            let settings = server.settings();
            tracing::info!(
                issuer = %settings.issuer,
                resource = %settings.resource,
                audience = %settings.audience,
                metadata = %settings.metadata_url,
                introspection = settings.introspection.is_some(),
                shared_fingerprint_key = settings.fingerprint_key.is_some(),
                "OAuth mode: callers present access tokens from the issuer"
            );
            let default_branch = global.branch_id().map_err(|e| e.to_string())?;
            let upstream_key = operator_key(kind, secrets, "OAuth mode")?;
            try_operator_key(
                &factory,
                upstream_key.as_ref(),
                &default_base,
                &default_branch,
            )?;
            Callers::OAuth {
                server: server.clone(),
                upstream_key,
                default_branch,
            }
        }
        (None, Some(path)) => {
            let tokens = AccessTokens::load(path)?;
            if tokens.is_empty() {
                return Err(format!(
                    "--access-tokens-file {} holds no token hash",
                    path.display()
                ));
            }
            let upstream_key = operator_key(kind, secrets, "operator-key mode")?;
            let default_branch = global.branch_id().map_err(|e| e.to_string())?;
            try_operator_key(
                &factory,
                upstream_key.as_ref(),
                &default_base,
                &default_branch,
            )?;
            tracing::info!(
                tokens = tokens.len(),
                "operator-key mode: callers present server access tokens"
            );
            Callers::Operator {
                tokens,
                upstream_key,
                default_branch,
            }
        }
        (None, None) => {
            if secrets.stream.is_some() || secrets.stripe.is_some() {
                tracing::warn!(
                    "STREAM_API_KEY/STRIPE_API_KEY in the environment are not used over HTTP: every caller sends its own key (see --access-tokens-file for operator-key mode)"
                );
            }
            if global.stream_branch_id.is_some() {
                tracing::warn!(
                    "STREAM_BRANCH_ID is not used over HTTP: callers pick a branch with X-Stream-Branch-Id"
                );
            }
            // Without a header at all, the sandbox on loopback serves one shared tenant:
            // nothing real is at stake and a local inspector works out of the box.
            // Behind a TLS proxy a loopback bind still serves the internet: no shared tenant.
            let anonymous = if kind == BackendKind::Sandbox && loopback && !opts.behind_tls_proxy {
                Some(Arc::new(Tenant {
                    fingerprint: "anonymous".to_owned(),
                    scope: "anonymous".to_owned(),
                    backend: factory
                        .backend("anonymous", None, "", None)
                        .map_err(|e| e.to_string())?,
                }))
            } else {
                None
            };
            Callers::OwnKeys { anonymous }
        }
    };

    factory.self_check(&default_base)?;

    let max_tenants = usize::try_from(opts.max_tenants)
        .ok()
        .and_then(NonZeroUsize::new)
        .unwrap_or(NonZeroUsize::MIN);
    let max_sessions = usize::try_from(opts.max_sessions)
        .ok()
        .and_then(NonZeroUsize::new)
        .unwrap_or(NonZeroUsize::MIN);
    let cache = TenantCache::new(max_tenants, Duration::from_secs(opts.tenant_idle_secs));
    let sessions = Arc::new(LocalSessionManager::default());
    let owners = SessionOwners::new(
        SessionCaps {
            total: max_sessions,
            per_tenant: opts.max_sessions_per_tenant,
            per_client: opts.max_sessions_per_client,
        },
        sessions.clone(),
    );
    let limits = LimitSettings {
        tenant_per_minute: opts.rate_limit_per_minute,
        tenant_in_flight: opts.max_concurrent_per_tenant,
        client_per_minute: opts.client_rate_limit_per_minute,
        client_in_flight: opts.max_concurrent_per_client,
        new_tenants_per_minute: opts.new_tenants_per_minute,
        process_in_flight: opts.max_concurrent_requests,
        tenant_table: max_tenants.saturating_mul(NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN)),
        body_read: Duration::from_secs(opts.body_read_timeout_secs),
        request_bytes: opts.max_request_bytes,
        request_bytes_per_client: opts.max_request_bytes_per_client,
        store: store.clone(),
    };
    let gate = Arc::new(Gate::new(
        guard,
        callers,
        factory,
        cache,
        owners,
        default_base,
        allowed_bases,
        limits,
        opts.behind_tls_proxy,
    ));

    let stop = CancellationToken::new();
    // Host and Origin are the gate's, checked first on every request against lists parsed once
    // (see `guard`). rmcp's own lists are left empty: it clones its configuration with every
    // request and re-parses each entry of its lists on every request, so the same check cost
    // twice, and more with each entry. (rmcp still refuses a Host header it cannot parse.)
    let rmcp = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(!opts.stateless)
        .with_json_response(opts.stateless)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        .with_cancellation_token(stop.child_token());
    // The metrics exist only in this mode: stdio never installs them and pays nothing.
    crate::observability::metrics::install();
    if let Some(store) = &store {
        announce(store.clone());
    }
    let conn = ConnSettings {
        header_read: Duration::from_secs(opts.header_read_timeout_secs),
        keep_alive: Duration::from_secs(opts.keep_alive_timeout_secs),
        handshake: Duration::from_secs(opts.tls_handshake_timeout_secs),
        write: Duration::from_secs(opts.write_timeout_secs),
        min_write_rate: opts.min_write_rate,
        max_total: opts.max_connections,
        // Behind a proxy every connection comes from the proxy: a per-address cap would cap the
        // proxy, and so everyone. The proxy owns per-client connection limits there.
        max_per_client: if opts.behind_tls_proxy {
            0
        } else {
            opts.max_connections_per_client
        },
    };
    Ok(Plan {
        bind: opts.bind,
        tls,
        gate,
        server,
        rmcp,
        sessions,
        stop,
        metrics_bind: opts.metrics_bind,
        conn,
        oauth: resource,
    })
}

/// Says which shared store this server uses, and (in the background: start-up never waits for
/// it) whether it answers now. A store that does not is not fatal: reads are served, writes are
/// refused until it answers, and the connection recovers by itself.
fn announce(store: Store) {
    tracing::info!(store = %store.redacted_url(), "shared store: Redis (state is shared with every replica using it)");
    tokio::spawn(async move {
        // A failure is logged by the store itself (once, until it answers again).
        if store.ping().await.is_ok() {
            tracing::info!("the shared store answers");
        }
    });
}

/// The axum app: `/mcp` behind the gate, plus the unauthenticated odds and ends.
fn app(plan: &Plan) -> Router {
    let server = plan.server.clone();
    // Called for every request (and by rmcp for schema lookups): an Arc clone.
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        plan.sessions.clone(),
        plan.rmcp.clone(),
    );
    let mcp = Router::new().route_service("/mcp", service).route_layer(
        axum::middleware::from_fn_with_state(plan.gate.clone(), gate::gate),
    );
    let well_known_route = match &plan.oauth {
        Some(server) => Router::new()
            .route("/.well-known/{*rest}", any(door::well_known))
            .with_state(server.clone()),
        None => Router::new().route("/.well-known/{*rest}", any(well_known)),
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .merge(well_known_route)
        .merge(mcp);
    let app = match plan.metrics_bind {
        Some(_) => app,
        None => app.merge(metrics::main_route(plan.gate.clone())),
    };
    app.fallback(not_found)
}

async fn healthz() -> Response {
    let mut r = Response::new(axum::body::Body::from(r#"{"status":"ok"}"#));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn well_known() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "not_found",
        "OAuth mode is off on this server: send your API key as a Bearer token",
    )
}

async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "not_found",
        "not found: the MCP endpoint is /mcp",
    )
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(plan: Plan) -> Result<(), String> {
    let app = app(&plan);
    if let Some(addr) = plan.metrics_bind {
        let local =
            metrics::serve_separate(addr, plan.gate.clone(), plan.conn, plan.stop.child_token())
                .await?;
        tracing::info!("metrics at http://{local}/metrics");
    }
    let listener = TcpListener::bind(plan.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", plan.bind))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let stop = plan.stop.clone();

    tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = shutdown_signal() => stop.cancel(),
                () = stop.cancelled() => {}
            }
        }
    });
    tokio::spawn({
        let gate = plan.gate.clone();
        let stop = stop.clone();
        async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => gate.sweep(),
                    () = stop.cancelled() => return,
                }
            }
        }
    });

    let scheme = if plan.tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "listening on {scheme}://{local}/mcp (backend {}, {})",
        plan.server_kind(),
        if plan.rmcp.legacy_session_mode {
            "sessions"
        } else {
            "stateless"
        }
    );
    // A signal cancels `stop`: rmcp ends every session and SSE stream (they hold child tokens),
    // and the accept loop stops accepting and drains its connections.
    let served = conn::serve(listener, plan.tls, app, plan.conn, stop.clone());
    let grace = async {
        stop.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = served => {}
        () = grace => tracing::warn!("connections still open after the grace period: closing them"),
    }
    tracing::info!("stopped");
    Ok(())
}

impl Plan {
    fn server_kind(&self) -> &'static str {
        self.gate.kind().as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_recognised() {
        for ok in [
            "127.0.0.1:0",
            "127.9.9.9:80",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(&ok.parse().unwrap()), "{ok}");
        }
        for bad in ["0.0.0.0:0", "[::]:1", "10.0.0.1:80", "192.168.1.1:8080"] {
            assert!(!is_loopback(&bad.parse().unwrap()), "{bad}");
        }
    }
}
