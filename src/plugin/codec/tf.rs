//! `Tf<T>`: the tri-state field type for resource models.
//!
//! A Terraform attribute value is known, null, or unknown (during plan, for computed values and for config that
//! depends on other resources). `Option<T>` only covers two of those; resource models use `Tf<T>` wherever an
//! attribute can be unknown (computed attributes, and any config attribute read during plan).
//!
//! Serde mapping through [`from_value`](super::from_value)/[`to_value`](super::to_value): `Known(v)` ↔ the value,
//! `Null` ↔ `Value::Null`, `Unknown` ↔ `Value::Unknown`. With other serde formats (e.g. serde_json, for debugging)
//! `Tf` behaves like `Option<T>` and `Unknown` serializes as null.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

/// Newtype-struct name through which `Tf`'s Deserialize impl asks the codec's deserializer for null/unknown.
pub(crate) const TF_TRISTATE: &str = "$terraform_provider_homelab::codec::Tf";
/// Unit-struct name through which `Tf::Unknown` tells the codec's serializer to produce an unknown.
pub(crate) const TF_UNKNOWN: &str = "$terraform_provider_homelab::codec::Unknown";

/// A Terraform attribute value in a model: known, null, or unknown ("known after apply").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tf<T> {
    Known(T),
    Null,
    Unknown,
}

impl<T> Default for Tf<T> {
    /// `Null`, so `#[serde(default)]` fields are null when absent.
    fn default() -> Self {
        Tf::Null
    }
}

impl<T> Tf<T> {
    pub fn is_known(&self) -> bool {
        matches!(self, Tf::Known(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Tf::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Tf::Unknown)
    }

    /// `Tf<&T>` borrowing the known value.
    pub fn as_ref(&self) -> Tf<&T> {
        match self {
            Tf::Known(v) => Tf::Known(v),
            Tf::Null => Tf::Null,
            Tf::Unknown => Tf::Unknown,
        }
    }

    /// The known value, if any.
    pub fn known(&self) -> Option<&T> {
        match self {
            Tf::Known(v) => Some(v),
            _ => None,
        }
    }

    /// The known value by value, if any.
    pub fn into_known(self) -> Option<T> {
        match self {
            Tf::Known(v) => Some(v),
            _ => None,
        }
    }

    /// Unknown becomes null; known and null stay. Useful where Terraform forbids unknowns (apply results for
    /// optional non-computed attributes, state).
    pub fn or_null(self) -> Tf<T> {
        match self {
            Tf::Unknown => Tf::Null,
            other => other,
        }
    }

    /// Replaces an unknown with `value` (e.g. the value the API returned after create).
    pub fn or_known(self, value: T) -> Tf<T> {
        match self {
            Tf::Unknown => Tf::Known(value),
            other => other,
        }
    }

    /// Maps the known value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Tf<U> {
        match self {
            Tf::Known(v) => Tf::Known(f(v)),
            Tf::Null => Tf::Null,
            Tf::Unknown => Tf::Unknown,
        }
    }

    /// The known value or `default` (for null and unknown).
    pub fn unwrap_or(self, default: T) -> T {
        self.into_known().unwrap_or(default)
    }
}

impl<T> From<Option<T>> for Tf<T> {
    /// `Some` → `Known`, `None` → `Null`.
    fn from(v: Option<T>) -> Self {
        match v {
            Some(v) => Tf::Known(v),
            None => Tf::Null,
        }
    }
}

impl<T> From<T> for Tf<T> {
    fn from(v: T) -> Self {
        Tf::Known(v)
    }
}

impl<T: Serialize> Serialize for Tf<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tf::Known(v) => s.serialize_some(v),
            Tf::Null => s.serialize_none(),
            Tf::Unknown => s.serialize_unit_struct(TF_UNKNOWN),
        }
    }
}

struct TfVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for TfVisitor<T> {
    type Value = Tf<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Terraform value (known, null or unknown)")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Tf<T>, E> {
        Ok(Tf::Null)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Tf<T>, E> {
        Ok(Tf::Unknown)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tf<T>, D::Error> {
        T::deserialize(d).map(Tf::Known)
    }

    /// Another format's deserializer: behave like `Option<T>`.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Tf<T>, D::Error> {
        Option::<T>::deserialize(d).map(Tf::from)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Tf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(TF_TRISTATE, TfVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let k: Tf<u16> = Tf::Known(5);
        assert!(k.is_known() && !k.is_null() && !k.is_unknown());
        assert_eq!(k.as_ref().known(), Some(&&5));
        assert_eq!(k.map(|v| v * 2), Tf::Known(10));
        assert_eq!(Tf::<u16>::Unknown.or_null(), Tf::Null);
        assert_eq!(Tf::<u16>::Unknown.or_known(1), Tf::Known(1));
        assert_eq!(Tf::<u16>::Null.or_known(1), Tf::Null);
        assert_eq!(Tf::<u16>::from(None), Tf::Null);
        assert_eq!(Tf::<i32>::from(Some(3)), Tf::Known(3));
        assert_eq!(Tf::<i32>::from(3), Tf::Known(3));
        assert_eq!(Tf::<u16>::default(), Tf::Null);
        assert_eq!(Tf::<u16>::Unknown.unwrap_or(7), 7);
    }

    #[test]
    fn other_formats_see_an_option() {
        let v: Vec<Tf<u16>> = serde_json::from_str("[1,null]").unwrap();
        assert_eq!(v, vec![Tf::Known(1), Tf::Null]);
        assert_eq!(
            serde_json::to_string(&vec![Tf::Known(1), Tf::Null, Tf::Unknown]).unwrap(),
            "[1,null,null]"
        );
    }
}
