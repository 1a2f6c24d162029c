//! Typed Rust model → Value conforming to a [`Type`] (serde `Serializer` plus a type-directed conversion).
//!
//! Serialization happens in two steps. First the model is serialized into a loose [`Value`] (structs become
//! objects, maps become maps, every sequence a list, `None`/unit null, [`Tf::Unknown`](super::Tf) unknown). Then
//! that value is *conformed* to the schema type: lists become sets (canonical order) or tuples where the type says
//! so, maps and objects convert into each other, object attributes the model lacks become null, numbers and bools
//! convert to strings (and decimal strings to numbers) as Terraform's own conversions would, and values in a
//! `dynamic` slot are wrapped with their implied type. The type therefore decides the wire shape, and the model
//! only needs the natural Rust types.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::ser::{self, Impossible, Serialize};

use super::error::{CodecError, ErrorKind};
use super::number::Number;
use super::path::{Path, PathStep};
use super::tf::TF_UNKNOWN;
use super::types::Type;
use super::value::Value;
use super::MAX_DEPTH;

/// Converts a model into a [`Value`] that conforms to `ty` (ready for [`encode_msgpack`](super::encode_msgpack)).
///
/// Errors: a model attribute the type does not have (`unsupported attribute`), a kind that cannot convert
/// (a list where a string is required), NaN, enum variants with data.
pub fn to_value<T: Serialize + ?Sized>(value: &T, ty: &Type) -> Result<Value, CodecError> {
    let loose = value.serialize(LooseSer)?;
    let mut path = Vec::new();
    conform(loose, ty, &mut path, 0)
}

impl ser::Error for CodecError {
    fn custom<T: Display>(msg: T) -> Self {
        CodecError::new(Vec::new(), ErrorKind::Serde(msg.to_string()))
    }
}

/// Prepends a step to the (relative) path of an error coming up from a nested serialization.
fn under(step: PathStep) -> impl FnOnce(CodecError) -> CodecError {
    move |mut e| {
        e.path.insert(0, step);
        e
    }
}

fn unsupported(what: &str) -> CodecError {
    CodecError::new(
        Vec::new(),
        ErrorKind::Serde(format!("{what} cannot be represented as a Terraform value")),
    )
}

/// Serializes into a loose, untyped Value.
struct LooseSer;

impl ser::Serializer for LooseSer {
    type Ok = Value;
    type Error = CodecError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = Impossible<Value, CodecError>;
    type SerializeMap = MapSer;
    type SerializeStruct = MapSer;
    type SerializeStructVariant = Impossible<Value, CodecError>;

