//! Zoo settings and the checkpoint schedule.

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::data::DatasetView;
use crate::error::UsageError;

/// The optimizer of the base classifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam (β = 0.9, 0.999, ε = 1e-8, as PyTorch's defaults).
    Adam,
    /// SGD with optional (PyTorch-style, no dampening) momentum.
    Sgd,
}

/// The code that trains a zoo's runs. The two compute the same training and differ in rounding
/// only, so the engine is part of a zoo's settings: a zoo resumes with the engine it began with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZooEngine {
    /// burn's autodiff over the shard's runs batched in one model, on any backend (CPU or CUDA)
    /// and architecture. Zoos written before the fused engine existed have no `engine` key and
    /// are this.
    #[default]
    Burn,
    /// The fused CPU trainer ([`super::fused`]): MLP architectures on the CPU.
    Fused,
}

impl ZooEngine {
    fn is_burn(&self) -> bool {
        *self == Self::Burn
    }

    /// The engine's name, as `--engine` and `settings.json` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Burn => "burn",
            Self::Fused => "fused",
        }
    }
}

/// Everything that determines a zoo's bytes. Two jobs with equal settings write identical files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooConfig {
    /// Dataset view.
    pub dataset: DatasetView,
    /// Architecture.
    pub arch: Arch,
    /// Number of training runs.
    pub runs: usize,
    /// Epochs per run.
    pub epochs: usize,
    /// Minibatch size (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    /// The checkpoint schedule as given (see [`Schedule::parse`]).
    pub checkpoints: String,
    /// Master seed; run `i` uses `derive_seed(seed, i)`.
    pub seed: u64,
    /// Runs per shard (trained together, written as one file).
    pub shard_runs: usize,
    /// Fraction of runs held out from meta-model training.
    pub heldout_fraction: f64,
    /// The task family of a multi-task zoo (absent: one task, the dataset as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<super::tasks::TaskSpec>,
    /// The trainer (absent in `settings.json`: burn, the only one before the fused engine).
    #[serde(default, skip_serializing_if = "ZooEngine::is_burn")]
    pub engine: ZooEngine,
}

impl ZooConfig {
    /// Checks ranges that do not need the dataset.
    ///
    /// # Errors
    /// [`UsageError`] naming the setting.
    pub fn validate(&self) -> Result<(), UsageError> {
        let bad = |m: String| Err(UsageError(m));
        if self.runs == 0 {
            return bad("--runs must be at least 1 (got 0)".into());
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1 (got 0)".into());
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1 (got 0)".into());
        }
        if self.shard_runs == 0 {
            return bad("--shard-runs must be at least 1 (got 0)".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr must be a positive number (got {})", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!(
                "--momentum must be in [0, 1) (got {})",
                self.momentum
            ));
        }
        if !(0.0..1.0).contains(&self.heldout_fraction) {
            return bad(format!(
                "--heldout must be in [0, 1) (got {})",
                self.heldout_fraction
            ));
        }
        let held = ((self.runs as f64) * self.heldout_fraction).round() as usize;
        if held >= self.runs {
            return bad(format!(
                "--heldout {} holds out all {} runs (round(runs × heldout) = {held}); leave at least one run for meta-model training",
                self.heldout_fraction, self.runs
            ));
        }
        if let Some(t) = &self.tasks {
            t.validate(self.runs)?;
        }
        if self.engine == ZooEngine::Fused && !matches!(self.arch, Arch::Mlp { .. }) {
            return bad(format!(
                "--engine fused trains MLP architectures only (got {}); use --engine burn or auto",
                self.arch
            ));
        }
        if !self.dataset.has_train() {
            return bad(format!(
                "dataset {} is an evaluation/shift set without a training split; train zoos on mnist, fashion or mnist8",
                self.dataset
            ));
        }
        Ok(())
    }

    /// Number of shards.
    pub fn num_shards(&self) -> usize {
        self.runs.div_ceil(self.shard_runs)
    }

    /// The zoo-wide run indices of shard `s`.
    pub fn shard_range(&self, s: usize) -> std::ops::Range<usize> {
        let start = s * self.shard_runs;
        start..(start + self.shard_runs).min(self.runs)
    }
}

