//! The tolerance rules of [`super::Obj`], as serde types: upstream answers decoded straight into
//! typed structs, without building a `serde_json::Value` first.
//!
//! Each field type accepts any JSON value and reads what it cannot use as absent, exactly as
//! `Obj` does on a decoded tree: a string field holding a number is `None`, an integer may come
//! as an integral float or a string of digits, `null` is absent, an object field holding
//! anything but an object is `None`, an array field holding anything but an array is empty.
//! Structs of these fields are declared in [`super::object`]: unknown members are skipped, a
//! member given twice keeps its last value (as a decoded tree does), and a value that is not an
//! object reads as an object without members. Nothing here can fail on well-formed JSON.
//!
//! Two rules keep the accepted input exactly what decoding a `Value` accepts, so that an answer
//! is refused or read the same way on either path: every skipped value is still parsed in full
//! (`deserialize_any`, never serde_json's lighter `deserialize_ignored_any`, which lets a number
//! out of range through), and strings are borrowed from the text where they have no escape.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::domain::CurrencyCode;

/// What every tolerant visitor expects, for serde's messages (never shown: nothing fails).
const ANY: &str = "any JSON value";

/// Answers `$fallback` for every kind of value but an object (which each visitor reads or skips
/// itself), after parsing an array in full.
macro_rules! other_values {
    ($out:ty, $fallback:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$out, E> {
            Ok($fallback)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$out, E> {
            Ok($fallback)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$out, E> {
            Ok($fallback)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$out, E> {
            Ok($fallback)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<$out, E> {
            Ok($fallback)
        }
        fn visit_unit<E: de::Error>(self) -> Result<$out, E> {
            Ok($fallback)
        }
        fn visit_none<E: de::Error>(self) -> Result<$out, E> {
            Ok($fallback)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<$out, A::Error> {
            $crate::backend::tolerant::typed::skip_seq(seq)?;
            Ok($fallback)
        }
    };
}
pub(crate) use other_values;

/// Any value, parsed in full and dropped (see the module's note on `deserialize_any`).
pub(crate) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Skip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Skip, A::Error> {
                skip_map(map)?;
                Ok(Skip)
            }
            other_values!(Skip, Skip);
        }
        d.deserialize_any(V)
    }
}

pub(crate) fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

pub(crate) fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key::<Skip>()?.is_some() {
        map.next_value::<Skip>()?;
    }
    Ok(())
}

/// An object member's name, borrowed from the text unless it had an escape.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string, or `None` for anything else (`Obj::str`).
#[derive(Debug, Default, Clone)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    pub fn owned(&self) -> Option<String> {
        self.get().map(str::to_owned)
    }

    /// A currency code we know (any case), as `Obj::currency`.
    pub fn currency(&self) -> Option<CurrencyCode> {
        self.get().and_then(super::known_currency)
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(s))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(s))))
            }
            // `visit_str` (a string with an escape) is below, with the other kinds.
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text<'de>, A::Error> {
                skip_seq(seq)?;
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text<'de>, A::Error> {
                skip_map(map)?;
                Ok(Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer, also from an integral float (below 9e15) or a string of digits (`Obj::i64`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Int(pub Option<i64>);

impl Int {
    /// A count: neither negative nor above `u32::MAX` (`Obj::count`).
    pub fn count(self) -> Option<u32> {
        self.0.and_then(|n| u32::try_from(n).ok())
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int, E> {
                Ok(Int(Some(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Int, E> {
                // Above i64::MAX: as a float it is far above 9e15, so unreadable either way.
                Ok(Int(i64::try_from(n).ok()))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Int, E> {
                Ok(Int(Some(f)
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Int, E> {
                Ok(Int(s.trim().parse().ok()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Int, A::Error> {
                skip_seq(seq)?;
                Ok(Int(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Int, A::Error> {
                skip_map(map)?;
                Ok(Int(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean, or `None` for anything else (`Obj::bool`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Flag(pub Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Flag, E> {
                Ok(Flag(Some(b)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Flag, A::Error> {
                skip_seq(seq)?;
                Ok(Flag(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Flag, A::Error> {
                skip_map(map)?;
                Ok(Flag(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A decimal amount as text, from a string or a number.
#[derive(Debug, Default, Clone)]
pub struct Decimal<'a>(pub Option<Cow<'a, str>>);

impl Decimal<'_> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for Decimal<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        // A number's text as `Value`'s `Display` writes it (`2.5`, `12.0`, `3`).
        fn number<'de>(v: Value) -> Decimal<'de> {
            Decimal(Some(Cow::Owned(v.to_string())))
        }
        impl<'de> Visitor<'de> for V {
            type Value = Decimal<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Decimal<'de>, E> {
                Ok(Decimal(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Decimal<'de>, E> {
                Ok(Decimal(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Decimal<'de>, E> {
                Ok(Decimal(Some(Cow::Owned(s))))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Decimal<'de>, E> {
                Ok(number(Value::from(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Decimal<'de>, E> {
                Ok(number(Value::from(n)))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Decimal<'de>, E> {
                Ok(number(Value::from(n)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Decimal<'de>, E> {
                Ok(Decimal(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Decimal<'de>, E> {
                Ok(Decimal(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Decimal<'de>, E> {
                Ok(Decimal(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Decimal<'de>, A::Error> {
                skip_seq(seq)?;
                Ok(Decimal(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Decimal<'de>, A::Error> {
                skip_map(map)?;
                Ok(Decimal(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An array's elements, each read as `T`; empty when absent or not an array (`Obj::array`).
/// `present` is whether the member was there and not `null`, whatever it held.
///
/// Arrays of objects are read as `List<Nested<T>>`: an element that is not an object then costs
/// a pointer rather than a whole struct, which keeps what reading allocates under the estimate
/// the answer was admitted on (`tests/it/parse_budget.rs`).
#[derive(Debug, Clone)]
pub struct List<T> {
    pub items: Vec<T>,
    pub present: bool,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            items: Vec::new(),
            present: false,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List {
                    items,
                    present: true,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<List<T>, E> {
                Ok(List::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<List<T>, E> {
                Ok(List::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<List<T>, E> {
                Ok(List::present_empty())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<List<T>, E> {
                Ok(List::present_empty())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<List<T>, E> {
                Ok(List::present_empty())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<List<T>, E> {
                Ok(List::present_empty())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<List<T>, E> {
                Ok(List::present_empty())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<List<T>, A::Error> {
                skip_map(map)?;
                Ok(List::present_empty())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<T> List<T> {
    fn present_empty() -> Self {
        List {
            items: Vec::new(),
            present: true,
        }
    }
}

/// How many elements an array has, each parsed in full and dropped; as [`List`] without
/// keeping them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    pub len: usize,
    pub present: bool,
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut len = 0;
                while seq.next_element::<Skip>()?.is_some() {
                    len += 1;
                }
                Ok(Count { len, present: true })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
                Ok(Count::not_array())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Count, E> {
                Ok(Count::not_array())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Count, E> {
                Ok(Count::not_array())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Count, E> {
                Ok(Count::not_array())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Count, E> {
                Ok(Count::not_array())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
                skip_map(map)?;
                Ok(Count::not_array())
            }
        }
        d.deserialize_any(V)
    }
}

impl Count {
    fn not_array() -> Self {
        Count {
            len: 0,
            present: true,
        }
    }
}
