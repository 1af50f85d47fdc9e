//! `manifest.json`: the description of a finished zoo.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::{Schedule, ZooConfig};
use crate::arch::Layout;
use crate::error::ZooError;

/// Name of the manifest file in a zoo directory.
pub const MANIFEST: &str = "manifest.json";
/// Name of the settings file written when a zoo job starts.
pub const SETTINGS: &str = "settings.json";
/// Version of the zoo format (manifest + shards). Readers refuse other versions.
pub const ZOO_FORMAT_VERSION: u32 = 1;

/// Dataset facts recorded with a zoo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// View name.
    pub name: String,
    /// Training samples.
    pub train_samples: usize,
    /// Test samples.
    pub test_samples: usize,
    /// `[c, h, w]`.
    pub input_shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

/// One run's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Zoo-wide index.
    pub index: usize,
    /// The run's seed (init stream 1, data-order stream 2 of `nmflow_runtime::Rng`).
    pub seed: u64,
    /// The shard that holds it.
    pub shard: usize,
    /// Whether the run is held out from meta-model training.
    pub heldout: bool,
    /// The run's task (multi-task zoos; an index into [`Manifest::tasks`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<usize>,
    /// Final mean cross-entropy on the training split.
    pub final_train_loss: f32,
    /// Final accuracy on the training split.
    pub final_train_acc: f32,
    /// Final mean cross-entropy on the test split.
    pub final_test_loss: f32,
    /// Final accuracy on the test split.
    pub final_test_acc: f32,
}

/// One shard's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the zoo directory.
    pub file: String,
    /// First run index.
    pub first_run: usize,
    /// Number of runs.
    pub runs: usize,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The train/held-out split of runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSplit {
    /// Runs a meta-model may train on.
    pub train: Vec<usize>,
    /// Runs kept for measuring generalization.
    pub heldout: Vec<usize>,
    /// Runs of tasks never seen in meta-model training (multi-task zoos).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unseen: Vec<usize>,
}

/// Everything about a zoo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"nmflow-zoo"`.
    pub format: String,
    /// [`ZOO_FORMAT_VERSION`].
    pub format_version: u32,
    /// The settings.
    pub config: ZooConfig,
    /// Dataset facts.
    pub dataset: DatasetInfo,
    /// Parameter layout table.
    pub layout: Layout,
    /// Number of parameters.
    pub num_params: usize,
    /// Checkpoint schedule.
    pub schedule: Schedule,
    /// Train/held-out runs.
    pub split: RunSplit,
    /// Per-run records.
    pub runs: Vec<RunInfo>,
    /// Shards.
    pub shards: Vec<ShardInfo>,
    /// Names, dtypes and shapes of the tensors in each shard.
    pub tensors: Vec<String>,
    /// The tasks of a multi-task zoo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<super::tasks::TaskTable>,
}

