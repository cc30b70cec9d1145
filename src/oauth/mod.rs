//! OAuth mode: this server as an OAuth 2.1 resource server (the MCP authorization spec).
//!
//! Callers present access tokens issued by the operator's authorization server; this module
//! checks them and says what they grant. It owns:
//!
//! - [`settings`]: the checked options (issuer, resource URL and audience, scope names, leeway);
//! - [`resource`]: [`ResourceServer`], a token in and a [`Grant`] or a refusal out;
//! - [`verify`]: JWT access tokens (RFC 9068) against the issuer's keys, on [`crypto`]'s ring
//!   provider; [`jwks`]: those keys, fetched through the issuer's [`metadata`] and cached;
//! - [`introspect`]: opaque tokens (RFC 7662);
//! - [`metadata`]: the issuer's metadata, read, and this server's protected-resource metadata
//!   (RFC 9728), written; [`challenge`]: the `WWW-Authenticate` header of a refusal.
//!
//! It knows nothing of HTTP routes, MCP or tools: the transport asks it about a token and
//! decides what a request needs (`Access::Read` or `Access::Write`). The token itself is never
//! kept, logged or forwarded; only a hash of (issuer, subject) names the caller.

pub(crate) mod challenge;
pub(crate) mod crypto;
pub(crate) mod fetch;
pub(crate) mod grant;
pub(crate) mod introspect;
pub(crate) mod jwks;
pub(crate) mod metadata;
pub(crate) mod resource;
pub(crate) mod settings;
pub(crate) mod verify;

pub(crate) use grant::Access;
pub(crate) use resource::{Failure, ResourceServer};
pub(crate) use settings::{OAuthSecrets, OAuthSettings};

#[cfg(test)]
mod testkit;
