//! The gate in front of `/mcp`: every check that must happen before rmcp sees a request, in
//! this order, each answered with its own status and a JSON body:
//!
//! 1. `Host` and `Origin` (403): DNS rebinding, before anything else.
//! 2. A declared body over the limit (413).
//! 3. The body is charged to the budget of request bytes (503 for the process's, 429 for the
//!    address's share; connection closed), then read whole, within `--body-read-timeout-secs`
//!    (408, connection closed) and the same limit (413), then charged for its decoded form (see
//!    [`body`](super::body)): a client that never finishes its body holds its connection for a
//!    bounded time, bounded memory, and never an in-flight slot.
//! 4. The whole process and the client address: in flight (503/429, POSTs only: a GET stream
//!    and a DELETE do no work, nor does a POSTed JSON-RPC *response*, such as the user's answer
//!    to a confirmation, whose tool call already holds its slots) and rate (429).
//! 5. `Authorization: Bearer` (401), then the tenant's identity. In OAuth mode, the access token
//!    is checked (401, or 503 while the issuer cannot be asked), then the scope the request
//!    needs (403 `insufficient_scope`), read from the body (see [`door`](super::door)).
//! 6. `X-Stream-Base-URL` and `X-Stream-Branch-Id` (400): checked before any upstream call. In
//!    operator-key mode both are the operator's: a caller may only name the configured ones.
//! 7. The session belongs to this tenant (403), or is unknown to this server (404).
//! 8. The tenant's rate and in flight (429, POSTs only); for a tenant not in the cache, the
//!    client's rate of new tenants (429), so a spray of random keys cannot push real tenants out.
//!
//! Who the caller is, where the request goes and which tenant serves it (steps 5, 6 and the
//! tenant of 8) are resolved by `tenancy`; this file holds the order, the limits and the body.
//!
//! Only then is the tenant put in the request's extensions, where the MCP handler finds it, with
//! the request's in-flight slots ([`CallSlots`]): a tool call holds them until it ends.
//!
//! A new session is recorded when rmcp's answer carries its id; a session cap that leaves no room
//! turns that answer into a refusal (429/503, see [`sessions`](super::sessions)).

// The error side of these results is the refusal to send; it is built only on that path.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode};

use super::auth;
use super::body::{BodyBudget, MAX_BODY_BYTES, OverBudget, read_body, refuse_body, too_large};
use super::conn::{BodyWatch, Peer};
use super::door;
use super::guard::{HostGuard, Refusal};
use super::limits::{CallSlots, InFlight, RateLimiter, client_key};
use super::reply::{refuse, too_many};
use super::sessions::{NoRoom, Ownership, SessionOwners};
use super::tenancy::Tenancy;
use crate::backend::factory::BackendFactory;
use crate::model::BackendKind;
use crate::oauth::Access;
use crate::observability::metrics;
use crate::server::{HeldForCall, ToolAccess};
use crate::store::Store;
use crate::tenant::cache::{TenantCache, TenantKey};

pub(crate) use super::tenancy::Callers;

const SESSION_HEADER: &str = "mcp-session-id";
/// How many client addresses the rate tables remember.
const CLIENT_TABLE: usize = 65_536;
/// `Retry-After` of a refused session: sessions free up when closed, or idle for minutes.
const SESSION_RETRY: Duration = Duration::from_secs(60);

/// The limits of [`Gate`], from the options.
pub(crate) struct LimitSettings {
    pub tenant_per_minute: u32,
    pub tenant_in_flight: u32,
    pub client_per_minute: u32,
    pub client_in_flight: u32,
    pub new_tenants_per_minute: u32,
    pub process_in_flight: u32,
    /// Tenants whose rate buckets are remembered.
    pub tenant_table: NonZeroUsize,
    /// How long a request body may take to arrive in full.
    pub body_read: Duration,
    /// Request bytes held at once, in all and per client address (0: no limit).
    pub request_bytes: usize,
    pub request_bytes_per_client: usize,
    /// Where the rates are counted when replicas share them (`--store redis://...`).
    pub store: Option<Store>,
}

