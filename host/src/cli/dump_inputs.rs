//! `nmflow dump-inputs`: test images, or a task's support set, as raw pixel and label bytes for
//! firmware and `nmflow sample --support`.

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
    /// Write a support set instead: this many training images of every class, in class order,
    /// drawn with --seed as `nmflow sample --task T --shots K --seed S` draws them (so `sample
    /// --support` of the files makes the same classifiers).
    #[arg(long)]
    pub shots: Option<usize>,
    /// Label the images as task T of the multi-task zoo --zoo labels them (an image of class y
    /// gets the label `label_maps[T][y]`).
    #[arg(long, requires = "zoo")]
    pub task: Option<usize>,
    /// The multi-task zoo of --task (its dataset must be --dataset).
    #[arg(long, requires = "task")]
    pub zoo: Option<PathBuf>,
    /// Seed of the support set (--shots).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
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
    if a.shots == Some(0) {
        return Err(UsageError("--shots must be at least 1 (got 0)".into()).into());
    }
    let map = match (&a.zoo, a.task) {
        (Some(zoo), Some(task)) => Some(crate::meta::condition::device::task_map(zoo, task, view)?),
        _ => None,
    };
    let data = Dataset::load(view, &data::data_dir(a.data_dir.clone()))?;
    let (x, labels) = match a.shots {
        Some(shots) => {
            use crate::meta::condition::support::SupportPool;
            let classes = crate::data::dataset::NUM_CLASSES;
            let pool = SupportPool::new(&data.train, classes)?;
            let identity: Vec<u8> = (0..classes).map(|c| c as u8).collect();
            let map = map.as_deref().unwrap_or(&identity);
            let s = pool.draw_task(map, shots, a.seed, a.task.unwrap_or(0));
            (s.x, s.labels)
        }
        None => {
            let split = data.test.head(a.n);
            let labels = match &map {
                Some(m) => split.y.iter().map(|&y| m[usize::from(y)]).collect(),
                None => split.y.clone(),
            };
            (split.x, labels)
        }
    };
    let scaling = view.pixel_scaling();
    let images: Vec<u8> = x.iter().map(|&v| scaling.pixel(v)).collect();
    let r = DumpReport {
        dataset: view.to_string(),
        n: labels.len(),
        images: a.out.with_extension("images"),
        labels: a.out.with_extension("labels"),
    };
    crate::io::write_atomic(&r.images, &images)
        .with_context(|| format!("writing {}", r.images.display()))?;
    crate::io::write_atomic(&r.labels, &labels)
        .with_context(|| format!("writing {}", r.labels.display()))?;
    super::emit(a.json, &r, || {
        format!(
            "dump-inputs: {} {} {} → {} and {}",
            r.n,
            r.dataset,
            if a.shots.is_some() {
                "support examples (training split)"
            } else {
                "test samples"
            },
            r.images.display(),
            r.labels.display()
        )
    })
}
