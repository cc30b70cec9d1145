//! The connections of the HTTP listeners: our own accept loop, TLS handshakes, the connection
//! caps and every per-connection timeout. hyper serves HTTP/1.1 on each connection, with axum's
//! router as the service.
//!
//! `axum::serve` runs hyper without a timer and without limits, so a client that opens a
//! connection and sends nothing, or half a request, or never reads its answer, holds that
//! connection (and what it pins) forever. Here every phase of a connection has a bound:
//!
//! - accepted: within `--max-connections-per-client` per address (one over is closed at once)
//!   and `--max-connections` in all, shared fairly: a full listener makes room for a newcomer by
//!   closing a connection that does no work of the address holding the most (see `caps`);
//! - TLS handshake: `--tls-handshake-timeout-secs`;
//! - the first request head: `--header-read-timeout-secs` from the connection's start (after TLS);
//! - idle between requests: `--keep-alive-timeout-secs` from the end of the previous answer to
//!   the next request's first byte; that request's head then has `--header-read-timeout-secs`;
//! - a request body to `/mcp`: `--body-read-timeout-secs`, enforced by the gate, which reads the
//!   body before it takes any in-flight slot;
//! - an answer: a write that makes no progress for `--write-timeout-secs` fails, which closes the
//!   connection and drops the answer; so does a client that takes what it is sent slower than
//!   `--min-write-rate` (counted only while the server waits on it).
//!
//! While a request is being answered there is no other deadline: a tool call is bounded by its
//! own deadline, and a session's SSE stream is long-lived by design (the write timeout only
//! catches a client that stopped reading it).
//!
//! The accept loop waits on nothing but the listener: handshakes and connections run in their
//! own tasks, and a connection over a cap is dropped before any work is spent on it. A TLS
//! handshake in progress is a connection like any other, counted against both caps and bounded by
//! its timeout, so idle TCP connections from a few addresses cannot stop others from connecting.
//!
//! This file holds the accept loop and the service of a connection; the caps and who gives way
//! are in `caps`, the timers of one connection (its phase, the watchdog, the write timeout and
//! rate) in `bounds`.

mod bounds;
mod caps;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use self::bounds::{Activity, Busy, Streaming, TrackedBody, Watched};

pub(crate) use self::bounds::{BodyWatch, ConnSettings};
pub(crate) use self::caps::{ConnCaps, ConnPermit};

/// The longest request head accepted, request line included. MCP clients send a dozen short
/// headers (well under 2 KiB, a Bearer key included); Node caps heads at 16 KiB and nginx at
/// 4 x 8 KiB, so browsers and proxies keep theirs smaller. Twice Node's cap leaves room for long
/// cookies or forwarding chains, and bounds what unfinished heads hold: 32 MiB for 1024
/// connections. Also hyper's read buffer, which a body then streams through.
pub(crate) const MAX_HEAD_BYTES: usize = 32 * 1024;

/// The peer address of a connection, plain or TLS: in every request as axum's `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// Serves `app` on `tcp` (over TLS with `tls`) until `stop` is cancelled, then lets every open
/// connection finish its current answer (SSE streams end through their own tokens) and returns
/// once all have closed. The caller bounds that wait.
pub(crate) async fn serve(
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    settings: ConnSettings,
    stop: CancellationToken,
) {
    let caps = ConnCaps::new(settings.max_total, settings.max_per_client);
    let tls = tls.map(TlsAcceptor::from);
    // Every connection task holds a sender: the channel closes when the last one has ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            // The client gave up before we got to it: nothing to do, nothing to wait for.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let permit = match caps.admit(peer.ip(), activity.clone()) {
            Ok(p) => p,
            Err(why) => {
                // Debug only: under a flood this would be one line per connection.
                tracing::debug!(%peer, ?why, "connection refused: over the connection cap");
                drop(stream);
                continue;
            }
        };
        // Without it, a tool answer written as several small SSE frames waits on the client's
        // delayed ACK: about 40 ms per call in session mode (measured by the benchmark).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        tokio::spawn(connection(
            stream,
            peer,
            (permit, activity),
            tls.clone(),
            app.clone(),
            settings,
            stop.clone(),
            open.clone(),
        ));
    }
    // Stop accepting: new connections are refused by the kernel from here on.
    drop(tcp);
    drop(open);
    let _ = all_closed.recv().await;
}

/// Errors of one connection attempt, not of the listener (as hyper's and axum's loops treat them).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    (permit, activity): (ConnPermit, Arc<Activity>),
    tls: Option<TlsAcceptor>,
    app: Router,
    settings: ConnSettings,
    stop: CancellationToken,
    _open: mpsc::Sender<()>,
) {
    let _permit = permit;
    let Some(acceptor) = tls else {
        return http(stream, peer, activity, app, settings, stop).await;
    };
    let handshake = tokio::select! {
        h = tokio::time::timeout(settings.handshake, acceptor.accept(stream)) => h,
        why = activity.evicted() => {
            tracing::debug!(%peer, "connection closed during its TLS handshake: {why}");
            return;
        }
        () = stop.cancelled() => return,
    };
    match handshake {
        Ok(Ok(stream)) => {
            activity.opened();
            http(stream, peer, activity, app, settings, stop).await
        }
        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Serves HTTP/1.1 on one connection until it ends, its watchdog fires, or shutdown drains it.
async fn http<S>(
    io: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
    app: Router,
    settings: ConnSettings,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched::new(io, activity.clone(), &settings));
    let service = ConnService {
        app: TowerToHyperService::new(app),
        peer,
        activity: activity.clone(),
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // A head longer than this is answered 431 and the connection closed; and hyper's read
        // buffer, which holds an unfinished head, never grows past it (by default it may reach
        // about 400 KiB per connection: 1024 unfinished heads of 300 KB held 267 MB).
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES)
        // hyper's own header timer starts when it starts waiting for a head, idle time included:
        // a backstop that can only fire after the watchdog's deadlines.
        .header_read_timeout(settings.header_read + settings.keep_alive)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            why = activity.expired(&settings) => {
                // Dropping the connection closes the socket; nothing is in progress on it.
                tracing::debug!(%peer, "connection closed: {why}");
                return;
            }
            () = stop.cancelled(), if !draining => {
                // Closes an idle connection now, a busy one after its current answer.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// The router, with the connection's peer address in every request (axum's `ConnectInfo`) and
/// the connection's activity tracked from a request's head to its answer's end.
#[derive(Clone)]
struct ConnService {
    app: TowerToHyperService<Router>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request
            .extensions_mut()
            .insert(ConnectInfo(Peer(self.peer)));
        request
            .extensions_mut()
            .insert(BodyWatch(self.activity.clone()));
        let get = request.method() == http::Method::GET;
        let busy = Busy::begin(self.activity.clone());
        let activity = self.activity.clone();
        let answer = self.app.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // A GET answered with an event stream is a session's standalone SSE stream: it waits
            // for the server to have something to say, and the client resumes it if closed.
            let streaming = (get
                && response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.starts_with("text/event-stream")))
            .then(|| Streaming::begin(activity));
            Ok(response.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _busy: busy,
                    _streaming: streaming,
                })
            }))
        })
    }
}
