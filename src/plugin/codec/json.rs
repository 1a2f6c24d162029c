//! cty's JSON value form: the state that `UpgradeResourceState` hands over as `raw_state.json`, decoded
//! against a type. The JSON text itself is read by `jsontext.rs`; the type syntax lives in `types.rs`.

use std::collections::BTreeMap;

use super::error::{CodecError, ErrorKind};
use super::jsontext::{parse_json, Json};
use super::path::{Path, PathStep};
use super::types::Type;
use super::value::Value;
use super::{Number, MAX_DEPTH};

/// Decodes a value from cty's JSON form (the `attributes` object of a state file) against `ty`.
///
/// - `null` is null for any type; there are no unknowns in JSON.
/// - Numbers keep their exact text ([`Number::parse`]); a string holding a decimal is accepted for a number, and
///   numbers/bools are accepted for a string (go-cty's ctyjson is equally lenient, which helps state written by an
///   older schema).
/// - Objects: attributes the type does not have are **ignored** (Terraform strips removed attributes before the
///   upgrade call, but being lenient costs nothing); attributes of the type missing from the JSON become null.
/// - Maps are JSON objects; lists, sets and tuples are arrays; `dynamic` is `{"value": ..., "type": ...}` and
///   decodes to [`Value::Dynamic`].
pub fn decode_json(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let json = parse_json(bytes)?;
    let mut path = Vec::new();
    from_json(&json, ty, &mut path, 0)
}

fn mismatch(path: &Path, ty: &Type, found: &'static str) -> CodecError {
    CodecError::new(
        path.clone(),
        ErrorKind::TypeMismatch {
            expected: ty.describe(),
            found,
        },
    )
}

