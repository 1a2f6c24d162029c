//! The codec's error type.
//!
//! Every error carries the [`Path`] where it happened as a structured field, so the caller can attach it to a
//! diagnostic. Messages describe the *shape* problem only and never include the offending value: values can be
//! secrets (API keys, tokens), and error texts end up in Terraform's output and logs. Attribute names and map keys
//! do appear (they are part of the path, as in go-cty's own messages).

use super::path::{format_path, Path, PathStep};

/// What went wrong, without the where (see [`CodecError::path`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not well-formed msgpack/JSON (truncated, bad marker, invalid UTF-8, trailing data...).
    #[error("malformed {format}: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    /// The value has the wrong kind for its type, e.g. a string where a list is required.
    #[error("{expected} is required, but {found} was given")]
    TypeMismatch {
        expected: String,
        found: &'static str,
    },
    /// An object value does not have exactly the attributes of its type (msgpack is strict, like go-cty).
    #[error("an object with {required} attributes is required ({given} given)")]
    AttributeCount { required: usize, given: usize },
    /// An object value has an attribute that its type does not declare.
    #[error("unsupported attribute {0:?}")]
    UnsupportedAttribute(String),
    /// An object value lacks an attribute of its type (on encode; use explicit null for an absent value).
    #[error("attribute {0:?} is required")]
    MissingAttribute(String),
    /// A tuple value with the wrong number of elements.
    #[error("a tuple of length {required} is required ({given} given)")]
    TupleLength { required: usize, given: usize },
    /// The same object attribute or map key appears twice.
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// A number that is not a valid decimal (or NaN).
    #[error("invalid number")]
    InvalidNumber,
    /// A number that does not fit the Rust type asked for (e.g. 70000 into u16, 1.5 into i64).
    #[error("number out of range: {0}")]
    NumberRange(String),
    /// A type in cty's JSON type syntax that cannot be parsed.
    #[error("invalid type: {0}")]
    InvalidType(String),
    /// An unknown value where only known values are allowed (JSON state, a model field that is not `Tf<T>`).
    #[error("value is unknown, but a known value is required")]
    Unknown,
    /// A null value where the Rust model cannot represent null (use `Option<T>` or `Tf<T>`).
    #[error("value is null, but a non-null value is required")]
    Null,
    /// The value nests deeper than [`super::MAX_DEPTH`]; hostile input is cut off before it can exhaust the stack.
    #[error("value nesting is too deep (more than {0} levels)")]
    TooDeep(usize),
    /// A message from serde (a derived `Deserialize`/`Serialize` impl), e.g. "missing field `name`".
    #[error("{0}")]
    Serde(String),
}

/// A codec error: what went wrong ([`ErrorKind`]) and where ([`Path`], outermost step first).
///
/// Display renders `at .listeners[2].port: a number is required, but string was given`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind}", location(path))]
pub struct CodecError {
    /// Where in the value the problem is; empty for the root.
    pub path: Path,
    /// What the problem is.
    pub kind: ErrorKind,
    /// Whether `path` has been filled in yet (the serde bridge learns the path while an error bubbles up).
    pub(crate) located: bool,
}

fn location(path: &Path) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("at {}: ", format_path(path))
    }
}

impl CodecError {
    /// An error at `path`.
    pub fn new(path: Path, kind: ErrorKind) -> Self {
        CodecError {
            path,
            kind,
            located: true,
        }
    }

    /// An error whose path is not known yet (serde messages); the serde bridge fills it in on the way up.
    pub(crate) fn unlocated(kind: ErrorKind) -> Self {
        CodecError {
            path: Vec::new(),
            kind,
            located: false,
        }
    }

    /// Sets the path if it has not been set yet.
    pub(crate) fn locate(mut self, path: &[PathStep]) -> Self {
        if !self.located {
            self.path = path.to_vec();
            self.located = true;
        }
        self
    }

    /// The path rendered as `.a[1]["k"]` (empty for the root).
    pub fn path_string(&self) -> String {
        format_path(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_path_and_kind() {
        let e = CodecError::new(
            vec![PathStep::Attr("a".into()), PathStep::Index(2)],
            ErrorKind::AttributeCount {
                required: 3,
                given: 2,
            },
        );
        assert_eq!(
            e.to_string(),
            "at .a[2]: an object with 3 attributes is required (2 given)"
        );
        let root = CodecError::new(vec![], ErrorKind::InvalidNumber);
        assert_eq!(root.to_string(), "invalid number");
    }
}
