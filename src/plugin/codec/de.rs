//! Value → typed Rust model (serde `Deserializer` over `&Value`).
//!
//! Mapping: structs and `BTreeMap<String, _>` from objects and maps; `Vec`/`BTreeSet`/tuples from lists, sets and
//! tuples; integers from whole numbers in range (else a clear error, never a silent truncation); floats from any
//! number (lossy for big decimals); `String` from strings, and also from numbers (exact decimal text) and bools;
//! unit enum variants from strings; `Option<T>`: null → `None` (unknown is an error); [`Tf<T>`](super::Tf):
//! null/unknown/known. A `dynamic` value is seen through its wrapper.
//!
//! Errors carry the path of the offending attribute. serde's stock messages quote the unexpected value
//! ("invalid type: string \"hunter2\""); the `Error` impl below replaces those with the value's kind only.

use std::fmt::{self, Display};

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Unexpected, Visitor};

use super::error::{CodecError, ErrorKind};
use super::number::Number;
use super::path::{Path, PathStep};
use super::tf::TF_TRISTATE;
use super::value::Value;

/// Converts a [`Value`] into a model type. See the module docs of [`codec`](super) for the mapping.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, CodecError> {
    T::deserialize(ValueDe {
        v: value,
        path: Vec::new(),
    })
    .map_err(|e| e.locate(&[]))
}

fn unexpected_kind(u: &Unexpected<'_>) -> &'static str {
    match u {
        Unexpected::Bool(_) => "a bool",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a float",
        Unexpected::Char(_) => "a character",
        Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "null",
        Unexpected::Option => "an optional value",
        Unexpected::NewtypeStruct => "a newtype struct",
        Unexpected::Seq => "a sequence",
        Unexpected::Map => "a map",
        Unexpected::Enum => "an enum",
        Unexpected::UnitVariant => "a unit variant",
        Unexpected::NewtypeVariant => "a newtype variant",
        Unexpected::TupleVariant => "a tuple variant",
        Unexpected::StructVariant => "a struct variant",
        Unexpected::Other(_) => "an unexpected value",
    }
}

impl de::Error for CodecError {
    fn custom<T: Display>(msg: T) -> Self {
        CodecError::unlocated(ErrorKind::Serde(msg.to_string()))
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "invalid type: {}, expected {}",
            unexpected_kind(&unexp),
            exp
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "invalid value: {}, expected {}",
            unexpected_kind(&unexp),
            exp
        ))
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!(
            "unknown variant, expected one of {}",
            OneOf(expected)
        ))
    }
}

struct OneOf(&'static [&'static str]);

