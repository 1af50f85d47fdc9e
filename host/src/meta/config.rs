//! Every hyper-parameter of a meta-model, saved as `config.json` in the model directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::field::{FieldConfig, FieldKind, SetDims};
use super::source::Source;
use crate::error::{MetaError, UsageError};
use crate::flow::path::SplineKind;
use crate::flow::solver::Solver;
use crate::zoo::Manifest;

/// The meta-model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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

pub(crate) fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// Serde's test for settings whose absence means zero (older files keep their bytes).
pub(crate) fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

pub(crate) fn default_functional_batch() -> usize {
    256
}

pub(crate) fn default_functional_samples() -> usize {
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
    /// With `functional_rollout ≥ 1`: the largest rollout step count; every training step draws
    /// its count uniformly from `functional_rollout..=functional_rollout_max`, so the sampler is
    /// trained at every count in the range. 0 (and absent in older models): always
    /// `functional_rollout`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub functional_rollout_max: usize,
    /// With `functional_rollout ≥ 1`: the rollout step counts every training step draws from
    /// uniformly (`--functional-rollout-counts`), instead of a range; empty (and absent in older
    /// models): the range, or always `functional_rollout`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functional_rollout_counts: Vec<usize>,
    /// Source samples per step rolled out for the functional term (`functional_rollout ≥ 1`).
    #[serde(default = "default_functional_samples")]
    pub functional_samples: usize,
    /// Decay of the exponential moving average of the field's weights
    /// ([`crate::meta::train::ema`]): held-out evaluations measure the average and the model
    /// keeps it. 0 (and absent in older models): no average, the trained weights are kept.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub ema: f64,
    /// Steps between held-out evaluations (the model with the best held-out objective is kept).
    pub eval_every: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Default solver for sampling.
    pub solver: Solver,
    /// Default number of solver steps.
    pub solver_steps: usize,
    /// The first time `t0` of the memoryless SDE sampler ([`Solver::Sde`]), recorded by adjoint
    /// fine-tuning (absent: [`crate::flow::sde::DEFAULT_T0`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sde_t0: Option<f64>,
    /// SHA-256 of the zoo's manifest.
    pub zoo_manifest_sha256: String,
    /// The zoo directory the model was trained on.
    pub zoo: String,
    /// A latent model's VAE: the flow runs in its latent space and samples are decoded (absent:
    /// the flow runs on the weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent: Option<LatentSpec>,
    /// Conditioning on the task (a multi-task zoo): the support-set encoder's settings (absent:
    /// an unconditional field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<crate::meta::condition::config::ConditionConfig>,
}

/// The VAE a latent meta-model runs in (a copy lives in the model's `vae/` folder).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatentSpec {
    /// The VAE directory it was trained with.
    pub vae: String,
    /// SHA-256 of the VAE's weights.
    pub vae_sha256: String,
    /// Latent values per classifier (the field's state).
    pub dim: usize,
}

/// The largest field network `train` builds (parameters): with Adam's two moments and the gradient
/// it takes 16 bytes a parameter, 4 GiB at this size; larger requests are refused before any
/// allocation.
pub const MAX_FIELD_PARAMS: u128 = 1 << 28;

