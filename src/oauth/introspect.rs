//! Opaque access tokens, asked about at the issuer's introspection endpoint (RFC 7662).
//!
//! The answer is held to the same rules as a JWT's claims (active, issuer, audience, time,
//! subject). Answers are cached by a hash of the token, never the token, for no longer than the
//! token lives and at most [`MAX_CACHE`]; refusals too, for the refetch interval, so that a bad
//! token repeated does not become a flood of introspection calls. Refusals have their own cache:
//! a flood of made-up tokens evicts other refusals, never a valid token's grant.
//!
//! An endpoint that failed is left alone for the refetch interval (`--oauth-jwks-min-refresh-secs`,
//! as for the keys): meanwhile a token not in the cache gets [`Refused::Unavailable`] at once,
//! instead of each request waiting on its own doomed call.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::fetch::{FetchError, IdpClient};
use super::grant::{Access, Grant};
use super::settings::IntrospectionSettings;
use super::verify::Expect;
use crate::secret::ApiKey;

/// Longest an answer is trusted without asking again.
pub(crate) const MAX_CACHE: Duration = Duration::from_secs(60);
/// Answers remembered, of each kind (grants, refusals).
const CACHE_ENTRIES: usize = 10_000;

/// Why an opaque token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Invalid(&'static str),
    /// The endpoint could not answer; retry after this long.
    Unavailable(Duration),
}

/// Remembered answers, by the hash of the token: grants and refusals apart.
struct Answers {
    granted: LruCache<[u8; 32], (Grant, Instant)>,
    refused: LruCache<[u8; 32], (&'static str, Instant)>,
}

impl Answers {
    fn new(entries: usize) -> Self {
        let entries = NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN);
        Answers {
            granted: LruCache::new(entries),
            refused: LruCache::new(entries),
        }
    }

    /// The answer for `key`, if one is remembered and still good at `now`.
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Result<Grant, &'static str>> {
        if let Some((grant, until)) = self.granted.get(key)
            && *until > now
        {
            return Some(Ok(grant.clone()));
        }
        match self.refused.get(key) {
            Some((why, until)) if *until > now => Some(Err(why)),
            _ => None,
        }
    }

    fn put(&mut self, key: [u8; 32], outcome: Result<Grant, &'static str>, until: Instant) {
        match outcome {
            Ok(grant) => {
                self.refused.pop(&key);
                self.granted.put(key, (grant, until));
            }
            Err(why) => {
                self.granted.pop(&key);
                self.refused.put(key, (why, until));
            }
        }
    }
}

