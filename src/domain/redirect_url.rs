//! Where a payer is sent after paying.

use std::fmt;

use crate::error::Error;

/// An absolute `http`/`https` URL with a host, at most 2000 characters (Stream's limit).
#[derive(Clone, PartialEq, Eq)]
pub struct RedirectUrl(String);

impl RedirectUrl {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(raw: &str, field: &str) -> Result<Self, Error> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Error::validation(field, "must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(Error::validation(
                field,
                format!(
                    "must be at most {} characters, got {}",
                    Self::MAX_LEN,
                    s.len()
                ),
            ));
        }
        let url = url::Url::parse(s).map_err(|e| {
            Error::validation(field, format!("must be an absolute http(s) URL ({e})"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::validation(
                field,
                format!("must use http or https, not `{}`", url.scheme()),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::validation(field, "must name a host"));
        }
        // Keep the caller's spelling: the upstream stores what it is given.
        Ok(RedirectUrl(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedirectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedirectUrl({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https() {
        assert!(RedirectUrl::parse("https://shop.example/thanks?o=1", "f").is_ok());
        assert!(RedirectUrl::parse("http://localhost:8080/x", "f").is_ok());
    }

    #[test]
    fn refuses_other_schemes_relative_and_long_urls() {
        for bad in [
            "",
            "/thanks",
            "shop.example/thanks",
            "javascript:alert(1)",
            "ftp://x.example/",
            "file:///etc/passwd",
            "https://",
        ] {
            let e = RedirectUrl::parse(bad, "success_redirect_url").unwrap_err();
            assert_eq!(e.field(), Some("success_redirect_url"), "{bad}");
        }
        let long = format!("https://x.example/{}", "a".repeat(2000));
        assert!(RedirectUrl::parse(&long, "f").is_err());
        let exact = format!("https://x.example/{}", "a".repeat(2000 - 18));
        assert_eq!(exact.len(), 2000);
        assert!(RedirectUrl::parse(&exact, "f").is_ok());
    }
}
