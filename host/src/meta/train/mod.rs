//! Training a meta-model: the loop shared by every method and engine.
//!
//! Each step draws a minibatch of training pairs ([`crate::meta::pairs`]), forms the objective
//! (flow matching, NM-JKO's residual, plus the functional term of [`crate::meta::reward`]) and
//! takes one optimizer step on one of two engines: [`burn_engine`] (burn's autodiff: every field,
//! method and objective) or [`fused_engine`] (the hand-written CPU trainers of the MLP field,
//! [`fused_mlp`], and of the set field with the functional term, [`fused_set`]). Every `eval_every` steps the objective is measured on fixed held-out draws;
//! the model that minimizes it is kept (early stopping), and a checkpoint
//! ([`checkpoint`]) lets a killed run resume to the same bytes.
//!
//! | module | one job |
//! |---|---|
//! | [`burn_engine`] | the training step on burn's autodiff and Adam |
//! | [`fused_engine`] | the training step on the fused CPU trainer |
//! | [`fused_mlp`] | the fused trainer's forward, backward and Adam on preallocated buffers |
//! | [`fused_set`] | the same for the set field, with the functional term's rollout |
//! | [`fused_score`] | the functional term's score of generated classifiers and its gradient |
//! | [`checkpoint`] | mid-training checkpoints and the loss log |
//! | [`ema`] | the moving average of the field's weights (`--ema`) |
//! | [`two_stage`] | the reward recipe: flow matching, then `finetune` on the zoo's images |

pub mod burn_engine;
pub mod checkpoint;
pub mod ema;
pub mod fused_engine;
pub mod fused_mlp;
pub mod fused_score;
pub mod fused_set;
pub mod two_stage;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::Serialize;

use self::burn_engine::BurnTrainer;
use self::fused_engine::{FusedTrainer, MlpNet, SetNet};
use self::fused_mlp::{AdamSettings, Buffers, FusedAdam, FusedMlp};
use super::config::{MetaConfig, Method};
use super::field::{FieldKind, VectorField};
use super::files::{self, write_json};
use super::latent::codec::{self, Codec};
use super::normalize::Normalizer;
use super::pairs::{Batch, PairSampler};
use super::reward::{DataReward, Reward};
use super::trajectories;
use crate::backend::Cpu;
use crate::data::Dataset;
use crate::error::{MetaError, UsageError};
use crate::io::{DirLock, sha256_hex, write_atomic};
use crate::progress;
use crate::zoo::Manifest;
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// The result of `nmflow train`.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// `cfm` or `mmfm`.
    pub method: Method,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Training loss averaged over the last 50 steps.
    pub final_loss: f64,
    /// Lowest held-out objective (NaN without held-out runs): the flow-matching loss on held-out
    /// runs, plus with a functional term λ × its validation cross-entropy.
    pub best_heldout_loss: f64,
    /// Step of the kept model.
    pub best_step: usize,
    /// Held-out loss of predicting zero velocity (the trivial baseline).
    pub heldout_zero_loss: f64,
    /// Parameters of the field network.
    pub field_params: usize,
    /// Which implementation ran the training steps (`burn` or `fused`).
    #[serde(default)]
    pub engine: Engine,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Optimizer steps per second of the training loop (minibatch drawing, forward, backward,
    /// update, held-out evaluations and checkpoint saves; not the zoo loading).
    pub steps_per_second: f64,
    /// The model directory.
    pub out: PathBuf,
    /// SHA-256 of the kept weights (`field.bin`), checked by every reader (absent in models of
    /// earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_sha256: Option<String>,
    /// SHA-256 of a conditioned model's support encoder (`condition.bin`), checked by every
    /// reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_sha256: Option<String>,
    /// The step at which the loss became non-finite, when training stopped there (the kept
    /// model is the best one before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_at: Option<usize>,
}

/// PRNG stream of minibatch draws.
const STREAM_BATCH: u64 = 10;
/// PRNG stream of the functional term's image minibatches.
const STREAM_FUNCTIONAL: u64 = 12;
/// PRNG stream of the fixed held-out evaluation set.
const STREAM_HELDOUT: u64 = 11;
/// Samples in the held-out evaluation set.
const HELDOUT_SAMPLES: usize = 512;
/// Classifiers the sampler makes for the functional term's validation.
pub const VALIDATION_SAMPLES: usize = 64;
/// Training images the functional term's validation scores them on.
pub const VALIDATION_IMAGES: usize = 4096;

