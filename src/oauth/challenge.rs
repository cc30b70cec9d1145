//! The `WWW-Authenticate: Bearer` challenge of OAuth mode (RFC 6750 §3, RFC 9728 §5.1), on one
//! line, with every value a quoted string.

/// The challenge's error code (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    /// A token was sent and is not valid (401).
    InvalidToken,
    /// The token is valid but lacks a scope (403).
    InsufficientScope,
}

impl ErrorCode {
    fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A Bearer challenge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Challenge<'a> {
    /// This server's protected-resource metadata URL.
    pub resource_metadata: &'a str,
    /// The scopes needed (space-separated).
    pub scope: &'a str,
    /// No error when no credentials came with the request (RFC 6750 §3.1).
    pub error: Option<ErrorCode>,
    /// A short human-readable reason; never anything the caller sent.
    pub description: Option<&'a str>,
}

/// `value` as the inside of a quoted-string: `"` and `\` escaped, anything outside visible
/// ASCII and space replaced (a header value must stay one clean line).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

impl Challenge<'_> {
    /// The header value: `Bearer resource_metadata="…", scope="…"[, error="…"][, error_description="…"]`.
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "Bearer resource_metadata=\"{}\", scope=\"{}\"",
            quoted(self.resource_metadata),
            quoted(self.scope)
        );
        if let Some(error) = self.error {
            out.push_str(&format!(", error=\"{}\"", error.as_str()));
            if let Some(description) = self.description {
                out.push_str(&format!(", error_description=\"{}\"", quoted(description)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn challenges_for_no_token_a_bad_token_and_a_narrow_token() {
        let none = Challenge {
            resource_metadata: PRM,
            scope: "payment_links:read",
            error: None,
            description: Some("ignored without an error"),
        };
        assert_eq!(
            none.render(),
            format!("Bearer resource_metadata=\"{PRM}\", scope=\"payment_links:read\"")
        );
        let bad = Challenge {
            error: Some(ErrorCode::InvalidToken),
            description: Some("the token has expired"),
            ..none
        };
        assert_eq!(
            bad.render(),
            format!(
                "Bearer resource_metadata=\"{PRM}\", scope=\"payment_links:read\", error=\"invalid_token\", error_description=\"the token has expired\""
            )
        );
        let narrow = Challenge {
            scope: "payment_links:write",
            error: Some(ErrorCode::InsufficientScope),
            description: None,
            ..none
        };
        assert!(
            narrow
                .render()
                .ends_with("scope=\"payment_links:write\", error=\"insufficient_scope\"")
        );
        for rendered in [none.render(), bad.render(), narrow.render()] {
            assert!(http::HeaderValue::from_str(&rendered).is_ok(), "{rendered}");
        }
    }

    #[test]
    fn values_are_escaped_onto_one_clean_line() {
        let odd = Challenge {
            resource_metadata: "https://x/\"a\\b",
            scope: "s",
            error: Some(ErrorCode::InvalidToken),
            description: Some("line\r\nbreak é"),
        };
        let rendered = odd.render();
        assert!(
            rendered.contains(r#"resource_metadata="https://x/\"a\\b""#),
            "{rendered}"
        );
        assert!(
            rendered.contains(r#"error_description="line??break ?""#),
            "{rendered}"
        );
        assert!(http::HeaderValue::from_str(&rendered).is_ok());
    }
}
