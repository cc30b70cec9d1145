//! What a valid access token grants: who (issuer and subject) and how much (read or write).

use super::settings::ScopeNames;

/// How much a token allows. Ordered: a broader access covers every narrower one (the write
/// scope implies the read scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    /// A valid token with neither scope: nothing.
    Nothing,
    /// The read tools.
    Read,
    /// Every tool.
    Write,
}

impl Access {
    /// The access granted by a token's scopes.
    pub(crate) fn from_scopes<'a>(
        scopes: impl IntoIterator<Item = &'a str>,
        names: &ScopeNames,
    ) -> Self {
        let mut access = Access::Nothing;
        for scope in scopes {
            if scope == names.write {
                return Access::Write;
            }
            if scope == names.read {
                access = Access::Read;
            }
        }
        access
    }

    /// True when this access covers `need`.
    pub(crate) fn allows(self, need: Access) -> bool {
        self >= need
    }
}

/// A checked token's meaning. Holds nothing of the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub issuer: String,
    pub subject: String,
    pub access: Access,
    /// `exp` (seconds since the epoch), when the token says.
    pub expires_at: Option<u64>,
}

/// The key of OAuth callers' log fingerprints. Unlike an API key, a subject is often guessable
/// (an e-mail address): an unkeyed hash of it in the logs would give it away to anyone who tries
/// a list of addresses. Keyed, the fingerprint says nothing without the key.
pub(crate) struct FingerprintKey(ring::hmac::Key);

impl FingerprintKey {
    /// From the operator's secret (`PAYLINK_OAUTH_FINGERPRINT_KEY`): replicas and restarts that
    /// share it name a user alike.
    pub(crate) fn configured(secret: &[u8]) -> Self {
        FingerprintKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// A key of this process's own: fingerprints hold until it stops.
    pub(crate) fn random() -> Result<Self, String> {
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map(FingerprintKey)
            .map_err(|_| "cannot make a random key for the OAuth log fingerprints".to_owned())
    }
}

impl Grant {
    /// A short keyed hash of (issuer, subject) for logs and audit lines: names the user without
    /// printing their identifier, in the format of an API key's fingerprint (12 hex digits).
    pub(crate) fn fingerprint(&self, key: &FingerprintKey) -> String {
        let mut context = ring::hmac::Context::with_key(&key.0);
        for part in [self.issuer.as_bytes(), self.subject.as_bytes()] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let tag = context.sign();
        tag.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_covers_read_and_unknown_scopes_grant_nothing() {
        let names = ScopeNames {
            read: "r".into(),
            write: "w".into(),
        };
        assert_eq!(Access::from_scopes(["x", "r"], &names), Access::Read);
        assert_eq!(Access::from_scopes(["w"], &names), Access::Write);
        assert_eq!(Access::from_scopes(["r", "w"], &names), Access::Write);
        assert_eq!(Access::from_scopes(["rw", "R"], &names), Access::Nothing);
        assert!(Access::Write.allows(Access::Read));
        assert!(!Access::Read.allows(Access::Write));
        assert!(!Access::Nothing.allows(Access::Read));
    }

    #[test]
    fn the_fingerprint_names_issuer_and_subject_together_under_a_key() {
        let g = |iss: &str, sub: &str| Grant {
            issuer: iss.into(),
            subject: sub.into(),
            access: Access::Read,
            expires_at: None,
        };
        let key = FingerprintKey::random().unwrap();
        let f = |grant: Grant| grant.fingerprint(&key);
        assert_eq!(f(g("a", "b")).len(), 12);
        assert!(f(g("a", "b")).bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(f(g("a", "b")), f(g("a", "b")));
        assert_ne!(f(g("a", "bc")), f(g("ab", "c")));
        assert_ne!(f(g("a", "b")), f(g("x", "b")));
        // Not the unkeyed hash a dictionary of addresses would find.
        let alice = g("https://as", "alice@example.com");
        let mut unkeyed = Vec::new();
        for part in ["https://as", "alice@example.com"] {
            unkeyed.extend_from_slice(&(part.len() as u64).to_be_bytes());
            unkeyed.extend_from_slice(part.as_bytes());
        }
        assert_ne!(f(alice.clone()), crate::secret::fingerprint(&unkeyed));
        // Another process's key names the same user otherwise; a shared secret, alike.
        let other = FingerprintKey::random().unwrap();
        assert_ne!(alice.fingerprint(&other), f(alice.clone()));
        let secret = [7u8; 32];
        assert_eq!(
            alice.fingerprint(&FingerprintKey::configured(&secret)),
            alice.fingerprint(&FingerprintKey::configured(&secret))
        );
    }
}