struct Limits {
    client_rate: RateLimiter<IpAddr>,
    tenant_rate: RateLimiter<TenantKey>,
    client_in_flight: Arc<InFlight<IpAddr>>,
    tenant_in_flight: Arc<InFlight<TenantKey>>,
    process_in_flight: Arc<InFlight<()>>,
    body_read: Duration,
    bodies: Arc<BodyBudget>,
}

/// Everything the gate needs, built once at start-up.
pub(crate) struct Gate {
    guard: HostGuard,
    tenancy: Tenancy,
    sessions: SessionOwners,
    limits: Limits,
    behind_proxy: bool,
}

#[allow(clippy::too_many_arguments)]
impl Gate {
    pub(crate) fn new(
        guard: HostGuard,
        callers: Callers,
        factory: BackendFactory,
        cache: TenantCache,
        sessions: SessionOwners,
        default_base: String,
        allowed_bases: Vec<String>,
        limits: LimitSettings,
        behind_proxy: bool,
    ) -> Self {
        let clients = NonZeroUsize::new(CLIENT_TABLE).unwrap_or(NonZeroUsize::MIN);
        Gate {
            guard,
            tenancy: Tenancy {
                callers,
                factory,
                cache,
                default_base,
                allowed_bases,
                new_tenants: RateLimiter::shared(
                    limits.new_tenants_per_minute,
                    clients,
                    "new_tenants",
                    limits.store.clone(),
                ),
            },
            sessions,
            limits: Limits {
                client_rate: RateLimiter::shared(
                    limits.client_per_minute,
                    clients,
                    "client_rate",
                    limits.store.clone(),
                ),
                tenant_rate: RateLimiter::shared(
                    limits.tenant_per_minute,
                    limits.tenant_table,
                    "tenant_rate",
                    limits.store.clone(),
                ),
                client_in_flight: InFlight::new(limits.client_in_flight),
                tenant_in_flight: InFlight::new(limits.tenant_in_flight),
                process_in_flight: InFlight::new(limits.process_in_flight),
                body_read: limits.body_read,
                bodies: BodyBudget::new(limits.request_bytes, limits.request_bytes_per_client),
            },
            behind_proxy,
        }
    }

    /// Tenants in the cache now, for the metrics gauge.
    pub(crate) fn tenant_count(&self) -> usize {
        self.tenancy.tenant_count()
    }

    /// The `Host`/`Origin` check of `/mcp`, for other routes of the main listener.
    pub(crate) fn host_guard(&self) -> &HostGuard {
        &self.guard
    }

    /// The backend every tenant of this server uses.
    pub(crate) fn kind(&self) -> BackendKind {
        self.tenancy.kind()
    }

    /// Periodic housekeeping: idle tenants and sessions.
    pub(crate) fn sweep(&self) {
        let tenants = self.tenancy.sweep();
        let sessions = self.sessions.sweep();
        if tenants + sessions > 0 {
            tracing::debug!(tenants, sessions, "dropped idle tenants and sessions");
        }
    }

    /// The client's address: the peer, or behind a TLS proxy the last `X-Forwarded-For` entry
    /// (the one our proxy appended; earlier entries are whatever the client claimed).
    fn client_ip(&self, request: &Request) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<Peer>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0.ip());
        if !self.behind_proxy {
            return peer;
        }
        request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok())
            .unwrap_or(peer)
    }
}

