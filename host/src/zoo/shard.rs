//! Zoo shards: one safetensors file per group of runs.
//!
//! Tensors in every shard (`n` runs, `K+1` checkpoints, `P` parameters):
//!
//! | name | dtype | shape | meaning |
//! |---|---|---|---|
//! | `weights` | F32 | `[n, K+1, P]` | flat parameters (layout order) at every checkpoint |
//! | `run` | I64 | `[n]` | zoo-wide run indices |
//! | `seed` | U64 | `[n]` | per-run seeds |
//! | `steps` | I64 | `[K+1]` | optimizer step of every checkpoint |
//! | `times` | F32 | `[K+1]` | marginal times `t_k` |
//! | `final_train_loss`, `final_train_acc`, `final_test_loss`, `final_test_acc` | F32 | `[n]` | final metrics |
//!
//! In Python: `safetensors.numpy.load_file("shard-00000.safetensors")["weights"]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::train::ShardResult;
use crate::error::ZooError;

/// Value of the `format` metadata key of a shard.
pub const SHARD_FORMAT: &str = "nmflow-zoo-shard/1";

/// The file name of shard `s`.
pub fn shard_name(s: usize) -> String {
    format!("shard-{s:05}.safetensors")
}

/// Serializes a trained shard.
///
/// # Errors
/// A safetensors error as a message (shapes are built here, so this does not happen in practice).
pub fn encode(
    result: &ShardResult,
    runs: std::ops::Range<usize>,
    steps: &[usize],
    times: &[f32],
    num_params: usize,
) -> Result<Vec<u8>, String> {
    let n = runs.len();
    let k = steps.len();
    let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let metric =
        |sel: &dyn Fn(usize) -> f64| f32_bytes(&(0..n).map(|i| sel(i) as f32).collect::<Vec<_>>());
    let tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
        (
            "weights",
            Dtype::F32,
            vec![n, k, num_params],
            f32_bytes(&result.weights),
        ),
        (
            "run",
            Dtype::I64,
            vec![n],
            runs.clone()
                .flat_map(|r| (r as i64).to_le_bytes())
                .collect(),
        ),
        (
            "seed",
            Dtype::U64,
            vec![n],
            result.seeds.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ),
        (
            "steps",
            Dtype::I64,
            vec![k],
            steps
                .iter()
                .flat_map(|&s| (s as i64).to_le_bytes())
                .collect(),
        ),
        ("times", Dtype::F32, vec![k], f32_bytes(times)),
        (
            "final_train_loss",
            Dtype::F32,
            vec![n],
            metric(&|i| result.train[i].0),
        ),
        (
            "final_train_acc",
            Dtype::F32,
            vec![n],
            metric(&|i| result.train[i].1),
        ),
        (
            "final_test_loss",
            Dtype::F32,
            vec![n],
            metric(&|i| result.test[i].0),
        ),
        (
            "final_test_acc",
            Dtype::F32,
            vec![n],
            metric(&|i| result.test[i].1),
        ),
    ];
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|v| (*name, v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let meta = HashMap::from([("format".to_string(), SHARD_FORMAT.to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

/// A shard read back from disk.
#[derive(Clone, Debug)]
pub struct Shard {
    /// The file.
    pub path: PathBuf,
    /// Zoo-wide run indices.
    pub runs: Vec<usize>,
    /// Per-run seeds.
    pub seeds: Vec<u64>,
    /// Checkpoint steps.
    pub steps: Vec<usize>,
    /// `[n, K+1, P]` weights.
    pub weights: Vec<f32>,
    /// Number of parameters `P`.
    pub num_params: usize,
    /// Final (train loss, train acc, test loss, test acc) per run.
    pub metrics: Vec<[f32; 4]>,
}

impl Shard {
    /// The `[K+1, P]` trajectory of the `i`-th run of this shard.
    pub fn trajectory(&self, i: usize) -> &[f32] {
        let len = self.steps.len() * self.num_params;
        &self.weights[i * len..(i + 1) * len]
    }
}

fn tensor<'a>(
    st: &'a SafeTensors<'_>,
    name: &str,
    path: &Path,
) -> Result<TensorView<'a>, ZooError> {
    st.tensor(name)
        .map_err(|_| ZooError::corrupt(path, format!("tensor {name:?} is missing")))
}

fn as_f32(v: &TensorView<'_>, name: &str, path: &Path) -> Result<Vec<f32>, ZooError> {
    if v.dtype() != Dtype::F32 {
        return Err(ZooError::corrupt(
            path,
            format!("tensor {name:?} is {:?}, expected F32", v.dtype()),
        ));
    }
    Ok(v.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn as_u64(v: &TensorView<'_>, name: &str, path: &Path) -> Result<Vec<u64>, ZooError> {
    if !matches!(v.dtype(), Dtype::I64 | Dtype::U64) {
        return Err(ZooError::corrupt(
            path,
            format!("tensor {name:?} is {:?}, expected I64/U64", v.dtype()),
        ));
    }
    Ok(v.data()
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Reads and checks a shard: every tensor present with consistent shapes.
///
/// # Errors
/// [`ZooError::Io`] or [`ZooError::Corrupt`] naming the file and the problem.
pub fn read(path: &Path) -> Result<Shard, ZooError> {
    let bytes = std::fs::read(path).map_err(|e| ZooError::io(path, e))?;
    decode(&bytes, path)
}

/// Decodes shard bytes (see [`read`]).
///
/// # Errors
/// [`ZooError::Corrupt`].
pub fn decode(bytes: &[u8], path: &Path) -> Result<Shard, ZooError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| ZooError::corrupt(path, format!("not a safetensors file: {e}")))?;
    let w = tensor(&st, "weights", path)?;
    let shape = w.shape().to_vec();
    if shape.len() != 3 {
        return Err(ZooError::corrupt(
            path,
            format!("weights has shape {shape:?}, expected [n, K+1, P]"),
        ));
    }
    let (n, k, p) = (shape[0], shape[1], shape[2]);
    let runs = as_u64(&tensor(&st, "run", path)?, "run", path)?;
    let seeds = as_u64(&tensor(&st, "seed", path)?, "seed", path)?;
    let steps = as_u64(&tensor(&st, "steps", path)?, "steps", path)?;
    let mut metrics = vec![[0.0f32; 4]; n];
    for (j, name) in [
        "final_train_loss",
        "final_train_acc",
        "final_test_loss",
        "final_test_acc",
    ]
    .into_iter()
    .enumerate()
    {
        let v = as_f32(&tensor(&st, name, path)?, name, path)?;
        if v.len() != n {
            return Err(ZooError::corrupt(
                path,
                format!("{name} has {} values for {n} runs", v.len()),
            ));
        }
        for (i, x) in v.into_iter().enumerate() {
            metrics[i][j] = x;
        }
    }
    if runs.len() != n || seeds.len() != n || steps.len() != k {
        return Err(ZooError::corrupt(
            path,
            "run/seed/steps lengths disagree with weights",
        ));
    }
    Ok(Shard {
        path: path.into(),
        runs: runs.into_iter().map(|r| r as usize).collect(),
        seeds,
        steps: steps.into_iter().map(|s| s as usize).collect(),
        weights: as_f32(&w, "weights", path)?,
        num_params: p,
        metrics,
    })
}
