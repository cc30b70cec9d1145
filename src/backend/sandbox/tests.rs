//! The sandbox's behaviour through its [`Backend`] methods: what a link is charged, the tenant
//! and pool budgets, and pages cut to their byte cap.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use super::calls::SandboxBackend;
use super::store::{
    MAX_LINK_JSON, METADATA_ENTRY_OVERHEAD, SandboxLimits, SandboxPool, heap, stored_size,
};
use crate::backend::Backend;
use crate::backend::request::{LinksQuery, NewItem, NewPaymentLink, StatusUpdate, TargetStatus};
use crate::domain::{
    Cursor, Description, IdFormat, LinkName, Metadata, PageBytes, PageLimit, PaymentLinkId,
    ProductId, Quantity, RedirectUrl, json_len,
};

const COFFEE: &str = "6f1c2a7e-3b4d-4c5e-9f60-7a8b9c0d1e2f";

fn request(metadata: BTreeMap<String, String>) -> NewPaymentLink {
    NewPaymentLink {
        name: LinkName::parse("Order", "name").unwrap(),
        items: vec![NewItem {
            product_id: ProductId::parse(COFFEE, "p", IdFormat::Uuid).unwrap(),
            quantity: Quantity::parse(1, "q").unwrap(),
            coupons: vec![],
        }],
        description: None,
        currency: None,
        coupons: vec![],
        valid_until: None,
        max_number_of_payments: None,
        success_redirect_url: None,
        failure_redirect_url: None,
        organization_consumer_id: None,
        metadata: Metadata::parse(metadata, "metadata", 1).unwrap(),
        reference: String::new(),
        idempotency_key: None,
    }
}

/// The most metadata a create may carry: 49 values of 500 four-byte characters.
fn heavy() -> BTreeMap<String, String> {
    (0..49)
        .map(|i| (format!("key-{i:02}"), "𝄞".repeat(500)))
        .collect()
}

fn limits(max_links: usize, tenant: usize, pool: &Arc<SandboxPool>) -> SandboxLimits {
    SandboxLimits {
        max_links,
        max_tenant_bytes: tenant,
        pool: pool.clone(),
        client: None,
    }
}

fn links_query(cursor: Option<Cursor>, max_bytes: usize) -> LinksQuery {
    LinksQuery {
        limit: PageLimit::parse(Some(10), "limit").unwrap(),
        max_bytes: PageBytes::new(max_bytes),
        cursor,
        status: None,
        created_from: None,
        created_to: None,
    }
}

#[test]
fn a_link_is_charged_at_least_what_its_strings_hold() {
    let stored = SandboxBackend::new(10)
        .build(request(heavy()), Utc::now())
        .unwrap();
    let strings: usize = stored
        .link
        .metadata
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert_eq!(strings, 49 * (6 + 2000));
    let size = stored_size(&stored);
    assert!(size > strings + 49 * 64, "{size}");
    assert!(size < strings + 16 * 1024, "{size}: no wild over-charge");
    // Many tiny values cost their bookkeeping, not their two bytes.
    let tiny = (0..49).map(|i| (format!("{i}"), "x".into())).collect();
    let stored = SandboxBackend::new(10)
        .build(request(tiny), Utc::now())
        .unwrap();
    assert!(stored_size(&stored) > 49 * (2 * 32 + METADATA_ENTRY_OVERHEAD));
}

#[tokio::test]
async fn a_tenant_over_its_budget_is_refused_and_nothing_is_stored() {
    let pool = SandboxPool::new(usize::MAX);
    let sandbox = SandboxBackend::with_limits(limits(1000, 500_000, &pool));
    let mut created = 0;
    let refusal = loop {
        match sandbox.create_payment_link(request(heavy())).await {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(created, 4, "about 108 KB each");
    assert_eq!(refusal.kind().as_str(), "rate_limited");
    assert!(!refusal.retry_safe(), "waiting does not help");
    let message = refusal.to_string();
    assert!(message.contains("trying things out") && message.contains("fresh sandbox"));
    assert_eq!(sandbox.store().links.len(), 4);
    assert_eq!(pool.used(), sandbox.bytes());
    assert!(sandbox.bytes() <= 500_000);
    // Small links still fit in what is left.
    sandbox
        .create_payment_link(request(BTreeMap::new()))
        .await
        .unwrap();
    drop(sandbox);
    assert_eq!(pool.used(), 0, "a dropped tenant gives its bytes back");
}

#[tokio::test]
async fn a_full_pool_refuses_every_tenant_and_removes_nobody() {
    let pool = SandboxPool::new(300_000);
    let a = SandboxBackend::with_limits(limits(1000, 250_000, &pool));
    let b = SandboxBackend::with_limits(limits(1000, 250_000, &pool));
    a.create_payment_link(request(heavy())).await.unwrap();
    a.create_payment_link(request(heavy())).await.unwrap();
    b.create_payment_link(request(heavy())).await.unwrap_err();
    let e = b.create_payment_link(request(heavy())).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "rate_limited");
    assert!(e.retry_safe(), "space comes back as tenants leave");
    assert!(e.to_string().contains("sandbox of this server is full"));
    assert_eq!(a.store().links.len(), 2, "nobody's links removed");
    assert_eq!(b.store().links.len(), 0);
    assert!(pool.used() <= 300_000);
    drop(a);
    b.create_payment_link(request(heavy())).await.unwrap();
    assert_eq!(pool.used(), b.bytes());
}

#[tokio::test]
async fn a_message_is_charged_and_refunded_and_a_refused_one_changes_nothing() {
    let pool = SandboxPool::new(usize::MAX);
    // Room for one link and a short message, not a long one.
    let one = SandboxBackend::new(1);
    one.create_payment_link(request(BTreeMap::new()))
        .await
        .unwrap();
    let sandbox = SandboxBackend::with_limits(limits(1000, one.bytes() + 100, &pool));
    let link = sandbox
        .create_payment_link(request(BTreeMap::new()))
        .await
        .unwrap();
    let id = PaymentLinkId::parse(&link.id, "id", IdFormat::Uuid).unwrap();
    let before = sandbox.bytes();
    let deactivate = |m: &str| StatusUpdate {
        payment_link_id: id.clone(),
        status: TargetStatus::Inactive,
        message: Some(m.to_owned()),
    };
    sandbox
        .update_payment_link_status(deactivate("Sold out"))
        .await
        .unwrap();
    assert_eq!(sandbox.bytes(), before + heap("Sold out".len()));
    let long = Description::parse(&"𝄞".repeat(500), "m").unwrap();
    let e = sandbox
        .update_payment_link_status(deactivate(long.as_str()))
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "rate_limited");
    let l = sandbox.get_payment_link(&id).await.unwrap();
    assert_eq!(l.inactive_message.as_deref(), Some("Sold out"));
    assert_eq!(sandbox.bytes(), before + heap("Sold out".len()));
    sandbox
        .update_payment_link_status(StatusUpdate {
            payment_link_id: id.clone(),
            status: TargetStatus::Active,
            message: None,
        })
        .await
        .unwrap();
    assert_eq!(sandbox.bytes(), before);
    assert_eq!(pool.used(), before);
}

