//! Where the shared store is: the operator's `--store` choice read and checked ([`StoreChoice`]),
//! and a Redis URL that may hold a password ([`StoreUrl`]), which only ever prints redacted.
//!
//! A URL with a password is a secret like an API key: it may come from `PAYLINK_STORE` or the
//! file named by `PAYLINK_STORE_FILE`, never from the command line (which every user of the
//! machine can read), and no log line or error message shows it.

use std::fmt;

use zeroize::Zeroizing;

/// What the operator chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreChoice {
    /// State lives in this process: the default, for stdio and a single server.
    Memory,
    /// State lives in Redis (or Valkey), shared by every replica pointed at it.
    Redis(StoreUrl),
}

/// Where a store setting came from: it decides whether a password may be in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `--store` on the command line.
    Flag,
    /// `PAYLINK_STORE`.
    Env,
    /// The file named by `PAYLINK_STORE_FILE`.
    File,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Flag => "--store",
            Source::Env => "PAYLINK_STORE",
            Source::File => "PAYLINK_STORE_FILE",
        }
    }
}

/// A checked `redis://` or `rediss://` URL. `Debug` and `Display` show it with the password
/// replaced by `***`; the text is wiped from memory on drop.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoreUrl {
    raw: Zeroizing<String>,
    redacted: String,
    /// The password, to scrub from any message a client library builds (never shown).
    password: Option<Zeroizing<String>>,
}

impl StoreUrl {
    /// The URL itself, for the Redis client. Never log this.
    pub(crate) fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL as logs and errors may show it.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Whether the connection is TLS (`rediss://`).
    pub(crate) fn is_tls(&self) -> bool {
        self.raw.starts_with("rediss://")
    }

    /// `text` with the password (and the raw URL) replaced: for messages built by the client
    /// library, which this server does not control.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.raw.as_str(), &self.redacted);
        if let Some(p) = &self.password
            && !p.is_empty()
        {
            out = out.replace(p.as_str(), "***");
        }
        out
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", self.redacted)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Reads a store setting: `memory`, or a `redis://`/`rediss://` URL with a host. A refusal names
/// the setting and says why, never repeating a URL that may hold a password.
pub(crate) fn parse(raw: &str, source: Source) -> Result<StoreChoice, String> {
    let raw = raw.trim();
    let name = source.name();
    if raw.eq_ignore_ascii_case("memory") {
        return Ok(StoreChoice::Memory);
    }
    let url = url::Url::parse(raw)
        .map_err(|e| format!("{name} is neither `memory` nor a redis:// or rediss:// URL ({e})"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "{name} must be `memory`, or a URL starting with redis:// or rediss:// (TLS); got a {}:// URL",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{name} must name a host (redis://HOST:PORT/DB)"));
    }
    let password = url.password().map(|p| {
        // Percent-decoded, as the client library will send it.
        Zeroizing::new(percent_decode(p).unwrap_or_else(|| p.to_owned()))
    });
    if password.is_some() && source == Source::Flag {
        return Err(
            "--store holds a password, and a command line is visible to every user of the machine: put the URL in PAYLINK_STORE or in a file named by PAYLINK_STORE_FILE"
                .to_owned(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{name} takes no query or fragment: redis://[USER:PASSWORD@]HOST[:PORT][/DB]"
        ));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(format!(
            "{name}: the path must be a database number (redis://HOST:PORT/0), not `{db}`"
        ));
    }
    let mut shown = url.clone();
    if password.is_some() {
        // Cannot fail on a URL with a host.
        let _ = shown.set_password(Some("***"));
    }
    Ok(StoreChoice::Redis(StoreUrl {
        raw: Zeroizing::new(raw.to_owned()),
        redacted: shown.as_str().trim_end_matches('/').to_owned(),
        password,
    }))
}

/// `%XX` sequences decoded; `None` if they do not form UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The store setting from the command line or the environment: `--store`, else `PAYLINK_STORE`,
/// else the file named by `PAYLINK_STORE_FILE`, else memory. Both variables set is refused, as
/// for the API keys.
pub(crate) fn choose(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreChoice, String> {
    let direct = env("PAYLINK_STORE").filter(|v| !v.trim().is_empty());
    let file = env("PAYLINK_STORE_FILE").filter(|v| !v.trim().is_empty());
    if direct.is_some() && file.is_some() {
        return Err("both PAYLINK_STORE and PAYLINK_STORE_FILE are set; set only one".into());
    }
    if let Some(flag) = flag {
        return parse(flag, Source::Flag);
    }
    if let Some(value) = direct {
        return parse(&value, Source::Env);
    }
    if let Some(path) = file {
        let text =
            Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                format!("PAYLINK_STORE_FILE names {path}, which cannot be read: {e}")
            })?);
        if text.trim().is_empty() {
            return Err(format!("PAYLINK_STORE_FILE names {path}, which is empty"));
        }
        return parse(&text, Source::File);
    }
    Ok(StoreChoice::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(raw: &str, source: Source) -> StoreUrl {
        match parse(raw, source).unwrap() {
            StoreChoice::Redis(url) => url,
            StoreChoice::Memory => panic!("{raw} is a URL"),
        }
    }

    #[test]
    fn memory_and_urls_are_read() {
        assert_eq!(
            parse(" Memory ", Source::Flag).unwrap(),
            StoreChoice::Memory
        );
        let url = redis("redis://10.0.0.5:6380/2", Source::Flag);
        assert_eq!(url.redacted(), "redis://10.0.0.5:6380/2");
        assert!(!url.is_tls());
        assert!(redis("rediss://cache.internal", Source::Flag).is_tls());
        for bad in [
            "http://x",
            "redis://",
            "redis:///0",
            "redis://h/db",
            "redis://h/0?x=1",
            "cache:6379",
        ] {
            assert!(parse(bad, Source::Env).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_password_stays_out_of_the_command_line_and_every_message() {
        let e = parse("redis://:hunter2-secret@h:6379/0", Source::Flag).unwrap_err();
        assert!(e.contains("PAYLINK_STORE") && !e.contains("hunter2"), "{e}");
        let url = redis("redis://app:hunter2%21@h:6379/0", Source::Env);
        assert_eq!(url.redacted(), "redis://app:***@h:6379/0");
        assert!(!format!("{url:?} {url}").contains("hunter2"));
        let scrubbed = url.scrub("AUTH failed for app:hunter2! at redis://app:hunter2%21@h:6379/0");
        assert!(!scrubbed.contains("hunter2"), "{scrubbed}");
        // A malformed URL's error never echoes it.
        let e = parse("redis://app:hunter2@[bad", Source::Env).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_setting_comes_from_the_flag_the_variable_or_a_file() {
        let none = |_: &str| None;
        assert_eq!(choose(None, &none).unwrap(), StoreChoice::Memory);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        std::fs::write(&path, "redis://:pw@h:1/0\n").unwrap();
        let p = path.to_str().unwrap().to_owned();
        let file = move |k: &str| (k == "PAYLINK_STORE_FILE").then(|| p.clone());
        assert!(matches!(
            choose(None, &file).unwrap(),
            StoreChoice::Redis(_)
        ));
        assert_eq!(choose(Some("memory"), &file).unwrap(), StoreChoice::Memory);
        let both = |_: &str| Some("redis://h".to_owned());
        assert!(choose(None, &both).unwrap_err().contains("only one"));
    }
}
