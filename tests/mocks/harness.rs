//! An in-process harness: a Stream backend on a mock, driven through the real tool layer
//! (`ToolSet::call`), answering either the structured result or the error envelope.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use paylink_mcp::backend::stream::StreamBackend;
use paylink_mcp::backend::{Backend, BackendRules};
use paylink_mcp::model::BackendKind;
use paylink_mcp::secret::ApiKey;
use paylink_mcp::tools::{Caller, ToolFilter, ToolSet};
use paylink_mcp::upstream::{UpstreamClient, UpstreamSettings};
use serde_json::Value;

use super::stream_mock::MockStream;

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

pub fn harness_with(
    base: &str,
    key: &str,
    branch: Option<&str>,
    settings: UpstreamSettings,
) -> Harness {
    let client = Arc::new(UpstreamClient::new(base, settings).unwrap());
    let backend = StreamBackend::new(client, &ApiKey::new(key), branch).unwrap();
    Harness {
        tools: ToolSet::new(
            BackendRules::for_kind(BackendKind::Stream),
            &ToolFilter::default(),
        )
        .unwrap(),
        backend: Arc::new(backend),
        allow_live: false,
        scope: "test-tenant".into(),
    }
}

pub fn harness(mock: &MockStream) -> Harness {
    harness_with(&mock.uri(), &mock.token, None, settings())
}

impl Harness {
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