/// Saves the field weights atomically as `dir/field.bin`.
pub fn save_field<B: Backend>(field: &VectorField<B>, dir: &Path) -> Result<(), MetaError> {
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let tmp = dir.join("field-partial");
    field
        .clone()
        .save_file(tmp.clone(), &recorder)
        .map_err(|e| MetaError::file(&tmp, e))?;
    let from = dir.join("field-partial.bin");
    let to = dir.join("field.bin");
    fs::rename(&from, &to).map_err(|e| MetaError::file(&to, e))
}

/// Where a training job runs (not hyper-parameters: not saved with the model).
#[derive(Clone, Debug, Default)]
pub struct TrainEnv {
    /// The data folder (the functional term reads the zoo's dataset from it).
    pub data_dir: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Which implementation of the training step runs.
    pub engine: Engine,
    /// Replace a model (finished or interrupted) trained with other settings in the output
    /// directory instead of refusing.
    pub force: bool,
}

/// The implementation of the training step (not a hyper-parameter: both train the same network
/// with the same algorithm and differ only in floating-point rounding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `fused` where it applies, else `burn`.
    #[default]
    Auto,
    /// burn's autodiff and optimizer (every field, method and loss).
    Burn,
    /// The fused CPU trainers (`meta::train::fused_mlp`, `meta::train::fused_set`): the MLP field
    /// without a functional term and the set field with or without it, NM-CFM or NM-MMFM, no
    /// condition and no moving average.
    Fused,
}

/// One implementation of the training step, with the model files it owns.
pub(crate) trait Trainer {
    /// One optimizer step with learning rate `lr` on a minibatch `(xt, t, ut)`; returns the
    /// flow-matching loss and the functional term's cross-entropy (when on), both before the
    /// update.
    fn step(&mut self, batch: &Batch, lr: f64, data_rng: &mut Rng) -> (f32, Option<f32>);
    /// Mean squared error on the held-out set, and the functional term's validation
    /// cross-entropy (when on).
    fn heldout_loss(&mut self, set: &Batch) -> (f64, Option<f64>);
    /// Writes the current field as the model's `field.bin`.
    fn save_field(&self, out: &Path) -> Result<(), MetaError>;
    /// Writes a checkpoint with the loop state.
    fn checkpoint(&self, out: &Path, state: &checkpoint::State) -> Result<(), MetaError>;
    /// Loads the field and optimizer state of the checkpoint in `out`.
    fn resume(&mut self, out: &Path) -> Result<(), MetaError>;
}

