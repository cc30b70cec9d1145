//! What a 2026-07-28 request state is bound to (the tenant, the tool and the canonical
//! arguments), and which confirmed states were already used: a state that confirmed a status
//! change counts once.
//!
//! Plain data: it must not ask anyone or call a backend.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The bytes a request state is bound to: the tenant, the tool, and the arguments as canonical
/// JSON (keys sorted at every level), hashed.
pub(crate) fn binding(
    tenant: &str,
    tool: &str,
    arguments: Option<&serde_json::Map<String, Value>>,
) -> Vec<u8> {
    let mut text = String::new();
    match arguments {
        Some(map) => canonical(&Value::Object(map.clone()), &mut text),
        None => text.push_str("null"),
    }
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"paylink-confirm\0");
    out.extend_from_slice(tenant.as_bytes());
    out.push(0);
    out.extend_from_slice(tool.as_bytes());
    out.push(0);
    out.extend_from_slice(&Sha256::digest(text.as_bytes()));
    out
}

/// `value` as JSON with every object's keys sorted, whatever order the map keeps.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The confirmed request states already used, each until its state would have expired anyway:
/// a state (with its answer) replayed within its lifetime does not confirm the same change
/// again. Bounded: beyond [`UsedStates::MAX`] the oldest is forgotten first (its replay would then
/// be taken as an answer again, until its state expires).
#[derive(Default)]
pub(super) struct UsedStates {
    inner: Mutex<Used>,
}

impl std::fmt::Debug for UsedStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.inner.lock().map_or(0, |u| u.order.len());
        f.debug_struct("UsedStates").field("held", &held).finish()
    }
}

#[derive(Default)]
struct Used {
    until: HashMap<String, Instant>,
    /// The same nonces, oldest first.
    order: VecDeque<(Instant, String)>,
}

impl UsedStates {
    /// How many used states are remembered at once.
    pub(super) const MAX: usize = 65_536;

    /// Marks `nonce` used until `now + ttl`: `true` the first time, `false` when it already was.
    pub(super) fn first_use(&self, nonce: &str, now: Instant, ttl: Duration) -> bool {
        let mut used = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((until, _)) = used.order.front() {
            if *until > now && used.order.len() < Self::MAX {
                break;
            }
            if let Some((_, gone)) = used.order.pop_front() {
                used.until.remove(&gone);
            }
        }
        if used.until.contains_key(nonce) {
            return false;
        }
        let until = now + ttl;
        used.until.insert(nonce.to_owned(), until);
        used.order.push_back((until, nonce.to_owned()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_binding_names_the_tenant_the_tool_and_the_canonical_arguments() {
        let args = |v: Value| v.as_object().cloned().unwrap();
        let a = binding(
            "t1",
            "create_payment_link",
            Some(&args(
                json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}}),
            )),
        );
        let mut reordered = serde_json::Map::new();
        reordered.insert("a".into(), json!({"x": null, "y": [1, {"c": 3, "d": 2}]}));
        reordered.insert("b".into(), json!(1));
        assert_eq!(a, binding("t1", "create_payment_link", Some(&reordered)));
        assert_ne!(a, binding("t2", "create_payment_link", Some(&reordered)));
        assert_ne!(
            a,
            binding("t1", "update_payment_link_status", Some(&reordered))
        );
        reordered.insert("b".into(), json!(2));
        assert_ne!(a, binding("t1", "create_payment_link", Some(&reordered)));
        let mut text = String::new();
        canonical(&json!({"b": "\"", "a": [true, 1.5]}), &mut text);
        assert_eq!(text, r#"{"a":[true,1.5],"b":"\""}"#);
    }

    #[test]
    fn a_state_is_used_once_within_its_lifetime() {
        let used = UsedStates::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        assert!(used.first_use("a", t0, ttl));
        assert!(!used.first_use("a", t0 + Duration::from_secs(59), ttl));
        assert!(used.first_use("b", t0, ttl));
        // Past its lifetime it is forgotten (its state no longer opens anyway).
        assert!(used.first_use("a", t0 + Duration::from_secs(61), ttl));
    }
}
