//! The sandbox with its links in the shared store (`--store redis://...`), so that a demo
//! behind a load balancer sees its links from every replica: the `sandbox` key family.
//!
//! It builds and prices links exactly as the in-memory sandbox does (`calls::build_link`) and
//! keeps the same bounds: links per tenant, bytes per tenant, and bytes of all tenants together.
//! What a link is charged here is what it takes in Redis: its JSON, its id twice (hash field,
//! sorted-set member) and [`RECORD_OVERHEAD`]. Every check and write is one Lua script, so two
//! replicas cannot both take the last byte.
//!
//! Keys: `paylink:v1:sandbox:{S}:links` (hash: link id → the link, its items and creation time
//! as JSON), `paylink:v1:sandbox:{S}:order` (sorted set: the ids by creation), and for the
//! whole server `paylink:v1:sandbox:pool` (hash: bytes per tenant, `#` in all) with
//! `paylink:v1:sandbox:pool:expiry` (sorted set: when each tenant's links expire, so that the
//! bytes of expired tenants return to the pool). A tenant's links live 24 hours after its last
//! write, at least as long as any idempotency key that could replay one of them. The pool keys
//! span tenants: this family needs a single Redis (or Valkey) primary, not Redis Cluster.
//!
//! When the store does not answer, every call (reads included: the data is there) is refused
//! `unavailable`.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calls::{build_link, page_of};
use super::catalog::{PRODUCTS, not_found};
use super::pricing::price_link;
use super::store::{SandboxLimits, completed_link, over_tenant_budget, pool_full, too_many_links};
use crate::backend::paging::page_by_item_id;
use crate::backend::request::{
    LineItemsQuery, LinksQuery, NewPaymentLink, ProductsQuery, StatusUpdate, TargetStatus,
};
use crate::backend::{Backend, Preview};
use crate::domain::{Cursor, PaymentLinkId};
use crate::error::{Error, Result};
use crate::idempotency::KEY_TTL;
use crate::model::{BackendKind, LineItem, LinkStatus, Page, PaymentLink, Product};
use crate::observability::metrics;
use crate::store::{Family, Script, Store};

const FAMILY: Family = Family::new("sandbox");

/// What a link is charged besides its JSON and ids: the hash field's and the sorted set's own
/// bookkeeping in Redis, rounded up.
pub(crate) const RECORD_OVERHEAD: usize = 128;

/// How many times an update is retried when another one changed the link first.
const UPDATE_TRIES: usize = 5;

const NOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// Returns the pool's bytes to it for every tenant whose links have expired.
const RECLAIM: &str = r#"
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, s in ipairs(gone) do
  local b = tonumber(redis.call('HGET', KEYS[3], s) or '0')
  redis.call('HDEL', KEYS[3], s)
  redis.call('HINCRBY', KEYS[3], '#', -b)
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) end
"#;

/// Charges ARGV[3] (a signed number of bytes) to the tenant ARGV[2] within its budget ARGV[5]
/// and the pool's ARGV[6]; keeps every key for ARGV[7] ms more. Returns from the script on a
/// refusal.
const CHARGE: &str = r#"
local bytes, ttl = tonumber(ARGV[3]), tonumber(ARGV[7])
local mine = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
local total = tonumber(redis.call('HGET', KEYS[3], '#') or '0')
if bytes > 0 and mine + bytes > tonumber(ARGV[5]) then return {'tenant', mine} end
if bytes > 0 and total + bytes > tonumber(ARGV[6]) then return {'pool', total} end
"#;

const COMMIT: &str = r#"
redis.call('HINCRBY', KEYS[3], ARGV[2], bytes)
total = redis.call('HINCRBY', KEYS[3], '#', bytes)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[4], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return {'ok', total}
"#;

/// KEYS: links, order, pool, pool expiry. ARGV: id, scope, bytes, record, tenant budget, pool
/// budget, ttl ms, max links. Returns {'ok', pool total} | {'links'} | {'tenant', held} |
/// {'pool', total}.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "sandbox_create",
        &format!(
            r#"{NOW}{RECLAIM}
-- Sent again after a dropped connection: stored already.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return {{'ok', tonumber(redis.call('HGET', KEYS[3], '#') or '0')}}
end
local count = redis.call('HLEN', KEYS[1])
if count >= tonumber(ARGV[8]) then return {{'links'}} end
{CHARGE}
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[2], count, ARGV[1])
{COMMIT}"#
        ),
    )
});

