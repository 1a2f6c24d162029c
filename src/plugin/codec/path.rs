//! Attribute paths inside a value.
//!
//! A codec error names *where* in a value it happened (`.listeners[2].port`) so the protocol layer can turn it
//! into a Terraform diagnostic that points at the attribute. The same type is meant to be reused for diagnostics
//! (`AttributePath` steps in the protocol map one to one onto [`PathStep`]).

use std::fmt;

/// One step of an attribute path, mirroring the protocol's `AttributePath.Step`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathStep {
    /// An object attribute (or a nested block) by name.
    Attr(String),
    /// A map element by key.
    Key(String),
    /// A list or tuple element by position. Sets have no stable positions; the codec still uses the position in
    /// the (canonical) element order so an error can be located by a human.
    Index(i64),
}

/// A path from the root of a value: a list of steps, outermost first.
pub type Path = Vec<PathStep>;

impl fmt::Display for PathStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathStep::Attr(name) => write!(f, ".{name}"),
            PathStep::Key(key) => write!(f, "[{key:?}]"),
            PathStep::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a path the way Terraform users read it: `.listeners[2].port`, `.tags["env"]`. The root is empty.
pub fn format_path(path: &[PathStep]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for step in path {
        let _ = write!(out, "{step}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_steps_like_terraform() {
        let path = vec![
            PathStep::Attr("listeners".into()),
            PathStep::Index(2),
            PathStep::Attr("port".into()),
            PathStep::Key("a\"b".into()),
        ];
        assert_eq!(format_path(&path), ".listeners[2].port[\"a\\\"b\"]");
        assert_eq!(format_path(&[]), "");
    }
}
