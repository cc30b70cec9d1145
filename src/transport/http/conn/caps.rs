//! How many connections may be open, in all (`--max-connections`) and per client address
//! (`--max-connections-per-client`), and who gives one up when the listener is full.
//!
//! A first-come total cap lets a few addresses hold every connection: at the defaults, 1024 /
//! 128 = 9 addresses (or nine IPv6 /64s) locked everyone else out. So when the total is full, a
//! newcomer is admitted by closing a connection that does no work — one that has not sent a
//! complete head yet (a TLS handshake included), idles between requests, is still receiving a
//! request body, or holds a session's standalone SSE stream (which the client resumes) — from
//! the address holding the most connections, provided that address holds at least two more than
//! the newcomer's: it still holds at least as many afterwards. Addresses thus converge on equal
//! shares, and one below its share always gets in while anyone holds idle connections above it.
//! A connection is refused only when no such connection exists.
//!
//! Eviction never interrupts work: a connection is chosen and marked under its own lock only
//! while it is in one of those states (see `bounds::Activity::try_evict`), and its watchdog then
//! closes it at once.
//!
//! It counts and chooses only: it must not serve or time connections (the parent module and
//! `bounds` do).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::bounds::Activity;
use crate::transport::http::limits::client_key;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The whole listener is at `--max-connections`, and every connection above the newcomer's
    /// share is doing work.
    Total,
    /// This client address is at `--max-connections-per-client`.
    Client,
}

/// Open connections, in all and per client address (an IPv4 address or an IPv6 /64, as for the
/// request limits).
pub(crate) struct ConnCaps {
    /// 0: no limit.
    max_total: usize,
    /// 0: no limit.
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    count: usize,
    /// Only addresses with a connection open.
    by_client: HashMap<IpAddr, Vec<Held>>,
    next_id: u64,
}

struct Held {
    id: u64,
    activity: Arc<Activity>,
}

/// One open connection's place under the caps, given back when dropped (when the connection
/// ends) unless the connection was evicted, which gave it to the newcomer at once.
pub(crate) struct ConnPermit {
    caps: Arc<ConnCaps>,
    client: IpAddr,
    id: u64,
}

