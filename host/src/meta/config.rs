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
