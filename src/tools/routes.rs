//! The router: one route per enabled tool, its definition and its handler together, behind the
//! observation layer; the call's protocol channel (for a confirmation) is opened here, and the
//! MCP result is built here, once: a result, an `isError` envelope, or (a write asking a
//! 2026-07-28 client to confirm first) an `InputRequiredResult`.

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, Tool};

use super::confirm::{Channel, binding};
use super::id::ToolId;
use super::toolbox::{Caller, Handler, Output, Toolbox};
use super::{catalog, lifecycle, read, write};
use crate::backend::BackendRules;
use crate::error::{Error, Result, StartupError};
use crate::observability::call::{CallInfo, Observed, observe};
use crate::tenant::Tenant;

/// Which tools the operator enabled.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolFilter {
    /// Only tools that do not write.
    pub read_only: bool,
    /// If set, only these tools (names checked at start-up).
    pub allow: Option<Vec<String>>,
}

impl ToolFilter {
    /// The enabled tools, in listing order. Fails on an unknown name in the allow-list, so that
    /// a typo is caught at start-up rather than hiding a tool.
    fn enabled(&self) -> Result<Vec<ToolId>, StartupError> {
        // `--tools "a, b"` and a trailing comma are spelling, not intent.
        let mut allow: Option<Vec<ToolId>> = None;
        for name in self.allow.iter().flatten() {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let id = ToolId::from_name(name).ok_or_else(|| StartupError::UnknownTool {
                name: name.to_owned(),
                known: ToolId::ALL.map(ToolId::name).join(", "),
            })?;
            allow.get_or_insert_with(Vec::new).push(id);
        }
        let enabled: Vec<ToolId> = ToolId::ALL
            .into_iter()
            .filter(|t| !self.read_only || !t.writes())
            .filter(|t| allow.as_ref().is_none_or(|a| a.contains(t)))
            .collect();
        if enabled.is_empty() {
            return Err(StartupError::NoToolLeft);
        }
        Ok(enabled)
    }
}

/// The enabled tools, one route each, and their `tools/list` answer.
pub(crate) struct Tools {
    pub router: ToolRouter<Toolbox>,
    /// `tools/list`, in [`ToolId::ALL`] order, built once and shared by every session.
    pub listed: Arc<Vec<Tool>>,
}

impl Tools {
    /// The routes of the tools `filter` enables, with schemas for `rules`' backend. Filtering and
    /// pruning happen here, once: a tool left out does not exist for callers.
    pub(crate) fn new(rules: &BackendRules, filter: &ToolFilter) -> Result<Self, StartupError> {
        let mut router = ToolRouter::new();
        let mut listed = Vec::new();
        for id in filter.enabled()? {
            let tool = catalog::definition(id, rules)?;
            listed.push(tool.clone());
            router.add_route(route_for(id, tool));
        }
        Ok(Tools {
            router,
            listed: Arc::new(listed),
        })
    }
}

fn route_for(id: ToolId, tool: Tool) -> ToolRoute<Toolbox> {
    match id {
        ToolId::CreatePaymentLink => route(id, tool, write::create_payment_link),
        ToolId::GetPaymentLink => route(id, tool, read::get_payment_link),
        ToolId::ListLineItems => route(id, tool, read::list_line_items),
        ToolId::ListProducts => route(id, tool, read::list_products),
        ToolId::ListPaymentLinks => route(id, tool, lifecycle::list_payment_links),
        ToolId::UpdatePaymentLinkStatus => route(id, tool, lifecycle::update_payment_link_status),
    }
}

