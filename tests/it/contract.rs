//! The contract every backend keeps: the same behaviour tests, written once, run against the
//! embedded sandbox, the Stream mock and the Stripe mock, each through the real binary over
//! stdio. Each test is generated once per backend, so a failure names both:
//! `contract::create_then_get::stripe`.
//!
//! What differs between backends is data, held by the [`Fixture`]: the products to sell and
//! what a unit costs (so that totals are checked exactly), ids that do not exist, how to count
//! the links made and the requests the upstream received, and what a backend lacks (Stripe refuses coupons, expiry dates and
//! creation-time filters by name, and lists links without totals). What only one backend does is
//! tested beside its mock (`stream`, `stripe`, `stdio`).

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::harness::stdio::Server;
use crate::harness::{COFFEE, MUG, UNKNOWN_V4, decimal};
use crate::mocks::stream::{ESPRESSO, GRINDER, MockStream};
use crate::mocks::stripe::{MockStripe, TEAS};

const CREATE: &str = "create_payment_link";
const GET: &str = "get_payment_link";
const LINE_ITEMS: &str = "list_line_items";
const PRODUCTS: &str = "list_products";
const LINKS: &str = "list_payment_links";
const STATUS: &str = "update_payment_link_status";

/// The sandbox's seeded WELCOME10 coupon (the Stream mock takes any coupon id).
const COUPON: &str = "7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a";

/// What the server under test talks to.
enum Upstream {
    Sandbox,
    Stream(MockStream),
    Stripe(MockStripe),
}

/// One product to sell and what one unit of it costs (minor units of the fixture's currency).
#[derive(Clone, Copy)]
struct Sellable {
    id: &'static str,
    unit: i64,
}

/// One backend, as the contract sees it.
struct Fixture {
    /// The backend's name, as results carry it in `backend`.
    name: &'static str,
    server: Server,
    upstream: Upstream,
    /// The currency links are made in (upper-case, as results show it), and its decimals.
    currency: &'static str,
    exponent: u32,
    /// Two one-time products in `currency`; a line item names the id it was sold by.
    sell: [Sellable; 2],
    /// A product `list_products` lists, with its price in `currency`.
    listed: Sellable,
    /// How many products `list_products` lists in all.
    catalog: usize,
    missing_link: &'static str,
    missing_product: &'static str,
    /// The optional arguments this backend refuses by name (`unsupported_by_backend`).
    lacks: &'static [&'static str],
    /// Whether a listed link carries its total (a Stripe list has no line items to sum).
    list_totals: bool,
    /// Whether a create naming a product that does not exist is refused on that item's
    /// `product_id` (Stream's 404 names the product only in its message).
    product_errors_name_the_item: bool,
}

impl Fixture {
    async fn sandbox() -> Self {
        Fixture {
            name: "sandbox",
            server: Server::sandbox().await,
            upstream: Upstream::Sandbox,
            currency: "SAR",
            exponent: 2,
            sell: [
                Sellable {
                    id: COFFEE,
                    unit: 8900,
                },
                Sellable {
                    id: MUG,
                    unit: 3550,
                },
            ],
            listed: Sellable {
                id: COFFEE,
                unit: 8900,
            },
            catalog: 6,
            missing_link: UNKNOWN_V4,
            missing_product: UNKNOWN_V4,
            lacks: &[],
            list_totals: true,
            product_errors_name_the_item: true,
        }
    }

    async fn stream() -> Self {
        let mock = MockStream::start("contract-stream-key").await;
        Fixture {
            name: "stream",
            server: mock.stdio().await,
            upstream: Upstream::Stream(mock),
            currency: "SAR",
            exponent: 2,
            sell: [
                Sellable {
                    id: ESPRESSO,
                    unit: 1250,
                },
                Sellable {
                    id: GRINDER,
                    unit: 34900,
                },
            ],
            listed: Sellable {
                id: ESPRESSO,
                unit: 1250,
            },
            catalog: 3,
            missing_link: "44444444-4444-4444-8444-444444444444",
            missing_product: "44444444-4444-4444-8444-444444444444",
            lacks: &[],
            list_totals: true,
            product_errors_name_the_item: false,
        }
    }

