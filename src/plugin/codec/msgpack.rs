//! cty's msgpack wire form (`DynamicValue.msgpack`), the form Terraform uses for every value in every RPC.
//!
//! Decoding follows go-cty `cty/msgpack/unmarshal.go`: nil is null for any type; *any* extension is an unknown
//! (refined unknowns, ext type 12, carry facts about the value that we may ignore); numbers arrive as int, uint,
//! float or decimal string; objects are strict (exactly the type's attributes). Encoding follows `marshal.go`:
//! unknown is `d4 00 00`, keys are sorted, integers are compact, other floats are float64, numbers that fit neither
//! are decimal strings, a `dynamic` slot carries `[type_json (bin), value]`.
//!
//! The decoder works on untrusted bytes: every read is bounds-checked, lengths from headers never drive
//! allocation beyond the remaining input, and nesting is limited to [`MAX_DEPTH`].

use std::collections::BTreeMap;

use rmp::Marker;

use super::error::{CodecError, ErrorKind};
use super::number::Number;
use super::path::{Path, PathStep};
use super::types::Type;
use super::value::Value;
use super::MAX_DEPTH;

/// Decodes cty msgpack bytes against `ty`. The whole input must be one value.
pub fn decode_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let mut d = Decoder { b: bytes, pos: 0 };
    let mut path = Vec::new();
    let v = d.value(ty, &mut path, 0)?;
    if d.pos != bytes.len() {
        return Err(d.malformed(&path, "trailing data after the value"));
    }
    Ok(v)
}

