//! Stream's refusals as our errors: its error shapes (`{"error": {code, message}}`, FastAPI's
//! `{"detail": ...}`) read into the status rules shared by the REST backends (see
//! `backend::rest`), plus what is Stream's own: a 422 `detail[].loc` names the field, mapped to
//! our argument names.
//!
//! It reads answers only: it must not decide about retries (the upstream client does).

use serde_json::Value;

use crate::backend::rest::{Refused, StatusHints, cut_code, cut_message};
use crate::backend::tolerant::Obj;
use crate::error::Error;
use crate::upstream::{ErrorDecoder, RetryMode, UpstreamResponse};

/// What a caller should do after a create that may have reached Stream: Stream has no
/// idempotency, so only looking for the link (by its reference) tells.
pub(super) const CREATE_MAY_HAVE_HAPPENED: &str =
    "the link may or may not have been created. Do not create it again blindly: look for it first";

/// Reads Stream's error shapes.
pub struct StreamErrors;

/// Maps Stream's field names (in `loc`) to ours.
fn our_field(loc: &[Value]) -> String {
    let mut out = String::new();
    for (i, part) in loc.iter().enumerate() {
        match part {
            // FastAPI prefixes the location: body, query, path.
            Value::String(s) if i == 0 && matches!(s.as_str(), "body" | "query" | "path") => {}
            Value::String(s) => {
                let name = match s.as_str() {
                    "custom_metadata" => "metadata",
                    other => other,
                };
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Value::Number(n) => out.push_str(&format!("[{n}]")),
            _ => {}
        }
    }
    if out.is_empty() {
        "arguments".into()
    } else {
        out
    }
}

impl ErrorDecoder for StreamErrors {
    fn upstream_name(&self) -> &'static str {
        "Stream"
    }

    fn request_id_header(&self) -> &'static str {
        "x-request-id"
    }

    fn decode_error(&self, response: &UpstreamResponse, retry: RetryMode) -> Error {
        let root = response.json().ok().map(Obj);
        // 422 {"detail": [{"loc": [...], "msg": ...}]}
        if let Some(first) = root
            .as_ref()
            .and_then(|r| r.array("detail").first())
            .map(Obj)
        {
            let field = our_field(first.array("loc"));
            let msg = first.str("msg").unwrap_or("is invalid");
            let mut ctx = response.context();
            ctx.code = first.str("type").map(cut_code);
            return Error::upstream_validation(
                field,
                format!("Stream refused it: {}", cut_message(msg)),
                ctx,
            );
        }
        // {"error": {"code", "message", "additional_info"}}; FastAPI also sends {"detail": "..."}.
        let (code, message) = match &root {
            Some(r) => match r.obj("error") {
                Some(e) => (e.str("code"), e.str("message")),
                None => (None, r.str("detail").or(r.str("message"))),
            },
            None => (None, None),
        };
        Refused::new("Stream", response, code, message, None).by_status(
            &StatusHints {
                key_refused: "the Stream API key was refused (check STREAM_API_KEY or your Bearer token)",
                forbidden: "this key may not do that (permissions or branch)",
                read_again: None,
                write_unknown: CREATE_MAY_HAVE_HAPPENED,
            },
            response,
            retry,
        )
    }
}
