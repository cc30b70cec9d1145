//! When to try an upstream request again, and how long to wait first: the status rules per
//! [`RetryMode`], the upstream's own say (`Retry-After`, a decoder's hint), and exponential
//! backoff with full jitter.
//!
//! It must never allow a second attempt of a write the upstream cannot deduplicate.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::request::RetryMode;
use super::response::{ErrorDecoder, UpstreamResponse};

pub(super) fn should_retry_response(
    response: &UpstreamResponse,
    mode: RetryMode,
    decoder: &dyn ErrorDecoder,
) -> bool {
    match mode {
        RetryMode::UnsafeWrite => false,
        RetryMode::IdempotentWrite => decoder.upstream_says_retry(response).unwrap_or(false),
        RetryMode::Read => decoder
            .upstream_says_retry(response)
            .unwrap_or_else(|| matches!(response.status.as_u16(), 429 | 502 | 503 | 504)),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by our upstreams), capped at 60 s.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(60.0)))
}

/// Exponential backoff with full jitter: uniform in `[0, base * 2^attempt]`.
pub(super) fn full_jitter(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << attempt.min(16));
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(attempt));
    let fraction = (hasher.finish() % 10_000) as f64 / 10_000.0;
    cap.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_is_parsed_and_capped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", HeaderValue::from_static("9999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn jitter_stays_within_the_cap() {
        for attempt in 0..5 {
            let w = full_jitter(Duration::from_millis(100), attempt);
            assert!(w <= Duration::from_millis(100) * (1 << attempt));
        }
    }
}
