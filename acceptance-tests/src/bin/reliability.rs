//! `reliability`: rewrites the generated part of `docs/reliability.md` from the rows a run of the fault matrix
//! wrote (see [`homelab_acceptance::reliability`]).
//!
//! Usage: `reliability ROWS_DIR [DOC]` (normally through `acceptance-tests/dev reliability`, which runs the
//! matrix with `HOMELAB_RELIABILITY_DIR=ROWS_DIR` first). DOC defaults to `docs/reliability.md`.

use anyhow::{bail, Context, Result};
use homelab_acceptance::reliability;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(rows_dir) = args.next() else {
        bail!("usage: reliability ROWS_DIR [DOC]");
    };
    let doc = args.next().unwrap_or_else(|| "docs/reliability.md".into());
    let rows = reliability::read_rows(rows_dir.as_ref())
        .with_context(|| format!("reading the rows in {rows_dir}"))?;
    if rows.is_empty() {
        bail!("no rows in {rows_dir}: did the matrix run?");
    }
    reliability::regenerate(doc.as_ref(), &rows).with_context(|| format!("writing {doc}"))?;
    eprintln!("reliability: {} rows written to {doc}", rows.len());
    Ok(())
}
