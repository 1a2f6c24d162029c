//! cty types and their JSON syntax.
//!
//! Terraform's schema carries an attribute's type as JSON bytes in cty's type syntax, and a value in a `dynamic`
//! slot travels with its concrete type in the same syntax. Decoding needs the type because cty's wire forms are
//! schema-driven (an object and a map look the same in msgpack; a set and a list too).

use std::collections::BTreeMap;
use std::fmt;

use super::error::{CodecError, ErrorKind};
use super::jsontext::{parse_json, write_json_string, Json};
use super::MAX_DEPTH;

/// A cty type. Optional object attributes (a type-constraint feature) are not modelled: they never appear in
/// schemas on the wire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
    /// cty's `DynamicPseudoType`: the concrete type is chosen per value and travels with it.
    Dynamic,
}

fn invalid(detail: impl Into<String>) -> CodecError {
    CodecError::new(Vec::new(), ErrorKind::InvalidType(detail.into()))
}

impl Type {
    /// `list(elem)`.
    pub fn list(elem: Type) -> Type {
        Type::List(Box::new(elem))
    }
    /// `set(elem)`.
    pub fn set(elem: Type) -> Type {
        Type::Set(Box::new(elem))
    }
    /// `map(elem)`.
    pub fn map(elem: Type) -> Type {
        Type::Map(Box::new(elem))
    }
    /// `object({...})` from (name, type) pairs.
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Type)>) -> Type {
        Type::Object(attrs.into_iter().map(|(k, t)| (k.into(), t)).collect())
    }

    /// Parses cty's JSON type syntax: `"string"`, `"number"`, `"bool"`, `"dynamic"`, `["list",T]`, `["set",T]`,
    /// `["map",T]`, `["object",{"name":T,...}]` (a third element, cty's optional-attribute list, is accepted and
    /// ignored), `["tuple",[T,...]]`.
    pub fn from_json(bytes: &[u8]) -> Result<Type, CodecError> {
        let json = parse_json(bytes).map_err(|e| invalid(e.kind.to_string()))?;
        Type::from_json_tree(&json, 0)
    }

    pub(crate) fn from_json_tree(json: &Json, depth: usize) -> Result<Type, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::new(Vec::new(), ErrorKind::TooDeep(MAX_DEPTH)));
        }
        match json {
            Json::String(s) => match s.as_str() {
                "string" => Ok(Type::String),
                "number" => Ok(Type::Number),
                "bool" => Ok(Type::Bool),
                "dynamic" => Ok(Type::Dynamic),
                _ => Err(invalid("unknown primitive type")),
            },
            Json::Array(items) => {
                let (kind, rest) = match items.split_first() {
                    Some((Json::String(k), rest)) => (k.as_str(), rest),
                    _ => return Err(invalid("a type array must start with the kind")),
                };
                match (kind, rest) {
                    ("list", [e]) => Ok(Type::list(Type::from_json_tree(e, depth + 1)?)),
                    ("set", [e]) => Ok(Type::set(Type::from_json_tree(e, depth + 1)?)),
                    ("map", [e]) => Ok(Type::map(Type::from_json_tree(e, depth + 1)?)),
                    ("object", [Json::Object(attrs)])
                    | ("object", [Json::Object(attrs), Json::Array(_)]) => {
                        let mut out = BTreeMap::new();
                        for (name, aty) in attrs {
                            if out
                                .insert(name.clone(), Type::from_json_tree(aty, depth + 1)?)
                                .is_some()
                            {
                                return Err(invalid("duplicate object attribute"));
                            }
                        }
                        Ok(Type::Object(out))
                    }
                    ("tuple", [Json::Array(elems)]) => Ok(Type::Tuple(
                        elems
                            .iter()
                            .map(|e| Type::from_json_tree(e, depth + 1))
                            .collect::<Result<_, _>>()?,
                    )),
                    _ => Err(invalid("unknown or malformed type kind")),
                }
            }
            _ => Err(invalid("a type must be a string or an array")),
        }
    }

    /// cty's JSON type syntax, compact, object attributes in sorted order (what Terraform expects in
    /// `Schema.Attribute.type` and in the `dynamic` wrapper).
    pub fn to_json(&self) -> Vec<u8> {
        let mut s = String::new();
        self.write_json(&mut s);
        s.into_bytes()
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Type::String => out.push_str("\"string\""),
            Type::Number => out.push_str("\"number\""),
            Type::Bool => out.push_str("\"bool\""),
            Type::Dynamic => out.push_str("\"dynamic\""),
            Type::List(e) | Type::Set(e) | Type::Map(e) => {
                let kind = match self {
                    Type::List(_) => "list",
                    Type::Set(_) => "set",
                    _ => "map",
                };
                out.push_str("[\"");
                out.push_str(kind);
                out.push_str("\",");
                e.write_json(out);
                out.push(']');
            }
            Type::Object(attrs) => {
                out.push_str("[\"object\",{");
                for (i, (name, aty)) in attrs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, name);
                    out.push(':');
                    aty.write_json(out);
                }
                out.push_str("}]");
            }
            Type::Tuple(elems) => {
                out.push_str("[\"tuple\",[");
                for (i, e) in elems.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    e.write_json(out);
                }
                out.push_str("]]");
            }
        }
    }

    /// A short phrase for error messages, go-cty style: "a string", "a list", "an object".
    pub fn describe(&self) -> String {
        match self {
            Type::String => "a string",
            Type::Number => "a number",
            Type::Bool => "a bool",
            Type::List(_) => "a list",
            Type::Set(_) => "a set",
            Type::Map(_) => "a map",
            Type::Object(_) => "an object",
            Type::Tuple(_) => "a tuple",
            Type::Dynamic => "a value",
        }
        .to_owned()
    }

    /// Whether the type contains `dynamic` anywhere.
    pub fn has_dynamic(&self) -> bool {
        match self {
            Type::Dynamic => true,
            Type::String | Type::Number | Type::Bool => false,
            Type::List(e) | Type::Set(e) | Type::Map(e) => e.has_dynamic(),
            Type::Object(a) => a.values().any(Type::has_dynamic),
            Type::Tuple(e) => e.iter().any(Type::has_dynamic),
        }
    }
}

