//! The HTTP layer's own refusals: a status and the same JSON envelope tool errors use,
//! `{"error": {kind, message, retry_safe}}`, so a client has one shape to read.
//!
//! Messages are fixed text or built from values this server chose (header names, allow-lists):
//! never from a caller's token.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// The realm of every Bearer challenge.
pub(crate) const REALM_CHALLENGE: &str = "Bearer realm=\"paylink-mcp\"";

/// A JSON refusal.
pub(crate) fn refuse(status: StatusCode, kind: &str, message: &str) -> Response {
    // Refused before any processing: sending the same request again is safe.
    let retry_safe = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::REQUEST_TIMEOUT
    );
    let body = serde_json::json!({
        "error": {"kind": kind, "message": message, "retry_safe": retry_safe}
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 401 with the Bearer challenge.
pub(crate) fn unauthorized(message: &str) -> Response {
    let mut response = refuse(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(REALM_CHALLENGE),
    );
    response
}

/// 429 (or 503 for the whole-process cap) with `Retry-After` in whole seconds, at least 1.
pub(crate) fn too_many(status: StatusCode, message: &str, retry_after: Duration) -> Response {
    let mut response = refuse(status, "rate_limited", message);
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_envelope_and_headers() {
        let r = unauthorized("no key");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], REALM_CHALLENGE);
        let r = too_many(
            StatusCode::TOO_MANY_REQUESTS,
            "slow down",
            Duration::from_millis(1500),
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = too_many(StatusCode::TOO_MANY_REQUESTS, "slow down", Duration::ZERO);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
