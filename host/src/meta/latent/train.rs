//! `nmflow vae`: training the VAE over a zoo's checkpoints, resumable, with its measurements.
//!
//! Every minibatch draws `batch_size` checkpoints (a training run and a checkpoint index, both
//! uniform), encodes them, samples `z = μ + e^{lv/2}·ε` (ε from the step's own PRNG stream),
//! decodes and scores reconstruction + β·KL/D; with a functional term it also encodes
//! `functional_samples` training runs' final weights, decodes a posterior sample of each and adds
//! λ × their cross-entropy on `functional_batch` training images, against the labels or (teacher
//! target) against the predictions of the run each was encoded from. Every `eval_every` steps the same
//! objective is measured on held-out runs (posterior means; the functional term on their final
//! weights with fixed images), the best VAE is kept, and a checkpoint lets a killed run resume to
//! the same bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::codec::{self, Codec};
use super::config::{FunctionalTarget, Symmetry, VaeConfig};
use super::network::{Vae, kl, reconstruction};
use crate::arch::{Arch, Layout};
use crate::data::Dataset;
use crate::error::MetaError;
use crate::io::{DirLock, write_atomic};
use crate::meta::files::{self, read_json, write_json};
use crate::meta::metrics::{median, pairwise_disagreement};
use crate::meta::normalize::Normalizer;
use crate::meta::report::AccStats;
use crate::meta::reward::{DataReward, Reward};
use crate::meta::source::standard_normal;
use crate::meta::symmetry::HiddenLayers;
use crate::meta::train::checkpoint;
use crate::meta::trajectories::{self, Trajectories};
use crate::optim::AdamSettings;
use crate::plot::{self, LineChart, Series};
use crate::progress;
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of the minibatch and posterior draws.
const STREAM_BATCH: u64 = 20;
/// PRNG stream of the functional term's runs, posterior draws and images.
const STREAM_FUNCTIONAL: u64 = 21;
/// PRNG stream of the fixed held-out draws.
const STREAM_HELDOUT: u64 = 22;
/// Held-out checkpoints the held-out objective is measured on.
const HELDOUT_POINTS: usize = 512;
/// Training runs whose decoded finals the summary compares with the originals.
const TRAIN_RECONSTRUCTED: usize = 200;
/// Held-out final weights the functional term's validation decodes.
const VALIDATION_RUNS: usize = 64;
/// Training images it scores them on.
const VALIDATION_IMAGES: usize = 4096;

type VaeOptimizer<B> = OptimizerAdaptor<burn::optim::Adam, Vae<B>, B>;

/// Where a VAE job runs (not saved with the VAE).
#[derive(Clone, Debug, Default)]
pub struct VaeEnv {
    /// The data folder (the functional term and the measurements read the zoo's dataset).
    pub data_dir: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Replace a VAE trained with other settings in the output directory instead of refusing.
    pub force: bool,
}

/// One block's reconstruction error on held-out final weights (raw units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockError {
    /// The block's name.
    pub name: String,
    /// Mean squared error of the decoded posterior means.
    pub mse: f64,
    /// `mse` over the block's variance across the held-out runs (1: no better than their mean).
    pub relative: f64,
}

/// What reconstruction keeps of held-out classifiers: the originals (canonical order) against
/// the decoded posterior means of their final weights, on the test split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reconstruction {
    /// Held-out runs measured.
    pub runs: usize,
    /// Test accuracy of the originals.
    pub original: AccStats,
    /// Test accuracy of the decoded classifiers.
    pub decoded: AccStats,
    /// Mean, over runs, of the fraction of test images on which a decoded classifier predicts the
    /// class its original predicts.
    pub agreement: f64,
    /// Per-block error.
    pub blocks: Vec<BlockError>,
    /// Median, over pairs of the originals (the first 200), of the fraction of test images on
    /// which the two predict differently: the runs' functional diversity (absent for fewer than
    /// two runs).
    #[serde(default)]
    pub disagreement_original: Option<f64>,
    /// The same for the decoded classifiers: how much of that diversity the decoder keeps.
    #[serde(default)]
    pub disagreement_decoded: Option<f64>,
}