    async fn stripe() -> Self {
        let mock = MockStripe::start("sk_test_51ContractKey").await;
        Fixture {
            name: "stripe",
            server: mock.stdio().await,
            upstream: Upstream::Stripe(mock),
            currency: "USD",
            exponent: 2,
            // Sold by price id, which line items name.
            sell: [
                Sellable {
                    id: "price_espresso_usd",
                    unit: 350,
                },
                Sellable {
                    id: "price_tea03",
                    unit: 300,
                },
            ],
            listed: Sellable {
                id: "prod_espresso",
                unit: 350,
            },
            // Five active products and the teas; the inactive one is not listed.
            catalog: 5 + TEAS,
            missing_link: "plink_missing",
            missing_product: "prod_nope",
            lacks: &[
                "valid_until",
                "failure_redirect_url",
                "coupons",
                "organization_consumer_id",
                "created_from",
                "created_to",
            ],
            list_totals: false,
            product_errors_name_the_item: true,
        }
    }

    /// `amount` minor units as a Money object of the fixture's currency.
    fn money(&self, amount: i64) -> Value {
        json!({"amount_minor": amount, "amount": decimal(amount, self.exponent), "currency": self.currency})
    }

    /// A create of one item per quantity, alternating the two sellable products.
    fn order(&self, name: &str, quantities: &[i64]) -> Value {
        let items: Vec<Value> = quantities
            .iter()
            .enumerate()
            .map(|(i, q)| json!({"product_id": self.sell[i % 2].id, "quantity": q}))
            .collect();
        json!({"name": name, "items": items})
    }

    /// The exact total of [`Fixture::order`].
    fn total(&self, quantities: &[i64]) -> i64 {
        quantities
            .iter()
            .enumerate()
            .map(|(i, q)| self.sell[i % 2].unit * q)
            .sum()
    }

    /// Links made so far: those the mock holds, or the sandbox's (read through the server).
    async fn links_made(&self) -> usize {
        match &self.upstream {
            Upstream::Sandbox => {
                let page = self.server.ok(LINKS, json!({"limit": 100})).await;
                assert_eq!(page["has_more"], false, "fewer than 100 links here");
                page["data"].as_array().unwrap().len()
            }
            Upstream::Stream(mock) => mock.link_count(),
            Upstream::Stripe(mock) => mock.link_count(),
        }
    }

    /// Requests the upstream received so far (`None` on the sandbox: it has no upstream).
    async fn requests(&self) -> Option<usize> {
        match &self.upstream {
            Upstream::Sandbox => None,
            Upstream::Stream(mock) => Some(mock.requests().await.len()),
            Upstream::Stripe(mock) => Some(mock.requests().await.len()),
        }
    }

    async fn create(&self, args: Value) -> Value {
        self.server.ok(CREATE, args).await
    }
}

/// One `#[tokio::test]` per backend for each contract test: `contract::<test>::<backend>`.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sandbox() {
                super::$test(super::Fixture::sandbox().await).await;
            }
            #[tokio::test]
            async fn stream() {
                super::$test(super::Fixture::stream().await).await;
            }
            #[tokio::test]
            async fn stripe() {
                super::$test(super::Fixture::stripe().await).await;
            }
        }
    )*};
}

contract!(
    create_then_get,
    line_items_page_both_ways,
    products_page_through_the_catalog,
    links_are_listed_newest_first,
    lifecycle,
    errors_name_the_field_or_the_tool,
    idempotent_replay_and_conflict,
    what_a_backend_lacks_is_refused_by_name,
);

