//! The memory bound of decoding an upstream answer, measured: a counting allocator records the
//! peak of live heap bytes while `upstream::json::read` decodes bodies of every pathological
//! shape. Answers up to the 4 MiB body cap that would decode to tens or hundreds of MiB are
//! refused having allocated (almost) nothing, and for anything accepted the estimate the refusal
//! is based on really is an upper bound of what decoding allocated.
//!
//! The allocator is the whole test binary's, but it counts only on a thread that asked it to
//! (see [`peak_of`]), with per-thread counters: the other tests, running on their own threads
//! at the same time, neither disturb the measurement nor pay more than a thread-local read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use paylink_mcp::testing::Scrubber;
use paylink_mcp::testing::{MEMORY_BUDGET, Refusal, estimate, read};

struct Counting;

thread_local! {
    // `const`-initialized and without destructors: reading them never allocates, so the
    // allocator may use them.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Adds `by` (negative: freed) to this thread's live bytes, if this thread is counting.
fn count(by: isize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let now = LIVE.with(Cell::get) + by;
        LIVE.with(|l| l.set(now));
        PEAK.with(|p| p.set(p.get().max(now)));
    }
}

fn size(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(size(layout.size()));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-size(layout.size()));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as if old and new blocks were both live for a moment, as they may be.
        count(size(new_size));
        let out = unsafe { System.realloc(ptr, layout, new_size) };
        count(-size(layout.size()));
        out
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap bytes this thread allocated (beyond what was live before) while `f` runs. (A block
/// allocated before and freed during `f` lowers the count, as it lowers the heap.)
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, usize::try_from(PEAK.with(Cell::get)).unwrap_or(0))
}

/// `[unit,unit,...]` of about `total` bytes.
fn repeated(unit: &str, total: usize) -> Vec<u8> {
    let mut s = String::with_capacity(total + unit.len());
    s.push('[');
    while s.len() + unit.len() < total {
        s.push_str(unit);
        s.push(',');
    }
    s.pop();
    s.push(']');
    s.into_bytes()
}

