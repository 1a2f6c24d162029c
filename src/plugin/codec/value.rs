//! cty values, untyped in memory.
//!
//! A [`Value`] does not carry its type: the wire forms are schema-driven, so the codec always pairs a value with
//! the [`Type`] it should conform to (decoding checks it, encoding checks it again). The one exception is a value
//! in a `dynamic` slot, whose concrete type is part of the data: it is represented as [`Value::Dynamic`].

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::number::Number;
use super::types::Type;

/// A cty value.
///
/// Equality and order are structural except for numbers, which compare numerically ([`Number`]). The order is
/// total and is what makes [`Value::Set`] canonical.
#[derive(Debug, Clone)]
pub enum Value {
    /// A null of any type.
    Null,
    /// An unknown value ("known after apply") of any type. Refinements Terraform may send are dropped.
    Unknown,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    /// Set elements in canonical order (ascending by [`Ord`], no duplicates). Build with [`Value::set`].
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// An object: every attribute of its type is present (possibly as `Null`/`Unknown`).
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    /// A known-typed value that sits in a `dynamic` slot: its concrete type, and the value of that type.
    /// Decoders produce it for every non-null, known value at a `dynamic` type (a null or unknown dynamic value is
    /// plain `Null`/`Unknown`); encoders write it as cty's `[type_json, value]` wrapper.
    Dynamic(Type, Box<Value>),
}

impl Value {
    /// A set value: sorts and deduplicates `items` into canonical order.
    pub fn set(mut items: Vec<Value>) -> Value {
        items.sort();
        // Only wholly known duplicates collapse: two unknown elements may turn out to be different values (cty
        // keeps every unknown element of a set), and merging them would shrink a planned set.
        items.dedup_by(|a, b| a == b && a.is_wholly_known());
        Value::Set(items)
    }

