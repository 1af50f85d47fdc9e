//! Every hyper-parameter of a meta-model, saved as `config.json` in the model directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::field::{FieldConfig, FieldKind, JkoSteps, SetDims};
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

/// The set of defaults `nmflow train` starts from (`--recipe`); every setting given explicitly
/// overrides its recipe's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Two stages: the MLP field trained by flow matching alone from a Gaussian source (width
    /// 256, depth 2, 3,000 steps, cosine schedule, Euler × 8), then fine-tuned on the zoo's
    /// training loss through its sampler over a range of step counts (the reward stage). The
    /// default for NM-CFM on the weights of a single-task zoo.
    Reward,
    /// The set field with the functional term on the 4-step Euler sampler (width 128, 8,000
    /// steps, cosine schedule, λ = 2): the default for `--field set`, NM-MMFM and conditioned
    /// fields.
    Functional,
    /// No recipe: width 512, 2,000 steps, constant rate, no functional term, RK4 × 2.
    Plain,
}

/// The reward stage of [`Recipe::Reward`]: after flow matching, the field is fine-tuned by the
/// direct method with the per-coordinate term (`nmflow finetune --method direct --diagonal
/// --lambda 1 --lr-schedule cosine --eval-every 500`) on the zoo's own training images, each
/// iteration rolled out at a step count drawn from the stored sampler's up to `rollout_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardStage {
    /// Fine-tuning iterations.
    pub iterations: usize,
    /// The largest rollout step count.
    pub rollout_max: usize,
}

/// Fine-tuning iterations of the reward recipe's second stage.
pub const REWARD_ITERATIONS: usize = 5000;
/// The reward recipe's rollout range, as a multiple of the stored step count (so that 4× the
/// stored count lies inside the range: BENCHMARKS.md measured 8..=32 failing the 0.5 pp limit
/// at its edge on one MNIST seed, 8..=48 holding on six models).
pub const REWARD_ROLLOUT_FACTOR: usize = 6;

/// What a user asks of `nmflow train`. Settings left `None` take the defaults of the recipe the
/// request ends up with ([`TrainRequest::resolve`], [`Recipe`]): with no `--field`, NM-CFM on a
/// single-task zoo's weights gets [`Recipe::Reward`]; the set field with NM-CFM or NM-MMFM
/// [`Recipe::Functional`]; anything else [`Recipe::Plain`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainRequest {
    /// Recipe [default: see [`TrainRequest::recipe`]].
    pub recipe: Option<Recipe>,
    /// Method.
    pub method: Method,
    /// Coupling (NM-CFM) [default: independent for the reward recipe, else natural].
    pub coupling: Option<Coupling>,
    /// Spline (NM-MMFM).
    pub spline: SplineKind,
    /// Source law [default: N(0, `source_std`²) for the reward recipe, else Kaiming-uniform].
    pub source: Option<Source>,
    /// Standard deviation of the reward recipe's default Gaussian source (raw weight units).
    pub source_std: f32,
    /// Path noise in standardized units.
    pub sigma: f32,
    /// Hidden-unit permutation augmentation.
    pub permute: bool,
    /// Field kind [default: set where the classifier allows it, else mlp; potential for NM-JKO].
    pub field: Option<FieldKind>,
    /// NM-JKO step size τ.
    pub tau: f32,
    /// Width of the field network.
    pub hidden: Option<usize>,
    /// Hidden layers (set field: residual blocks) [default: 2 for the reward recipe, else 3].
    pub depth: Option<usize>,
    /// Width of the time embedding.
    pub time_dim: usize,
    /// Optimizer steps.
    pub steps: Option<usize>,
    /// Samples per minibatch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub lr_schedule: Option<LrSchedule>,
    /// Weight decay.
    pub weight_decay: f64,
    /// Weight of the functional term.
    pub functional_weight: Option<f32>,
    /// Images per step for the functional term.
    pub functional_batch: usize,
    /// Euler steps of the functional term's rollout.
    pub functional_rollout: Option<usize>,
    /// The largest rollout step count (0: always `functional_rollout`).
    pub functional_rollout_max: usize,
    /// The rollout step counts to draw from (empty: the range).
    pub functional_rollout_counts: Vec<usize>,
    /// Give the set field the sampler's step size as an input (`--step-input`).
    pub step_input: bool,
    /// Source samples rolled out per step.
    pub functional_samples: usize,
    /// Decay of the moving average of the field's weights (0: none).
    pub ema: f64,
    /// Steps between held-out evaluations.
    pub eval_every: Option<usize>,
    /// Seed.
    pub seed: u64,
    /// Default sampling solver.
    pub solver: Option<Solver>,
    /// Default sampling steps.
    pub solver_steps: Option<usize>,
    /// The VAE directory of a latent model (`nmflow vae`): the flow runs in its latent space.
    pub latent: Option<std::path::PathBuf>,
    /// Condition the field on the task (`--condition support`; a multi-task zoo).
    pub condition: Option<ConditionKind>,
    /// Labeled examples per class in a training support set.
    pub shots: usize,
    /// Rate at which the condition is dropped in training (classifier-free guidance).
    pub cfg_drop: f32,
    /// Relabel every training pair of a conditioned field by a random permutation of the
    /// classes.
    pub relabel: bool,
    /// Iterations of the reward stage [default: [`REWARD_ITERATIONS`] for the reward recipe,
    /// else 0: none].
    pub finetune_iterations: Option<usize>,
    /// The reward stage's largest rollout step count [default: [`REWARD_ROLLOUT_FACTOR`] × the
    /// stored step count].
    pub finetune_rollout_max: Option<usize>,
}

