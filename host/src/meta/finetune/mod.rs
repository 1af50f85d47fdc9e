//! Reward fine-tuning of a trained meta-model (`nmflow finetune`, METHOD.md §5): tilt the
//! distribution it samples towards `p*(w) ∝ p_base(w)·exp(λ·r(w))` for a reward `r` on the
//! generated classifier, without a zoo.
//!
//! Two methods share the loop, the files and the measurements:
//! * [`Method::Adjoint`]: adjoint matching with the memoryless schedule ([`memoryless`],
//!   [`adjoint`]). Exact for a base trained from a Gaussian source with independent coupling
//!   (the base's flow then has independent endpoints, which the schedule assumes); a
//!   Kaiming-uniform source is treated as the Gaussian with its mean and variance, and a base
//!   trained with the natural coupling (each run's own init and final weights) has dependent
//!   endpoints: both are approximations the summary records (`exact_memoryless`).
//! * [`Method::Direct`]: the baseline, backpropagating the reward through the base's own Euler
//!   sampler (the training's functional term used as the only objective).
//!
//! The output is a model directory like `nmflow train`'s (`sample`, `eval`, `export` and
//! `edge-eval` take it), plus `finetune.json`, `finetune-config.json`, `loss.csv` and charts.
//! Every iteration's randomness comes from `(seed, iteration)`, and a checkpoint holds the field,
//! Adam's state and the log, so an interrupted run resumes to the same bytes.

pub mod adjoint;
mod measure;
pub mod memoryless;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use self::adjoint::{AdjointSettings, MomentRows, StateReward};
use self::measure::{Evaluation, charts};
use self::memoryless::SourceMoments;
use super::config::LrSchedule;
use super::field::FieldKind;
use super::files::{self, read_json, write_json};
use super::latent::codec::Codec;
use super::reward::{DataReward, Reward};
use super::sample::MetaModel;
use super::train::{Engine, TrainSummary, checkpoint, save_field};
use crate::arch::Arch;
use crate::data::{Dataset, DatasetView};
use crate::error::{MetaError, UsageError};
use crate::flow::solver::Solver;
use crate::io::{DirLock, sha256_hex, write_atomic};
use crate::optim::AdamSettings;
use crate::progress;
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// The fine-tuning settings file of an output directory.
pub const SETTINGS: &str = "finetune-config.json";
/// The fine-tuning summary file.
pub const SUMMARY: &str = "finetune.json";

/// PRNG stream of the source samples an iteration starts from.
const STREAM_SOURCE: u64 = 30;
/// PRNG stream of the SDE's noise.
pub(super) const STREAM_NOISE: u64 = 31;
/// PRNG stream of the reward's image minibatches.
const STREAM_REWARD: u64 = 32;
/// PRNG stream of the direct method's rollout step count.
const STREAM_ROLLOUT: u64 = 33;
/// Seed offset of the fixed evaluation draws.
const EVAL_SEED: u64 = 0x5EED_F1AE;

/// How the field is fine-tuned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Adjoint matching with the memoryless noise schedule.
    Adjoint,
    /// Reward backpropagated through the Euler sampler (the baseline).
    Direct,
}

/// The reward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RewardKind {
    /// Minus the cross-entropy of the generated classifier on the dataset's training images.
    Ce,
}

/// Every setting of a fine-tuning run (`finetune-config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Method.
    pub method: Method,
    /// Reward.
    pub reward: RewardKind,
    /// Dataset view the reward (and the accuracy curve) uses.
    pub dataset: DatasetView,
    /// Reward multiplier λ.
    pub lambda: f64,
    /// Optimizer steps.
    pub iterations: usize,
    /// Trajectories (adjoint) or rollouts (direct) per iteration.
    pub trajectories: usize,
    /// Euler–Maruyama steps (adjoint; the direct method rolls out the base's own solver).
    pub steps: usize,
    /// First time of the SDE.
    pub t0: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// How the learning rate changes over the iterations (older runs: constant).
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Clip each parameter tensor's gradient to this norm before the Adam step (none: no clipping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// Direct method: weight of the control cost `∫ ‖v_fine − v_base‖² dt` along the rollouts
    /// (0, older runs: none, the plain baseline).
    #[serde(default, skip_serializing_if = "crate::meta::config::is_zero_f64")]
    pub control_cost: f64,
    /// Direct method: weight τ of the entropy estimate (mean log nearest-neighbour distance of
    /// each iteration's endpoints) added to the objective (0, older runs: none).
    #[serde(default, skip_serializing_if = "crate::meta::config::is_zero_f64")]
    pub entropy_weight: f64,
    /// The fine-tuned MLP field gets a per-coordinate term ([`super::field::FieldConfig::diagonal`]; older
    /// runs: none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diagonal: bool,
    /// Each iteration draws its step count uniformly up to this one, so the fine-tuned sampler
    /// holds at every count a user may pick: the direct method rolls out the base's solver from
    /// the base's own count, adjoint matching its SDE from `steps` Euler–Maruyama steps (0, older
    /// runs: one count only).
    #[serde(default, skip_serializing_if = "crate::meta::config::is_zero")]
    pub rollout_max: usize,
    /// Training images per reward evaluation.
    pub reward_images: usize,
    /// Iterations between measurements (and checkpoints).
    pub eval_every: usize,
    /// Classifiers sampled per measurement.
    pub eval_samples: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// The base model directory.
    pub base: String,
    /// SHA-256 of the base's weights.
    pub base_field_sha256: Option<String>,
}

