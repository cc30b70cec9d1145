//! Caller metadata: string keys to string values, within the limits every backend accepts.

use std::collections::BTreeMap;

use crate::error::Error;

/// Metadata keys starting with this belong to paylink-mcp (`paylink_name`, `paylink_request_id`):
/// callers may not set them, and answers do not show them.
pub(crate) const RESERVED_METADATA_PREFIX: &str = "paylink_";

/// Key-value pairs attached to a link: at most 50 keys, keys 1..=40 characters without `[` or `]`
/// (they would break Stripe's bracket encoding), values at most 500 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub const MAX_KEYS: usize = 50;
    pub const MAX_KEY_CHARS: usize = 40;
    pub const MAX_VALUE_CHARS: usize = 500;

    /// Parses caller metadata. Keys starting with `paylink_` belong to this server and are refused;
    /// `extra_keys` is how many keys the server itself will add (they count against the limit).
    pub fn parse(
        raw: BTreeMap<String, String>,
        field: &str,
        extra_keys: usize,
    ) -> Result<Self, Error> {
        let max = Self::MAX_KEYS.saturating_sub(extra_keys);
        if raw.len() > max {
            return Err(Error::validation(
                field,
                format!("at most {max} keys are allowed here, got {}", raw.len()),
            ));
        }
        for (k, v) in &raw {
            if k.is_empty() {
                return Err(Error::validation(field, "keys must not be empty"));
            }
            // The field names the key as sent, so the caller can find it; a key too long to be
            // valid is still shown whole up to a sane bound.
            let key_field = format!("{field}.{}", super::currency::truncate(k, 200));
            let chars = k.chars().count();
            if chars > Self::MAX_KEY_CHARS {
                return Err(Error::validation(
                    key_field,
                    format!(
                        "keys must be at most {} characters, this one has {chars}",
                        Self::MAX_KEY_CHARS
                    ),
                ));
            }
            if k.contains(['[', ']']) || k.chars().any(char::is_control) {
                return Err(Error::validation(
                    key_field,
                    "keys must not contain `[`, `]` or control characters",
                ));
            }
            if k.starts_with(RESERVED_METADATA_PREFIX) {
                return Err(Error::validation(
                    key_field,
                    format!(
                        "keys starting with `{RESERVED_METADATA_PREFIX}` are reserved by paylink-mcp; choose another key"
                    ),
                ));
            }
            if v.chars().count() > Self::MAX_VALUE_CHARS {
                return Err(Error::validation(
                    key_field,
                    format!(
                        "values must be at most {} characters",
                        Self::MAX_VALUE_CHARS
                    ),
                ));
            }
        }
        Ok(Metadata(raw))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_within_limits() {
        let m = Metadata::parse(map(&[("order", "42")]), "metadata", 0).unwrap();
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn limits_keys_counting_the_servers_own() {
        let many: BTreeMap<_, _> = (0..50)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(Metadata::parse(many.clone(), "metadata", 0).is_ok());
        let e = Metadata::parse(many, "metadata", 2).unwrap_err();
        assert_eq!(e.field(), Some("metadata"));
    }

    #[test]
    fn refuses_bad_keys_and_values_naming_the_key() {
        let long_key = "k".repeat(41);
        let e = Metadata::parse(map(&[(&long_key, "v")]), "metadata", 0).unwrap_err();
        assert!(e.field().unwrap().starts_with("metadata.k"));
        assert!(Metadata::parse(map(&[("", "v")]), "metadata", 0).is_err());
        assert!(Metadata::parse(map(&[("a[b]", "v")]), "metadata", 0).is_err());
        let long_val = "v".repeat(501);
        let e = Metadata::parse(map(&[("note", &long_val)]), "metadata", 0).unwrap_err();
        assert_eq!(e.field(), Some("metadata.note"));
        let e = Metadata::parse(map(&[("paylink_name", "x")]), "metadata", 0).unwrap_err();
        assert_eq!(e.field(), Some("metadata.paylink_name"));
    }
}