pub use crate::meta::condition::config::{
    CONDITION_CLASS_TOKEN, CONDITION_EMBED, CONDITION_FEATURES, ConditionKind,
};

impl Default for TrainRequest {
    fn default() -> Self {
        Self {
            recipe: None,
            method: Method::Cfm,
            coupling: None,
            spline: SplineKind::Pchip,
            source: None,
            source_std: 0.1,
            sigma: 0.0,
            permute: true,
            field: None,
            tau: 1.0,
            hidden: None,
            depth: None,
            time_dim: 32,
            steps: None,
            batch_size: 128,
            lr: 1e-3,
            lr_schedule: None,
            weight_decay: 0.0,
            functional_weight: None,
            functional_batch: default_functional_batch(),
            functional_rollout: None,
            functional_rollout_max: 0,
            functional_rollout_counts: Vec::new(),
            step_input: false,
            functional_samples: default_functional_samples(),
            ema: 0.0,
            eval_every: None,
            seed: 0,
            solver: None,
            solver_steps: None,
            latent: None,
            condition: None,
            shots: 5,
            cfg_drop: 0.1,
            relabel: false,
            finetune_iterations: None,
            finetune_rollout_max: None,
        }
    }
}

impl TrainRequest {
    /// The complete, validated settings for the zoo in `zoo_dir` (its manifest gives the state's
    /// dimension, the set field's tokens and NM-JKO's number of steps).
    ///
    /// # Errors
    /// An unreadable zoo, or settings out of range ([`MetaConfig::validate`]).
    pub fn resolve(&self, zoo_dir: &Path) -> Result<MetaConfig, MetaError> {
        let manifest = Manifest::read(zoo_dir)?;
        if self.condition.is_none() {
            if self.relabel {
                return Err(UsageError(
                    "--relabel goes with --condition (it relabels a conditioned field's training pairs)"
                        .into(),
                )
                .into());
            }
            manifest.require_single_task(zoo_dir)?;
        }
        self.check_recipe(&manifest)?;
        let sha256 = manifest_hash(zoo_dir)?;
        let mut cfg = match &self.latent {
            Some(dir) => self.resolve_latent(&manifest, zoo_dir, sha256, dir)?,
            None => self.resolve_with(&manifest, zoo_dir, sha256),
        };
        if let Some(kind) = self.condition {
            crate::meta::condition::config::attach(&mut cfg, self, kind, &manifest);
        }
        cfg.validate(&manifest)?;
        Ok(cfg)
    }

