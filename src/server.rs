//! The MCP server handler: one value per connection (or per stateless request), cheap to clone,
//! sharing the tool list and configuration built once at start-up.
//!
//! It finds the caller's tenant (fixed over stdio; put in the request by the HTTP auth layer) and
//! hands the call to the [`ToolSet`] through [`observability::observe`](crate::observability::observe),
//! which owns the call's span, log line, metrics and audit line.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::observability::{self, CallInfo, Observed, Observer};
use crate::tenant::Tenant;
use crate::tools::{Caller, ToolSet};
use crate::transport::http::limits::CallSlots;

/// Where a call's tenant comes from.
#[derive(Clone)]
pub enum TenantSource {
    /// stdio: one tenant for the whole process.
    Fixed(Arc<Tenant>),
    /// HTTP: the auth layer puts an `Arc<Tenant>` in the request's extensions.
    PerRequest,
}

struct Shared {
    tools: ToolSet,
    info: ServerConfig,
    tenants: TenantSource,
    allow_live: bool,
    observer: Observer,
}

/// The MCP handler.
#[derive(Clone)]
pub struct PaylinkServer {
    shared: Arc<Shared>,
}

impl PaylinkServer {
    pub fn new(
        tools: ToolSet,
        instructions: String,
        tenants: TenantSource,
        allow_live: bool,
        observer: Observer,
    ) -> Self {
        let info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "paylink-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(instructions);
        PaylinkServer {
            shared: Arc::new(Shared {
                tools,
                info,
                tenants,
                allow_live,
                observer,
            }),
        }
    }

    fn tenant(&self, context: &RequestContext<RoleServer>) -> Option<Arc<Tenant>> {
        match &self.shared.tenants {
            TenantSource::Fixed(t) => Some(t.clone()),
            TenantSource::PerRequest => context
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Arc<Tenant>>())
                .cloned(),
        }
    }
}

impl ServerHandler for PaylinkServer {
    fn get_info(&self) -> ServerConfig {
        self.shared.info.clone()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.shared.tools.listed().as_ref().clone(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.shared.tools.get(name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if self.shared.tools.get(name).is_none() {
            return Err(ErrorData::invalid_params(
                format!("tool not found: {name}"),
                None,
            ));
        }
        // Over HTTP the gate's in-flight slots ride in the request: hold them until this call
        // ends, even if the caller hung up and rmcp runs the call on.
        let _slots = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<CallSlots>())
            .cloned();
        let Some(tenant) = self.tenant(&context) else {
            // Only reachable if the HTTP layer forgot to authenticate: fail closed.
            return Err(ErrorData::internal_error(
                "no tenant for this request",
                None,
            ));
        };
        let caller = Caller {
            backend: tenant.backend.as_ref(),
            scope: &tenant.scope,
            allow_live: self.shared.allow_live,
        };
        let info = CallInfo {
            // Checked above: the name is one of ours, so it can label metrics.
            tool: observability::metrics::tool_label(name).unwrap_or("unknown"),
            write: self.shared.tools.writes(name),
            tenant: &tenant,
            arguments: request.arguments.as_ref(),
        };
        let call = self
            .shared
            .tools
            .call(name, request.arguments.as_ref(), &caller);
        let result = match observability::observe(
            info,
            self.shared.observer.audit.as_ref(),
            &context.ct,
            call,
        )
        .await
        {
            Observed::Done(result) => result,
            Observed::Cancelled => {
                return Err(ErrorData::internal_error("request cancelled", None));
            }
            Observed::Unknown => {
                return Err(ErrorData::invalid_params(
                    format!("tool not found: {name}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}
