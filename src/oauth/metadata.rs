//! Metadata both ways: the issuer's (RFC 8414 / OpenID discovery), read to find its keys, and
//! this server's own protected-resource metadata (RFC 9728), published for clients.

use serde_json::{Value, json};
use url::Url;

use super::fetch::{FetchError, IdpClient};
use super::settings::{OAuthSettings, check_endpoint};

/// What this server reads from the issuer's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuerMetadata {
    pub jwks_uri: String,
}

/// The metadata URLs of `issuer`, in the order the MCP authorization spec gives clients: RFC
/// 8414 with path insertion, OpenID discovery with path insertion, then (for issuers with a path)
/// OpenID discovery appended to the path.
pub(crate) fn discovery_urls(issuer: &str) -> Vec<String> {
    let Ok(url) = Url::parse(issuer) else {
        return Vec::new();
    };
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let mut urls = vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
    ];
    if !path.is_empty() {
        urls.push(format!("{origin}{path}/.well-known/openid-configuration"));
    }
    urls
}

/// Reads the issuer's metadata: the first document, in [`discovery_urls`] order, that names
/// exactly this issuer (RFC 8414 §3.3) and an acceptable `jwks_uri`.
pub(crate) async fn discover(client: &IdpClient, issuer: &str) -> Result<IssuerMetadata, String> {
    let mut problems = Vec::new();
    for url in discovery_urls(issuer) {
        let doc = match client.get_json(&url).await {
            Ok(doc) => doc,
            Err(FetchError::Status(404)) => continue,
            // The host gave no answer at all: its other URLs would not either.
            Err(e @ (FetchError::Unreachable(_) | FetchError::TimedOut)) => {
                problems.push(format!("{url}: {e}"));
                break;
            }
            Err(e) => {
                problems.push(format!("{url}: {e}"));
                continue;
            }
        };
        match read(&doc, issuer) {
            Ok(metadata) => return Ok(metadata),
            Err(why) => problems.push(format!("{url}: {why}")),
        }
    }
    if problems.is_empty() {
        problems.push("no metadata document found (404 everywhere)".to_owned());
    }
    Err(problems.join("; "))
}

fn read(doc: &Value, issuer: &str) -> Result<IssuerMetadata, String> {
    let named = doc["issuer"].as_str().unwrap_or_default();
    if named != issuer {
        // A configuration error, not the caller's: say exactly what differs.
        return Err(format!(
            "its issuer is `{named}` but --oauth-issuer is `{issuer}`: they must match exactly"
        ));
    }
    let jwks_uri = doc["jwks_uri"]
        .as_str()
        .ok_or_else(|| "no jwks_uri".to_owned())?;
    check_endpoint(jwks_uri).map_err(|why| format!("jwks_uri {why}"))?;
    Ok(IssuerMetadata {
        jwks_uri: jwks_uri.to_owned(),
    })
}

/// This server's protected-resource metadata document (RFC 9728 §2).
pub(crate) fn protected_resource(settings: &OAuthSettings) -> Value {
    json!({
        "resource": settings.resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": [settings.scopes.read, settings.scopes.write],
        "bearer_methods_supported": ["header"],
        "resource_name": "paylink-mcp",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_follows_the_spec_order() {
        assert_eq!(
            discovery_urls("https://auth.example.com"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            discovery_urls("https://auth.example.com/realms/pay/"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/realms/pay",
                "https://auth.example.com/.well-known/openid-configuration/realms/pay",
                "https://auth.example.com/realms/pay/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn metadata_must_name_this_issuer_and_a_safe_jwks_uri() {
        let iss = "https://auth.example.com";
        let ok = json!({"issuer": iss, "jwks_uri": "https://auth.example.com/jwks"});
        assert_eq!(
            read(&ok, iss).unwrap().jwks_uri,
            "https://auth.example.com/jwks"
        );
        let e = read(&ok, "https://auth.example.com/").unwrap_err();
        assert!(e.contains("must match exactly"), "{e}");
        let plain = json!({"issuer": iss, "jwks_uri": "http://keys.example.com/jwks"});
        assert!(read(&plain, iss).is_err());
        assert!(read(&json!({"issuer": iss}), iss).is_err());
        let loopback = json!({"issuer": iss, "jwks_uri": "http://127.0.0.1:9/jwks"});
        assert!(read(&loopback, iss).is_ok());
    }
}