    /// A latent model's settings: the field's state is the VAE's latent; the defaults are those
    /// of the MLP field (no permutation augmentation, no functional term).
    ///
    /// # Errors
    /// A VAE that is unfinished, unreadable or trained on another zoo.
    fn resolve_latent(
        &self,
        manifest: &Manifest,
        zoo_dir: &Path,
        sha256: String,
        dir: &Path,
    ) -> Result<MetaConfig, MetaError> {
        use crate::meta::latent::codec;
        if !dir.join(codec::SETTINGS).is_file() {
            return Err(MetaError::file(
                dir,
                "--latent: not a VAE directory (written by `nmflow vae`): it has no vae.json",
            ));
        }
        let vae: crate::meta::latent::config::VaeConfig =
            super::files::read_json(&dir.join(codec::SETTINGS))?;
        if vae.zoo_manifest_sha256 != sha256 {
            return Err(UsageError(format!(
                "--latent {}: the VAE was trained on another zoo ({}, manifest sha256 {}), not on {} ({sha256})",
                dir.display(),
                vae.zoo,
                vae.zoo_manifest_sha256,
                zoo_dir.display()
            ))
            .into());
        }
        if !dir.join(codec::SUMMARY).is_file() {
            return Err(MetaError::file(
                dir,
                "VAE training did not finish (no vae-summary.json); run the same `nmflow vae` again to resume it",
            ));
        }
        let request = Self {
            field: Some(self.field.unwrap_or(FieldKind::Mlp)),
            recipe: Some(self.recipe.unwrap_or(Recipe::Plain)),
            permute: false,
            ..self.clone()
        };
        let mut cfg = request.resolve_with(manifest, zoo_dir, sha256);
        let dim = vae.shape.latent;
        cfg.field.set = None;
        cfg.field.dim = dim;
        cfg.latent = Some(LatentSpec {
            vae: dir.display().to_string(),
            vae_sha256: codec::weights_sha256(dir)?,
            dim,
        });
        Ok(cfg)
    }

    /// The recipe whose defaults the request takes: the one asked for, else with no `--field`
    /// the reward recipe for NM-CFM on a single-task zoo's weights (no `--latent`, no
    /// `--condition`), else the functional recipe for the set field (given, or the default of a
    /// one-hidden-layer MLP classifier) with NM-CFM or NM-MMFM, else none.
    pub fn recipe(&self, manifest: &Manifest) -> Recipe {
        if let Some(r) = self.recipe {
            return r;
        }
        let jko = self.method == Method::Jko;
        let set = match self.field {
            Some(k) => k == FieldKind::Set,
            None => SetDims::of(&manifest.layout).is_some(),
        };
        if self.field.is_none()
            && self.method == Method::Cfm
            && self.latent.is_none()
            && self.condition.is_none()
        {
            Recipe::Reward
        } else if set && !jko {
            Recipe::Functional
        } else {
            Recipe::Plain
        }
    }

    /// Refuses a recipe asked for with settings it cannot take.
    ///
    /// # Errors
    /// [`UsageError`] naming the flags.
    fn check_recipe(&self, manifest: &Manifest) -> Result<(), UsageError> {
        let recipe = self.recipe(manifest);
        match recipe {
            Recipe::Reward => {
                let conflict = if self.method != Method::Cfm {
                    Some(format!("--method {}", self.method.name()))
                } else if self.latent.is_some() {
                    Some("--latent".to_string())
                } else if self.condition.is_some() {
                    Some("--condition".to_string())
                } else if self.field.is_some_and(|k| k != FieldKind::Mlp) {
                    Some("--field set".to_string())
                } else {
                    None
                };
                if let Some(flag) = conflict {
                    return Err(UsageError(format!(
                        "--recipe reward trains NM-CFM with the MLP field on the weights (its fine-tuning stage's per-coordinate term is the MLP field's), so it does not take {flag}; choose --recipe functional or --recipe plain"
                    )));
                }
            }
            Recipe::Functional => {
                if self.field.is_some_and(|k| k != FieldKind::Set)
                    || (self.field.is_none() && SetDims::of(&manifest.layout).is_none())
                {
                    return Err(UsageError(
                        "--recipe functional is the set field's recipe (one-hidden-layer MLP classifiers); choose --recipe reward or --recipe plain for this field".into(),
                    ));
                }
                if self.method == Method::Jko {
                    return Err(UsageError(
                        "--recipe functional trains NM-CFM or NM-MMFM; NM-JKO takes --recipe plain"
                            .into(),
                    ));
                }
            }
            Recipe::Plain => {}
        }
        Ok(())
    }

