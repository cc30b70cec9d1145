//! The server as an MCP client sees it over stdio: the real binary, spawned as a child process,
//! driven by rmcp's real client (or, for stdout hygiene and start-up failures, by raw pipes).
//!
//! All of these run on the embedded sandbox: no key, no network. Products are found through
//! `list_products`, as a model would, rather than hard-coded, except where a test is about a
//! specific seeded price (the 3-decimal KWD amounts).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::harness::stdio::{RawSession, Server, run_until_exit};
use crate::harness::{SANDBOX_URL_PREFIX, UNKNOWN_V4, decimal, metadata_with_keys, with};

const CREATE: &str = "create_payment_link";
const GET: &str = "get_payment_link";
const LINE_ITEMS: &str = "list_line_items";
const PRODUCTS: &str = "list_products";
const LINKS: &str = "list_payment_links";
const STATUS: &str = "update_payment_link_status";

// ---------------------------------------------------------------------------------------------
// Catalog helpers: what a model would do with list_products.
// ---------------------------------------------------------------------------------------------

/// The whole sandbox catalog, in one page.
async fn catalog(server: &Server) -> Vec<Value> {
    let page = server.ok(PRODUCTS, json!({"limit": 100})).await;
    assert_eq!(
        page["has_more"], false,
        "the catalog fits in one page of 100"
    );
    page["data"].as_array().expect("data is an array").clone()
}

/// The product's price in `currency`, if it has one.
fn price_in<'a>(product: &'a Value, currency: &str) -> Option<&'a Value> {
    product["prices"]
        .as_array()?
        .iter()
        .find(|p| p["currency"] == currency)
}

fn is_one_time(product: &Value) -> bool {
    product["kind"] == "one_time"
}

/// One-time products priced in `currency`, in catalog order.
fn one_time_in<'a>(products: &'a [Value], currency: &str) -> Vec<&'a Value> {
    products
        .iter()
        .filter(|p| is_one_time(p) && price_in(p, currency).is_some())
        .collect()
}

fn id_of(product: &Value) -> &str {
    product["id"].as_str().expect("product id is a string")
}

fn minor(money: &Value) -> i64 {
    money["amount_minor"]
        .as_i64()
        .unwrap_or_else(|| panic!("amount_minor is an integer: {money}"))
}

/// Every line item of a link, in one page.
async fn all_line_items(server: &Server, link_id: &str) -> Vec<Value> {
    let page = server
        .ok(
            LINE_ITEMS,
            json!({"payment_link_id": link_id, "limit": 100}),
        )
        .await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_cursor"], Value::Null);
    page["data"].as_array().expect("data is an array").clone()
}

