//! Keys: held in a type that cannot be printed, wiped from memory when dropped, and known to logs
//! only by a short fingerprint.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// An upstream API key or access token. `Debug` and `Display` print `[redacted]`; the bytes are
/// zeroed when the last copy is dropped.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(Zeroizing<String>);

impl ApiKey {
    pub(crate) fn new(raw: impl Into<String>) -> Self {
        ApiKey(Zeroizing::new(raw.into()))
    }

    /// The key itself, for building an upstream request header. Never log this.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// A short, stable, non-reversible name for logs: the first 12 hex digits of SHA-256.
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// SHA-256 of `bytes`, first 6 bytes in hex: enough to tell tenants apart in logs, far too little
/// to brute-force a key from.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let k = ApiKey::new("sk_test_supersecret");
        assert!(!format!("{k:?}").contains("supersecret"));
        assert!(!format!("{k}").contains("supersecret"));
        assert_eq!(k.expose(), "sk_test_supersecret");
    }

    #[test]
    fn fingerprint_is_short_stable_and_distinct() {
        let a = ApiKey::new("a").fingerprint();
        assert_eq!(a.len(), 12);
        assert_eq!(a, ApiKey::new("a").fingerprint());
        assert_ne!(a, ApiKey::new("b").fingerprint());
    }
}