    /// The reward stage this request asks for after flow matching (`None`: none), with its
    /// defaults resolved against the stage-one settings `cfg`.
    ///
    /// # Errors
    /// [`UsageError`]: a stage on a field, method or model it does not apply to, or a range
    /// that starts above its maximum.
    pub fn reward_stage(
        &self,
        manifest: &Manifest,
        cfg: &MetaConfig,
    ) -> Result<Option<RewardStage>, UsageError> {
        let reward = self.recipe(manifest) == Recipe::Reward;
        let iterations =
            self.finetune_iterations
                .unwrap_or(if reward { REWARD_ITERATIONS } else { 0 });
        if iterations == 0 {
            if let Some(k) = self.finetune_rollout_max {
                return Err(UsageError(format!(
                    "--finetune-rollout-max {k} goes with a reward stage (--recipe reward, or --finetune-iterations N > 0)"
                )));
            }
            return Ok(None);
        }
        if cfg.field.kind != FieldKind::Mlp
            || cfg.method == Method::Jko
            || cfg.latent.is_some()
            || cfg.condition.is_some()
        {
            return Err(UsageError(format!(
                "--finetune-iterations {iterations}: the reward stage fine-tunes an unconditioned MLP field on the weights (NM-CFM or NM-MMFM), not a {} field{}",
                format!("{:?}", cfg.field.kind).to_lowercase(),
                if cfg.latent.is_some() {
                    " of a latent model"
                } else if cfg.condition.is_some() {
                    " with a condition"
                } else {
                    ""
                }
            )));
        }
        let rollout_max = self
            .finetune_rollout_max
            .unwrap_or(REWARD_ROLLOUT_FACTOR * cfg.solver_steps);
        if rollout_max < cfg.solver_steps {
            return Err(UsageError(format!(
                "--finetune-rollout-max {rollout_max}: the range starts at the stored sampler's {} steps, so its maximum must be at least that",
                cfg.solver_steps
            )));
        }
        Ok(Some(RewardStage {
            iterations,
            rollout_max,
        }))
    }

