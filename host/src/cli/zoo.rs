//! `nmflow zoo`: train many classifiers together and record their checkpoint trajectories.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Deserialize;

use crate::arch::Arch;
use crate::backend::DeviceKind;
use crate::data::{self, DatasetView};
use crate::error::UsageError;
use crate::zoo::config::DEFAULT_CHECKPOINTS;
use crate::zoo::run::RunOptions;
use crate::zoo::run::merge_zoo;
use crate::zoo::{Optimizer, ZooConfig, ZooEngine, ZooSummary, run_zoo};

/// Arguments of `nmflow zoo`. Every setting can also come from `--config FILE.toml` (same names
/// with underscores); flags override the file.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ZooArgs {
    /// Finish a zoo trained as a job array.
    #[command(subcommand)]
    pub action: Option<ZooAction>,
    /// Output directory (resumed if it holds an unfinished zoo with the same settings).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// TOML file with settings (keys: dataset, arch, runs, epochs, batch_size, optimizer, lr,
    /// momentum, checkpoints, seed, shard_runs, heldout_fraction, tasks, engine).
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
    /// A multi-task zoo: `perm:N[:unseen=M]` spreads the runs over N label permutations of the
    /// dataset (run i learns task i mod N; task t's permutation π_t is seeded by the zoo's seed
    /// and t); `pairs:N[:unseen=M]` over N ways of merging the classes in pairs (class y gets
    /// label ⌊π_t(y)/2⌋, labels 5 to 9 unused). The last M tasks (default N/8) are never used
    /// for meta-model training (`split.unseen` in the manifest, which records each run's task
    /// and every task's label map) [default: one task].
    #[arg(long)]
    pub tasks: Option<String>,
    /// Delete an existing zoo with different settings in --out and start over.
    #[arg(long)]
    pub force: bool,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Trainer: `fused` (MLP architectures on the CPU: the training written out on reused
    /// buffers, about 2× the burn engine's speed), `burn` (any architecture and device), or `auto`
    /// (fused where it applies, else burn; an existing zoo in --out keeps the engine it began
    /// with). The two differ in rounding only, so the engine is one of the zoo's settings
    /// [default: auto].
    #[arg(long, value_enum)]
    pub engine: Option<EngineChoice>,
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
    /// Train only part I of N of the shards (those whose index is I modulo N), as task I of a
    /// job array of N tasks (e.g. Slurm's `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`,
    /// see scripts/slurm/); the tasks share --out and every other setting, and `nmflow zoo merge
    /// OUT` writes the manifest when all are done. The zoo is byte-identical to one trained by a
    /// single job.
    #[arg(long, value_parser = parse_shard, value_name = "I/N")]
    pub shard: Option<(usize, usize)>,
    /// Stop after training this many shards (testing interruption; a rerun resumes).
    #[arg(long, hide = true)]
    pub max_new_shards: Option<usize>,
}

/// `--engine` of `nmflow zoo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The fused trainer where it applies (an MLP on the CPU), else burn.
    Auto,
    /// burn's autodiff, batched over a shard's runs.
    Burn,
    /// The fused CPU trainer of MLP classifiers.
    Fused,
}

/// `nmflow zoo merge`.
#[derive(Debug, clap::Subcommand)]
pub enum ZooAction {
    /// Check every shard of a zoo trained as a job array (`--shard I/N` tasks) and write its
    /// manifest.
    Merge(MergeArgs),
}

/// Arguments of `nmflow zoo merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The zoo folder the tasks wrote into.
    pub dir: PathBuf,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object instead of the summary line.
    #[arg(long)]
    pub json: bool,
}

/// `I/N` with `0 ≤ I < N`.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((i, n)) if n >= 1 && i < n => Ok((i, n)),
        _ => Err(format!(
            "expected I/N with 0 ≤ I < N (task I of N), e.g. 0/4; got {s:?}"
        )),
    }
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
    tasks: Option<String>,
    engine: Option<EngineChoice>,
}