/// A link made of two products reads back exactly as created, with an exact total.
async fn create_then_get(f: Fixture) {
    let [a, b] = f.sell;
    let link = f
        .create(json!({
            "name": "  Contract order ",
            "description": "Two things",
            "items": [{"product_id": a.id, "quantity": 2}, {"product_id": b.id}],
            "max_number_of_payments": 3,
            "success_redirect_url": "https://shop.example/ok?order=1",
            "metadata": {"order": "42"},
        }))
        .await;
    assert_eq!(link["backend"], f.name);
    assert_eq!(link["livemode"], false);
    assert_eq!(link["status"], "active");
    assert_eq!(link["name"], "Contract order");
    assert_eq!(link["description"], "Two things");
    assert_eq!(link["currency"], f.currency);
    assert_eq!(link["item_count"], 2);
    assert_eq!(link["max_number_of_payments"], 3);
    assert_eq!(
        link["success_redirect_url"],
        "https://shop.example/ok?order=1"
    );
    assert_eq!(
        link["metadata"],
        json!({"order": "42"}),
        "our own keys stay hidden"
    );
    assert_eq!(link["total"], f.money(2 * a.unit + b.unit));
    assert!(link["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        link["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://"))
    );

    let got = f
        .server
        .ok(GET, json!({"payment_link_id": link["id"]}))
        .await;
    assert_eq!(got, link, "a get returns what the create returned");
    assert_eq!(f.links_made().await, 1);
}

/// Twelve line items read five at a time: forwards through `next_cursor`, every item once and
/// in order with exact amounts; backwards with `ending_before`; both cursors at once refused.
async fn line_items_page_both_ways(f: Fixture) {
    let quantities: Vec<i64> = (1..=12).collect();
    let link = f.create(f.order("Twelve lines", &quantities)).await;
    assert_eq!(link["item_count"], 12);
    assert_eq!(link["total"], f.money(f.total(&quantities)));
    let id = link["id"].clone();

    let mut sizes = Vec::new();
    let mut items: Vec<Value> = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let mut args = json!({"payment_link_id": id, "limit": 5});
        if let Some(a) = &after {
            args["starting_after"] = a.clone();
        }
        let page = f.server.ok(LINE_ITEMS, args).await;
        let data = page["data"].as_array().unwrap().clone();
        sizes.push(data.len());
        items.extend(data.iter().cloned());
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null(), "{page}");
            break;
        }
        assert_eq!(page["next_cursor"], data.last().unwrap()["id"]);
        after = Some(page["next_cursor"].clone());
        assert!(sizes.len() < 10, "paging must end");
    }
    assert_eq!(sizes, [5, 5, 2]);
    let ids: HashSet<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 12, "every item once");
    let mut sum = 0;
    for (i, item) in items.iter().enumerate() {
        let sold = f.sell[i % 2];
        let q = quantities[i];
        assert_eq!(item["product_id"], sold.id, "{item}");
        assert_eq!(item["quantity"], q, "{item}");
        assert_eq!(item["kind"], "one_time", "{item}");
        assert_eq!(item["unit_amount"], f.money(sold.unit), "{item}");
        assert_eq!(item["total"], f.money(sold.unit * q), "{item}");
        sum += sold.unit * q;
    }
    assert_eq!(sum, f.total(&quantities), "the lines add up to the total");

    // Backwards from the last item: the five before it.
    let back = f
        .server
        .ok(
            LINE_ITEMS,
            json!({"payment_link_id": id, "limit": 5, "ending_before": items[11]["id"]}),
        )
        .await;
    let qs: Vec<i64> = back["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["quantity"].as_i64().unwrap())
        .collect();
    assert_eq!(qs, [7, 8, 9, 10, 11]);
    assert_eq!(back["has_more"], true);

    f.server
        .expect_error(
            LINE_ITEMS,
            json!({"payment_link_id": id, "starting_after": items[2]["id"], "ending_before": items[8]["id"]}),
            "validation",
            "ending_before",
        )
        .await;
}

