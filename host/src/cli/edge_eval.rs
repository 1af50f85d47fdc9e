//! `nmflow edge-eval`: synthesize and evaluate classifiers with the device runtime itself.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::data::{self, DatasetView};
use crate::edge::{EdgeReport, edge_eval, edge_eval_jobs};
use crate::meta::condition::device::{self, TaskSource};
use crate::meta::condition::sample::TaskSplit;

/// Arguments of `nmflow edge-eval`.
#[derive(Debug, Args)]
pub struct EdgeEvalArgs {
    /// Model file (.nmf).
    pub model: PathBuf,
    /// Classifiers to synthesize (for each task with --tasks).
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
    /// A conditioned model file (`train --condition classes`, exported) makes classifiers for
    /// the task these labeled examples show, on the device runtime: `PREFIX.images` (stored
    /// pixels of --dataset, as `nmflow dump-inputs` writes them) and `PREFIX.labels` (one label
    /// byte per example; a label without an example is one the task does not use). Classifier i uses derive_seed(seed, i), as
    /// `nmflow sample --support --seed` does, so the two make the same classifiers.
    #[arg(long, value_name = "PREFIX", conflicts_with = "tasks")]
    pub support: Option<PathBuf>,
    /// With --support: measure on the test split labelled as this task of --zoo (its label map);
    /// without it the test split keeps the classes' own labels.
    #[arg(long, requires_all = ["support", "zoo"])]
    pub task: Option<usize>,
    /// The multi-task zoo of --task or --tasks.
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// A conditioned model file: measure it on these tasks of --zoo (the first --max-tasks),
    /// each from the support set of --shots examples per class that `nmflow eval --seed` draws,
    /// with the seeds that command gives the task, so the device's accuracy compares with the
    /// host's `eval --tasks` row of the same shots and guidance.
    #[arg(long, value_enum, requires = "zoo")]
    pub tasks: Option<TaskSplit>,
    /// Labeled examples per class of each task's support set (--tasks).
    #[arg(long, default_value_t = 5)]
    pub shots: usize,
    /// At most this many tasks (--tasks).
    #[arg(long, default_value_t = 100)]
    pub max_tasks: usize,
    /// Guidance weight w of `v(∅) + w·(v(task) − v(∅))` (--support, --tasks; 1: the conditional
    /// field, 0: the unconditional one; other weights cost two field evaluations a stage).
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f32,
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
    let data_dir = data::data_dir(a.data_dir.clone());
    let source = match (&a.support, a.tasks) {
        (Some(prefix), _) => Some(TaskSource::Files {
            prefix: prefix.clone(),
            task: a.zoo.clone().zip(a.task),
        }),
        (None, Some(split)) => Some(TaskSource::Zoo {
            zoo: a.zoo.clone().unwrap_or_default(),
            split,
            shots: a.shots,
            max_tasks: a.max_tasks,
        }),
        (None, None) => None,
    };
    let r = match source {
        None => edge_eval(&a.model, a.n, a.seed, view, &data_dir)?,
        Some(source) => edge_eval_jobs(&a.model, a.n, view, &data_dir, &mut |model, data| {
            device::jobs(&source, a.guidance, a.seed, view, model, data)
        })?,
    };
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
    ) + &r.tasks.as_ref().map_or(String::new(), |t| {
        format!(
            " ({} from support sets of {} examples, guidance {})",
            match t.task_ids.len() {
                0 => "a task of one's own".to_string(),
                1 => format!("task {}", t.task_ids[0]),
                k => format!("{k} tasks, per-task sd {:.2} pp", 100.0 * t.task_sd),
            },
            t.support_examples,
            t.guidance
        )
    })
}
