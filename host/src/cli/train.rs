//! `nmflow train`: learn a vector field on weight space from a zoo.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendJob, dispatch};
use crate::data;
use crate::flow::path::SplineKind;
use crate::flow::solver::Solver;
use crate::meta::config::RewardStage;
use crate::meta::config::{Coupling, LrSchedule, MetaConfig, Method, Recipe, TrainRequest};
use crate::meta::field::FieldKind;
use crate::meta::source::Source;
use crate::meta::train::two_stage::{TrainReport, train_model};
use crate::meta::train::{Engine, TrainEnv, TrainSummary};

/// Arguments of `nmflow train` (the defaults are explained on [`super::Command::Train`]).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The zoo directory (written by `nmflow zoo`).
    #[arg(long)]
    pub zoo: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The defaults to start from; every flag given overrides its recipe's value.
    /// `reward`: two stages, measured in BENCHMARKS.md above the zoo's trained held-out mean on
    /// MNIST and mnist8 over three seeds, at 8 NFE and at 4× that: (1) the MLP field by flow
    /// matching alone from N(0, 0.1²) with independent coupling (width 256, depth 2, 3,000
    /// steps, cosine schedule, Euler × 8), written to OUT/base; (2) `nmflow finetune --method
    /// direct --diagonal --lambda 1 --lr-schedule cosine` on the zoo's training images for
    /// --finetune-iterations, each rolled out at a step count drawn from 8 to
    /// --finetune-rollout-max, written to OUT (a fine-tuned model directory: `sample`, `eval`,
    /// `export` and `edge-eval` take it). `functional`: the set field with the functional term on
    /// the 4-step Euler sampler (width 128, 8,000 steps, cosine, λ = 2; one-hidden-layer MLP
    /// classifiers), the default before the reward recipe. `plain`: no recipe (width 512, 2,000
    /// steps, constant rate, RK4 × 2) [default: reward for NM-CFM without --field, --latent or
    /// --condition; functional for --field set or NM-MMFM (when the classifier allows the set
    /// field) and conditioned fields; plain otherwise].
    #[arg(long, value_enum)]
    pub recipe: Option<Recipe>,
    /// Meta-model family.
    #[arg(long, value_enum, default_value_t = Method::Cfm)]
    pub method: Method,
    /// NM-CFM coupling of (x0, x1) [default: independent for the reward recipe, else natural].
    #[arg(long, value_enum)]
    pub coupling: Option<Coupling>,
    /// NM-MMFM spline through the checkpoints.
    #[arg(long, value_enum, default_value_t = SplineKind::Pchip)]
    pub spline: SplineKind,
    /// Source law for sampling: `kaiming` (per block, the runs' init law) or `gaussian`
    /// [default: gaussian for the reward recipe, else kaiming].
    #[arg(long)]
    pub source: Option<String>,
    /// Standard deviation of the Gaussian source (raw weight units).
    #[arg(long, default_value_t = 0.1)]
    pub source_std: f32,
    /// Path noise σ in standardized units.
    #[arg(long, default_value_t = 0.0)]
    pub sigma: f32,
    /// Do not augment training pairs with random hidden-unit permutations (on by default for MLPs).
    #[arg(long)]
    pub no_permute: bool,
    /// Field network: `set` (permutation-equivariant over hidden units; one-hidden-layer MLP
    /// classifiers) or `mlp` (on the flat vector) [default: mlp for the reward recipe, set for
    /// the functional recipe, else set when the classifier allows it].
    #[arg(long, value_enum)]
    pub field: Option<FieldKind>,
    /// NM-JKO step size τ (in standardized units); sampling takes one step per checkpoint
    /// interval, Euler with k steps of v = −kτ∇V.
    #[arg(long, default_value_t = 1.0)]
    pub tau: f32,
    /// Hidden width of the field network [default: 128 for the functional recipe, 256 for the
    /// reward recipe, 512 otherwise].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Hidden layers (set field: residual blocks) of the field network [default: 2 for the
    /// reward recipe, else 3].
    #[arg(long)]
    pub depth: Option<usize>,
    /// Width of the sinusoidal time embedding (even).
    #[arg(long, default_value_t = 32)]
    pub time_dim: usize,
    /// Optimizer steps [default: 8000 for the functional recipe, 3000 for the reward recipe,
    /// 2000 otherwise].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Samples per minibatch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning-rate schedule: `constant`, or `cosine` (annealed from --lr at the first step
    /// towards zero at the last; the noise of a constant rate otherwise sets a floor on the
    /// loss) [default: cosine for the functional and reward recipes, constant otherwise].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrSchedule>,
    /// Weight decay (≥ 0).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Weight of the functional term: cross-entropy on the zoo's training images of the classifier
    /// the field points to, x̂₁ = x_t + (1 − t)·v(x_t, t) (NM-CFM), or of the sampler's output
    /// with --functional-rollout (NM-CFM, NM-MMFM); 0 turns it off [default: 2 for the
    /// functional recipe's set field with NM-CFM or NM-MMFM, 0 otherwise].
    #[arg(long)]
    pub functional_weight: Option<f32>,
    /// Training images per step for the functional term.
    #[arg(long, default_value_t = 256)]
    pub functional_batch: usize,
    /// Score the sampler itself in the functional term: K Euler steps from fresh source samples,
    /// backpropagated through every step (0: score x̂₁ of the flow-matching minibatch); the model's
    /// default sampler becomes Euler × K unless --solver/--solver-steps say otherwise
    /// [default: 4 with a functional term, else 0].
    #[arg(long)]
    pub functional_rollout: Option<usize>,
    /// Train the sampler at several step counts: every step draws its rollout's count uniformly
    /// from --functional-rollout to this (0: always --functional-rollout). The stored default
    /// sampler stays Euler × --functional-rollout (or --solver-steps); use it to keep accuracy
    /// when a user spends more steps.
    #[arg(long, default_value_t = 0)]
    pub functional_rollout_max: usize,
    /// Train the sampler at these step counts only (comma-separated, e.g. 4,8,16): every step
    /// draws its rollout's count uniformly from them, instead of from a range (not with
    /// --functional-rollout-max). With --step-input each count gets its own map and a larger share
    /// of the training than in a range. The stored default sampler stays Euler ×
    /// --functional-rollout.
    #[arg(long, value_delimiter = ',')]
    pub functional_rollout_counts: Vec<usize>,
    /// Give the set field the sampler's step size h = 1/K as an input beside the time, so that
    /// every step count K gets its own map instead of one map serving them all: training feeds
    /// each rollout's own h (and the flow-matching pairs the same step's h), and sampling with K
    /// steps feeds 1/K. Goes with --functional-rollout, and with --functional-rollout-max to
    /// train a range of counts (the step counts a user may then pick). Such a model samples,
    /// evaluates and draws classifiers on the host; `export`, `finetune`, `shift-test` and
    /// conditioning do not take it yet.
    #[arg(long)]
    pub step_input: bool,
    /// Source samples rolled out per step for the functional term.
    #[arg(long, default_value_t = 32)]
    pub functional_samples: usize,
    /// Keep an exponential moving average of the field's weights with this decay (e.g. 0.999:
    /// about the last 1,000 steps) and make it the model: held-out evaluations measure it and
    /// the model directory keeps it. The average's rate warms up as n/(n + 9) over the first
    /// steps. Trains on the burn engine. 0: no average.
    #[arg(long, default_value_t = 0.0)]
    pub ema: f64,
    /// Data folder for the functional term [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Steps between held-out evaluations (the best held-out model is kept) [default: 200 for
    /// the functional recipe, 100 otherwise].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Default sampling solver stored with the model [default: euler with a functional rollout
    /// or the reward recipe (the sampler it trained), else rk4; NM-JKO: always euler with one
    /// step per checkpoint interval].
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Default sampling steps stored with the model [default: the functional rollout's K, 8 for
    /// the reward recipe, else 2].
    #[arg(long)]
    pub solver_steps: Option<usize>,
    /// Iterations of the reward stage: after flow matching, fine-tune the MLP field on the zoo's
    /// training loss through its sampler (see --recipe); 0: none [default: 5000 for the reward
    /// recipe, else 0]. MNIST's 5,000 took 2,540–2,575 s per seed in BENCHMARKS.md (four
    /// processes on two cores), mnist8's 423–474 s.
    #[arg(long)]
    pub finetune_iterations: Option<usize>,
    /// The reward stage's largest rollout step count: each iteration draws its count from the
    /// stored sampler's up to this [default: 6 × --solver-steps, so that 4× the stored count lies
    /// inside the range].
    #[arg(long)]
    pub finetune_rollout_max: Option<usize>,
    /// Train a latent model: the flow runs in the latent space of this VAE (written by
    /// `nmflow vae` on the same zoo) and `sample`/`eval` decode what it makes. The source is the
    /// encoded Kaiming-uniform initializations (`--source kaiming`, the default, with the natural
    /// coupling: each run's own encoded init) or N(0, σ²) in latent units (`--source gaussian
    /// --source-std 1 --coupling independent`). Defaults are the MLP field's; no permutation
    /// augmentation and no functional term (the VAE's own shapes what decodes).
    #[arg(long)]
    pub latent: Option<PathBuf>,
    /// Condition the field on the task (a multi-task zoo, `nmflow zoo --tasks`) through a
    /// support set of --shots labeled examples per class, encoded per example and averaged per
    /// label into class prototypes. `support`: the prototypes, flattened in label order, become
    /// one task embedding the field sees beside the time (any field). `classes`: each label's
    /// prototype (and mean example) becomes a token that rides with that label's output weights
    /// in a field equivariant in the classes as the set field is in the hidden units (set field
    /// only), so a relabelling of the task relabels what the field makes and labellings never
    /// seen are covered by construction. Runs of unseen tasks are never used; `eval` measures
    /// them, `sample --task`/`--support` samples one.
    #[arg(long, value_enum)]
    pub condition: Option<crate::meta::config::ConditionKind>,
    /// Labeled examples per class in a training support set (--condition).
    #[arg(long, default_value_t = 5)]
    pub shots: usize,
    /// Rate at which a training pair's condition is replaced by a learned null embedding, so
    /// that one network is both the conditional and the unconditional field (classifier-free
    /// guidance: `sample`/`eval --guidance W`).
    #[arg(long, default_value_t = 0.1)]
    pub cfg_drop: f32,
    /// Show every training pair of a conditioned field under a random relabelling of the classes
    /// (its output layer's rows permuted, its support set's labels likewise): the relabelled run
    /// is as likely a run of the relabelled task as the original is of its own, so the field
    /// sees every labelling instead of the zoo's few and must read it from the support set.
    /// Labellings of unseen tasks are never drawn.
    #[arg(long)]
    pub relabel: bool,
    /// Implementation of the training step: `fused` is a hand-written CPU trainer of the MLP
    /// field (without a functional term) and of the set field (with or without it: the functional
    /// recipe), NM-CFM or NM-MMFM, no --condition, no --ema (ahead of PyTorch's CPU references
    /// in bench/field_bench.sh and bench/set_field_bench.sh); `burn` is burn's autodiff
    /// (everything, any device); `auto` picks `fused` where it applies, and an interrupted run
    /// resumes with the engine it began with. Both train the same network with the same
    /// algorithm and draws; results differ by floating-point rounding only, so `--engine burn`
    /// reproduces set-field models of builds before the fused set trainer.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
    /// Replace a model trained with other settings in --out (finished or interrupted: its
    /// weights, log, charts, evaluation and checkpoint are removed) instead of refusing.
    #[arg(long)]
    pub force: bool,
    /// Compute device: `cpu`, or `cuda` (the first NVIDIA GPU; needs a build with
    /// `--features cuda` and a CUDA driver). The same code runs on both.
    #[arg(long, value_enum, default_value_t = crate::backend::DeviceKind::Cpu)]
    pub device: crate::backend::DeviceKind,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The library request these flags make (the zoo fills in the rest: see
    /// [`TrainRequest::resolve`]).
    ///
    /// # Errors
    /// An unknown `--source`.
    pub fn to_request(&self) -> Result<TrainRequest> {
        Ok(TrainRequest {
            recipe: self.recipe,
            method: self.method,
            coupling: self.coupling,
            spline: self.spline,
            source: self
                .source
                .as_deref()
                .map(|s| Source::parse(s, self.source_std))
                .transpose()?,
            source_std: self.source_std,
            sigma: self.sigma,
            permute: !self.no_permute,
            field: self.field,
            tau: self.tau,
            hidden: self.hidden,
            depth: self.depth,
            time_dim: self.time_dim,
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            lr_schedule: self.lr_schedule,
            weight_decay: self.weight_decay,
            functional_weight: self.functional_weight,
            functional_batch: self.functional_batch,
            functional_rollout: self.functional_rollout,
            functional_rollout_max: self.functional_rollout_max,
            functional_rollout_counts: self.functional_rollout_counts.clone(),
            step_input: self.step_input,
            functional_samples: self.functional_samples,
            ema: self.ema,
            eval_every: self.eval_every,
            seed: self.seed,
            solver: self.solver,
            solver_steps: self.solver_steps,
            latent: self.latent.clone(),
            condition: self.condition,
            shots: self.shots,
            cfg_drop: self.cfg_drop,
            relabel: self.relabel,
            finetune_iterations: self.finetune_iterations,
            finetune_rollout_max: self.finetune_rollout_max,
        })
    }
}

/// Runs `nmflow train`.
///
/// # Errors
/// Invalid settings (usage), zoo or data failures, divergence.
pub fn exec(a: &TrainArgs) -> Result<()> {
    let request = a.to_request()?;
    let cfg = request.resolve(&a.zoo)?;
    let stage = request.reward_stage(&crate::zoo::Manifest::read(&a.zoo)?, &cfg)?;
    let env = TrainEnv {
        data_dir: data::data_dir(a.data_dir.clone()),
        quiet: a.quiet || a.json,
        engine: a.engine,
        force: a.force,
    };
    struct Job<'a>(
        &'a MetaConfig,
        Option<RewardStage>,
        &'a TrainArgs,
        &'a TrainEnv,
    );
    impl BackendJob for Job<'_> {
        type Output = TrainReport;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<TrainReport> {
            Ok(train_model::<B>(
                self.0,
                self.1,
                &self.2.zoo,
                &self.2.out,
                self.3,
                device,
            )?)
        }
    }
    let r = dispatch(a.device, Job(&cfg, stage, a, &env))?;
    super::emit(a.json, &r, || {
        let line = summary_line(&r.train, cfg.functional_weight > 0.0);
        match &r.finetune {
            None => line,
            Some(f) => format!(
                "{line}\nreward stage: {} iterations in {:.1}s; test accuracy {:.2} % → {:.2} %, reward {:.3} → {:.3}, spread {:.2} → {:.2} → {}",
                f.iterations,
                f.seconds,
                100.0 * f.acc_before,
                100.0 * f.acc_after,
                f.reward_before,
                f.reward_after,
                f.spread_before,
                f.spread_after,
                r.model().display()
            ),
        }
    })
}

/// The one-line summary of a training job.
pub fn summary_line(s: &TrainSummary, functional: bool) -> String {
    // With a functional term the kept model minimizes a sum, not the plain loss.
    let kept_by = if functional {
        "held-out objective (flow matching + λ × validation cross-entropy)"
    } else {
        "held-out loss"
    };
    format!(
        "train: {:?} {} steps in {:.1}s ({:.1} steps/s, {} engine); loss {:.4}; best {kept_by} {:.4} at step {} (zero-velocity loss {:.4}) → {}",
        s.method,
        s.steps,
        s.seconds,
        s.steps_per_second,
        format!("{:?}", s.engine).to_lowercase(),
        s.final_loss,
        s.best_heldout_loss,
        s.best_step,
        s.heldout_zero_loss,
        s.out.display()
    )
}
