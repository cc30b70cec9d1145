//! The body of a request to `/mcp`, and the memory it may take: read whole before any in-flight
//! slot is taken (so that a client that never finishes its body holds no slot), within
//! `--body-read-timeout-secs`, and charged to a process-wide budget of request bytes
//! ([`BodyBudget`], `--max-request-bytes`) and the client address's share of it
//! (`--max-request-bytes-per-client`) *before* it is read.
//!
//! Without the budget the only bound on buffered bodies was the connection cap: a thousand
//! connections each sending 1 MiB slowly, with no key, held a gigabyte. Now:
//!
//! - a declared body (`Content-Length`) is charged in full before its first byte is read, and its
//!   buffer is allocated once at that size (a buffer grown by doubling holds up to twice the
//!   body); a chunked body is charged as its buffer grows;
//! - once read, the body is charged what decoding it will take ([`estimate`], the same upper bound
//!   that bounds upstream answers): rmcp parses it into a `serde_json::Value`, which for 1 MiB of
//!   `{"a":0},` is some 80 MiB. A body whose decoded form would pass [`MAX_DECODED_BYTES`] is
//!   refused (413); no MCP message comes near it;
//! - the charge is held until the request is done: rmcp's answer for most requests, the end of
//!   the tool call for a call (the gate keeps it with the call's in-flight slots);
//! - over the process budget the answer is `503`, over the address's share `429`, each with
//!   `Retry-After` and `Connection: close`.
//!
//! A request whose body and decoded form stay within [`SMALL_REQUEST`] (every ordinary MCP
//! message) may use the whole budget; larger ones only three quarters of it. So large bodies
//! from many addresses cannot lock ordinary requests out: at the default 1024 connections, small
//! requests fit in the quarter kept for them even if every connection sent one at once.
//!
//! Refusals drain what is left of the body (reading and discarding it, never buffering it) for a
//! while before the connection is closed, so that a client still sending reads its refusal
//! rather than a reset. Draining costs no memory beyond the connection's own read buffer, and the
//! connection is held no longer than the body-read timeout that already bounds it.
//!
//! It reads and accounts only: it must not check who the caller is, nor take in-flight slots
//! (the [`gate`](super::gate) does, in its order).

// The error side of these results is the refusal to send; it is built only on that path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::reply::{refuse, too_many};
use crate::upstream::json::estimate;

/// Largest request body: MCP requests are small JSON documents. Whole MiB: refusals say it in MiB.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
const _: () = assert!(MAX_BODY_BYTES.is_multiple_of(1 << 20));

/// Most a body's decoded JSON may take, as [`estimate`]d: a create carrying the most metadata
/// allowed, every character escaped, estimates under 1 MiB.
pub(crate) const MAX_DECODED_BYTES: usize = 4 * 1024 * 1024;

/// A request costing at most this much (body and decoded form) may use the whole budget.
pub(crate) const SMALL_REQUEST: usize = 16 * 1024;

/// How much of a refused body is read and thrown away before the connection is closed. Closing
/// a socket whose peer is still sending makes the kernel answer with a reset, and a client that
/// is still writing its body then never reads the refusal: so, like a web server's lingering
/// close, the rest of a body that is somewhat too large is drained first, within the body-read
/// timeout. Past this much the sender is not an honest client and is cut off.
const LINGER_BYTES: usize = 4 * MAX_BODY_BYTES;

/// The first allocation of a chunked body's buffer; it then doubles, each step charged first.
const FIRST_CHUNKED_BUFFER: usize = 8 * 1024;

/// Request bytes held in memory, in all and per client address; see the module documentation.
pub(crate) struct BodyBudget {
    /// 0: no budget.
    max: usize,
    /// 0: no share of its own.
    per_client: usize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    /// Only addresses holding something.
    clients: HashMap<IpAddr, usize>,
}

/// Which budget a charge did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverBudget {
    Process,
    Client,
}

/// The bytes one request holds under the budget, returned when dropped.
pub(crate) struct Charge {
    budget: Arc<BodyBudget>,
    client: IpAddr,
    bytes: usize,
}