/// KEYS: as CREATE. ARGV: id, scope, bytes (a signed change), new record, budgets, ttl ms, the
/// record as it was read. Returns as CREATE, or {'changed'} when someone else changed it first.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "sandbox_update",
        &format!(
            r#"{NOW}{RECLAIM}
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[8] then return {{'changed'}} end
{CHARGE}
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
{COMMIT}"#
        ),
    )
});

/// KEYS: links, order. Returns every record, oldest first.
static ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "sandbox_list",
        r#"
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(ids))
"#,
    )
});

/// A link as kept in Redis.
#[derive(Serialize, Deserialize)]
struct Record {
    link: PaymentLink,
    items: Vec<LineItem>,
    created: DateTime<Utc>,
}

/// One tenant's sandbox in the shared store.
pub(crate) struct SharedSandbox {
    store: Store,
    scope: String,
    limits: SandboxLimits,
}

impl SharedSandbox {
    /// The sandbox of the tenant named `scope` (a hash, see `tenant::Tenant::scope`).
    pub(crate) fn new(store: Store, scope: &str, limits: SandboxLimits) -> Self {
        SharedSandbox {
            store,
            scope: scope.to_owned(),
            limits,
        }
    }

    fn links_key(&self) -> String {
        FAMILY.tenant_key(&self.scope, "links")
    }

    fn order_key(&self) -> String {
        FAMILY.tenant_key(&self.scope, "order")
    }

    fn charged(id: &str, record: &str) -> usize {
        RECORD_OVERHEAD + record.len() + 2 * id.len()
    }

    /// Runs a write script; `Ok(None)` when the link changed under an update.
    async fn write(
        &self,
        script: &Script,
        id: &str,
        bytes: i64,
        record: &str,
        before: Option<&str>,
        what: &str,
    ) -> Result<Option<()>> {
        let mut inv = script.prepare();
        inv.key(self.links_key())
            .key(self.order_key())
            .key(FAMILY.key("pool"))
            .key(FAMILY.key("pool:expiry"));
        inv.arg(id)
            .arg(crate::store::safe_scope(&self.scope))
            .arg(bytes)
            .arg(record)
            .arg(self.limits.max_tenant_bytes)
            .arg(self.limits.pool.max_bytes())
            .arg(KEY_TTL.as_millis() as u64);
        match before {
            Some(b) => inv.arg(b),
            None => inv.arg(self.limits.max_links),
        };
        let answer: Vec<redis::Value> = self
            .store
            .invoke(script.op, &inv)
            .await
            .map_err(|e| e.unavailable("store this sandbox link"))?;
        let word = answer.first().and_then(text).unwrap_or_default();
        let number = answer.get(1).and_then(integer).unwrap_or(0);
        let bytes = usize::try_from(bytes).unwrap_or(0);
        match word.as_str() {
            "ok" => {
                metrics::sandbox_bytes(number);
                Ok(Some(()))
            }
            "changed" => Ok(None),
            "links" => Err(too_many_links(self.limits.max_links)),
            "tenant" => Err(over_tenant_budget(
                number,
                self.limits.max_tenant_bytes,
                what,
                bytes,
            )),
            "pool" => Err(pool_full(number, self.limits.pool.max_bytes())),
            _ => Err(Error::internal("the shared sandbox answered unexpectedly")),
        }
    }