/// Trains a meta-model on the zoo in `zoo_dir` and writes it to `out`.
///
/// A finished model with the same settings is not trained again; an interrupted one resumes from
/// its last checkpoint.
///
/// # Errors
/// Settings out of range or not fitting the zoo ([`MetaError::Usage`], before anything is
/// written), zoo and I/O errors, and [`MetaError::Diverged`] (the best model so far is kept and
/// marked with the step of the divergence).
pub fn train_meta<B: AutodiffBackend>(
    cfg: &MetaConfig,
    zoo_dir: &Path,
    out: &Path,
    env: &TrainEnv,
    device: &B::Device,
) -> Result<TrainSummary, MetaError> {
    let started = Instant::now();
    // Library callers get the same checks as the command line, before anything is written.
    cfg.validate(&Manifest::read(zoo_dir)?)?;
    let fused = use_fused::<B>(cfg, env.engine)?;
    if out.exists() && !out.is_dir() {
        return Err(MetaError::file(
            out,
            "exists and is not a directory; choose another --out",
        ));
    }
    let _lock = DirLock::acquire(out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => MetaError::Busy(e.to_string()),
        _ => MetaError::file(out, e),
    })?;
    claim_dir(cfg, out, env.force)?;
    if let Some(s) = finished::<B>(cfg, out, device) {
        return match s.diverged_at {
            Some(step) => Err(MetaError::Diverged {
                step,
                kept: s.best_step,
                out: out.into(),
            }),
            None => Ok(s),
        };
    }
    // An interrupted run with the same settings resumes from its last checkpoint (other settings
    // were refused or, with --force, cleared above).
    let resume = if same_config(cfg, out) {
        checkpoint::load_state(out)?
    } else {
        checkpoint::discard(out)?;
        None
    };
    // `auto` keeps the engine an interrupted run began with, so that its checkpoint resumes
    // (models begun before an engine existed, or with `--engine burn`, keep their bytes).
    let fused = match (&resume, env.engine) {
        (Some(state), Engine::Auto) => state.fused,
        _ => fused,
    };
    let (manifest, mut train, mut held) =
        trajectories::load_tasks(zoo_dir, cfg.condition.is_some())?;
    let layout = manifest.layout.clone();
    // The state the flow runs on: the weights, or a latent model's encoded checkpoints.
    let state_layout = match &cfg.latent {
        Some(spec) => {
            let dir = Path::new(&spec.vae);
            let codec = Codec::<B::InnerBackend>::load(dir, device)?;
            if codec.config.zoo_manifest_sha256 != cfg.zoo_manifest_sha256
                || codec.weights_sha256.as_deref() != Some(spec.vae_sha256.as_str())
            {
                return Err(MetaError::file(
                    dir,
                    "is not the VAE these settings were made with (its weights or zoo changed); run `nmflow train --latent` again",
                ));
            }
            train = encode(&codec, &train, device)?;
            held = encode(&codec, &held, device)?;
            codec::copy_files(dir, &out.join(codec::MODEL_FOLDER))?;
            codec::latent_layout(spec.dim)
        }
        None => layout.clone(),
    };
    let normalizer = Normalizer::fit(&state_layout, &train);
    normalizer.apply(&mut train.data);
    normalizer.apply(&mut held.data);
    fs::create_dir_all(out).map_err(|e| MetaError::file(out, e))?;
    write_json(&out.join(files::CONFIG), cfg)?;
    write_json(&out.join(files::NORMALIZER), &normalizer)?;
    write_json(&out.join(files::LAYOUT), &layout)?;

    B::seed(device, cfg.seed);
    let data = match (cfg.condition, cfg.functional_weight > 0.0) {
        (None, false) => None,
        _ => Some(Dataset::load(manifest.config.dataset, &env.data_dir)?),
    };
    let mut trainer: Box<dyn Trainer + '_> = if let Some(cond) = cfg.condition {
        let data = data
            .as_ref()
            .ok_or_else(|| UsageError("no dataset".into()))?;
        conditioned_trainer::<B>(
            cfg,
            cond,
            &manifest,
            &train,
            &held,
            &layout,
            &normalizer,
            data,
            device,
        )?
    } else if fused && cfg.field.kind == FieldKind::Set {
        let field = cfg.field.init::<B>(device);
        let images = data.as_ref().map(|d| (d, &manifest.config.arch));
        fused_set_trainer(cfg, &field, &layout, &normalizer, images)?
    } else if fused {
        fused_trainer(cfg, &cfg.field.init::<B>(device))?
    } else {
        let functional = data.as_ref().map(|data| {
            DataReward::<B>::new(
                Reward::CrossEntropy,
                &manifest.config.arch,
                &layout,
                data,
                &normalizer,
                device,
            )
        });
        let field = cfg.field.init::<B>(device);
        Box::new(BurnTrainer {
            cfg,
            layout: &state_layout,
            normalizer: &normalizer,
            device: device.clone(),
            // The average starts at the field's own initialization.
            ema: (cfg.ema > 0.0).then(|| ema::Ema::new(field.valid(), cfg.ema)),
            field,
            optim: burn_engine::adam::<B>(cfg),
            functional,
            tau: cfg.field.jko.map_or(1.0, |j| j.tau),
        })
    };
    let sampler = PairSampler::new(cfg, &train, &state_layout, &normalizer);
    let held_set = (!held.is_empty()).then(|| {
        PairSampler::new(cfg, &held, &state_layout, &normalizer)
            .draw(HELDOUT_SAMPLES, &mut Rng::new(cfg.seed, STREAM_HELDOUT))
    });
    let zero_loss = held_set.as_ref().map_or(f64::NAN, |s| zero_loss(cfg, s));
    let resume = resume.filter(|s| s.fused == fused);
    let outcome = run_loop(
        cfg,
        out,
        trainer.as_mut(),
        &sampler,
        held_set.as_ref(),
        resume,
        fused,
        env.quiet,
    )?;
    finish(cfg, out, &outcome, zero_loss, fused, started)
}

