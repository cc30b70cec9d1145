//! The store's bounds, replays and outcomes, checked against its own indexes after every step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::entries::Slot;
use super::limits::TENANT_OVERHEAD;
use super::*;
use crate::error::Error;

fn store() -> Arc<IdempotencyStore> {
    IdempotencyStore::new(StoreLimits::default())
}

fn limits(max_entries: usize, max_per_tenant: usize, max_unknown: usize) -> StoreLimits {
    StoreLimits {
        max_entries,
        max_bytes: 64 << 20,
        max_per_tenant,
        max_bytes_per_tenant: 64 << 20,
        max_unknown_per_tenant: max_unknown,
        max_in_flight_per_tenant: 4,
    }
}

fn run(c: Claim) -> Ticket {
    match c {
        Claim::Run(t) => t,
        _ => panic!("expected Run"),
    }
}

fn claim(s: &Arc<IdempotencyStore>, tenant: &str, key: &str) -> Ticket {
    run(s
        .claim(tenant, key, [1; 32], || format!("ref-{key}"))
        .unwrap())
}

fn created(s: &Arc<IdempotencyStore>, tenant: &str, key: &str, pad: usize) {
    claim(s, tenant, key).complete(Outcome::Created(json!({"id": key, "pad": "x".repeat(pad)})));
}

/// A create cancelled before it finished: the ticket dropped.
fn cancelled(s: &Arc<IdempotencyStore>, tenant: &str, key: &str) {
    drop(claim(s, tenant, key));
}

/// Every index agrees with the entries, and every bound holds.
fn check(s: &IdempotencyStore) {
    let inner = s.lock();
    let l = s.limits;
    let mut finished = 0;
    let mut per_tenant: HashMap<&str, (usize, usize, usize, usize)> = HashMap::new();
    let mut bytes = 0;
    for (id, e) in &inner.entries {
        let t = per_tenant.entry(&e.tenant).or_default();
        t.0 += 1;
        t.1 += e.bytes;
        bytes += e.bytes;
        match e.slot {
            Slot::InFlight(_) => t.2 += 1,
            Slot::Unknown(..) => {
                t.3 += 1;
                assert_eq!(inner.tenants[&e.tenant].unknown.get(&e.age), Some(id));
            }
            Slot::Created(_) => {}
        }
        if !matches!(e.slot, Slot::InFlight(_)) {
            finished += 1;
            assert_eq!(inner.finished.get(&e.age), Some(id));
            assert_eq!(inner.tenants[&e.tenant].finished.get(&e.age), Some(id));
        }
    }
    assert_eq!(inner.finished.len(), finished);
    assert_eq!(inner.tenants.len(), per_tenant.len());
    assert_eq!(
        inner.bytes,
        bytes + per_tenant.len() * TENANT_OVERHEAD,
        "bytes charged"
    );
    for (tenant, (entries, tbytes, in_flight, unknown)) in per_tenant {
        let book = &inner.tenants[tenant];
        assert_eq!(
            (book.entries, book.bytes, book.in_flight, book.unknown.len()),
            (entries, tbytes + TENANT_OVERHEAD, in_flight, unknown)
        );
        assert!(
            entries <= l.max_per_tenant,
            "{entries} entries for {tenant}"
        );
        assert!(book.bytes <= l.max_bytes_per_tenant, "{} bytes", book.bytes);
        assert!(unknown <= l.max_unknown_per_tenant, "{unknown} unknown");
        assert!(in_flight <= l.max_in_flight_per_tenant);
    }
    inner.check_shares();
    assert!(inner.entries.len() <= l.max_entries);
    assert!(
        inner.bytes <= l.max_bytes,
        "{} > {}",
        inner.bytes,
        l.max_bytes
    );
}

#[test]
fn a_repeat_replays_the_first_result() {
    let s = store();
    let t = run(s.claim("t1", "k", [1; 32], || "ref-1".into()).unwrap());
    assert_eq!(t.reference, "ref-1");
    t.complete(Outcome::Created(json!({"id": "L1"})));
    match s.claim("t1", "k", [1; 32], || "ref-2".into()).unwrap() {
        Claim::Replay(Outcome::Created(v)) => assert_eq!(v["id"], "L1"),
        _ => panic!("expected a replay"),
    }
    check(&s);
}

