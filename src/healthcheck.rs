//! `paylink-mcp healthcheck`: the probe a container runtime runs to ask "is the HTTP server up?".
//!
//! It lives in the binary itself because the runtime image is minimal (no shell, no curl): the
//! same executable that serves is the one that checks. It exits 0 when `GET <url>` answers
//! exactly `200`, and 1 in every other case: another status, a redirect, a refused or reset
//! connection, a timeout, a bad URL. It never exits 2: Docker reserves that code in
//! `HEALTHCHECK`. Nothing is printed on stdout; a failure says why in one line on stderr, which
//! Docker keeps in the container's health log.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::HealthcheckOpts;

/// Runs the probe and turns its outcome into the exit code.
pub(crate) fn main(opts: &HealthcheckOpts) -> ExitCode {
    let timeout = Duration::from_secs(opts.timeout_secs);
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(probe(&opts.url, timeout)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("paylink-mcp healthcheck: {reason}");
            ExitCode::from(1)
        }
    }
}

/// `GET url`, healthy only on `200`.
pub(crate) async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` must be an http(s) URL"));
    }
    crate::upstream::install_crypto_provider();
    let client = reqwest::Client::builder()
        // The probe targets this very container: a proxy from the environment (HTTP_PROXY) would
        // send it elsewhere and report someone else's health.
        .no_proxy()
        // A redirect is not health: a 301 to a login page must not read as "up".
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| format!("GET {url} failed: {}", describe(&e)))?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("GET {url} answered {status}, not 200 OK"))
    }
}

/// A short reason for a failed request (reqwest's top-level message alone says little).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_url_that_is_not_http_is_refused_without_a_request() {
        let e = probe("file:///etc/passwd", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("http(s)"), "{e}");
        let e = probe("not a url", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("not a URL"), "{e}");
    }
}