    fn serialize_bool(self, v: bool) -> Result<Value, CodecError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, CodecError> {
        Ok(Value::Number(match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Big(v.to_string()),
        }))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, CodecError> {
        Ok(Value::number(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, CodecError> {
        Ok(Value::Number(match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Big(v.to_string()),
        }))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, CodecError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, CodecError> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| CodecError::new(Vec::new(), ErrorKind::InvalidNumber))
    }
    fn serialize_char(self, v: char) -> Result<Value, CodecError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, CodecError> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, CodecError> {
        String::from_utf8(v.to_vec())
            .map(Value::String)
            .map_err(|_| unsupported("non-UTF-8 bytes"))
    }
    fn serialize_none(self) -> Result<Value, CodecError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, CodecError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, CodecError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<Value, CodecError> {
        Ok(if name == TF_UNKNOWN {
            Value::Unknown
        } else {
            Value::Null
        })
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, CodecError> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Value, CodecError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Value, CodecError> {
        Err(unsupported("an enum variant with data"))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, CodecError> {
        Ok(SeqSer(Vec::with_capacity(len.unwrap_or(0).min(1024))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, CodecError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqSer, CodecError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CodecError> {
        Err(unsupported("an enum variant with data"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapSer, CodecError> {
        Ok(MapSer {
            entries: BTreeMap::new(),
            key: None,
            is_struct: false,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapSer, CodecError> {
        Ok(MapSer {
            entries: BTreeMap::new(),
            key: None,
            is_struct: true,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CodecError> {
        Err(unsupported("an enum variant with data"))
    }
}

struct SeqSer(Vec<Value>);

impl SeqSer {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        let i = self.0.len() as i64;
        self.0.push(
            value
                .serialize(LooseSer)
                .map_err(under(PathStep::Index(i)))?,
        );
        Ok(())
    }
}

impl ser::SerializeSeq for SeqSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::List(self.0))
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::List(self.0))
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::List(self.0))
    }
}

struct MapSer {
    entries: BTreeMap<String, Value>,
    key: Option<String>,
    is_struct: bool,
}

impl MapSer {
    fn insert<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), CodecError> {
        let step = if self.is_struct {
            PathStep::Attr(key.clone())
        } else {
            PathStep::Key(key.clone())
        };
        let v = value.serialize(LooseSer).map_err(under(step))?;
        if self.entries.insert(key.clone(), v).is_some() {
            return Err(CodecError::new(Vec::new(), ErrorKind::DuplicateKey(key)));
        }
        Ok(())
    }
}

impl ser::SerializeMap for MapSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CodecError> {
        // Map keys are strings in cty; accept anything that serializes to a string, number or bool.
        let k = match key.serialize(LooseSer)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_decimal_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(unsupported("a map key that is not a string")),
        };
        self.key = Some(k);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        let k = self.key.take().ok_or_else(|| {
            CodecError::new(
                Vec::new(),
                ErrorKind::Serde("map value without a key".into()),
            )
        })?;
        self.insert(k, value)
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::Map(self.entries))
    }
}

impl ser::SerializeStruct for MapSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        self.insert(key.to_owned(), value)
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::Object(self.entries))
    }
}

/// Converts a loose value to the shape `ty` requires.
pub(crate) fn conform(
    v: Value,
    ty: &Type,
    path: &mut Path,
    depth: usize,
) -> Result<Value, CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::new(path.clone(), ErrorKind::TooDeep(MAX_DEPTH)));
    }
    let mismatch = |path: &Path, v: &Value| {
        CodecError::new(
            path.clone(),
            ErrorKind::TypeMismatch {
                expected: ty.describe(),
                found: v.kind(),
            },
        )
    };
    let elems = |items: Vec<Value>, et: &Type, path: &mut Path| -> Result<Vec<Value>, CodecError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            path.push(PathStep::Index(i as i64));
            out.push(conform(item, et, path, depth + 1)?);
            path.pop();
        }
        Ok(out)
    };
    Ok(match (ty, v) {
        (_, Value::Null) => Value::Null,
        (_, Value::Unknown) => Value::Unknown,
        (Type::Dynamic, Value::Dynamic(Type::Dynamic, inner)) => {
            conform(*inner, ty, path, depth + 1)?
        }
        (Type::Dynamic, Value::Dynamic(t, inner)) => {
            let inner = conform(*inner, &t, path, depth + 1)?;
            Value::Dynamic(t, Box::new(inner))
        }
        (Type::Dynamic, v) => {
            let t = v.implied_type().ok_or_else(|| mismatch(path, &v))?;
            let inner = conform(v, &t, path, depth + 1)?;
            Value::Dynamic(t, Box::new(inner))
        }
        (ty, Value::Dynamic(t, inner)) if *ty == t => conform(*inner, ty, path, depth + 1)?,
        (Type::String, Value::String(s)) => Value::String(s),
        (Type::String, Value::Number(n)) => Value::String(n.to_decimal_string()),
        (Type::String, Value::Bool(b)) => Value::String(b.to_string()),
        (Type::Number, Value::Number(n)) => Value::Number(n),
        (Type::Number, Value::String(s)) => Value::Number(
            Number::parse(&s)
                .ok_or_else(|| CodecError::new(path.clone(), ErrorKind::InvalidNumber))?,
        ),
        (Type::Bool, Value::Bool(b)) => Value::Bool(b),
        (Type::Bool, Value::String(s)) if s == "true" || s == "false" => Value::Bool(s == "true"),
        (Type::List(et), Value::List(items) | Value::Set(items) | Value::Tuple(items)) => {
            Value::List(elems(items, et, path)?)
        }
        (Type::Set(et), Value::List(items) | Value::Set(items) | Value::Tuple(items)) => {
            Value::set(elems(items, et, path)?)
        }
        (Type::Tuple(ets), Value::List(items) | Value::Tuple(items)) => {
            if items.len() != ets.len() {
                return Err(CodecError::new(
                    path.clone(),
                    ErrorKind::TupleLength {
                        required: ets.len(),
                        given: items.len(),
                    },
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, et)) in items.into_iter().zip(ets).enumerate() {
                path.push(PathStep::Index(i as i64));
                out.push(conform(item, et, path, depth + 1)?);
                path.pop();
            }
            Value::Tuple(out)
        }
        (Type::Map(et), Value::Map(m) | Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                path.push(PathStep::Key(k));
                let v = conform(v, et, path, depth + 1)?;
                let Some(PathStep::Key(k)) = path.pop() else {
                    unreachable!("pushed a key above")
                };
                out.insert(k, v);
            }
            Value::Map(out)
        }
        (Type::Object(atys), Value::Object(mut m) | Value::Map(mut m)) => {
            if let Some(extra) = m.keys().find(|k| !atys.contains_key(*k)) {
                return Err(CodecError::new(
                    path.clone(),
                    ErrorKind::UnsupportedAttribute(extra.clone()),
                ));
            }
            let mut out = BTreeMap::new();
            for (name, aty) in atys {
                let v = m.remove(name).unwrap_or(Value::Null);
                path.push(PathStep::Attr(name.clone()));
                let v = conform(v, aty, path, depth + 1)?;
                path.pop();
                out.insert(name.clone(), v);
            }
            Value::Object(out)
        }
        (_, v) => return Err(mismatch(path, &v)),
    })
}

/// Conforms an already-built [`Value`] to `ty` with the same conversions as [`to_value`]: fills missing object
/// attributes with null, canonicalises sets, turns lists into sets/tuples, wraps dynamic values.
pub fn conform_value(value: Value, ty: &Type) -> Result<Value, CodecError> {
    let mut path = Vec::new();
    conform(value, ty, &mut path, 0)
}
