//! Diagnostics: what Terraform shows the user when something is wrong, pointed at an attribute.
//!
//! Terraform renders a diagnostic with its `summary`, `detail` and — when an attribute path is given — the
//! configuration line of that attribute. So every validation error should carry a path and a detail that says
//! how to fix it. Diagnostics are kept in the order they were produced (errors and warnings interleaved) and
//! all of them are returned at once.
//!
//! Secrets: a diagnostic's text ends up in terminal output, CI logs and `TF_LOG` files. Never put an attribute
//! value in it; name the attribute (the path does that) and describe the problem. Codec errors are built to
//! respect this (they describe shapes, not values).

use std::fmt;

use super::codec::{CodecError, PathStep};
use super::proto::tfplugin6 as pb;

/// An attribute path, outermost step first (`[Attr("opnsense"), Attr("url")]` is `opnsense.url`).
pub type AttrPath = Vec<PathStep>;

/// Starts a path at the top-level attribute `name`: `attr("opnsense").attr("url")`.
pub fn attr(name: impl Into<String>) -> AttrPath {
    vec![PathStep::Attr(name.into())]
}

/// Builder methods for [`AttrPath`].
pub trait PathExt: Sized {
    /// Appends an attribute (or nested block) step.
    fn attr(self, name: impl Into<String>) -> Self;
    /// Appends a list index step.
    fn index(self, i: i64) -> Self;
    /// Appends a map key step.
    fn key(self, k: impl Into<String>) -> Self;
}

impl PathExt for AttrPath {
    fn attr(mut self, name: impl Into<String>) -> Self {
        self.push(PathStep::Attr(name.into()));
        self
    }
    fn index(mut self, i: i64) -> Self {
        self.push(PathStep::Index(i));
        self
    }
    fn key(mut self, k: impl Into<String>) -> Self {
        self.push(PathStep::Key(k.into()));
        self
    }
}

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Stops the operation.
    Error,
    /// Shown, but the operation goes on.
    Warning,
}

/// One message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One line: what is wrong.
    pub summary: String,
    /// Why, and how to fix it.
    pub detail: String,
    /// The attribute it concerns, if any.
    pub path: Option<AttrPath>,
}

impl Diagnostic {
    /// An error.
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            summary: summary.into(),
            detail: detail.into(),
            path: None,
        }
    }

    /// A warning.
    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(summary, detail)
        }
    }

    /// Points the diagnostic at an attribute.
    pub fn at(mut self, path: AttrPath) -> Self {
        self.path = Some(path);
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A codec error (a value that does not fit the schema or the model) as a diagnostic on its path.
    /// `summary` says what was being done, e.g. "Invalid resource configuration".
    pub fn from_codec(summary: impl Into<String>, err: &CodecError) -> Self {
        let path = if err.path.is_empty() {
            None
        } else {
            Some(err.path.clone())
        };
        Self {
            severity: Severity::Error,
            summary: summary.into(),
            detail: err.kind.to_string(),
            path,
        }
    }

    pub(crate) fn to_proto(&self) -> pb::Diagnostic {
        pb::Diagnostic {
            severity: match self.severity {
                Severity::Error => pb::diagnostic::Severity::Error as i32,
                Severity::Warning => pb::diagnostic::Severity::Warning as i32,
            },
            summary: self.summary.clone(),
            detail: self.detail.clone(),
            attribute: self.path.as_deref().map(path_to_proto),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
        };
        write!(f, "{sev}: {}", self.summary)?;
        if let Some(p) = &self.path {
            write!(f, " (at {})", super::codec::format_path(p))?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Converts an attribute path to the protocol form.
pub(crate) fn path_to_proto(path: &[PathStep]) -> pb::AttributePath {
    use pb::attribute_path::step::Selector;
    pb::AttributePath {
        steps: path
            .iter()
            .map(|s| pb::attribute_path::Step {
                selector: Some(match s {
                    PathStep::Attr(n) => Selector::AttributeName(n.clone()),
                    PathStep::Key(k) => Selector::ElementKeyString(k.clone()),
                    PathStep::Index(i) => Selector::ElementKeyInt(*i),
                }),
            })
            .collect(),
    }
}

/// An ordered collection of diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// No diagnostics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Appends an error.
    pub fn error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::error(summary, detail));
    }

    /// Appends an error on an attribute.
    pub fn error_at(
        &mut self,
        path: AttrPath,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(Diagnostic::error(summary, detail).at(path));
    }

    /// Appends a warning.
    pub fn warning(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(Diagnostic::warning(summary, detail));
    }

    /// Appends all of `other`, keeping order.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Whether any error is present.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// Whether there are none at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// `Ok(())` when there are no errors, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Diagnostics> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(())
        }
    }

    pub(crate) fn to_proto(&self) -> Vec<pb::Diagnostic> {
        self.0.iter().map(Diagnostic::to_proto).collect()
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Diagnostics(iter.into_iter().collect())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Turns any displayable error into an error diagnostic: `client.get(id).await.or_diag("Could not read X")?`.
///
/// The error's `Display` becomes the detail, so error types must not print secrets (ours don't).
pub trait OrDiag<T> {
    /// Maps `Err(e)` to a one-error [`Diagnostics`] with `summary` and `e` as detail.
    fn or_diag(self, summary: &str) -> Result<T, Diagnostics>;
}

impl<T, E: fmt::Display> OrDiag<T> for Result<T, E> {
    fn or_diag(self, summary: &str) -> Result<T, Diagnostics> {
        self.map_err(|e| Diagnostic::error(summary, e.to_string()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_and_errors_detected() {
        let mut d = Diagnostics::new();
        d.warning("w1", "");
        assert!(!d.has_errors());
        assert!(d.clone().into_result().is_ok());
        d.error_at(attr("opnsense").attr("url"), "bad url", "use https://host");
        d.warning("w2", "");
        let sums: Vec<_> = d.iter().map(|x| x.summary.as_str()).collect();
        assert_eq!(sums, ["w1", "bad url", "w2"]);
        assert!(d.has_errors());
        assert!(d.into_result().is_err());
    }

    #[test]
    fn proto_conversion_keeps_path_and_severity() {
        let diag = Diagnostic::error("s", "d").at(attr("a").index(2).key("k"));
        let p = diag.to_proto();
        assert_eq!(p.severity, pb::diagnostic::Severity::Error as i32);
        let steps = p.attribute.unwrap().steps;
        use pb::attribute_path::step::Selector;
        assert_eq!(
            steps
                .into_iter()
                .map(|s| s.selector.unwrap())
                .collect::<Vec<_>>(),
            vec![
                Selector::AttributeName("a".into()),
                Selector::ElementKeyInt(2),
                Selector::ElementKeyString("k".into())
            ]
        );
        let w = Diagnostic::warning("w", "").to_proto();
        assert_eq!(w.severity, pb::diagnostic::Severity::Warning as i32);
        assert!(w.attribute.is_none());
    }

    #[test]
    fn or_diag_uses_display() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("boom"));
        let d = r.or_diag("Could not do it").unwrap_err();
        let first = d.iter().next().unwrap();
        assert_eq!(first.summary, "Could not do it");
        assert_eq!(first.detail, "boom");
    }

    #[test]
    fn display_renders_path() {
        let d = Diagnostic::error("bad", "fix it").at(attr("ssh").attr("user"));
        assert_eq!(d.to_string(), "Error: bad (at .ssh.user): fix it");
    }
}
