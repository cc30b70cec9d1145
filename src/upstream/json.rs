//! The one place upstream JSON is decoded: a cheap pre-scan that refuses answers whose decoded
//! tree would be too large, the parse, then the key scrubber on the decoded tree.
//!
//! Why a pre-scan: the body is capped in bytes (4 MiB), but a `serde_json::Value` costs far more
//! than its text. Measured with serde_json 1 (BTreeMap objects): `[0,0,...]` takes 16 bytes of
//! memory per byte of text, so 4 MiB became 64 MiB; `[{"a":0},...]` takes 83, so 4 MiB became
//! 333 MiB; per call, per concurrent call. The scan counts what decoding would allocate,
//! conservatively ([`estimate`]), and refuses before any of it is allocated.

use serde_json::Value;

use super::scrub::Scrubber;

/// The most memory the decoded tree of one answer may take, as [`estimate`]d. The estimate is
/// an upper bound, about twice the real figure for ordinary JSON: a Stream page of 100 links of
/// 20 items each (1.8 MB of text, 7 MB decoded) estimates at 18 MiB and fits; the 4 MiB answers
/// of tiny values that took 64 to 333 MiB do not.
pub const MEMORY_BUDGET: usize = 32 * 1024 * 1024;

/// The deepest nesting accepted. Real answers nest about 6 deep.
pub(crate) const MAX_DEPTH: usize = 64;

// What decoding allocates, rounded up (64-bit; serde_json's `Value` is 32 bytes, its objects are
// B-trees). Checked against measured allocations in `tests/parse_budget.rs`.
/// `{`: a B-tree leaf of 11 `(String, Value)` slots (632 bytes), allocated by the first member.
const OBJECT: usize = 640;
/// `:`: one object member (a key's `String` and a `Value`: 56 bytes), with room for leaves that
/// are not full.
const MEMBER: usize = 96;
/// `[`: the first growth of a `Vec<Value>` (4 slots).
const ARRAY: usize = 128;
/// `,` in an array: one more element, with room for the vector's doubling (while it grows, the
/// old and the new block may both be live: three slots per element). (In an object the member
/// is counted at its `:`.)
const ELEMENT: usize = 96;
/// A string (or an object key): its heap block's overhead, plus its length in the text (an
/// upper bound of its decoded length).
const STRING: usize = 32;

/// Why an answer was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Its decoded tree would take more than [`MEMORY_BUDGET`].
    TooLarge,
    /// Not JSON; serde_json's message (positions only, never content).
    Malformed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooDeep => write!(f, "JSON nested more than {MAX_DEPTH} levels deep"),
            Refusal::TooLarge => write!(
                f,
                "JSON too large to read (decoded it would take more than {} MiB)",
                MEMORY_BUDGET >> 20
            ),
            Refusal::Malformed(e) => write!(f, "malformed JSON ({e})"),
        }
    }
}

/// An upper bound of what decoding `body` into a [`Value`] allocates, and its nesting depth; stops
/// early (returning what it has counted) as soon as either passes its limit. One pass, no
/// allocation; strings are skipped with a SIMD search. Not a validator: malformed input gets a
/// meaningless estimate and is refused by the parser.
pub fn estimate(body: &[u8]) -> (usize, usize) {
    let mut cost = 0usize;
    let mut depth = 0usize;
    let mut deepest = 0usize;
    // Bit d is set when the container at depth d + 1 is an object. Scanning stops past
    // MAX_DEPTH (< 64), so the bits suffice.
    let mut objects: u64 = 0;
    let mut i = 0usize;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                let start = i + 1;
                i = start;
                // To the closing quote, stepping over escapes (`\"`, `\\`).
                loop {
                    match body
                        .get(i..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    {
                        Some(at) if body.get(i + at) == Some(&b'\\') => i += at + 2,
                        Some(at) => {
                            i += at;
                            break;
                        }
                        None => {
                            i = body.len();
                            break;
                        }
                    }
                }
                cost = cost.saturating_add(STRING + i.saturating_sub(start));
            }
            b'{' | b'[' => {
                let object = b == b'{';
                cost = cost.saturating_add(if object { OBJECT } else { ARRAY });
                if depth < 64 {
                    let bit = 1u64 << depth;
                    objects = if object {
                        objects | bit
                    } else {
                        objects & !bit
                    };
                }
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' => cost = cost.saturating_add(MEMBER),
            b',' => {
                let in_object = depth > 0 && objects & (1u64 << ((depth - 1) % 64)) != 0;
                if !in_object {
                    cost = cost.saturating_add(ELEMENT);
                }
            }
            _ => {}
        }
        if cost > MEMORY_BUDGET || deepest > MAX_DEPTH {
            break;
        }
        i += 1;
    }
    (cost, deepest)
}

