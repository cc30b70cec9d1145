//! The process-wide budget of memory for reading upstream answers ([`ParseBudget`]): what one
//! answer costs while it is read and decoded is bounded per call (the body cap, and
//! [`super::json::MEMORY_BUDGET`] for its decoded tree); this bounds the sum over every call in
//! flight, so that many large answers at once (one tenant with 16 calls in flight on large pages
//! of its own account could reach about 576 MiB) cannot run the process out of memory.
//!
//! A call is charged twice, once for each thing it holds: its body, before the body is read
//! (the declared `Content-Length`, or the body cap when none is declared, given back down to the
//! real length once read), then, once the body is in, the [`super::json::estimate`] of its
//! decoded tree. The two are drawn from two parts of the budget, a quarter for bodies and the
//! rest for trees, each a FIFO semaphore (tokio's), and each taken in one piece. That is what
//! makes waiting safe: a call that waits for tree room holds body room, but those that hold
//! tree room wait for nothing, so they finish and make room; and a call that waits for body room
//! holds nothing. From one pool, a call holding its body and waiting for its tree would queue
//! behind newcomers that wait for the body room it holds (measured: of 16 large pages at once,
//! one was read and 15 timed out).
//!
//! The charge ([`ParseCharge`]) travels with the decoded answer and returns to the budget when the
//! backend has dropped it (see [`super::Parsed`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::observability::metrics;

/// Default bytes of the budget. Its three quarters for decoded trees hold three answers at the
/// per-call worst case (a tree estimated at the 32 MiB limit), or five Stream pages of 100 links
/// of 20 items each (1.8 MB of text, estimated at 18 MiB); its quarter for bodies holds eight
/// bodies at the 4 MiB cap. The estimate is about twice what decoding really allocates, so the
/// memory really used under a full budget is about half of it.
pub(crate) const DEFAULT_MAX_PARSE_BYTES: usize = 128 * 1024 * 1024;

/// How long a read waits in all for its share of the budget before it is refused (retry-safe).
/// The budget is held only while an answer is received, decoded and turned into the tool's
/// result: milliseconds for an ordinary answer, a few hundred for the largest in a debug build.
/// Two seconds absorb a burst of large answers without keeping a caller waiting on a server that
/// is overloaded; a refused read is safe to repeat.
pub(crate) const READ_WAIT: Duration = Duration::from_secs(2);

/// The memory all calls together may hold for upstream answers being read and decoded.
#[derive(Debug)]
pub(crate) struct ParseBudget {
    /// `None`: no bound (`--max-parse-bytes 0`).
    parts: Option<Parts>,
}

#[derive(Debug)]
struct Parts {
    bodies: Part,
    trees: Part,
}

#[derive(Debug)]
struct Part {
    permits: Arc<Semaphore>,
    total: usize,
}

/// What one answer holds of the budget; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct ParseCharge {
    body: Option<OwnedSemaphorePermit>,
    tree: Option<OwnedSemaphorePermit>,
}

/// The budget had no room within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted;

impl Part {
    fn new(total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Part {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.total.saturating_sub(self.permits.available_permits())
    }

    /// `bytes` in one piece, clamped to the whole part: an answer that alone would pass it
    /// takes all of it, and so is read alone, rather than never.
    async fn take(
        &self,
        bytes: usize,
        wait: Option<Duration>,
    ) -> Result<Option<OwnedSemaphorePermit>, Exhausted> {
        let wanted = bytes.min(self.total);
        if wanted == 0 {
            return Ok(None);
        }
        // Bodies and trees are capped far below 4 GiB (4 and 32 MiB).
        let Ok(n) = u32::try_from(wanted) else {
            return Err(Exhausted);
        };
        let acquire = self.permits.clone().acquire_many_owned(n);
        let taken = match wait {
            Some(wait) => tokio::time::timeout(wait, acquire)
                .await
                .map_err(|_| Exhausted)?,
            None => acquire.await,
        };
        // Only a closed semaphore fails, and these are never closed.
        taken.map(Some).map_err(|_| Exhausted)
    }
}

impl ParseBudget {
    /// A budget of `total` bytes (0: no bound): a quarter for bodies, the rest for trees.
    pub(crate) fn new(total: usize) -> Arc<Self> {
        let bodies = total / 4;
        Arc::new(ParseBudget {
            parts: (total > 0).then(|| Parts {
                bodies: Part::new(bodies),
                trees: Part::new(total - bodies),
            }),
        })
    }

    /// Bytes of the budget held by calls now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.parts
            .as_ref()
            .map_or(0, |p| p.bodies.held() + p.trees.held())
    }

    /// Takes room for a body of `bytes` (call once, before reading it), waiting in line at most
    /// `wait` (`None`: as long as it takes; the caller's deadline bounds it).
    pub(crate) async fn charge_body(
        &self,
        charge: &mut ParseCharge,
        bytes: usize,
        wait: Option<Duration>,
    ) -> Result<(), Exhausted> {
        if let Some(parts) = &self.parts {
            charge.body = parts.bodies.take(bytes, wait).await?;
            metrics::parse_bytes_taken(charge.body.as_ref().map_or(0, |p| p.num_permits()));
        }
        Ok(())
    }