#[test]
fn other_arguments_conflict_and_other_tenants_are_separate() {
    let s = store();
    run(s.claim("t1", "k", [1; 32], || "r".into()).unwrap()).complete(Outcome::Created(json!({})));
    let e = s.claim("t1", "k", [2; 32], || "r".into()).err().unwrap();
    assert_eq!(e.kind().as_str(), "idempotency_conflict");
    assert!(matches!(
        s.claim("t2", "k", [2; 32], || "r".into()).unwrap(),
        Claim::Run(_)
    ));
}

#[test]
fn failures_are_forgotten_and_unknowns_keep_their_reference() {
    let s = store();
    run(s.claim("t", "k", [1; 32], || "r1".into()).unwrap())
        .complete(Outcome::Failed(Error::validation("name", "x")));
    assert!(s.is_empty());
    run(s.claim("t", "k", [1; 32], || "r2".into()).unwrap()).complete(Outcome::Unknown {
        reference: "r2".into(),
        sent: Some([7; 32]),
    });
    let t = run(s.claim("t", "k", [1; 32], || "r3".into()).unwrap());
    assert!(t.previous_unknown);
    assert_eq!(t.reference, "r2");
    assert_eq!(t.previous_sent, Some([7; 32]));
    // Refused before its write again: the entry stays unknown, with what was sent.
    drop(t);
    let t = run(s.claim("t", "k", [1; 32], || "r4".into()).unwrap());
    assert_eq!(
        (t.reference.as_str(), t.previous_sent),
        ("r2", Some([7; 32]))
    );
    check(&s);
}

