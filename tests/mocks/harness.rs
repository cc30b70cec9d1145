//! An in-process harness: a backend (on a mock upstream, or the sandbox) driven through the real
//! tool layer (`ToolSet::call`), answering either the structured result or the error envelope.
//! Backend-specific constructors live beside their mocks (`stream_harness.rs`, the Stripe tests).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use paylink_mcp::backend::{Backend, BackendRules};
use paylink_mcp::model::BackendKind;
use paylink_mcp::tools::{Caller, ToolFilter, ToolSet};
use paylink_mcp::upstream::UpstreamSettings;
use serde_json::Value;

pub struct Harness {
    pub tools: ToolSet,
    pub backend: Arc<dyn Backend>,
    pub allow_live: bool,
    pub scope: String,
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
        Harness {
            tools: ToolSet::new(BackendRules::for_kind(kind), &ToolFilter::default()).unwrap(),
            backend,
            allow_live: false,
            scope: "test-tenant".into(),
        }
    }

    /// Ok(structuredContent) or Err(the envelope's `error` object).
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Value> {
        let caller = Caller {
            backend: self.backend.as_ref(),
            scope: &self.scope,
            allow_live: self.allow_live,
        };
        let result = self
            .tools
            .call(tool, args.as_object(), &caller)
            .await
            .expect("tool exists");
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