impl BodyBudget {
    pub(crate) fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
            max,
            per_client,
            held: Mutex::new(Held::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every update is one addition or subtraction: a poisoned lock is still consistent.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty charge for one request from `client`.
    pub(crate) fn open(self: &Arc<Self>, client: IpAddr) -> Charge {
        Charge {
            budget: self.clone(),
            client,
            bytes: 0,
        }
    }

    /// Bytes held now, in all.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.lock().total
    }
}

impl Charge {
    /// Takes `more` bytes for this request, or says which budget they do not fit.
    pub(crate) fn grow(&mut self, more: usize) -> Result<(), OverBudget> {
        if more == 0 {
            return Ok(());
        }
        let budget = &self.budget;
        let after = self.bytes.saturating_add(more);
        let mut held = budget.lock();
        if budget.max > 0 {
            // Large requests leave a quarter of the budget to small ones.
            let limit = if after > SMALL_REQUEST {
                budget.max - budget.max / 4
            } else {
                budget.max
            };
            if held.total.saturating_add(more) > limit {
                return Err(OverBudget::Process);
            }
        }
        let mine = held.clients.get(&self.client).copied().unwrap_or(0);
        if budget.per_client > 0 && mine.saturating_add(more) > budget.per_client {
            return Err(OverBudget::Client);
        }
        held.total += more;
        held.clients.insert(self.client, mine + more);
        self.bytes = after;
        Ok(())
    }

    /// Bytes this request holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut held = self.budget.lock();
        held.total = held.total.saturating_sub(self.bytes);
        if let Some(mine) = held.clients.get_mut(&self.client) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                held.clients.remove(&self.client);
            }
        }
    }
}

impl OverBudget {
    /// The refusal to send (before `Connection: close` is added).
    pub(crate) fn refusal(self) -> Response {
        match self {
            OverBudget::Process => too_many(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is holding as many request bodies as it may; retry shortly",
                Duration::from_secs(1),
            ),
            OverBudget::Client => too_many(
                StatusCode::TOO_MANY_REQUESTS,
                "too many request bytes in flight from this address; retry shortly",
                Duration::from_secs(1),
            ),
        }
    }
}

/// The refusal of a body larger than [`MAX_BODY_BYTES`].
pub(crate) fn too_large() -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!(
            "the request body is larger than {} MiB",
            MAX_BODY_BYTES >> 20
        ),
    )
}

fn close(mut refusal: Response) -> Response {
    refusal
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    refusal
}