    /// An object value from (name, value) pairs.
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A number value from anything convertible to [`Number`].
    pub fn number(n: impl Into<Number>) -> Value {
        Value::Number(n.into())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// Not unknown at the top level (nested values may still be unknown; see [`Value::is_wholly_known`]).
    pub fn is_known(&self) -> bool {
        !self.is_unknown()
    }

    /// No unknown anywhere inside (what Terraform requires of apply results and upgraded state).
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            Value::Dynamic(_, v) => v.is_wholly_known(),
        }
    }

    /// The value inside a [`Value::Dynamic`] wrapper, or the value itself.
    pub fn unwrap_dynamic(&self) -> &Value {
        match self {
            Value::Dynamic(_, v) => v.unwrap_dynamic(),
            v => v,
        }
    }

    /// An object attribute or map element.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.unwrap_dynamic() {
            Value::Object(m) | Value::Map(m) => m.get(name),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self.unwrap_dynamic() {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.unwrap_dynamic() {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self.unwrap_dynamic() {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The elements of a list, set or tuple.
    pub fn as_elements(&self) -> Option<&[Value]> {
        match self.unwrap_dynamic() {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// A word for the kind of value, for error messages (never the content).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Unknown => "unknown",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
            Value::Object(_) => "object",
            Value::Tuple(_) => "tuple",
            Value::Dynamic(_, v) => v.kind(),
        }
    }

    /// The type this value implies on its own: what a `dynamic` slot announces when the encoder is given a plain
    /// (unwrapped) value. Nulls and unknowns imply `dynamic`; collections unify their elements' types (a
    /// `dynamic` part unifies with anything). None when elements disagree (e.g. a list of a string and a bool).
    pub fn implied_type(&self) -> Option<Type> {
        fn unify(a: Type, b: Type) -> Option<Type> {
            match (a, b) {
                (Type::Dynamic, t) | (t, Type::Dynamic) => Some(t),
                (Type::List(a), Type::List(b)) => Some(Type::list(unify(*a, *b)?)),
                (Type::Set(a), Type::Set(b)) => Some(Type::set(unify(*a, *b)?)),
                (Type::Map(a), Type::Map(b)) => Some(Type::map(unify(*a, *b)?)),
                (Type::Object(a), Type::Object(b)) => {
                    if a.len() != b.len() || !a.keys().eq(b.keys()) {
                        return None;
                    }
                    let mut out = BTreeMap::new();
                    for ((k, x), (_, y)) in a.into_iter().zip(b) {
                        out.insert(k, unify(x, y)?);
                    }
                    Some(Type::Object(out))
                }
                (Type::Tuple(a), Type::Tuple(b)) => {
                    if a.len() != b.len() {
                        return None;
                    }
                    Some(Type::Tuple(
                        a.into_iter()
                            .zip(b)
                            .map(|(x, y)| unify(x, y))
                            .collect::<Option<_>>()?,
                    ))
                }
                (a, b) if a == b => Some(a),
                _ => None,
            }
        }
        fn elems<'a>(items: impl Iterator<Item = &'a Value>) -> Option<Type> {
            let mut acc = Type::Dynamic;
            for item in items {
                acc = unify(acc, item.implied_type()?)?;
            }
            Some(acc)
        }
        Some(match self {
            Value::Null | Value::Unknown => Type::Dynamic,
            Value::Bool(_) => Type::Bool,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::List(v) => Type::list(elems(v.iter())?),
            Value::Set(v) => Type::set(elems(v.iter())?),
            Value::Map(m) => Type::map(elems(m.values())?),
            Value::Object(m) => Type::Object(
                m.iter()
                    .map(|(k, v)| Some((k.clone(), v.implied_type()?)))
                    .collect::<Option<_>>()?,
            ),
            Value::Tuple(v) => {
                Type::Tuple(v.iter().map(Value::implied_type).collect::<Option<_>>()?)
            }
            Value::Dynamic(t, _) => t.clone(),
        })
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Unknown => 1,
            Value::Bool(_) => 2,
            Value::Number(_) => 3,
            Value::String(_) => 4,
            Value::List(_) => 5,
            Value::Set(_) => 6,
            Value::Map(_) => 7,
            Value::Object(_) => 8,
            Value::Tuple(_) => 9,
            Value::Dynamic(..) => 10,
        }
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Number(a), Value::Number(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::List(a), Value::List(b))
            | (Value::Set(a), Value::Set(b))
            | (Value::Tuple(a), Value::Tuple(b)) => a.cmp(b),
            (Value::Map(a), Value::Map(b)) | (Value::Object(a), Value::Object(b)) => a.cmp(b),
            (Value::Dynamic(ta, a), Value::Dynamic(tb, b)) => ta.cmp(tb).then_with(|| a.cmp(b)),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        Value::Number(n)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Number(Number::Int(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_every_unknown_element() {
        let s = Value::set(vec![
            Value::Unknown,
            Value::string("a"),
            Value::Unknown,
            Value::string("a"),
        ]);
        let Value::Set(items) = &s else {
            unreachable!()
        };
        assert_eq!(items.iter().filter(|v| v.is_unknown()).count(), 2);
        assert_eq!(
            items.iter().filter(|v| **v == Value::string("a")).count(),
            1
        );
    }

    #[test]
    fn set_is_canonical() {
        let s = Value::set(vec![
            Value::number(3),
            Value::number(1),
            Value::Number(Number::Float(3.0)),
            Value::Number(Number::Big("2".into())),
        ]);
        assert_eq!(
            s,
            Value::Set(vec![Value::number(1), Value::number(2), Value::number(3)])
        );
    }

    #[test]
    fn implied_types_unify_nulls() {
        let v = Value::List(vec![
            Value::Null,
            Value::object([("a", Value::Null)]),
            Value::object([("a", Value::from("x"))]),
        ]);
        assert_eq!(
            v.implied_type(),
            Some(Type::list(Type::object([("a", Type::String)])))
        );
        assert_eq!(
            Value::List(vec![]).implied_type(),
            Some(Type::list(Type::Dynamic))
        );
        assert_eq!(
            Value::List(vec![Value::from("a"), Value::from(true)]).implied_type(),
            None
        );
    }

    #[test]
    fn knownness() {
        let v = Value::object([("a", Value::List(vec![Value::Unknown]))]);
        assert!(v.is_known());
        assert!(!v.is_wholly_known());
        assert_eq!(
            v.get("a").and_then(Value::as_elements).map(<[Value]>::len),
            Some(1)
        );
    }
}