    /// [`Self::resolve`] against a manifest already read (not validated).
    pub fn resolve_with(&self, manifest: &Manifest, zoo_dir: &Path, sha256: String) -> MetaConfig {
        let set_dims = SetDims::of(&manifest.layout);
        let jko = self.method == Method::Jko;
        let chosen = self.recipe(manifest);
        let reward = chosen == Recipe::Reward;
        let kind = match self.field {
            _ if jko => FieldKind::Potential,
            Some(k) => k,
            None if chosen == Recipe::Functional => FieldKind::Set,
            None => FieldKind::Mlp,
        };
        // The functional recipe: the set field with a flow-matching method.
        let recipe = chosen == Recipe::Functional && kind == FieldKind::Set && !jko;
        let functional_weight = self
            .functional_weight
            .unwrap_or(if recipe { 2.0 } else { 0.0 });
        let rollout = self
            .functional_rollout
            .unwrap_or(if functional_weight > 0.0 && recipe {
                4
            } else {
                0
            });
        let intervals = manifest.schedule.len().saturating_sub(1);
        let (solver, solver_steps) = if jko {
            (Solver::Euler, intervals)
        } else if rollout > 0 && functional_weight > 0.0 {
            (
                self.solver.unwrap_or(Solver::Euler),
                self.solver_steps.unwrap_or(rollout),
            )
        } else if reward {
            // The sampler the reward stage fine-tunes (BENCHMARKS.md's two-stage recipe).
            (
                self.solver.unwrap_or(Solver::Euler),
                self.solver_steps.unwrap_or(8),
            )
        } else {
            (
                self.solver.unwrap_or(Solver::Rk4),
                self.solver_steps.unwrap_or(2),
            )
        };
        let source = self.source.unwrap_or(if reward {
            Source::Gaussian {
                std: self.source_std,
            }
        } else {
            Source::Kaiming
        });
        let coupling = self.coupling.unwrap_or(if reward {
            Coupling::Independent
        } else {
            Coupling::Natural
        });
        MetaConfig {
            method: self.method,
            coupling,
            spline: self.spline,
            source,
            sigma: self.sigma,
            permute: self.permute,
            field: FieldConfig {
                kind,
                // Recorded for every field kind (config.json has always carried it).
                set: set_dims,
                jko: jko.then_some(JkoSteps {
                    steps: intervals,
                    tau: self.tau,
                }),
                dim: manifest.num_params,
                hidden: self.hidden.unwrap_or(if recipe {
                    128
                } else if reward {
                    256
                } else {
                    512
                }),
                depth: self.depth.unwrap_or(if reward { 2 } else { 3 }),
                time_dim: self.time_dim,
                step_input: self.step_input,
                // Added by `finetune --diagonal`, never trained from a zoo.
                diagonal: false,
            },
            steps: self.steps.unwrap_or(if recipe {
                8000
            } else if reward {
                3000
            } else {
                2000
            }),
            batch_size: self.batch_size,
            lr: self.lr,
            lr_schedule: self.lr_schedule.unwrap_or(if recipe || reward {
                LrSchedule::Cosine
            } else {
                LrSchedule::Constant
            }),
            weight_decay: self.weight_decay,
            functional_weight,
            functional_batch: self.functional_batch,
            functional_rollout: rollout,
            functional_rollout_max: self.functional_rollout_max,
            functional_rollout_counts: self.functional_rollout_counts.clone(),
            functional_samples: self.functional_samples,
            ema: self.ema,
            eval_every: self.eval_every.unwrap_or(if recipe { 200 } else { 100 }),
            seed: self.seed,
            solver,
            solver_steps,
            sde_t0: None,
            zoo_manifest_sha256: sha256,
            zoo: zoo_dir.display().to_string(),
            latent: None,
            condition: None,
        }
    }
}

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
    fn defaults_are_the_measured_recipes_and_the_old_ones_otherwise() {
        use super::{
            Coupling, FieldKind, Method, Recipe, RewardStage, Solver, Source, TrainRequest,
        };
        let zoo =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
        let manifest = crate::zoo::Manifest::read(&zoo).unwrap();
        let resolve = |r: TrainRequest| {
            let cfg = r.resolve_with(&manifest, &zoo, "0".repeat(64));
            cfg.validate(&manifest).unwrap();
            let stage = r.reward_stage(&manifest, &cfg).unwrap();
            (cfg, stage)
        };
        // No flags: the reward recipe, BENCHMARKS.md's two-stage commands.
        assert_eq!(TrainRequest::default().recipe(&manifest), Recipe::Reward);
        let (reward, stage) = resolve(TrainRequest::default());
        assert_eq!(reward.field.kind, FieldKind::Mlp);
        assert_eq!(
            (reward.source, reward.coupling),
            (Source::Gaussian { std: 0.1 }, Coupling::Independent)
        );
        assert_eq!(
            (
                reward.field.hidden,
                reward.field.depth,
                reward.steps,
                reward.eval_every,
                reward.lr_schedule
            ),
            (256, 2, 3000, 100, LrSchedule::Cosine)
        );
        assert_eq!(
            (reward.functional_weight, reward.solver, reward.solver_steps),
            (0.0, Solver::Euler, 8)
        );
        assert_eq!(
            stage,
            Some(RewardStage {
                iterations: 5000,
                rollout_max: 48
            })
        );
        // Flags override the recipe's values, the stage's range follows the stored count.
        let (short, stage) = resolve(TrainRequest {
            solver_steps: Some(4),
            finetune_iterations: Some(7),
            ..TrainRequest::default()
        });
        assert_eq!(short.solver_steps, 4);
        assert_eq!(
            stage,
            Some(RewardStage {
                iterations: 7,
                rollout_max: 24
            })
        );
        assert_eq!(
            resolve(TrainRequest {
                finetune_iterations: Some(0),
                ..TrainRequest::default()
            })
            .1,
            None
        );
        // The set field: the functional recipe.
        let (set, stage) = resolve(TrainRequest {
            field: Some(FieldKind::Set),
            ..TrainRequest::default()
        });
        assert_eq!(stage, None);
        assert_eq!(set.source, Source::Kaiming);
        assert_eq!(
            (set.field.hidden, set.steps, set.eval_every, set.lr_schedule),
            (128, 8000, 200, LrSchedule::Cosine)
        );
        assert_eq!(
            (
                set.functional_weight,
                set.functional_rollout,
                set.functional_samples
            ),
            (2.0, 4, 32)
        );
        assert_eq!((set.solver, set.solver_steps), (Solver::Euler, 4));
        let functional = TrainRequest {
            recipe: Some(Recipe::Functional),
            ..TrainRequest::default()
        };
        assert_eq!(resolve(functional).0, set);
        // NM-MMFM without --field keeps the set field's recipe.
        let mmfm = TrainRequest {
            method: Method::Mmfm,
            ..TrainRequest::default()
        };
        assert_eq!(mmfm.recipe(&manifest), Recipe::Functional);
        // An explicit MLP field, or --recipe plain: the old defaults.
        for request in [
            TrainRequest {
                field: Some(FieldKind::Mlp),
                ..TrainRequest::default()
            },
            TrainRequest {
                recipe: Some(Recipe::Plain),
                ..TrainRequest::default()
            },
        ] {
            let (mlp, stage) = resolve(request);
            assert_eq!(stage, None);
            assert_eq!(mlp.field.kind, FieldKind::Mlp);
            assert_eq!(
                (mlp.source, mlp.coupling, mlp.field.depth),
                (Source::Kaiming, Coupling::Natural, 3)
            );
            assert_eq!(
                (mlp.field.hidden, mlp.steps, mlp.eval_every, mlp.lr_schedule),
                (512, 2000, 100, LrSchedule::Constant)
            );
            assert_eq!((mlp.functional_weight, mlp.functional_rollout), (0.0, 0));
            assert_eq!((mlp.solver, mlp.solver_steps), (Solver::Rk4, 2));
        }
        let (jko, _) = resolve(TrainRequest {
            method: Method::Jko,
            recipe: Some(Recipe::Plain),
            ..TrainRequest::default()
        });
        assert_eq!(jko.field.kind, FieldKind::Potential);
        assert_eq!(jko.functional_weight, 0.0);
        assert_eq!(
            (jko.solver, jko.solver_steps),
            (Solver::Euler, manifest.schedule.len() - 1)
        );
        // A rollout the user asks for is the sampler stored, unless a solver is named.
        let (k8, _) = resolve(TrainRequest {
            field: Some(FieldKind::Set),
            functional_rollout: Some(8),
            ..TrainRequest::default()
        });
        assert_eq!((k8.solver, k8.solver_steps), (Solver::Euler, 8));
    }

    #[test]
    fn a_recipe_refuses_what_it_cannot_take() {
        use super::{FieldKind, Method, Recipe, TrainRequest};
        let zoo =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
        let manifest = crate::zoo::Manifest::read(&zoo).unwrap();
        let cases = [
            (
                TrainRequest {
                    recipe: Some(Recipe::Reward),
                    field: Some(FieldKind::Set),
                    ..TrainRequest::default()
                },
                "does not take --field set",
            ),
            (
                TrainRequest {
                    recipe: Some(Recipe::Reward),
                    method: Method::Mmfm,
                    ..TrainRequest::default()
                },
                "does not take --method mmfm",
            ),
            (
                TrainRequest {
                    recipe: Some(Recipe::Functional),
                    field: Some(FieldKind::Mlp),
                    ..TrainRequest::default()
                },
                "is the set field's recipe",
            ),
            (
                TrainRequest {
                    recipe: Some(Recipe::Functional),
                    method: Method::Jko,
                    ..TrainRequest::default()
                },
                "NM-JKO takes --recipe plain",
            ),
        ];
        for (request, needle) in cases {
            let err = request.check_recipe(&manifest).unwrap_err().0;
            assert!(err.contains(needle), "{err}");
        }
        // A stage on a field it does not apply to, or a range below the stored count.
        let set = TrainRequest {
            field: Some(FieldKind::Set),
            finetune_iterations: Some(10),
            ..TrainRequest::default()
        };
        let cfg = set.resolve_with(&manifest, &zoo, "0".repeat(64));
        let err = set.reward_stage(&manifest, &cfg).unwrap_err().0;
        assert!(err.contains("not a set field"), "{err}");
        let low = TrainRequest {
            finetune_rollout_max: Some(4),
            ..TrainRequest::default()
        };
        let cfg = low.resolve_with(&manifest, &zoo, "0".repeat(64));
        let err = low.reward_stage(&manifest, &cfg).unwrap_err().0;
        assert!(err.contains("at least that"), "{err}");
        let none = TrainRequest {
            finetune_iterations: Some(0),
            finetune_rollout_max: Some(16),
            ..TrainRequest::default()
        };
        let cfg = none.resolve_with(&manifest, &zoo, "0".repeat(64));
        let err = none.reward_stage(&manifest, &cfg).unwrap_err().0;
        assert!(err.contains("goes with a reward stage"), "{err}");
    }

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
