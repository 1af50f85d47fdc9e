//! `nmflow edge-eval`: synthesize and evaluate classifiers with the device runtime itself.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::data::{self, DatasetView};
use crate::edge::{EdgeReport, edge_eval};

/// Arguments of `nmflow edge-eval`.
#[derive(Debug, Args)]
pub struct EdgeEvalArgs {
    /// Model file (.nmf).
    pub model: PathBuf,
    /// Classifiers to synthesize.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Seed; classifier i uses derive_seed(seed, i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Dataset whose test split measures accuracy.
    #[arg(long, default_value = "mnist8")]
    pub dataset: String,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nmflow edge-eval`.
///
/// # Errors
/// An unknown dataset (usage), an unreadable or invalid model file, a dataset of another shape.
pub fn exec(a: &EdgeEvalArgs) -> Result<()> {
    let view: DatasetView = a.dataset.parse()?;
    let r = edge_eval(
        &a.model,
        a.n,
        a.seed,
        view,
        &data::data_dir(a.data_dir.clone()),
    )?;
    super::emit(a.json, &r, || summary_line(&r, &a.model))
}

/// The one-line summary of an edge evaluation.
pub fn summary_line(r: &EdgeReport, model: &std::path::Path) -> String {
    format!(
        "edge-eval: {} classifiers from {} ({} bytes, {}, {} × {} steps, NFE {}, {} MACs each, {:.2} ms each): test acc mean {:.2}% min {:.2}% max {:.2}%",
        r.n,
        model.display(),
        r.bytes,
        r.quant,
        r.solver,
        r.steps,
        r.nfe,
        r.macs_per_synthesis,
        r.ms_per_synthesis,
        100.0 * r.acc_mean,
        100.0 * r.acc_min,
        100.0 * r.acc_max
    )
}