/// One route: the tool's definition and its handler, behind the observation layer, with the MCP
/// result built once at the edge.
fn route<T: Output>(id: ToolId, tool: Tool, handler: Handler<T>) -> ToolRoute<Toolbox> {
    ToolRoute::new_dyn(tool, move |ctx: ToolCallContext<'_, Toolbox>| {
        Box::pin(async move {
            let toolbox = ctx.service;
            // The server puts the caller's tenant here before routing (see `server`).
            let Some(tenant) = ctx.request_context.extensions.get::<Arc<Tenant>>().cloned() else {
                // Only reachable if a transport forgot to authenticate: fail closed.
                return Err(ErrorData::internal_error(
                    "no tenant for this request",
                    None,
                ));
            };
            let arguments = ctx.arguments;
            // A write's confirmation state is bound to who asks, which tool and exactly these
            // arguments; reads never ask.
            let bound = if id.writes() {
                binding(&tenant.scope, id.name(), arguments.as_ref())
            } else {
                Vec::new()
            };
            let channel = Channel::open(
                &ctx.request_context,
                ctx.input_responses.filter(|_| id.writes()),
                ctx.request_state.as_deref().filter(|_| id.writes()),
                bound,
                toolbox.confirm_settings(),
            )?;
            let caller = Caller {
                backend: tenant.backend.as_ref(),
                scope: &tenant.scope,
                allow_live: toolbox.allow_live,
                channel,
            };
            let info = CallInfo {
                tool: id,
                backend: tenant.backend.kind(),
                tenant: &tenant.fingerprint,
                arguments: arguments.as_ref(),
            };
            // The last scrub of an error, before it is logged, audited or answered: formatting an
            // error can reassemble a key from pieces that were each scrubbed and harmless.
            let scrubber = tenant.backend.scrubber();
            let call = async {
                let result = handler(toolbox, &caller, arguments.as_ref()).await;
                match scrubber {
                    Some(s) => result.map_err(|e| s.scrub_error(e)),
                    None => result,
                }
            };
            match observe(info, toolbox.audit.as_ref(), &ctx.request_context.ct, call).await {
                Observed::Done(result) => Ok(answer(result)),
                Observed::Cancelled => Err(ErrorData::internal_error("request cancelled", None)),
            }
        })
    })
}

/// The MCP result of a finished call: the output as structured content (mirrored as text), the
/// question of a write that asks first, or the error envelope in an `isError` result.
fn answer<T: Output>(result: Result<T>) -> CallToolResponse {
    match result.and_then(Output::respond) {
        Ok(response) => response,
        Err(e) => error_result(&e).into(),
    }
}

/// The `isError` result for an error: its text is exactly the JSON envelope.
pub(crate) fn error_result(e: &Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.envelope())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BackendKind;

    fn names(filter: ToolFilter) -> Result<Vec<String>, StartupError> {
        Tools::new(&BackendRules::for_kind(BackendKind::Sandbox), &filter)
            .map(|t| t.listed.iter().map(|t| t.name.to_string()).collect())
    }

    #[test]
    fn allow_list_names_are_trimmed_and_empty_entries_ignored() {
        let got = names(ToolFilter {
            read_only: false,
            allow: Some(vec![
                " get_payment_link".into(),
                "".into(),
                "list_products ".into(),
            ]),
        })
        .unwrap();
        assert_eq!(got, ["get_payment_link", "list_products"]);
        assert_eq!(
            names(ToolFilter {
                read_only: false,
                allow: Some(vec![String::new()])
            })
            .unwrap()
            .len(),
            ToolId::ALL.len()
        );
    }

    #[test]
    fn a_filter_that_leaves_no_tool_is_refused() {
        let e = names(ToolFilter {
            read_only: true,
            allow: Some(vec!["create_payment_link".into()]),
        })
        .unwrap_err();
        assert!(e.to_string().contains("no tool"));
    }

    #[test]
    fn stripe_schemas_do_not_advertise_what_stripe_cannot_honour() {
        let tools = Tools::new(
            &BackendRules::for_kind(BackendKind::Stripe),
            &ToolFilter::default(),
        )
        .unwrap();
        let create = tools.router.get(ToolId::CreatePaymentLink.name()).unwrap();
        let schema = serde_json::to_value(&create.input_schema).unwrap();
        for field in [
            "valid_until",
            "failure_redirect_url",
            "coupons",
            "organization_consumer_id",
        ] {
            assert!(schema["properties"].get(field).is_none(), "{field}");
        }
        let item = schema["properties"]["items"]["items"]["properties"]
            .as_object()
            .expect("the item schema is inlined");
        assert!(item.get("coupons").is_none());
        assert!(item.contains_key("product_id"));
        assert!(schema["properties"].get("success_redirect_url").is_some());
    }
}