/// Checks the `required` properties of a tool's `outputSchema` are all in `value`.
fn assert_has_required_outputs(tool: &rmcp::model::Tool, value: &Value) {
    let schema = tool.output_schema.as_ref().expect("outputSchema");
    for name in schema["required"].as_array().expect("required is an array") {
        let name = name.as_str().expect("required names are strings");
        assert!(
            value.get(name).is_some(),
            "{}: output lacks required `{name}`: {value}",
            tool.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. tools/list
// ---------------------------------------------------------------------------------------------

/// A client listing the tools sees exactly six, each with an input schema that states the
/// limits the server enforces, an output schema, and honest annotations.
#[tokio::test]
async fn tools_list_offers_exactly_six_tools_with_their_limits_output_schemas_and_annotations() {
    let server = Server::sandbox().await;
    let tools = server.tools().await;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [CREATE, GET, LINE_ITEMS, PRODUCTS, LINKS, STATUS],
        "exactly these tools, in this order"
    );
    // Inspect the wire form, as any client sees it.
    let by_name: BTreeMap<&str, Value> = tools
        .iter()
        .map(|t| (t.name.as_ref(), serde_json::to_value(t).expect("tool JSON")))
        .collect();

    let create = &by_name[CREATE]["inputSchema"];
    assert_eq!(create["type"], "object");
    assert_eq!(create["required"], json!(["name", "items"]));
    assert_eq!(
        create["additionalProperties"], false,
        "unknown fields refused"
    );
    assert_eq!(create["properties"]["items"]["minItems"], 1);
    assert_eq!(create["properties"]["items"]["maxItems"], 20);
    assert_eq!(create["properties"]["name"]["minLength"], 1);
    assert_eq!(create["properties"]["name"]["maxLength"], 160);
    // The item schema is inlined (no $ref: not every model's tool dialect follows one).
    let item = &create["properties"]["items"]["items"];
    assert_eq!(item["required"], json!(["product_id"]));
    assert_eq!(item["additionalProperties"], false);
    assert_eq!(item["properties"]["quantity"]["type"], "integer");
    assert_eq!(item["properties"]["quantity"]["minimum"], 1);
    assert_eq!(item["properties"]["quantity"]["default"], 1);
    for url in ["success_redirect_url", "failure_redirect_url"] {
        assert_eq!(create["properties"][url]["maxLength"], 2000, "{url}");
    }
    assert_eq!(create["properties"]["max_number_of_payments"]["minimum"], 1);

    for read in [GET, LINE_ITEMS, STATUS] {
        let schema = &by_name[read]["inputSchema"];
        assert_eq!(schema["required"][0], json!("payment_link_id"), "{read}");
        assert_eq!(schema["additionalProperties"], false, "{read}");
    }
    for list in [LINE_ITEMS, PRODUCTS, LINKS] {
        let limit = &by_name[list]["inputSchema"]["properties"]["limit"];
        assert_eq!(limit["minimum"], 1, "{list}.limit");
        assert_eq!(limit["maximum"], 100, "{list}.limit");
    }
    let products = &by_name[PRODUCTS]["inputSchema"];
    assert!(
        products.get("required").is_none_or(|r| r == &json!([])),
        "list_products needs no argument: {products}"
    );

    for (name, tool) in &by_name {
        let output = &tool["outputSchema"];
        assert_eq!(
            output["type"], "object",
            "{name} has an object outputSchema"
        );
        assert!(
            output["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty()),
            "{name}'s outputSchema describes its properties"
        );
        assert!(
            tool["description"].as_str().is_some_and(|d| d.len() > 40),
            "{name} has a real description"
        );
    }
    for paged in [LINE_ITEMS, PRODUCTS, LINKS] {
        let required = &by_name[paged]["outputSchema"]["required"];
        for field in ["data", "has_more", "next_cursor"] {
            assert!(
                required.as_array().unwrap().contains(&json!(field)),
                "{paged} always answers `{field}`"
            );
        }
    }

    let create_hints = &by_name[CREATE]["annotations"];
    assert_eq!(create_hints["readOnlyHint"], false);
    assert_eq!(create_hints["destructiveHint"], false);
    assert_eq!(create_hints["idempotentHint"], false);
    assert_eq!(create_hints["openWorldHint"], true);
    for read in [GET, LINE_ITEMS, PRODUCTS, LINKS] {
        let hints = &by_name[read]["annotations"];
        assert_eq!(hints["readOnlyHint"], true, "{read} is read-only");
        assert_ne!(hints["destructiveHint"], true, "{read} destroys nothing");
    }
    let status_hints = &by_name[STATUS]["annotations"];
    assert_eq!(status_hints["readOnlyHint"], false);
    assert_eq!(status_hints["destructiveHint"], false, "it can be undone");
    assert_eq!(status_hints["idempotentHint"], true);
    assert_eq!(
        by_name[STATUS]["inputSchema"]["required"],
        json!(["payment_link_id", "status"])
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. initialize
// ---------------------------------------------------------------------------------------------

/// At `initialize` the server introduces itself by name and version, offers tools, and tells
/// the model it is talking to a sandbox.
#[tokio::test]
async fn initialize_names_the_server_its_version_and_the_sandbox() {
    let server = Server::sandbox().await;
    let info = server.info();
    let implementation = info.server_info.as_ref().expect("serverInfo");
    assert_eq!(implementation.name, "paylink-mcp");
    assert_eq!(implementation.version, env!("CARGO_PKG_VERSION"));
    assert!(
        info.capabilities.tools.is_some(),
        "the tools capability is advertised"
    );
    let instructions = info.instructions.as_deref().expect("instructions");
    assert!(
        instructions.to_lowercase().contains("sandbox"),
        "instructions mention the sandbox: {instructions}"
    );
    assert!(
        instructions.contains("nothing is charged"),
        "instructions say no money moves: {instructions}"
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Round trip
// ---------------------------------------------------------------------------------------------

/// A model finds products, sells three of them on one link, reads the link back and checks its
/// line items: everything it sent comes back, and the totals are exact.
#[tokio::test]
async fn a_link_built_from_the_catalog_reads_back_identically_with_exact_totals() {
    let server = Server::sandbox().await;
    let tools = server.tools().await;
    let tool = |name: &str| tools.iter().find(|t| t.name == name).unwrap().clone();
    let products = catalog(&server).await;
    let sellable = one_time_in(&products, "SAR");
    assert!(
        sellable.len() >= 3,
        "the sandbox sells 3+ one-time SAR products"
    );
    let chosen = [
        (sellable[0], Some(2)),
        (sellable[1], None),
        (sellable[2], Some(3)),
    ];
    let items: Vec<Value> = chosen
        .iter()
        .map(|(p, q)| match q {
            Some(q) => json!({"product_id": id_of(p), "quantity": q}),
            None => json!({"product_id": id_of(p)}), // quantity defaults to 1
        })
        .collect();
    let expected_total: i64 = chosen
        .iter()
        .map(|(p, q)| minor(price_in(p, "SAR").unwrap()) * q.unwrap_or(1))
        .sum();

    let created = server
        .ok(
            CREATE,
            json!({
                "name": "Order #1042",
                "description": "Coffee for the office",
                "items": items,
                "currency": "sar",
                "valid_until": "2099-01-31T23:59:00+03:00",
                "max_number_of_payments": 5,
                "success_redirect_url": "https://shop.example/thanks?order=1042",
                "metadata": {"order": "1042"},
            }),
        )
        .await;
    assert_has_required_outputs(&tool(CREATE), &created);
    let id = created["id"].as_str().expect("id");
    assert_eq!(created["url"], format!("{SANDBOX_URL_PREFIX}{id}"));
    assert_eq!(created["status"], "active");
    assert_eq!(created["livemode"], false);
    assert_eq!(created["backend"], "sandbox");
    assert_eq!(created["name"], "Order #1042");
    assert_eq!(created["description"], "Coffee for the office");
    assert_eq!(created["currency"], "SAR", "currency is shown upper-case");
    assert_eq!(created["item_count"], 3);
    assert_eq!(created["max_number_of_payments"], 5);
    assert_eq!(
        created["valid_until"], "2099-01-31T20:59:00Z",
        "normalized to UTC"
    );
    assert_eq!(
        created["success_redirect_url"],
        "https://shop.example/thanks?order=1042"
    );
    assert_eq!(created["metadata"], json!({"order": "1042"}));
    assert_eq!(
        created["total"],
        json!({"amount_minor": expected_total, "amount": decimal(expected_total, 2), "currency": "SAR"})
    );
    assert_eq!(created["original_total"], created["total"], "no discount");
    assert_eq!(created["amount_collected"]["amount_minor"], 0);

    let fetched = server.ok(GET, json!({"payment_link_id": id})).await;
    assert_has_required_outputs(&tool(GET), &fetched);
    assert_eq!(
        fetched, created,
        "get_payment_link returns the link as created"
    );

    let lines = all_line_items(&server, id).await;
    assert_eq!(lines.len(), 3);
    let mut sum = 0;
    for (line, (product, quantity)) in lines.iter().zip(&chosen) {
        let quantity = quantity.unwrap_or(1);
        assert_eq!(line["product_id"], product["id"]);
        assert_eq!(line["product_name"], product["name"]);
        assert_eq!(line["quantity"], quantity);
        assert_eq!(line["kind"], "one_time");
        assert_eq!(&line["unit_amount"], price_in(product, "SAR").unwrap());
        let line_total = minor(&line["unit_amount"]) * quantity;
        assert_eq!(
            line["total"],
            json!({"amount_minor": line_total, "amount": decimal(line_total, 2), "currency": "SAR"})
        );
        sum += line_total;
    }
    assert_eq!(sum, expected_total);
    assert_eq!(minor(&created["total"]), sum, "link total = sum of lines");
    let page = server.ok(LINE_ITEMS, json!({"payment_link_id": id})).await;
    assert_has_required_outputs(&tool(LINE_ITEMS), &page);
    server.shutdown().await;
}

/// The id of a seeded coupon, as a model would find it: in the instructions, which list each
/// coupon as `CODE (N% off, id <uuid>)`.
fn coupon_id(instructions: &str, code: &str) -> String {
    let start = instructions
        .find(&format!("{code} ("))
        .unwrap_or_else(|| panic!("instructions name the coupon {code}: {instructions}"));
    let after = &instructions[start..];
    let id_at = after.find("id ").expect("the coupon's id follows") + 3;
    after[id_at..id_at + 36].to_owned()
}

/// Coupons from the instructions discount exactly: an item coupon lowers its line, a link coupon
/// lowers the link's total, and `original_total` keeps the price before discounts.
#[tokio::test]
async fn seeded_coupons_discount_the_line_and_the_link_exactly() {
    let server = Server::sandbox().await;
    let instructions = server.info().instructions.clone().expect("instructions");
    let welcome10 = coupon_id(&instructions, "WELCOME10");
    let vip25 = coupon_id(&instructions, "VIP25");
    let products = catalog(&server).await;
    let sellable = one_time_in(&products, "SAR");
    let (a, b) = (sellable[0], sellable[1]);
    let (price_a, price_b) = (
        minor(price_in(a, "SAR").unwrap()),
        minor(price_in(b, "SAR").unwrap()),
    );

    let link = server
        .ok(
            CREATE,
            json!({
                "name": "Discounted",
                "items": [
                    {"product_id": id_of(a), "quantity": 2, "coupons": [welcome10]},
                    {"product_id": id_of(b)},
                ],
                "coupons": [vip25],
            }),
        )
        .await;
    // The discount is rounded down, so the payer never pays less than the exact amount.
    let less = |amount: i64, percent: i64| amount - amount * percent / 100;
    let line_a = less(2 * price_a, 10);
    let items_total = line_a + price_b;
    assert_eq!(minor(&link["original_total"]), 2 * price_a + price_b);
    assert_eq!(minor(&link["total"]), less(items_total, 25));
    assert_eq!(link["total"]["amount"], decimal(less(items_total, 25), 2));

    let lines = all_line_items(&server, link["id"].as_str().unwrap()).await;
    assert_eq!(minor(&lines[0]["total"]), line_a, "the item coupon applies");
    assert_eq!(
        minor(&lines[0]["unit_amount"]),
        price_a,
        "unit price unchanged"
    );
    assert_eq!(minor(&lines[1]["total"]), price_b, "no coupon on this line");
    server.shutdown().await;
}

/// The sandbox holds a bounded number of links per process (`PAYLINK_SANDBOX_MAX_LINKS`);
/// past it, creating is refused as `rate_limited` while existing links stay readable.
#[tokio::test]
async fn the_sandbox_refuses_links_beyond_its_cap_and_keeps_the_others() {
    let server = Server::start(&[], &[("PAYLINK_SANDBOX_MAX_LINKS", "2")]).await;
    let products = catalog(&server).await;
    let args = json!({"name": "Capped", "items": [{"product_id": id_of(one_time_in(&products, "SAR")[0])}]});
    let first = server.ok(CREATE, args.clone()).await;
    server.ok(CREATE, args.clone()).await;
    let body = server.err(CREATE, args).await;
    assert_eq!(body["kind"], "rate_limited", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 2 links"),
        "the message gives the cap: {body}"
    );
    let fetched = server
        .ok(GET, json!({"payment_link_id": first["id"]}))
        .await;
    assert_eq!(fetched, first);
    server.shutdown().await;
}

/// The sandbox filters links by creation time: everything made in the last minute is after a
/// minute ago, and nothing is before it. (Listing and status filters on every backend are
/// `contract::lifecycle`.)
#[tokio::test]
async fn the_sandbox_filters_links_by_creation_time() {
    let server = Server::sandbox().await;
    let products = catalog(&server).await;
    let product = id_of(one_time_in(&products, "SAR")[0]).to_owned();
    for i in 0..3 {
        server
            .ok(
                CREATE,
                json!({"name": format!("Link {i}"), "items": [{"product_id": product}]}),
            )
            .await;
    }
    let minute_ago = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let recent = server
        .ok(LINKS, json!({"created_from": minute_ago, "limit": 100}))
        .await;
    assert_eq!(recent["data"].as_array().unwrap().len(), 3, "{recent}");
    let older = server
        .ok(LINKS, json!({"created_to": minute_ago, "limit": 100}))
        .await;
    assert_eq!(older["data"], json!([]), "{older}");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Line-item pagination
// ---------------------------------------------------------------------------------------------

/// A 20-item link read 7 at a time: following `next_cursor` as `starting_after` visits every
/// item exactly once, in order; `ending_before` walks back the same way.
#[tokio::test]
async fn line_items_page_forwards_and_backwards_without_gaps_or_repeats() {
    let server = Server::sandbox().await;
    let products = catalog(&server).await;
    let sellable = one_time_in(&products, "SAR");
    let sent: Vec<(String, i64)> = (0..20)
        .map(|i| (id_of(sellable[i % sellable.len()]).to_owned(), i as i64 + 1))
        .collect();
    let items: Vec<Value> = sent
        .iter()
        .map(|(p, q)| json!({"product_id": p, "quantity": q}))
        .collect();
    let link = server
        .ok(CREATE, json!({"name": "Twenty lines", "items": items}))
        .await;
    let link_id = link["id"].as_str().unwrap().to_owned();
    assert_eq!(link["item_count"], 20);

    // Forwards.
    let mut forward: Vec<Value> = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({"payment_link_id": link_id, "limit": 7});
        if let Some(c) = &cursor {
            args = with(&args, "starting_after", json!(c));
        }
        let page = server.ok(LINE_ITEMS, args).await;
        let data = page["data"].as_array().unwrap().clone();
        sizes.push(data.len());
        forward.extend(data.iter().cloned());
        if page["has_more"] == false {
            assert_eq!(
                page["next_cursor"],
                Value::Null,
                "the last page has no cursor"
            );
            break;
        }
        assert_eq!(
            page["next_cursor"],
            data.last().unwrap()["id"],
            "next_cursor is the last item's id"
        );
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        assert!(sizes.len() < 10, "paging must end");
    }
    assert_eq!(sizes, [7, 7, 6]);
    let ids: Vec<&str> = forward.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        20,
        "every item exactly once"
    );
    let seen: Vec<(String, i64)> = forward
        .iter()
        .map(|i| {
            (
                i["product_id"].as_str().unwrap().to_owned(),
                i["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, sent, "items come back in the order they were sent");
    let total: i64 = forward.iter().map(|i| minor(&i["total"])).sum();
    assert_eq!(total, minor(&link["total"]));

    // Backwards, from the last item.
    let mut backward_pages: Vec<Vec<Value>> = Vec::new();
    let mut before = ids[19].to_owned();
    loop {
        let page = server
            .ok(
                LINE_ITEMS,
                json!({"payment_link_id": link_id, "limit": 7, "ending_before": before}),
            )
            .await;
        let data = page["data"].as_array().unwrap().clone();
        let more = page["has_more"] == true;
        if let Some(first) = data.first() {
            before = first["id"].as_str().unwrap().to_owned();
        }
        backward_pages.push(data);
        if !more {
            break;
        }
        assert!(backward_pages.len() < 10, "paging must end");
    }
    let sizes: Vec<usize> = backward_pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [7, 7, 5]);
    let back_ids: Vec<String> = backward_pages
        .iter()
        .rev()
        .flatten()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        back_ids,
        ids[..19],
        "walking back visits items 0..19 once each"
    );

    // A backward page's next_cursor continues forwards, right after that page.
    let middle = server
        .ok(
            LINE_ITEMS,
            json!({"payment_link_id": link_id, "limit": 7, "ending_before": ids[12]}),
        )
        .await;
    let after_middle = server
        .ok(
            LINE_ITEMS,
            json!({"payment_link_id": link_id, "limit": 7, "starting_after": middle["next_cursor"]}),
        )
        .await;
    assert_eq!(after_middle["data"][0]["id"], ids[12]);

    // Cursors that do not fit are refused on the argument that carries them.
    server
        .expect_error(
            LINE_ITEMS,
            json!({"payment_link_id": link_id, "starting_after": ids[3], "ending_before": ids[9]}),
            "validation",
            "ending_before",
        )
        .await;
    server
        .expect_error(
            LINE_ITEMS,
            json!({"payment_link_id": link_id, "starting_after": UNKNOWN_V4}),
            "validation",
            "starting_after",
        )
        .await;
    server
        .expect_error(
            LINE_ITEMS,
            json!({"payment_link_id": link_id, "ending_before": "not/an id"}),
            "validation",
            "ending_before",
        )
        .await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Three-decimal money, product pagination
// ---------------------------------------------------------------------------------------------

/// A link in Kuwaiti dinars shows every amount with three decimals, exactly: 3 mugs at 2.950 KWD
/// are 8.850 KWD, never 8.85 or 8.849999.
#[tokio::test]
async fn a_kwd_link_shows_three_decimal_money_exactly() {
    let server = Server::sandbox().await;
    let products = catalog(&server).await;
    let kwd = one_time_in(&products, "KWD");
    assert!(kwd.len() >= 2, "the sandbox sells 2+ products in KWD");
    for p in &kwd {
        let price = price_in(p, "KWD").unwrap();
        assert_eq!(price["amount"], decimal(minor(price), 3), "{price}");
    }
    let mug = kwd
        .iter()
        .find(|p| price_in(p, "KWD").unwrap()["amount"] == "2.950")
        .expect("the seeded mug costs 2.950 KWD");
    let other = kwd.iter().find(|p| p["id"] != mug["id"]).unwrap();
    let link = server
        .ok(
            CREATE,
            json!({
                "name": "Kuwait order",
                "currency": "KWD",
                "items": [
                    {"product_id": id_of(mug), "quantity": 3},
                    {"product_id": id_of(other), "quantity": 2},
                ],
            }),
        )
        .await;
    assert_eq!(link["currency"], "KWD");
    let lines = all_line_items(&server, link["id"].as_str().unwrap()).await;
    assert_eq!(
        lines[0]["total"],
        json!({"amount_minor": 8850, "amount": "8.850", "currency": "KWD"})
    );
    assert_eq!(
        lines[0]["unit_amount"],
        json!({"amount_minor": 2950, "amount": "2.950", "currency": "KWD"})
    );
    let other_line = minor(price_in(other, "KWD").unwrap()) * 2;
    assert_eq!(
        lines[1]["total"],
        json!({"amount_minor": other_line, "amount": decimal(other_line, 3), "currency": "KWD"})
    );
    let total = 8850 + other_line;
    assert_eq!(
        link["total"],
        json!({"amount_minor": total, "amount": decimal(total, 3), "currency": "KWD"})
    );
    let fetched = server.ok(GET, json!({"payment_link_id": link["id"]})).await;
    assert_eq!(fetched["total"], link["total"]);
    server.shutdown().await;
}

/// Reading the catalog two products at a time, passing `next_cursor` back as `cursor`, yields
/// the whole catalog once, in order; a cursor the server did not issue is refused on `cursor`.
#[tokio::test]
async fn products_page_through_an_opaque_cursor_and_forged_cursors_are_refused() {
    let server = Server::sandbox().await;
    let all: Vec<Value> = catalog(&server).await;
    assert!(all.len() >= 5, "enough products for three pages of 2");

    let mut paged: Vec<Value> = Vec::new();
    let mut pages = 0;
    let mut args = json!({"limit": 2});
    let mut first_cursor = None;
    loop {
        let page = server.ok(PRODUCTS, args.clone()).await;
        pages += 1;
        let data = page["data"].as_array().unwrap();
        paged.extend(data.iter().cloned());
        if page["has_more"] == false {
            assert_eq!(page["next_cursor"], Value::Null);
            assert!(!data.is_empty() && data.len() <= 2);
            break;
        }
        assert_eq!(data.len(), 2, "a full page before the last");
        let cursor = page["next_cursor"]
            .as_str()
            .expect("a cursor while has_more");
        first_cursor.get_or_insert_with(|| cursor.to_owned());
        // The cursor remembers its page size; repeating the same limit is allowed too.
        args = if pages % 2 == 0 {
            json!({"cursor": cursor})
        } else {
            json!({"cursor": cursor, "limit": 2})
        };
        assert!(pages < 50, "paging must end");
    }
    assert_eq!(pages, all.len().div_ceil(2));
    assert_eq!(paged, all, "every product once, in catalog order");

    let cursor = first_cursor.unwrap();
    server
        .expect_error(
            PRODUCTS,
            json!({"cursor": cursor, "limit": 3}),
            "validation",
            "limit",
        )
        .await;
    let mut tampered = cursor.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for forged in [
        "",
        "2",
        "page=2",
        "pg1.bm9wZQ",
        "pg1.OTk5OTk5OTk5OTk5LjI",
        &tampered,
    ] {
        let body = server
            .expect_error(PRODUCTS, json!({"cursor": forged}), "validation", "cursor")
            .await;
        assert_eq!(body["retry_safe"], false, "{forged}");
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Validation, one rule at a time
// ---------------------------------------------------------------------------------------------

/// One broken call: what is wrong, the arguments, and the field the error must name.
struct Case {
    what: &'static str,
    args: Value,
    field: String,
}

fn case(what: &'static str, args: Value, field: impl Into<String>) -> Case {
    Case {
        what,
        args,
        field: field.into(),
    }
}

/// Runs each case against `tool`; each must fail with a `validation` error on exactly its field
/// and not be retry-safe. Reports every mismatch at once.
async fn expect_validation_cases(server: &Server, tool: &str, cases: Vec<Case>) {
    let mut mismatches = Vec::new();
    for Case { what, args, field } in cases {
        let body = server.err(tool, args).await;
        if body["kind"] != "validation" || body["field"] != field.as_str() {
            mismatches.push(format!(
                "{what}: expected validation on `{field}`, got {body}"
            ));
        }
        if body["retry_safe"] != false {
            mismatches.push(format!(
                "{what}: a validation error is not retry-safe: {body}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{tool}:\n{}", mismatches.join("\n"));
}

/// Each create argument rule, broken on its own, is a `validation` error naming exactly the
/// argument to fix.
#[tokio::test]
async fn each_create_argument_rule_fails_as_validation_on_its_own_field() {
    let server = Server::sandbox().await;
    let products = catalog(&server).await;
    let product = id_of(one_time_in(&products, "SAR")[0]).to_owned();
    let item = json!({"product_id": product, "quantity": 1});
    let base = json!({"name": "Valid link", "items": [item]});
    // The control: the base arguments are fine, so each failure below is due to its one change.
    server.ok(CREATE, base.clone()).await;

    let set = |key: &str, value: Value| with(&base, key, value);
    let set_item = |key: &str, value: Value| set("items", json!([with(&item, key, value)]));
    let prefix = "https://shop.example/";
    let url_of_len = |n: usize| format!("{prefix}{}", "a".repeat(n - prefix.len()));
    assert_eq!(url_of_len(2001).len(), 2001);
    let v1_uuid = "3f2b8c1e-9a4d-1e5f-8b6a-1c2d3e4f5a6b";
    let cases = vec![
        case("empty name", set("name", json!("")), "name"),
        case("blank name", set("name", json!("   ")), "name"),
        case("161-char name", set("name", json!("n".repeat(161))), "name"),
        case("no items", set("items", json!([])), "items"),
        case("21 items", set("items", json!(vec![&item; 21])), "items"),
        case(
            "quantity 0",
            set_item("quantity", json!(0)),
            "items[0].quantity",
        ),
        case(
            "quantity -2",
            set_item("quantity", json!(-2)),
            "items[0].quantity",
        ),
        case(
            "quantity 1000001",
            set_item("quantity", json!(1_000_001)),
            "items[0].quantity",
        ),
        case(
            "non-UUID product",
            set_item("product_id", json!("beans")),
            "items[0].product_id",
        ),
        case(
            "UUID v1 product",
            set_item("product_id", json!(v1_uuid)),
            "items[0].product_id",
        ),
        case(
            "bad product on the second item",
            set("items", json!([item, {"product_id": "x"}])),
            "items[1].product_id",
        ),
        case(
            "unknown currency",
            set("currency", json!("XYZ")),
            "currency",
        ),
        case(
            "currency not on Stream",
            set("currency", json!("JPY")),
            "currency",
        ),
        case(
            "past valid_until",
            set("valid_until", json!("2001-01-01T00:00:00Z")),
            "valid_until",
        ),
        case(
            "malformed valid_until",
            set("valid_until", json!("next tuesday")),
            "valid_until",
        ),
        case(
            "date-only valid_until",
            set("valid_until", json!("2099-01-31")),
            "valid_until",
        ),
        case(
            "max_number_of_payments 0",
            set("max_number_of_payments", json!(0)),
            "max_number_of_payments",
        ),
        case(
            "ftp redirect",
            set("success_redirect_url", json!("ftp://shop.example/done")),
            "success_redirect_url",
        ),
        case(
            "relative redirect",
            set("failure_redirect_url", json!("/payment-failed")),
            "failure_redirect_url",
        ),
        case(
            "javascript redirect",
            set("success_redirect_url", json!("javascript:alert(1)")),
            "success_redirect_url",
        ),
        case(
            "2001-char redirect",
            set("success_redirect_url", json!(url_of_len(2001))),
            "success_redirect_url",
        ),
        case(
            "501-char description",
            set("description", json!("d".repeat(501))),
            "description",
        ),
        case(
            "coupon code, not id",
            set("coupons", json!(["WELCOME10"])),
            "coupons[0]",
        ),
        case(
            "non-UUID item coupon",
            set_item("coupons", json!(["10off"])),
            "items[0].coupons[0]",
        ),
        case(
            "non-UUID customer",
            set("organization_consumer_id", json!("bob")),
            "organization_consumer_id",
        ),
        case(
            "empty idempotency key",
            set("idempotency_key", json!("")),
            "idempotency_key",
        ),
    ];
    expect_validation_cases(&server, CREATE, cases).await;

    // The redirect limit is inclusive: exactly 2000 characters is fine.
    let link = server
        .ok(CREATE, set("success_redirect_url", json!(url_of_len(2000))))
        .await;
    assert_eq!(link["success_redirect_url"], url_of_len(2000));
    server.shutdown().await;
}

/// The read tools check their arguments too, naming the field.
#[tokio::test]
async fn read_tool_arguments_fail_as_validation_on_their_field() {
    let server = Server::sandbox().await;
    let get_cases = vec![
        case(
            "not a UUID",
            json!({"payment_link_id": "link-1"}),
            "payment_link_id",
        ),
        case(
            "a path",
            json!({"payment_link_id": "../admin"}),
            "payment_link_id",
        ),
        case("missing id", json!({}), "payment_link_id"),
    ];
    expect_validation_cases(&server, GET, get_cases).await;
    let line_item_cases = vec![
        case(
            "limit 0",
            json!({"payment_link_id": UNKNOWN_V4, "limit": 0}),
            "limit",
        ),
        case(
            "limit 101",
            json!({"payment_link_id": UNKNOWN_V4, "limit": 101}),
            "limit",
        ),
        case(
            "not a UUID",
            json!({"payment_link_id": "x y"}),
            "payment_link_id",
        ),
    ];
    expect_validation_cases(&server, LINE_ITEMS, line_item_cases).await;
    let product_cases = vec![
        case("limit 0", json!({"limit": 0}), "limit"),
        case("limit 101", json!({"limit": 101}), "limit"),
    ];
    expect_validation_cases(&server, PRODUCTS, product_cases).await;
    server.shutdown().await;
}

/// Metadata allows 50 keys in all, and the server keeps one for itself on the sandbox (as on
/// Stream): 49 caller keys are fine, 50 are one too many. Keys and values have length limits,
/// and `paylink_` keys are reserved.
#[tokio::test]
async fn metadata_limits_count_the_key_the_server_reserves() {
    let server = Server::sandbox().await;
    let products = catalog(&server).await;
    let base = json!({
        "name": "Metadata",
        "items": [{"product_id": id_of(one_time_in(&products, "SAR")[0])}],
    });

    let at_limit = metadata_with_keys(49);
    let link = server
        .ok(CREATE, with(&base, "metadata", at_limit.clone()))
        .await;
    assert_eq!(link["metadata"], at_limit, "49 keys are kept as sent");

    let longest_key = "k".repeat(40);
    let longest_value = "v".repeat(500);
    let link = server
        .ok(
            CREATE,
            with(&base, "metadata", json!({&longest_key: &longest_value})),
        )
        .await;
    assert_eq!(link["metadata"][&longest_key], longest_value);

    for n in [50, 51] {
        let body = server
            .expect_error(
                CREATE,
                with(&base, "metadata", metadata_with_keys(n)),
                "validation",
                "metadata",
            )
            .await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("at most 49 keys"),
            "{n} keys: the message gives the real limit: {body}"
        );
    }

    let set = |metadata: Value| with(&base, "metadata", metadata);
    let long_key = "k".repeat(41);
    // The field names the key exactly as sent, so the caller can find it.
    let long_key_field = format!("metadata.{long_key}");
    let cases = vec![
        case("41-char key", set(json!({&long_key: "v"})), long_key_field),
        case(
            "501-char value",
            set(json!({"note": "v".repeat(501)})),
            "metadata.note",
        ),
        case(
            "reserved prefix",
            set(json!({"paylink_name": "mine"})),
            "metadata.paylink_name",
        ),
        case(
            "bracket in a key",
            set(json!({"a[b]": "v"})),
            "metadata.a[b]",
        ),
        case("empty key", set(json!({"": "v"})), "metadata"),
    ];
    expect_validation_cases(&server, CREATE, cases).await;
    server.shutdown().await;
}

/// What only the catalog can tell: a link cannot mix one-time and recurring products, nor
/// recurring products of different intervals; every product needs a price in the link's
/// currency; a product or coupon that does not exist is `not_found` on its field.
#[tokio::test]
async fn catalog_rules_are_enforced_on_create() {
    let server = Server::sandbox().await;
    let products = catalog(&server).await;
    let one_time = one_time_in(&products, "SAR")[0];
    let recurring: Vec<&Value> = products
        .iter()
        .filter(|p| p["kind"] == "recurring" && price_in(p, "SAR").is_some())
        .collect();
    let monthly = recurring.iter().find(|p| p["interval"] == "month").unwrap();
    let yearly = recurring.iter().find(|p| p["interval"] == "year").unwrap();

    server
        .expect_error(
            CREATE,
            json!({"name": "Mixed", "items": [
                {"product_id": id_of(one_time)},
                {"product_id": id_of(monthly)},
            ]}),
            "validation",
            "items",
        )
        .await;
    server
        .expect_error(
            CREATE,
            json!({"name": "Two intervals", "items": [
                {"product_id": id_of(monthly)},
                {"product_id": id_of(yearly)},
            ]}),
            "validation",
            "items",
        )
        .await;
    // A recurring link on its own is fine, and says its interval.
    let subscription = server
        .ok(
            CREATE,
            json!({"name": "Club", "items": [{"product_id": id_of(monthly)}]}),
        )
        .await;
    assert_eq!(subscription["recurring_interval"], "month");

    // A one-time product with a USD price, then one without.
    let priced = one_time_in(&products, "USD")[0];
    let unpriced = products
        .iter()
        .find(|p| is_one_time(p) && price_in(p, "USD").is_none())
        .expect("a product not sold in USD");
    let body = server
        .expect_error(
            CREATE,
            json!({"name": "Dollars", "currency": "USD", "items": [
                {"product_id": id_of(priced)},
                {"product_id": id_of(unpriced)},
            ]}),
            "validation",
            "items[1].product_id",
        )
        .await;
    assert!(
        body["message"].as_str().unwrap().contains("USD"),
        "the message names the currency: {body}"
    );

    let body = server
        .expect_error(
            CREATE,
            json!({"name": "Ghost", "items": [{"product_id": UNKNOWN_V4}]}),
            "not_found",
            "items[0].product_id",
        )
        .await;
    assert_eq!(body["retry_safe"], false);
    server
        .expect_error(
            CREATE,
            json!({"name": "Ghost coupon", "items": [
                {"product_id": id_of(one_time), "coupons": [UNKNOWN_V4]},
            ]}),
            "not_found",
            "items[0].coupons[0]",
        )
        .await;
    server.shutdown().await;
}

/// Asking for a link that does not exist is `not_found` on `payment_link_id`, for both tools
/// that take one.
#[tokio::test]
async fn an_unknown_payment_link_is_not_found() {
    let server = Server::sandbox().await;
    for tool in [GET, LINE_ITEMS] {
        let body = server
            .expect_error(
                tool,
                json!({"payment_link_id": UNKNOWN_V4}),
                "not_found",
                "payment_link_id",
            )
            .await;
        assert_eq!(body["retry_safe"], false, "{tool}");
        assert!(
            body["message"].as_str().unwrap().contains(UNKNOWN_V4),
            "{tool}: the message names the id: {body}"
        );
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Malformed arguments
// ---------------------------------------------------------------------------------------------

/// Arguments of the wrong type, unknown fields and missing fields come back as the same JSON
/// envelope as any other error, naming the field, never as the SDK's plain text.
#[tokio::test]
async fn malformed_arguments_come_back_as_the_envelope_naming_the_field() {
    let server = Server::sandbox().await;
    let products = catalog(&server).await;
    let product = id_of(one_time_in(&products, "SAR")[0]).to_owned();
    let item = json!({"product_id": product});

    let body = server
        .expect_error(
            CREATE,
            json!({"name": "x", "items": [with(&item, "quantity", json!("two"))]}),
            "validation",
            "items[0].quantity",
        )
        .await;
    assert!(
        body["message"].as_str().unwrap().contains("integer"),
        "the message names the JSON type expected: {body}"
    );
    let body = server
        .expect_error(
            CREATE,
            json!({"name": "x", "items": [item], "colour": "red"}),
            "validation",
            "colour",
        )
        .await;
    assert!(
        body["message"].as_str().unwrap().contains("unknown field"),
        "{body}"
    );
    let args = |name: Value, items: Value| json!({"name": name, "items": items});
    let item_with = |key: &str, value: Value| json!([with(&item, key, value)]);
    let cases = vec![
        case(
            "unknown field in an item",
            args(
                json!("x"),
                json!([item, with(&item, "colour", json!("red"))]),
            ),
            "items[1].colour",
        ),
        case("missing name", json!({"items": [item]}), "name"),
        case("missing items", json!({"name": "x"}), "items"),
        case(
            "missing product id",
            args(json!("x"), json!([{"quantity": 2}])),
            "items[0].product_id",
        ),
        case("name a number", args(json!(42), json!([item])), "name"),
        case("items a string", args(json!("x"), json!("abc")), "items"),
        case("items an object", args(json!("x"), item.clone()), "items"),
        case(
            "fractional quantity",
            args(json!("x"), item_with("quantity", json!(1.5))),
            "items[0].quantity",
        ),
        case(
            "null quantity",
            args(json!("x"), item_with("quantity", Value::Null)),
            "items[0].quantity",
        ),
        case(
            "metadata value a number",
            with(
                &args(json!("x"), json!([item])),
                "metadata",
                json!({"n": 5}),
            ),
            "metadata.n",
        ),
    ];
    expect_validation_cases(&server, CREATE, cases).await;
    let cases = vec![
        case("unknown field", json!({"page": 2}), "page"),
        case("limit a string", json!({"limit": "ten"}), "limit"),
    ];
    expect_validation_cases(&server, PRODUCTS, cases).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Unknown tool
// ---------------------------------------------------------------------------------------------

/// Calling a tool that does not exist is a JSON-RPC error (invalid params, per the MCP spec),
/// not a tool result; the session carries on.
#[tokio::test]
async fn an_unknown_tool_is_a_json_rpc_error_and_the_session_survives() {
    let server = Server::sandbox().await;
    let error = server.rpc_error("refund_payment", json!({})).await;
    assert_eq!(error.code.0, -32602, "invalid params: {error:?}");
    assert!(error.message.contains("refund_payment"), "{error:?}");
    let page = server.ok(PRODUCTS, json!({"limit": 1})).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 9. stdout hygiene, exit on EOF
// ---------------------------------------------------------------------------------------------

/// Parses one stdout line, failing the test unless it is a JSON-RPC 2.0 message object.
fn json_rpc_line(line: &str) -> Value {
    let message: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
    assert!(message.is_object(), "stdout line is not an object: {line}");
    assert_eq!(message["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line}");
    message
}

/// With the most verbose logging, stdout still carries nothing but JSON-RPC messages, one per
/// line, every request gets exactly one answer, and closing stdin ends the process cleanly.
#[tokio::test]
async fn stdout_carries_only_json_rpc_and_the_process_exits_cleanly_on_eof() {
    let mut session = RawSession::spawn(&[], &[("PAYLINK_LOG", "trace")]);
    session
        .send(&[json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        })])
        .await;
    // The spec has a client wait for the initialize answer before anything but pings.
    let first = session.read_line().await.expect("an initialize answer");
    let first = json_rpc_line(&first);
    assert_eq!(first["id"], 1);
    assert_eq!(first["result"]["serverInfo"]["name"], "paylink-mcp");

    let call = |id: u64, name: &str, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": name, "arguments": arguments}})
    };
    session
        .send(&[
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            call(3, PRODUCTS, json!({"limit": 2})),
            call(4, CREATE, json!({"name": "", "items": []})),
            call(5, "no_such_tool", json!({})),
            call(6, GET, json!({"payment_link_id": UNKNOWN_V4})),
            call(7, PRODUCTS, json!({"cursor": "forged"})),
            json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}),
        ])
        .await;
    let end = session.close_and_wait().await;

    let mut answers: BTreeMap<u64, Value> = BTreeMap::new();
    for line in &end.stdout_lines {
        let message = json_rpc_line(line);
        if let Some(id) = message["id"].as_u64() {
            assert!(
                answers.insert(id, message).is_none(),
                "two answers to request {id}"
            );
        }
    }
    assert_eq!(
        answers.keys().copied().collect::<Vec<_>>(),
        (2..=8).collect::<Vec<_>>(),
        "one answer per request, even though stdin closed right after them; stderr:\n{}",
        end.stderr
    );
    assert_eq!(answers[&2]["result"]["tools"].as_array().unwrap().len(), 6);
    assert_eq!(answers[&3]["result"]["isError"], false);
    for failed in [4, 6, 7] {
        assert_eq!(
            answers[&failed]["result"]["isError"], true,
            "request {failed}"
        );
    }
    assert_eq!(answers[&5]["error"]["code"], -32602, "unknown tool");
    assert_eq!(answers[&8]["result"], json!({}), "ping");

    assert_eq!(
        end.status.code(),
        Some(0),
        "exit code 0 once stdin closes; stderr:\n{}",
        end.stderr
    );
    assert!(
        end.stderr
            .lines()
            .any(|l| l.contains("serving MCP over stdio") && l.contains("sandbox")),
        "stderr has the start-up line naming the backend:\n{}",
        end.stderr
    );
}

/// JSON-RPC 2.0 over stdio: a line that is not JSON (broken, not UTF-8, or longer than the 16 MiB
/// line limit) is answered with -32700 Parse error and `"id": null`, a JSON line that is not a
/// message with -32600 and its id when it has a readable one (`null` otherwise, as JSON-RPC 2.0
/// says), and the session keeps serving in between.
#[tokio::test]
async fn an_unparseable_line_gets_a_parse_error_and_the_session_goes_on() {
    let mut session = RawSession::spawn(&[], &[]);
    session
        .send(&[json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "raw-test", "version": "0"}},
        })])
        .await;
    let init = json_rpc_line(&session.read_line().await.expect("initialize answered"));
    assert_eq!(init["id"], 1);
    session
        .send(&[json!({"jsonrpc": "2.0", "method": "notifications/initialized"})])
        .await;

    let mut too_long = vec![b'['; 16 * 1024 * 1024 + 10];
    too_long.push(b'\n');
    let bad_lines: Vec<(&str, Vec<u8>, i64, Value)> = vec![
        (
            "broken JSON",
            br#"{"jsonrpc": "2.0", "id": 2, "method": "tools/list""#.to_vec(),
            -32700,
            Value::Null,
        ),
        (
            "not JSON at all",
            b"hello there".to_vec(),
            -32700,
            Value::Null,
        ),
        (
            "not UTF-8",
            b"{\"jsonrpc\": \"2.0\", \"id\": \"\xff\xfe\"}".to_vec(),
            -32700,
            Value::Null,
        ),
        (
            "JSON, not a message",
            br#"{"jsonrpc": "2.0", "id": 3, "method": 42}"#.to_vec(),
            -32600,
            json!(3),
        ),
        (
            "a tools/call whose params are not an object",
            br#"{"jsonrpc": "2.0", "id": "five", "method": "tools/call", "params": "bad"}"#
                .to_vec(),
            -32600,
            json!("five"),
        ),
        (
            "an id that cannot be an id",
            br#"{"jsonrpc": "2.0", "id": {"x": 1}, "method": 42}"#.to_vec(),
            -32600,
            Value::Null,
        ),
        ("a bare number", b"12".to_vec(), -32600, Value::Null),
        ("over the line limit", too_long, -32700, Value::Null),
    ];
    for (i, (what, mut line, code, id)) in bad_lines.into_iter().enumerate() {
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        session.send_raw(&line).await;
        let answer = json_rpc_line(&session.read_line().await.expect("an answer"));
        assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        assert!(
            answer.as_object().unwrap().contains_key("id") && answer["id"] == id,
            "{what}: the id is {id} (null when it cannot be read, as JSON-RPC 2.0 says): {answer}"
        );
        assert!(answer.get("result").is_none(), "{what}: {answer}");
        // Still serving: the next request is answered.
        let id = 100 + i as u64;
        session
            .send(&[json!({"jsonrpc": "2.0", "id": id, "method": "ping"})])
            .await;
        let pong = json_rpc_line(&session.read_line().await.expect("a ping answer"));
        assert_eq!(pong["id"], id, "{what}: {pong}");
        assert_eq!(pong["result"], json!({}));
    }
    // Empty lines and non-MCP notifications are still ignored without an answer.
    session.send_raw(b"\n\r\n").await;
    session
        .send(&[
            json!({"jsonrpc": "2.0", "method": "$/lsp-thing", "params": {}}),
            json!({"jsonrpc": "2.0", "id": 200, "method": "tools/list"}),
        ])
        .await;
    let listed = json_rpc_line(&session.read_line().await.expect("tools/list answered"));
    assert_eq!(listed["id"], 200, "{listed}");
    let end = session.close_and_wait().await;
    assert_eq!(end.status.code(), Some(0), "stderr:\n{}", end.stderr);
    assert!(end.stdout_lines.is_empty(), "{:?}", end.stdout_lines);
}

/// A client may hang up before the handshake (a host giving up, `paylink-mcp < /dev/null`):
/// closing stdin is how a stdio session ends, so the server exits with 0 and prints nothing.
#[tokio::test]
async fn closing_stdin_before_initialize_exits_cleanly() {
    let end = RawSession::spawn(&[], &[]).close_and_wait().await;
    assert_eq!(end.status.code(), Some(0), "stderr:\n{}", end.stderr);
    assert!(end.stdout_lines.is_empty(), "{:?}", end.stdout_lines);
    assert!(
        !end.stderr.contains("ERROR"),
        "not an error:\n{}",
        end.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Backend choice from the environment
// ---------------------------------------------------------------------------------------------

const STREAM_KEY: &str = "stream-key-4f9a1c-DO-NOT-PRINT";
const STRIPE_KEY: &str = "sk_test_51Hx0DoNotPrintThisKey";

/// With both a Stream and a Stripe key and no `--backend`, the server cannot guess: it stops at
/// once with a message naming both variables, without printing either key or anything on stdout.
#[tokio::test]
async fn both_api_keys_without_a_backend_choice_stop_start_up_without_leaking_them() {
    let end = run_until_exit(
        &[],
        &[
            ("STREAM_API_KEY", STREAM_KEY),
            ("STRIPE_API_KEY", STRIPE_KEY),
        ],
    )
    .await;
    assert!(!end.status.success(), "exit status {}", end.status);
    assert!(end.stderr.contains("STREAM_API_KEY"), "{}", end.stderr);
    assert!(end.stderr.contains("STRIPE_API_KEY"), "{}", end.stderr);
    assert!(
        end.stderr.contains("--backend"),
        "says how to choose: {}",
        end.stderr
    );
    for key in [STREAM_KEY, STRIPE_KEY] {
        assert!(!end.stderr.contains(key), "a key leaked to stderr");
        assert!(
            !end.stdout_lines.iter().any(|l| l.contains(key)),
            "a key leaked to stdout"
        );
    }
    assert!(
        end.stdout_lines.is_empty(),
        "stdout stays empty: {:?}",
        end.stdout_lines
    );
}

/// An explicit backend choice wins over the keys present: `PAYLINK_BACKEND=sandbox` serves the
/// sandbox even with both keys set.
#[tokio::test]
async fn an_explicit_sandbox_choice_wins_over_keys_in_the_environment() {
    let server = Server::start(
        &[],
        &[
            ("STREAM_API_KEY", STREAM_KEY),
            ("STRIPE_API_KEY", STRIPE_KEY),
            ("PAYLINK_BACKEND", "sandbox"),
        ],
    )
    .await;
    let instructions = server.info().instructions.clone().unwrap_or_default();
    assert!(instructions.contains("Backend: sandbox"), "{instructions}");
    let page = server.ok(PRODUCTS, json!({"limit": 1})).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let stderr = server.stderr();
    for key in [STREAM_KEY, STRIPE_KEY] {
        assert!(!stderr.contains(key), "a key leaked to stderr");
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 11. Tool filters
// ---------------------------------------------------------------------------------------------

/// A read-only server lists only the four read tools, and to a client `create_payment_link`
/// simply does not exist: calling it is the very same JSON-RPC error as any unknown tool.
async fn assert_read_only(server: &Server) {
    assert_eq!(
        server.tool_names().await,
        [GET, LINE_ITEMS, PRODUCTS, LINKS]
    );
    let create = server
        .rpc_error(
            CREATE,
            json!({"name": "x", "items": [{"product_id": UNKNOWN_V4}]}),
        )
        .await;
    let unknown = server.rpc_error("no_such_tool", json!({})).await;
    assert_eq!(create.code, unknown.code);
    assert_eq!(create.data, unknown.data);
    assert_eq!(
        create.message.replace(CREATE, "<tool>"),
        unknown.message.replace("no_such_tool", "<tool>"),
        "the same error as an unknown tool"
    );
    // Reads still work.
    server.ok(PRODUCTS, json!({"limit": 1})).await;
}

#[tokio::test]
async fn read_only_flag_hides_create_payment_link_entirely() {
    let server = Server::start(&["--read-only"], &[]).await;
    assert_read_only(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn read_only_from_the_environment_hides_create_payment_link_entirely() {
    let server = Server::start(&[], &[("PAYLINK_READ_ONLY", "true")]).await;
    assert_read_only(&server).await;
    server.shutdown().await;
}

/// `--tools` offers exactly the named tools; the others behave as unknown tools.
#[tokio::test]
async fn tools_allow_list_offers_only_the_named_tools() {
    let server = Server::start(&["--tools", "get_payment_link,list_products"], &[]).await;
    assert_eq!(server.tool_names().await, [GET, PRODUCTS]);
    let error = server
        .rpc_error(LINE_ITEMS, json!({"payment_link_id": UNKNOWN_V4}))
        .await;
    assert_eq!(error.code.0, -32602);
    server.ok(PRODUCTS, json!({"limit": 1})).await;
    server
        .expect_error(
            GET,
            json!({"payment_link_id": UNKNOWN_V4}),
            "not_found",
            "payment_link_id",
        )
        .await;
    server.shutdown().await;
}

/// A typo in `--tools` stops start-up with a message naming the unknown tool, rather than
/// silently serving fewer tools.
#[tokio::test]
async fn an_unknown_tool_in_the_allow_list_stops_start_up_naming_it() {
    let end = run_until_exit(&["--tools", "get_payment_link,list_prodcuts"], &[]).await;
    assert!(!end.status.success(), "exit status {}", end.status);
    assert!(
        end.stderr.contains("list_prodcuts"),
        "stderr names the tool: {}",
        end.stderr
    );
    assert!(
        end.stdout_lines.is_empty(),
        "stdout stays empty: {:?}",
        end.stdout_lines
    );
}
