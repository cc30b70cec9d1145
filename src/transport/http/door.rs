//! OAuth mode at the HTTP edge: the refusals the MCP authorization spec asks for, the scope a
//! request needs, and the protected-resource metadata routes.
//!
//! - 401 with `WWW-Authenticate: Bearer resource_metadata="…", scope="<read>"` when no token
//!   came, plus `error="invalid_token"` and a short reason when a bad one did;
//! - 403 `insufficient_scope` naming the scope a tool needs, before rmcp sees the request;
//! - 503 with `Retry-After` when the issuer cannot be asked;
//! - the metadata document at the path-inserted well-known URL and at the root.
//!
//! Which tool needs which scope comes from [`ToolId::writes`]: writers need the write scope,
//! everything else the read scope.

// The error side of these results is the refusal to send; it is built only on that path.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use serde::Deserialize;

use super::reply::refuse;
use crate::oauth::{Access, ResourceServer};
use crate::tools::id::ToolId;

fn with_challenge(mut response: Response, challenge: &str) -> Response {
    // The challenge is built from the settings and fixed texts: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// 401: no token (`reason` None), or a token that is not valid.
pub(super) fn unauthorized(server: &ResourceServer, reason: Option<&str>) -> Response {
    let message = match reason {
        None => {
            "send an access token from this server's authorization server as `Authorization: Bearer <token>` (see WWW-Authenticate)"
        }
        Some(why) => why,
    };
    with_challenge(
        refuse(StatusCode::UNAUTHORIZED, "unauthorized", message),
        &server.challenge_401(reason),
    )
}

/// 403: a valid token without the scope `need` calls for.
pub(super) fn insufficient_scope(server: &ResourceServer, need: Access) -> Response {
    let message = format!(
        "this access token lacks the `{}` scope this request needs; ask the authorization server for it",
        server.scope_for(need)
    );
    with_challenge(
        refuse(StatusCode::FORBIDDEN, "insufficient_scope", &message),
        &server.challenge_403(need),
    )
}

/// 503: the token cannot be checked now.
pub(super) fn unavailable(retry_after: Duration) -> Response {
    let mut response = refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the authorization server cannot be reached to check this token; retry shortly",
    );
    let secs = retry_after.as_secs().max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    params: CallParams<'a>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// What a request needs: the write scope for a `tools/call` of a writing tool, the read scope
/// for anything else. A body this cannot read is refused (400) rather than guessed at: rmcp
/// must never run a call the door did not see.
pub(super) fn needs(method: &Method, body: &[u8]) -> Result<Access, Response> {
    if method != Method::POST {
        return Ok(Access::Read);
    }
    let bad = |message: &str| refuse(StatusCode::BAD_REQUEST, "bad_request", message);
    if body.trim_ascii_start().first() == Some(&b'[') {
        return Err(bad(
            "send one JSON-RPC message per request: batches are not part of MCP over HTTP",
        ));
    }
    let message: Message<'_> = serde_json::from_slice(body)
        .map_err(|_| bad("the body is not a JSON-RPC message (one JSON object)"))?;
    if message.method.as_deref() != Some("tools/call") {
        return Ok(Access::Read);
    }
    let call: Call<'_> = serde_json::from_slice(body)
        .map_err(|_| bad("a tools/call must name its tool in params.name"))?;
    Ok(match ToolId::from_name(&call.params.name) {
        Some(tool) if tool.writes() => Access::Write,
        // A read tool, or a name rmcp will answer "tool not found".
        _ => Access::Read,
    })
}

/// `GET /.well-known/*` in OAuth mode: the metadata document at its paths, a 404 elsewhere.
pub(super) async fn well_known(
    State(server): State<Arc<ResourceServer>>,
    request: Request,
) -> Response {
    let path = request.uri().path();
    if !server.settings().metadata_paths.iter().any(|p| p == path) {
        return refuse(StatusCode::NOT_FOUND, "not_found", "not found");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the metadata document is read with GET",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut response = Response::new(axum::body::Body::from(server.document().to_owned()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Public metadata: browser-based clients read it from other origins.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(body: &str) -> Result<Access, StatusCode> {
        needs(&Method::POST, body.as_bytes()).map_err(|r| r.status())
    }

    #[test]
    fn the_scope_a_request_needs_comes_from_its_tool() {
        let call = |name: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
            )
        };
        assert_eq!(need(&call("create_payment_link")), Ok(Access::Write));
        assert_eq!(need(&call("update_payment_link_status")), Ok(Access::Write));
        assert_eq!(need(&call("get_payment_link")), Ok(Access::Read));
        assert_eq!(need(&call("no_such_tool")), Ok(Access::Read));
        assert_eq!(
            need(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Ok(Access::Read)
        );
        assert_eq!(
            need(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Ok(Access::Read)
        );
        assert!(matches!(needs(&Method::GET, b"[]"), Ok(Access::Read)));
    }

    #[test]
    fn what_the_door_cannot_read_is_refused() {
        for body in [
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"create_payment_link\"}}]",
            "  [",
            "not json",
            "",
            "42",
            r#"{"method":"tools/call","params":{}}"#,
            r#"{"method":"tools/call","params":{"name":7}}"#,
            // A duplicated key could be read one way here and another way by rmcp.
            r#"{"method":"tools/list","method":"tools/call","params":{"name":"create_payment_link"}}"#,
            r#"{"method":"tools/call","params":{"name":"get_payment_link","name":"create_payment_link"}}"#,
        ] {
            assert_eq!(need(body), Err(StatusCode::BAD_REQUEST), "{body}");
        }
    }
}