/// The result of `nmflow vae`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VaeSummary {
    /// Optimizer steps.
    pub steps: usize,
    /// The step of the kept VAE.
    pub best_step: usize,
    /// Training objective averaged over the last 50 steps.
    pub final_loss: f64,
    /// Held-out objective of the kept VAE (NaN without held-out runs).
    pub best_heldout_loss: f64,
    /// Held-out reconstruction error per standardized value (posterior means, every checkpoint).
    pub heldout_reconstruction: f64,
    /// Held-out KL per classifier.
    pub heldout_kl: f64,
    /// The reconstruction of held-out classifiers (absent without held-out runs).
    pub reconstruction: Option<Reconstruction>,
    /// The same measurement on the first training runs (up to 200): what the decoder can
    /// represent, apart from how the encoder generalizes.
    #[serde(default)]
    pub train_reconstruction: Option<Reconstruction>,
    /// Parameters of encoder and decoder.
    pub vae_params: usize,
    /// Parameters of the decoder.
    pub decoder_params: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// SHA-256 of the kept weights (`vae.bin`), checked by every reader.
    pub vae_sha256: String,
    /// The VAE directory.
    pub out: PathBuf,
}

/// One row of the VAE's log (`loss.csv`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Row {
    step: usize,
    loss: f64,
    reconstruction: f64,
    kl: f64,
    functional: Option<f64>,
    heldout: Option<f64>,
    heldout_reconstruction: Option<f64>,
    validation_functional: Option<f64>,
}

/// The loop's state at a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    step: usize,
    rows: Vec<Row>,
    recent: Vec<f64>,
    best: Option<f64>,
    best_step: usize,
}

/// The zoo's checkpoints in the VAE's input form.
struct Points {
    train: Trajectories,
    held: Trajectories,
}

