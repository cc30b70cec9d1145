//! What a valid access token grants: who (issuer and subject) and how much (read or write).

use super::settings::ScopeNames;

/// How much a token allows. Ordered: a broader access covers every narrower one (the write
/// scope implies the read scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// A valid token with neither scope: nothing.
    Nothing,
    /// The read tools.
    Read,
    /// Every tool.
    Write,
}

impl Access {
    /// The access granted by a token's scopes.
    pub fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>, names: &ScopeNames) -> Self {
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
    pub fn allows(self, need: Access) -> bool {
        self >= need
    }
}

/// A checked token's meaning. Holds nothing of the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub issuer: String,
    pub subject: String,
    pub access: Access,
    /// `exp` (seconds since the epoch), when the token says.
    pub expires_at: Option<u64>,
}

impl Grant {
    /// A short hash of (issuer, subject) for logs and audit lines: names the user without
    /// printing their identifier.
    pub fn fingerprint(&self) -> String {
        let iss = self.issuer.as_bytes();
        let sub = self.subject.as_bytes();
        let mut bytes = Vec::with_capacity(16 + iss.len() + sub.len());
        for part in [iss, sub] {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        crate::secret::fingerprint(&bytes)
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
    fn the_fingerprint_names_issuer_and_subject_together() {
        let g = |iss: &str, sub: &str| Grant {
            issuer: iss.into(),
            subject: sub.into(),
            access: Access::Read,
            expires_at: None,
        };
        assert_eq!(g("a", "b").fingerprint().len(), 12);
        assert_eq!(g("a", "b").fingerprint(), g("a", "b").fingerprint());
        assert_ne!(g("a", "bc").fingerprint(), g("ab", "c").fingerprint());
        assert_ne!(g("a", "b").fingerprint(), g("x", "b").fingerprint());
    }
}