/// The catalog read two at a time through the opaque cursor is the catalog read at once; a
/// product shows its price exactly; a cursor the server did not issue is refused on `cursor`.
async fn products_page_through_the_catalog(f: Fixture) {
    let all = f.server.ok(PRODUCTS, json!({"limit": 100})).await;
    assert_eq!(all["has_more"], false);
    let all = all["data"].as_array().unwrap().clone();
    assert_eq!(all.len(), f.catalog, "{all:?}");
    let listed = all
        .iter()
        .find(|p| p["id"] == f.listed.id)
        .unwrap_or_else(|| panic!("{} is listed", f.listed.id));
    assert!(
        listed["prices"]
            .as_array()
            .unwrap()
            .contains(&f.money(f.listed.unit)),
        "{listed}"
    );
    assert_eq!(listed["kind"], "one_time");

    let mut paged: Vec<Value> = Vec::new();
    let mut pages = 0;
    let mut args = json!({"limit": 2});
    loop {
        let page = f.server.ok(PRODUCTS, args).await;
        pages += 1;
        let data = page["data"].as_array().unwrap();
        paged.extend(data.iter().cloned());
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        assert_eq!(data.len(), 2, "a full page before the last");
        args = json!({"cursor": page["next_cursor"]});
        assert!(pages < 50, "paging must end");
    }
    assert_eq!(pages, f.catalog.div_ceil(2));
    assert_eq!(paged, all, "every product once, in catalog order");

    for forged in ["", "page=2", "pg1.bm9wZQ", "not a cursor"] {
        let e = f
            .server
            .expect_error(PRODUCTS, json!({"cursor": forged}), "validation", "cursor")
            .await;
        assert_eq!(e["retry_safe"], false);
    }
}

/// Links are listed newest first, a page at a time, each as a link (its total too, where the
/// backend's list has one).
async fn links_are_listed_newest_first(f: Fixture) {
    let mut made = Vec::new();
    for (name, quantities) in [("first", [1]), ("second", [2]), ("third", [3])] {
        made.push(f.create(f.order(name, &quantities)).await);
    }
    let page = f.server.ok(LINKS, json!({"limit": 2})).await;
    let data = page["data"].as_array().unwrap();
    let names: Vec<&Value> = data.iter().map(|l| &l["name"]).collect();
    assert_eq!(names, [&json!("third"), &json!("second")]);
    assert_eq!(data[0]["id"], made[2]["id"]);
    assert_eq!(data[0]["status"], "active");
    assert_eq!(data[0]["backend"], f.name);
    if f.list_totals {
        assert_eq!(data[0]["total"], made[2]["total"]);
    } else {
        assert!(data[0]["total"].is_null(), "{}", data[0]);
    }
    assert_eq!(page["has_more"], true);
    let next = f
        .server
        .ok(LINKS, json!({"cursor": page["next_cursor"]}))
        .await;
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert_eq!(next["data"][0]["id"], made[0]["id"]);
    assert_eq!(next["has_more"], false);
    assert!(next["next_cursor"].is_null());
}

/// Every listed link, following `next_cursor` (as `cursor`) to the end.
async fn all_pages(f: &Fixture, mut args: Value) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..50 {
        let page = f.server.ok(LINKS, args.clone()).await;
        for l in page["data"].as_array().unwrap() {
            ids.push(l["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                args["cursor"] = json!(c);
                args.as_object_mut().unwrap().remove("limit");
            }
            None => {
                assert_eq!(page["has_more"], false);
                return ids;
            }
        }
    }
    panic!("paging must end");
}