impl Display for OneOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{name}`")?;
        }
        Ok(())
    }
}

#[derive(Clone)]
struct ValueDe<'a> {
    v: &'a Value,
    path: Path,
}

impl<'a> ValueDe<'a> {
    fn child(&self, v: &'a Value, step: PathStep) -> ValueDe<'a> {
        let mut path = self.path.clone();
        path.push(step);
        ValueDe { v, path }
    }

    fn err(&self, kind: ErrorKind) -> CodecError {
        CodecError::new(self.path.clone(), kind)
    }

    fn mismatch(&self, expected: &str) -> CodecError {
        match self.v.unwrap_dynamic() {
            Value::Null => self.err(ErrorKind::Null),
            Value::Unknown => self.err(ErrorKind::Unknown),
            v => self.err(ErrorKind::TypeMismatch {
                expected: expected.to_owned(),
                found: v.kind(),
            }),
        }
    }

    fn number(&self) -> Result<&'a Number, CodecError> {
        match self.v.unwrap_dynamic() {
            Value::Number(n) => Ok(n),
            _ => Err(self.mismatch("a number")),
        }
    }

    fn int<T: TryFrom<i128>>(&self, rust: &str) -> Result<T, CodecError> {
        let n = self.number()?;
        if !n.is_integer() {
            return Err(self.err(ErrorKind::NumberRange(format!(
                "a whole number is required for {rust}"
            ))));
        }
        let wide = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from));
        wide.and_then(|w| T::try_from(w).ok()).ok_or_else(|| {
            self.err(ErrorKind::NumberRange(format!(
                "the number does not fit in {rust}"
            )))
        })
    }

    fn locate<T>(&self, r: Result<T, CodecError>) -> Result<T, CodecError> {
        r.map_err(|e| e.locate(&self.path))
    }
}

macro_rules! de_int {
    ($($method:ident $visit:ident $t:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
            let n: $t = self.int(stringify!($t))?;
            self.locate(visitor.$visit(n))
        }
    )*};
}

impl<'a> de::Deserializer<'a> for ValueDe<'a> {
    type Error = CodecError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let r = match self.v.unwrap_dynamic() {
            Value::Null => visitor.visit_unit(),
            Value::Unknown => return Err(self.err(ErrorKind::Unknown)),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else {
                    visitor.visit_f64(n.as_f64())
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::List(_) | Value::Set(_) | Value::Tuple(_) => {
                return self.deserialize_seq(visitor)
            }
            Value::Map(_) | Value::Object(_) => return self.deserialize_map(visitor),
            Value::Dynamic(..) => unreachable!("unwrapped above"),
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.v.unwrap_dynamic() {
            Value::Bool(b) => self.locate(visitor.visit_bool(*b)),
            _ => Err(self.mismatch("a bool")),
        }
    }

    de_int! {
        deserialize_i8 visit_i8 i8,
        deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64,
        deserialize_i128 visit_i128 i128,
        deserialize_u8 visit_u8 u8,
        deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32,
        deserialize_u64 visit_u64 u64,
        deserialize_u128 visit_u128 u128,
    }

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let f = self.number()?.as_f64();
        self.locate(visitor.visit_f32(f as f32))
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let f = self.number()?.as_f64();
        self.locate(visitor.visit_f64(f))
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        if let Value::String(s) = self.v.unwrap_dynamic() {
            let mut chars = s.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return self.locate(visitor.visit_char(c));
            }
        }
        Err(self.mismatch("a single character"))
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let r = match self.v.unwrap_dynamic() {
            Value::String(s) => visitor.visit_borrowed_str(s),
            // Terraform converts numbers and bools to strings implicitly; a String field also keeps a big number's
            // exact text.
            Value::Number(n) => visitor.visit_string(n.to_decimal_string()),
            Value::Bool(b) => visitor.visit_borrowed_str(if *b { "true" } else { "false" }),
            _ => return Err(self.mismatch("a string")),
        };
        self.locate(r)
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.v.unwrap_dynamic() {
            Value::String(s) => self.locate(visitor.visit_borrowed_bytes(s.as_bytes())),
            _ => Err(self.mismatch("a string")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.v.unwrap_dynamic() {
            Value::Null => self.locate(visitor.visit_none()),
            Value::Unknown => Err(self.err(ErrorKind::Unknown)),
            _ => {
                let path = self.path.clone();
                visitor.visit_some(self).map_err(|e| e.locate(&path))
            }
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.v.unwrap_dynamic() {
            Value::Null => self.locate(visitor.visit_unit()),
            Value::Unknown => Err(self.err(ErrorKind::Unknown)),
            v => Err(self.err(ErrorKind::TypeMismatch {
                expected: "null".into(),
                found: v.kind(),
            })),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        let path = self.path.clone();
        let r = if name == TF_TRISTATE {
            match self.v.unwrap_dynamic() {
                Value::Null => visitor.visit_none(),
                Value::Unknown => visitor.visit_unit(),
                _ => visitor.visit_some(self),
            }
        } else {
            visitor.visit_newtype_struct(self)
        };
        r.map_err(|e| e.locate(&path))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.v.unwrap_dynamic() {
            Value::List(items) | Value::Set(items) | Value::Tuple(items) => {
                let mut seq = SeqDe {
                    parent: &self,
                    items: items.iter(),
                    index: 0,
                };
                let r = visitor.visit_seq(&mut seq);
                let r = match r {
                    Ok(v) if seq.items.len() == 0 => Ok(v),
                    Ok(_) => Err(self.err(ErrorKind::Serde(format!(
                        "{} elements were not consumed",
                        seq.items.len()
                    )))),
                    Err(e) => Err(e),
                };
                self.locate(r)
            }
            _ => Err(self.mismatch("a list, set or tuple")),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let (m, is_object) = match self.v.unwrap_dynamic() {
            Value::Map(m) => (m, false),
            Value::Object(m) => (m, true),
            _ => return Err(self.mismatch("an object or map")),
        };
        let mut access = MapDe {
            parent: &self,
            entries: m.iter(),
            pending: None,
            is_object,
        };
        let r = visitor.visit_map(&mut access);
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        match self.v.unwrap_dynamic() {
            Value::String(s) => {
                let d: BorrowedStrDeserializer<'a, CodecError> = BorrowedStrDeserializer::new(s);
                self.locate(visitor.visit_enum(d))
            }
            _ => Err(self.mismatch("a string (enum variant)")),
        }
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'p, 'a> {
    parent: &'p ValueDe<'a>,
    items: std::slice::Iter<'a, Value>,
    index: i64,
}

impl<'a> de::SeqAccess<'a> for SeqDe<'_, 'a> {
    type Error = CodecError;

    fn next_element_seed<S: DeserializeSeed<'a>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, CodecError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let child = self.parent.child(item, PathStep::Index(self.index));
        self.index += 1;
        let path = child.path.clone();
        seed.deserialize(child)
            .map(Some)
            .map_err(|e| e.locate(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'p, 'a> {
    parent: &'p ValueDe<'a>,
    entries: std::collections::btree_map::Iter<'a, String, Value>,
    pending: Option<(&'a String, &'a Value)>,
    is_object: bool,
}

impl<'a> de::MapAccess<'a> for MapDe<'_, 'a> {
    type Error = CodecError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, CodecError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((k, v));
        let d: BorrowedStrDeserializer<'a, CodecError> = BorrowedStrDeserializer::new(k.as_str());
        let step = if self.is_object {
            PathStep::Attr(k.clone())
        } else {
            PathStep::Key(k.clone())
        };
        let mut path = self.parent.path.clone();
        path.push(step);
        seed.deserialize(d).map(Some).map_err(|e| e.locate(&path))
    }

    fn next_value_seed<S: DeserializeSeed<'a>>(&mut self, seed: S) -> Result<S::Value, CodecError> {
        let (k, v) = self.pending.take().ok_or_else(|| {
            self.parent
                .err(ErrorKind::Serde("value requested before key".into()))
        })?;
        let step = if self.is_object {
            PathStep::Attr(k.clone())
        } else {
            PathStep::Key(k.clone())
        };
        let child = self.parent.child(v, step);
        let path = child.path.clone();
        seed.deserialize(child).map_err(|e| e.locate(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
