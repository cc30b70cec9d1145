//! Who is calling: the `Authorization: Bearer` token, and the operator's access-token list.
//!
//! The token is read into an [`ApiKey`] (redacted in Debug, zeroed on drop) and never appears in
//! a message: refusals say what is wrong with the header, not what it contained.

use std::collections::HashSet;
use std::path::Path;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::secret::ApiKey;

/// Longest token accepted outside OAuth mode. Real keys are far shorter; this only bounds what
/// gets hashed. (OAuth access tokens may be longer: see `oauth::verify::MAX_TOKEN_BYTES`.)
pub(crate) const MAX_TOKEN_LEN: usize = 4096;

/// What the `Authorization` header held.
#[derive(Debug)]
pub(crate) enum Presented {
    /// No `Authorization` header at all.
    Nothing,
    /// A well-formed Bearer token.
    Bearer(ApiKey),
}

/// What is wrong with an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHeader {
    Several,
    /// Another scheme than Bearer: no credentials of ours at all (RFC 6750 §3.1).
    NotBearer,
    Empty,
    TooLong,
    NotVisibleAscii,
}

impl BadHeader {
    /// The reason for the 401 (never the token).
    pub(crate) fn message(self) -> &'static str {
        match self {
            BadHeader::Several => "send one Authorization header, not several",
            BadHeader::NotBearer => {
                "the Authorization header must use the Bearer scheme: `Authorization: Bearer <key>`"
            }
            BadHeader::Empty => "the Bearer token is empty",
            BadHeader::TooLong => "the Bearer token is too long",
            BadHeader::NotVisibleAscii => {
                "the Bearer token must be visible ASCII characters only (no spaces or control characters)"
            }
        }
    }
}

/// Reads the Bearer token, refusing one longer than `max_len` bytes unread.
pub(crate) fn bearer(headers: &HeaderMap, max_len: usize) -> Result<Presented, BadHeader> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Presented::Nothing);
    };
    if values.next().is_some() {
        return Err(BadHeader::Several);
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|b| *b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(BadHeader::NotBearer);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(BadHeader::Empty);
    }
    if token.len() > max_len {
        return Err(BadHeader::TooLong);
    }
    if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(BadHeader::NotVisibleAscii);
    }
    // All visible ASCII, so valid UTF-8.
    let token = String::from_utf8_lossy(token).into_owned();
    Ok(Presented::Bearer(ApiKey::new(token)))
}

/// SHA-256 of a token, the form the access-token file holds.
pub(crate) fn token_hash(token: &ApiKey) -> [u8; 32] {
    Sha256::digest(token.expose().as_bytes()).into()
}

/// The hashes of the server access tokens of operator-key mode.
pub(crate) struct AccessTokens(HashSet<[u8; 32]>);

impl AccessTokens {
    /// Reads a file of SHA-256 hex hashes, one per line; blank lines and `#` comments skipped.
    /// Errors name the file and line, never a line's content (it could be a pasted token).
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "--access-tokens-file {} cannot be read: {e}",
                path.display()
            )
        })?;
        Self::parse(&text).map_err(|line| {
            format!(
                "--access-tokens-file {}: line {line} is not a SHA-256 hex hash (64 hex digits); store hashes, never tokens (e.g. `printf %s TOKEN | sha256sum`)",
                path.display()
            )
        })
    }

    /// Parses the file's text; `Err` is the first bad line number.
    pub(crate) fn parse(text: &str) -> Result<Self, usize> {
        let mut set = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            // `sha256sum` prints "<hash>  -": keep the first word.
            let word = line.split_whitespace().next().unwrap_or("");
            set.insert(decode_hex32(word).ok_or(i + 1)?);
        }
        Ok(AccessTokens(set))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `token` is one of the server's access tokens.
    pub(crate) fn accepts(&self, token: &ApiKey) -> bool {
        self.0.contains(&token_hash(token))
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &[u8]) -> Result<Presented, &'static str> {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(value).unwrap(),
        );
        bearer(&h, MAX_TOKEN_LEN).map_err(BadHeader::message)
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert!(matches!(
            bearer(&HeaderMap::new(), MAX_TOKEN_LEN),
            Ok(Presented::Nothing)
        ));
        match auth(b"Bearer tok_123:secret") {
            Ok(Presented::Bearer(k)) => assert_eq!(k.expose(), "tok_123:secret"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            auth(b"bearer  spaced  "),
            Ok(Presented::Bearer(_))
        ));
        for bad in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"Token abc",
            b"Bearer a b",
            b"Bearer caf\xc3\xa9",
            b"Bearer a\tb",
        ] {
            let e = auth(bad).unwrap_err();
            assert!(!e.contains("dXNl") && !e.contains("caf"), "{e}");
        }
        let mut h = HeaderMap::new();
        h.append(http::header::AUTHORIZATION, "Bearer a".parse().unwrap());
        h.append(http::header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert_eq!(bearer(&h, MAX_TOKEN_LEN).unwrap_err(), BadHeader::Several);
        let long = format!("Bearer {}", "t".repeat(5000));
        assert_eq!(
            auth(long.as_bytes()).unwrap_err(),
            BadHeader::TooLong.message()
        );
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, long.parse().unwrap());
        assert!(matches!(bearer(&h, 8192), Ok(Presented::Bearer(_))));
    }

    #[test]
    fn access_token_files_hold_hashes() {
        let token = ApiKey::new("server-token-1");
        let hex: String = token_hash(&token)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tokens = AccessTokens::parse(&format!(
            "# team A\n\n{hex}  -\n{} # B\n",
            hex.to_uppercase().replace('A', "a")
        ))
        .unwrap();
        assert_eq!(tokens.len(), 1);
        assert!(tokens.accepts(&token));
        assert!(!tokens.accepts(&ApiKey::new("server-token-2")));
        assert_eq!(AccessTokens::parse("# c\nserver-token-1\n").err(), Some(2));
        assert_eq!(AccessTokens::parse(&"g".repeat(64)).err(), Some(1));
    }
}
