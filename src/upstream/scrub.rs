//! The key scrubber: removes a tenant's key, in every form we send it, from everything we take
//! from its upstream.
//!
//! It works on *decoded* text. Matching raw response bytes is not enough: JSON may write any
//! character of a key as a `\uXXXX` escape (`\u0074ok_...`), which only decoding turns back
//! into the key. So the one JSON reader of upstream answers ([`super::json::read`]) scrubs the
//! decoded tree (every string, object keys included, and numbers), and the response's
//! header-derived strings (request id, content type) and transport error texts are scrubbed
//! here too, always *before* anything is cut to length.
//!
//! What is guaranteed: no complete secret (a form listed by the backend: the key, its Base64
//! header form with and without padding, the secret half of a Stream `key:secret` pair) taken
//! from an upstream reaches a caller, a log or the audit file, however it was escaped in JSON;
//! and since truncation only ever happens after scrubbing, a cut can never leave a prefix of a
//! secret that the upstream sent in full. What is not: a secret the upstream sends only in part
//! (split across two fields, or only its first half) is not recognised; nor is one it encodes
//! some other way (reversed, percent-encoded Base64). Only an upstream that holds the key can
//! produce those, and such an upstream could leak it through any channel: the scrubber defends
//! against echoes, not against an upstream that wants to leak.

use std::sync::Arc;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::Error;

/// What a secret is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed: they would match ordinary text.
const MIN_SECRET_LEN: usize = 4;

/// Strings that must never leave the process: a tenant's key in its forms.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Arc<Vec<Zeroizing<String>>>,
    /// A secret could be the text of a JSON number: see [`Scrubber::could_be_a_number`].
    numeric: bool,
}

