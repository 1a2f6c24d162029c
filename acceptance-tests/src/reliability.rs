//! The fault matrix behind `docs/reliability.md`: what each fault a homelab really has does to an apply, measured.
//!
//! Why a module of the harness and not prose: a table of "what happens when" is only worth reading if it is what
//! the code does today. So every case in `acceptance-tests/tests/reliability.rs` provokes its fault through real
//! Terraform, asserts the properties that must hold (the error names what failed, no object on OPNsense that state
//! does not know about, no duplicate, HAProxy's running configuration valid, a plain re-apply converges to an
//! empty plan) and only then writes its [`Row`]. `acceptance-tests/dev reliability` runs the matrix with the rows
//! going to a directory ([`ROWS_DIR_VAR`]) and rewrites the generated part of `docs/reliability.md` from them
//! ([`regenerate`]); the hand-written preface above [`MARKER`] is kept.
//!
//! A row records observations, not hopes: `reported` is the first diagnostic Terraform printed (trimmed),
//! `objects` is counted through the emulator's API against the resources in state.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::process::Output;

/// Where the rows of a run go (one JSON file per case); unset = rows are only printed to stderr.
pub const ROWS_DIR_VAR: &str = "HOMELAB_RELIABILITY_DIR";

/// The line in `docs/reliability.md` after which everything is generated.
pub const MARKER: &str =
    "<!-- Generated below by `./acceptance-tests/dev reliability`; edit the text above only. -->";

/// The case groups, in the order of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Group {
    Opnsense,
    Hosts,
    Terraform,
}

impl Group {
    fn title(self) -> &'static str {
        match self {
            Group::Opnsense => "OPNsense",
            Group::Hosts => "Hosts",
            Group::Terraform => "Terraform",
        }
    }
}

/// One case of the matrix, as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Stable id (the file name of the row; also the test's name).
    pub id: String,
    pub group: Group,
    /// Position inside its group.
    pub order: u32,
    pub fault: String,
    /// When it strikes.
    pub when: String,
    /// What Terraform reported: the first diagnostic's summary, or that the apply succeeded.
    pub reported: String,
    /// What state held after the faulty apply.
    pub state: String,
    /// What the next plain apply did.
    pub next_apply: String,
    /// Objects on the OPNsense (counted through its API) against the resources in state, after the faulty apply.
    pub objects: String,
    /// HAProxy's running configuration after the faulty apply (`haproxy -c` on the live file), or "—".
    pub haproxy: String,
    /// etcd voters after the faulty apply, or "—".
    pub etcd: String,
    /// A plain re-apply converged to an empty plan (both `-refresh=false` and refreshed).
    pub converged: bool,
    /// Nothing lost: no orphan, no duplicate, nothing state claims that is not there.
    pub nothing_lost: bool,
}

impl Row {
    /// Writes the row where `dev reliability` collects them (when [`ROWS_DIR_VAR`] is set) and prints it.
    pub fn record(&self) {
        eprintln!(
            "reliability row {}: {}",
            self.id,
            serde_json::to_string(self).unwrap_or_default()
        );
        let Some(dir) = std::env::var_os(ROWS_DIR_VAR) else {
            return;
        };
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).expect("creating the reliability rows directory");
        let text = serde_json::to_string_pretty(self).expect("row to JSON");
        std::fs::write(dir.join(format!("{}.json", self.id)), text)
            .expect("writing a reliability row");
    }
}

/// The first error diagnostic's summary in Terraform's output (`Error: <summary>`), trimmed to one short line;
/// for a successful command, `"nothing: the apply succeeded"`.
pub fn first_error(out: &Output) -> String {
    let text = out.combined();
    let found = text
        .lines()
        .map(|l| l.trim_start_matches(['│', ' ', '╷', '╵']))
        .find_map(|l| l.strip_prefix("Error: "))
        .map(|s| trim(s, 110));
    match found {
        Some(s) => format!("\"{s}\""),
        None if out.success() => "nothing: the apply succeeded".into(),
        None => format!("no diagnostic (exit {:?})", out.code),
    }
}

