//! Running a zoo job: settings check, resumable shard loop, manifest.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use super::config::{Schedule, ZooConfig};
use super::manifest::{
    DatasetInfo, MANIFEST, Manifest, RunInfo, RunSplit, SETTINGS, ShardInfo, ZOO_FORMAT_VERSION,
};
use super::shard::{self, shard_name};
use super::train::{TrainingData, train_shard};
use crate::data::{Dataset, dataset::NUM_CLASSES};
use crate::error::{UsageError, ZooError};
use crate::io::{DirLock, is_lock, sha256_hex, stale_temp, write_atomic};
use crate::progress;
use nmflow_runtime::Rng;

/// Extension of the file beside each shard that records its SHA-256 when it was written, so that
/// a shard altered while the job was interrupted is not adopted on resume.
const SHARD_SUM: &str = ".sha256";

/// The checksum file of shard `s`.
fn shard_sum_path(out: &Path, s: usize) -> PathBuf {
    out.join(format!(
        "{}{SHARD_SUM}",
        shard_name(s).trim_end_matches(".safetensors")
    ))
}

/// Whether shard `s` is finished: it decodes, and it has the hash recorded when it was written
/// (shards of builds before the record are taken as they are).
///
/// # Errors
/// [`ZooError::Corrupt`] for a shard whose bytes differ from the recorded hash.
fn shard_done(out: &Path, s: usize) -> Result<bool, ZooError> {
    let path = out.join(shard_name(s));
    if shard::read(&path).is_err() {
        return Ok(false);
    }
    let Ok(recorded) = fs::read_to_string(shard_sum_path(out, s)) else {
        return Ok(true);
    };
    let bytes = fs::read(&path).map_err(|e| ZooError::io(&path, e))?;
    if sha256_hex(&bytes) != recorded.trim() {
        return Err(ZooError::corrupt(
            &path,
            format!(
                "sha256 differs from the one recorded when it was written ({}): the file was altered; delete both to train the shard again",
                shard_sum_path(out, s).display()
            ),
        ));
    }
    Ok(true)
}

/// PRNG stream used to choose the held-out runs.
const STREAM_SPLIT: u64 = 3;

/// The one-line result of a zoo job (and the `--json` object).
#[derive(Clone, Debug, Serialize)]
pub struct ZooSummary {
    /// Number of runs.
    pub runs: usize,
    /// Checkpoints per run (`K + 1`).
    pub checkpoints_per_run: usize,
    /// Parameters per classifier.
    pub num_params: usize,
    /// Mean final test accuracy.
    pub test_acc_mean: f64,
    /// Lowest final test accuracy.
    pub test_acc_min: f64,
    /// Highest final test accuracy.
    pub test_acc_max: f64,
    /// Mean final test accuracy of held-out runs.
    pub heldout_test_acc_mean: f64,
    /// Shards trained by this invocation (the rest were already done).
    pub shards_trained: usize,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
    /// Model-epochs per second of the training done by this invocation.
    pub model_epochs_per_second: f64,
    /// The engine that trains the zoo (its setting).
    pub engine: super::config::ZooEngine,
    /// The zoo directory.
    pub out: PathBuf,
}

/// Options of a zoo job that do not change its bytes.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Delete an existing zoo with other settings instead of refusing.
    pub force: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Stop after this many newly trained shards (for tests of interruption and resume).
    pub max_new_shards: Option<usize>,
    /// Shards trained at the same time (worker threads); 0 means one.
    pub jobs: usize,
    /// Train only part `(i, n)` of the shards (those whose index is `i` modulo `n`), as one task
    /// of a job array, and leave the manifest to [`merge_zoo`].
    pub shard: Option<(usize, usize)>,
}

