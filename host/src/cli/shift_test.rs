//! `nmflow shift-test`: calibrated harmful-shift detection, Detectron against meta-detectron.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendJob, dispatch};
use crate::data;
use crate::shift::report::Results;
use crate::shift::run::{RunInfo, ShiftConfig, ShiftEnv, ShiftMethod, shift_test};
use crate::shift::spec::ShiftSpec;
use crate::shift::tilt::TiltSettings;

/// Arguments of `nmflow shift-test`.
#[derive(Debug, Args)]
pub struct ShiftTestArgs {
    /// The zoo of P's classifiers: P is its dataset view, and the base classifier f (the one
    /// whose harm is tested) is its first held-out run, recorded in shift-run.json.
    #[arg(long)]
    pub zoo: PathBuf,
    /// The meta-model trained on --zoo (needed by `--methods meta`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The shifted set: a dataset view's test split with the classifiers' input shape, optionally
    /// transformed: `digits`, `mnist:rotate=30` (degrees, counter-clockwise, bilinear).
    #[arg(long)]
    pub shift: ShiftSpec,
    /// Sample sizes |Q|, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50")]
    pub sizes: Vec<usize>,
    /// Seeds per size for the null (samples from P's test split; they set the threshold) and
    /// for the shift (they measure power).
    #[arg(long, default_value_t = 100)]
    pub seeds: usize,
    /// Further null seeds per size, held out from calibration: the false-positive rate observed
    /// at the threshold.
    #[arg(long, default_value_t = 50)]
    pub heldout_seeds: usize,
    /// Detectors, comma-separated: `detectron` (CDCs trained by Adam from f), `meta` (members
    /// sampled from --model with reward guidance towards Detectron's objective) and
    /// `meta-adjoint` (members sampled from --model fine-tuned towards that objective on each
    /// test's sample by adjoint matching: a fine-tuning run per test).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "detectron,meta"
    )]
    pub methods: Vec<ShiftMethod>,
    /// False-positive rate of the calibrated threshold.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Ensemble members at most (besides f).
    #[arg(long, default_value_t = 5)]
    pub ensemble: usize,
    /// Stop growing an ensemble when the remaining count has not fallen for this many members.
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    /// Rows per batch: the remaining sample plus P's training images (Detectron's 512).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Detectron: epochs over P's training images per CDC.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Detectron: Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Use only the first N training images of P (all by default): a CDC's epoch is over them.
    #[arg(long)]
    pub p_train: Option<usize>,
    /// Meta-detectron: Euler steps of the field per member.
    #[arg(long, default_value_t = 8)]
    pub guidance_steps: usize,
    /// Meta-detectron: guidance strength γ (the field's standardized coordinates per unit time
    /// per unit of the objective's gradient); 0 samples the untilted field. The default and
    /// --guidance-lambda's were chosen on mnist8 → digits with --seed 99 (BENCHMARKS.md), not on
    /// the seeds reported.
    #[arg(long, default_value_t = 50.0)]
    pub guidance_scale: f64,
    /// Meta-detectron: weight λ of the mean disagreement loss on the sample against the mean
    /// cross-entropy on P's images.
    #[arg(long, default_value_t = 0.3)]
    pub guidance_lambda: f64,
    /// Meta-detectron: start each member from the base classifier's own initialization (the
    /// zoo records it) mixed with fresh source noise, √(1 − ρ²)·w₀(f) + ρ·ε, instead of a fresh
    /// source sample, so that the field carries members towards f's basin; ρ in (0, 1].
    #[arg(long)]
    pub start_near_base: Option<f64>,
    /// meta-adjoint: fine-tuning iterations of the per-test tilt (adjoint matching, as
    /// `nmflow finetune --method adjoint`, towards the same objective as the guidance).
    #[arg(long, default_value_t = 50)]
    pub tilt_iterations: usize,
    /// meta-adjoint: the tilt's reward multiplier λ.
    #[arg(long, default_value_t = 10_000.0)]
    pub tilt_lambda: f64,
    /// meta-adjoint: the tilt's Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub tilt_lr: f64,
    /// meta-adjoint: trajectories per tilt iteration.
    #[arg(long, default_value_t = 16)]
    pub tilt_trajectories: usize,
    /// meta-adjoint: Euler–Maruyama steps per trajectory (from t0 = 0.1).
    #[arg(long, default_value_t = 20)]
    pub tilt_steps: usize,
    /// Tests run together (one record file each; a resumed run skips finished files).
    #[arg(long, default_value_t = 50)]
    pub chunk: usize,
    /// Seed of every random choice (samples, data orders, source samples).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory: shift.json (`j[method][statistic][size]` = {tpr, auroc, fpr_observed,
    /// seconds_per_test, …}), shift-run.json, shift.md, roc-n{size}.png, records/.
    #[arg(long)]
    pub out: PathBuf,
    /// Reuse the null tests of a comparison of another shifted set (its settings must equal
    /// these but for --shift): they do not depend on the shifted set, and are copied, not redone.
    #[arg(long)]
    pub null_from: Option<PathBuf>,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replace an --out directory that holds another comparison.
    #[arg(long)]
    pub force: bool,
    /// Compute device: `cpu`, or `cuda` (the first NVIDIA GPU; needs a build with
    /// `--features cuda` and a CUDA driver). The same code runs on both.
    #[arg(long, value_enum, default_value_t = crate::backend::DeviceKind::Cpu)]
    pub device: crate::backend::DeviceKind,
    /// Print shift.json's object instead of the one-line summary.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `nmflow shift-test`.
