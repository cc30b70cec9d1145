//! Tolerant structs (see [`super::typed`] for the rules): [`tolerant_object!`] declares one,
//! [`Nested`] holds one inside another, and [`Metadata`] reads a metadata object.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::typed::{Key, other_values};
use crate::domain::RESERVED_METADATA_PREFIX;

/// What every tolerant visitor expects, for serde's messages (never shown: nothing fails).
const ANY: &str = "any JSON value";

/// An object's members as metadata: each value as a string, a non-string written as its JSON
/// text; keys this server reserves are left out (see `model::visible_metadata`), but the value
/// of `reference_key` (when a string) is kept apart. `None` when not an object (`Obj::obj`).
#[derive(Debug, Default, Clone)]
pub struct Metadata<'a> {
    pub visible: Option<BTreeMap<String, String>>,
    /// The string value of [`crate::model::REQUEST_REF_KEY`], if any.
    pub reference: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Metadata<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata<'de>, A::Error> {
                let mut visible = BTreeMap::new();
                let mut reference = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let value: MetaValue<'de> = map.next_value()?;
                    if key == crate::model::REQUEST_REF_KEY {
                        reference = match &value {
                            MetaValue::Text(s) => Some(s.clone()),
                            MetaValue::Json(_) => None,
                        };
                    }
                    if !key.starts_with(RESERVED_METADATA_PREFIX) {
                        visible.insert(key.into_owned(), value.into_string());
                    }
                }
                Ok(Metadata {
                    visible: Some(visible),
                    reference,
                })
            }
            other_values!(Metadata<'de>, Metadata::default());
        }
        d.deserialize_any(V)
    }
}

/// A metadata value: a string, or any other value as its JSON text (`null` included).
enum MetaValue<'a> {
    Text(Cow<'a, str>),
    Json(String),
}

impl MetaValue<'_> {
    fn into_string(self) -> String {
        match self {
            MetaValue::Text(s) => s.into_owned(),
            MetaValue::Json(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for MetaValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn json<'de>(v: Value) -> MetaValue<'de> {
            MetaValue::Json(v.to_string())
        }
        impl<'de> Visitor<'de> for V {
            type Value = MetaValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<MetaValue<'de>, E> {
                Ok(MetaValue::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MetaValue<'de>, E> {
                Ok(MetaValue::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<MetaValue<'de>, E> {
                Ok(MetaValue::Text(Cow::Owned(s)))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<MetaValue<'de>, E> {
                Ok(json(Value::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<MetaValue<'de>, E> {
                Ok(json(Value::from(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<MetaValue<'de>, E> {
                Ok(json(Value::from(n)))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<MetaValue<'de>, E> {
                Ok(json(Value::from(n)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<MetaValue<'de>, E> {
                Ok(json(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<MetaValue<'de>, E> {
                Ok(json(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MetaValue<'de>, A::Error> {
                let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(json(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MetaValue<'de>, A::Error> {
                let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(json(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Declares a struct read tolerantly from a JSON object: each member named on the left is
/// read into its field (a tolerant type from this module, or another such struct wrapped in
/// [`Nested`]), every other member is parsed and skipped, a repeated member keeps its last
/// value, and anything but an object reads as the struct's `Default`.
macro_rules! tolerant_object {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident<$lt:lifetime $(, $g:ident)?> {
            $($(#[$fmeta:meta])* $key:literal => $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone)]
        $vis struct $name<$lt $(, $g)?> {
            $($(#[$fmeta])* pub $field: $ty,)*
        }
        $crate::backend::tolerant::object::tolerant_object!(
            @impl [<'de $(, $g: serde::Deserialize<'de> + Default)?>] [$name<'de $(, $g)?>]
            [$($g)?] { $($key => $field),* }
        );
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident $(<$g:ident>)? {
            $($(#[$fmeta:meta])* $key:literal => $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone)]
        $vis struct $name $(<$g>)? {
            $($(#[$fmeta])* pub $field: $ty,)*
        }
        $crate::backend::tolerant::object::tolerant_object!(
            @impl [<'de $(, $g: serde::Deserialize<'de> + Default)?>] [$name $(<$g>)?]
            [$($g)?] { $($key => $field),* }
        );
    };
    (@impl [$($generics:tt)*] [$($self_ty:tt)*] [$($g:ident)?] { $($key:literal => $field:ident),* }) => {
        impl $($generics)* serde::Deserialize<'de> for $($self_ty)* {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use $crate::backend::tolerant::typed::{Key, Skip, other_values};
                use serde::de::{self, MapAccess, SeqAccess, Visitor};
                #[allow(unused_parens)]
                struct V<$($g)?>(std::marker::PhantomData<($($g)?)>);
                impl $($generics)* Visitor<'de> for V<$($g)?> {
                    type Value = $($self_ty)*;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("any JSON value")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        let mut out = <$($self_ty)*>::default();
                        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                            match key.as_ref() {
                                $($key => out.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<Skip>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                    other_values!(Self::Value, <$($self_ty)*>::default());
                }
                d.deserialize_any(V(std::marker::PhantomData))
            }
        }
    };
}
pub(crate) use tolerant_object;

/// A member holding an object read as `T`, or `None` when it holds anything else (`Obj::obj`).
/// Boxed: a struct is larger than its text may be, and an absent one costs a pointer.
#[derive(Debug, Clone)]
pub struct Nested<T>(pub Option<Box<T>>);

impl<T> Default for Nested<T> {
    fn default() -> Self {
        Nested(None)
    }
}

impl<T> Nested<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nested<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Nested<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ANY)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Nested<T>, A::Error> {
                let t = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Nested(Some(Box::new(t))))
            }
            other_values!(Nested<T>, Nested(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}