/// Trains a VAE on the zoo in `zoo_dir` into `out`. A finished VAE with the same settings is
/// returned without work; an interrupted one resumes from its last checkpoint.
///
/// # Errors
/// Settings out of range ([`MetaError::Usage`], before anything is written), zoo, data and file
/// errors, and [`MetaError::Diverged`] when the loss becomes non-finite.
pub fn train_vae<B: AutodiffBackend>(
    cfg: &VaeConfig,
    zoo_dir: &Path,
    out: &Path,
    env: &VaeEnv,
    device: &B::Device,
) -> Result<VaeSummary, MetaError> {
    let started = Instant::now();
    let manifest = crate::zoo::Manifest::read(zoo_dir)?;
    manifest.require_single_task(zoo_dir)?;
    cfg.validate(&manifest)?;
    if out.exists() && !out.is_dir() {
        return Err(MetaError::file(
            out,
            "exists and is not a directory; choose another --out",
        ));
    }
    fs::create_dir_all(out).map_err(|e| MetaError::file(out, e))?;
    let _lock = DirLock::acquire(out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => MetaError::Busy(e.to_string()),
        _ => MetaError::file(out, e),
    })?;
    if files::same_settings(cfg, out, codec::SETTINGS, "VAE", env.force)? {
        if let Ok(done) = read_json::<VaeSummary>(&out.join(codec::SUMMARY)) {
            return Ok(done);
        }
    } else {
        checkpoint::discard(out)?;
        let _ = fs::remove_file(out.join(codec::SUMMARY));
    }
    let (manifest, mut train, mut held) = trajectories::load(zoo_dir)?;
    let layout = manifest.layout.clone();
    let arch = manifest.config.arch.clone();
    let data = Dataset::load(manifest.config.dataset, &env.data_dir)?;
    // Canonical order first, then the statistics of the canonical weights.
    if cfg.symmetry == Symmetry::Sort
        && let Some(sym) = HiddenLayers::of(&layout)
    {
        sym.canonicalize(&mut train.data);
        sym.canonicalize(&mut held.data);
    }
    let normalizer = Normalizer::fit(&layout, &train);
    normalizer.apply(&mut train.data);
    normalizer.apply(&mut held.data);
    write_json(&out.join(codec::SETTINGS), cfg)?;
    write_json(&out.join(files::NORMALIZER), &normalizer)?;
    write_json(&out.join(files::LAYOUT), &layout)?;
    let points = Points { train, held };

    B::seed(device, cfg.seed);
    let mut vae: Vae<B> = cfg.shape.init(device);
    let mut optim: VaeOptimizer<B> = AdamSettings::BURN.burn_config().init();
    let mut state = State::default();
    if let Some(saved) = checkpoint::load_state_as::<State>(out)? {
        let dir = checkpoint::folder(out);
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        vae = vae
            .load_file(dir.join(codec::WEIGHTS), &recorder, device)
            .map_err(|e| MetaError::file(dir.join("vae.bin"), e))?;
        let record = Recorder::<B>::load(&recorder, dir.join("optim"), device)
            .map_err(|e| MetaError::file(dir.join("optim.bin"), e))?;
        optim = optim.load_record(record);
        state = saved;
    } else {
        save_weights(&vae.valid(), out)?;
    }
    let reward = (cfg.functional_weight > 0.0).then(|| {
        DataReward::<B>::new(
            Reward::CrossEntropy,
            &arch,
            &layout,
            &data,
            &normalizer,
            device,
        )
    });
    let heldout = HeldOut::new(cfg, &points.held);
    let pb = progress::bar(cfg.steps as u64, "steps", env.quiet);
    pb.set_prefix("vae");
    pb.set_position(state.step as u64);
    let loop_start = state.step + 1;
    for step in loop_start..=cfg.steps {
        let lr = cfg.lr_schedule.at(cfg.lr, step, cfg.steps);
        let (loss, row) = objective(cfg, &vae, &points.train, reward.as_ref(), step, device);
        if !row.loss.is_finite() {
            pb.abandon();
            return Err(MetaError::Diverged {
                step,
                kept: state.best_step,
                out: out.into(),
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &vae);
        vae = optim.step(lr, vae, grads);
        state.recent.push(row.loss);
        if state.recent.len() > 50 {
            state.recent.remove(0);
        }
        let evaluate = step % cfg.eval_every == 0 || step == cfg.steps;
        let mut row = row;
        if evaluate {
            let valid = vae.valid();
            if let Some(h) = &heldout {
                let (objective, rec, ce) = h.measure(cfg, &valid, reward.as_ref(), device)?;
                row.heldout = Some(objective);
                row.heldout_reconstruction = Some(rec);
                row.validation_functional = ce;
                if state.best.is_none_or(|b| objective < b) {
                    state.best = Some(objective);
                    state.best_step = step;
                    save_weights(&valid, out)?;
                }
            } else {
                state.best_step = step;
                save_weights(&valid, out)?;
            }
        }
        if step % 10 == 0 || evaluate {
            state.rows.push(row.clone());
        }
        if evaluate && step < cfg.steps {
            state.step = step;
            checkpoint::save_with(out, &state, |dir| {
                let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
                vae.clone()
                    .save_file(dir.join(codec::WEIGHTS), &recorder)
                    .map_err(|e| MetaError::file(dir.join("vae.bin"), e))?;
                Recorder::<B>::record(&recorder, optim.to_record(), dir.join("optim"))
                    .map_err(|e| MetaError::file(dir.join("optim.bin"), e))
            })?;
        }
        pb.inc(1);
        if step % 10 == 0 {
            pb.set_message(format!(
                "loss {:.4} held-out best {:.4}",
                row.loss,
                state.best.unwrap_or(f64::NAN)
            ));
        }
    }
    pb.finish_and_clear();
    finish::<B>(cfg, out, &state, &arch, &data, &points, started, device)
}

/// Writes the VAE's weights atomically as `out/vae.bin`.
fn save_weights<B: Backend>(vae: &Vae<B>, out: &Path) -> Result<(), MetaError> {
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let tmp = out.join("vae-partial");
    vae.clone()
        .save_file(tmp.clone(), &recorder)
        .map_err(|e| MetaError::file(&tmp, e))?;
    let to = out.join("vae.bin");
    fs::rename(out.join("vae-partial.bin"), &to).map_err(|e| MetaError::file(&to, e))
}

/// A `[n, m]` tensor of standard normal draws from `rng`.
fn normals<B: Backend>(n: usize, m: usize, rng: &mut Rng, device: &B::Device) -> Tensor<B, 2> {
    let v: Vec<f32> = (0..n * m).map(|_| standard_normal(rng)).collect();
    Tensor::from_data(TensorData::new(v, [n, m]), device)
}

/// Encodes `x`, decodes a posterior sample: `(x̂, μ, lv)`.
fn pass<B: Backend>(
    vae: &Vae<B>,
    x: Tensor<B, 2>,
    rng: &mut Rng,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let (mu, lv) = vae.encode(x);
    let [n, l] = mu.dims();
    let z = mu.clone() + (lv.clone() * 0.5).exp() * normals::<B>(n, l, rng, device);
    (vae.decode(z), mu, lv)
}

/// The training objective of step `step` (differentiable) and its log row.
fn objective<B: AutodiffBackend>(
    cfg: &VaeConfig,
    vae: &Vae<B>,
    train: &Trajectories,
    reward: Option<&DataReward<B>>,
    step: usize,
    device: &B::Device,
) -> (Tensor<B, 1>, Row) {
    let d = cfg.shape.dim;
    let mut rng = Rng::new(derive_seed(cfg.seed, step as u64), STREAM_BATCH);
    let runs = u32::try_from(train.len()).unwrap_or(u32::MAX);
    let ks = u32::try_from(train.checkpoints()).unwrap_or(u32::MAX);
    let mut x = Vec::with_capacity(cfg.batch_size * d);
    for _ in 0..cfg.batch_size {
        let i = rng.below(runs) as usize;
        let k = rng.below(ks) as usize;
        x.extend_from_slice(train.point(i, k));
    }
    let x = Tensor::<B, 2>::from_data(TensorData::new(x, [cfg.batch_size, d]), device);
    let (x_hat, mu, lv) = pass(vae, x.clone(), &mut rng, device);
    let rec = reconstruction(x_hat, x);
    let divergence = kl(mu, lv);
    let mut loss = rec.clone() + divergence.clone() * (f64::from(cfg.beta) / d as f64);
    let mut functional = None;
    if let Some(r) = reward {
        let mut frng = Rng::new(derive_seed(cfg.seed, step as u64), STREAM_FUNCTIONAL);
        let n = cfg.functional_samples;
        let last = train.checkpoints() - 1;
        let mut f = Vec::with_capacity(n * d);
        for _ in 0..n {
            f.extend_from_slice(train.point(frng.below(runs) as usize, last));
        }
        let f = Tensor::<B, 2>::from_data(TensorData::new(f, [n, d]), device);
        let (f_hat, _, _) = pass(vae, f.clone(), &mut frng, device);
        let ce = match cfg.functional_target {
            FunctionalTarget::Labels => r.loss(f_hat, cfg.functional_batch, &mut frng),
            FunctionalTarget::Teacher => {
                r.loss_distilled(f_hat, f.inner(), cfg.functional_batch, &mut frng)
            }
        };
        functional = Some(f64::from(ce.clone().into_scalar().elem::<f32>()));
        loss = loss + ce * f64::from(cfg.functional_weight);
    }
    let row = Row {
        step,
        loss: f64::from(loss.clone().into_scalar().elem::<f32>()),
        reconstruction: f64::from(rec.into_scalar().elem::<f32>()),
        kl: f64::from(divergence.into_scalar().elem::<f32>()),
        functional,
        ..Row::default()
    };
    (loss, row)
}

/// The fixed held-out draws.
struct HeldOut {
    points: Vec<f32>,
    finals: Vec<f32>,
}

impl HeldOut {
    fn new(cfg: &VaeConfig, held: &Trajectories) -> Option<Self> {
        if held.is_empty() {
            return None;
        }
        let mut rng = Rng::new(cfg.seed, STREAM_HELDOUT);
        let total = held.len() * held.checkpoints();
        let mut points = Vec::new();
        for _ in 0..HELDOUT_POINTS.min(total) {
            let q = rng.below(u32::try_from(total).unwrap_or(u32::MAX)) as usize;
            points.extend_from_slice(held.point(q / held.checkpoints(), q % held.checkpoints()));
        }
        let last = held.checkpoints() - 1;
        let finals = (0..held.len().min(VALIDATION_RUNS))
            .flat_map(|i| held.point(i, last).to_vec())
            .collect();
        Some(Self { points, finals })
    }

    /// `(objective, reconstruction, functional validation)` of the posterior means.
    fn measure<B: AutodiffBackend>(
        &self,
        cfg: &VaeConfig,
        vae: &Vae<B::InnerBackend>,
        reward: Option<&DataReward<B>>,
        device: &B::Device,
    ) -> Result<(f64, f64, Option<f64>), MetaError> {
        let d = cfg.shape.dim;
        let n = self.points.len() / d;
        let x = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(self.points.clone(), [n, d]),
            device,
        );
        let (mu, lv) = vae.encode(x.clone());
        let rec = f64::from(
            reconstruction(vae.decode(mu.clone()), x)
                .into_scalar()
                .elem::<f32>(),
        );
        let divergence = f64::from(kl(mu, lv).into_scalar().elem::<f32>());
        let mut objective = rec + f64::from(cfg.beta) * divergence / d as f64;
        let mut ce = None;
        if let Some(r) = reward {
            let m = self.finals.len() / d;
            let f = Tensor::<B::InnerBackend, 2>::from_data(
                TensorData::new(self.finals.clone(), [m, d]),
                device,
            );
            let decoded = vae.decode(vae.encode(f.clone()).0);
            let mut rng = Rng::new(cfg.seed, STREAM_HELDOUT + 1);
            let loss = match cfg.functional_target {
                FunctionalTarget::Labels => r.loss_inner(decoded, VALIDATION_IMAGES, &mut rng),
                FunctionalTarget::Teacher => {
                    r.loss_inner_distilled(decoded, f, VALIDATION_IMAGES, &mut rng)
                }
            };
            let c = f64::from(loss.into_scalar().elem::<f32>());
            objective += f64::from(cfg.functional_weight) * c;
            ce = Some(c);
        }
        Ok((objective, rec, ce))
    }
}

