//! `nmflow finetune`: tilt a trained meta-model towards a reward (adjoint matching, or the direct
//! baseline).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendJob, dispatch};
use crate::data::{self, DatasetView};
use crate::meta::config::LrSchedule;
use crate::meta::files::{self, read_json};
use crate::meta::finetune::{
    FinetuneConfig, FinetuneEnv, FinetuneSummary, Method, RewardKind, finetune,
};
use crate::meta::train::TrainSummary;

/// Arguments of `nmflow finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The base model directory (written by `nmflow train`); it is not changed.
    #[arg(long)]
    pub model: PathBuf,
    /// Output model directory: `sample`, `eval`, `export` and `edge-eval` take it like a trained
    /// model; it also holds finetune.json, finetune-config.json, loss.csv and finetune-*.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Method: `adjoint` (adjoint matching with the memoryless noise schedule, METHOD.md §5) or
    /// `direct` (the baseline: the reward backpropagated through the base's own sampler;
    /// BENCHMARKS.md measures it with `--lambda 1`, which with Adam only rescales the loss).
    ///
    /// The memoryless schedule is exact for a base trained from a Gaussian source with independent
    /// coupling (`train --source gaussian --coupling independent`); for a Kaiming-uniform source
    /// the source is replaced by the Gaussian with its mean and variance, and a base trained with
    /// the natural coupling has dependent endpoints: the schedule is then only approximately
    /// memoryless (finetune.json records which: `exact_memoryless`). Measured
    /// (docs/explorations.md, MNIST → Fashion-MNIST, MLP field, λ = 10,000, one seed each): the
    /// exact Gaussian-source base reached 72.7 % in 500 iterations, the Kaiming base 35 % in 1,000;
    /// so for adjoint matching, train the base with a Gaussian source. Its scale matters for either
    /// method: with --method direct (3,000 iterations), a base with `--source-std 0.07` kept the
    /// Fashion runs' spread at 83.45 %, 0.03 collapsed it (3.9) at 84.29 %, and the default 0.1
    /// kept it at 79 %.
    ///
    /// Adjoint matching tilts the law of the memoryless SDE it trains through, not the ODE of the
    /// same field (they agree only for an exact marginal field), so the model it writes samples
    /// with that SDE: its stored sampler is `sde` with --steps + 1 evaluations from --t0, which
    /// `sample`, `eval`, `export` and the device use unless told another solver. Measured on mnist8
    /// (BENCHMARKS.md): λ = 10⁵, --steps 7: 92.28 ± 0.19 % over three seeds with the SDE at 8
    /// evaluations, 87.4 % with Euler × 8 of the same field.
    #[arg(long, value_enum, default_value = "adjoint")]
    pub method: Method,
    /// Reward: `ce`, minus the cross-entropy of the generated classifier on --dataset's training
    /// images.
    #[arg(long, value_enum, default_value = "ce")]
    pub reward: RewardKind,
    /// Dataset view of the reward and of the accuracy curve (its images must have the
    /// classifiers' input shape: e.g. `fashion` for a model of MNIST classifiers).
    #[arg(long)]
    pub dataset: DatasetView,
    /// Reward multiplier λ > 0: the target is p_base(w)·exp(λ·r(w)); larger moves further from the
    /// base (docs/explorations.md, one seed each: 10 barely moves an mnist8 model in 200
    /// iterations, 10,000 gains 11 pp in 600).
    #[arg(long, default_value_t = 10_000.0)]
    pub lambda: f64,
    /// Optimizer steps.
    #[arg(long, default_value_t = 600)]
    pub iterations: usize,
    /// Trajectories (adjoint) or rollouts (direct) per iteration.
    #[arg(long, default_value_t = 16)]
    pub trajectories: usize,
    /// Euler–Maruyama steps of the adjoint method's SDE (the direct method rolls out the base's
    /// own Euler step count); the fine-tuned model's sampler spends one more evaluation, the ODE
    /// step to --t0.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// First time of the SDE, in (0, 1): the ODE carries the source sample to it (the schedule's
    /// noise σ(t) = √(2(1−t)/t) is infinite at 0). Keep (1 − t0)/--steps well below t0: the drift's
    /// −x/t term makes larger first steps inaccurate.
    #[arg(long, default_value_t = 0.1)]
    pub t0: f64,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning-rate schedule: `constant`, or `cosine` (from --lr at the first iteration down
    /// towards zero at the last).
    #[arg(long, value_enum, default_value_t = LrSchedule::Constant)]
    pub lr_schedule: LrSchedule,
    /// Clip each parameter tensor's gradient to this L2 norm before the Adam step (default: no
    /// clipping). docs/explorations.md: the direct method at --lr 3e-3 diverged in 3 of 4 unclipped
    /// Fashion runs; clipped at 1, one of two still did. --lr 1e-3 has not diverged.
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Direct method only: weight c of the control cost c·∫‖v_fine − v_base‖²dt along each rollout
    /// (standardized units), added to −λ·reward. It charges each sample for leaving the base's
    /// path, the deterministic counterpart of the KL term of p_base·exp(λr): the plain baseline (0,
    /// the default) lets the samples collapse onto one high-reward region; larger c holds the
    /// samples closer to the base's (finetune.json reports the spread before and after). Measured
    /// on MNIST → Fashion-MNIST (docs/explorations.md, one seed), c = 1e-3 and 1e-2 did not stop
    /// the early collapse; the base's source scale did.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub control_cost: f64,
    /// Direct method only: weight τ of an entropy bonus, τ × the mean log distance from each
    /// rollout's endpoint to its nearest other endpoint (standardized units; the
    /// Kozachenko–Leonenko entropy estimate up to a factor and a constant). The objective becomes
    /// λ·reward + τ·entropy, whose optimum keeps spread instead of collapsing onto one region; 0
    /// (the default) is the plain baseline. Measured on MNIST → Fashion-MNIST
    /// (docs/explorations.md, one seed): τ = 0.5 let the samples collapse first, then spread them
    /// along weights the reward barely constrains, at a loss of accuracy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub entropy_weight: f64,
    /// MLP fields only: give the fine-tuned field a per-coordinate term a(t)⊙x + b(t), zero at the
    /// start (so the run starts from the base's sampler exactly). An MLP field's velocity lies in a
    /// fixed subspace as wide as its last hidden layer (256 of MNIST's 7,960 coordinates for
    /// `--hidden 256`), so without the term fine-tuning cannot change the source sample along the
    /// other directions, and the source's noise there stays in every generated classifier. Measured
    /// on MNIST → Fashion-MNIST (BENCHMARKS.md): from a `--source-std 0.1` base the direct method
    /// reached 84.43 ± 0.50 % over five seeds with the term, 79 % without (one seed); adjoint
    /// matching gained 1.6 pp (one seed). `export` carries the term (model format version 7) and
    /// `edge-eval` runs it: the device's int8 classifiers were within 0.04 pp of the host's.
    #[arg(long)]
    pub diagonal: bool,
    /// Roll out each iteration at a step count drawn uniformly up to this one (0, the default: one
    /// count only): the direct method the base's solver from the base's own count, adjoint matching
    /// its SDE from --steps Euler–Maruyama steps (the stored sampler keeps --steps). A sampler
    /// fine-tuned through one count is fitted to it: docs/explorations.md measured the 8-step
    /// Fashion recipe (one seed) at 84.19 % with 8 steps, 78.15 % with 16 and 71.27 % with 32. With
    /// the range it holds at every count inside it (`eval --steps` reports `step_robustness`).
    #[arg(long, default_value_t = 0)]
    pub rollout_max: usize,
    /// Training images per reward evaluation.
    #[arg(long, default_value_t = 512)]
    pub reward_images: usize,
    /// Iterations between measurements (accuracy, reward and distance curves) and checkpoints.
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    /// Classifiers sampled (with the base's solver and steps) per measurement.
    #[arg(long, default_value_t = 32)]
    pub eval_samples: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replace an --out directory that holds another run.
    #[arg(long)]
    pub force: bool,
    /// Compute device: `cpu`, or `cuda` (the first NVIDIA GPU; needs a build with
    /// `--features cuda` and a CUDA driver). The same code runs on both.
    #[arg(long, value_enum, default_value_t = crate::backend::DeviceKind::Cpu)]
    pub device: crate::backend::DeviceKind,
    /// Print one JSON object: {iterations, seconds, reward_before, reward_after, acc_before,
    /// acc_after, …}.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `nmflow finetune`.
///
/// # Errors
/// Usage errors (settings, a dataset of another input shape), file and data errors.
pub fn exec(a: &FinetuneArgs) -> Result<()> {
    // Recorded so a resumed run can tell its base was not replaced (`MetaModel::load` checks the
    // weights against it).
    let base_sha = read_json::<TrainSummary>(&a.model.join(files::SUMMARY))
        .ok()
        .and_then(|s| s.field_sha256);
    let cfg = FinetuneConfig {
        method: a.method,
        reward: a.reward,
        dataset: a.dataset,
        lambda: a.lambda,
        iterations: a.iterations,
        trajectories: a.trajectories,
        steps: a.steps,
        t0: a.t0,
        lr: a.lr,
        lr_schedule: a.lr_schedule,
        max_grad_norm: a.max_grad_norm,
        control_cost: a.control_cost,
        entropy_weight: a.entropy_weight,
        diagonal: a.diagonal,
        rollout_max: a.rollout_max,
        reward_images: a.reward_images,
        eval_every: a.eval_every,
        eval_samples: a.eval_samples,
        seed: a.seed,
        base: a.model.display().to_string(),
        base_field_sha256: base_sha,
    };
    let env = FinetuneEnv {
        data_dir: data::data_dir(a.data_dir.clone()),
        quiet: a.quiet,
        force: a.force,
    };
    struct Job<'a>(&'a FinetuneConfig, &'a FinetuneArgs, &'a FinetuneEnv);
    impl BackendJob for Job<'_> {
        type Output = FinetuneSummary;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<FinetuneSummary> {
            Ok(finetune::<B>(
                self.0,
                &self.1.model,
                &self.1.out,
                self.2,
                device,
            )?)
        }
    }
    let r = dispatch(a.device, Job(&cfg, a, &env))?;
    super::emit(a.json, &r, || {
        let sde = match (r.sde_acc_after, r.sde_reward_after) {
            (Some(acc), Some(reward)) => format!(
                " (its SDE sampler, the model's: {:.2} %, reward {reward:.3})",
                100.0 * acc
            ),
            _ => String::new(),
        };
        let warning = if r.worse_than_base {
            "; WARNING: the fine-tuned samples score below the base's reward (diverged? lower --lambda or --lr)"
        } else {
            ""
        };
        format!(
            "finetune ({:?}, {} iterations, {:.1} s): {} accuracy {:.2} % → {:.2} %, reward {:.3} → {:.3}{sde}, spread {:.2} → {:.2} (units matched {:.2} → {:.2}), {:.2} from the base's classifiers{warning} → {}",
            r.method,
            r.iterations,
            r.seconds,
            a.dataset,
            100.0 * r.acc_before,
            100.0 * r.acc_after,
            r.reward_before,
            r.reward_after,
            r.spread_before,
            r.spread_after,
            r.spread_aligned_before,
            r.spread_aligned_after,
            r.distance_from_base,
            r.out.display()
        )
    })
}
