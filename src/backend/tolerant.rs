//! Tolerant reading of upstream JSON: every field optional, a field of the wrong type treated as
//! absent, unknown fields ignored. Upstream answers are untrusted input; nothing here can panic.

use serde_json::Value;

use crate::domain::CurrencyCode;

pub(crate) mod object;
pub(crate) mod typed;

/// A currency code we know (any case), or `None`: an unknown code has no amounts we can state.
pub(crate) fn known_currency(code: &str) -> Option<CurrencyCode> {
    CurrencyCode::parse(code, "currency").ok()
}

/// A borrowed JSON value read as an object; a non-object reads as empty.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a>(pub &'a Value);

impl<'a> Obj<'a> {
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }

    /// An integer, also from an integral float (`12.0`) or a string of digits.
    pub(crate) fn i64(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            }),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A count (a quantity): an integer read as [`Obj::i64`] that is neither negative nor above
    /// `u32::MAX`. Anything else is unreadable (`None`), never clamped to a plausible value.
    pub(crate) fn count(&self, key: &str) -> Option<u32> {
        self.i64(key).and_then(|n| u32::try_from(n).ok())
    }

    /// A currency code we know, read from `key` (see [`known_currency`]).
    pub(crate) fn currency(&self, key: &str) -> Option<CurrencyCode> {
        self.str(key).and_then(known_currency)
    }

    pub(crate) fn obj(&self, key: &str) -> Option<Obj<'a>> {
        self.get(key).filter(|v| v.is_object()).map(Obj)
    }

    /// An array, or an empty slice when absent or not an array.
    pub(crate) fn array(&self, key: &str) -> &'a [Value] {
        self.get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_read_as_absent() {
        let v =
            json!({"a": 1, "s": "x", "n": null, "arr": {"not": "array"}, "f": 12.0, "big": 1e300});
        let o = Obj(&v);
        assert_eq!(o.str("a"), None);
        assert_eq!(o.i64("s"), None);
        assert_eq!(o.i64("f"), Some(12));
        assert_eq!(o.i64("big"), None);
        assert!(o.get("n").is_none());
        assert!(o.array("arr").is_empty());
        assert!(Obj(&json!([1, 2])).array("x").is_empty());
        assert_eq!(Obj(&json!("str")).str("x"), None);
    }

    #[test]
    fn counts_are_whole_numbers_within_u32_or_nothing() {
        let v = json!({
            "ok": 3, "zero": 0, "text": "7", "whole_float": 2.0, "max": 4_294_967_295u64,
            "negative": -3, "above": 5_000_000_000u64, "fraction": 2.5, "word": "two",
            "null": null, "object": {"n": 1}, "bool": true,
        });
        let o = Obj(&v);
        assert_eq!(o.count("ok"), Some(3));
        assert_eq!(o.count("zero"), Some(0));
        assert_eq!(o.count("text"), Some(7));
        assert_eq!(o.count("whole_float"), Some(2));
        assert_eq!(o.count("max"), Some(u32::MAX));
        for unreadable in [
            "negative", "above", "fraction", "word", "null", "object", "bool", "missing",
        ] {
            assert_eq!(o.count(unreadable), None, "{unreadable}");
        }
    }
}
