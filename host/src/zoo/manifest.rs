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
}

impl Manifest {
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
