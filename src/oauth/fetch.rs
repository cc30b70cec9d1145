//! The HTTP client to the authorization server: metadata, keys and introspection.
//!
//! Same conventions as the upstream client (rustls on ring, no redirects, a user agent), but its
//! own policy: short timeouts, one retry at most and only when nothing was answered (a refused
//! connection, a 502/503/504), and a small cap on what is read. Every URL is checked first:
//! https, or plain http on loopback only.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::settings::check_endpoint;
use crate::secret::ApiKey;

/// Time to open a connection to the authorization server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for one whole exchange with it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of one answer (metadata, a key set, an introspection answer are a few KiB).
const BODY_CAP: usize = 256 * 1024;

/// Why a fetch gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// The URL is not one this server fetches (plain http off loopback, ...).
    Refused(String),
    /// No answer: connection refused or reset.
    Unreachable(String),
    /// No answer within the timeout.
    TimedOut,
    /// An answer with this status.
    Status(u16),
    /// An answer that is not a JSON document within the cap.
    Unreadable(&'static str),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Refused(why) => write!(f, "not fetched: {why}"),
            FetchError::Unreachable(why) => write!(f, "no answer: {why}"),
            FetchError::TimedOut => write!(f, "no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            FetchError::Status(s) => write!(f, "answered HTTP {s}"),
            FetchError::Unreadable(why) => write!(f, "unreadable answer: {why}"),
        }
    }
}

/// The client, built on first use (like the upstream's: building it loads the root certificates).
#[derive(Default)]
pub(crate) struct IdpClient {
    http: OnceLock<Result<reqwest::Client, String>>,
}

impl IdpClient {
    fn http(&self) -> Result<&reqwest::Client, FetchError> {
        self.http
            .get_or_init(|| {
                crate::upstream::install_crypto_provider();
                reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(ATTEMPT_TIMEOUT)
                    .user_agent(concat!("paylink-mcp/", env!("CARGO_PKG_VERSION")))
                    // A redirect could carry the introspection credentials elsewhere.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| FetchError::Unreachable(e.clone()))
    }

    /// GETs a JSON document.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        check_endpoint(url).map_err(FetchError::Refused)?;
        let http = self.http()?;
        self.with_one_retry(|| http.get(url).header("accept", "application/json"))
            .await
    }

    /// POSTs a form with HTTP Basic client authentication (RFC 6749 §2.3.1: each part
    /// form-urlencoded first), for a JSON answer.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        client_id: &ApiKey,
        client_secret: &ApiKey,
        form: &[(&str, &str)],
    ) -> Result<Value, FetchError> {
        check_endpoint(url).map_err(FetchError::Refused)?;
        let http = self.http()?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let user = enc(client_id.expose());
        let password = enc(client_secret.expose());
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.with_one_retry(|| {
            http.post(url)
                .basic_auth(&user, Some(&password))
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
        })
        .await
    }

    async fn with_one_retry(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, FetchError> {
        match attempt(request()).await {
            // Refused, reset or a gateway's error: one more try, at once. Not after a timeout:
            // the requests waiting on this fetch would wait twice as long for the same answer.
            Err(FetchError::Unreachable(_) | FetchError::Status(502..=504)) => {
                attempt(request()).await
            }
            other => other,
        }
    }
}

async fn attempt(request: reqwest::RequestBuilder) -> Result<Value, FetchError> {
    let mut response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            FetchError::TimedOut
        } else if e.is_connect() {
            FetchError::Unreachable("could not connect".to_owned())
        } else {
            FetchError::Unreachable("the connection failed".to_owned())
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > BODY_CAP as u64)
    {
        return Err(FetchError::Unreadable("larger than 256 KiB"));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > BODY_CAP {
                    return Err(FetchError::Unreadable("larger than 256 KiB"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(FetchError::TimedOut),
            Err(_) => return Err(FetchError::Unreachable("the answer was cut off".into())),
        }
    }
    serde_json::from_slice(&body).map_err(|_| FetchError::Unreadable("not JSON"))
}