impl Manifest {
    /// Task `task`'s label map (`map[y]` is the label of an image of class `y`), for a zoo read
    /// from `zoo`.
    ///
    /// # Errors
    /// [`crate::error::UsageError`] for a single-task zoo or a task it does not have.
    pub fn label_map(&self, zoo: &Path, task: usize) -> Result<&[u8], crate::error::UsageError> {
        let table = self.tasks.as_ref().ok_or_else(|| {
            crate::error::UsageError(format!(
                "--zoo {}: a single-task zoo has no --task (build one with `nmflow zoo --tasks`)",
                zoo.display()
            ))
        })?;
        table
            .label_maps
            .get(task)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                crate::error::UsageError(format!(
                    "--task {task}: the zoo has tasks 0 to {}",
                    table.count.saturating_sub(1)
                ))
            })
    }

    /// Refuses a multi-task zoo where a command learns or measures one task: a meta-model
    /// conditioned on its task is what such a zoo is for.
    ///
    /// # Errors
    /// [`crate::error::UsageError`] naming the zoo and its tasks.
    pub fn require_single_task(&self, zoo_dir: &Path) -> Result<(), crate::error::UsageError> {
        match &self.tasks {
            None => Ok(()),
            Some(t) => Err(crate::error::UsageError(format!(
                "{} is a multi-task zoo ({} tasks of the {} family): its runs learn different labellings; train a meta-model conditioned on the task (`nmflow train --condition support`), or use a single-task zoo",
                zoo_dir.display(),
                t.count,
                t.family.describe()
            ))),
        }
    }

    /// Reads a zoo's manifest, checking the format and version.
    ///
    /// # Errors
    /// [`ZooError::Io`] (with a hint when the file is missing) or [`ZooError::Corrupt`].
    pub fn read(zoo_dir: &Path) -> Result<Self, ZooError> {
        let path = zoo_dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ZooError::corrupt(
                    &path,
                    "no manifest: not a zoo directory, or the zoo job has not finished (run `nmflow zoo` again to resume)",
                )
            } else {
                ZooError::io(&path, e)
            }
        })?;
        #[derive(Deserialize)]
        struct Head {
            format: String,
            format_version: u32,
        }
        let head: Head = serde_json::from_str(&text)
            .map_err(|e| ZooError::corrupt(&path, format!("not a zoo manifest: {e}")))?;
        if head.format != "nmflow-zoo" {
            return Err(ZooError::corrupt(
                &path,
                format!("format is {:?}, expected \"nmflow-zoo\"", head.format),
            ));
        }
        if head.format_version != ZOO_FORMAT_VERSION {
            return Err(ZooError::corrupt(
                &path,
                format!(
                    "zoo format version {} is not supported (this nmflow reads version {ZOO_FORMAT_VERSION}); rebuild the zoo",
                    head.format_version
                ),
            ));
        }
        let m: Self = serde_json::from_str(&text)
            .map_err(|e| ZooError::corrupt(&path, format!("bad manifest: {e}")))?;
        m.check()
            .map_err(|problem| ZooError::corrupt(&path, problem))?;
        Ok(m)
    }

    /// Checks a multi-task zoo's tables: the settings, the task table, each run's task and the
    /// unseen split agree (a single-task zoo has none of them).
    fn check_tasks(&self) -> Result<(), String> {
        let (spec, table) = match (&self.config.tasks, &self.tasks) {
            (None, None) => {
                if self.runs.iter().any(|r| r.task.is_some()) || !self.split.unseen.is_empty() {
                    return Err("runs name tasks, but the zoo has no task table".into());
                }
                return Ok(());
            }
            (Some(spec), Some(table)) => (spec, table),
            _ => {
                return Err(
                    "the settings and the task table disagree on whether the zoo has tasks".into(),
                );
            }
        };
        if table.count != spec.count
            || table.label_maps.len() != spec.count
            || table.unseen
                != (0..spec.count)
                    .filter(|&t| spec.is_unseen(t))
                    .collect::<Vec<_>>()
        {
            return Err(format!(
                "the task table does not describe the settings' tasks ({spec})"
            ));
        }
        let classes = self.dataset.classes;
        for (t, map) in table.label_maps.iter().enumerate() {
            table.family.check_map(t, map, classes)?;
        }
        for r in &self.runs {
            if r.task != Some(spec.task_of(r.index)) {
                return Err(format!(
                    "run {} names task {:?}, expected {}",
                    r.index,
                    r.task,
                    spec.task_of(r.index)
                ));
            }
            let unseen = spec.is_unseen(spec.task_of(r.index));
            if unseen != self.split.unseen.binary_search(&r.index).is_ok() {
                return Err(format!(
                    "split and task table disagree on whether run {} is unseen",
                    r.index
                ));
            }
        }
        Ok(())
    }

    /// Checks that the tables of the manifest agree with each other: runs numbered `0..runs`, the
    /// split a partition of them matching each run's flag, the shards covering the runs in order,
    /// the layout's size, and the schedule's times.
    fn check(&self) -> Result<(), String> {
        let n = self.runs.len();
        if n != self.config.runs {
            return Err(format!(
                "the run table has {n} runs, the settings {}",
                self.config.runs
            ));
        }
        if let Some((i, r)) = self.runs.iter().enumerate().find(|(i, r)| r.index != *i) {
            return Err(format!("run {i} of the run table has index {}", r.index));
        }
        let mut seen = vec![false; n];
        for (&run, heldout) in self
            .split
            .train
            .iter()
            .map(|r| (r, false))
            .chain(self.split.heldout.iter().map(|r| (r, true)))
            .chain(self.split.unseen.iter().map(|r| (r, false)))
        {
            match seen.get_mut(run) {
                None => {
                    return Err(format!(
                        "split names run {run}, but the zoo has runs 0..{n}"
                    ));
                }
                Some(true) => return Err(format!("split names run {run} twice")),
                Some(s) => *s = true,
            }
            if self.runs[run].heldout != heldout {
                return Err(format!(
                    "split and run table disagree on whether run {run} is held out"
                ));
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(format!("split leaves out run {missing}"));
        }
        self.check_tasks()?;
        let mut next = 0;
        for sh in &self.shards {
            if sh.first_run != next || sh.runs == 0 {
                return Err(format!(
                    "shard {} starts at run {} with {} runs; expected to start at run {next}",
                    sh.file, sh.first_run, sh.runs
                ));
            }
            next += sh.runs;
        }
        if next != n {
            return Err(format!("the shards hold {next} runs, the run table {n}"));
        }
        if self.layout.num_params() != self.num_params {
            return Err(format!(
                "the layout has {} parameters, num_params says {}",
                self.layout.num_params(),
                self.num_params
            ));
        }
        if self.schedule.times.len() != self.schedule.steps.len() || self.schedule.steps.is_empty()
        {
            return Err("the schedule's steps and times differ in length".into());
        }
        Ok(())
    }

    /// Documentation strings for the shard tensors of a zoo with `k` checkpoints and `p` parameters.
    pub fn tensor_docs(k: usize, p: usize) -> Vec<String> {
        vec![
            format!("weights: F32 [runs_in_shard, {k}, {p}] flat parameters in layout order at every checkpoint"),
            "run: I64 [runs_in_shard] zoo-wide run index".into(),
            "seed: U64 [runs_in_shard] per-run seed".into(),
            format!("steps: I64 [{k}] optimizer step of each checkpoint"),
            format!("times: F32 [{k}] marginal time t_k = k/K"),
            "final_train_loss, final_train_acc, final_test_loss, final_test_acc: F32 [runs_in_shard]".into(),
        ]
    }
}