/// Measures the kept VAE, writes the log, its chart and, last, the summary.
#[allow(clippy::too_many_arguments)]
fn finish<B: AutodiffBackend>(
    cfg: &VaeConfig,
    out: &Path,
    state: &State,
    arch: &Arch,
    data: &Dataset,
    points: &Points,
    started: Instant,
    device: &B::Device,
) -> Result<VaeSummary, MetaError> {
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let vae = cfg
        .shape
        .init::<B::InnerBackend>(device)
        .load_file(out.join(codec::WEIGHTS), &recorder, device)
        .map_err(|e| MetaError::file(out.join("vae.bin"), e))?;
    let normalizer: Normalizer = read_json(&out.join(files::NORMALIZER))?;
    let layout: Layout = read_json(&out.join(files::LAYOUT))?;
    let codec = Codec::new(cfg.clone(), normalizer, layout, vae);
    let (mut held_rec, mut held_kl) = (f64::NAN, f64::NAN);
    let mut measured = None;
    if !points.held.is_empty() {
        let (rec, klv) = heldout_scores(&codec, &points.held, device);
        held_rec = rec;
        held_kl = klv;
        let n = points.held.len();
        measured = Some(reconstruct(
            &codec,
            arch,
            points.held.finals(),
            n,
            data,
            device,
        )?);
    }
    let train_measured = {
        let n = points.train.len().min(TRAIN_RECONSTRUCTED);
        let last = points.train.checkpoints() - 1;
        let finals = (0..n)
            .flat_map(|i| points.train.point(i, last).to_vec())
            .collect();
        reconstruct(&codec, arch, finals, n, data, device)?
    };
    write_log(out, &state.rows)?;
    let summary = VaeSummary {
        steps: cfg.steps,
        best_step: state.best_step,
        final_loss: state.recent.iter().sum::<f64>() / state.recent.len().max(1) as f64,
        best_heldout_loss: state.best.unwrap_or(f64::NAN),
        heldout_reconstruction: held_rec,
        heldout_kl: held_kl,
        reconstruction: measured,
        train_reconstruction: Some(train_measured),
        vae_params: usize::try_from(cfg.shape.num_params_checked().unwrap_or(0))
            .unwrap_or(usize::MAX),
        decoder_params: cfg.shape.decoder_params(),
        seconds: started.elapsed().as_secs_f64(),
        vae_sha256: codec::weights_sha256(out)?,
        out: out.into(),
    };
    checkpoint::discard(out)?;
    write_json(&out.join(codec::SUMMARY), &summary)?;
    Ok(summary)
}