#[tokio::test]
async fn concurrent_duplicates_wait_and_share() {
    let s = store();
    let t = run(s.claim("t", "k", [1; 32], || "r".into()).unwrap());
    let rx = match s.claim("t", "k", [1; 32], || "r".into()).unwrap() {
        Claim::Wait(rx) => rx,
        _ => panic!("expected Wait"),
    };
    let waiter = tokio::spawn(wait(rx));
    t.complete(Outcome::Created(json!({"id": "L"})));
    match waiter.await.unwrap() {
        Some(Outcome::Created(v)) => assert_eq!(v["id"], "L"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_cancelled_first_call_leaves_an_unknown_outcome_to_look_up() {
    let s = store();
    let t = run(s.claim("t", "k", [1; 32], || "r".into()).unwrap());
    let rx = match s.claim("t", "k", [1; 32], || "r".into()).unwrap() {
        Claim::Wait(rx) => rx,
        _ => panic!("expected Wait"),
    };
    drop(t);
    assert!(wait(rx).await.is_none());
    let again = run(s.claim("t", "k", [1; 32], || "other".into()).unwrap());
    assert!(
        again.previous_unknown,
        "the write may have happened: look first"
    );
    assert_eq!(again.reference, "r");
    check(&s);
}

#[test]
fn unknown_outcomes_are_capped_per_tenant_and_the_oldest_go_first() {
    let s = IdempotencyStore::new(limits(1000, 100, 3));
    for i in 0..10 {
        cancelled(&s, "t", &format!("k{i}"));
        check(&s);
    }
    cancelled(&s, "other", "k0");
    let stats = s.stats();
    assert_eq!((stats.unknown, stats.in_flight), (4, 0));
    // The newest three are still looked up on a repeat; the oldest were dropped.
    for i in 7..10 {
        assert!(claim(&s, "t", &format!("k{i}")).previous_unknown, "k{i}");
    }
    assert!(!claim(&s, "t", "k0").previous_unknown);
    assert!(
        claim(&s, "other", "k0").previous_unknown,
        "another tenant's"
    );
}

#[test]
fn a_thousand_cancelled_creates_never_lock_out_a_new_key() {
    let s = IdempotencyStore::new(limits(1000, 50, 10));
    for i in 0..1000 {
        cancelled(&s, "t", &format!("cancelled-{i}"));
    }
    check(&s);
    assert_eq!(s.stats().unknown, 10);
    let t = claim(&s, "t", "brand-new");
    assert!(!t.previous_unknown);
    t.complete(Outcome::Created(json!({"id": "L"})));
    check(&s);
}

#[test]
fn a_new_key_is_refused_only_for_the_tenants_own_creates_in_flight() {
    let s = IdempotencyStore::new(limits(1000, 6, 100));
    // The tenant's quota full of finished entries: none of them refuses a new key.
    for i in 0..3 {
        cancelled(&s, "t", &format!("u{i}"));
        created(&s, "t", &format!("c{i}"), 0);
    }
    let held: Vec<Ticket> = (0..4).map(|i| claim(&s, "t", &format!("f{i}"))).collect();
    check(&s);
    let e = s.claim("t", "f9", [1; 32], || "r".into()).err().unwrap();
    assert_eq!(e.kind().as_str(), "rate_limited");
    assert!(e.retry_safe());
    // Another tenant is not concerned, and one create ending frees a place.
    claim(&s, "other", "k");
    drop(held);
    claim(&s, "t", "f9");
    check(&s);
}

#[test]
fn the_entry_bound_holds_for_every_kind_of_entry() {
    let s = IdempotencyStore::new(limits(10, 1000, 1000));
    let mut held = Vec::new();
    for i in 0..40 {
        let tenant = format!("t{}", i % 4);
        match i % 3 {
            0 => created(&s, &tenant, &format!("k{i}"), 10),
            1 => cancelled(&s, &tenant, &format!("k{i}")),
            _ if held.len() < 3 => held.push(claim(&s, &tenant, &format!("k{i}"))),
            _ => {}
        }
        check(&s);
    }
    assert_eq!(s.len(), 10);
    assert_eq!(
        s.stats().in_flight,
        3,
        "creates in flight are never evicted"
    );
}

#[test]
fn the_byte_bounds_hold_and_the_oldest_results_go_first() {
    let l = StoreLimits {
        max_bytes: 40_000,
        max_bytes_per_tenant: 16_000,
        ..limits(1000, 1000, 1000)
    };
    let s = IdempotencyStore::new(l);
    for i in 0..30 {
        created(&s, &format!("t{}", i % 5), &format!("k{i}"), 3_000);
        check(&s);
    }
    // The newest result of each tenant is still replayed; the oldest were evicted.
    assert!(matches!(
        s.claim("t4", "k29", [1; 32], || "r".into()).unwrap(),
        Claim::Replay(_)
    ));
    assert!(matches!(
        s.claim("t0", "k0", [1; 32], || "r".into()).unwrap(),
        Claim::Run(_)
    ));
    // One tenant alone stays within its own share.
    let s = IdempotencyStore::new(l);
    for i in 0..30 {
        created(&s, "big", &format!("k{i}"), 3_000);
    }
    check(&s);
    assert!(s.stats().bytes <= 16_000 + TENANT_OVERHEAD);
}

#[test]
fn a_result_too_large_to_keep_is_kept_as_an_unknown_outcome() {
    let s = IdempotencyStore::new(StoreLimits {
        max_bytes: 20_000,
        max_bytes_per_tenant: 10_000,
        ..limits(1000, 1000, 1000)
    });
    created(&s, "t", "small", 10);
    created(&s, "t", "huge", 50_000);
    check(&s);
    let t = claim(&s, "t", "huge");
    assert!(t.previous_unknown, "a repeat looks for the link first");
    assert_eq!(t.reference, "ref-huge");
    assert!(matches!(
        s.claim("t", "small", [1; 32], || "r".into()).unwrap(),
        Claim::Replay(_)
    ));
}

#[test]
fn one_tenant_cannot_flush_another() {
    let s = IdempotencyStore::new(limits(1000, 5, 100));
    created(&s, "victim", "k", 0);
    for i in 0..50 {
        created(&s, "noisy", &format!("k{i}"), 0);
        cancelled(&s, "noisy", &format!("u{i}"));
    }
    check(&s);
    assert!(matches!(
        s.claim("victim", "k", [1; 32], || "r".into()).unwrap(),
        Claim::Replay(_)
    ));
    assert_eq!(s.len(), 6);
}

/// Tenants at their own caps fill the store together; a store-wide bound then evicts from the
/// tenant holding the largest share, never from a small one: a few tenants at their caps could
/// otherwise flush everyone's created results (and an honest retry on Stream would then create
/// a second link).
#[test]
fn a_store_bound_evicts_from_the_largest_holder_first() {
    let l = StoreLimits {
        max_bytes: 40_000,
        max_bytes_per_tenant: 16_000,
        ..limits(1000, 1000, 1000)
    };
    let s = IdempotencyStore::new(l);
    created(&s, "honest", "order-1", 500);
    for round in 0..20 {
        for big in ["big-a", "big-b", "big-c"] {
            created(&s, big, &format!("k{round}"), 3_000);
            check(&s);
        }
    }
    assert!(
        matches!(
            s.claim("honest", "order-1", [1; 32], || "r".into())
                .unwrap(),
            Claim::Replay(_)
        ),
        "the small tenant's oldest result survived"
    );
    // By entries too: a store of 12 entries, tenants of at most 5.
    let s = IdempotencyStore::new(limits(12, 5, 5));
    created(&s, "honest", "order-1", 0);
    for round in 0..10 {
        for big in ["big-a", "big-b", "big-c"] {
            cancelled(&s, big, &format!("u{round}"));
            check(&s);
        }
    }
    assert!(matches!(
        s.claim("honest", "order-1", [1; 32], || "r".into())
            .unwrap(),
        Claim::Replay(_)
    ));
}

#[test]
fn entries_expire() {
    let s = IdempotencyStore::with_ttl(StoreLimits::default(), Duration::ZERO);
    created(&s, "t", "k", 0);
    cancelled(&s, "t", "u");
    // Other arguments would conflict with a remembered key: this one was forgotten.
    let t = run(s.claim("t", "k", [2; 32], || "r".into()).unwrap());
    assert_eq!(s.stats().unknown, 0, "unknown outcomes expire too");
    assert_eq!(s.len(), 1);
    t.complete(Outcome::Failed(Error::validation("name", "x")));
}

#[test]
fn the_indexes_stay_exact_under_a_mixed_workload() {
    // Eviction and expiry read the oldest entry off ordered indexes (O(log n)) instead of
    // scanning: this checks after every step that the indexes hold exactly the finished
    // entries, per tenant and store-wide, with the counters and bounds.
    let s = IdempotencyStore::new(StoreLimits {
        max_entries: 60,
        max_bytes: 30_000,
        max_per_tenant: 20,
        max_bytes_per_tenant: 12_000,
        max_unknown_per_tenant: 5,
        max_in_flight_per_tenant: 3,
    });
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut held: Vec<Ticket> = Vec::new();
    for step in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let tenant = format!("t{}", seed % 7);
        let key = format!("k{}", (seed >> 8) % 40);
        match (seed >> 20) % 6 {
            0 | 1 => match s.claim(&tenant, &key, [1; 32], || "r".into()) {
                Ok(Claim::Run(t)) if held.len() < 15 => held.push(t),
                Ok(Claim::Run(t)) => t.complete(Outcome::Created(
                    json!({"pad": "x".repeat((seed >> 30) as usize % 4000)}),
                )),
                Ok(_) => {}
                Err(e) => assert_eq!(e.kind().as_str(), "rate_limited", "step {step}"),
            },
            2 if !held.is_empty() => drop(held.swap_remove((seed as usize) % held.len())),
            3 if !held.is_empty() => held
                .swap_remove((seed as usize) % held.len())
                .complete(Outcome::Created(json!({"pad": "y".repeat(2000)}))),
            4 if !held.is_empty() => held
                .swap_remove((seed as usize) % held.len())
                .complete(Outcome::Failed(Error::validation("name", "x"))),
            _ => {
                s.forget_tenant(&tenant);
            }
        }
        check(&s);
    }
}

#[test]
fn local_data_takes_its_entries_along() {
    let s = store();
    let data = LocalData::new();
    let scope = data.scope(&s, "t");
    assert_ne!(scope, "t");
    assert_eq!(scope, data.scope(&s, "t"), "stable for one instance");
    assert_ne!(scope, LocalData::new().scope(&s, "t"), "another instance");
    created(&s, &scope, "k", 0);
    cancelled(&s, &scope, "u");
    created(&s, "t", "k", 0);
    assert_eq!(s.len(), 3);
    drop(data);
    assert_eq!(
        s.len(),
        1,
        "only the tenant's own entries outside the data remain"
    );
    check(&s);
}
