//! Every hyper-parameter of a meta-model, saved as `config.json` in the model directory.

use serde::{Deserialize, Serialize};

use super::field::FieldConfig;
use super::source::Source;
use crate::flow::path::SplineKind;
use crate::flow::solver::Solver;

/// The meta-model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// NM-CFM: flow matching from initializations to trained weights (two marginals).
    Cfm,
    /// NM-MMFM: multi-marginal flow matching along a spline through every checkpoint.
    Mmfm,
    /// NM-JKO: a scalar potential whose gradient steps reproduce consecutive checkpoints.
    Jko,
}

/// How `(x0, x1)` pairs are formed for NM-CFM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Coupling {
    /// A run's own initialization and its final weights.
    Natural,
    /// A fresh source sample and a random run's final weights.
    Independent,
    /// Fresh source samples matched to a minibatch of runs' final weights by an exact
    /// minimum-cost assignment of squared distances (minibatch optimal transport).
    Ot,
}

/// How the learning rate changes over training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The same rate at every step.
    #[default]
    Constant,
    /// Cosine annealing: `lr · ½(1 + cos(π·(s − 1)/S))` at step `s` of `S`, from the full rate at
    /// the first step down towards zero at the last.
    Cosine,
}

impl LrSchedule {
    /// The learning rate at step `step` (1-based) of `steps`, for the base rate `lr`.
    pub fn at(self, lr: f64, step: usize, steps: usize) -> f64 {
        match self {
            Self::Constant => lr,
            Self::Cosine => {
                let progress = step.saturating_sub(1) as f64 / steps.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
            }
        }
    }
}

fn default_functional_batch() -> usize {
    256
}

fn default_functional_samples() -> usize {
    32
}

/// The settings of `nmflow train`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetaConfig {
    /// Method.
    pub method: Method,
    /// Coupling (NM-CFM).
    pub coupling: Coupling,
    /// Spline (NM-MMFM).
    pub spline: SplineKind,
    /// Source law `p_0` for sampling (and for independent coupling).
    pub source: Source,
    /// Path noise in standardized units.
    pub sigma: f32,
    /// Augment every training pair with a random permutation of hidden units (MLPs).
    pub permute: bool,
    /// The field network.
    pub field: FieldConfig,
    /// Optimizer steps.
    pub steps: usize,
    /// Runs per minibatch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Learning-rate schedule (models from before it existed trained with a constant rate).
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Decoupled weight decay (AdamW-style, applied by burn's Adam as L2).
    pub weight_decay: f64,
    /// Weight λ of the functional term: the cross-entropy, on a minibatch of the zoo's training
    /// images, of the classifier the field predicts as the endpoint, `x̂₁ = x_t + (1 − t)·v(x_t, t)`
    /// (NM-CFM), or of the sampler's output (see `functional_rollout`; NM-CFM and NM-MMFM).
    /// 0 turns it off.
    #[serde(default)]
    pub functional_weight: f32,
    /// Images per step for the functional term.
    #[serde(default = "default_functional_batch")]
    pub functional_batch: usize,
    /// 0: the functional term scores `x̂₁` of the flow-matching minibatch; `K ≥ 1`: it scores the
    /// classifiers made by `K` Euler steps of the sampler from fresh source samples
    /// (backpropagated through all steps).
    #[serde(default)]
    pub functional_rollout: usize,
    /// Source samples per step rolled out for the functional term (`functional_rollout ≥ 1`).
    #[serde(default = "default_functional_samples")]
    pub functional_samples: usize,
    /// Steps between held-out evaluations (the model with the best held-out objective is kept).
    pub eval_every: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Default solver for sampling.
    pub solver: Solver,
    /// Default number of solver steps.
    pub solver_steps: usize,
    /// SHA-256 of the zoo's manifest.
    pub zoo_manifest_sha256: String,
    /// The zoo directory the model was trained on.
    pub zoo: String,
}

#[cfg(test)]
mod tests {
    use super::{LrSchedule, MetaConfig};

    #[test]
    fn cosine_schedule_runs_from_the_full_rate_to_near_zero() {
        let steps = 1000;
        assert_eq!(LrSchedule::Constant.at(0.1, 500, steps), 0.1);
        assert_eq!(LrSchedule::Cosine.at(0.1, 1, steps), 0.1);
        // Halfway through, cos(π/2) = 0: half the rate.
        assert!((LrSchedule::Cosine.at(0.1, 501, steps) - 0.05).abs() < 1e-12);
        let last = LrSchedule::Cosine.at(0.1, steps, steps);
        assert!(last > 0.0 && last < 1e-6, "{last}");
        let rates: Vec<f64> = (1..=steps)
            .map(|s| LrSchedule::Cosine.at(0.1, s, steps))
            .collect();
        assert!(rates.windows(2).all(|w| w[1] < w[0]));
    }

    /// A `config.json` written before the schedule existed (runs/mnist-1024/set-r4).
    const OLD_CONFIG: &str = r#"{
  "method": "cfm",
  "coupling": "natural",
  "spline": "pchip",
  "source": {
    "kind": "kaiming"
  },
  "sigma": 0.0,
  "permute": true,
  "field": {
    "kind": "set",
    "set": {
      "units": 10,
      "d_in": 784,
      "d_out": 10
    },
    "jko": null,
    "dim": 7960,
    "hidden": 128,
    "depth": 3,
    "time_dim": 32
  },
  "steps": 8000,
  "batch_size": 128,
  "lr": 0.001,
  "weight_decay": 0.0,
  "functional_weight": 2.0,
  "functional_batch": 256,
  "functional_rollout": 4,
  "functional_samples": 32,
  "eval_every": 200,
  "seed": 0,
  "solver": "euler",
  "solver_steps": 4,
  "zoo_manifest_sha256": "1b773fdbe1276a94207749e6cce708a29b1d121c753d6efb226cac4513bdb9f1",
  "zoo": "runs/mnist-1024/zoo"
}"#;

    #[test]
    fn configs_without_a_schedule_read_as_constant() {
        let old: MetaConfig = serde_json::from_str(OLD_CONFIG).unwrap();
        assert_eq!(old.lr_schedule, LrSchedule::Constant);
        let mut json: serde_json::Value = serde_json::from_str(OLD_CONFIG).unwrap();
        json["lr_schedule"] = "cosine".into();
        let new: MetaConfig = serde_json::from_value(json).unwrap();
        assert_eq!(new.lr_schedule, LrSchedule::Cosine);
        assert_eq!(
            MetaConfig {
                lr_schedule: LrSchedule::Constant,
                ..new
            },
            old
        );
    }
}