/// One object with `n` distinct keys.
fn wide_object(n: usize) -> Vec<u8> {
    let members: Vec<String> = (0..n).map(|i| format!("\"k{i:x}\":0")).collect();
    format!("{{{}}}", members.join(",")).into_bytes()
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn decoding_upstream_json_stays_within_its_memory_budget() {
    let cap = 4 * 1024 * 1024;
    let none = Scrubber::default();
    let units = [
        "0",
        "\"\"",
        "\"a\"",
        "[]",
        "{}",
        "[0]",
        "{\"a\":0}",
        "[[[0]]]",
    ];

    // Before: what serde_json alone allocates for the 4 MiB `0,` answer of the report.
    let zeros = repeated("0", cap);
    let (parsed, unbounded) =
        peak_of(|| serde_json::from_slice::<serde_json::Value>(&zeros).is_ok());
    assert!(parsed);
    eprintln!(
        "unbounded serde_json::from_slice of 4 MiB of `0,`: {:.1} MiB",
        unbounded as f64 / MIB
    );

    // After: every 4 MiB shape of tiny values is refused, having allocated nothing to speak of.
    for unit in units {
        let body = repeated(unit, cap);
        let (result, peak) = peak_of(|| read(&body, &none));
        assert_eq!(result, Err(Refusal::TooLarge), "{unit}");
        assert!(peak < 64 * 1024, "{unit}: a refusal allocated {peak} bytes");
        eprintln!("4 MiB of `{unit},`: refused, {peak} bytes allocated");
    }

    // Accepted answers, of ordinary and large sizes. The estimate is an upper
    // bound of what decoding (and scrubbing) allocated, so the budget bounds the peak.
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for unit in units {
        for total in [1024, 64 * 1024] {
            bodies.push((format!("{total} B of `{unit},`"), repeated(unit, total)));
        }
        // A body of this shape estimated at about a quarter of the budget (the estimate is
        // linear in the body, so larger ones only take longer in a debug build).
        let (lo_cost, _) = estimate(&repeated(unit, 64 * 1024));
        let fits = 64 * 1024 * (MEMORY_BUDGET / 4) / lo_cost.max(1);
        bodies.push((format!("{fits} B of `{unit},`"), repeated(unit, fits)));
    }
    bodies.push(("object of 20000 keys".into(), wide_object(20_000)));
    let secret = Scrubber::new(vec!["sk_test_Zq81Xw".into()]);
    for (what, body) in &bodies {
        let (cost, _) = estimate(body);
        assert!(cost <= MEMORY_BUDGET, "{what}: estimate {cost}");
        // With a backslash, so that the scrubbing walk runs too.
        // The first number 0 (a value, not part of a key) becomes the string "\u0030".
        let mut escaped = body.clone();
        if let Some(at) = escaped
            .windows(2)
            .position(|w| matches!(w[0], b':' | b'[' | b',') && w[1] == b'0')
        {
            escaped.splice(at + 1..at + 2, *b"\"\\u0030\"");
        }
        for (label, body, scrubber) in [("plain", body, &none), ("escaped", &escaped, &secret)] {
            let (result, peak) = peak_of(|| read(body, scrubber).map(drop));
            assert_eq!(result, Ok(()), "{what} ({label})");
            let (cost, _) = estimate(body);
            assert!(
                peak <= cost,
                "{what} ({label}): decoding allocated {peak} bytes, estimated {cost}"
            );
        }
    }
}

/// The same bound for answers read into typed structs, as 2xx answers are (no `Value` tree):
/// what the typed reader allocates stays under the estimate for the shapes whose entries it
/// keeps (a link's items, a page's links and products, a product's prices), however small each
/// entry's text.
#[test]
fn typed_reading_stays_within_the_estimate() {
    use paylink_mcp::testing::{CountedLink, ItemizedLink, StreamPage, StreamProduct, parse};

    /// `{"<key>":[unit,unit,...]}` of about `total` bytes, inside `wrap` (`{}` for none).
    fn shape(wrap: (&str, &str), key: &str, unit: &str, total: usize) -> Vec<u8> {
        let inner = repeated(unit, total);
        let mut s = format!("{}{{\"{key}\":", wrap.0).into_bytes();
        s.extend_from_slice(&inner);
        s.extend_from_slice(format!("}}{}", wrap.1).as_bytes());
        s
    }
    type Reader = fn(&[u8]) -> bool;
    let readers: [(&str, (&str, &str), &str, Reader); 6] = [
        ("a link's items", ("", ""), "items", |b| {
            parse::<ItemizedLink>(b).is_ok()
        }),
        ("a counted link's items", ("", ""), "items", |b| {
            parse::<CountedLink>(b).is_ok()
        }),
        ("a page of links", ("", ""), "data", |b| {
            parse::<StreamPage<CountedLink>>(b).is_ok()
        }),
        ("a page of products", ("", ""), "data", |b| {
            parse::<StreamPage<StreamProduct>>(b).is_ok()
        }),
        ("a product's prices", ("", ""), "prices", |b| {
            parse::<StreamProduct>(b).is_ok()
        }),
        (
            "a page of products' prices",
            ("{\"data\":[", "]}"),
            "prices",
            |b| parse::<StreamPage<StreamProduct>>(b).is_ok(),
        ),
    ];
    for (what, wrap, key, read) in readers {
        for unit in ["{}", "{\"id\":\"\"}", "{\"product\":{}}", "0", "[]", "\"\""] {
            for total in [1024, 64 * 1024] {
                let body = shape(wrap, key, unit, total);
                let (cost, _) = estimate(&body);
                let (ok, peak) = peak_of(|| read(&body));
                assert!(ok, "{what} of `{unit}`");
                assert!(
                    peak <= cost,
                    "{what} of `{unit}` ({total} B): read allocated {peak} bytes, estimated {cost}"
                );
            }
        }
    }
}
