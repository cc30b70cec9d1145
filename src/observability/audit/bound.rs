//! How an audit line stays bounded: the caps, the arguments recorded whole or as hash, length
//! and prefix, and every other string clipped to a length measured as escaped JSON.
//!
//! It bounds text only: it must not build, write or sync lines.

use std::io::{self, Write};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Arguments whose compact JSON is longer than this many bytes are not recorded in full.
pub(crate) const ARGUMENTS_CAP: usize = 8 * 1024;

/// The same cap for a write refused before any upstream call (its short line has no prefix).
pub(crate) const REFUSED_ARGUMENTS_CAP: usize = 1024;

/// The longest an audit line can be, newline included. What makes it so: the arguments take at
/// most [`ARGUMENTS_CAP`] bytes, every other string is cut (see the caps below), and a line that
/// would still be longer (it cannot, by the sum of the caps; a unit test checks it) is replaced by
/// its short form.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// The longest line of a write refused before any upstream call (see [`REFUSED_ARGUMENTS_CAP`]),
/// newline included: what a flood of invalid writes can add per call.
#[cfg(test)]
pub(crate) const MAX_REFUSED_LINE_BYTES: usize = 4 * 1024;

/// Error messages, as escaped JSON.
pub(super) const MESSAGE_CAP: usize = 1024;
/// The link's url.
pub(super) const URL_CAP: usize = 2048;
/// Every other string: ids, field names, codes, the tenant.
pub(super) const SHORT_CAP: usize = 256;

/// The arguments as the line records them.
pub(super) struct RecordedArguments {
    pub full: Option<Value>,
    pub sha256: String,
    pub bytes: u64,
    pub prefix: Option<String>,
}

/// Serializes into a hash, a length and the first `keep` bytes, never holding the whole text.
struct Digesting {
    hash: Sha256,
    len: u64,
    head: Vec<u8>,
    keep: usize,
}

impl Write for Digesting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.update(buf);
        self.len += buf.len() as u64;
        let room = self.keep.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..room.min(buf.len())]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) fn record_arguments(
    arguments: Option<&Map<String, Value>>,
    cap: usize,
    prefix: bool,
) -> RecordedArguments {
    let mut digest = Digesting {
        hash: Sha256::new(),
        len: 0,
        head: Vec::new(),
        keep: ARGUMENTS_CAP,
    };
    // Writing JSON of a map into an infallible writer cannot fail.
    let _ = match arguments {
        Some(map) => serde_json::to_writer(&mut digest, map),
        None => serde_json::to_writer(&mut digest, &Value::Null),
    };
    let sha256 = digest
        .hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fits = digest.len <= cap as u64;
    let full = fits.then(|| arguments.map_or(Value::Null, |m| Value::Object(m.clone())));
    let prefix = (!fits && prefix).then(|| {
        let text = match std::str::from_utf8(&digest.head) {
            Ok(t) => t,
            // Cut inside a character: keep the whole ones (the prefix up to the error is valid).
            Err(e) => std::str::from_utf8(&digest.head[..e.valid_up_to()]).unwrap_or(""),
        };
        clip(text, ARGUMENTS_CAP)
    });
    RecordedArguments {
        full,
        sha256,
        bytes: digest.len,
        prefix,
    }
}

/// The bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `text` cut so that, written as a JSON string, it takes at most `cap` bytes (quotes aside); a
/// cut text ends with `…`.
pub(crate) fn clip(text: &str, cap: usize) -> String {
    if text.chars().map(escaped_len).sum::<usize>() <= cap {
        return text.to_owned();
    }
    const MARK: char = '…';
    let budget = cap.saturating_sub(MARK.len_utf8());
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        used += escaped_len(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push(MARK);
    out
}

/// The error envelope's body with only its known fields, each string cut.
pub(super) fn clipped_error(body: &Value) -> Value {
    let mut out = Map::new();
    for (key, cap) in [
        ("kind", SHORT_CAP),
        ("message", MESSAGE_CAP),
        ("field", SHORT_CAP),
        ("status", 0),
        ("upstream_code", SHORT_CAP),
        ("request_id", SHORT_CAP),
        ("retry_after_secs", 0),
        ("retry_safe", 0),
    ] {
        let kept = match body.get(key) {
            Some(Value::String(s)) => Value::String(clip(s, cap)),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.clone(),
            _ => continue,
        };
        out.insert(key.to_owned(), kept);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_escapes_and_keeps_whole_characters() {
        assert_eq!(clip("short", 5), "short");
        assert_eq!(clip("abcdef", 5), "ab…");
        // Each quote takes 2 bytes escaped, each control character 6.
        let quotes = clip(&"\"".repeat(100), 20);
        assert_eq!(serde_json::to_string(&quotes).unwrap().len() - 2, 2 * 8 + 3);
        let controls = clip(&"\u{1}".repeat(100), 20);
        assert!(serde_json::to_string(&controls).unwrap().len() - 2 <= 20);
        let arabic = clip(&"ع".repeat(100), 21);
        assert_eq!(arabic, format!("{}…", "ع".repeat(9)));
        for text in ["\"\\\n\u{1f}x", &"é\u{7}".repeat(50)] {
            for cap in 0..40 {
                let out = clip(text, cap);
                assert!(
                    serde_json::to_string(&out).unwrap().len() - 2 <= cap.max(3),
                    "{text:?} at {cap}: {out:?}"
                );
            }
        }
    }
}