impl MetaConfig {
    /// Checks every setting against its range and against the zoo it trains on.
    ///
    /// # Errors
    /// A [`UsageError`] naming the option (as `nmflow train` spells it), the value and the range.
    pub fn validate(&self, manifest: &Manifest) -> Result<(), UsageError> {
        let bad = |what: String| Err(UsageError(what));
        let positive = |name: &str, v: f64| -> Result<(), UsageError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(format!("{name} must be a finite number > 0 (got {v})"))
            }
        };
        let non_negative = |name: &str, v: f64| -> Result<(), UsageError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(format!("{name} must be a finite number ≥ 0 (got {v})"))
            }
        };
        for (name, v) in [
            ("--steps", self.steps),
            ("--batch-size", self.batch_size),
            ("--hidden", self.field.hidden),
            ("--eval-every", self.eval_every),
            ("--solver-steps", self.solver_steps),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1 (got 0)"));
            }
        }
        if !(self.ema.is_finite() && (0.0..1.0).contains(&self.ema)) {
            return bad(format!(
                "--ema must be 0 (no average) or a decay in (0, 1), e.g. 0.999 (got {})",
                self.ema
            ));
        }
        if self.field.time_dim < 2 || !self.field.time_dim.is_multiple_of(2) {
            return bad(format!(
                "--time-dim must be an even number ≥ 2 (got {})",
                self.field.time_dim
            ));
        }
        if self.solver == Solver::Sde {
            return bad("--solver sde is the sampler of adjoint fine-tuning (`nmflow finetune --method adjoint` stores it; `sample`/`eval --solver sde` draw with it); train stores an ODE solver: euler, heun, rk4 or dopri5".into());
        }
        positive("--lr", self.lr)?;
        non_negative("--weight-decay", self.weight_decay)?;
        non_negative("--sigma", f64::from(self.sigma))?;
        non_negative("--functional-weight", f64::from(self.functional_weight))?;
        if let Source::Gaussian { std } = self.source {
            positive("--source-std", f64::from(std))?;
        }
        if let Some(j) = self.field.jko {
            positive("--tau", f64::from(j.tau))?;
        }
        if let Some(spec) = &self.latent {
            self.validate_latent(spec)?;
        } else if self.field.dim != manifest.num_params {
            return bad(format!(
                "the field's state has {} values, but the zoo's classifiers have {} parameters",
                self.field.dim, manifest.num_params
            ));
        }
        let expected = SetDims::of(&manifest.layout)
            .map(|z| crate::meta::condition::config::set_dims(self.condition.as_ref(), z));
        match (self.field.kind, self.field.set, expected) {
            (FieldKind::Set, _, None) => {
                return bad(format!(
                    "--field set needs a one-hidden-layer MLP classifier, but the zoo's is {}",
                    manifest.config.arch
                ));
            }
            (FieldKind::Set, d, Some(z)) if d != Some(z) => {
                return bad("the set field's token dimensions differ from the zoo's layout".into());
            }
            (FieldKind::Potential, ..) if self.method != Method::Jko => {
                return bad("--field potential goes with --method jko".into());
            }
            (k, ..) if self.method == Method::Jko && k != FieldKind::Potential => {
                return bad("--method jko trains a potential (no --field)".into());
            }
            _ => {}
        }
        let size = self.field.num_params_checked();
        if size.is_none_or(|n| n > MAX_FIELD_PARAMS) {
            return bad(format!(
                "the field network would have {} parameters (--hidden {}, --depth {}), more than the {MAX_FIELD_PARAMS} nmflow trains; use a smaller --hidden or --depth",
                size.map_or_else(|| "too many".into(), |n| n.to_string()),
                self.field.hidden,
                self.field.depth
            ));
        }
        if self.functional_weight > 0.0 {
            let method_ok = match self.method {
                Method::Cfm => true,
                Method::Mmfm => self.functional_rollout > 0,
                Method::Jko => false,
            };
            if !method_ok {
                return bad("--functional-weight goes with --method cfm, or mmfm with --functional-rollout ≥ 1 (not jko)".into());
            }
            if self.functional_batch == 0 {
                return bad("--functional-batch must be at least 1 with a functional term".into());
            }
            if self.functional_rollout_max > 0
                && (self.functional_rollout == 0
                    || self.functional_rollout_max < self.functional_rollout)
            {
                return bad(format!(
                    "--functional-rollout-max {} needs --functional-rollout between 1 and it (got {})",
                    self.functional_rollout_max, self.functional_rollout
                ));
            }
            if !self.functional_rollout_counts.is_empty()
                && (self.functional_rollout == 0
                    || self.functional_rollout_max > 0
                    || self.functional_rollout_counts.contains(&0))
            {
                return bad(format!(
                    "--functional-rollout-counts {:?} needs --functional-rollout ≥ 1, counts ≥ 1 and no --functional-rollout-max",
                    self.functional_rollout_counts
                ));
            }
            if self.functional_rollout > 0 && self.functional_samples == 0 {
                return bad(
                    "--functional-samples must be at least 1 with --functional-rollout".into(),
                );
            }
        }
        if self.field.step_input {
            let plain = self.field.kind == FieldKind::Set
                && self.method != Method::Jko
                && self.latent.is_none()
                && self.condition.is_none();
            if !plain || self.functional_rollout == 0 || self.functional_weight <= 0.0 {
                return bad("--step-input goes with the set field, --method cfm or mmfm, a functional term with --functional-rollout ≥ 1, and no --latent or --condition".into());
            }
        }
        crate::meta::condition::config::validate_for(self, manifest)?;
        if manifest.split.train.is_empty() {
            return bad(format!(
                "the zoo has no training runs (all {} runs are held out); rebuild it with a smaller --heldout",
                manifest.runs.len()
            ));
        }
        if self.method != Method::Cfm && manifest.schedule.len() < 2 {
            return bad(format!(
                "--method {} needs at least two checkpoints per run",
                self.method.name()
            ));
        }
        Ok(())
    }
}