/// The link lifecycle: seven links paged by three, two deactivated (one with a message), filters
/// by status, a repeat that changes nothing, a reactivation; and the arguments it refuses.
async fn lifecycle(f: Fixture) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let link = f.create(f.order(&format!("Link {i}"), &[1])).await;
        ids.push(link["id"].as_str().unwrap().to_owned());
    }
    ids.reverse(); // newest first
    assert_eq!(all_pages(&f, json!({"limit": 3})).await, ids);

    let off = f
        .server
        .ok(
            STATUS,
            json!({"payment_link_id": ids[1], "status": "inactive", "message": "Sold out"}),
        )
        .await;
    assert_eq!(off["status"], "inactive");
    assert_eq!(off["inactive_message"], "Sold out");
    f.server
        .ok(
            STATUS,
            json!({"payment_link_id": ids[4], "status": "inactive"}),
        )
        .await;
    let got = f.server.ok(GET, json!({"payment_link_id": ids[1]})).await;
    assert_eq!(got["status"], "inactive");
    assert_eq!(got["inactive_message"], "Sold out");
    assert_eq!(
        all_pages(&f, json!({"status": "inactive", "limit": 1})).await,
        [ids[1].clone(), ids[4].clone()]
    );
    assert_eq!(all_pages(&f, json!({"status": "active"})).await.len(), 5);
    // Repeating is harmless; reactivating undoes it.
    f.server
        .ok(
            STATUS,
            json!({"payment_link_id": ids[1], "status": "inactive"}),
        )
        .await;
    let on = f
        .server
        .ok(
            STATUS,
            json!({"payment_link_id": ids[1], "status": "active"}),
        )
        .await;
    assert_eq!(on["status"], "active");
    assert_eq!(
        all_pages(&f, json!({"status": "inactive"})).await,
        [ids[4].clone()]
    );

    // What it refuses, by field.
    f.server
        .expect_error(
            STATUS,
            json!({"payment_link_id": ids[0], "status": "active", "message": "x"}),
            "validation",
            "message",
        )
        .await;
    f.server
        .expect_error(
            STATUS,
            json!({"payment_link_id": ids[0], "status": "completed"}),
            "validation",
            "status",
        )
        .await;
    f.server
        .expect_error(LINKS, json!({"status": "paused"}), "validation", "status")
        .await;
    // Checked as arguments first, on every backend (even one that cannot filter by time).
    f.server
        .expect_error(
            LINKS,
            json!({"created_from": "2030-01-01T00:00:00Z", "created_to": "2020-01-01T00:00:00Z"}),
            "validation",
            "created_to",
        )
        .await;
    let e = f
        .server
        .expect_error(
            STATUS,
            json!({"payment_link_id": f.missing_link, "status": "inactive"}),
            "not_found",
            "payment_link_id",
        )
        .await;
    assert_eq!(e["retry_safe"], false);
}

/// Every error is an envelope that says what to fix: a broken argument names its field (and is
/// refused before anything is sent), a missing link or product is `not_found` on the argument
/// that names it, and an unknown tool is a JSON-RPC error.
async fn errors_name_the_field_or_the_tool(f: Fixture) {
    let before = f.requests().await;
    let [a, _] = f.sell;
    for (args, field) in [
        (json!({"name": "", "items": [{"product_id": a.id}]}), "name"),
        (
            json!({"name": "x", "items": [{"product_id": a.id, "quantity": 0}]}),
            "items[0].quantity",
        ),
        (json!({"name": "x", "items": []}), "items"),
        (
            json!({"name": "x", "items": [{"product_id": a.id}], "surprise": 1}),
            "surprise",
        ),
        (
            json!({"name": "x", "items": [{"product_id": a.id}], "metadata": {"paylink_x": "y"}}),
            "metadata.paylink_x",
        ),
    ] {
        let e = f
            .server
            .expect_error(CREATE, args, "validation", field)
            .await;
        assert_eq!(e["retry_safe"], false, "{e}");
    }
    assert_eq!(f.requests().await, before, "refused before any request");

    for tool in [GET, LINE_ITEMS] {
        let e = f
            .server
            .expect_error(
                tool,
                json!({"payment_link_id": f.missing_link}),
                "not_found",
                "payment_link_id",
            )
            .await;
        assert_eq!(e["retry_safe"], false, "{tool}: {e}");
    }
    // A product that does not exist: named by its item's field where the backend can tell which
    // (Stream's answer names the product in its message instead).
    let e = f
        .server
        .err(
            CREATE,
            json!({"name": "x", "items": [{"product_id": a.id}, {"product_id": f.missing_product}]}),
        )
        .await;
    assert_eq!(e["kind"], "not_found", "{e}");
    assert_eq!(e["retry_safe"], false, "{e}");
    if f.product_errors_name_the_item {
        assert_eq!(e["field"], "items[1].product_id", "{e}");
    } else {
        assert!(
            e["message"].as_str().unwrap().contains(f.missing_product),
            "{e}"
        );
    }
    assert_eq!(f.links_made().await, 0, "nothing was created");

    let error = f.server.rpc_error("refund_payment", json!({})).await;
    assert_eq!(error.code.0, -32602, "invalid params: {error:?}");
    assert!(error.message.contains("refund_payment"), "{error:?}");
}