struct Decoder<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn malformed(&self, path: &Path, detail: &str) -> CodecError {
        CodecError::new(
            path.clone(),
            ErrorKind::Malformed {
                format: "msgpack",
                detail: format!("{detail} (at byte {})", self.pos),
            },
        )
    }

    fn take(&mut self, n: usize, path: &Path) -> Result<&'a [u8], CodecError> {
        match self.pos.checked_add(n).filter(|&end| end <= self.b.len()) {
            Some(end) => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.malformed(path, "unexpected end of input")),
        }
    }

    fn be(&mut self, n: usize, path: &Path) -> Result<u64, CodecError> {
        Ok(self
            .take(n, path)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn marker(&mut self, path: &Path) -> Result<Marker, CodecError> {
        Ok(Marker::from_u8(self.take(1, path)?[0]))
    }

    /// Length of a str/bin body after its marker, or None if the marker is neither.
    fn bytes_len(&mut self, m: Marker, path: &Path) -> Result<Option<usize>, CodecError> {
        Ok(Some(match m {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => self.be(1, path)? as usize,
            Marker::Str16 | Marker::Bin16 => self.be(2, path)? as usize,
            Marker::Str32 | Marker::Bin32 => self.be(4, path)? as usize,
            _ => return Ok(None),
        }))
    }

    fn array_len(&mut self, m: Marker, path: &Path) -> Result<Option<usize>, CodecError> {
        Ok(Some(match m {
            Marker::FixArray(n) => usize::from(n),
            Marker::Array16 => self.be(2, path)? as usize,
            Marker::Array32 => self.be(4, path)? as usize,
            _ => return Ok(None),
        }))
    }

    fn map_len(&mut self, m: Marker, path: &Path) -> Result<Option<usize>, CodecError> {
        Ok(Some(match m {
            Marker::FixMap(n) => usize::from(n),
            Marker::Map16 => self.be(2, path)? as usize,
            Marker::Map32 => self.be(4, path)? as usize,
            _ => return Ok(None),
        }))
    }

    /// Payload length of an extension (unknown value), or None if `m` is not an extension marker.
    fn ext_len(&mut self, m: Marker, path: &Path) -> Result<Option<usize>, CodecError> {
        Ok(Some(match m {
            Marker::FixExt1 => 1,
            Marker::FixExt2 => 2,
            Marker::FixExt4 => 4,
            Marker::FixExt8 => 8,
            Marker::FixExt16 => 16,
            Marker::Ext8 => self.be(1, path)? as usize,
            Marker::Ext16 => self.be(2, path)? as usize,
            Marker::Ext32 => self.be(4, path)? as usize,
            _ => return Ok(None),
        }))
    }

    /// A map key (or the type in a dynamic wrapper): a str (or bin) that is valid UTF-8.
    fn key(&mut self, path: &Path) -> Result<String, CodecError> {
        let m = self.marker(path)?;
        let Some(n) = self.bytes_len(m, path)? else {
            return Err(CodecError::new(
                path.clone(),
                ErrorKind::TypeMismatch {
                    expected: "a string key".into(),
                    found: marker_kind(m),
                },
            ));
        };
        let body = self.take(n, path)?;
        std::str::from_utf8(body)
            .map(str::to_owned)
            .map_err(|_| self.malformed(path, "invalid UTF-8 in a string"))
    }

    fn value(&mut self, ty: &Type, path: &mut Path, depth: usize) -> Result<Value, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::new(path.clone(), ErrorKind::TooDeep(MAX_DEPTH)));
        }
        let m = self.marker(path)?;
        if m == Marker::Null {
            return Ok(Value::Null);
        }
        if let Some(n) = self.ext_len(m, path)? {
            // Extension type byte, then the payload (refinements for type 12; ignored).
            self.take(1 + n, path)?;
            return Ok(Value::Unknown);
        }
        let mismatch = |found| {
            CodecError::new(
                path.clone(),
                ErrorKind::TypeMismatch {
                    expected: ty.describe(),
                    found,
                },
            )
        };
        match ty {
            Type::Dynamic => {
                if self.array_len(m, path)? != Some(2) {
                    return Err(CodecError::new(
                        path.clone(),
                        ErrorKind::TypeMismatch {
                            expected: "a [type, value] pair for a dynamic value".into(),
                            found: marker_kind(m),
                        },
                    ));
                }
                let tm = self.marker(path)?;
                let Some(n) = self.bytes_len(tm, path)? else {
                    return Err(CodecError::new(
                        path.clone(),
                        ErrorKind::TypeMismatch {
                            expected: "type JSON bytes".into(),
                            found: marker_kind(tm),
                        },
                    ));
                };
                let tjson = self.take(n, path)?;
                let vty =
                    Type::from_json(tjson).map_err(|e| CodecError::new(path.clone(), e.kind))?;
                let inner = self.value(&vty, path, depth + 1)?;
                if vty == Type::Dynamic {
                    // A wrapper announcing "dynamic" adds nothing: cty reads the inner value as the value.
                    return Ok(inner);
                }
                Ok(Value::Dynamic(vty, Box::new(inner)))
            }
            Type::String => {
                let Some(n) = self.bytes_len(m, path)? else {
                    return Err(mismatch(marker_kind(m)));
                };
                let body = self.take(n, path)?;
                std::str::from_utf8(body)
                    .map(|s| Value::String(s.to_owned()))
                    .map_err(|_| self.malformed(path, "invalid UTF-8 in a string"))
            }
            Type::Bool => match m {
                Marker::True => Ok(Value::Bool(true)),
                Marker::False => Ok(Value::Bool(false)),
                _ => Err(mismatch(marker_kind(m))),
            },
            Type::Number => {
                let n = match m {
                    Marker::FixPos(v) => Number::Int(i64::from(v)),
                    Marker::FixNeg(v) => Number::Int(i64::from(v)),
                    Marker::U8 => Number::Int(self.be(1, path)? as i64),
                    Marker::U16 => Number::Int(self.be(2, path)? as i64),
                    Marker::U32 => Number::Int(self.be(4, path)? as i64),
                    Marker::U64 => Number::from(self.be(8, path)?),
                    Marker::I8 => Number::Int(i64::from(self.be(1, path)? as u8 as i8)),
                    Marker::I16 => Number::Int(i64::from(self.be(2, path)? as u16 as i16)),
                    Marker::I32 => Number::Int(i64::from(self.be(4, path)? as u32 as i32)),
                    Marker::I64 => Number::Int(self.be(8, path)? as i64),
                    Marker::F32 => {
                        float(f64::from(f32::from_bits(self.be(4, path)? as u32)), path)?
                    }
                    Marker::F64 => float(f64::from_bits(self.be(8, path)?), path)?,
                    _ => {
                        let Some(len) = self.bytes_len(m, path)? else {
                            return Err(mismatch(marker_kind(m)));
                        };
                        let body = self.take(len, path)?;
                        std::str::from_utf8(body)
                            .ok()
                            .and_then(Number::parse)
                            .ok_or_else(|| {
                                CodecError::new(path.clone(), ErrorKind::InvalidNumber)
                            })?
                    }
                };
                Ok(Value::Number(n))
            }
            Type::List(et) | Type::Set(et) => {
                let Some(n) = self.array_len(m, path)? else {
                    return Err(mismatch(marker_kind(m)));
                };
                let mut items = Vec::with_capacity(n.min(self.b.len() - self.pos));
                for i in 0..n {
                    path.push(PathStep::Index(i as i64));
                    items.push(self.value(et, path, depth + 1)?);
                    path.pop();
                }
                Ok(if matches!(ty, Type::Set(_)) {
                    Value::set(items)
                } else {
                    Value::List(items)
                })
            }
            Type::Tuple(ets) => {
                let Some(n) = self.array_len(m, path)? else {
                    return Err(mismatch(marker_kind(m)));
                };
                if n != ets.len() {
                    return Err(CodecError::new(
                        path.clone(),
                        ErrorKind::TupleLength {
                            required: ets.len(),
                            given: n,
                        },
                    ));
                }
                let mut items = Vec::with_capacity(n);
                for (i, et) in ets.iter().enumerate() {
                    path.push(PathStep::Index(i as i64));
                    items.push(self.value(et, path, depth + 1)?);
                    path.pop();
                }
                Ok(Value::Tuple(items))
            }
            Type::Map(et) => {
                let Some(n) = self.map_len(m, path)? else {
                    return Err(mismatch(marker_kind(m)));
                };
                let mut out = BTreeMap::new();
                for _ in 0..n {
                    let k = self.key(path)?;
                    path.push(PathStep::Key(k));
                    let v = self.value(et, path, depth + 1)?;
                    let Some(PathStep::Key(k)) = path.pop() else {
                        unreachable!("pushed a key above")
                    };
                    if out.contains_key(&k) {
                        return Err(CodecError::new(path.clone(), ErrorKind::DuplicateKey(k)));
                    }
                    out.insert(k, v);
                }
                Ok(Value::Map(out))
            }
            Type::Object(atys) => {
                let Some(n) = self.map_len(m, path)? else {
                    return Err(mismatch(marker_kind(m)));
                };
                if n != atys.len() {
                    return Err(CodecError::new(
                        path.clone(),
                        ErrorKind::AttributeCount {
                            required: atys.len(),
                            given: n,
                        },
                    ));
                }
                let mut out = BTreeMap::new();
                for _ in 0..n {
                    let k = self.key(path)?;
                    let Some(aty) = atys.get(&k) else {
                        return Err(CodecError::new(
                            path.clone(),
                            ErrorKind::UnsupportedAttribute(k),
                        ));
                    };
                    if out.contains_key(&k) {
                        return Err(CodecError::new(path.clone(), ErrorKind::DuplicateKey(k)));
                    }
                    path.push(PathStep::Attr(k));
                    let v = self.value(aty, path, depth + 1)?;
                    let Some(PathStep::Attr(k)) = path.pop() else {
                        unreachable!("pushed an attribute above")
                    };
                    out.insert(k, v);
                }
                Ok(Value::Object(out))
            }
        }
    }
}

