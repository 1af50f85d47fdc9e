//! `nmflow report`: one Markdown and HTML page for a run folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::report::write_report;

/// Arguments of `nmflow report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run folder (e.g. the demo's `runs/demo`): zoos, model directories, evaluation and
    /// device reports and charts below it (three folders deep) are gathered.
    pub dir: PathBuf,
    /// Print one JSON object (the sections) instead of the summary line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nmflow report`.
///
/// # Errors
/// An unreadable folder or a page that cannot be written.
pub fn exec(a: &ReportArgs) -> Result<()> {
    if !a.dir.is_dir() {
        anyhow::bail!(
            "{}: not a folder (expected a run folder such as the demo's runs/demo)",
            a.dir.display()
        );
    }
    let r =
        write_report(&a.dir).with_context(|| format!("{}: writing the report", a.dir.display()))?;
    super::emit(a.json, &r, || {
        format!(
            "report: {} sections, {} charts → {} and {}",
            r.sections.len(),
            r.sections.iter().map(|s| s.charts.len()).sum::<usize>(),
            r.markdown.display(),
            r.html.display()
        )
    })
}