/// The burn engine of a conditioned field: the task of every run, the label maps, the seen tasks
/// and the training images its support sets come from.
#[allow(clippy::too_many_arguments)]
fn conditioned_trainer<'a, B: AutodiffBackend>(
    cfg: &'a MetaConfig,
    cond: crate::meta::condition::config::ConditionConfig,
    manifest: &'a Manifest,
    train: &trajectories::Trajectories,
    held: &trajectories::Trajectories,
    layout: &'a crate::arch::Layout,
    normalizer: &'a Normalizer,
    data: &'a Dataset,
    device: &B::Device,
) -> Result<Box<dyn Trainer + 'a>, MetaError> {
    use crate::meta::condition::{relabel::Relabel, support::SupportPool, train as ctrain};
    let table = manifest
        .tasks
        .as_ref()
        .ok_or_else(|| UsageError("--condition needs a multi-task zoo".into()))?;
    let task_of = |runs: &[usize]| -> Vec<usize> {
        runs.iter()
            .map(|&r| manifest.runs.get(r).and_then(|i| i.task).unwrap_or(0))
            .collect()
    };
    let seen: Vec<usize> = (0..table.count)
        .filter(|t| !table.unseen.contains(t))
        .collect();
    let functional = (cfg.functional_weight > 0.0).then(|| {
        DataReward::<B>::new(
            Reward::CrossEntropy,
            &manifest.config.arch,
            layout,
            data,
            normalizer,
            device,
        )
    });
    let model = ctrain::init::<B>(cfg, &cond, device);
    Ok(Box::new(ctrain::ConditionedTrainer {
        cfg,
        cond,
        layout,
        normalizer,
        device: device.clone(),
        // The average starts at the model's own initialization.
        ema: (cfg.ema > 0.0).then(|| ema::Ema::new(model.valid(), cfg.ema)),
        model,
        optim: ctrain::adam::<B>(cfg),
        functional,
        pool: SupportPool::new(&data.train, cond.classes)?,
        maps: &table.label_maps,
        train_tasks: task_of(&train.runs),
        held_tasks: task_of(&held.runs),
        seen,
        relabel: if cond.relabel {
            Some(Relabel::of(layout).ok_or_else(|| {
                UsageError("--relabel: the classifier has no output layer to relabel".into())
            })?)
        } else {
            None
        },
        unseen_maps: table
            .unseen
            .iter()
            .filter_map(|&t| table.label_maps.get(t).map(Vec::as_slice))
            .collect(),
    }))
}

/// The posterior means of every checkpoint of `runs` under a latent model's VAE.
fn encode<B: Backend>(
    codec: &Codec<B>,
    runs: &trajectories::Trajectories,
    device: &B::Device,
) -> Result<trajectories::Trajectories, MetaError> {
    Ok(trajectories::Trajectories {
        runs: runs.runs.clone(),
        times: runs.times.clone(),
        num_params: codec.latent(),
        data: codec.encode(&runs.data, device)?,
    })
}

/// Whether the fused engine runs: `auto` picks it where it applies, `fused` insists on it.
fn use_fused<B: AutodiffBackend>(cfg: &MetaConfig, engine: Engine) -> Result<bool, UsageError> {
    // The fused trainer runs on the CPU: it stands in for burn's CPU backend only.
    let on_cpu = std::any::TypeId::of::<B::InnerBackend>() == std::any::TypeId::of::<Cpu>();
    let fusable = on_cpu
        && cfg.condition.is_none()
        && cfg.method != Method::Jko
        && cfg.ema == 0.0
        && match cfg.field.kind {
            FieldKind::Mlp => cfg.functional_weight == 0.0,
            FieldKind::Set => cfg.latent.is_none(),
            FieldKind::Potential => false,
        };
    match engine {
        Engine::Auto => Ok(fusable),
        Engine::Burn => Ok(false),
        Engine::Fused if fusable => Ok(true),
        Engine::Fused => Err(UsageError(
            "--engine fused trains the MLP field (without a functional term) and the set field, with NM-CFM or NM-MMFM, no --condition and no --ema, on the CPU".into(),
        )),
    }
}