/// The runs held out from meta-model training: a seeded choice of `round(fraction·runs)` runs.
/// In a multi-task zoo, the runs of unseen tasks are set apart first (`unseen`), and the fraction
/// applies to the others.
pub fn split_runs(cfg: &ZooConfig) -> RunSplit {
    let (mut order, mut unseen): (Vec<usize>, Vec<usize>) = match &cfg.tasks {
        None => ((0..cfg.runs).collect(), Vec::new()),
        Some(t) => (0..cfg.runs).partition(|&r| !t.is_unseen(t.task_of(r))),
    };
    Rng::new(cfg.seed, STREAM_SPLIT).shuffle(&mut order);
    let n_held = ((order.len() as f64) * cfg.heldout_fraction).round() as usize;
    let mut heldout = order[..n_held].to_vec();
    let mut train = order[n_held..].to_vec();
    heldout.sort_unstable();
    train.sort_unstable();
    unseen.sort_unstable();
    RunSplit {
        train,
        heldout,
        unseen,
    }
}

/// Prepares `out`: refuses (or with `force` clears) a zoo made with other settings, removes stale
/// temporary files, and writes `settings.json`.
fn prepare_dir(cfg: &ZooConfig, out: &Path, force: bool) -> Result<(), ZooError> {
    fs::create_dir_all(out).map_err(|e| ZooError::io(out, e))?;
    let settings_path = out.join(SETTINGS);
    let wanted = serde_json::to_string_pretty(cfg)
        .map_err(|e| ZooError::corrupt(&settings_path, e.to_string()))?;
    let owned = |name: &str| {
        name == SETTINGS
            || name == MANIFEST
            || name.ends_with(".tmp")
            || (name.starts_with("shard-")
                && (name.ends_with(".safetensors") || name.ends_with(SHARD_SUM)))
    };
    let entries: Vec<String> = fs::read_dir(out)
        .map_err(|e| ZooError::io(out, e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !is_lock(n) && !n.ends_with(".tmp"))
        .collect();
    let conflict = match fs::read_to_string(&settings_path) {
        Ok(existing) if existing == wanted => None,
        Ok(existing) => Some(first_difference(&existing, cfg)),
        Err(_) if entries.is_empty() => None,
        Err(_) => Some(format!(
            "it holds {} files but no {SETTINGS}",
            entries.len()
        )),
    };
    if let Some(difference) = conflict {
        if !force {
            return Err(ZooError::Conflict {
                path: settings_path,
                difference,
            });
        }
        for name in entries.iter().filter(|n| owned(n)) {
            let p = out.join(name);
            fs::remove_file(&p).map_err(|e| ZooError::io(&p, e))?;
        }
    }
    // Temporary files of processes that no longer run (other tasks' are left alone).
    for entry in fs::read_dir(out)
        .map_err(|e| ZooError::io(out, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if stale_temp(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    // The tasks of a sharded job all write the same settings: an equal file stays as it is.
    if fs::read_to_string(&settings_path).is_ok_and(|s| s == wanted) {
        return Ok(());
    }
    write_atomic(&settings_path, wanted.as_bytes()).map_err(|e| ZooError::io(&settings_path, e))
}

/// Names the first setting in which `existing` (JSON) differs from `cfg`.
fn first_difference(existing: &str, cfg: &ZooConfig) -> String {
    match (
        serde_json::from_str::<serde_json::Value>(existing),
        serde_json::to_value(cfg),
    ) {
        (Ok(mut old), Ok(mut new)) => {
            // The engine key is left out for burn: name it on both sides so a change shows.
            for v in [&mut old, &mut new] {
                if let Some(map) = v.as_object_mut() {
                    map.entry("engine").or_insert_with(|| "burn".into());
                }
            }
            crate::io::first_difference(&old, &new)
        }
        _ => "unreadable settings".into(),
    }
}

/// Runs (or resumes) a zoo job into `out`.
///
/// # Errors
/// [`ZooError::Conflict`] for an existing zoo with other settings (unless `force`), data and I/O
/// errors, [`ZooError::Diverged`].
pub fn run_zoo<B: AutodiffBackend>(
    cfg: &ZooConfig,
    out: &Path,
    data_dir: &Path,
    opts: &RunOptions,
    device: &B::Device,
) -> Result<ZooSummary, ZooError> {
    let started = Instant::now();
    cfg.validate()?;
    let data = Dataset::load(cfg.dataset, data_dir)?;
    let schedule = plan_schedule(cfg, &data)?;
    let layout = cfg.arch.layout();
    check_memory(cfg, &schedule, layout.num_params())?;
    if out.exists() && !out.is_dir() {
        return Err(ZooError::corrupt(
            out,
            "exists and is not a directory; choose another --out",
        ));
    }
    let _lock = lock(out, opts.shard)?;
    prepare_dir(cfg, out, opts.force)?;
    let shards = cfg.num_shards();
    let mut todo = Vec::new();
    for s in 0..shards {
        let mine = opts.shard.is_none_or(|(i, n)| s % n.max(1) == i);
        if mine && !shard_done(out, s)? {
            todo.push(s);
        }
    }
    let pb = progress::bar(
        (todo.len() * schedule.total_steps) as u64,
        "steps",
        opts.quiet,
    );
    pb.set_prefix(format!("zoo: {} shards to train", todo.len()));
    let trained = AtomicUsize::new(0);
    if !todo.is_empty() {
        let prepared = TrainingData::<B::InnerBackend>::new(cfg, &data, device)?;
        let queue = Mutex::new(todo.iter().copied().rev().collect::<Vec<usize>>());
        let failure: Mutex<Option<ZooError>> = Mutex::new(None);
        let workers = opts.jobs.clamp(1, todo.len());
        let started_shards = AtomicUsize::new(0);
        let worker = || {
            loop {
                if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                if opts
                    .max_new_shards
                    .is_some_and(|m| started_shards.fetch_add(1, Ordering::SeqCst) >= m)
                {
                    return;
                }
                let Some(s) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return;
                };
                let outcome = train_and_write::<B>(
                    cfg, &layout, &schedule, &data, &prepared, s, out, device, &pb,
                );
                match outcome {
                    Ok(()) => {
                        trained.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(worker);
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            pb.abandon();
            return Err(e);
        }
    }
    let trained = trained.into_inner();
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let model_epochs = trained as f64 * cfg.shard_runs as f64 * cfg.epochs as f64;
    if trained < todo.len() || opts.shard.is_some() {
        // Stopped early on request, or one task of a job array: leave the manifest unwritten so
        // that a rerun resumes (or `nmflow zoo merge` finishes the array's zoo).
        return Ok(summary_partial(
            cfg, &layout, &schedule, out, trained, seconds,
        ));
    }
    let manifest = write_manifest(cfg, &data, &layout, &schedule, out)?;
    let mut summary = summarize(&manifest, out);
    summary.shards_trained = trained;
    summary.seconds = seconds;
    summary.model_epochs_per_second = if seconds > 0.0 {
        model_epochs / seconds
    } else {
        0.0
    };
    Ok(summary)
}

/// Locks `out` for a whole job, or for one part of a sharded one.
fn lock(out: &Path, shard: Option<(usize, usize)>) -> Result<DirLock, ZooError> {
    let taken = match shard {
        Some((i, n)) => DirLock::acquire_named(out, &format!(".nmflow-shard-{i}-of-{n}.lock")),
        None => DirLock::acquire(out),
    };
    taken.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ZooError::Busy(e.to_string()),
        _ => ZooError::io(out, e),
    })
}

/// Builds and writes the manifest of a zoo whose shards are all there (the marker of a finished
/// zoo, written last).
fn write_manifest(
    cfg: &ZooConfig,
    data: &Dataset,
    layout: &crate::arch::Layout,
    schedule: &Schedule,
    out: &Path,
) -> Result<Manifest, ZooError> {
    let manifest = build_manifest(cfg, data, layout, schedule, out)?;
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| ZooError::corrupt(out, e.to_string()))?;
    let mpath = out.join(MANIFEST);
    write_atomic(&mpath, text.as_bytes()).map_err(|e| ZooError::io(&mpath, e))?;
    Ok(manifest)
}

/// Finishes a zoo trained as a job array (`nmflow zoo --shard I/N` tasks): checks that every
/// shard is there, whole and as its task wrote it, and writes the manifest. The result is the same
/// bytes as the zoo trained by one `nmflow zoo` job.
///
/// # Errors
/// A folder without a zoo job's `settings.json`, missing or unfinished shards (named, with the
/// task to rerun), altered shards, data and I/O errors.
pub fn merge_zoo(out: &Path, data_dir: &Path) -> Result<ZooSummary, ZooError> {
    let started = Instant::now();
    let settings_path = out.join(SETTINGS);
    let text = fs::read_to_string(&settings_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ZooError::corrupt(
                &settings_path,
                "missing: not the folder of a zoo job (run `nmflow zoo --out DIR --shard I/N …` first)",
            )
        } else {
            ZooError::io(&settings_path, e)
        }
    })?;
    let cfg: ZooConfig = serde_json::from_str(&text)
        .map_err(|e| ZooError::corrupt(&settings_path, format!("bad settings: {e}")))?;
    cfg.validate()?;
    let _lock = lock(out, None)?;
    let data = Dataset::load(cfg.dataset, data_dir)?;
    let schedule = plan_schedule(&cfg, &data)?;
    let layout = cfg.arch.layout();
    let mut missing = Vec::new();
    for s in 0..cfg.num_shards() {
        if !shard_done(out, s)? {
            missing.push(s);
        }
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().take(8).map(ToString::to_string).collect();
        return Err(ZooError::corrupt(
            out,
            format!(
                "{} of {} shards are missing or unfinished (shard {}{}); rerun the tasks that train them (shard s belongs to task s mod N of `--shard I/N`)",
                missing.len(),
                cfg.num_shards(),
                list.join(", "),
                if missing.len() > list.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        ));
    }
    let manifest = write_manifest(&cfg, &data, &layout, &schedule, out)?;
    let mut summary = summarize(&manifest, out);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Trains shard `s` and writes it atomically.
#[allow(clippy::too_many_arguments)]
fn train_and_write<B: AutodiffBackend>(
    cfg: &ZooConfig,
    layout: &crate::arch::Layout,
    schedule: &Schedule,
    data: &Dataset,
    prepared: &TrainingData<'_, B::InnerBackend>,
    s: usize,
    out: &Path,
    device: &B::Device,
    pb: &indicatif::ProgressBar,
) -> Result<(), ZooError> {
    let runs = cfg.shard_range(s);
    let mut on_step = |info: super::train::StepInfo| {
        pb.inc(1);
        if let Some(acc) = info.batch_acc {
            pb.set_message(format!("batch acc {:.1}%", 100.0 * acc));
        }
    };
    let result = train_shard::<B>(
        cfg,
        layout,
        schedule,
        data,
        prepared,
        runs.clone(),
        device,
        &mut on_step,
    )?;
    let bytes = shard::encode(
        &result,
        runs,
        &schedule.steps,
        &schedule.times,
        layout.num_params(),
    )
    .map_err(|e| ZooError::corrupt(out, e))?;
    let path = out.join(shard_name(s));
    write_atomic(&path, &bytes).map_err(|e| ZooError::io(&path, e))?;
    let sum = shard_sum_path(out, s);
    write_atomic(&sum, sha256_hex(&bytes).as_bytes()).map_err(|e| ZooError::io(&sum, e))
}

/// The most memory one shard's recorded checkpoints may take (bytes).
const MAX_SHARD_BYTES: u128 = 8 << 30;

/// Refuses settings whose shard (every run's every checkpoint, in memory while it trains) cannot
/// fit, before anything is allocated.
fn check_memory(cfg: &ZooConfig, schedule: &Schedule, params: usize) -> Result<(), UsageError> {
    let bytes = 4 * cfg.shard_runs.min(cfg.runs) as u128 * schedule.len() as u128 * params as u128;
    if bytes > MAX_SHARD_BYTES {
        return Err(UsageError(format!(
            "a shard of {} runs × {} checkpoints × {params} parameters takes {:.1} GiB, more than the {} GiB nmflow allows; use a smaller --shard-runs or fewer --checkpoints",
            cfg.shard_runs.min(cfg.runs),
            schedule.len(),
            bytes as f64 / f64::from(1u32 << 30),
            MAX_SHARD_BYTES >> 30
        )));
    }
    Ok(())
}

/// Resolves the schedule of `cfg` on `data`, also checking the architecture against the data.
///
/// # Errors
/// [`UsageError`] for a mismatched architecture or a schedule past the end.
pub fn plan_schedule(cfg: &ZooConfig, data: &Dataset) -> Result<Schedule, UsageError> {
    cfg.arch
        .check_input(cfg.dataset.input_shape(), NUM_CLASSES, cfg.dataset.name())?;
    Schedule::parse(
        &cfg.checkpoints,
        data.train.len(),
        cfg.batch_size,
        cfg.epochs,
    )
}

fn summary_partial(
    cfg: &ZooConfig,
    layout: &crate::arch::Layout,
    schedule: &Schedule,
    out: &Path,
    trained: usize,
    seconds: f64,
) -> ZooSummary {
    ZooSummary {
        runs: cfg.runs,
        checkpoints_per_run: schedule.len(),
        num_params: layout.num_params(),
        test_acc_mean: f64::NAN,
        test_acc_min: f64::NAN,
        test_acc_max: f64::NAN,
        heldout_test_acc_mean: f64::NAN,
        shards_trained: trained,
        seconds,
        model_epochs_per_second: 0.0,
        engine: cfg.engine,
        out: out.into(),
    }
}

fn build_manifest(
    cfg: &ZooConfig,
    data: &Dataset,
    layout: &crate::arch::Layout,
    schedule: &Schedule,
    out: &Path,
) -> Result<Manifest, ZooError> {
    let split = split_runs(cfg);
    let mut runs = Vec::with_capacity(cfg.runs);
    let mut shards = Vec::with_capacity(cfg.num_shards());
    for s in 0..cfg.num_shards() {
        let path = out.join(shard_name(s));
        let bytes = fs::read(&path).map_err(|e| ZooError::io(&path, e))?;
        let sh = shard::decode(&bytes, &path)?;
        let range = cfg.shard_range(s);
        if sh.runs != range.clone().collect::<Vec<_>>() || sh.steps != schedule.steps {
            return Err(ZooError::corrupt(
                &path,
                "holds other runs or checkpoints than the settings say",
            ));
        }
        for (i, &run) in sh.runs.iter().enumerate() {
            let m = sh.metrics[i];
            runs.push(RunInfo {
                index: run,
                seed: sh.seeds[i],
                shard: s,
                heldout: split.heldout.binary_search(&run).is_ok(),
                task: cfg.tasks.map(|t| t.task_of(run)),
                final_train_loss: m[0],
                final_train_acc: m[1],
                final_test_loss: m[2],
                final_test_acc: m[3],
            });
        }
        shards.push(ShardInfo {
            file: shard_name(s),
            first_run: range.start,
            runs: range.len(),
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        });
    }
    Ok(Manifest {
        format: "nmflow-zoo".into(),
        format_version: ZOO_FORMAT_VERSION,
        config: cfg.clone(),
        dataset: DatasetInfo {
            name: cfg.dataset.name().into(),
            train_samples: data.train.len(),
            test_samples: data.test.len(),
            input_shape: cfg.dataset.input_shape(),
            classes: NUM_CLASSES,
        },
        layout: layout.clone(),
        num_params: layout.num_params(),
        schedule: schedule.clone(),
        split,
        runs,
        shards,
        tensors: Manifest::tensor_docs(schedule.len(), layout.num_params()),
        tasks: cfg
            .tasks
            .map(|t| t.table(cfg.seed, crate::data::dataset::NUM_CLASSES)),
    })
}

/// Accuracy summary of a finished zoo.
pub fn summarize(m: &Manifest, out: &Path) -> ZooSummary {
    let accs: Vec<f64> = m.runs.iter().map(|r| f64::from(r.final_test_acc)).collect();
    let held: Vec<f64> = m
        .runs
        .iter()
        .filter(|r| r.heldout)
        .map(|r| f64::from(r.final_test_acc))
        .collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    ZooSummary {
        runs: m.runs.len(),
        checkpoints_per_run: m.schedule.len(),
        num_params: m.num_params,
        test_acc_mean: mean(&accs),
        test_acc_min: accs.iter().copied().fold(f64::INFINITY, f64::min),
        test_acc_max: accs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        heldout_test_acc_mean: mean(&held),
        shards_trained: 0,
        seconds: 0.0,
        model_epochs_per_second: 0.0,
        engine: m.config.engine,
        out: out.into(),
    }
}
