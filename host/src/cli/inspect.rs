//! `nmflow inspect`: describe a zoo directory (verifying its shards) or a model file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::edge::describe;
use crate::inspect::{inspect_zoo, is_zoo};

/// Arguments of `nmflow inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A zoo directory or a model file (.nmf).
    pub path: PathBuf,
    /// Print one JSON object instead of the description.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nmflow inspect`: prints a description (a table, not one line), or JSON.
///
/// # Errors
/// Neither a zoo nor a model file, an unreadable or invalid file, shards that fail verification.
pub fn exec(a: &InspectArgs) -> Result<()> {
    if a.path.is_file() {
        let r = describe(&a.path)?;
        return super::emit(a.json, &r, || r.to_string());
    }
    if !is_zoo(&a.path) {
        anyhow::bail!(
            "{}: not something nmflow can inspect (expected a zoo directory with manifest.json or a model file)",
            a.path.display()
        );
    }
    let report = inspect_zoo(&a.path)?;
    super::emit(a.json, &report, || report.to_string())?;
    if !report.shards_bad.is_empty() {
        anyhow::bail!("{} shard(s) failed verification", report.shards_bad.len());
    }
    Ok(())
}
