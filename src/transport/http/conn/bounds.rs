//! What bounds one connection in time: its settings ([`ConnSettings`]), its phase between
//! requests and the watchdog's deadlines (header read, keep-alive), the request in progress that
//! suspends them, and the socket wrapper that reports incoming bytes and fails a stalled write.
//!
//! It measures and reports only: it must not accept, refuse or serve connections (the parent
//! module does).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// The per-connection bounds of a listener (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    pub header_read: Duration,
    pub keep_alive: Duration,
    pub handshake: Duration,
    pub write: Duration,
    /// Open connections in all (0: no limit).
    pub max_total: u32,
    /// Open connections per client address (0: no limit).
    pub max_per_client: u32,
}

/// Where a connection is between requests, for its watchdog.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// Just opened (after TLS): the first request head is due within the header-read timeout.
    Opened(Instant),
    /// No request in progress and no byte of the next one since this instant.
    Idle(Instant),
    /// The first bytes of the next request head arrived at this instant.
    Head(Instant),
    /// This many requests are being answered.
    Busy(u32),
}

/// A connection's phase, shared by its reader, its service and its watchdog.
pub(super) struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        Activity {
            phase: Mutex::new(Phase::Opened(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        {
            let mut phase = self.lock();
            *phase = f(*phase);
        }
        // One waiter (the watchdog); a permit is stored if it is not waiting right now.
        self.changed.notify_one();
    }

    /// Bytes arrived from the client: on an idle connection, a new request head has begun.
    pub(super) fn bytes_read(&self) {
        let mut phase = self.lock();
        if matches!(*phase, Phase::Idle(_)) {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// When the connection is due to be closed, and why; `None` while it answers a request.
    fn deadline(&self, settings: &ConnSettings) -> Option<(Instant, &'static str)> {
        match *self.lock() {
            Phase::Opened(t) | Phase::Head(t) => Some((
                t + settings.header_read,
                "the request head did not arrive within the header-read timeout",
            )),
            Phase::Idle(t) => Some((t + settings.keep_alive, "idle for the keep-alive timeout")),
            Phase::Busy(_) => None,
        }
    }

    /// Resolves when the connection has passed its deadline.
    pub(super) async fn expired(&self, settings: &ConnSettings) -> &'static str {
        loop {
            let changed = self.changed.notified();
            match self.deadline(settings) {
                None => changed.await,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            // The phase may have moved on since: only a deadline still passed
                            // closes the connection.
                            if let Some((due, why)) = self.deadline(settings)
                                && due <= Instant::now()
                            {
                                return why;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// One request being answered on a connection, from its head to the end of its answer (or until
/// either is dropped).
pub(super) struct Busy(Arc<Activity>);

impl Busy {
    pub(super) fn begin(activity: Arc<Activity>) -> Self {
        activity.update(|p| match p {
            Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
            _ => Phase::Busy(1),
        });
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// An answer's body, holding its request's [`Busy`] until hyper is done with it (written out, or
/// dropped with the connection).
pub(super) struct TrackedBody {
    pub inner: Body,
    pub _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket: reports incoming bytes to the watchdog, and fails a write that makes
/// no progress for the write timeout (hyper then closes the connection and drops the answer).
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Armed while a write (or flush) is pending: when it fires, the client stopped reading.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>, write_timeout: Duration) -> Self {
        Watched {
            inner,
            activity,
            write_timeout,
            stalled: None,
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing for the write timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_follows_the_connection() {
        let settings = ConnSettings {
            header_read: Duration::from_secs(5),
            keep_alive: Duration::from_secs(15),
            handshake: Duration::from_secs(5),
            write: Duration::from_secs(10),
            max_total: 0,
            max_per_client: 0,
        };
        let activity = Arc::new(Activity::new());
        let start = Instant::now();
        // A new connection gets the header-read timeout, bytes or not.
        activity.bytes_read();
        assert_eq!(
            activity.expired(&settings).await,
            "the request head did not arrive within the header-read timeout"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        // Busy: no deadline at all, however long.
        let activity = Arc::new(Activity::new());
        let busy = Busy::begin(activity.clone());
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), activity.expired(&settings))
                .await
                .is_err()
        );
        // Answered: idle, then the keep-alive timeout; a byte of a new head switches to the
        // header-read timeout from that byte.
        drop(busy);
        let idle_from = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        activity.bytes_read();
        assert_eq!(
            activity.expired(&settings).await,
            "the request head did not arrive within the header-read timeout"
        );
        assert_eq!(idle_from.elapsed(), Duration::from_secs(15));
        let idle = Arc::new(Activity::new());
        drop(Busy::begin(idle.clone()));
        let from = Instant::now();
        assert_eq!(
            idle.expired(&settings).await,
            "idle for the keep-alive timeout"
        );
        assert_eq!(from.elapsed(), Duration::from_secs(15));
    }
}