/// The axum middleware: runs every check, then the MCP service.
pub(crate) async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let client = client_key(gate.client_ip(&request));

    // 1. DNS rebinding.
    if let Err(refusal) = gate.guard.check(request.uri(), request.headers()) {
        let (what, message) = match refusal {
            Refusal::Host => (
                "host",
                "the Host header names a host this server does not serve",
            ),
            Refusal::Origin => ("origin", "requests from this Origin are not allowed"),
        };
        tracing::info!(%client, refused = what, "refused by the Host/Origin check");
        return refuse(StatusCode::FORBIDDEN, "forbidden", message);
    }

    // Until its body is in, this request has done nothing: its connection may be closed to make
    // room for another client's (see `conn`).
    let receiving = request
        .extensions()
        .get::<BodyWatch>()
        .map(BodyWatch::receiving);

    // 2. Declared body size.
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return refuse_body(too_large(), body, gate.limits.body_read).await;
    }
    let declared = declared.map(|n| n as usize);

    // 3. The whole body, charged before it is read, before any slot is taken.
    let mut charge = gate.limits.bodies.open(client);
    if let Err(over) = charge.grow(declared.unwrap_or(0)) {
        metrics::rate_limited(match over {
            OverBudget::Process => "request_bytes",
            OverBudget::Client => "client_request_bytes",
        });
        tracing::debug!(%client, ?over, "refused: the budget of request bytes");
        return refuse_body(over.refusal(), body, gate.limits.body_read).await;
    }
    let body = match read_body(body, gate.limits.body_read, &mut charge, declared).await {
        Ok(bytes) => bytes,
        Err(refusal) => {
            // Debug only: a slow-body flood would otherwise be one line per connection.
            tracing::debug!(%client, status = %refusal.status(), "refused: the request body");
            return refusal;
        }
    };
    drop(receiving);
    let answer = parts.method == Method::POST && is_response(&body);
    // A handle on the same bytes (no copy), for OAuth mode's scope check.
    let message = body.clone();
    let mut request = Request::from_parts(parts, Body::from(body));

    // 4. The process and the client.
    // Only a POST carries work (an MCP message). A GET is a session's SSE stream and a DELETE
    // closes one: neither competes with calls for a slot (the connection caps and the rates
    // bound them), so that opening a session's stream cannot refuse its first call.
    // Nor does a JSON-RPC response: the tool call it answers holds the slots, and with a limit
    // of 1 the answer to a confirmation could otherwise never arrive.
    let work = request.method() == Method::POST && !answer;
    let Some(process_slot) = gate.limits.process_in_flight.acquire_if(work, ()) else {
        metrics::rate_limited("process_in_flight");
        return too_many(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy; retry shortly",
            Duration::from_secs(1),
        );
    };
    if let Err(wait) = gate.limits.client_rate.check(client).await {
        tracing::info!(%client, "refused: client rate limit");
        metrics::rate_limited("client_rate");
        return too_many(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address; retry later",
            wait,
        );
    }
    let Some(client_slot) = gate.limits.client_in_flight.acquire_if(work, client) else {
        metrics::rate_limited("client_in_flight");
        return too_many(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests in flight from this address; retry shortly",
            Duration::from_secs(1),
        );
    };

    // 5. Who is this.
    let presented = match auth::bearer(request.headers(), gate.tenancy.max_token_len()) {
        Ok(p) => p,
        Err(bad) => {
            tracing::info!(%client, "refused: {}", bad.message());
            return gate.tenancy.refuse_header(bad);
        }
    };

    let mut who = match gate.tenancy.identify(presented).await {
        Ok(w) => w,
        Err(response) => {
            tracing::info!(%client, "refused: no usable credentials");
            return response;
        }
    };

    // 5b. OAuth mode: the scope this request needs (403 insufficient_scope), read from the
    // body before rmcp sees it.
    if let (Some(access), Callers::OAuth { server, .. }) = (who.access, &gate.tenancy.callers) {
        let need = match door::needs(request.method(), &message) {
            Ok(need) => need,
            Err(response) => return response,
        };
        if !access.allows(need) {
            tracing::info!(tenant = %who.fingerprint, "refused: insufficient scope");
            return door::insufficient_scope(server, need);
        }
        request.extensions_mut().insert(ToolAccess {
            writes: access.allows(Access::Write),
        });
    }

    // 6. Where to.
    let (base, branch) = match gate.tenancy.target(request.headers()) {
        Ok(t) => t,
        Err(response) => return response,
    };
    gate.tenancy.scope(&mut who, &base);

    // 7. The session is this tenant's.
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    if let Some(id) = &session {
        match gate.sessions.check(id, &who.tenant) {
            Ownership::Mine => {}
            Ownership::Foreign => {
                tracing::warn!(tenant = %who.fingerprint, %client, "refused: session opened by another key");
                return refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this session was opened with another key; open your own session",
                );
            }
            Ownership::Unknown => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "session not found: it expired or was closed; initialize a new one",
                );
            }
        }
    }

    // 8. The tenant, then its limits. Resolving the tenant first puts an unknown key behind the
    // client's new-tenant limit before it can take a slot in the per-tenant limiter tables, so a
    // spray of random keys cannot push real tenants' buckets out (and reset their limits).
    let tenant = match gate
        .tenancy
        .tenant(&who, &base, branch.as_deref(), client)
        .await
    {
        Ok(t) => t,
        Err(response) => return response,
    };
    if let Err(wait) = gate.limits.tenant_rate.check(who.tenant).await {
        tracing::info!(tenant = %who.fingerprint, "refused: tenant rate limit");
        metrics::rate_limited("tenant_rate");
        return too_many(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests for this key; retry later",
            wait,
        );
    }
    let Some(tenant_slot) = gate.limits.tenant_in_flight.acquire_if(work, who.tenant) else {
        tracing::info!(tenant = %who.fingerprint, "refused: tenant in-flight limit");
        metrics::rate_limited("tenant_in_flight");
        return too_many(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests in flight for this key; retry shortly",
            Duration::from_secs(1),
        );
    };

    let method = request.method().clone();
    request.extensions_mut().insert(tenant);
    // The slots are held here until rmcp has answered, and by a POST's JSON-RPC request (its
    // tool call) until that ends: with sessions the answer is an SSE stream that comes back at
    // once while the call runs on in rmcp's session worker, whether or not the caller is still
    // there. Anything else (a notification's 202, a refusal) holds them no longer than this
    // function.
    // The body's charge too: rmcp holds the decoded request for as long as the call runs.
    let slots = CallSlots::new((process_slot, client_slot, tenant_slot, charge));
    if work {
        request
            .extensions_mut()
            .insert(HeldForCall(Arc::new(slots.clone())));
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        slots.release();
    }
    drop(slots);

    // Session bookkeeping.
    if response.status().is_success() {
        match (&session, response.headers().get(SESSION_HEADER)) {
            (None, Some(new_id)) => {
                if let Ok(id) = new_id.to_str() {
                    match gate.sessions.record(id, who.tenant, client) {
                        Ok(()) => tracing::info!(tenant = %who.fingerprint, "session opened"),
                        Err(NoRoom::Client) => {
                            tracing::info!(tenant = %who.fingerprint, %client, "refused: session cap of this client address");
                            return too_many(
                                StatusCode::TOO_MANY_REQUESTS,
                                "too many open sessions from this address: close unused ones (DELETE) or retry when idle ones expire",
                                SESSION_RETRY,
                            );
                        }
                        Err(NoRoom::Full) => {
                            tracing::info!(tenant = %who.fingerprint, "refused: the session table is full");
                            return too_many(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "the server has no room for another session; retry later",
                                SESSION_RETRY,
                            );
                        }
                    }
                }
            }
            (Some(id), _) if method == Method::DELETE => gate.sessions.forget(id),
            _ => {}
        }
    }
    response
}

/// Whether `body` is a JSON-RPC response (it has `result` or `error` and no `method`): the
/// client answering a request of the server's own.
fn is_response(body: &[u8]) -> bool {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Shape {
        method: Option<IgnoredAny>,
        result: Option<IgnoredAny>,
        error: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Shape>(body)
        .is_ok_and(|m| m.method.is_none() && (m.result.is_some() || m.error.is_some()))
}

#[cfg(test)]
mod tests {
    use super::is_response;

    #[test]
    fn only_a_json_rpc_response_is_a_response() {
        for yes in [
            r#"{"jsonrpc":"2.0","id":0,"result":{"action":"accept","content":{"confirm":true}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"no"}}"#,
        ] {
            assert!(is_response(yes.as_bytes()), "{yes}");
        }
        for no in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"[{"jsonrpc":"2.0","id":0,"result":{}}]"#,
            r#"{"jsonrpc":"2.0","id":0,"result":null}"#,
            "not json",
            "",
        ] {
            assert!(!is_response(no.as_bytes()), "{no}");
        }
    }
}
