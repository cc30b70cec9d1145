//! What every tool call shares: the [`Toolbox`] built once at start-up, the [`Caller`] of one
//! call, and the rules every write obeys (the live guard).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::JsonObject;
use serde::Serialize;
use serde_json::Value;

use crate::backend::{Backend, BackendRules};
use crate::domain::PageBytes;
use crate::error::{Error, Result};
use crate::idempotency::IdempotencyKeys;
use crate::observability::audit::AuditLog;

/// What every tool call shares, built once at start-up: the `S` of the tool router, handed to
/// each route with the call. Cheap to clone: clones share one idempotency store.
#[derive(Clone)]
pub struct Toolbox {
    rules: BackendRules,
    /// Where idempotency keys are kept: this process, or the store replicas share.
    pub(super) idempotency: Arc<dyn IdempotencyKeys>,
    pub(super) allow_live: bool,
    pub(super) audit: Option<Arc<AuditLog>>,
    /// The byte cap of one list page.
    page_bytes: PageBytes,
}

impl Toolbox {
    pub fn new(
        rules: BackendRules,
        allow_live: bool,
        audit: Option<Arc<AuditLog>>,
        page_bytes: PageBytes,
        idempotency: Arc<dyn IdempotencyKeys>,
    ) -> Self {
        Toolbox {
            rules,
            idempotency,
            allow_live,
            audit,
            page_bytes,
        }
    }

    /// Refuses a write (`unavailable`, retry-safe) when the shared store does not answer, before
    /// anything is sent upstream: replicas keep the bookkeeping of writes there, and a write
    /// they cannot account for is one they do not make. Without a shared store, always fine.
    pub(super) async fn store_answers(&self) -> Result<()> {
        self.idempotency.ready().await
    }

    pub fn rules(&self) -> &BackendRules {
        &self.rules
    }

    pub fn page_bytes(&self) -> PageBytes {
        self.page_bytes
    }
}

/// A future a handler answers with.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tool's handler: decodes and validates its arguments, calls one backend method, answers its
/// typed output. Boxed because a `fn` pointer cannot name an `async fn`'s future.
pub type Handler<T> =
    for<'a> fn(&'a Toolbox, &'a Caller<'a>, Option<&'a JsonObject>) -> BoxFuture<'a, Result<T>>;

/// Who is calling: their backend, their scope (a hash naming the tenant, for idempotency keys),
/// and whether live writes are allowed.
pub struct Caller<'a> {
    pub backend: &'a dyn Backend,
    pub scope: &'a str,
    pub allow_live: bool,
}

/// Writes against live money need the operator's `--allow-live`.
pub(super) fn live_guard(backend: &dyn Backend, allow_live: bool) -> Result<()> {
    if backend.livemode() && !allow_live {
        return Err(Error::live_guard(
            "this server talks to live money and was not started with --allow-live, so writes are refused. Reads work; ask the operator to restart with --allow-live, or use a test/staging key",
        ));
    }
    Ok(())
}

pub(crate) fn to_value<T: Serialize>(v: T) -> Result<Value> {
    serde_json::to_value(v)
        .map_err(|e| Error::internal(format!("could not encode the result: {e}")))
}