impl ZooArgs {
    /// Merges flags, the config file and defaults into validated settings.
    ///
    /// A setting that came from the file is named in messages as the file's key, with the file.
    ///
    /// # Errors
    /// An unreadable config file (failure) or invalid settings ([`UsageError`]).
    pub fn to_config(&self) -> Result<ZooConfig> {
        let file: ZooFile = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    let why = if e.kind() == std::io::ErrorKind::NotFound {
                        "not found".to_string()
                    } else {
                        e.to_string()
                    };
                    anyhow::anyhow!("--config {}: {why}", p.display())
                })?;
                toml::from_str(&text).map_err(|e| {
                    // One line: the file, the line and what is wrong (not TOML's snippet).
                    let line = e.span().map_or(String::new(), |s| {
                        format!(
                            " (line {})",
                            text[..s.start.min(text.len())].lines().count().max(1)
                        )
                    });
                    UsageError(format!("{}{line}: {}", p.display(), e.message().trim()))
                })?
            }
            None => ZooFile::default(),
        };
        let from_file = self.taken_from_file(&file);
        let blame = |e: UsageError| -> anyhow::Error {
            match &self.config {
                Some(path) => UsageError(name_file_keys(e.0, path, &from_file)).into(),
                None => e.into(),
            }
        };
        let dataset: DatasetView = self
            .dataset
            .clone()
            .or(file.dataset)
            .unwrap_or_else(|| "mnist".into())
            .parse()
            .map_err(blame)?;
        let arch: Arch = self
            .arch
            .clone()
            .or(file.arch)
            .unwrap_or_else(|| "mlp:784-10-10".into())
            .parse()
            .map_err(blame)?;
        let optimizer = self.optimizer.or(file.optimizer).unwrap_or(Optimizer::Adam);
        let default_lr = match optimizer {
            Optimizer::Adam => 1e-3,
            Optimizer::Sgd => 1e-2,
        };
        let mut cfg = ZooConfig {
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
            tasks: self
                .tasks
                .clone()
                .or(file.tasks)
                .map(|t| t.parse())
                .transpose()
                .map_err(blame)?,
            engine: ZooEngine::Burn,
        };
        let choice = self.engine.or(file.engine).unwrap_or(EngineChoice::Auto);
        cfg.engine = match choice {
            EngineChoice::Burn => ZooEngine::Burn,
            EngineChoice::Fused if self.device != DeviceKind::Cpu => {
                return Err(blame(UsageError(
                    "--engine fused trains on the CPU only (got --device cuda); use --engine burn or auto"
                        .into(),
                )));
            }
            EngineChoice::Fused => ZooEngine::Fused,
            EngineChoice::Auto => self.auto_engine(&cfg),
        };
        cfg.validate().map_err(blame)?;
        Ok(cfg)
    }
}

impl ZooArgs {
    /// `--engine auto`: the engine of the zoo already in --out when its other settings are these
    /// (so that a zoo begun with one engine resumes with it), else fused for an MLP on the CPU,
    /// else burn.
    fn auto_engine(&self, cfg: &ZooConfig) -> ZooEngine {
        let existing = self.out.as_ref().and_then(|out| {
            let text = std::fs::read_to_string(out.join(crate::zoo::manifest::SETTINGS)).ok()?;
            serde_json::from_str::<ZooConfig>(&text).ok()
        });
        if let Some(existing) = existing {
            let same = ZooConfig {
                engine: existing.engine,
                ..cfg.clone()
            };
            if same == existing {
                return existing.engine;
            }
        }
        if self.device == DeviceKind::Cpu && matches!(cfg.arch, Arch::Mlp { .. }) {
            ZooEngine::Fused
        } else {
            ZooEngine::Burn
        }
    }

    /// `(flag, key)` of the settings this invocation takes from the config file (no flag given).
    fn taken_from_file(&self, file: &ZooFile) -> Vec<(&'static str, &'static str)> {
        [
            (
                "--dataset",
                "dataset",
                self.dataset.is_none() && file.dataset.is_some(),
            ),
            ("--arch", "arch", self.arch.is_none() && file.arch.is_some()),
            ("--runs", "runs", self.runs.is_none() && file.runs.is_some()),
            (
                "--epochs",
                "epochs",
                self.epochs.is_none() && file.epochs.is_some(),
            ),
            (
                "--batch-size",
                "batch_size",
                self.batch_size.is_none() && file.batch_size.is_some(),
            ),
            (
                "--optimizer",
                "optimizer",
                self.optimizer.is_none() && file.optimizer.is_some(),
            ),
            ("--lr", "lr", self.lr.is_none() && file.lr.is_some()),
            (
                "--momentum",
                "momentum",
                self.momentum.is_none() && file.momentum.is_some(),
            ),
            (
                "--checkpoints",
                "checkpoints",
                self.checkpoints.is_none() && file.checkpoints.is_some(),
            ),
            ("--seed", "seed", self.seed.is_none() && file.seed.is_some()),
            (
                "--shard-runs",
                "shard_runs",
                self.shard_runs.is_none() && file.shard_runs.is_some(),
            ),
            (
                "--heldout",
                "heldout_fraction",
                self.heldout.is_none() && file.heldout_fraction.is_some(),
            ),
            (
                "--tasks",
                "tasks",
                self.tasks.is_none() && file.tasks.is_some(),
            ),
            (
                "--engine",
                "engine",
                self.engine.is_none() && file.engine.is_some(),
            ),
        ]
        .into_iter()
        .filter(|c| c.2)
        .map(|(flag, key, _)| (flag, key))
        .collect()
    }
}

