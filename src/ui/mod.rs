//! The link card: an MCP Apps view (SEP-1865, extension `io.modelcontextprotocol/ui`) that a
//! host renders in a sandboxed iframe for the results of `create_payment_link`,
//! `get_payment_link` and `update_payment_link_status`.
//!
//! This module owns the `ui://` resource: its URI, the HTML compiled into the binary, the
//! `resources/list` entry, the `resources/read` content with its CSP and permission metadata,
//! and the tool `_meta` that points a tool at it. It imports nothing of the crate.
//!
//! The HTML is one self-contained file, built from `ui/link-card/` by `scripts/build-ui` and
//! checked in, so that `cargo build` needs no Node. It talks to the host with plain JSON-RPC
//! over `postMessage`, fetches nothing, and gets its data from the tool result the host hands it
//! and from tool calls it asks the host to make. Clients without MCP Apps ignore all of this:
//! tool results are the same with or without it.

use rmcp::model::{
    ListResourcesResult, MetaObject, ReadResourceResult, Resource, ResourceContents,
};
use serde_json::json;

/// The card's resource URI, named by the tools' `_meta.ui.resourceUri`.
pub(crate) const LINK_CARD_URI: &str = "ui://paylink/link-card.html";

/// The MCP Apps mime type of an HTML view.
pub(crate) const MCP_APP_MIME: &str = "text/html;profile=mcp-app";

/// The extension's identifier, declared in the server's capabilities.
pub(crate) const EXTENSION_ID: &str = "io.modelcontextprotocol/ui";

/// The card, as `scripts/build-ui` bundled it.
pub(crate) const LINK_CARD_HTML: &str = include_str!("link-card.html");

/// The `_meta` of a tool whose results the card renders: the nested key of the stable spec and
/// the flat `ui/resourceUri` that older hosts read (deprecated, and still written by the
/// official SDK's `registerAppTool` for them).
pub(crate) fn tool_meta() -> MetaObject {
    let mut meta = MetaObject::new();
    meta.insert("ui".into(), json!({ "resourceUri": LINK_CARD_URI }));
    meta.insert("ui/resourceUri".into(), json!(LINK_CARD_URI));
    meta
}

/// The card's `_meta.ui`: an empty CSP (no connect, resource, frame or base-URI origin: the
/// card loads and fetches nothing) and the one permission its copy button uses. A border,
/// because the card is a card.
fn resource_meta() -> MetaObject {
    let mut meta = MetaObject::new();
    meta.insert(
        "ui".into(),
        json!({
            "csp": {
                "connectDomains": [],
                "resourceDomains": [],
                "frameDomains": [],
                "baseUriDomains": [],
            },
            "permissions": { "clipboardWrite": {} },
            "prefersBorder": true,
        }),
    );
    meta
}

/// The `resources/list` entry.
fn link_card_resource() -> Resource {
    Resource::new(LINK_CARD_URI, "payment_link_card")
        .with_title("Payment link card")
        .with_description(
            "An MCP Apps view of a payment link: name, status, items, total, URL and QR code, \
             with refresh and activate/deactivate through the host.",
        )
        .with_mime_type(MCP_APP_MIME)
        .with_size(LINK_CARD_HTML.len() as u64)
        .with_meta(resource_meta())
}

/// Every resource the server offers: the card.
pub(crate) fn list() -> ListResourcesResult {
    ListResourcesResult::with_all_items(vec![link_card_resource()])
}

/// The content of `uri`, or `None` when the server has no such resource.
pub(crate) fn read(uri: &str) -> Option<ReadResourceResult> {
    (uri == LINK_CARD_URI).then(|| {
        ReadResourceResult::new(vec![
            ResourceContents::text(LINK_CARD_HTML, LINK_CARD_URI)
                .with_mime_type(MCP_APP_MIME)
                .with_meta(resource_meta()),
        ])
    })
}
