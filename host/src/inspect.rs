//! `nmflow inspect`: a human (or `--json`) summary of a file or directory nmflow wrote.

use std::path::Path;

use serde::Serialize;

use crate::error::ZooError;
use crate::io::sha256_hex;
use crate::zoo::manifest::{MANIFEST, Manifest};

/// Summary of a zoo directory.
#[derive(Clone, Debug, Serialize)]
pub struct ZooReport {
    /// Always "zoo".
    pub kind: &'static str,
    /// Dataset view.
    pub dataset: String,
    /// Architecture spec.
    pub arch: String,
    /// Parameters per classifier.
    pub num_params: usize,
    /// Runs (train + held out).
    pub runs: usize,
    /// Held-out runs.
    pub heldout_runs: usize,
    /// Checkpoint steps.
    pub checkpoint_steps: Vec<usize>,
    /// Mean/min/max final test accuracy over all runs.
    pub test_acc: [f64; 3],
    /// Mean final test accuracy of held-out runs.
    pub heldout_test_acc_mean: f64,
    /// Mean final train accuracy.
    pub train_acc_mean: f64,
    /// Shards and whether each file's SHA-256 matches the manifest.
    pub shards_ok: usize,
    /// Shards whose file is missing or whose hash differs.
    pub shards_bad: Vec<String>,
    /// Bytes on disk (shards).
    pub bytes: u64,
    /// A multi-task zoo's tasks (`perm:N:unseen=M`), absent for one task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<String>,
    /// Runs of unseen tasks.
    pub unseen_runs: usize,
}

/// Inspects a zoo directory, verifying every shard's hash.
///
/// # Errors
/// [`ZooError`] when the manifest is missing or malformed.
pub fn inspect_zoo(dir: &Path) -> Result<ZooReport, ZooError> {
    let m = Manifest::read(dir)?;
    let mut shards_bad = Vec::new();
    let mut bytes = 0;
    for s in &m.shards {
        match std::fs::read(dir.join(&s.file)) {
            Ok(b) if sha256_hex(&b) == s.sha256 => bytes += b.len() as u64,
            Ok(_) => shards_bad.push(format!("{}: sha256 differs from the manifest", s.file)),
            Err(e) => shards_bad.push(format!("{}: {e}", s.file)),
        }
    }
    let accs: Vec<f64> = m.runs.iter().map(|r| f64::from(r.final_test_acc)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let held: Vec<f64> = m
        .runs
        .iter()
        .filter(|r| r.heldout)
        .map(|r| f64::from(r.final_test_acc))
        .collect();
    let train: Vec<f64> = m
        .runs
        .iter()
        .map(|r| f64::from(r.final_train_acc))
        .collect();
    Ok(ZooReport {
        kind: "zoo",
        dataset: m.config.dataset.to_string(),
        arch: m.config.arch.to_string(),
        num_params: m.num_params,
        runs: m.runs.len(),
        heldout_runs: m.split.heldout.len(),
        checkpoint_steps: m.schedule.steps.clone(),
        test_acc: [
            mean(&accs),
            accs.iter().copied().fold(f64::INFINITY, f64::min),
            accs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ],
        heldout_test_acc_mean: mean(&held),
        train_acc_mean: mean(&train),
        shards_ok: m.shards.len() - shards_bad.len(),
        shards_bad,
        bytes,
        tasks: m.config.tasks.map(|t| t.to_string()),
        unseen_runs: m.split.unseen.len(),
    })
}

/// Whether `path` looks like a zoo directory.
pub fn is_zoo(path: &Path) -> bool {
    path.is_dir() && path.join(MANIFEST).exists()
}

impl std::fmt::Display for ZooReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "zoo: {} on {}, {} parameters",
            self.arch, self.dataset, self.num_params
        )?;
        writeln!(f, "runs: {} ({} held out)", self.runs, self.heldout_runs)?;
        if let Some(t) = &self.tasks {
            writeln!(
                f,
                "tasks: {t} (run i learns task i mod N; {} runs of unseen tasks; label maps in manifest.json)",
                self.unseen_runs
            )?;
        }
        writeln!(
            f,
            "checkpoints: {} at steps {:?}",
            self.checkpoint_steps.len(),
            self.checkpoint_steps
        )?;
        writeln!(
            f,
            "final test accuracy: mean {:.2}%, min {:.2}%, max {:.2}% (held out mean {:.2}%); train mean {:.2}%",
            100.0 * self.test_acc[0],
            100.0 * self.test_acc[1],
            100.0 * self.test_acc[2],
            100.0 * self.heldout_test_acc_mean,
            100.0 * self.train_acc_mean
        )?;
        write!(
            f,
            "shards: {} verified, {} bytes",
            self.shards_ok, self.bytes
        )?;
        for bad in &self.shards_bad {
            write!(f, "\nBAD shard {bad}")?;
        }
        Ok(())
    }
}