/// A message about settings, with the flags of settings that came from the config file `path`
/// named as the file's keys instead (a flag that was never passed is not blamed).
fn name_file_keys(mut msg: String, path: &std::path::Path, from_file: &[(&str, &str)]) -> String {
    for (flag, key) in from_file {
        let named = format!("{flag} ");
        if msg.contains(&named) {
            msg = msg.replace(&named, &format!("`{key}` in {} ", path.display()));
        }
    }
    for (flag, key, prefix) in [
        ("--dataset", "dataset", "unknown dataset"),
        ("--arch", "arch", "unknown architecture"),
    ] {
        if from_file.iter().any(|(f, _)| *f == flag) && msg.starts_with(prefix) {
            msg = format!("`{key}` in {}: {msg}", path.display());
        }
    }
    msg
}

/// The default number of shard workers on a device.
pub fn default_jobs(device: DeviceKind) -> usize {
    match device {
        DeviceKind::Cpu => std::thread::available_parallelism().map_or(1, usize::from),
        DeviceKind::Cuda => 1,
    }
}

/// Runs `nmflow zoo`.
///
/// # Errors
/// Invalid settings (usage), data or I/O failures, a conflicting zoo in `--out`.
pub fn exec(a: &ZooArgs) -> Result<()> {
    if let Some(ZooAction::Merge(m)) = &a.action {
        let summary = merge_zoo(&m.dir, &data::data_dir(m.data_dir.clone()))?;
        return super::emit(m.json, &summary, || {
            format!("zoo merge: {}", summary_line(&summary))
        });
    }
    let out = a
        .out
        .as_ref()
        .ok_or_else(|| UsageError("--out is required".into()))?;
    let cfg = a.to_config()?;
    let dir = data::data_dir(a.data_dir.clone());
    let opts = RunOptions {
        force: a.force,
        quiet: a.quiet || a.json,
        max_new_shards: a.max_new_shards,
        jobs: a.jobs.unwrap_or_else(|| default_jobs(a.device)),
        shard: a.shard,
    };
    struct Job<'a>(
        &'a ZooConfig,
        &'a std::path::Path,
        &'a std::path::Path,
        &'a RunOptions,
    );
    impl crate::backend::BackendJob for Job<'_> {
        type Output = ZooSummary;
        fn run<B: burn::tensor::backend::AutodiffBackend>(
            self,
            device: &B::Device,
        ) -> Result<ZooSummary> {
            Ok(run_zoo::<B>(self.0, self.1, self.2, self.3, device)?)
        }
    }
    let summary = crate::backend::dispatch(a.device, Job(&cfg, out, &dir, &opts))?;
    if let Some((i, n)) = a.shard {
        return super::emit(a.json, &summary, || {
            format!(
                "zoo task {i}/{n}: {} shards trained in {:.1}s → {} (when every task is done: nmflow zoo merge {})",
                summary.shards_trained,
                summary.seconds,
                out.display(),
                out.display()
            )
        });
    }
    super::emit(a.json, &summary, || summary_line(&summary))
}

/// The one-line summary of a zoo job.
pub fn summary_line(s: &ZooSummary) -> String {
    format!(
        "zoo: {} runs × {} checkpoints of {} params; test acc mean {:.2}% (min {:.2}%, max {:.2}%); {} shards trained in {:.1}s ({} engine) → {}",
        s.runs,
        s.checkpoints_per_run,
        s.num_params,
        100.0 * s.test_acc_mean,
        100.0 * s.test_acc_min,
        100.0 * s.test_acc_max,
        s.shards_trained,
        s.seconds,
        s.engine.name(),
        s.out.display()
    )
}