impl MetaConfig {
    /// The checks of a latent model: the flow's state is the VAE's latent, whose coordinates have
    /// no hidden-unit structure (no set field, no permutation augmentation), and whose source is
    /// either the encoded Kaiming-uniform initializations (paired with the runs' own encoded
    /// checkpoints) or a Gaussian in latent units (paired independently).
    fn validate_latent(&self, spec: &LatentSpec) -> Result<(), UsageError> {
        let bad = |what: &str| Err(UsageError(format!("--latent: {what}")));
        if self.field.dim != spec.dim {
            return bad(&format!(
                "the field's state has {} values, but the VAE's latent has {}",
                self.field.dim, spec.dim
            ));
        }
        if self.field.kind == FieldKind::Set {
            return bad("the set field works on hidden units; a latent has none (use --field mlp)");
        }
        if self.permute {
            return bad(
                "latents have no hidden units to permute (the VAE already put each classifier in one order)",
            );
        }
        if self.functional_weight > 0.0 {
            return bad(
                "the functional term of `train` does not decode latents; the VAE's own functional term (`nmflow vae --functional-weight`) shapes what decodes, so use --functional-weight 0",
            );
        }
        match (self.source, self.method, self.coupling) {
            (Source::Kaiming, Method::Cfm, Coupling::Natural)
            | (Source::Kaiming, Method::Mmfm | Method::Jko, _)
            | (Source::Gaussian { .. }, Method::Cfm, Coupling::Independent | Coupling::Ot) => {
                Ok(())
            }
            (Source::Kaiming, ..) => bad(
                "the encoded Kaiming source pairs each run with its own encoded initialization: use --coupling natural (or --source gaussian with --coupling independent)",
            ),
            (Source::Gaussian { .. }, ..) => {
                bad("a Gaussian latent source goes with NM-CFM and --coupling independent or ot")
            }
        }
    }

    /// The field's step-size input for a sampler of `steps` steps: `1/steps` for a field with
    /// `--step-input`, `None` otherwise.
    pub fn step_size(&self, steps: usize) -> Option<f32> {
        self.field.step_input.then(|| 1.0 / steps.max(1) as f32)
    }

    /// The first time of the memoryless SDE sampler: the one fine-tuning recorded, or
    /// [`crate::flow::sde::DEFAULT_T0`].
    pub fn sde_t0(&self) -> f64 {
        self.sde_t0.unwrap_or(crate::flow::sde::DEFAULT_T0)
    }

    /// The Euler step count of one training step's rollout: `functional_rollout`, a uniform draw
    /// from `functional_rollout..=functional_rollout_max`, or from `functional_rollout_counts`
    /// (from the step's own stream).
    pub fn rollout_steps(&self, rng: &mut nmflow_runtime::Rng) -> usize {
        let counts = &self.functional_rollout_counts;
        if !counts.is_empty() {
            let i = rng.below(u32::try_from(counts.len()).unwrap_or(u32::MAX)) as usize;
            return counts.get(i).copied().unwrap_or(self.functional_rollout);
        }
        let (k, max) = (self.functional_rollout, self.functional_rollout_max);
        if max <= k {
            return k;
        }
        let span = u32::try_from(max - k + 1).unwrap_or(u32::MAX);
        k + rng.below(span) as usize
    }
}

impl Method {
    /// The name `nmflow train --method` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cfm => "cfm",
            Self::Mmfm => "mmfm",
            Self::Jko => "jko",
        }
    }
}

pub use crate::meta::condition::config::{
    CONDITION_CLASS_TOKEN, CONDITION_EMBED, CONDITION_FEATURES, ConditionKind,
};

pub use super::recipe::{
    REWARD_ITERATIONS, REWARD_ROLLOUT_FACTOR, Recipe, RewardStage, TrainRequest,
};