/// Decodes an upstream answer: refused when its tree would be too deep or too large, then parsed,
/// then scrubbed of every form of the tenant's key.
pub fn read(body: &[u8], scrubber: &Scrubber) -> Result<Value, Refusal> {
    read_estimated(body, estimate(body), scrubber)
}

/// [`read`], with `body`'s [`estimate`] already made (the caller charged it to the process's
/// budget, see `super::budget`).
pub(super) fn read_estimated(
    body: &[u8],
    estimate: (usize, usize),
    scrubber: &Scrubber,
) -> Result<Value, Refusal> {
    within_bounds(estimate)?;
    decode_scrubbed(body, scrubber)
}

/// How an answer's text may be read, once its bounds are checked.
#[derive(Debug)]
pub(super) enum Checked {
    /// Read straight from the text, into typed structs (see `backend::tolerant::typed`): it
    /// cannot hold a secret (none as is, no escape that could hide one, no number that could be
    /// one), so a decoded tree would not be scrubbed either. Not yet parsed: malformed text is
    /// refused when read.
    Plain,
    /// Decoded and scrubbed: it may hold a secret. Typed structs are read from this tree.
    Tree(Value),
}

/// [`read_estimated`] for an answer that is to be read into typed structs: the same bounds, the
/// same scrubbing, but no tree is built when scrubbing could not change anything (the common
/// case), since the typed reader borrows what it keeps straight from the text. What the typed
/// reader allocates is bounded as a tree is (see `tests/it/parse_budget.rs`), and is charged to
/// the process's budget as the tree would be.
pub(super) fn check_estimated(
    body: &[u8],
    estimate: (usize, usize),
    scrubber: &Scrubber,
) -> Result<Checked, Refusal> {
    within_bounds(estimate)?;
    if needs_scrubbing(body, scrubber) {
        decode_scrubbed(body, scrubber).map(Checked::Tree)
    } else {
        Ok(Checked::Plain)
    }
}

fn within_bounds((cost, depth): (usize, usize)) -> Result<(), Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal::TooDeep);
    }
    if cost > MEMORY_BUDGET {
        return Err(Refusal::TooLarge);
    }
    Ok(())
}

/// Without a backslash, every decoded string is a slice of the raw text: a raw search finds any
/// secret. With one, a key may be hiding behind an escape: the decoded strings must be looked at.
/// A secret that could be a number may be hiding in a number written another way
/// (`9.8765432e7`): then the decoded tree is looked at whatever the text.
fn needs_scrubbing(body: &[u8], scrubber: &Scrubber) -> bool {
    !scrubber.is_empty()
        && (scrubber.could_be_a_number()
            || memchr::memchr(b'\\', body).is_some()
            || scrubber.found_in(body))
}

fn decode_scrubbed(body: &[u8], scrubber: &Scrubber) -> Result<Value, Refusal> {
    let mut value: Value = parse(body)?;
    if needs_scrubbing(body, scrubber) {
        scrubber.scrub_value(&mut value);
    }
    Ok(value)
}

