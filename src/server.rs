//! The MCP server handler: one value per connection (or per stateless request), cheap to clone,
//! sharing the tool router and configuration built once at start-up.
//!
//! It finds the caller's tenant (fixed over stdio; put in the request by the HTTP auth layer),
//! hands it to the call in the request's extensions, and lets rmcp's [`ToolRouter`] run the
//! tool's route (see [`crate::tools`]), which owns decoding, the observation layer and the MCP
//! result.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ExtensionCapabilities, Implementation, JsonObject,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::backend::sandbox::coupon_summary;
use crate::domain::STREAM_CURRENCIES;
use crate::model::BackendKind;
use crate::tenant::Tenant;
use crate::tools::id::ToolId;
use crate::tools::routes::Tools;
use crate::tools::toolbox::Toolbox;
use crate::ui;

/// Something a transport asks the server to hold for exactly as long as a tool call runs: the
/// HTTP gate's in-flight slots, put in the request's extensions. rmcp moves the request's
/// `http::request::Parts` into the handler's context and does not keep them past it, so what
/// is held here lives until the call ends, even when the caller hung up and rmcp runs the
/// call on, and no longer.
#[derive(Clone)]
pub(crate) struct HeldForCall(
    #[expect(dead_code, reason = "held, never read: dropping it releases the slots")]
    pub(crate)  Arc<dyn Send + Sync>,
);

/// What the caller's OAuth scopes allow, put in the request's extensions by the HTTP gate in
/// OAuth mode (absent otherwise: then every listed tool is the caller's). The gate refuses a
/// call of a tool the scopes do not allow before rmcp sees it; `tools/list` leaves such tools
/// out, and a call that got past the gate anyway is refused here too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolAccess {
    /// Whether the write tools are allowed (the read tools always are).
    pub writes: bool,
}

/// Where a call's tenant comes from.
#[derive(Clone)]
pub(crate) enum TenantSource {
    /// stdio: one tenant for the whole process.
    Fixed(Arc<Tenant>),
    /// HTTP: the auth layer puts an `Arc<Tenant>` in the request's extensions.
    PerRequest,
}

struct Shared {
    router: ToolRouter<Toolbox>,
    toolbox: Toolbox,
    /// `tools/list`, built once.
    listed: Arc<Vec<Tool>>,
    /// `tools/list` without the write tools, for callers whose scopes only allow reads.
    listed_reads: Arc<Vec<Tool>>,
    info: ServerConfig,
    tenants: TenantSource,
}

/// The MCP handler.
#[derive(Clone)]
pub(crate) struct PaylinkServer {
    shared: Arc<Shared>,
}

impl PaylinkServer {
    pub(crate) fn new(
        tools: Tools,
        toolbox: Toolbox,
        instructions: String,
        tenants: TenantSource,
    ) -> Self {
        // Resources: the MCP Apps link card, which hosts fetch with `resources/read`. The
        // extension is declared too (harmless to clients that do not know it): it tells a host
        // that the tools' `_meta.ui` is meant for it.
        let mut extensions = ExtensionCapabilities::new();
        extensions.insert(ui::EXTENSION_ID.into(), JsonObject::new());
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_extensions_with(extensions)
            .build();
        let info = ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "paylink-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(instructions);
        let listed_reads = Arc::new(
            tools
                .listed
                .iter()
                .filter(|t| ToolId::from_name(&t.name).is_some_and(|id| !id.writes()))
                .cloned()
                .collect(),
        );
        PaylinkServer {
            shared: Arc::new(Shared {
                router: tools.router,
                toolbox,
                listed: tools.listed,
                listed_reads,
                info,
                tenants,
            }),
        }
    }

    /// The OAuth scopes' verdict on the write tools, when the transport gave one.
    fn tool_access(context: &RequestContext<RoleServer>) -> Option<ToolAccess> {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<ToolAccess>())
            .copied()
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
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let listed = match Self::tool_access(&context) {
            Some(ToolAccess { writes: false }) => &self.shared.listed_reads,
            _ => &self.shared.listed,
        };
        Ok(ListToolsResult::with_all_items(listed.as_ref().clone()))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ui::list())
    }

    /// The card needs no tenant: it is the same static file for every caller, and carries no
    /// data of theirs.
    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        ui::read(&request.uri).map(Into::into).ok_or_else(|| {
            ErrorData::resource_not_found(format!("no resource {}", request.uri), None)
        })
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.shared.router.get(name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tenant) = self.tenant(&context) else {
            // Only reachable if the HTTP layer forgot to authenticate: fail closed.
            return Err(ErrorData::internal_error(
                "no tenant for this request",
                None,
            ));
        };
        // Over HTTP the gate's in-flight slots ride in the request: hold them until this call
        // ends.
        let _held = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<HeldForCall>())
            .cloned();
        if let Some(ToolAccess { writes: false }) = Self::tool_access(&context)
            && ToolId::from_name(&request.name).is_some_and(ToolId::writes)
        {
            return Err(ErrorData::invalid_request(
                "insufficient_scope: this tool needs the write scope",
                None,
            ));
        }
        context.extensions.insert(tenant);
        let name = request.name.clone();
        let call = ToolCallContext::new(&self.shared.toolbox, request, context);
        self.shared.router.call(call).await.map_err(|e| {
            if self.shared.router.has_route(&name) {
                e
            } else {
                // rmcp's message does not say which tool; ours does.
                ErrorData::invalid_params(format!("tool not found: {name}"), None)
            }
        })
    }
}

/// What the model reads at `initialize`: what the tools do, which backend, whether it is live.
pub(crate) fn instructions(kind: BackendKind, live: Option<bool>, allow_live: bool) -> String {
    let money = match (kind, live) {
        (BackendKind::Sandbox, _) => "This is the embedded SANDBOX: nothing is charged, links are not real and live only in this server's memory.".to_owned(),
        (_, Some(true)) if allow_live => "This server talks to LIVE money: links you create can be paid for real. Confirm amounts with the user before creating.".to_owned(),
        (_, Some(true)) => "This server talks to LIVE money, and the operator has not allowed writes: create_payment_link will be refused (live_guard); reads work.".to_owned(),
        (_, Some(false)) => "This server uses a test/staging environment: no real money moves.".to_owned(),
        (_, None) => "Whether money is live depends on the key in use; every result says `livemode`.".to_owned(),
    };
    let backend = match kind {
        BackendKind::Sandbox => format!(
            "Backend: sandbox (behaves like Stream). Seeded coupons: {}.",
            coupon_summary()
        ),
        BackendKind::Stream => format!(
            "Backend: Stream (streampay.sa). Product and coupon ids are UUIDs; currencies {} (SAR by default).",
            STREAM_CURRENCIES.join(", ")
        ),
        BackendKind::Stripe => format!(
            "Backend: Stripe{}. Sell `price_...` ids (or `prod_...` ids for a product's default price).",
            match live {
                Some(true) => ", with a LIVE key (any key but sk_test_/rk_test_)",
                Some(false) => ", with a test-mode key",
                None => "",
            }
        ),
    };
    format!(
        "paylink-mcp creates and inspects payment links (hosted checkout pages). {backend} {money} \
Typical flow: list_products to find product ids, create_payment_link with items and an idempotency_key, \
share the returned `url`; get_payment_link and list_line_items to check a link. Amounts are exact Money objects \
{{amount_minor, amount, currency}}. Errors are JSON {{\"error\": {{kind, message, field, retry_safe}}}}: fix `field` on \
validation errors and only retry when retry_safe is true."
    )
}