/// The resolved checkpoint schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Optimizer steps after which weights are recorded (0 = the initialization), ascending.
    pub steps: Vec<usize>,
    /// Times `t_k = k/K` of the marginals.
    pub times: Vec<f32>,
    /// `steps[k] / steps_per_epoch`.
    pub epochs: Vec<f64>,
    /// Optimizer steps per epoch (`⌈train samples / batch⌉`).
    pub steps_per_epoch: usize,
    /// Optimizer steps in the whole run.
    pub total_steps: usize,
}

/// The default schedule: dense early (steps 25, 50, …, 800 that fall inside training), then every
/// epoch's end.
pub const DEFAULT_CHECKPOINTS: &str = "early,epochs";

/// The steps `early` stands for (those before the end of training).
pub const EARLY_STEPS: [usize; 6] = [25, 50, 100, 200, 400, 800];

impl Schedule {
    /// Resolves a schedule: comma-separated step numbers, `epochs` (every epoch's end) and `early`
    /// (steps 25, 50, 100, 200, 400, 800 that fall before the end). Step 0 and the last step are
    /// always included; duplicates are merged.
    ///
    /// # Errors
    /// [`UsageError`] for an unknown token or a step past the end of training.
    pub fn parse(
        spec: &str,
        train_samples: usize,
        batch_size: usize,
        epochs: usize,
    ) -> Result<Self, UsageError> {
        let steps_per_epoch = train_samples.div_ceil(batch_size.max(1));
        let total_steps = steps_per_epoch * epochs;
        let mut steps = vec![0, total_steps];
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token == "epochs" {
                steps.extend((1..=epochs).map(|e| e * steps_per_epoch));
                continue;
            }
            if token == "early" {
                steps.extend(EARLY_STEPS.iter().filter(|&&s| s < total_steps));
                continue;
            }
            let step: usize = token.parse().map_err(|_| {
                UsageError(format!(
                    "bad checkpoint {token:?} in --checkpoints {spec:?}: expected step numbers, `early` and `epochs`"
                ))
            })?;
            if step > total_steps {
                return Err(UsageError(format!(
                    "checkpoint step {step} is past the end of training: {epochs} epochs × \
                     {steps_per_epoch} steps = {total_steps} steps"
                )));
            }
            steps.push(step);
        }
        steps.sort_unstable();
        steps.dedup();
        let k = (steps.len() - 1).max(1) as f32;
        Ok(Self {
            times: (0..steps.len()).map(|i| i as f32 / k).collect(),
            epochs: steps
                .iter()
                .map(|&s| s as f64 / steps_per_epoch as f64)
                .collect(),
            steps,
            steps_per_epoch,
            total_steps,
        })
    }

    /// Number of checkpoints per run (`K + 1`).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no checkpoints (never: step 0 is always there).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_dense_early() {
        let s = Schedule::parse(DEFAULT_CHECKPOINTS, 60_000, 64, 5).unwrap();
        assert_eq!(s.steps_per_epoch, 938);
        assert_eq!(s.total_steps, 4690);
        assert_eq!(
            s.steps,
            vec![0, 25, 50, 100, 200, 400, 800, 938, 1876, 2814, 3752, 4690]
        );
        assert_eq!(s.times[0], 0.0);
        assert_eq!(*s.times.last().unwrap(), 1.0);
        assert!((s.epochs[7] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn schedule_past_the_end_is_refused() {
        let e = Schedule::parse("0,5000", 60_000, 64, 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("past the end") && e.contains("4690"), "{e}");
        assert!(Schedule::parse("0,x", 100, 10, 1).is_err());
        let s = Schedule::parse("", 100, 10, 1).unwrap();
        assert_eq!(s.steps, vec![0, 10]);
        let s = Schedule::parse(DEFAULT_CHECKPOINTS, 60_000, 256, 1).unwrap();
        assert_eq!(s.steps, vec![0, 25, 50, 100, 200, 235]);
    }
}
