//! `nmflow edge-eval` of a class-conditioned model file: the device runtime encodes a task's
//! support set and synthesizes classifiers for it, measured on the test split under the task's
//! labels. The support sets and seeds are the host's (`sample --support`, `eval --tasks`), so the
//! two samplers make the same classifiers up to the file's quantization.

use std::path::{Path, PathBuf};

use nmflow_runtime::ModelView;
use nmflow_runtime::rng::derive_seed;

use super::sample::TaskSplit;
use super::support::{SupportPool, Supports};
use crate::data::{Dataset, DatasetView};
use crate::edge::{EdgeJob, EdgeJobs, EdgeTasks};
use crate::error::{MetaError, UsageError};

/// Where the tasks of a conditioned edge evaluation come from.
#[derive(Clone, Debug)]
pub enum TaskSource {
    /// A support set of one's own (`PREFIX.images`, `PREFIX.labels`, as `nmflow dump-inputs`
    /// writes them), measured on the test split labelled as task `task` of the zoo, or with the
    /// classes' own labels.
    Files {
        /// The files' prefix.
        prefix: PathBuf,
        /// The zoo and task whose labels the test split gets.
        task: Option<(PathBuf, usize)>,
    },
    /// A split of the zoo's tasks, each with the support set `nmflow eval` draws for it.
    Zoo {
        /// The multi-task zoo.
        zoo: PathBuf,
        /// Which tasks.
        split: TaskSplit,
        /// Labeled examples per class.
        shots: usize,
        /// At most this many tasks (the split's first).
        max_tasks: usize,
    },
}

/// Task `task`'s label map from the multi-task zoo `zoo`, whose dataset must be `view`.
///
/// # Errors
/// An unreadable manifest, a zoo of another dataset or without that task (usage).
pub fn task_map(zoo: &Path, task: usize, view: DatasetView) -> Result<Vec<u8>, MetaError> {
    let manifest = crate::zoo::Manifest::read(zoo)?;
    if manifest.config.dataset != view {
        return Err(UsageError(format!(
            "--zoo {}: its tasks are labellings of {}, not of --dataset {view}",
            zoo.display(),
            manifest.config.dataset
        ))
        .into());
    }
    Ok(manifest.label_map(zoo, task)?.to_vec())
}

/// The groups [`crate::edge::edge_eval_jobs`] synthesizes for `source` with guidance weight `w`
/// and `seed` (classifier `i` of a support set of one's own uses `derive_seed(seed, i)`, as
/// `sample --support --seed` does; task `t` of the zoo the seeds `eval --seed` gives it).
///
/// # Errors
/// A model file without a condition section, a guidance weight that is not finite and ≥ 0, zero
/// shots or tasks (usage); the support files' errors ([`Supports::read_files`]); zoo errors.
pub fn jobs(
    source: &TaskSource,
    w: f32,
    seed: u64,
    view: DatasetView,
    model: &ModelView<'_>,
    data: &Dataset,
) -> Result<EdgeJobs, MetaError> {
    if !model.is_conditioned() {
        return Err(UsageError(
            "--support and --tasks need a conditioned model file (export a `train --condition \
             classes` model)"
                .into(),
        )
        .into());
    }
    if !(w.is_finite() && w >= 0.0) {
        return Err(UsageError(format!("--guidance must be finite and ≥ 0 (got {w})")).into());
    }
    let (d, classes) = (model.input_dim(), model.num_classes());
    let job = |s: Supports, map: Option<Vec<u8>>, seed: u64| EdgeJob {
        support: Some((s.x, s.labels, w)),
        map,
        seed,
    };
    let (jobs, task_ids, examples) = match source {
        TaskSource::Files { prefix, task } => {
            let s = Supports::read_files(prefix, view, d, classes)?;
            let map = match task {
                Some((zoo, t)) => Some(task_map(zoo, *t, view)?),
                None => None,
            };
            let ids = task.iter().map(|(_, t)| *t).collect();
            let n = s.size;
            (vec![job(s, map, seed)], ids, n)
        }
        TaskSource::Zoo {
            zoo,
            split,
            shots,
            max_tasks,
        } => {
            if *shots == 0 || *max_tasks == 0 {
                return Err(UsageError("--shots and --max-tasks must be at least 1".into()).into());
            }
            let manifest = crate::zoo::Manifest::read(zoo)?;
            if manifest.tasks.is_none() {
                return Err(UsageError(format!(
                    "--zoo {}: a single-task zoo has no tasks (build one with `nmflow zoo --tasks`)",
                    zoo.display()
                ))
                .into());
            }
            if manifest.config.dataset != view {
                return Err(UsageError(format!(
                    "--zoo {}: its tasks are labellings of {}, not of --dataset {view}",
                    zoo.display(),
                    manifest.config.dataset
                ))
                .into());
            }
            let pool = SupportPool::new(&data.train, classes)?;
            let tasks = super::sample::split_tasks(&manifest, *split, *max_tasks)?;
            let ids: Vec<usize> = tasks.iter().map(|t| t.0).collect();
            let jobs = tasks
                .into_iter()
                .map(|(t, map)| {
                    let s = pool.draw_task(&map, *shots, seed, t);
                    job(s, Some(map), derive_seed(seed, t as u64))
                })
                .collect();
            (jobs, ids, shots * classes)
        }
    };
    Ok((
        jobs,
        Some(EdgeTasks {
            guidance: w,
            support_examples: examples,
            task_ids,
            task_sd: 0.0,
        }),
    ))
}