/// SHA-256 of a zoo's manifest file (recorded in the model so a model and a zoo can be matched).
///
/// # Errors
/// I/O errors naming the file.
pub fn manifest_hash(zoo_dir: &Path) -> Result<String, MetaError> {
    let path = zoo_dir.join(crate::zoo::manifest::MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| MetaError::file(&path, e))?;
    Ok(crate::io::sha256_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::{FieldKind, LrSchedule, MetaConfig};

    #[test]
    fn rollout_counts_cover_the_range_and_the_range_is_checked() {
        use super::TrainRequest;
        let zoo =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
        let manifest = crate::zoo::Manifest::read(&zoo).unwrap();
        let cfg = TrainRequest {
            field: Some(FieldKind::Set),
            functional_rollout: Some(4),
            functional_rollout_max: 8,
            ..TrainRequest::default()
        }
        .resolve_with(&manifest, &zoo, "0".repeat(64));
        cfg.validate(&manifest).unwrap();
        // The stored sampler stays the base count; the draws cover 4..=8 and nothing else.
        assert_eq!(cfg.solver_steps, 4);
        let mut rng = nmflow_runtime::Rng::new(1, 2);
        let mut seen = [0usize; 10];
        for _ in 0..1000 {
            seen[cfg.rollout_steps(&mut rng)] += 1;
        }
        assert!(
            seen[..4].iter().chain(&seen[9..]).all(|&c| c == 0),
            "{seen:?}"
        );
        assert!(seen[4..9].iter().all(|&c| c > 150), "{seen:?}");
        // Off (0) or a range below the base count: refused or the base count.
        let fixed = MetaConfig {
            functional_rollout_max: 0,
            ..cfg.clone()
        };
        assert_eq!(fixed.rollout_steps(&mut rng), 4);
        let bad = MetaConfig {
            functional_rollout_max: 2,
            ..cfg.clone()
        };
        let err = bad.validate(&manifest).unwrap_err().0;
        assert!(err.contains("--functional-rollout-max 2"), "{err}");
        // Not written into config.json when off, so earlier models' files keep their bytes.
        let written = serde_json::to_string(&fixed).unwrap();
        assert!(!written.contains("rollout_max") && !written.contains("rollout_counts"));
        // A list of counts: draws cover it and nothing else; checked against the range and 0.
        let listed = MetaConfig {
            functional_rollout_max: 0,
            functional_rollout_counts: vec![4, 8, 16],
            ..cfg.clone()
        };
        listed.validate(&manifest).unwrap();
        let mut seen = [0usize; 17];
        for _ in 0..900 {
            seen[listed.rollout_steps(&mut rng)] += 1;
        }
        for (k, &c) in seen.iter().enumerate() {
            assert_eq!(c > 250, [4, 8, 16].contains(&k), "{seen:?}");
            assert!(c == 0 || [4, 8, 16].contains(&k), "{seen:?}");
        }
        for counts in [vec![4, 0], vec![4, 8]] {
            let bad = MetaConfig {
                functional_rollout_counts: counts.clone(),
                functional_rollout_max: if counts.contains(&0) { 0 } else { 8 },
                ..cfg.clone()
            };
            let err = bad.validate(&manifest).unwrap_err().0;
            assert!(err.contains("--functional-rollout-counts"), "{err}");
        }
    }

    #[test]
    fn the_average_decay_is_checked_and_absent_when_off() {
        use super::TrainRequest;
        let zoo =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
        let manifest = crate::zoo::Manifest::read(&zoo).unwrap();
        let cfg = |ema| {
            TrainRequest {
                ema,
                field: Some(FieldKind::Set),
                ..TrainRequest::default()
            }
            .resolve_with(&manifest, &zoo, "0".repeat(64))
        };
        cfg(0.999).validate(&manifest).unwrap();
        for ema in [1.0, -0.1, f64::NAN] {
            let err = cfg(ema).validate(&manifest).unwrap_err().0;
            assert!(err.contains("--ema"), "{err}");
        }
        let off = serde_json::to_string(&cfg(0.0)).unwrap();
        assert!(!off.contains("ema"), "{off}");
        let on: MetaConfig =
            serde_json::from_str(&serde_json::to_string(&cfg(0.999)).unwrap()).unwrap();
        assert_eq!(on.ema, 0.999);
    }

    #[test]
    fn the_step_size_input_is_checked_fed_and_absent_when_off() {
        use super::TrainRequest;
        let zoo =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
        let manifest = crate::zoo::Manifest::read(&zoo).unwrap();
        let cfg = |step_input, field| {
            TrainRequest {
                step_input,
                field,
                ..TrainRequest::default()
            }
            .resolve_with(&manifest, &zoo, "0".repeat(64))
        };
        let on = cfg(true, Some(FieldKind::Set));
        on.validate(&manifest).unwrap();
        assert_eq!(on.field.time_input(), 2 * on.field.time_dim);
        assert_eq!(on.step_size(8), Some(0.125));
        let off = cfg(false, Some(FieldKind::Set));
        assert_eq!((off.step_size(8), off.field.time_input()), (None, 32));
        // Not written into config.json when off, so earlier models' files keep their bytes.
        assert!(!serde_json::to_string(&off).unwrap().contains("step_input"));
        let back: MetaConfig = serde_json::from_str(&serde_json::to_string(&on).unwrap()).unwrap();
        assert!(back.field.step_input);
        let err = cfg(true, Some(FieldKind::Mlp))
            .validate(&manifest)
            .unwrap_err()
            .0;
        assert!(
            err.contains("--step-input goes with the set field"),
            "{err}"
        );
        let no_term = MetaConfig {
            functional_weight: 0.0,
            ..on
        };
        assert!(no_term.validate(&manifest).is_err());
    }

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