/// Files a model directory holds (and `--force` removes): the model, its log and charts, its
/// evaluation, and checkpoints.
const MODEL_FILES: &[&str] = &[
    files::CONFIG,
    files::NORMALIZER,
    files::LAYOUT,
    "field.bin",
    "field-partial.bin",
    "condition.bin",
    "condition-partial.bin",
    files::LOSS_LOG,
    files::SUMMARY,
    files::EVAL,
];

/// Makes `out` ready for a model with the settings `cfg`: a new or empty folder, or one holding
/// a model with the same settings (resumed or kept). A model (finished or interrupted) with other
/// settings is refused, or with `force` removed, so no finished work is replaced silently and no
/// stale evaluation stays beside new weights. A folder holding other files is refused.
fn claim_dir(cfg: &MetaConfig, out: &Path, force: bool) -> Result<(), MetaError> {
    let config = out.join(files::CONFIG);
    let existing = match fs::read_to_string(&config) {
        Ok(text) => text,
        Err(_) => {
            let others: Vec<String> = fs::read_dir(out)
                .map_err(|e| MetaError::file(out, e))?
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != crate::io::LOCK_FILE)
                .collect();
            if others.is_empty() || force {
                return Ok(());
            }
            return Err(MetaError::file(
                out,
                format!(
                    "is not empty and holds no model ({} entries, e.g. {}); choose another --out, or --force to write into it",
                    others.len(),
                    others[0]
                ),
            ));
        }
    };
    let wanted = serde_json::to_value(cfg).map_err(|e| MetaError::file(&config, e))?;
    let old: serde_json::Value = serde_json::from_str(&existing).unwrap_or_default();
    if old == wanted || serde_json::from_value::<MetaConfig>(old.clone()).is_ok_and(|c| c == *cfg) {
        return Ok(());
    }
    if !force {
        return Err(MetaError::Conflict {
            path: out.into(),
            difference: crate::io::first_difference(&old, &wanted),
        });
    }
    checkpoint::discard(out)?;
    for entry in fs::read_dir(out).map_err(|e| MetaError::file(out, e))? {
        let path = entry.map_err(|e| MetaError::file(out, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let chart =
            name.ends_with(".png") && (name.starts_with("eval-") || name.starts_with("loss"));
        if MODEL_FILES.contains(&name.as_str()) || chart {
            fs::remove_file(&path).map_err(|e| MetaError::file(&path, e))?;
        }
    }
    Ok(())
}

/// Whether `out` holds a model directory with exactly these settings.
fn same_config(cfg: &MetaConfig, out: &Path) -> bool {
    fs::read_to_string(out.join(files::CONFIG))
        .ok()
        .and_then(|c| serde_json::from_str::<MetaConfig>(&c).ok())
        .is_some_and(|c| c == *cfg)
}

/// The summary of a finished model in `out` with these settings whose weights still load
/// (weights written by an older, incompatible build are trained again).
fn finished<B: Backend>(cfg: &MetaConfig, out: &Path, device: &B::Device) -> Option<TrainSummary> {
    if !same_config(cfg, out) {
        return None;
    }
    let summary = fs::read_to_string(out.join(files::SUMMARY)).ok()?;
    let s = serde_json::from_str::<TrainSummary>(&summary).ok()?;
    cfg.field
        .init::<B>(device)
        .load_file(
            out.join(files::WEIGHTS),
            &BinFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .ok()
        .map(|_| s)
}

/// The fused engine of the MLP field, starting from the weights of `field`.
fn fused_trainer<'a, B: Backend>(
    cfg: &'a MetaConfig,
    field: &VectorField<B>,
) -> Result<Box<dyn Trainer + 'a>, MetaError> {
    let adam = AdamSettings::BURN.with_weight_decay(cfg.weight_decay);
    let layers = field
        .mlp_layers()?
        .ok_or_else(|| UsageError("the fused trainer needs an MLP field".into()))?;
    let mlp = FusedMlp::new(cfg.field.dim, cfg.field.time_dim, layers).map_err(UsageError)?;
    let device = Default::default();
    Ok(Box::new(FusedTrainer {
        template: cfg.field.init(&device),
        device,
        adam: FusedAdam::new(adam, mlp.layers()),
        settings: adam,
        net: MlpNet {
            mlp,
            buf: Buffers::default(),
        },
    }))
}

