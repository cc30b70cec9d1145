//! The key layout: every key under [`PREFIX`], then its family, then (for a tenant's data) the
//! tenant's scope in braces, then what it names. See the module documentation of
//! [`crate::store`] for the families and their keys.
//!
//! It builds names only: it must not read or write anything.

use sha2::{Digest, Sha256};

/// The prefix of every key this server writes. The version changes when a family's layout or
/// encoding changes incompatibly, so that replicas of two versions never read each other's data.
pub(crate) const PREFIX: &str = "paylink:v1:";

/// The longest tenant scope put in a key as it is; a longer one (or one with other characters)
/// is hashed first. Scopes are hashes already (64 hex digits) or short fixed names.
const MAX_SCOPE: usize = 80;

/// One kind of data in the store, with keys of its own: `paylink:v1:<family>:...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Family(&'static str);

impl Family {
    /// A family named `name` (lower-case letters and `_`, by convention).
    pub(crate) const fn new(name: &'static str) -> Self {
        Family(name)
    }

    /// A key of one tenant's data: `paylink:v1:<family>:{<scope>}:<what>`. The braces are a
    /// Redis Cluster hash tag: every key of one tenant in one family hashes to the same slot,
    /// so a script may touch them together.
    pub(crate) fn tenant_key(&self, scope: &str, what: &str) -> String {
        format!("{PREFIX}{}:{{{}}}:{what}", self.0, safe_scope(scope))
    }

    /// A key not tied to one tenant: `paylink:v1:<family>:<what>`.
    pub(crate) fn key(&self, what: &str) -> String {
        format!("{PREFIX}{}:{what}", self.0)
    }
}

/// The scope as it appears in keys: itself when short and plain, else its SHA-256 in hex. Never
/// a raw caller key: scopes are hashes (see `tenant::Tenant::scope`); this only keeps keys
/// bounded and free of brace characters whatever a scope holds.
pub(crate) fn safe_scope(scope: &str) -> String {
    let plain = scope.len() <= MAX_SCOPE
        && !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'#' | b'.'));
    if plain {
        scope.to_owned()
    } else {
        Sha256::digest(scope.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_versioned_and_tagged_by_tenant() {
        let f = Family::new("idem");
        let scope = "ab".repeat(32);
        assert_eq!(
            f.tenant_key(&scope, "index"),
            format!("paylink:v1:idem:{{{scope}}}:index")
        );
        assert_eq!(f.key("pool"), "paylink:v1:idem:pool");
        let odd = f.tenant_key("a}b{c", "x");
        assert!(
            odd.starts_with("paylink:v1:idem:{") && odd.matches('{').count() == 1,
            "{odd}"
        );
        let long = safe_scope(&"x".repeat(500));
        assert_eq!(long.len(), 64);
    }
}
