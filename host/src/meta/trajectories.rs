//! A zoo's trajectories in memory.

use std::path::Path;

use crate::error::ZooError;
use crate::zoo::manifest::Manifest;
use crate::zoo::shard;

/// Trajectories of a set of runs: `[n, K+1, P]` row-major.
#[derive(Clone, Debug)]
pub struct Trajectories {
    /// Zoo-wide run indices.
    pub runs: Vec<usize>,
    /// Marginal times `t_k`.
    pub times: Vec<f32>,
    /// Parameters per classifier.
    pub num_params: usize,
    /// The weights.
    pub data: Vec<f32>,
}

impl Trajectories {
    /// Number of runs.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether there are no runs.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Checkpoints per run.
    pub fn checkpoints(&self) -> usize {
        self.times.len()
    }

    /// The weights of run `i` (position in this set) at checkpoint `k`.
    pub fn point(&self, i: usize, k: usize) -> &[f32] {
        let p = self.num_params;
        let start = (i * self.checkpoints() + k) * p;
        &self.data[start..start + p]
    }

    /// The `[K+1, P]` trajectory of run `i`.
    pub fn trajectory(&self, i: usize) -> &[f32] {
        let len = self.checkpoints() * self.num_params;
        &self.data[i * len..(i + 1) * len]
    }

    /// The final weights of every run, `[n, P]`.
    pub fn finals(&self) -> Vec<f32> {
        let k = self.checkpoints() - 1;
        (0..self.len())
            .flat_map(|i| self.point(i, k).to_vec())
            .collect()
    }

    /// The marginal at checkpoint `k`, `[n, P]`.
    pub fn marginal(&self, k: usize) -> Vec<f32> {
        (0..self.len())
            .flat_map(|i| self.point(i, k).to_vec())
            .collect()
    }
}

/// Reads one shard of the zoo in `zoo_dir`, verified against the manifest's hash.
///
/// # Errors
/// [`ZooError`] when the shard is missing, altered or malformed.
pub fn read_shard(
    zoo_dir: &Path,
    info: &crate::zoo::manifest::ShardInfo,
) -> Result<shard::Shard, ZooError> {
    let path = zoo_dir.join(&info.file);
    let bytes = std::fs::read(&path).map_err(|e| ZooError::io(&path, e))?;
    if crate::io::sha256_hex(&bytes) != info.sha256 {
        return Err(ZooError::corrupt(
            &path,
            "sha256 differs from the manifest (the file was altered)",
        ));
    }
    shard::decode(&bytes, &path)
}

/// Reads the training runs and the held-out runs of a zoo, verifying each shard against the
/// manifest's hash.
///
/// # Errors
/// [`ZooError`] when the manifest or a shard is missing, altered or malformed.
pub fn load(zoo_dir: &Path) -> Result<(Manifest, Trajectories, Trajectories), ZooError> {
    load_tasks(zoo_dir, false)
}

/// [`load`], taking a multi-task zoo where `multi_task` (a conditioned meta-model): the runs of
/// unseen tasks are then in neither set.
///
/// # Errors
/// As [`load`].
pub fn load_tasks(
    zoo_dir: &Path,
    multi_task: bool,
) -> Result<(Manifest, Trajectories, Trajectories), ZooError> {
    let m = Manifest::read(zoo_dir)?;
    if !multi_task {
        m.require_single_task(zoo_dir)?;
    }
    let p = m.num_params;
    let times = m.schedule.times.clone();
    let mut train = Trajectories {
        runs: Vec::new(),
        times: times.clone(),
        num_params: p,
        data: Vec::new(),
    };
    let mut held = train.clone();
    for info in &m.shards {
        let sh = read_shard(zoo_dir, info)?;
        let path = &sh.path;
        if sh.num_params != p || sh.steps.len() != times.len() {
            return Err(ZooError::corrupt(path, "shape differs from the manifest"));
        }
        for (i, &run) in sh.runs.iter().enumerate() {
            if m.split.unseen.binary_search(&run).is_ok() {
                continue;
            }
            let target = if m.split.heldout.binary_search(&run).is_ok() {
                &mut held
            } else {
                &mut train
            };
            target.runs.push(run);
            target.data.extend_from_slice(sh.trajectory(i));
        }
    }
    Ok((m, train, held))
}