/// The introspection client and its cache.
pub(crate) struct Introspector {
    client: Arc<IdpClient>,
    settings: IntrospectionSettings,
    answers: Mutex<Answers>,
    /// How long a failed endpoint is left alone.
    back_off: Duration,
    /// Until when it is.
    down_until: Mutex<Option<Instant>>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Introspector {
    /// `back_off`: how long the endpoint is left alone after it failed.
    pub(crate) fn new(
        client: Arc<IdpClient>,
        settings: IntrospectionSettings,
        back_off: Duration,
    ) -> Self {
        Introspector {
            client,
            settings,
            answers: Mutex::new(Answers::new(CACHE_ENTRIES)),
            back_off,
            down_until: Mutex::new(None),
        }
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn down_until(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The grant of an opaque token.
    pub(crate) async fn check(
        &self,
        token: &ApiKey,
        expect: &Expect<'_>,
    ) -> Result<Grant, Refused> {
        let key: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        if let Some(known) = self.answers().get(&key, Instant::now()) {
            return known.map_err(Refused::Invalid);
        }
        if let Some(until) = *self.down_until() {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(Refused::Unavailable(left.max(Duration::from_secs(1))));
            }
        }
        let answer = self
            .client
            .post_form(
                &self.settings.url,
                &self.settings.client_id,
                &self.settings.client_secret,
                &[
                    ("token", token.expose()),
                    ("token_type_hint", "access_token"),
                ],
            )
            .await;
        let doc = match answer {
            Ok(doc) => doc,
            Err(e) => {
                // A 401/403 means this server's own credentials are wrong: the operator's to fix.
                if matches!(e, FetchError::Status(401 | 403)) {
                    tracing::error!(
                        "the introspection endpoint refused this server's client credentials ({e}): check PAYLINK_OAUTH_CLIENT_ID/SECRET"
                    );
                } else {
                    tracing::warn!("cannot introspect a token: {e}");
                }
                *self.down_until() = Some(Instant::now() + self.back_off);
                return Err(Refused::Unavailable(
                    self.back_off.max(Duration::from_secs(1)),
                ));
            }
        };
        let now = now_secs();
        let outcome = read(&doc, expect, now);
        let lives = match &outcome {
            Ok(grant) => grant.expires_at.map_or(MAX_CACHE, |exp| {
                Duration::from_secs(exp.saturating_sub(now))
            }),
            // Short: a token refused because the issuer's replicas have not all seen it yet is
            // asked about again soon, while a bad token repeated still costs one call per
            // interval at most.
            Err(_) => self.back_off,
        };
        let lives = lives.min(MAX_CACHE);
        if !lives.is_zero() {
            self.answers()
                .put(key, outcome.clone(), Instant::now() + lives);
        }
        outcome.map_err(Refused::Invalid)
    }
}

/// An introspection answer, judged like a JWT's claims.
fn read(doc: &Value, expect: &Expect<'_>, now: u64) -> Result<Grant, &'static str> {
    if doc["active"] != Value::Bool(true) {
        return Err("the token is not active");
    }
    if let Some(iss) = doc.get("iss")
        && iss.as_str() != Some(expect.issuer)
    {
        return Err("the token is from another issuer (iss)");
    }
    let for_us = match &doc["aud"] {
        Value::String(a) => a == expect.audience,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(expect.audience)),
        _ => false,
    };
    if !for_us {
        return Err("the token is not for this resource (aud)");
    }
    let time = |name: &str| -> Result<Option<u64>, &'static str> {
        match doc.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or("a claim of the token has the wrong type"),
            Some(_) => Err("a claim of the token has the wrong type"),
        }
    };
    let exp = time("exp")?;
    if exp.is_some_and(|exp| exp.saturating_add(expect.leeway_secs) <= now) {
        return Err("the token has expired");
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(expect.leeway_secs)) {
        return Err("the token is not valid yet (nbf)");
    }
    // A client-credentials token may name no `sub`: the client is then the subject, marked as
    // one, so that a client whose id is some user's `sub` never shares that user's tenant.
    let text = |name: &str| doc[name].as_str().filter(|s| !s.is_empty());
    let subject = match (text("sub"), text("client_id")) {
        (Some(sub), _) => sub.to_owned(),
        (None, Some(client)) => format!("client:{client}"),
        (None, None) => return Err("the token has no subject (sub or client_id)"),
    };
    let scopes = doc["scope"].as_str().unwrap_or_default().split(' ');
    Ok(Grant {
        issuer: expect.issuer.to_owned(),
        subject,
        access: Access::from_scopes(scopes, expect.scopes),
        expires_at: exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::settings::ScopeNames;
    use serde_json::json;

    #[test]
    fn a_flood_of_refusals_does_not_evict_a_grant() {
        let grant = Grant {
            issuer: "https://as".into(),
            subject: "u1".into(),
            access: Access::Read,
            expires_at: None,
        };
        let now = Instant::now();
        let later = now + MAX_CACHE;
        let mut answers = Answers::new(4);
        answers.put([0; 32], Ok(grant.clone()), later);
        for i in 1..=20u8 {
            answers.put([i; 32], Err("the token is not active"), later);
        }
        assert_eq!(answers.get(&[0; 32], now), Some(Ok(grant.clone())));
        assert_eq!(
            answers.get(&[20; 32], now),
            Some(Err("the token is not active"))
        );
        assert_eq!(answers.get(&[1; 32], now), None, "the oldest refusal went");
        // An answer is good until its time, not after.
        assert_eq!(answers.get(&[0; 32], later), None);
        // A token's later answer replaces its earlier one, whichever kind.
        answers.put([0; 32], Err("the token is not active"), later);
        assert_eq!(
            answers.get(&[0; 32], now),
            Some(Err("the token is not active"))
        );
        answers.put([0; 32], Ok(grant.clone()), later);
        assert_eq!(answers.get(&[0; 32], now), Some(Ok(grant)));
    }

    #[test]
    fn an_answer_is_held_to_the_rules_of_a_token() {
        let names = ScopeNames {
            read: "r".into(),
            write: "w".into(),
        };
        let expect = Expect {
            issuer: "https://as",
            audience: "https://mcp/mcp",
            leeway_secs: 30,
            scopes: &names,
        };
        let now = 1_000_000;
        let good = json!({"active": true, "iss": "https://as", "aud": ["x", "https://mcp/mcp"],
                          "sub": "u1", "exp": now + 100, "scope": "r w"});
        let grant = read(&good, &expect, now).unwrap();
        assert_eq!(
            (grant.subject.as_str(), grant.access),
            ("u1", Access::Write)
        );
        assert_eq!(grant.expires_at, Some(now + 100));
        let with = |k: &str, v: Value| {
            let mut d = good.clone();
            d[k] = v;
            read(&d, &expect, now)
        };
        assert!(
            with("active", json!(false))
                .unwrap_err()
                .contains("not active")
        );
        assert!(with("active", json!("true")).is_err());
        assert!(
            with("iss", json!("https://other"))
                .unwrap_err()
                .contains("iss")
        );
        assert!(
            with("aud", json!("https://mcp"))
                .unwrap_err()
                .contains("aud")
        );
        assert!(with("aud", Value::Null).is_err());
        assert!(
            with("exp", json!(now - 31))
                .unwrap_err()
                .contains("expired")
        );
        assert!(with("exp", json!(now - 10)).is_ok());
        assert!(with("exp", json!("soon")).is_err());
        assert!(with("nbf", json!(now + 60)).unwrap_err().contains("nbf"));
        assert!(with("sub", json!("")).is_err());
        let mut client = good.clone();
        client.as_object_mut().unwrap().remove("sub");
        client["client_id"] = json!("machine-1");
        assert_eq!(
            read(&client, &expect, now).unwrap().subject,
            "client:machine-1"
        );
        // A user whose sub is that client id is another subject.
        assert_eq!(
            with("sub", json!("machine-1")).unwrap().subject,
            "machine-1"
        );
        client.as_object_mut().unwrap().remove("client_id");
        assert!(read(&client, &expect, now).is_err());
        assert_eq!(
            with("scope", json!("other")).unwrap().access,
            Access::Nothing
        );
        // iss may be left out (RFC 7662 makes it optional); the grant names the configured one.
        let mut no_iss = good.clone();
        no_iss.as_object_mut().unwrap().remove("iss");
        assert_eq!(read(&no_iss, &expect, now).unwrap().issuer, "https://as");
    }
}
