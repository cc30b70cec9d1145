//! What bounds one connection in time: its settings ([`ConnSettings`]), its phase between
//! requests and the watchdog's deadlines (header read, keep-alive), the request in progress that
//! suspends them (and whether that request does work yet, for the caps' eviction), and the
//! socket wrapper that reports incoming bytes and fails a stalled or too slow write.
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
pub(crate) struct ConnSettings {
    pub header_read: Duration,
    pub keep_alive: Duration,
    pub handshake: Duration,
    pub write: Duration,
    /// Bytes per second a client must take while we have something to send it, beyond the
    /// write timeout's grace (0: no minimum); see [`Watched`].
    pub min_write_rate: u32,
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

/// What the watchdog and the connection caps know of a connection.
struct State {
    phase: Phase,
    /// Requests in progress that are still receiving their body: nothing was done for them yet.
    receiving: u32,
    /// Answers in progress that are a session's standalone SSE stream: idle until the server has
    /// something to say, and resumable by the client.
    streaming: u32,
    /// Closed to make room for another client's connection (see `caps`).
    evicted: bool,
}

/// A connection's phase, shared by its reader, its service, its watchdog and the caps.
pub(super) struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

/// Why an evicted connection was closed.
const EVICTED: &str = "closed to make room for another client's connection";

impl Activity {
    pub(super) fn new() -> Self {
        Activity {
            state: Mutex::new(State {
                phase: Phase::Opened(Instant::now()),
                receiving: 0,
                streaming: 0,
                evicted: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        // One waiter (the watchdog); a permit is stored if it is not waiting right now.
        self.changed.notify_one();
    }

    /// The TLS handshake is done: the first request head is due from now.
    pub(super) fn opened(&self) {
        self.update(|s| s.phase = Phase::Opened(Instant::now()));
    }

    /// Bytes arrived from the client: on an idle connection, a new request head has begun.
    pub(super) fn bytes_read(&self) {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Idle(_)) {
            state.phase = Phase::Head(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// How cheaply this connection can be closed to make room for another client's, lowest
    /// first, or `None` while it does work: 0 before its first complete head (TLS handshake
    /// included), 1 idle between requests, 2 receiving a request body (nothing done for it yet),
    /// 3 holding a standalone SSE stream (which the client resumes).
    pub(super) fn idle_rank(&self) -> Option<u8> {
        let s = self.lock();
        Self::rank(&s)
    }

    fn rank(s: &State) -> Option<u8> {
        if s.evicted {
            return None;
        }
        match s.phase {
            Phase::Opened(_) | Phase::Head(_) => Some(0),
            Phase::Idle(_) => Some(1),
            Phase::Busy(n) if s.receiving + s.streaming >= n => {
                Some(if s.streaming > 0 { 3 } else { 2 })
            }
            Phase::Busy(_) => None,
        }
    }

    /// Closes the connection to make room, if it is still not doing work: its watchdog ends it
    /// at once. `false` (and nothing changed) if it started work meanwhile.
    pub(super) fn try_evict(&self) -> bool {
        let mut s = self.lock();
        if Self::rank(&s).is_none() {
            return false;
        }
        s.evicted = true;
        drop(s);
        self.changed.notify_one();
        true
    }

    /// Whether the caps closed this connection to make room.
    #[cfg(test)]
    pub(super) fn is_evicted(&self) -> bool {
        self.lock().evicted
    }

    /// When the connection is due to be closed, and why; `None` while it answers a request.
    fn deadline(&self, settings: &ConnSettings) -> Option<(Instant, &'static str)> {
        let s = self.lock();
        if s.evicted {
            return Some((Instant::now(), EVICTED));
        }
        match s.phase {
            Phase::Opened(t) | Phase::Head(t) => Some((
                t + settings.header_read,
                "the request head did not arrive within the header-read timeout",
            )),
            Phase::Idle(t) => Some((t + settings.keep_alive, "idle for the keep-alive timeout")),
            Phase::Busy(_) => None,
        }
    }

    /// Resolves when the connection has passed its deadline, or was evicted.
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

    /// Resolves when the connection was evicted (during a TLS handshake, which has its own
    /// timeout).
    pub(super) async fn evicted(&self) -> &'static str {
        loop {
            let changed = self.changed.notified();
            if self.lock().evicted {
                return EVICTED;
            }
            changed.await;
        }
    }
}

/// One request being answered on a connection, from its head to the end of its answer (or until
/// either is dropped).
pub(super) struct Busy(Arc<Activity>);

impl Busy {
    pub(super) fn begin(activity: Arc<Activity>) -> Self {
        activity.update(|s| {
            s.phase = match s.phase {
                Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
                _ => Phase::Busy(1),
            }
        });
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.phase = match s.phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
    }
}

/// Lets the gate say that the request in progress is only receiving its body (see
/// [`Activity::idle_rank`]); in every request's extensions.
#[derive(Clone)]
pub(crate) struct BodyWatch(pub(super) Arc<Activity>);

/// A request receiving its body, until dropped.
pub(crate) struct Receiving(Arc<Activity>);

impl BodyWatch {
    pub(crate) fn receiving(&self) -> Receiving {
        self.0.update(|s| s.receiving += 1);
        Receiving(self.0.clone())
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0
            .update(|s| s.receiving = s.receiving.saturating_sub(1));
    }
}

/// An answer that is a session's standalone SSE stream, until dropped.
pub(super) struct Streaming(Arc<Activity>);

impl Streaming {
    pub(super) fn begin(activity: Arc<Activity>) -> Self {
        activity.update(|s| s.streaming += 1);
        Streaming(activity)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0
            .update(|s| s.streaming = s.streaming.saturating_sub(1));
    }
}

/// An answer's body, holding its request's [`Busy`] until hyper is done with it (written out, or
/// dropped with the connection).
pub(super) struct TrackedBody {
    pub inner: Body,
    pub _busy: Busy,
    pub _streaming: Option<Streaming>,
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
/// no progress for the write timeout, or a client that takes what we send slower than the
/// minimum rate (hyper then closes the connection and drops the answer).
///
/// The rate counts only time spent waiting for the client to take bytes (a write pending),
/// never time the server spends with nothing to send: a tool call that runs long, or a session's
/// SSE stream with nothing to say, is never cut by it. Over the connection's life, the time
/// spent waiting may not pass the write timeout plus one second per `min_write_rate` bytes
/// taken: a client reading 64 bytes every few seconds is cut off after the grace, whatever its
/// steadiness, and a fast one never waits at all.
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Bytes per second; 0: no minimum.
    min_rate: u32,
    /// Bytes the client has taken.
    sent: u64,
    /// Time spent with a write pending, before the current stall.
    waited: Duration,
    /// When the current stall began.
    stalled_since: Option<Instant>,
    /// Armed while a write (or flush) is pending: when it fires, the client stopped reading, or
    /// reads too slowly. `true` when the rate, not the write timeout, set it.
    stalled: Option<(Pin<Box<Sleep>>, bool)>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>, settings: &ConnSettings) -> Self {
        Watched {
            inner,
            activity,
            write_timeout: settings.write,
            min_rate: settings.min_write_rate,
            sent: 0,
            waited: Duration::ZERO,
            stalled_since: None,
            stalled: None,
        }
    }

    /// How long the current stall may last: the write timeout, or less if the client's
    /// allowance under the minimum rate runs out first (then `true`).
    fn allowance(&self) -> (Duration, bool) {
        if self.min_rate == 0 {
            return (self.write_timeout, false);
        }
        let earned = self.write_timeout
            + Duration::from_secs_f64(self.sent as f64 / f64::from(self.min_rate));
        let left = earned.saturating_sub(self.waited);
        if left < self.write_timeout {
            (left, true)
        } else {
            (self.write_timeout, false)
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        written: impl FnOnce(&T) -> usize,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                if let Some(since) = self.stalled_since.take() {
                    self.waited += since.elapsed();
                }
                if let Ok(t) = &r {
                    self.sent += written(t) as u64;
                }
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.stalled.is_none() {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    let (wait, by_rate) = self.allowance();
                    self.stalled = Some((Box::pin(tokio::time::sleep(wait)), by_rate));
                }
                let Some((stalled, by_rate)) = self.stalled.as_mut() else {
                    return Poll::Pending;
                };
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        if *by_rate {
                            "the client takes what it is sent slower than the minimum rate"
                        } else {
                            "the client read nothing for the write timeout"
                        },
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
        self.progress(cx, polled, |n| *n)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled, |n| *n)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled, |()| 0)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, polled, |()| 0)
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
            min_write_rate: 0,
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

    /// A client that takes `chunk` bytes every `every`, as a socket whose buffer only ever has
    /// room for that much.
    struct SlowReader {
        chunk: usize,
        every: Duration,
        next: Option<Pin<Box<Sleep>>>,
    }

    impl AsyncWrite for SlowReader {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let every = self.every;
            let next = self
                .next
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
            match next.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.next = None;
                    Poll::Ready(Ok(buf.len().min(self.chunk)))
                }
                Poll::Pending => Poll::Pending,
            }
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Writes a 1 MiB answer to a reader taking 64 bytes a second: how long until the write
    /// fails, if it does within an hour.
    async fn time_to_cut(min_write_rate: u32) -> Option<Duration> {
        use tokio::io::AsyncWriteExt;
        let settings = ConnSettings {
            header_read: Duration::from_secs(5),
            keep_alive: Duration::from_secs(15),
            handshake: Duration::from_secs(5),
            write: Duration::from_secs(10),
            min_write_rate,
            max_total: 0,
            max_per_client: 0,
        };
        let reader = SlowReader {
            chunk: 64,
            every: Duration::from_secs(1),
            next: None,
        };
        let mut socket = Watched::new(reader, Arc::new(Activity::new()), &settings);
        let start = Instant::now();
        let answer = vec![b'x'; 1 << 20];
        match tokio::time::timeout(Duration::from_secs(3600), socket.write_all(&answer)).await {
            Ok(Err(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                Some(start.elapsed())
            }
            Ok(Ok(())) => panic!("a MiB at 64 bytes a second took less than an hour"),
            Err(_) => None,
        }
    }

    /// A slow but steady reader, progressing every second (well within the 10 s write timeout):
    /// cut off once it has made the server wait more than the grace plus one second per 1024
    /// bytes it took (64 bytes a second: after about 10.7 s); never without a minimum rate.
    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_cut_off_by_the_minimum_rate() {
        let cut = time_to_cut(1024).await.expect("cut off");
        assert!(
            cut > Duration::from_secs(10) && cut < Duration::from_secs(12),
            "{cut:?}"
        );
        assert_eq!(
            time_to_cut(0).await,
            None,
            "the write timeout alone never cuts it"
        );
    }
}