impl FinetuneConfig {
    /// Checks every number.
    ///
    /// # Errors
    /// [`UsageError`] naming the option.
    pub fn validate(&self) -> Result<(), UsageError> {
        let positive = [
            ("--iterations", self.iterations),
            ("--trajectories", self.trajectories),
            ("--steps", self.steps),
            ("--reward-images", self.reward_images),
            ("--eval-every", self.eval_every),
            ("--eval-samples", self.eval_samples),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(UsageError(format!("{flag} must be at least 1 (got 0)")));
            }
        }
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return Err(UsageError(format!(
                "--lambda must be a positive number (got {})",
                self.lambda
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(UsageError(format!(
                "--lr must be a positive number (got {})",
                self.lr
            )));
        }
        if let Some(n) = self.max_grad_norm
            && !(n.is_finite() && n > 0.0)
        {
            return Err(UsageError(format!(
                "--max-grad-norm must be a positive number (got {n})"
            )));
        }
        for (flag, v) in [
            ("--control-cost", self.control_cost),
            ("--entropy-weight", self.entropy_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(UsageError(format!("{flag} must be a number ≥ 0 (got {v})")));
            }
            if v > 0.0 && self.method != Method::Direct {
                return Err(UsageError(format!(
                    "{flag} {v} applies to --method direct only (adjoint matching keeps the base through its own regression)"
                )));
            }
        }
        if self.entropy_weight > 0.0 && self.trajectories < 2 {
            return Err(UsageError(format!(
                "--entropy-weight needs --trajectories of at least 2 (got {}): the estimate compares each rollout with its nearest other",
                self.trajectories
            )));
        }
        if self.rollout_max > 0 && self.method == Method::Adjoint && self.rollout_max < self.steps {
            return Err(UsageError(format!(
                "--rollout-max {}: adjoint matching's range starts at --steps {}, so its maximum must be at least that",
                self.rollout_max, self.steps
            )));
        }
        if !(self.t0 > 0.0 && self.t0 < 1.0) {
            return Err(UsageError(format!(
                "--t0 must be in (0, 1) (got {})",
                self.t0
            )));
        }
        if !self.dataset.has_train() {
            return Err(UsageError(format!(
                "--dataset {}: the reward needs a training split ({} has only a test split)",
                self.dataset, self.dataset
            )));
        }
        Ok(())
    }
}

/// One measurement of the fine-tuned sampler.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Iteration (0: the base).
    pub iteration: usize,
    /// Mean test accuracy of the sampled classifiers on the dataset.
    pub acc_mean: f64,
    /// Lowest.
    pub acc_min: f64,
    /// Mean reward (minus the cross-entropy on fixed training images).
    pub reward: f64,
    /// Mean distance (raw weight units) from the base's classifier drawn from the same source
    /// sample.
    pub distance_from_base: f64,
    /// Median pairwise distance (raw weight units) between the sampled classifiers: their spread,
    /// which falls when the tilt collapses onto one region (0 in runs from before it was
    /// measured).
    #[serde(default)]
    pub spread: f64,
    /// The same with each pair's hidden units matched first (the spread that is not just the
    /// order of the units; 0 for convolutional classifiers and older runs).
    #[serde(default)]
    pub spread_aligned: f64,
    /// Adjoint matching only: the mean test accuracy of classifiers drawn by the fine-tuned
    /// field's memoryless SDE (the sampler whose law adjoint matching tilts; same source samples,
    /// fixed noise), beside `acc_mean` of its ODE sampler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sde_acc_mean: Option<f64>,
    /// Adjoint matching only: the reward of those classifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sde_reward: Option<f64>,
}