#[tokio::test]
async fn pages_stop_at_their_byte_cap_and_continue_exactly_where_they_stopped() {
    let sandbox =
        SandboxBackend::with_limits(limits(1000, usize::MAX, &SandboxPool::new(usize::MAX)));
    let mut ids = Vec::new();
    for i in 0..25 {
        let metadata = if i % 3 == 0 { heavy() } else { BTreeMap::new() };
        ids.push(
            sandbox
                .create_payment_link(request(metadata))
                .await
                .unwrap()
                .id,
        );
    }
    ids.reverse(); // newest first
    let cap = 150_000;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = sandbox
            .list_payment_links(links_query(cursor, cap))
            .await
            .unwrap();
        assert!(!page.data.is_empty());
        assert!(page.data.len() <= 10);
        let size = json_len(&page);
        assert!(size <= cap || page.data.len() == 1, "{size}");
        seen.extend(page.data.iter().map(|l| l.id.clone()));
        pages += 1;
        match page.next_cursor {
            Some(c) => {
                assert!(page.has_more);
                cursor = Some(Cursor::decode(&c, None).unwrap());
            }
            None => break,
        }
    }
    assert_eq!(seen, ids, "every link once, in order");
    assert!(pages > 3, "the cap, not the limit, made the pages: {pages}");
    // One link larger than the cap is still returned, alone.
    let page = sandbox
        .list_payment_links(links_query(None, 1024))
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    assert!(page.has_more);
}

#[test]
fn the_largest_link_fits_the_stated_bound() {
    let control: String = "\u{1}".repeat(500);
    let metadata = (0..49)
        .map(|i| (format!("{i:02}{}", "𝄞".repeat(38)), control.clone()))
        .collect();
    let url = format!("https://example.com/{}", "\u{1}".repeat(1980));
    let mut r = request(metadata);
    r.name = LinkName::parse(&"𝄞".repeat(160), "name").unwrap();
    r.description = Some(Description::parse(&"𝄞".repeat(500), "d").unwrap());
    r.success_redirect_url = Some(RedirectUrl::parse(&url, "s").unwrap());
    r.failure_redirect_url = Some(RedirectUrl::parse(&url, "f").unwrap());
    let mut stored = SandboxBackend::new(1).build(r, Utc::now()).unwrap();
    stored.link.inactive_message = Some("𝄞".repeat(500));
    let size = json_len(&stored.link);
    assert!(size > 180_000, "the worst case is built: {size}");
    assert!(size <= MAX_LINK_JSON, "{size}");
}

#[tokio::test]
async fn the_tenants_of_one_address_share_its_part_of_the_pool() {
    let pool = SandboxPool::with_client_share(10_000_000, 300_000);
    let of = |client: &str| {
        SandboxBackend::with_limits(SandboxLimits {
            client: Some(client.parse().unwrap()),
            ..limits(1000, 250_000, &pool)
        })
    };
    let a1 = of("10.0.0.1");
    let a2 = of("10.0.0.1");
    let b = of("10.0.0.2");
    a1.create_payment_link(request(heavy())).await.unwrap();
    a1.create_payment_link(request(heavy())).await.unwrap();
    // A second tenant of the same address meets the address's share, not its own budget.
    let e = a2.create_payment_link(request(heavy())).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "rate_limited");
    assert!(!e.retry_safe());
    assert!(e.to_string().contains("from your address"), "{e}");
    // Another address is not affected, and nobody's links were removed.
    b.create_payment_link(request(heavy())).await.unwrap();
    assert_eq!(a1.store().links.len(), 2);
    // A dropped tenant gives its address's share back.
    drop(a1);
    a2.create_payment_link(request(heavy())).await.unwrap();
    assert_eq!(pool.used(), a2.bytes() + b.bytes());
}