impl ConnCaps {
    /// `0` disables a cap.
    pub(crate) fn new(max_total: u32, max_per_client: u32) -> Arc<Self> {
        Arc::new(ConnCaps {
            max_total: max_total as usize,
            max_per_client: max_per_client as usize,
            open: Mutex::new(Open::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // Every change is made whole under the lock before anything that could panic.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more connection from `peer`, whose phase is `activity`; or why there is
    /// none. May evict another address's idle connection (see the module documentation).
    pub(super) fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        activity: Arc<Activity>,
    ) -> Result<ConnPermit, Refused> {
        let client = client_key(peer);
        let mut open = self.lock();
        let mine = open.by_client.get(&client).map_or(0, Vec::len);
        // The client's own cap first: a client at its cap never takes a place, nor anyone's.
        if self.max_per_client > 0 && mine >= self.max_per_client {
            return Err(Refused::Client);
        }
        if self.max_total > 0 && open.count >= self.max_total {
            if !Self::evict_for(&mut open, mine) {
                return Err(Refused::Total);
            }
            tracing::debug!(%peer, "connection admitted by closing an idle one of a larger holder");
        }
        open.next_id += 1;
        let id = open.next_id;
        open.count += 1;
        open.by_client
            .entry(client)
            .or_default()
            .push(Held { id, activity });
        Ok(ConnPermit {
            caps: self.clone(),
            client,
            id,
        })
    }

    /// Closes, and takes out of the count, one connection that does no work from the largest
    /// holder holding at least `mine + 2`; the cheapest first. `false` if there is none.
    fn evict_for(open: &mut Open, mine: usize) -> bool {
        let mut larger: Vec<(usize, IpAddr)> = open
            .by_client
            .iter()
            .filter(|(_, held)| held.len() >= mine + 2)
            .map(|(ip, held)| (held.len(), *ip))
            .collect();
        larger.sort_unstable_by(|a, b| b.cmp(a));
        for (_, ip) in larger {
            let Some(held) = open.by_client.get_mut(&ip) else {
                continue;
            };
            let mut ranked: Vec<(u8, usize)> = held
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.activity.idle_rank().map(|r| (r, i)))
                .collect();
            ranked.sort_unstable();
            // The rank may change between the look and the mark: the mark checks again.
            let Some(i) = ranked
                .into_iter()
                .map(|(_, i)| i)
                .find(|&i| held[i].activity.try_evict())
            else {
                continue;
            };
            held.swap_remove(i);
            open.count -= 1;
            return true;
        }
        false
    }

    /// Connections open now, in all.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.lock().count
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.caps.lock();
        let Some(held) = open.by_client.get_mut(&self.client) else {
            return;
        };
        // Absent when evicted: its place went to the newcomer already.
        let Some(i) = held.iter().position(|h| h.id == self.id) else {
            return;
        };
        held.swap_remove(i);
        if held.is_empty() {
            open.by_client.remove(&self.client);
        }
        open.count -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::bounds::{BodyWatch, Busy};
    use super::*;

    fn conn() -> Arc<Activity> {
        Arc::new(Activity::new())
    }

    #[test]
    fn connections_are_capped_in_all_and_per_client() {
        let caps = ConnCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        // Every connection here is busy: nobody can be evicted.
        let busy = |caps: &Arc<ConnCaps>, ip| {
            let c = conn();
            let work = Busy::begin(c.clone());
            caps.admit(ip, c).map(|p| (p, work))
        };
        let a1 = busy(&caps, a).unwrap();
        let _a2 = busy(&caps, a).unwrap();
        assert_eq!(busy(&caps, a).err(), Some(Refused::Client));
        let _b1 = busy(&caps, b).unwrap();
        assert_eq!(busy(&caps, b).err(), Some(Refused::Total));
        drop(a1);
        // The refused attempts took nothing: exactly one place came back.
        let _b2 = busy(&caps, b).unwrap();
        assert_eq!(busy(&caps, b).err(), Some(Refused::Client));
        assert_eq!(caps.open(), 3);
        // IPv6 clients are counted by /64.
        let caps = ConnCaps::new(0, 1);
        let _v6 = caps.admit("2001:db8::1".parse().unwrap(), conn()).unwrap();
        assert_eq!(
            caps.admit("2001:db8::2".parse().unwrap(), conn()).err(),
            Some(Refused::Client)
        );
        let unlimited = ConnCaps::new(0, 0);
        let held: Vec<_> = (0..1000)
            .map(|_| unlimited.admit(a, conn()).unwrap())
            .collect();
        drop(held);
        assert_eq!(unlimited.open(), 0);
    }

    #[test]
    fn a_full_listener_makes_room_from_the_largest_holder_of_idle_connections() {
        let caps = ConnCaps::new(6, 4);
        let big: IpAddr = "10.0.0.1".parse().unwrap();
        let mid: IpAddr = "10.0.0.2".parse().unwrap();
        let new: IpAddr = "10.0.0.3".parse().unwrap();
        // big: four connections, one answering a request, one receiving a body, two opened.
        let big_conns: Vec<Arc<Activity>> = (0..4).map(|_| conn()).collect();
        let mut permits: Vec<ConnPermit> = big_conns
            .iter()
            .map(|c| caps.admit(big, c.clone()).unwrap())
            .collect();
        let _work = Busy::begin(big_conns[0].clone());
        let _body = Busy::begin(big_conns[1].clone());
        let _receiving = BodyWatch(big_conns[1].clone()).receiving();
        let mid_conns: Vec<Arc<Activity>> = (0..2).map(|_| conn()).collect();
        for c in &mid_conns {
            permits.push(caps.admit(mid, c.clone()).unwrap());
        }
        assert_eq!(caps.open(), 6);
        // A newcomer with none gets in: one of big's opened connections goes (cheapest first).
        let n1 = caps.admit(new, conn()).unwrap();
        assert_eq!(caps.open(), 6);
        let gone: Vec<bool> = big_conns.iter().map(|c| c.is_evicted()).collect();
        assert_eq!(gone, [false, false, true, false]);
        // Again: big (3) holds two more than new (1): its other opened connection goes.
        let n2 = caps.admit(new, conn()).unwrap();
        let gone: Vec<bool> = big_conns.iter().map(|c| c.is_evicted()).collect();
        assert_eq!(gone, [false, false, true, true]);
        // Now big 2, mid 2, new 2: nobody holds two more than new; refused.
        assert_eq!(caps.admit(new, conn()).err(), Some(Refused::Total));
        // A fourth address with none: big, mid and new all hold two; one of them gives up a
        // connection that does no work, never big's busy one.
        let fourth: IpAddr = "10.0.0.4".parse().unwrap();
        let _n4 = caps.admit(fourth, conn()).unwrap();
        assert!(
            !big_conns[0].is_evicted(),
            "a connection at work is never closed"
        );
        assert_eq!(caps.open(), 6);
        // Evicted permits dropping later give nothing back twice.
        drop(permits);
        drop((n1, n2));
        assert_eq!(caps.open(), 1);
    }
}