/// One row of `loss.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Iteration (1-based).
    pub iteration: usize,
    /// The method's loss.
    pub loss: f64,
    /// Mean reward of the iteration's trajectories or rollouts.
    pub reward: f64,
}

/// The loop state a checkpoint holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    step: usize,
    rows: Vec<Row>,
    measurements: Vec<Measurement>,
    seconds: f64,
}

/// What `nmflow finetune` reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneSummary {
    /// Method.
    pub method: Method,
    /// Iterations done.
    pub iterations: usize,
    /// Wall-clock seconds of the loop (over all sessions of a resumed run).
    pub seconds: f64,
    /// Seconds per iteration.
    pub seconds_per_iteration: f64,
    /// Mean reward of the base's samples.
    pub reward_before: f64,
    /// Mean reward of the fine-tuned samples.
    pub reward_after: f64,
    /// Mean test accuracy of the base's samples on the dataset.
    pub acc_before: f64,
    /// Mean test accuracy of the fine-tuned samples.
    pub acc_after: f64,
    /// Mean distance of the fine-tuned samples from the base's (same source samples).
    pub distance_from_base: f64,
    /// Median pairwise distance of the base's samples.
    pub spread_before: f64,
    /// Median pairwise distance of the fine-tuned samples.
    pub spread_after: f64,
    /// Median pairwise distance of the base's samples, hidden units matched.
    pub spread_aligned_before: f64,
    /// The same for the fine-tuned samples.
    pub spread_aligned_after: f64,
    /// Whether the memoryless schedule is exact (a Gaussian-source base trained with independent
    /// coupling) or an approximation (a Kaiming source, or the natural coupling).
    pub exact_memoryless: bool,
    /// Adjoint matching: the mean test accuracy of the fine-tuned model's own sampler, its
    /// memoryless SDE (`acc_after` is the base's ODE sampler run on the fine-tuned field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sde_acc_after: Option<f64>,
    /// Adjoint matching: the reward of those classifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sde_reward_after: Option<f64>,
    /// The fine-tuned samples score a lower reward than the base's on the same sampler (the SDE
    /// for adjoint matching, the ODE for the direct method): the run moved away from what it
    /// optimizes, e.g. diverged at too large a --lambda or --lr. Such a model is written, and
    /// flagged here and in the summary line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub worse_than_base: bool,
    /// Every measurement.
    pub measurements: Vec<Measurement>,
    /// The output directory.
    pub out: PathBuf,
}

/// The cross-entropy reward on a dataset's training images, `m` per evaluation; for a latent
/// model, of the classifiers decoded from the states (the gradient flows through the frozen
/// decoder).
struct ImageReward<'a, B: AutodiffBackend> {
    reward: &'a DataReward<B>,
    images: usize,
    rng: Rng,
    decoder: Option<&'a LatentDecoder<B>>,
}

/// A latent model's frozen decoder on standardized latents: `vae.decode(z·s + m)`, the VAE's
/// standardized weights.
struct LatentDecoder<B: AutodiffBackend> {
    vae: crate::meta::latent::network::Vae<B>,
    std: Tensor<B, 2>,
    mean: Tensor<B, 2>,
}

impl<B: AutodiffBackend> LatentDecoder<B> {
    fn new(base: &MetaModel<B>, device: &B::Device) -> Option<Self> {
        let codec = base.latent.as_ref()?;
        let (std, mean) = base.normalizer.scale_rows::<B>(device);
        Some(Self {
            vae: codec.vae.clone().no_grad(),
            std,
            mean,
        })
    }

    fn decode(&self, states: Tensor<B, 2>) -> Tensor<B, 2> {
        self.vae
            .decode(states * self.std.clone() + self.mean.clone())
    }
}

impl<B: AutodiffBackend> ImageReward<'_, B> {
    /// The classifiers' states in the reward's units.
    fn weights(&self, states: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.decoder {
            Some(d) => d.decode(states),
            None => states,
        }
    }
}