/// The fused engine of the set field, starting from the weights of `field`; `images` (the zoo's
/// dataset and classifier architecture) switches the functional term on.
fn fused_set_trainer<'a, B: Backend>(
    cfg: &'a MetaConfig,
    field: &VectorField<B>,
    layout: &'a crate::arch::Layout,
    normalizer: &'a Normalizer,
    images: Option<(&'a Dataset, &crate::arch::Arch)>,
) -> Result<Box<dyn Trainer + 'a>, MetaError> {
    let adam = AdamSettings::BURN.with_weight_decay(cfg.weight_decay);
    let dims = cfg
        .field
        .set
        .ok_or_else(|| UsageError("the fused set trainer needs a set field".into()))?;
    let shape = fused_set::SetShape {
        units: dims.units,
        d_in: dims.d_in,
        d_out: dims.d_out,
        hidden: cfg.field.hidden,
        depth: cfg.field.depth,
        time_dim: cfg.field.time_dim,
        step_input: cfg.field.step_input,
    };
    let layers = field
        .linear_layers()?
        .ok_or_else(|| UsageError("the fused set trainer needs a set field".into()))?;
    let net = fused_set::FusedSet::new(shape, layers).map_err(UsageError)?;
    let device = Default::default();
    Ok(Box::new(FusedTrainer {
        template: cfg.field.init(&device),
        device,
        adam: FusedAdam::new(adam, net.layers()),
        settings: adam,
        net: SetNet::new(cfg, layout, normalizer, net, images),
    }))
}

/// The loss of the trivial model on the held-out set: zero velocity, or for NM-JKO a flat
/// potential (‖y − x‖²).
fn zero_loss(cfg: &MetaConfig, s: &Batch) -> f64 {
    let sq: f64 = if cfg.method == Method::Jko {
        s.0.iter()
            .zip(&s.2)
            .map(|(&y, &x)| f64::from(y - x).powi(2))
            .sum()
    } else {
        s.2.iter().map(|&u| f64::from(u) * f64::from(u)).sum()
    };
    sq / s.2.len() as f64
}

/// How the loop ended.
struct Outcome {
    state: checkpoint::State,
    first_step: usize,
    loop_seconds: f64,
    diverged_at: Option<usize>,
}

