//! An in-process harness: a backend (on a mock upstream, or the sandbox) served by the real MCP
//! server (`PaylinkServer` and its tool router) and driven by rmcp's real client over an
//! in-memory duplex pipe, answering either the structured result or the error envelope.
//! Backend-specific constructors live beside their mocks (`stream_harness.rs`, the Stripe tests).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use paylink_mcp::backend::{Backend, BackendRules};
use paylink_mcp::model::BackendKind;
use paylink_mcp::server::{PaylinkServer, TenantSource};
use paylink_mcp::tenant::Tenant;
use paylink_mcp::tools::confirm::{ConfirmPolicy, ConfirmSettings};
use paylink_mcp::tools::limits::ToolLimits;
use paylink_mcp::tools::routes::{ToolFilter, Tools};
use paylink_mcp::tools::safety::SpendRules;
use paylink_mcp::tools::toolbox::Toolbox;
use paylink_mcp::upstream::UpstreamSettings;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::sync::OnceCell;

pub struct Harness {
    pub backend: Arc<dyn Backend>,
    kind: BackendKind,
    scope: String,
    /// Shared with every harness made by [`Harness::as_tenant`]: one idempotency store.
    toolbox: Toolbox,
    /// Connected on first use (constructors are not async).
    client: OnceCell<RunningService<RoleClient, ()>>,
}

pub fn settings() -> UpstreamSettings {
    UpstreamSettings {
        attempt_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(5),
        backoff_base: Duration::from_millis(10),
        ..UpstreamSettings::default()
    }
}

impl Harness {
    /// The tools of `kind` over `backend`, for tenant "test-tenant", live writes refused.
    pub fn new(kind: BackendKind, backend: Arc<dyn Backend>) -> Self {
        Self::with_toolbox(
            kind,
            backend,
            "test-tenant",
            Toolbox::new(
                BackendRules::for_kind(kind),
                false,
                None,
                ToolLimits::default(),
            ),
        )
    }

    /// The same, with live writes allowed (`--allow-live`).
    pub fn allowing_live(self) -> Self {
        let toolbox = Toolbox::new(
            BackendRules::for_kind(self.kind),
            true,
            None,
            ToolLimits::default(),
        );
        Self::with_toolbox(self.kind, self.backend, &self.scope, toolbox)
    }

    /// The same, with writes confirmed under `policy` (`--confirm-writes`). This harness's
    /// client declares no elicitation: a write that must be confirmed is refused.
    pub fn confirming(self, policy: ConfirmPolicy) -> Self {
        let settings = ConfirmSettings::new(policy, Duration::from_secs(600), None).unwrap();
        let toolbox = self
            .toolbox
            .clone()
            .with_safety(settings, SpendRules::default());
        Self::with_toolbox(self.kind, self.backend, &self.scope, toolbox)
    }

    /// Another tenant (scope) on the same backend and the same server-wide idempotency store.
    pub fn as_tenant(&self, scope: &str) -> Self {
        Self::with_toolbox(self.kind, self.backend.clone(), scope, self.toolbox.clone())
    }

    fn with_toolbox(
        kind: BackendKind,
        backend: Arc<dyn Backend>,
        scope: &str,
        toolbox: Toolbox,
    ) -> Self {
        Harness {
            backend,
            kind,
            scope: scope.to_owned(),
            toolbox,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &RunningService<RoleClient, ()> {
        self.client
            .get_or_init(|| async {
                let tools = Tools::new(&BackendRules::for_kind(self.kind), &ToolFilter::default())
                    .expect("tools");
                let tenant = Arc::new(Tenant {
                    fingerprint: "test".into(),
                    scope: self.scope.clone(),
                    backend: self.backend.clone(),
                });
                let server = PaylinkServer::new(
                    tools,
                    self.toolbox.clone(),
                    String::new(),
                    TenantSource::Fixed(tenant),
                );
                let (client_end, server_end) = tokio::io::duplex(1 << 20);
                tokio::spawn(async move {
                    if let Ok(running) = server.serve(server_end).await {
                        let _ = running.waiting().await;
                    }
                });
                ().serve(client_end).await.expect("MCP client connects")
            })
            .await
    }

    /// The tool's result as the client sees it.
    pub async fn raw_call(&self, tool: &str, args: Value) -> CallToolResult {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        }
        self.client()
            .await
            .call_tool(params)
            .await
            .expect("tool call transported")
    }

    /// Ok(structuredContent) or Err(the envelope's `error` object).
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Value> {
        let result = self.raw_call(tool, args).await;
        if result.is_error == Some(true) {
            let text = result.content[0].as_text().unwrap().text.clone();
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                v.as_object().unwrap().len(),
                1,
                "envelope has one key: {text}"
            );
            assert!(v["error"]["retry_safe"].is_boolean(), "{text}");
            Err(v["error"].clone())
        } else {
            Ok(result.structured_content.unwrap())
        }
    }
}