impl<B: AutodiffBackend> StateReward<B> for ImageReward<'_, B> {
    fn grad(&mut self, states: Tensor<B::InnerBackend, 2>) -> (Tensor<B::InnerBackend, 2>, f64) {
        let n = states.dims()[0];
        let x = Tensor::<B, 2>::from_inner(states).require_grad();
        let loss = self
            .reward
            .loss(self.weights(x.clone()), self.images, &mut self.rng);
        let value: f32 = loss.clone().into_scalar().elem();
        let grads = loss.backward();
        let g = x.grad(&grads).unwrap_or_else(|| x.inner().zeros_like());
        // The loss is the mean over rows; each row's own reward gradient is −n × its share.
        (g * (-(n as f64)), -f64::from(value))
    }

    fn value(&mut self, states: Tensor<B, 2>) -> Tensor<B, 1> {
        let w = self.weights(states);
        self.reward.loss(w, self.images, &mut self.rng).neg()
    }
}

/// Where a fine-tuning job runs.
#[derive(Clone, Debug, Default)]
pub struct FinetuneEnv {
    /// The data folder.
    pub data_dir: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Replace an output directory that holds something else.
    pub force: bool,
}

/// Fine-tunes the model in `base_dir` into `out` (see the module docs). A finished run with the
/// same settings returns its summary without work; an interrupted one resumes.
///
/// # Errors
/// Usage errors (settings, a dataset of another input shape, an occupied `out`), file and data
/// errors.
pub fn finetune<B: AutodiffBackend>(
    cfg: &FinetuneConfig,
    base_dir: &Path,
    out: &Path,
    env: &FinetuneEnv,
    device: &B::Device,
) -> Result<FinetuneSummary, MetaError> {
    cfg.validate()?;
    let base = MetaModel::<B>::load(base_dir, device)?;
    base.require_no_step_input("nmflow finetune")?;
    if base.config.condition.is_some() {
        return Err(crate::error::UsageError(format!(
            "--model {}: a conditioned model is not fine-tuned yet (its field needs a task); fine-tune an unconditional model",
            base_dir.display()
        ))
        .into());
    }
    if cfg.diagonal && base.config.field.kind != FieldKind::Mlp {
        return Err(crate::error::UsageError(format!(
            "--diagonal: the field of --model {} is a {:?} field; the per-coordinate term is for MLP fields (`train --field mlp`)",
            base_dir.display(),
            base.config.field.kind
        ))
        .into());
    }
    if cfg.rollout_max > 0 && cfg.rollout_max < base.config.solver_steps {
        return Err(crate::error::UsageError(format!(
            "--rollout-max {}: the range starts at the base's own sampler ({} × {}), so its maximum must be at least that step count",
            cfg.rollout_max,
            format!("{:?}", base.config.solver).to_lowercase(),
            base.config.solver_steps
        ))
        .into());
    }
    if cfg.method == Method::Direct && base.config.solver == Solver::Sde {
        return Err(crate::error::UsageError(format!(
            "--method direct backpropagates through the base's ODE sampler, but --model {} samples with the memoryless SDE (it was fine-tuned by adjoint matching); fine-tune it with --method adjoint, or start from its own base",
            base_dir.display()
        ))
        .into());
    }
    // The fine-tuned model's settings: the base's, with the per-coordinate term if asked for.
    // Adjoint matching tilts the law of the memoryless SDE it trains through, so that becomes
    // the model's sampler (one ODE step to t0 and `steps` Euler–Maruyama steps).
    let mut fine_config = base.config.clone();
    fine_config.field.diagonal |= cfg.diagonal;
    if cfg.method == Method::Adjoint {
        fine_config.solver = Solver::Sde;
        fine_config.solver_steps = cfg.steps + 1;
        fine_config.sde_t0 = Some(cfg.t0);
    }
    let arch = Arch::of_layout(&base.layout).ok_or_else(|| {
        MetaError::file(
            base_dir.join(files::LAYOUT),
            "describes no classifier architecture nmflow knows",
        )
    })?;
    // Every view has ten classes; the input shape must be the classifiers'.
    arch.check_input(
        cfg.dataset.input_shape(),
        10,
        &format!("{} (--dataset)", cfg.dataset),
    )?;
    let data = Dataset::load(cfg.dataset, &env.data_dir)?;
    fs::create_dir_all(out).map_err(|e| MetaError::file(out, e))?;
    let _lock = DirLock::acquire(out).map_err(|e| MetaError::file(out, e))?;
    claim(cfg, out, env.force)?;
    if let Ok(done) = read_json::<FinetuneSummary>(&out.join(SUMMARY))
        && out.join(files::SUMMARY).is_file()
    {
        return Ok(done);
    }
    write_json(&out.join(SETTINGS), cfg)?;
    if base.latent.is_some() {
        // The fine-tuned model decodes with the base's VAE: it carries its own copy.
        let folder = crate::meta::latent::codec::MODEL_FOLDER;
        crate::meta::latent::codec::copy_files(&base_dir.join(folder), &out.join(folder))?;
    }

    // The reward scores weights standardized as the classifiers' own (a latent model's VAE's).
    let reward = DataReward::<B>::new(
        Reward::CrossEntropy,
        &arch,
        &base.layout,
        &data,
        base.latent
            .as_ref()
            .map_or(&base.normalizer, |c| &c.normalizer),
        device,
    );
    let decoder = LatentDecoder::new(&base, device);
    let moments = base.source_moments(device)?;
    let rows_dev = MomentRows::<B::InnerBackend>::new(&moments, device);
    let frozen = base.field.clone().no_grad();
    let mut optim = AdamSettings::BURN
        .burn_config()
        .with_grad_clipping(
            cfg.max_grad_norm
                .map(|n| burn::optim::grad_clipping::GradientClippingConfig::Norm(n as f32)),
        )
        .init::<B, super::field::VectorField<B>>();
    let mut fine = if fine_config.field.diagonal && !base.config.field.diagonal {
        base.field
            .clone()
            .push_diagonal(base.config.field.time_dim, device)
    } else {
        base.field.clone()
    };
    let mut state = State::default();
    if let Some(saved) = checkpoint::load_state_as::<State>(out)? {
        let (f, o) = checkpoint::load_model::<B>(out, &fine_config, optim, device)?;
        fine = f;
        optim = o;
        state = saved;
    }
    let eval = Evaluation::new(&base, &arch, &data, cfg, device)?;
    let settings = AdjointSettings {
        lambda: cfg.lambda,
        steps: cfg.steps,
        t0: cfg.t0,
    };
    let probe = (cfg.method == Method::Adjoint).then_some((&rows_dev, settings));
    if state.measurements.is_empty() {
        state
            .measurements
            .push(eval.measure(&base, &fine.valid(), 0, probe, device)?);
    }
    let p = base.state_dim();
    let bar = progress::bar(cfg.iterations as u64, "iterations", env.quiet);
    bar.set_position(state.step as u64);
    let start = Instant::now();
    let seconds_before = state.seconds;
    while state.step < cfg.iterations {
        let it = state.step;
        let seed = derive_seed(cfg.seed, it as u64);
        let mut x0 = if base.latent.is_some() {
            base.source_samples(cfg.trajectories, seed, device)?
        } else {
            let mut x0 = Vec::with_capacity(cfg.trajectories * p);
            base.config.source.sample_into(
                &base.layout,
                cfg.trajectories,
                &mut Rng::new(seed, STREAM_SOURCE),
                &mut x0,
            );
            x0
        };
        base.normalizer.apply(&mut x0);
        let x0 = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(x0, [cfg.trajectories, p]),
            device,
        );
        let mut image_reward = ImageReward {
            reward: &reward,
            images: cfg.reward_images,
            rng: Rng::new(seed, STREAM_REWARD),
            decoder: decoder.as_ref(),
        };
        let (loss, stats) = match cfg.method {
            Method::Adjoint => adjoint::adjoint_loss(
                &fine,
                &frozen,
                &rows_dev,
                AdjointSettings {
                    steps: rollout_steps(cfg, cfg.steps, seed),
                    ..settings
                },
                x0,
                &mut Rng::new(seed, STREAM_NOISE),
                &mut image_reward,
            ),
            Method::Direct => adjoint::direct_loss(
                &fine,
                cfg.lambda,
                base.config.solver,
                rollout_steps(cfg, base.config.solver_steps, seed),
                x0,
                &mut image_reward,
                adjoint::DirectTerms {
                    control: (cfg.control_cost > 0.0).then_some((&frozen, cfg.control_cost)),
                    entropy: cfg.entropy_weight,
                },
            ),
        };
        let value: f32 = loss.clone().into_scalar().elem();
        if !value.is_finite() {
            return Err(MetaError::Usage(UsageError(format!(
                "the fine-tuning loss became non-finite at iteration {}; lower --lr or --lambda",
                it + 1
            ))));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &fine);
        let lr = cfg.lr_schedule.at(cfg.lr, state.step + 1, cfg.iterations);
        fine = optim.step(lr, fine, grads);
        state.step += 1;
        state.rows.push(Row {
            iteration: state.step,
            loss: f64::from(value),
            reward: stats.reward,
        });
        bar.set_message(format!("loss {value:.3e} reward {:.3}", stats.reward));
        bar.inc(1);
        if state.step.is_multiple_of(cfg.eval_every) || state.step == cfg.iterations {
            state.measurements.push(eval.measure(
                &base,
                &fine.valid(),
                state.step,
                probe,
                device,
            )?);
            state.seconds = seconds_before + start.elapsed().as_secs_f64();
            if state.step < cfg.iterations {
                checkpoint::save(out, &state, &fine, &optim)?;
            }
        }
    }
    bar.finish_and_clear();
    state.seconds = seconds_before + start.elapsed().as_secs_f64();
    finish(
        cfg,
        &base,
        &fine_config,
        &fine.valid(),
        &state,
        &moments,
        out,
    )
}