/// Parses checked text (see [`check_estimated`]) as `T`, with the message a refusal of malformed JSON
/// carries. Typed readers built from `backend::tolerant::typed` accept exactly the JSON a
/// `Value` accepts, so either way an answer is refused with the same words.
pub fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repeated(unit: &str, total: usize) -> Vec<u8> {
        let mut s = String::from("[");
        while s.len() + unit.len() < total {
            s.push_str(unit);
        }
        s.pop();
        s.push(']');
        s.into_bytes()
    }

    #[test]
    fn pathological_answers_of_4_mib_are_refused_before_decoding() {
        for unit in ["0,", "\"\",", "[],", "{},", "[0],", "{\"a\":0},", "\"a\","] {
            let body = repeated(unit, 4 * 1024 * 1024);
            assert_eq!(
                read(&body, &Scrubber::default()),
                Err(Refusal::TooLarge),
                "{unit}"
            );
        }
    }

    /// An all-digit secret echoed as a number in exponent form: no raw search finds it, and
    /// without a backslash the tree used to go unscrubbed; decoded, it is the secret.
    #[test]
    fn a_numeric_secret_in_exponent_form_is_scrubbed() {
        let s = Scrubber::new(vec!["98765432".into()]);
        let body = br#"{"loc": ["body", 9.8765432e7], "n": 987654.32E2, "ok": 12}"#;
        assert!(!s.found_in(body));
        let v = read(body, &s).unwrap();
        assert_eq!(v["loc"][1], "[redacted]");
        assert_eq!(v["n"], "[redacted]");
        assert_eq!(v["ok"], 12);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(
            read(deep.as_bytes(), &Scrubber::default()),
            Err(Refusal::TooDeep)
        );
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(read(ok.as_bytes(), &Scrubber::default()).is_ok());
        // Brackets inside strings are text, not nesting.
        let quoted = format!("{{\"a\": \"{}\"}}", "[{".repeat(1000));
        assert!(read(quoted.as_bytes(), &Scrubber::default()).is_ok());
    }

    #[test]
    fn strings_with_escapes_are_skipped_whole() {
        let (cost, depth) = estimate(br#"{"a\"[": "x\\", "b": "\"{{{"}"#);
        assert_eq!(depth, 1);
        // Strings `a\"[`, `x\\`, `b`, `\"{{{` (13 bytes); two members.
        assert_eq!(cost, OBJECT + 4 * STRING + 2 * MEMBER + 13);
        let (cost, _) = estimate(br#"[1, [2, 3], {"a": [4, 5]}]"#);
        assert_eq!(cost, 3 * ARRAY + OBJECT + MEMBER + STRING + 1 + 4 * ELEMENT);
        // An unterminated string or a trailing backslash never reads past the end.
        for tail in [&b"\"abc"[..], b"\"abc\\", b"[\"\\", b"\\"] {
            let _ = estimate(tail);
            assert!(read(tail, &Scrubber::default()).is_err());
        }
    }

    #[test]
    fn a_large_real_answer_fits_the_budget() {
        // A Stream-like link of 20 items with nested products and prices, 100 of them.
        let item = r#"{"id":"00000000-0000-4000-8000-000000000000","product_id":"11111111-1111-4111-8111-111111111111","quantity":2,"original_amount":"25.00","discounted_amount":"25.00","original_amount_in_smallest_unit":2500,"discounted_amount_in_smallest_unit":2500,"currency":"SAR","allow_custom_quantity":false,"product":{"id":"11111111-1111-4111-8111-111111111111","name":"Espresso","description":null,"type":"ONE_OFF","recurring_interval":null,"recurring_interval_count":1,"price":"12.50","currency":"SAR","is_active":true,"created_at":"2026-01-01T00:00:00Z","prices":[{"id":"00000000-0000-4000-8000-000000000000","currency":"SAR","amount":"12.50","is_active":true,"is_price_inclusive_of_vat":true,"is_price_exempt_from_vat":false},{"id":"00000000-0000-4000-8000-000000000001","currency":"KWD","amount":"1.025","is_active":true,"is_price_inclusive_of_vat":true,"is_price_exempt_from_vat":false}]}}"#;
        let items = vec![item; 20].join(",");
        let link = format!(
            r#"{{"id":"7d6c5b4a-3f2e-4d1c-8b0a-9f8e7d6c5b4a","name":"Order","description":"Friday","status":"ACTIVE","url":"https://pay.example/l/x","currency":"SAR","amount":"500.00","original_amount":"500.00","amount_collected":"0.00","amount_in_smallest_unit":50000,"custom_metadata":{{"paylink_request_id":"r"}},"created_at":"2026-11-23T10:00:00Z","items":[{items}],"coupons":[]}}"#
        );
        let page = format!(
            r#"{{"data":[{}],"pagination":{{"total_count":100,"max_page":1,"current_page":1,"limit":100,"has_next_page":false,"has_previous_page":false}}}}"#,
            vec![link.as_str(); 100].join(",")
        );
        let (cost, depth) = estimate(page.as_bytes());
        assert!(cost < MEMORY_BUDGET * 3 / 5, "{cost}");
        assert!(depth < 10);
        assert!(read(page.as_bytes(), &Scrubber::default()).is_ok());
    }

    #[test]
    fn the_decoded_tree_is_scrubbed_only_when_it_may_hold_a_secret() {
        let s = Scrubber::new(vec!["sk_test_Zq81".into()]);
        let v = read(br#"{"m": "key sk_test_Zq81"}"#, &s).unwrap();
        assert_eq!(v["m"], "key [redacted]");
        let v = read(br#"{"m": "key \u0073k_test_Zq81"}"#, &s).unwrap();
        assert_eq!(v["m"], "key [redacted]");
        let v = read(br#"{"m": "clean"}"#, &s).unwrap();
        assert_eq!(v["m"], "clean");
    }
}