/// Terraform's "Resources: N added, M changed, K destroyed." of an apply, or what it printed instead.
pub fn apply_summary(out: &Output) -> String {
    let text = out.combined();
    if let Some(l) = text
        .lines()
        .find(|l| l.contains("Apply complete! Resources:"))
    {
        let s = l.trim().trim_start_matches("Apply complete! Resources: ");
        return s.trim_end_matches('.').to_string();
    }
    if text.contains("No changes.") {
        return "no changes".into();
    }
    first_error(out)
}

fn trim(s: &str, max: usize) -> String {
    let s = s.trim().trim_end_matches('.');
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The generated part of the document: one table per group, rows in their order.
pub fn render(rows: &[Row]) -> String {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| (a.group, a.order, &a.id).cmp(&(b.group, b.order, &b.id)));
    let mut out = String::new();
    let _ = writeln!(out, "\n{} cases.\n", rows.len());
    let mut group = None;
    for r in &rows {
        if group != Some(r.group) {
            group = Some(r.group);
            let _ = writeln!(out, "\n### {}\n", r.group.title());
            out.push_str(
                "| fault | when it strikes | what Terraform reports | what state holds | what the next plain apply \
                 does | objects on OPNsense / in state | HAProxy running config | etcd voters | empty plan after \
                 re-apply | nothing lost |\n|---|---|---|---|---|---|---|---|---|---|\n",
            );
        }
        let yes = |b: bool| if b { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&r.fault),
            cell(&r.when),
            cell(&r.reported),
            cell(&r.state),
            cell(&r.next_apply),
            cell(&r.objects),
            cell(&r.haproxy),
            cell(&r.etcd),
            yes(r.converged),
            yes(r.nothing_lost),
        );
    }
    out
}

/// Reads every row in `rows_dir` (`*.json`).
pub fn read_rows(rows_dir: &Path) -> std::io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(rows_dir)? {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&p)?;
        let row: Row = serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", p.display()),
            )
        })?;
        rows.push(row);
    }
    Ok(rows)
}

/// Rewrites what follows [`MARKER`] in `doc` with the table of `rows` (the text above it is kept; a document
/// without the marker gets it appended).
pub fn regenerate(doc: &Path, rows: &[Row]) -> std::io::Result<()> {
    let old = std::fs::read_to_string(doc).unwrap_or_default();
    let head = match old.find(MARKER) {
        Some(i) => old[..i].to_string(),
        None => format!("{}\n\n", old.trim_end()),
    };
    std::fs::write(doc, format!("{head}{MARKER}\n{}", render(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, stderr: &str) -> Output {
        Output {
            command: "terraform apply".into(),
            code: Some(code),
            signal: None,
            stdout: String::new(),
            stderr: stderr.into(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn first_error_takes_the_first_summary_of_the_boxed_diagnostics() {
        let o = out(
            1,
            "╷\n│ Error: Could not create the HAProxy server\n│ \n│ detail\n╵\n╷\n│ Error: second\n",
        );
        assert_eq!(first_error(&o), "\"Could not create the HAProxy server\"");
        assert_eq!(first_error(&out(0, "")), "nothing: the apply succeeded");
    }

    #[test]
    fn regenerate_keeps_the_preface_and_replaces_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("r.md");
        std::fs::write(
            &doc,
            format!("# Preface\n\nhand text\n\n{MARKER}\nold table\n"),
        )
        .unwrap();
        let row = Row {
            id: "a".into(),
            group: Group::Opnsense,
            order: 1,
            fault: "HTTP 500 | twice".into(),
            when: "w".into(),
            reported: "r".into(),
            state: "s".into(),
            next_apply: "n".into(),
            objects: "1 / 1".into(),
            haproxy: "valid".into(),
            etcd: "—".into(),
            converged: true,
            nothing_lost: true,
        };
        regenerate(&doc, std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(&doc).unwrap();
        assert!(text.starts_with("# Preface\n\nhand text\n\n"));
        assert!(!text.contains("old table"));
        assert!(
            text.contains("| HTTP 500 \\| twice | w | r | s | n | 1 / 1 | valid | — | yes | yes |")
        );
    }
}