/// Reconstruction error per standardized value and KL per classifier over every checkpoint of the
/// runs `held` (already in the VAE's input form).
fn heldout_scores<B: Backend>(
    codec: &Codec<B>,
    held: &Trajectories,
    device: &B::Device,
) -> (f64, f64) {
    let d = codec.config.shape.dim;
    let (mut se, mut kls, mut n) = (0.0f64, 0.0f64, 0usize);
    for chunk in held.data.chunks(1024 * d) {
        let m = chunk.len() / d;
        let x = Tensor::<B, 2>::from_data(TensorData::new(chunk.to_vec(), [m, d]), device);
        let (mu, lv) = codec.vae.encode(x.clone());
        let r: f32 = reconstruction(codec.vae.decode(mu.clone()), x)
            .into_scalar()
            .elem();
        let k: f32 = kl(mu, lv).into_scalar().elem();
        se += f64::from(r) * (m * d) as f64;
        kls += f64::from(k) * m as f64;
        n += m;
    }
    (se / (n * d).max(1) as f64, kls / n.max(1) as f64)
}

/// Decodes the posterior means of `n` runs' final weights `finals` (the VAE's input form) and
/// compares the classifiers with the originals on the test split.
fn reconstruct<B: Backend>(
    codec: &Codec<B>,
    arch: &Arch,
    finals: Vec<f32>,
    n: usize,
    data: &Dataset,
    device: &B::Device,
) -> Result<Reconstruction, MetaError> {
    let d = codec.config.shape.dim;
    // The finals in raw units (canonical order): undo the standardization of the input form.
    let mut original = finals.clone();
    codec.normalizer.invert(&mut original);
    let z = {
        let x = Tensor::<B, 2>::from_data(TensorData::new(finals, [n, d]), device);
        crate::backend::values::<f32>(codec.vae.encode(x).0.into_data())?
    };
    let decoded = codec.decode(&z, device)?;
    let layout = &codec.layout;
    let acc_o = crate::meta::eval::accuracies::<B>(arch, layout, &original, n, data, device)?;
    let acc_d = crate::meta::eval::accuracies::<B>(arch, layout, &decoded, n, data, device)?;
    let dim = data.test.dim;
    let pred_o =
        crate::meta::eval::predictions::<B>(arch, layout, &original, n, &data.test.x, dim, device)?;
    let pred_d =
        crate::meta::eval::predictions::<B>(arch, layout, &decoded, n, &data.test.x, dim, device)?;
    let agreement = pred_o.iter().zip(&pred_d).filter(|(a, b)| a == b).count() as f64
        / pred_o.len().max(1) as f64;
    let offsets = layout.offsets();
    let blocks = layout
        .blocks
        .iter()
        .zip(&offsets)
        .map(|(b, &off)| {
            let len = b.len();
            let (mut se, mut s, mut s2) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..n {
                let (o, r) = (
                    &original[i * d + off..i * d + off + len],
                    &decoded[i * d + off..i * d + off + len],
                );
                for (&a, &c) in o.iter().zip(r) {
                    se += f64::from(a - c).powi(2);
                }
            }
            // The variance of the block's values across runs, coordinate by coordinate.
            for j in 0..len {
                let (mut m1, mut m2) = (0.0f64, 0.0f64);
                for i in 0..n {
                    let v = f64::from(original[i * d + off + j]);
                    m1 += v;
                    m2 += v * v;
                }
                let m = m1 / n as f64;
                s += m2 / n as f64 - m * m;
                s2 += 1.0;
            }
            let mse = se / (n * len).max(1) as f64;
            BlockError {
                name: b.name.clone(),
                mse,
                relative: mse / (s / s2.max(1.0)).max(1e-30),
            }
        })
        .collect();
    Ok(Reconstruction {
        runs: n,
        original: AccStats::of(&acc_o),
        decoded: AccStats::of(&acc_d),
        agreement,
        blocks,
        disagreement_original: diversity(&pred_o, data.test.len()),
        disagreement_decoded: diversity(&pred_d, data.test.len()),
    })
}

