//! cty values and their wire encodings: the data model of the plugin protocol.
//!
//! Terraform speaks about every resource attribute in terms of go-cty values: typed, possibly null, possibly
//! unknown ("known after apply"), with arbitrary-precision numbers. This module is the one place that knows how
//! those values look on the wire, so that the rest of the provider can work with typed Rust structs.
//!
//! # Layers
//!
//! - [`Type`] — a cty type, parsed from / rendered to cty's JSON type syntax ([`Type::from_json`],
//!   [`Type::to_json`]), which is what `Schema.Attribute.type` carries.
//! - [`Value`] — an untyped cty value (null, unknown, bool, [`Number`], string, list, set, map, object, tuple, and
//!   [`Value::Dynamic`] for a value in a `dynamic` slot that carries its concrete type).
//! - [`decode_msgpack`] / [`encode_msgpack`] — `DynamicValue.msgpack`, used for every request and response.
//!   Decoding is strict like go-cty (objects need exactly their attributes) and safe on hostile input (bounded
//!   depth [`MAX_DEPTH`], bounds-checked reads, no panics). Encoding validates against the type.
//! - [`decode_json`] — `DynamicValue.json`, which Terraform only sends as `UpgradeResourceState.raw_state`; it is
//!   lenient (unknown attributes ignored, missing ones null). Responses are always msgpack.
//! - The serde bridge: [`from_value`] turns a [`Value`] into any `DeserializeOwned` model struct and [`to_value`]
//!   turns a `Serialize` model into a [`Value`] conforming to a [`Type`]. Model fields use [`Tf<T>`] for
//!   null/unknown/known tri-state, `Option<T>` for plain nullable (an unknown is then an error), and ordinary
//!   types for required known values.
//!
//! # Details worth knowing
//!
//! - `dynamic`: a known, non-null value in a `dynamic` slot decodes to [`Value::Dynamic`] (its concrete type and
//!   the value); a wrapper that announces `"dynamic"` itself is transparent. On encode a plain value in a
//!   `dynamic` slot is wrapped with its [`Value::implied_type`].
//! - Sets are kept in canonical order (sorted by [`Value`]'s total order, deduplicated), so equal sets compare
//!   equal and encode to the same bytes.
//! - Numbers keep their exact representation ([`Number`]); integer model fields reject non-whole or out-of-range
//!   numbers instead of truncating; `f64` fields are lossy for decimals like `0.1` that came as text, so use a
//!   `String` field (it receives the exact decimal text) where a number must round-trip exactly.
//! - Strings are passed through as given; Terraform normalises strings to Unicode NFC, so a provider should not
//!   return a non-NFC variant of a configured string.
//! - `Tf<T>` relies on the codec's own deserializer; inside `#[serde(flatten)]` or `#[serde(untagged)]` (which
//!   buffer through serde's generic content) it degrades to `Option` semantics and unknowns become errors.
//!
//! # Errors
//!
//! [`CodecError`] has a structured [`Path`] (`Vec<PathStep>`) so callers can attach diagnostics to the attribute.
//! Messages never contain values: attribute values may be secrets.
//!
//! # Example
//!
//! ```
//! use terraform_provider_homelab::plugin::codec::{self, Tf, Type};
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Model { name: String, port: Tf<u16>, tags: Option<Vec<String>> }
//!
//! let ty = Type::from_json(br#"["object",{"name":"string","port":"number","tags":["list","string"]}]"#).unwrap();
//! let m = Model { name: "api".into(), port: Tf::Unknown, tags: None };
//! let bytes = codec::encode_msgpack(&codec::to_value(&m, &ty).unwrap(), &ty).unwrap();
//! let back: Model = codec::from_value(&codec::decode_msgpack(&bytes, &ty).unwrap()).unwrap();
//! assert_eq!(back, m);
//! ```

mod de;
mod error;
mod json;
mod jsontext;
mod msgpack;
mod number;
mod path;
mod ser;
mod tf;
mod types;
mod value;

#[cfg(test)]
mod tests;

pub use de::from_value;
pub use error::{CodecError, ErrorKind};
pub use json::decode_json;
pub use msgpack::{decode_msgpack, encode_msgpack};
pub use number::Number;
pub use path::{format_path, Path, PathStep};
pub use ser::{conform_value, to_value};
pub use tf::Tf;
pub use types::Type;
pub use value::Value;

/// Maximum nesting of values and types the codec accepts. Real schemas nest a handful of levels; the limit only
/// exists so that hostile or corrupt input cannot overflow the stack.
pub const MAX_DEPTH: usize = 64;
