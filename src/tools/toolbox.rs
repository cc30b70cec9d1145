//! What every tool call shares: the [`Toolbox`] built once at start-up, the [`Caller`] of one
//! call (with its protocol [`Channel`]), the rules every write obeys (the live guard), and what a
//! handler answers ([`Output`], a write's [`Reply`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, InputRequiredResult, JsonObject,
};
use serde::Serialize;
use serde_json::Value;

use super::confirm::{Channel, ConfirmSettings};
use super::safety::SpendRules;
use crate::backend::{Backend, BackendRules};
use crate::domain::PageBytes;
use crate::error::{Error, Result};
use crate::idempotency::IdempotencyKeys;
use crate::model::{Page, PaymentLink};
use crate::observability::audit::{AuditLog, AuditResult, AuditView};

/// What every tool call shares, built once at start-up: the `S` of the tool router, handed to
/// each route with the call. Cheap to clone: clones share one idempotency store.
#[derive(Clone)]
pub(crate) struct Toolbox {
    rules: BackendRules,
    /// Where idempotency keys are kept: this process, or the store replicas share.
    pub(super) idempotency: Arc<dyn IdempotencyKeys>,
    pub(super) allow_live: bool,
    pub(super) audit: Option<Arc<AuditLog>>,
    /// The byte cap of one list page.
    page_bytes: PageBytes,
    /// When and how writes are confirmed by the user.
    pub(super) confirm: ConfirmSettings,
    /// What creates may sell and total.
    pub(super) spend: SpendRules,
}

impl Toolbox {
    pub(crate) fn new(
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
            confirm: ConfirmSettings::default(),
            spend: SpendRules::default(),
        }
    }

    /// The same toolbox with the operator's confirmation settings and spend rules (the default
    /// is: confirm live writes, no cap, every product).
    pub(crate) fn with_safety(self, confirm: ConfirmSettings, spend: SpendRules) -> Self {
        Toolbox {
            confirm,
            spend,
            ..self
        }
    }

    pub(crate) fn confirm_settings(&self) -> &ConfirmSettings {
        &self.confirm
    }

    /// Refuses a write (`unavailable`, retry-safe) when the shared store does not answer, before
    /// anything is sent upstream: replicas keep the bookkeeping of writes there, and a write
    /// they cannot account for is one they do not make. Without a shared store, always fine.
    pub(super) async fn store_answers(&self) -> Result<()> {
        self.idempotency.ready().await
    }

    pub(crate) fn rules(&self) -> &BackendRules {
        &self.rules
    }

    pub(crate) fn page_bytes(&self) -> PageBytes {
        self.page_bytes
    }
}

/// A future a handler answers with.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tool's handler: decodes and validates its arguments, calls one backend method, answers its
/// typed output. Boxed because a `fn` pointer cannot name an `async fn`'s future.
pub(crate) type Handler<T> =
    for<'a> fn(&'a Toolbox, &'a Caller<'a>, Option<&'a JsonObject>) -> BoxFuture<'a, Result<T>>;

/// Who is calling: their backend, their scope (a hash naming the tenant, for idempotency keys
/// and budgets), whether live writes are allowed, and the protocol channel a confirmation can
/// travel on.
pub(crate) struct Caller<'a> {
    pub backend: &'a dyn Backend,
    pub scope: &'a str,
    pub allow_live: bool,
    pub channel: Channel,
}

/// A tool's output, as the MCP answer of a successful call.
pub(crate) trait Output: AuditView + Send + 'static {
    fn respond(self) -> Result<CallToolResponse>;
}

impl Output for PaymentLink {
    fn respond(self) -> Result<CallToolResponse> {
        structured(&self)
    }
}

impl<T: Serialize + Send + 'static> Output for Page<T> {
    fn respond(self) -> Result<CallToolResponse> {
        structured(&self)
    }
}

/// A successful result: `output` as `structuredContent`, mirrored as its JSON text for clients
/// that read only text (as the MCP spec recommends).
///
/// Each is made from the typed output, once: rmcp's result holds the structured content as a
/// `Value`, which is built here and serialized only by rmcp, with the answer; the text is
/// written straight from the typed output (`CallToolResult::structured` would write it from the
/// `Value`, a second walk over a tree of maps). Its members are therefore in the output type's
/// order (`id` first), where `structuredContent`'s are in the `Value`'s sorted order; the JSON
/// is the same.
fn structured<T: Serialize>(output: &T) -> Result<CallToolResponse> {
    let text = serde_json::to_string(output)
        .map_err(|e| Error::internal(format!("could not encode the result: {e}")))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(to_value(output)?);
    Ok(result.into())
}

/// What a write answers: its output, or (to a 2026-07-28 client) the user's confirmation to ask
/// for first, whose answer comes with a new call.
pub(crate) enum Reply<T> {
    Done(T),
    Ask(Box<InputRequiredResult>),
}

impl<T: AuditView> AuditView for Reply<T> {
    fn audit_result(&self) -> Option<AuditResult> {
        match self {
            Reply::Done(output) => output.audit_result(),
            Reply::Ask(_) => None,
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Reply::Done(output) => output.outcome(),
            Reply::Ask(_) => "input_required",
        }
    }
}

impl<T: Output> Output for Reply<T> {
    fn respond(self) -> Result<CallToolResponse> {
        match self {
            Reply::Done(output) => output.respond(),
            Reply::Ask(question) => Ok(CallToolResponse::InputRequired(*question)),
        }
    }
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
