//! `/metrics`: the Prometheus scrape endpoint (OpenMetrics text).
//!
//! On the main listener by default, or on a listener of its own with `--metrics-bind` (then the
//! main listener has no `/metrics` at all). No authentication either way: the exposition holds
//! no key, no tenant and no per-tenant label (see `observability::metrics`), only totals.
//!
//! On the main listener, `/metrics` is behind the same `Host`/`Origin` check as `/mcp`: without it
//! a web page that rebinds its DNS name to this machine could read the server's traffic totals
//! from the victim's browser. A scraper that reaches the server by another name (a pod IP) needs
//! that name in `--allowed-host`, or the separate listener, which has no such check: it is meant
//! for a scraper on a private interface, and binds loopback when given only a port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::conn::{self, ConnSettings};
use super::gate::Gate;
use super::reply::refuse;
use crate::observability::metrics;

/// The content type of the OpenMetrics text format, which Prometheus negotiates and reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn exposition(gate: &Gate) -> Response {
    let text = metrics::install().encode(gate.tenant_count());
    let mut response = Response::new(axum::body::Body::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// `/metrics` on the main listener: Host/Origin checked, no auth.
async fn on_main(State(gate): State<Arc<Gate>>, request: Request) -> Response {
    if gate
        .host_guard()
        .check(request.uri(), request.headers())
        .is_err()
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the Host header names a host this server does not serve",
        );
    }
    exposition(&gate)
}

/// `/metrics` on the separate listener: no checks.
async fn on_separate(State(gate): State<Arc<Gate>>) -> Response {
    exposition(&gate)
}

async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "not_found",
        "not found: this listener serves /metrics only",
    )
}

/// The route to merge into the main app.
pub(crate) fn main_route(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/metrics", get(on_main))
        .with_state(gate)
}

/// Binds the separate listener now (a refused address stops start-up) and serves it until
/// `stop`. Returns the bound address.
pub(crate) async fn serve_separate(
    addr: SocketAddr,
    gate: Arc<Gate>,
    settings: ConnSettings,
    stop: CancellationToken,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for --metrics-bind: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the metrics listener's address: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(on_separate))
        .fallback(not_found)
        .with_state(gate);
    // The same connection caps and timeouts as the main listener (counted apart).
    tokio::spawn(conn::serve(listener, None, app, settings, stop));
    Ok(local)
}