    /// The record of `id` as stored, and read.
    async fn read(&self, id: &PaymentLinkId) -> Result<(String, Record)> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.links_key()).arg(id.as_str());
        let raw: Option<String> = self
            .store
            .command("sandbox_get", &cmd)
            .await
            .map_err(|e| e.unavailable("read the sandbox's links"))?;
        let raw = raw.ok_or_else(|| not_found("payment link", id.as_str(), "payment_link_id"))?;
        let record = decode(&raw)?;
        Ok((raw, record))
    }

    async fn all(&self) -> Result<Vec<Record>> {
        let mut inv = ALL.prepare();
        inv.key(self.links_key()).key(self.order_key());
        let raw: Vec<Option<String>> = self
            .store
            .invoke(ALL.op, &inv)
            .await
            .map_err(|e| e.unavailable("read the sandbox's links"))?;
        raw.iter().flatten().map(|r| decode(r)).collect()
    }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn integer(v: &redis::Value) -> Option<usize> {
    match v {
        redis::Value::Int(n) => usize::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

fn decode(raw: &str) -> Result<Record> {
    // Our own encoding; a record this version cannot read is a fault, said as such.
    serde_json::from_str(raw)
        .map_err(|e| Error::internal(format!("a stored sandbox link cannot be read: {e}")))
}

fn encode(record: &Record) -> Result<String> {
    serde_json::to_string(record)
        .map_err(|e| Error::internal(format!("a sandbox link cannot be encoded: {e}")))
}

#[async_trait]
impl Backend for SharedSandbox {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }

    fn livemode(&self) -> bool {
        false
    }

    async fn preview_payment_link(&self, request: &NewPaymentLink) -> Result<Preview> {
        // The same catalog and pricing as the in-memory sandbox: no data of the tenant's needed.
        price_link(request).map(|priced| priced.preview)
    }

    async fn create_payment_link(&self, request: NewPaymentLink) -> Result<PaymentLink> {
        let stored = build_link(request, Utc::now())?;
        let record = Record {
            link: stored.link,
            items: stored.items,
            created: stored.created,
        };
        let raw = encode(&record)?;
        let id = record.link.id.clone();
        let bytes = Self::charged(&id, &raw) as i64;
        self.write(&CREATE, &id, bytes, &raw, None, "this link")
            .await?;
        Ok(record.link)
    }

    async fn get_payment_link(&self, id: &PaymentLinkId) -> Result<PaymentLink> {
        Ok(self.read(id).await?.1.link)
    }

    async fn list_line_items(&self, query: LineItemsQuery) -> Result<Page<LineItem>> {
        let (_, record) = self.read(&query.payment_link_id).await?;
        page_by_item_id(record.items, &query)
    }

    async fn list_products(&self, query: ProductsQuery) -> Result<Page<Product>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let products: Vec<&Product> = PRODUCTS.iter().collect();
        Ok(page_of(&products, cursor, query.max_bytes))
    }

    async fn list_payment_links(&self, query: LinksQuery) -> Result<Page<PaymentLink>> {
        let cursor = Cursor::page_or_first(query.cursor.as_ref(), query.limit)?;
        let records = self.all().await?;
        let matching: Vec<&PaymentLink> = records
            .iter()
            .rev()
            .filter(|r| query.status.is_none_or(|st| r.link.status == Some(st)))
            .filter(|r| query.created_from.is_none_or(|f| r.created >= f))
            .filter(|r| query.created_to.is_none_or(|t| r.created <= t))
            .map(|r| &r.link)
            .collect();
        Ok(page_of(&matching, cursor, query.max_bytes))
    }

    async fn update_payment_link_status(&self, update: StatusUpdate) -> Result<PaymentLink> {
        for _ in 0..UPDATE_TRIES {
            let (before, mut record) = self.read(&update.payment_link_id).await?;
            if record.link.status == Some(LinkStatus::Completed) {
                return Err(completed_link());
            }
            match update.status {
                TargetStatus::Active => {
                    record.link.status = Some(LinkStatus::Active);
                    record.link.inactive_message = None;
                }
                TargetStatus::Inactive => {
                    record.link.status = Some(LinkStatus::Inactive);
                    record.link.inactive_message = update.message.clone();
                }
            }
            let after = encode(&record)?;
            let id = record.link.id.clone();
            // The only thing that changes size is the message payers see.
            let change = after.len() as i64 - before.len() as i64;
            let done = self
                .write(&UPDATE, &id, change, &after, Some(&before), "this message")
                .await?;
            if done.is_some() {
                return Ok(record.link);
            }
        }
        Err(Error::internal_retryable(
            "this link kept changing while it was being updated; call again",
        ))
    }
}