impl Scrubber {
    /// `secrets` are the forms of one key; too-short ones are dropped (see [`MIN_SECRET_LEN`]).
    pub fn new(secrets: Vec<String>) -> Self {
        let mut secrets: Vec<Zeroizing<String>> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .map(Zeroizing::new)
            .collect();
        // Longest first: a pair `key:secret` is replaced whole before its secret half is.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let numeric = secrets.iter().any(|s| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        });
        Scrubber {
            secrets: Arc::new(secrets),
            numeric,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether a secret is made only of what a number's text is made of. Such a secret can come
    /// back from a number written another way (`9.8765432e7` decodes to 98765432), which no
    /// search of the raw text finds: every decoded answer must then be scrubbed.
    pub fn could_be_a_number(&self) -> bool {
        self.numeric
    }

    /// Whether `bytes` holds a secret as is. A SIMD substring search: this runs on every answer.
    pub fn found_in(&self, bytes: &[u8]) -> bool {
        self.secrets
            .iter()
            .any(|s| memchr::memmem::find(bytes, s.as_bytes()).is_some())
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        self.scrub_changed(text).unwrap_or_else(|| text.to_owned())
    }

    /// Scrubs `text` in place; allocates only when it held a secret.
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Some(clean) = self.scrub_changed(text) {
            *text = clean;
        }
    }

    /// `error` with every text in it scrubbed: the last pass, at the edge, before it is logged,
    /// audited or answered. It catches what earlier passes cannot see: a secret our own
    /// formatting reassembled from pieces that were each harmless (a validation location's parts
    /// joined with dots, a number written in exponent form).
    pub fn scrub_error(&self, mut error: Error) -> Error {
        if self.is_empty() {
            return error;
        }
        let (message, field, upstream) = match &mut error {
            Error::Validation {
                field,
                message,
                upstream,
            } => (message, Some(field), upstream.as_mut()),
            Error::NotFound {
                field,
                message,
                upstream,
            }
            | Error::Upstream {
                field,
                message,
                upstream,
                ..
            } => (message, field.as_mut(), Some(upstream)),
            Error::Auth { message, upstream }
            | Error::RateLimited {
                message, upstream, ..
            }
            | Error::OutcomeUnknown { message, upstream } => (message, None, Some(upstream)),
            Error::UnsupportedByBackend { field, message }
            | Error::ProductNotAllowed { field, message } => (message, Some(field), None),
            Error::LiveGuard { message }
            | Error::Declined { message }
            | Error::ConfirmationRequired { message }
            | Error::CapExceeded { message }
            | Error::Unavailable { message }
            | Error::IdempotencyConflict { message }
            | Error::Internal { message, .. } => (message, None, None),
        };
        self.scrub_in_place(message);
        if let Some(field) = field {
            self.scrub_in_place(field);
        }
        if let Some(upstream) = upstream {
            for text in [&mut upstream.code, &mut upstream.request_id]
                .into_iter()
                .flatten()
            {
                self.scrub_in_place(text);
            }
        }
        error
    }

    /// `Some(scrubbed)` when `text` held a secret, `None` (no allocation) when it did not.
    fn scrub_changed(&self, text: &str) -> Option<String> {
        if !self.found_in(text.as_bytes()) {
            return None;
        }
        let mut out = text.to_owned();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        Some(out)
    }

    /// Scrubs a decoded JSON tree in place: every string, every object key, and every number
    /// (a numeric key echoed as a JSON number).
    pub fn scrub_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Some(clean) = self.scrub_changed(s) {
                    *s = clean;
                }
            }
            Value::Number(n) => {
                if self.found_in(n.to_string().as_bytes()) {
                    *value = Value::String(REDACTED.to_owned());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                let dirty: Vec<String> = map
                    .keys()
                    .filter(|k| self.found_in(k.as_bytes()))
                    .cloned()
                    .collect();
                for key in dirty {
                    if let Some(v) = map.remove(&key) {
                        // Two keys that differ only in their secret collapse into one: better
                        // than keeping either secret.
                        map.insert(self.scrub(&key), v);
                    }
                }
                map.values_mut().for_each(|v| self.scrub_value(v));
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
}

/// Cuts `text` to at most `max_chars` characters, after scrubbing it: the only order in which a
/// cut cannot reveal the start of a secret.
pub(crate) fn scrub_then_cut(scrubber: &Scrubber, text: &str, max_chars: usize) -> String {
    scrubber.scrub(text).chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "tok_Live9QzX7";

    fn scrubber() -> Scrubber {
        Scrubber::new(vec![KEY.into(), "abc".into()])
    }

    #[test]
    fn plain_text_is_scrubbed_and_short_secrets_ignored() {
        let s = Scrubber::new(vec!["secret-key".into(), "c2VjcmV0LWtleQ==".into()]);
        assert_eq!(
            s.scrub("bad key secret-key (c2VjcmV0LWtleQ==)"),
            "bad key [redacted] ([redacted])"
        );
        assert_eq!(scrubber().scrub("abc"), "abc", "3 characters: not a secret");
    }

    #[test]
    fn the_longest_form_is_replaced_first() {
        let s = Scrubber::new(vec!["Sec9Half".into(), "KeyId:Sec9Half".into()]);
        assert_eq!(s.scrub("got KeyId:Sec9Half"), "got [redacted]");
        assert_eq!(s.scrub("got Sec9Half"), "got [redacted]");
    }

    /// Every character of the key written as a `\uXXXX` escape, one at a time and all at once,
    /// in values and in keys: decoding brings the key back, and scrubbing the decoded tree
    /// removes it.
    #[test]
    fn json_escaped_keys_are_scrubbed_after_decoding() {
        let escaped_at = |i: usize| -> String {
            KEY.char_indices()
                .map(|(j, c)| {
                    if j == i || i == usize::MAX {
                        format!("\\u{:04x}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        };
        for i in (0..KEY.len()).chain([usize::MAX]) {
            let e = escaped_at(i);
            let raw = format!(
                r#"{{"error": {{"message": "key {e} refused", "{e}": ["x{e}y", {{"k": "{e}"}}]}}}}"#
            );
            assert!(!raw.contains(KEY), "the raw body hides the key: {raw}");
            let mut v: Value = serde_json::from_str(&raw).unwrap();
            assert!(v.to_string().contains(KEY), "decoding brings it back");
            scrubber().scrub_value(&mut v);
            let text = v.to_string();
            assert!(!text.contains(KEY), "{text}");
            assert_eq!(v["error"]["message"], "key [redacted] refused");
            assert_eq!(v["error"][REDACTED][0], "x[redacted]y");
            assert_eq!(v["error"][REDACTED][1]["k"], REDACTED);
        }
    }

    #[test]
    fn numeric_secrets_echoed_as_numbers_are_scrubbed() {
        let s = Scrubber::new(vec!["98765432".into()]);
        let mut v = json!({"n": 1_987_654_321u64, "m": 5, "f": 98765432.5});
        s.scrub_value(&mut v);
        assert_eq!(v, json!({"n": REDACTED, "m": 5, "f": REDACTED}));
    }

    /// A secret at any offset of a long text, the text then cut at any length: no cut shows any
    /// prefix of the key, because the key is gone before the cut.
    #[test]
    fn scrubbing_comes_before_cutting_at_every_offset() {
        let s = scrubber();
        for offset in 190..=205 {
            let text = format!("{}{KEY}{}", "r".repeat(offset), "t".repeat(50));
            for cut in 1..=text.len() {
                let out = scrub_then_cut(&s, &text, cut);
                for n in 3..=KEY.len() {
                    assert!(
                        !out.contains(&KEY[..n]),
                        "offset {offset}, cut {cut}: {} leaked",
                        &KEY[..n]
                    );
                }
            }
        }
    }

    /// Every text of every kind is scrubbed, and nothing else changes.
    #[test]
    fn an_error_is_scrubbed_in_every_text_of_every_kind() {
        let s = Scrubber::new(vec!["Sz.Pq9.VkRm".into()]);
        let dirty = "got Sz.Pq9.VkRm";
        let ctx = || crate::error::UpstreamContext {
            status: Some(422),
            code: Some(dirty.into()),
            request_id: Some(dirty.into()),
        };
        for e in [
            Error::upstream_validation(dirty, dirty, ctx()),
            Error::not_found(dirty, ctx()).on_field(dirty),
            Error::auth(dirty, ctx()),
            Error::unsupported(dirty, "stripe"),
            Error::live_guard(dirty),
            Error::rate_limited(dirty, Some(1), ctx()),
            Error::upstream_failure(dirty, ctx()).on_field(dirty),
            Error::outcome_unknown(dirty, ctx()),
            Error::idempotency_conflict(dirty),
            Error::internal_retryable(dirty),
        ] {
            let (kind, retry_safe) = (e.kind(), e.retry_safe());
            let clean = s.scrub_error(e);
            let envelope = clean.envelope();
            assert!(!envelope.contains("Sz.Pq9"), "{envelope}");
            assert!(envelope.contains("[redacted]"), "{envelope}");
            assert_eq!((clean.kind(), clean.retry_safe()), (kind, retry_safe));
        }
    }

    #[test]
    fn secrets_that_could_be_numbers_are_known() {
        assert!(Scrubber::new(vec!["98765432".into()]).could_be_a_number());
        assert!(Scrubber::new(vec!["KeyId:Sec".into(), "1.5e10".into()]).could_be_a_number());
        assert!(!scrubber().could_be_a_number());
        assert!(!Scrubber::default().could_be_a_number());
    }

    #[test]
    fn nothing_is_allocated_for_clean_text() {
        assert!(scrubber().scrub_changed("nothing to see").is_none());
        let mut v = json!({"a": ["b", {"c": 1}]});
        let before = v.clone();
        scrubber().scrub_value(&mut v);
        assert_eq!(v, before);
        Scrubber::default().scrub_value(&mut v);
        assert_eq!(v, before);
    }
}