impl fmt::Display for Type {
    /// The JSON type syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_json(&mut s);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_type_syntax() {
        for src in [
            r#""string""#,
            r#""number""#,
            r#""bool""#,
            r#""dynamic""#,
            r#"["list","string"]"#,
            r#"["set",["map","number"]]"#,
            r#"["object",{"a":"number","b":["list","bool"],"c\"d":"dynamic"}]"#,
            r#"["object",{}]"#,
            r#"["tuple",["string",["tuple",[]]]]"#,
        ] {
            let ty = Type::from_json(src.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(ty.to_json()).unwrap(), src);
        }
    }

    #[test]
    fn object_keys_sorted_and_optional_list_ignored() {
        let ty = Type::from_json(br#" [ "object" , {"z":"string","a":"bool"}, ["z"] ] "#).unwrap();
        assert_eq!(ty.to_json(), br#"["object",{"a":"bool","z":"string"}]"#);
        assert_eq!(ty, Type::object([("z", Type::String), ("a", Type::Bool)]));
    }

    #[test]
    fn rejects_bad_types() {
        for bad in [
            r#""str""#,
            r#"["list"]"#,
            r#"["list","string","x"]"#,
            r#"["object",[]]"#,
            r#"["object",{"a":"x"}]"#,
            r#"["object",{"a":"bool","a":"bool"}]"#,
            r#"["tuple","string"]"#,
            r#"[1,"string"]"#,
            r#"{}"#,
            r#"3"#,
            "",
        ] {
            assert!(Type::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!(
            "{}\"string\"{}",
            "[\"list\",".repeat(1000),
            "]".repeat(1000)
        );
        assert!(Type::from_json(deep.as_bytes()).is_err());
    }
}
