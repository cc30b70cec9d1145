//! The MCP server handler: one value per connection (or per stateless request), cheap to clone,
//! sharing the tool list and configuration built once at start-up.
//!
//! It finds the caller's tenant (fixed over stdio; put in the request by the HTTP auth layer),
//! hands the call to the [`ToolSet`], and logs one line per call with the tenant's fingerprint.

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::tenant::Tenant;
use crate::tools::{Caller, ToolSet};

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
        let Some(tenant) = self.tenant(&context) else {
            // Only reachable if the HTTP layer forgot to authenticate: fail closed.
            return Err(ErrorData::internal_error(
                "no tenant for this request",
                None,
            ));
        };
        let started = Instant::now();
        let caller = Caller {
            backend: tenant.backend.as_ref(),
            scope: &tenant.scope,
            allow_live: self.shared.allow_live,
        };
        let call = self
            .shared
            .tools
            .call(name, request.arguments.as_ref(), &caller);
        // Cancellation (notifications/cancelled, a dropped HTTP connection) drops this future,
        // which drops any upstream request in flight.
        let result = tokio::select! {
            r = call => r,
            () = context.ct.cancelled() => {
                tracing::info!(tool = name, tenant = %tenant.fingerprint, "tool call cancelled");
                return Err(ErrorData::internal_error("request cancelled", None));
            }
        };
        let Some(result) = result else {
            return Err(ErrorData::invalid_params(
                format!("tool not found: {name}"),
                None,
            ));
        };
        let is_error = result.is_error.unwrap_or(false);
        tracing::info!(
            tool = name,
            backend = tenant.backend.kind().as_str(),
            tenant = %tenant.fingerprint,
            is_error,
            latency_us = started.elapsed().as_micros() as u64,
            "tool call"
        );
        Ok(result.into())
    }
}