fn float(f: f64, path: &Path) -> Result<Number, CodecError> {
    Number::from_f64(f).ok_or_else(|| CodecError::new(path.clone(), ErrorKind::InvalidNumber))
}

fn marker_kind(m: Marker) -> &'static str {
    match m {
        Marker::Null => "null",
        Marker::True | Marker::False => "bool",
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64
        | Marker::F32
        | Marker::F64 => "number",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "string",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "binary",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "map",
        Marker::Reserved => "reserved byte",
        _ => "extension",
    }
}

/// Encodes `value` as cty msgpack for `ty`, checking that it conforms (every object attribute present, no extra
/// ones, kinds matching). A plain value in a `dynamic` slot is wrapped with its [`Value::implied_type`]; a
/// [`Value::Dynamic`] in a slot of exactly its type is unwrapped.
pub fn encode_msgpack(value: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    encode(value, ty, &mut path, 0, &mut out)?;
    Ok(out)
}

/// Writing to a Vec cannot fail except for a collection longer than msgpack's u32 length field.
fn too_large(path: &Path) -> CodecError {
    CodecError::new(
        path.clone(),
        ErrorKind::Malformed {
            format: "msgpack",
            detail: "collection or string too large".into(),
        },
    )
}

fn len32(n: usize, path: &Path) -> Result<u32, CodecError> {
    u32::try_from(n).map_err(|_| too_large(path))
}

fn write_str(out: &mut Vec<u8>, s: &str, path: &Path) -> Result<(), CodecError> {
    rmp::encode::write_str_len(out, len32(s.len(), path)?).map_err(|_| too_large(path))?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: &Number, path: &Path) -> Result<(), CodecError> {
    let invalid = || CodecError::new(path.clone(), ErrorKind::InvalidNumber);
    if let Some(i) = n.as_i64() {
        rmp::encode::write_sint(out, i).map_err(|_| too_large(path))?;
        return Ok(());
    }
    match n {
        Number::Int(i) => {
            rmp::encode::write_sint(out, *i).map_err(|_| too_large(path))?;
        }
        Number::Float(f) if f.is_nan() => return Err(invalid()),
        Number::Float(f) => rmp::encode::write_f64(out, *f).map_err(|_| too_large(path))?,
        Number::Big(s) => {
            if Number::parse(s).is_none() {
                return Err(invalid());
            }
            write_str(out, s, path)?;
        }
    }
    Ok(())
}