/// The direct method's step count at the iteration of `seed`: the base's `own` count, or a
/// uniform draw from `own..=cfg.rollout_max`.
fn rollout_steps(cfg: &FinetuneConfig, own: usize, seed: u64) -> usize {
    if cfg.rollout_max <= own {
        return own;
    }
    let span = u32::try_from(cfg.rollout_max - own + 1).unwrap_or(u32::MAX);
    own + Rng::new(seed, STREAM_ROLLOUT).below(span) as usize
}

/// Claims `out`: empty, or holding a run with the same settings (resumed), or `force`.
fn claim(cfg: &FinetuneConfig, out: &Path, force: bool) -> Result<(), MetaError> {
    if files::same_settings(cfg, out, SETTINGS, "fine-tuning run", force)? {
        return Ok(());
    }
    checkpoint::discard(out)?;
    for name in [SUMMARY, files::SUMMARY] {
        let p = out.join(name);
        if p.exists() {
            fs::remove_file(&p).map_err(|e| MetaError::file(&p, e))?;
        }
    }
    Ok(())
}

/// The base model's settings with another field, on the inner backend.
fn inner_model<B: AutodiffBackend>(
    base: &MetaModel<B>,
    field: super::field::VectorField<B::InnerBackend>,
) -> MetaModel<B::InnerBackend> {
    MetaModel {
        config: base.config.clone(),
        normalizer: base.normalizer.clone(),
        layout: base.layout.clone(),
        field,
        latent: base.latent.as_ref().map(Codec::valid),
        condition: None,
    }
}