/// The same key with the same arguments is the same link, answered without a second upstream
/// write; the same key with other arguments is refused as a conflict.
async fn idempotent_replay_and_conflict(f: Fixture) {
    let mut order = f.order("Keyed order", &[2, 1]);
    order["idempotency_key"] = json!("order-7 attempt 1");
    let first = f.create(order.clone()).await;
    assert_eq!(first["total"], f.money(f.total(&[2, 1])));
    assert_eq!(f.links_made().await, 1);
    let requests = f.requests().await;

    // The same intent spelled with other whitespace is the same intent.
    let mut respelled = order.clone();
    respelled["name"] = json!("  Keyed order ");
    let replay = f.create(respelled).await;
    assert_eq!(replay, first, "the same link");
    assert_eq!(f.requests().await, requests, "no upstream request at all");

    let mut other = order.clone();
    other["items"][0]["quantity"] = json!(5);
    let e = f.server.err(CREATE, other).await;
    assert_eq!(e["kind"], "idempotency_conflict", "{e}");
    assert_eq!(e["retry_safe"], false);
    assert_eq!(f.links_made().await, 1, "no second link");

    // Another key is another link.
    order["idempotency_key"] = json!("order-8");
    let second = f.create(order).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(f.links_made().await, 2);
}

/// Optional arguments a backend cannot honour are refused by name before anything is sent
/// (never silently dropped); the others are accepted.
async fn what_a_backend_lacks_is_refused_by_name(f: Fixture) {
    let base = f.order("Optional", &[1]);
    let creates: [(&str, Value); 4] = [
        ("valid_until", json!("2099-01-01T00:00:00Z")),
        ("failure_redirect_url", json!("https://shop.example/ko")),
        ("coupons", json!([COUPON])),
        (
            "organization_consumer_id",
            json!("3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b"),
        ),
    ];
    let lists: [(&str, Value); 2] = [
        ("created_from", json!("2020-01-01T00:00:00Z")),
        ("created_to", json!("2099-01-01T00:00:00Z")),
    ];
    let cases = creates
        .iter()
        .map(|(field, value)| {
            (
                CREATE,
                *field,
                crate::harness::with(&base, field, value.clone()),
            )
        })
        .chain(
            lists
                .iter()
                .map(|(field, value)| (LINKS, *field, json!({ *field: value }))),
        );
    for (tool, field, args) in cases {
        if f.lacks.contains(&field) {
            let before = f.requests().await;
            let e = f
                .server
                .expect_error(tool, args, "unsupported_by_backend", field)
                .await;
            assert!(
                e["message"].as_str().unwrap().contains(f.name),
                "the message names the backend: {e}"
            );
            assert_eq!(e["retry_safe"], false);
            assert_eq!(
                f.requests().await,
                before,
                "{field}: refused before any request"
            );
        } else {
            f.server.ok(tool, args).await;
        }
    }
}