fn encode(
    value: &Value,
    ty: &Type,
    path: &mut Path,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::new(path.clone(), ErrorKind::TooDeep(MAX_DEPTH)));
    }
    let mismatch = |path: &Path| {
        CodecError::new(
            path.clone(),
            ErrorKind::TypeMismatch {
                expected: ty.describe(),
                found: value.kind(),
            },
        )
    };
    match (ty, value) {
        (_, Value::Null) => out.push(0xc0),
        (_, Value::Unknown) => out.extend_from_slice(&[0xd4, 0x00, 0x00]),
        (Type::Dynamic, Value::Dynamic(vty, inner)) => {
            if *vty == Type::Dynamic {
                // Announcing "dynamic" would say nothing; encode the inner value in the slot directly.
                return encode(inner, ty, path, depth + 1, out);
            }
            out.push(0x92);
            let tj = vty.to_json();
            rmp::encode::write_bin_len(out, len32(tj.len(), path)?).map_err(|_| too_large(path))?;
            out.extend_from_slice(&tj);
            encode(inner, vty, path, depth + 1, out)?;
        }
        (Type::Dynamic, v) => {
            let vty = v.implied_type().ok_or_else(|| {
                CodecError::new(
                    path.clone(),
                    ErrorKind::TypeMismatch {
                        expected: "a value of one consistent type".into(),
                        found: v.kind(),
                    },
                )
            })?;
            return encode(
                &Value::Dynamic(vty, Box::new(v.clone())),
                ty,
                path,
                depth,
                out,
            );
        }
        (ty, Value::Dynamic(vty, inner)) => {
            if vty != ty {
                return Err(mismatch(path));
            }
            encode(inner, ty, path, depth + 1, out)?;
        }
        (Type::String, Value::String(s)) => write_str(out, s, path)?,
        (Type::Number, Value::Number(n)) => write_number(out, n, path)?,
        (Type::Bool, Value::Bool(b)) => out.push(if *b { 0xc3 } else { 0xc2 }),
        (Type::List(et), Value::List(items)) => {
            rmp::encode::write_array_len(out, len32(items.len(), path)?)
                .map_err(|_| too_large(path))?;
            for (i, item) in items.iter().enumerate() {
                path.push(PathStep::Index(i as i64));
                encode(item, et, path, depth + 1, out)?;
                path.pop();
            }
        }
        (Type::Set(et), Value::Set(items)) => {
            let mut sorted: Vec<&Value> = items.iter().collect();
            sorted.sort();
            // Unknown elements never collapse (see `Value::set`).
            sorted.dedup_by(|a, b| a == b && a.is_wholly_known());
            rmp::encode::write_array_len(out, len32(sorted.len(), path)?)
                .map_err(|_| too_large(path))?;
            for (i, item) in sorted.into_iter().enumerate() {
                path.push(PathStep::Index(i as i64));
                encode(item, et, path, depth + 1, out)?;
                path.pop();
            }
        }
        (Type::Tuple(ets), Value::Tuple(items)) => {
            if ets.len() != items.len() {
                return Err(CodecError::new(
                    path.clone(),
                    ErrorKind::TupleLength {
                        required: ets.len(),
                        given: items.len(),
                    },
                ));
            }
            rmp::encode::write_array_len(out, len32(items.len(), path)?)
                .map_err(|_| too_large(path))?;
            for (i, (item, et)) in items.iter().zip(ets).enumerate() {
                path.push(PathStep::Index(i as i64));
                encode(item, et, path, depth + 1, out)?;
                path.pop();
            }
        }
        (Type::Map(et), Value::Map(m)) => {
            rmp::encode::write_map_len(out, len32(m.len(), path)?).map_err(|_| too_large(path))?;
            for (k, v) in m {
                write_str(out, k, path)?;
                path.push(PathStep::Key(k.clone()));
                encode(v, et, path, depth + 1, out)?;
                path.pop();
            }
        }
        (Type::Object(atys), Value::Object(m)) => {
            if let Some(extra) = m.keys().find(|k| !atys.contains_key(*k)) {
                return Err(CodecError::new(
                    path.clone(),
                    ErrorKind::UnsupportedAttribute(extra.clone()),
                ));
            }
            if let Some(missing) = atys.keys().find(|k| !m.contains_key(*k)) {
                return Err(CodecError::new(
                    path.clone(),
                    ErrorKind::MissingAttribute(missing.clone()),
                ));
            }
            rmp::encode::write_map_len(out, len32(atys.len(), path)?)
                .map_err(|_| too_large(path))?;
            for (k, aty) in atys {
                write_str(out, k, path)?;
                path.push(PathStep::Attr(k.clone()));
                encode(&m[k], aty, path, depth + 1, out)?;
                path.pop();
            }
        }
        _ => return Err(mismatch(path)),
    }
    Ok(())
}
