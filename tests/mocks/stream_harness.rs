//! Harnesses over a Stream backend (see `harness.rs`).

#![allow(dead_code)]

use std::sync::Arc;

use paylink_mcp::backend::stream::StreamBackend;
use paylink_mcp::model::BackendKind;
use paylink_mcp::secret::ApiKey;
use paylink_mcp::upstream::{UpstreamClient, UpstreamSettings};

use super::harness::{Harness, settings};
use super::stream_mock::MockStream;

pub fn harness_with(
    base: &str,
    key: &str,
    branch: Option<&str>,
    settings: UpstreamSettings,
) -> Harness {
    let client = Arc::new(UpstreamClient::new(base, settings));
    let backend = StreamBackend::new(client, &ApiKey::new(key), branch).unwrap();
    Harness::new(BackendKind::Stream, Arc::new(backend))
}

pub fn harness(mock: &MockStream) -> Harness {
    harness_with(&mock.uri(), &mock.token, None, settings())
}