/// The training loop from the resumed state (or the start) to the last step or a divergence.
#[allow(clippy::too_many_arguments)]
fn run_loop(
    cfg: &MetaConfig,
    out: &Path,
    trainer: &mut dyn Trainer,
    sampler: &PairSampler<'_>,
    held_set: Option<&Batch>,
    resume: Option<checkpoint::State>,
    fused: bool,
    quiet: bool,
) -> Result<Outcome, MetaError> {
    let loop_started = Instant::now();
    let pb = progress::bar(cfg.steps as u64, "steps", quiet);
    pb.set_prefix(format!("train {}", cfg.method.name()));
    // A checkpoint of the other engine is not resumed (its optimizer file differs).
    let mut state = match resume {
        Some(state) => {
            trainer.resume(out)?;
            pb.set_position(state.step as u64);
            state
        }
        None => {
            trainer.save_field(out)?;
            checkpoint::State {
                fused,
                ..checkpoint::State::default()
            }
        }
    };
    let first_step = state.step + 1;
    let mut batch = Batch::default();
    let mut diverged_at = None;
    for step in first_step..=cfg.steps {
        // Every step's random draws come from its own stream, so a resumed run draws exactly
        // what an uninterrupted one would.
        let mut rng = Rng::new(derive_seed(cfg.seed, step as u64), STREAM_BATCH);
        let mut data_rng = Rng::new(derive_seed(cfg.seed, step as u64), STREAM_FUNCTIONAL);
        sampler.draw_into(cfg.batch_size, &mut rng, &mut batch);
        let lr = cfg.lr_schedule.at(cfg.lr, step, cfg.steps);
        let (value, ce_value) = trainer.step(&batch, lr, &mut data_rng);
        if !value.is_finite() || ce_value.is_some_and(|c| !c.is_finite()) {
            pb.abandon();
            diverged_at = Some(step);
            break;
        }
        state.recent.push(f64::from(value));
        if state.recent.len() > 50 {
            state.recent.remove(0);
        }
        let evaluate = step % cfg.eval_every.max(1) == 0 || step == cfg.steps;
        let held = match (held_set, evaluate) {
            (Some(set), true) => Some(trainer.heldout_loss(set)),
            _ => None,
        };
        if step % 10 == 0 || held.is_some() {
            state.rows.push(checkpoint::LogRow {
                step,
                train_loss: f64::from(value),
                heldout_loss: held.map(|h| h.0),
                functional_loss: ce_value.map(f64::from),
                validation_functional_loss: held.and_then(|h| h.1),
            });
        }
        // The kept model minimizes the training objective on held-out data: the flow-matching
        // loss on held-out runs, plus λ × the functional term's validation cross-entropy.
        let held_loss =
            held.map(|(fm, ce)| fm + ce.map_or(0.0, |c| f64::from(cfg.functional_weight) * c));
        match held_loss {
            Some(h) if state.best.is_none_or(|b| h < b) => {
                state.best = Some(h);
                state.best_step = step;
                trainer.save_field(out)?;
            }
            None if held_set.is_none() && evaluate => {
                state.best_step = step;
                trainer.save_field(out)?;
            }
            _ => {}
        }
        if evaluate && step < cfg.steps {
            state.step = step;
            trainer.checkpoint(out, &state)?;
        }
        pb.inc(1);
        if step % 10 == 0 {
            let best = state.best.unwrap_or(f64::NAN);
            pb.set_message(format!("loss {value:.4} held-out best {best:.4}"));
        }
    }
    pb.finish_and_clear();
    Ok(Outcome {
        state,
        first_step,
        loop_seconds: loop_started.elapsed().as_secs_f64(),
        diverged_at,
    })
}

/// Writes the loss log, its chart and, last, the summary that marks the model finished.
fn finish(
    cfg: &MetaConfig,
    out: &Path,
    o: &Outcome,
    zero_loss: f64,
    fused: bool,
    started: Instant,
) -> Result<TrainSummary, MetaError> {
    let state = &o.state;
    let log = out.join(files::LOSS_LOG);
    write_atomic(&log, checkpoint::csv(&state.rows).as_bytes())
        .map_err(|e| MetaError::file(&log, e))?;
    let chart_rows: Vec<(usize, f64, Option<f64>)> = state
        .rows
        .iter()
        .map(|r| (r.step, r.train_loss, r.heldout_loss))
        .collect();
    super::charts::loss_curve(out, &chart_rows, zero_loss)?;
    checkpoint::discard(out)?;
    let recent = &state.recent;
    let done = o.diverged_at.map_or(cfg.steps, |s| s - 1);
    let summary = TrainSummary {
        method: cfg.method,
        steps: cfg.steps,
        final_loss: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        best_heldout_loss: state.best.unwrap_or(f64::NAN),
        best_step: state.best_step,
        heldout_zero_loss: zero_loss,
        field_params: cfg.field.num_params(),
        engine: if fused { Engine::Fused } else { Engine::Burn },
        seconds: started.elapsed().as_secs_f64(),
        steps_per_second: (done + 1).saturating_sub(o.first_step) as f64 / o.loop_seconds.max(1e-9),
        out: out.into(),
        field_sha256: Some(sha256_hex(
            &fs::read(out.join("field.bin"))
                .map_err(|e| MetaError::file(out.join("field.bin"), e))?,
        )),
        condition_sha256: match cfg.condition {
            Some(_) => {
                let bin = out.join("condition.bin");
                Some(sha256_hex(
                    &fs::read(&bin).map_err(|e| MetaError::file(&bin, e))?,
                ))
            }
            None => None,
        },
        diverged_at: o.diverged_at,
    };
    write_json(&out.join(files::SUMMARY), &summary)?;
    match o.diverged_at {
        Some(step) => Err(MetaError::Diverged {
            step,
            kept: state.best_step,
            out: out.into(),
        }),
        None => Ok(summary),
    }
}