///
/// # Errors
/// Usage errors (settings, a shifted set of another input shape, samples larger than a pool),
/// zoo, model, data and file errors.
pub fn exec(a: &ShiftTestArgs) -> Result<()> {
    let cfg = ShiftConfig {
        zoo: a.zoo.display().to_string(),
        model: a.model.as_ref().map(|m| m.display().to_string()),
        shift: a.shift,
        sizes: a.sizes.clone(),
        seeds: a.seeds,
        heldout_seeds: a.heldout_seeds,
        methods: a.methods.clone(),
        alpha: a.alpha,
        ensemble: a.ensemble,
        patience: a.patience,
        batch: a.batch,
        epochs: a.epochs,
        lr: a.lr,
        p_train: a.p_train,
        guidance_steps: a.guidance_steps,
        guidance_scale: a.guidance_scale,
        start_near_base: a.start_near_base,
        guidance_lambda: a.guidance_lambda,
        tilt: TiltSettings {
            iterations: a.tilt_iterations,
            lambda: a.tilt_lambda,
            lr: a.tilt_lr,
            trajectories: a.tilt_trajectories,
            steps: a.tilt_steps,
        },
        chunk: a.chunk,
        seed: a.seed,
    };
    let env = ShiftEnv {
        data_dir: data::data_dir(a.data_dir.clone()),
        quiet: a.quiet,
        force: a.force,
        null_from: a.null_from.clone(),
    };
    struct Job<'a>(&'a ShiftConfig, &'a ShiftTestArgs, &'a ShiftEnv);
    impl BackendJob for Job<'_> {
        type Output = (Results, RunInfo);
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<(Results, RunInfo)> {
            Ok(shift_test::<B>(self.0, &self.1.out, self.2, device)?)
        }
    }
    let (results, info) = dispatch(a.device, Job(&cfg, a, &env))?;
    super::emit(a.json, &results, || {
        let mut parts = Vec::new();
        for (method, stats) in &results {
            for (statistic, sizes) in stats {
                let tprs: Vec<String> = cfg
                    .sizes
                    .iter()
                    .filter_map(|s| sizes.get(&s.to_string()))
                    .map(|c| format!("{:.2}", c.tpr))
                    .collect();
                parts.push(format!("{method} {statistic} {}", tprs.join("/")));
            }
        }
        format!(
            "shift-test {} → {} (f: run {}, {:.1} % → {:.1} %), TPR at {:.0} % FPR for |Q| = {:?}: {} ({:.0} s) → {}",
            info.p,
            info.shift,
            info.base_run,
            100.0 * info.base_p_accuracy,
            100.0 * info.base_shift_accuracy,
            100.0 * cfg.alpha,
            cfg.sizes,
            parts.join("; "),
            info.seconds,
            info.out.display()
        )
    })
}