/// Sends `refusal` after draining (reading and discarding, never buffering) up to
/// [`LINGER_BYTES`] of the body within `within`, and closes the connection.
pub(crate) async fn refuse_body(refusal: Response, mut body: Body, within: Duration) -> Response {
    let drain = async {
        let mut seen = 0usize;
        while seen <= LINGER_BYTES {
            match std::future::poll_fn(|cx| {
                http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)
            })
            .await
            {
                Some(Ok(frame)) => {
                    seen += frame.data_ref().map_or(0, Bytes::len);
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(within, drain).await;
    close(refusal)
}

/// Why a request body could not be read.
enum BodyError {
    TooLarge,
    Over(OverBudget),
    Broken,
}

/// Reads a whole request body (at most [`MAX_BODY_BYTES`]) within `within`, charging `charge`
/// for it as it goes (`declared`, its `Content-Length`, has been charged already), then for its
/// decoded form; or the refusal to send. Every refusal closes the connection: what is left of
/// the body could not be told apart from the next request.
pub(crate) async fn read_body(
    mut body: Body,
    within: Duration,
    charge: &mut Charge,
    declared: Option<usize>,
) -> Result<Bytes, Response> {
    let started = tokio::time::Instant::now();
    let read = async {
        // Sized once when declared; a chunked body's buffer grows by doubling, each step
        // charged before it is allocated, so that what is charged is what is held.
        let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY_BYTES));
        while let Some(frame) = std::future::poll_fn(|cx| {
            http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)
        })
        .await
        {
            let frame = frame.map_err(|_| BodyError::Broken)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let needed = buf.len() + data.len();
            if needed > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            if needed > buf.capacity() {
                // `needed` is at most the cap, so the clamp's bounds are in order.
                let grown = (buf.capacity() * 2)
                    .max(FIRST_CHUNKED_BUFFER)
                    .clamp(needed, MAX_BODY_BYTES);
                let more = grown.saturating_sub(charge.bytes().max(buf.capacity()));
                charge.grow(more).map_err(BodyError::Over)?;
                buf.reserve_exact(grown - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf)
    };
    let failed = match tokio::time::timeout(within, read).await {
        Ok(Ok(buf)) => return decoded(buf, charge),
        Ok(Err(failed)) => failed,
        Err(_) => {
            return Err(close(refuse(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &format!(
                    "the request body did not arrive within {} s",
                    within.as_secs()
                ),
            )));
        }
    };
    // What is left of the time drains the rest of the body, so that the client reads the
    // refusal.
    let left = within.saturating_sub(started.elapsed());
    Err(match failed {
        BodyError::TooLarge => refuse_body(too_large(), body, left).await,
        BodyError::Over(over) => refuse_body(over.refusal(), body, left).await,
        BodyError::Broken => close(refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
        )),
    })
}

/// The body, once charged for its decoded form; or the refusal.
fn decoded(buf: Vec<u8>, charge: &mut Charge) -> Result<Bytes, Response> {
    let (cost, _) = estimate(&buf);
    if cost > MAX_DECODED_BYTES {
        return Err(close(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!(
                "the request body would take more than {} MiB to decode; MCP messages are far smaller",
                MAX_DECODED_BYTES >> 20
            ),
        )));
    }
    charge.grow(cost).map_err(|over| close(over.refusal()))?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of several frames, without a length (as a chunked body arrives).
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn charges_are_bounded_in_all_and_per_client_and_returned_on_drop() {
        let budget = BodyBudget::new(400_000, 250_000);
        let mut a = budget.open(ip("10.0.0.1"));
        a.grow(200_000).unwrap();
        let mut a2 = budget.open(ip("10.0.0.1"));
        assert_eq!(a2.grow(100_000), Err(OverBudget::Client));
        assert_eq!(a2.bytes(), 0, "a refused charge takes nothing");
        let mut b = budget.open(ip("10.0.0.2"));
        // Large requests may use three quarters: 300,000.
        assert_eq!(b.grow(150_000), Err(OverBudget::Process));
        b.grow(100_000).unwrap();
        // A small request may use the last quarter.
        let mut small = budget.open(ip("10.0.0.3"));
        small.grow(SMALL_REQUEST).unwrap();
        // ...but not grow past small once there.
        assert_eq!(small.grow(1), Err(OverBudget::Process));
        assert_eq!(budget.held(), 300_000 + SMALL_REQUEST);
        drop(a);
        drop(small);
        assert_eq!(budget.held(), 100_000);
        a2.grow(200_000).unwrap();
        drop((a2, b));
        assert_eq!(budget.held(), 0);
        assert!(budget.lock().clients.is_empty());
        // 0: no budget.
        let open = BodyBudget::new(0, 0);
        let mut c = open.open(ip("10.0.0.1"));
        c.grow(usize::MAX / 2).unwrap();
    }

    #[tokio::test]
    async fn a_body_is_charged_for_its_buffer_and_its_decoded_form() {
        let budget = BodyBudget::new(0, 0);
        let text = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let mut charge = budget.open(ip("10.0.0.1"));
        charge.grow(text.len()).unwrap();
        let body = read_body(
            Body::from(&text[..]),
            Duration::from_secs(1),
            &mut charge,
            Some(text.len()),
        )
        .await
        .ok()
        .unwrap();
        assert_eq!(&body[..], text);
        let (cost, _) = estimate(text);
        assert_eq!(charge.bytes(), text.len() + cost);

        // A chunked body: charged for its buffer as it grows.
        let chunks = Chunks((0..20).map(|_| Bytes::from(vec![b' '; 1000])).collect());
        let mut charge = budget.open(ip("10.0.0.1"));
        let body = read_body(Body::new(chunks), Duration::from_secs(1), &mut charge, None)
            .await
            .ok()
            .unwrap();
        assert_eq!(body.len(), 20_000);
        assert_eq!(charge.bytes(), 32 * 1024, "8, 16, then 32 KiB of buffer");

        // Dense JSON that would decode to far more than its text is refused once read.
        let dense = format!("[{}0]", "{\"a\":0},".repeat(100_000));
        let mut charge = budget.open(ip("10.0.0.1"));
        let refused = read_body(
            Body::from(dense.clone()),
            Duration::from_secs(1),
            &mut charge,
            Some(dense.len()),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