fn from_json(json: &Json, ty: &Type, path: &mut Path, depth: usize) -> Result<Value, CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::new(path.clone(), ErrorKind::TooDeep(MAX_DEPTH)));
    }
    if let Json::Null = json {
        return Ok(Value::Null);
    }
    match (ty, json) {
        (Type::String, Json::String(s)) => Ok(Value::String(s.clone())),
        (Type::String, Json::Number(n)) => Ok(Value::String(n.clone())),
        (Type::String, Json::Bool(b)) => Ok(Value::String(b.to_string())),
        (Type::Number, Json::Number(n)) | (Type::Number, Json::String(n)) => Number::parse(n)
            .map(Value::Number)
            .ok_or_else(|| CodecError::new(path.clone(), ErrorKind::InvalidNumber)),
        (Type::Bool, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (Type::Bool, Json::String(s)) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        (Type::List(et), Json::Array(items)) | (Type::Set(et), Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(PathStep::Index(i as i64));
                out.push(from_json(item, et, path, depth + 1)?);
                path.pop();
            }
            Ok(if matches!(ty, Type::Set(_)) {
                Value::set(out)
            } else {
                Value::List(out)
            })
        }
        (Type::Tuple(ets), Json::Array(items)) => {
            if ets.len() != items.len() {
                return Err(CodecError::new(
                    path.clone(),
                    ErrorKind::TupleLength {
                        required: ets.len(),
                        given: items.len(),
                    },
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, et)) in items.iter().zip(ets).enumerate() {
                path.push(PathStep::Index(i as i64));
                out.push(from_json(item, et, path, depth + 1)?);
                path.pop();
            }
            Ok(Value::Tuple(out))
        }
        (Type::Map(et), Json::Object(members)) => {
            let mut out = BTreeMap::new();
            for (k, v) in members {
                path.push(PathStep::Key(k.clone()));
                let v = from_json(v, et, path, depth + 1)?;
                path.pop();
                if out.insert(k.clone(), v).is_some() {
                    return Err(CodecError::new(
                        path.clone(),
                        ErrorKind::DuplicateKey(k.clone()),
                    ));
                }
            }
            Ok(Value::Map(out))
        }
        (Type::Object(atys), Json::Object(members)) => {
            let mut out = BTreeMap::new();
            for (k, v) in members {
                let Some(aty) = atys.get(k) else {
                    continue; // removed attribute: ignore
                };
                path.push(PathStep::Attr(k.clone()));
                let v = from_json(v, aty, path, depth + 1)?;
                path.pop();
                if out.insert(k.clone(), v).is_some() {
                    return Err(CodecError::new(
                        path.clone(),
                        ErrorKind::DuplicateKey(k.clone()),
                    ));
                }
            }
            for name in atys.keys() {
                out.entry(name.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
        (Type::Dynamic, Json::Object(members)) => {
            let mut value = None;
            let mut vty = None;
            for (k, v) in members {
                let slot = match k.as_str() {
                    "value" => &mut value,
                    "type" => &mut vty,
                    _ => {
                        return Err(CodecError::new(
                            path.clone(),
                            ErrorKind::UnsupportedAttribute(k.clone()),
                        ))
                    }
                };
                if slot.replace(v).is_some() {
                    return Err(CodecError::new(
                        path.clone(),
                        ErrorKind::DuplicateKey(k.clone()),
                    ));
                }
            }
            let vty = vty.ok_or_else(|| {
                CodecError::new(path.clone(), ErrorKind::MissingAttribute("type".into()))
            })?;
            let value = value.ok_or_else(|| {
                CodecError::new(path.clone(), ErrorKind::MissingAttribute("value".into()))
            })?;
            let vty =
                Type::from_json_tree(vty, 0).map_err(|e| CodecError::new(path.clone(), e.kind))?;
            let inner = from_json(value, &vty, path, depth + 1)?;
            if vty == Type::Dynamic {
                return Ok(inner);
            }
            Ok(Value::Dynamic(vty, Box::new(inner)))
        }
        (_, j) => Err(mismatch(path, ty, j.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn parses_json_strictly() {
        assert_eq!(
            parse_json(br#" {"a": [1, -2.5e3, true, null, "x\u00e9\ud83d\ude00"]} "#).unwrap(),
            Json::Object(vec![(
                "a".into(),
                Json::Array(vec![
                    Json::Number("1".into()),
                    Json::Number("-2.5e3".into()),
                    Json::Bool(true),
                    Json::Null,
                    Json::String("x\u{e9}\u{1F600}".into()),
                ])
            )])
        );
        for bad in [
            &b""[..],
            b"[1,]",
            b"{\"a\" 1}",
            b"01",
            b"1.",
            b"\"\\ud800\"",
            b"\"a",
            b"tru",
            b"[1] x",
            b"\"\x01\"",
            b"\xff",
        ] {
            assert!(
                parse_json(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn deep_json_is_cut_off() {
        let deep = "[".repeat(100_000);
        let e = parse_json(deep.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooDeep(MAX_DEPTH));
    }

    #[test]
    fn decodes_state_leniently() {
        let ty = Type::from_json(br#"["object",{"id":"string","port":"number","tags":["map","string"],"names":["set","string"],"gone":"bool"}]"#).unwrap();
        let v = decode_json(
            br#"{"id":"a","port":123456789012345678901234567890,"tags":{"k":"v"},"names":["b","a","b"],"removed":1}"#,
            &ty,
        )
        .unwrap();
        assert_eq!(
            v,
            obj(&[
                ("id", Value::String("a".into())),
                (
                    "port",
                    Value::Number(Number::Big("123456789012345678901234567890".into()))
                ),
                (
                    "tags",
                    Value::Map([("k".to_string(), Value::String("v".into()))].into())
                ),
                (
                    "names",
                    Value::Set(vec![Value::String("a".into()), Value::String("b".into())])
                ),
                ("gone", Value::Null),
            ])
        );
        // Exact text is preserved for the big number.
        if let Value::Object(m) = &v {
            assert!(
                matches!(&m["port"], Value::Number(Number::Big(s)) if s == "123456789012345678901234567890")
            );
        }
    }

    #[test]
    fn decodes_dynamic_and_reports_paths() {
        let ty = Type::from_json(
            br#"["object",{"d":"dynamic","l":["list",["object",{"p":"number"}]]}]"#,
        )
        .unwrap();
        let v = decode_json(
            br#"{"d":{"type":["list","string"],"value":["x"]},"l":[{"p":1}]}"#,
            &ty,
        )
        .unwrap();
        assert_eq!(
            v,
            obj(&[
                (
                    "d",
                    Value::Dynamic(
                        Type::List(Box::new(Type::String)),
                        Box::new(Value::List(vec![Value::String("x".into())]))
                    )
                ),
                (
                    "l",
                    Value::List(vec![obj(&[("p", Value::Number(Number::Int(1)))])])
                ),
            ])
        );
        let e = decode_json(br#"{"d":null,"l":[{"p":1},{"p":"secret-ish"}]}"#, &ty).unwrap_err();
        assert_eq!(e.path_string(), ".l[1].p");
        assert_eq!(e.kind, ErrorKind::InvalidNumber);
        assert!(!e.to_string().contains("secret"));
        let e = decode_json(br#"{"d":{"value":1},"l":[]}"#, &ty).unwrap_err();
        assert_eq!(e.path_string(), ".d");
        let e = decode_json(br#"{"d":null,"l":[{"p":true}]}"#, &ty).unwrap_err();
        assert_eq!(
            e.to_string(),
            "at .l[0].p: a number is required, but bool was given"
        );
        let e = decode_json(br#"{"d":null,"l":{}}"#, &ty).unwrap_err();
        assert_eq!(e.path_string(), ".l");
    }

    #[test]
    fn string_and_bool_leniency() {
        assert_eq!(
            decode_json(b"12", &Type::String).unwrap(),
            Value::String("12".into())
        );
        assert_eq!(
            decode_json(b"true", &Type::String).unwrap(),
            Value::String("true".into())
        );
        assert_eq!(
            decode_json(b"\"12.5\"", &Type::Number).unwrap(),
            Value::Number(Number::Big("12.5".into()))
        );
        assert_eq!(
            decode_json(b"\"false\"", &Type::Bool).unwrap(),
            Value::Bool(false)
        );
        assert!(decode_json(b"\"yes\"", &Type::Bool).is_err());
        assert!(decode_json(b"\"x\"", &Type::Number).is_err());
    }
}