    /// Gives back what the body's room holds beyond `bytes` (the body, read, was shorter).
    pub(crate) fn shrink_body(&self, charge: &mut ParseCharge, bytes: usize) {
        if let Some(permit) = &mut charge.body
            && permit.num_permits() > bytes
        {
            let excess = permit.num_permits() - bytes;
            drop(permit.split(excess));
            metrics::parse_bytes_released(excess);
        }
    }

    /// Takes room for a decoded tree of `bytes` (call once, after the body is in), waiting as
    /// [`charge_body`](Self::charge_body) does.
    pub(crate) async fn charge_tree(
        &self,
        charge: &mut ParseCharge,
        bytes: usize,
        wait: Option<Duration>,
    ) -> Result<(), Exhausted> {
        if let Some(parts) = &self.parts {
            charge.tree = parts.trees.take(bytes, wait).await?;
            metrics::parse_bytes_taken(charge.tree.as_ref().map_or(0, |p| p.num_permits()));
        }
        Ok(())
    }
}

impl ParseCharge {
    /// Bytes held.
    pub(crate) fn held(&self) -> usize {
        [&self.body, &self.tree]
            .into_iter()
            .flatten()
            .map(OwnedSemaphorePermit::num_permits)
            .sum()
    }
}

impl Drop for ParseCharge {
    fn drop(&mut self) {
        let held = self.held();
        if held > 0 {
            self.body = None;
            self.tree = None;
            metrics::parse_bytes_released(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Option<Duration> = Some(Duration::from_millis(10));

    #[tokio::test]
    async fn charges_are_bounded_per_part_clamped_to_it_and_returned_on_drop() {
        // 250 for bodies, 750 for trees.
        let budget = ParseBudget::new(1000);
        let mut a = ParseCharge::default();
        budget.charge_body(&mut a, 200, SHORT).await.unwrap();
        budget.charge_tree(&mut a, 700, SHORT).await.unwrap();
        assert_eq!((a.held(), budget.held()), (900, 900));
        let mut b = ParseCharge::default();
        // 50 of body room left: 100 is refused after the wait, 50 fits; then 50 of tree room
        // left: 100 is refused, keeping the body's room.
        assert_eq!(budget.charge_body(&mut b, 100, SHORT).await, Err(Exhausted));
        assert_eq!(budget.charge_body(&mut b, 50, SHORT).await, Ok(()));
        assert_eq!(budget.charge_tree(&mut b, 100, SHORT).await, Err(Exhausted));
        assert_eq!(b.held(), 50);
        drop(a);
        assert_eq!(budget.held(), 50);
        drop(b);
        // Alone, a body or a tree larger than its part takes all of it, not more.
        let mut huge = ParseCharge::default();
        budget.charge_body(&mut huge, 5000, SHORT).await.unwrap();
        budget.charge_tree(&mut huge, 5000, SHORT).await.unwrap();
        assert_eq!(huge.held(), 1000);
        // A body shorter than its room gives the rest back.
        budget.shrink_body(&mut huge, 40);
        assert_eq!((huge.held(), budget.held()), (790, 790));
        drop(huge);
        assert_eq!(budget.held(), 0);
    }

    /// The convoy that one pool made: callers holding their bodies' room, each waiting for tree
    /// room. With the parts apart, a holder of body room waits only for trees, and holders of
    /// tree room wait for nothing: everyone is served in turn.
    #[tokio::test]
    async fn calls_holding_body_room_and_waiting_for_tree_room_are_served_in_turn() {
        // 1000 for bodies: one body of 600 at a time; 3000 for trees.
        let budget = ParseBudget::new(4000);
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    let mut c = ParseCharge::default();
                    budget.charge_body(&mut c, 600, None).await?;
                    budget.charge_tree(&mut c, 2000, None).await?;
                    tokio::task::yield_now().await;
                    Ok::<_, Exhausted>(c.held())
                })
            })
            .collect();
        // Milliseconds; one pool (4000 for both) hung forever here.
        for call in calls {
            let held = tokio::time::timeout(Duration::from_secs(10), call)
                .await
                .expect("served in turn");
            assert_eq!(held.unwrap(), Ok(2600));
        }
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_waiting_charge_is_served_when_room_comes_back() {
        let budget = ParseBudget::new(400);
        let mut first = ParseCharge::default();
        budget.charge_tree(&mut first, 300, None).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut second = ParseCharge::default();
                budget
                    .charge_tree(&mut second, 50, None)
                    .await
                    .map(|()| second.held())
            })
        };
        // The test's runtime has one thread: the task has run until it waits in line.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "waits while the part is full");
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(50));
    }

    #[tokio::test]
    async fn zero_means_no_bound() {
        let budget = ParseBudget::new(0);
        let mut c = ParseCharge::default();
        budget
            .charge_body(&mut c, usize::MAX, Some(Duration::ZERO))
            .await
            .unwrap();
        budget
            .charge_tree(&mut c, usize::MAX, Some(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!((c.held(), budget.held()), (0, 0));
    }
}