/// The median pairwise prediction disagreement of classifiers whose predictions on `m` inputs are
/// `preds`; `None` without a pair (a NaN would not survive the JSON summary).
fn diversity(preds: &[i64], m: usize) -> Option<f64> {
    let pairs = pairwise_disagreement(preds, m);
    (!pairs.is_empty()).then(|| median(pairs))
}

/// `loss.csv` and `loss.png`.
fn write_log(out: &Path, rows: &[Row]) -> Result<(), MetaError> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut csv = String::from(
        "step,loss,reconstruction,kl,functional,heldout,heldout_reconstruction,validation_functional\n",
    );
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            r.step,
            r.loss,
            r.reconstruction,
            r.kl,
            opt(r.functional),
            opt(r.heldout),
            opt(r.heldout_reconstruction),
            opt(r.validation_functional)
        ));
    }
    let path = out.join(files::LOSS_LOG);
    write_atomic(&path, csv.as_bytes()).map_err(|e| MetaError::file(&path, e))?;
    let line = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r.step as f64, f(r)?)))
            .collect()
    };
    let mut series = vec![
        Series::line("training objective", line(&|r| Some(r.loss))),
        Series::line(
            "reconstruction (training)",
            line(&|r| Some(r.reconstruction)),
        ),
        Series::marked("held-out objective", line(&|r| r.heldout)),
        Series::marked(
            "held-out reconstruction",
            line(&|r| r.heldout_reconstruction),
        ),
    ];
    if rows.iter().any(|r| r.functional.is_some()) {
        series.push(Series::line(
            "functional CE (training)",
            line(&|r| r.functional),
        ));
    }
    plot::line_chart(
        &out.join("loss.png"),
        &LineChart {
            title: "VAE loss".into(),
            x_label: "optimizer step".into(),
            y_label: "per standardized value; cross-entropy".into(),
            series,
            log_y: true,
            legend_top: true,
            ..LineChart::default()
        },
    )?;
    Ok(())
}
