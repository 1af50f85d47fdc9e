//! `nmflow dump-inputs`: test images as raw pixel bytes for firmware.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::data::{self, Dataset, DatasetView};
use crate::error::UsageError;

/// Arguments of `nmflow dump-inputs`.
#[derive(Debug, Args)]
pub struct DumpInputsArgs {
    /// Dataset view (test split): mnist8 or digits (8×8, pixels 0..=16), mnist or fashion (28×28,
    /// pixels 0..=255); a device computes the input as `(p / levels − mean) / std` (`docs/data.md`).
    #[arg(long)]
    pub dataset: String,
    /// Number of samples (the first N of the test split).
    #[arg(long, default_value_t = 300)]
    pub n: usize,
    /// Output prefix (`PREFIX.images`, `PREFIX.labels`).
    #[arg(long)]
    pub out: PathBuf,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The result of `nmflow dump-inputs`.
#[derive(Clone, Debug, Serialize)]
pub struct DumpReport {
    /// The dataset view.
    pub dataset: String,
    /// Samples written.
    pub n: usize,
    /// The pixel file.
    pub images: PathBuf,
    /// The label file.
    pub labels: PathBuf,
}

/// Runs `nmflow dump-inputs`.
///
/// # Errors
/// Unreadable data, a failed write.
pub fn exec(a: &DumpInputsArgs) -> Result<()> {
    let view: DatasetView = a.dataset.parse()?;
    if a.n == 0 {
        return Err(UsageError("--n must be at least 1 (got 0)".into()).into());
    }
    let data = Dataset::load(view, &data::data_dir(a.data_dir.clone()))?;
    let split = data.test.head(a.n);
    let scaling = view.pixel_scaling();
    let images: Vec<u8> = split.x.iter().map(|&v| scaling.pixel(v)).collect();
    let r = DumpReport {
        dataset: view.to_string(),
        n: split.len(),
        images: a.out.with_extension("images"),
        labels: a.out.with_extension("labels"),
    };
    crate::io::write_atomic(&r.images, &images)
        .with_context(|| format!("writing {}", r.images.display()))?;
    crate::io::write_atomic(&r.labels, &split.y)
        .with_context(|| format!("writing {}", r.labels.display()))?;
    super::emit(a.json, &r, || {
        format!(
            "dump-inputs: {} {} test samples → {} and {}",
            r.n,
            r.dataset,
            r.images.display(),
            r.labels.display()
        )
    })
}