/// Writes the model directory: the base's settings, layout and normalization, the fine-tuned
/// weights, `train.json` (so every reader of model directories takes it), the summary, the log
/// and the charts; then drops the checkpoint.
fn finish<B: AutodiffBackend>(
    cfg: &FinetuneConfig,
    base: &MetaModel<B>,
    config: &super::config::MetaConfig,
    field: &super::field::VectorField<B::InnerBackend>,
    state: &State,
    moments: &SourceMoments,
    out: &Path,
) -> Result<FinetuneSummary, MetaError> {
    write_json(&out.join(files::CONFIG), config)?;
    write_json(&out.join(files::NORMALIZER), &base.normalizer)?;
    write_json(&out.join(files::LAYOUT), &base.layout)?;
    save_field(field, out)?;
    let bin = out.join(files::WEIGHTS).with_extension("bin");
    let sha = sha256_hex(&fs::read(&bin).map_err(|e| MetaError::file(&bin, e))?);
    let first = state.measurements.first().copied();
    let last = state.measurements.last().copied();
    let pick = |m: Option<Measurement>, f: fn(&Measurement) -> f64| m.as_ref().map_or(f64::NAN, f);
    let summary = FinetuneSummary {
        method: cfg.method,
        iterations: state.step,
        seconds: state.seconds,
        seconds_per_iteration: state.seconds / state.step.max(1) as f64,
        reward_before: pick(first, |m| m.reward),
        reward_after: pick(last, |m| m.reward),
        acc_before: pick(first, |m| m.acc_mean),
        acc_after: pick(last, |m| m.acc_mean),
        distance_from_base: pick(last, |m| m.distance_from_base),
        spread_before: pick(first, |m| m.spread),
        spread_after: pick(last, |m| m.spread),
        spread_aligned_before: pick(first, |m| m.spread_aligned),
        spread_aligned_after: pick(last, |m| m.spread_aligned),
        exact_memoryless: moments.exact
            && base.config.coupling == crate::meta::config::Coupling::Independent,
        sde_acc_after: last.and_then(|m| m.sde_acc_mean),
        sde_reward_after: last.and_then(|m| m.sde_reward),
        worse_than_base: match (
            first.and_then(|m| m.sde_reward),
            last.and_then(|m| m.sde_reward),
        ) {
            (Some(before), Some(after)) => after < before,
            _ => pick(last, |m| m.reward) < pick(first, |m| m.reward),
        },
        measurements: state.measurements.clone(),
        out: out.into(),
    };
    let mut csv = String::from("iteration,loss,reward\n");
    for r in &state.rows {
        csv.push_str(&format!("{},{},{}\n", r.iteration, r.loss, r.reward));
    }
    let log = out.join(files::LOSS_LOG);
    write_atomic(&log, csv.as_bytes()).map_err(|e| MetaError::file(&log, e))?;
    charts(out, state)?;
    let recent: Vec<f64> = state.rows.iter().rev().take(50).map(|r| r.loss).collect();
    let final_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    write_json(&out.join(SUMMARY), &summary)?;
    let train = TrainSummary {
        method: base.config.method,
        steps: state.step,
        final_loss,
        best_heldout_loss: final_loss,
        best_step: state.step,
        heldout_zero_loss: final_loss,
        field_params: config.field.num_params(),
        engine: Engine::Burn,
        seconds: state.seconds,
        steps_per_second: state.step as f64 / state.seconds.max(1e-9),
        out: out.into(),
        field_sha256: Some(sha),
        condition_sha256: None,
        diverged_at: None,
    };
    write_json(&out.join(files::SUMMARY), &train)?;
    checkpoint::discard(out)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(rollout_max: usize) -> FinetuneConfig {
        FinetuneConfig {
            method: Method::Direct,
            reward: RewardKind::Ce,
            dataset: DatasetView::Mnist8,
            lambda: 1.0,
            iterations: 10,
            trajectories: 4,
            steps: 20,
            t0: 0.1,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            max_grad_norm: None,
            control_cost: 0.0,
            entropy_weight: 0.0,
            diagonal: false,
            rollout_max,
            reward_images: 16,
            eval_every: 5,
            eval_samples: 2,
            seed: 0,
            base: String::new(),
            base_field_sha256: None,
        }
    }

    #[test]
    fn the_rollout_count_is_the_bases_own_or_a_seeded_draw_covering_the_range() {
        assert!((0..50).all(|s| rollout_steps(&direct(0), 8, s) == 8));
        assert!((0..50).all(|s| rollout_steps(&direct(8), 8, s) == 8));
        let counts: Vec<usize> = (0..400).map(|s| rollout_steps(&direct(12), 8, s)).collect();
        assert!(counts.iter().all(|k| (8..=12).contains(k)));
        for k in 8..=12 {
            assert!(counts.contains(&k), "count {k} never drawn");
        }
        // The same iteration seed draws the same count (resume gives the same bytes).
        assert_eq!(
            counts[..20],
            (0..20)
                .map(|s| rollout_steps(&direct(12), 8, s))
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn adjoint_matchings_rollout_range_starts_at_its_steps() {
        assert!(direct(16).validate().is_ok());
        let mut adjoint = direct(16);
        adjoint.method = Method::Adjoint;
        let e = adjoint.validate().unwrap_err();
        assert!(
            e.0.contains("--rollout-max 16: adjoint matching's range starts at --steps 20"),
            "{}",
            e.0
        );
        adjoint.rollout_max = 20;
        assert!(adjoint.validate().is_ok());
        // Its counts are drawn from --steps up (the direct method's from the base's own).
        let counts: Vec<usize> = (0..200)
            .map(|s| rollout_steps(&direct(28), 20, s))
            .collect();
        assert!(counts.iter().all(|k| (20..=28).contains(k)));
        // An older settings file without the field reads as no range.
        let mut json = serde_json::to_value(direct(0)).unwrap();
        assert!(json.get("rollout_max").is_none());
        json.as_object_mut().unwrap().remove("rollout_max");
        let back: FinetuneConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.rollout_max, 0);
    }
}
