//! `nmflow shift-test` as a library call: the settings, the tests (each a sample Q of one size
//! drawn with one seed from P's test split — the null — or from the shifted set), the resumable
//! record files, and the calibrated comparison.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::detectron::{self, DetectronSettings, member_logits};
use super::ensemble::{Ensemble, RejectionRule, argmax_rows};
use super::meta::{self, GuidanceSettings};
use super::pq::PqTable;
use super::report::{self, Results};
use super::spec::ShiftSpec;
use super::tilt::{self, TiltSettings};
use crate::arch::{Arch, Layout};
use crate::data::dataset::{NUM_CLASSES, Split};
use crate::data::{Dataset, DatasetView};
use crate::error::{MetaError, UsageError, ZooError};
use crate::io::DirLock;
use crate::meta::files::{read_json, same_settings, write_json};
use crate::meta::sample::MetaModel;
use crate::progress;
use crate::zoo::manifest::Manifest;
use crate::zoo::shard;
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// The settings file of an output directory.
pub const SETTINGS: &str = "shift-config.json";
/// The results, `j[method][statistic][size]`.
pub const RESULTS: &str = "shift.json";
/// Facts about the run: the base classifier, accuracies, timing.
pub const RUN: &str = "shift-run.json";
/// The folder of per-chunk test records.
pub const RECORDS: &str = "records";

/// PRNG stream of a test's sample.
const STREAM_SAMPLE: u64 = 43;

/// A detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ShiftMethod {
    /// Detectron: CDCs trained by Adam from the base classifier.
    Detectron,
    /// Meta-detectron: members sampled from the meta-model with reward guidance.
    Meta,
    /// Meta-detectron by adjoint matching: members sampled from the meta-model fine-tuned
    /// towards the objective on each test's sample.
    #[serde(rename = "meta-adjoint")]
    MetaAdjoint,
}

impl ShiftMethod {
    /// The name in files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Detectron => "detectron",
            Self::Meta => "meta",
            Self::MetaAdjoint => "meta-adjoint",
        }
    }
}

/// Which distribution a test's sample comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypothesis {
    /// P's test split.
    Null,
    /// The shifted set.
    Alt,
}

impl Hypothesis {
    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Alt => "alt",
        }
    }
}

/// Every setting of a shift test (`shift-config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftConfig {
    /// The zoo of P's classifiers (P is its dataset view; the base classifier is its first
    /// held-out run).
    pub zoo: String,
    /// The meta-model trained on that zoo (needed by `meta`).
    pub model: Option<String>,
    /// The shifted set.
    pub shift: ShiftSpec,
    /// Sample sizes |Q|.
    pub sizes: Vec<usize>,
    /// Calibration seeds per size and hypothesis (null seeds set the threshold; alternative
    /// seeds measure power).
    pub seeds: usize,
    /// Further null seeds, held out from calibration, that measure the observed false-positive
    /// rate.
    pub heldout_seeds: usize,
    /// The detectors.
    pub methods: Vec<ShiftMethod>,
    /// The false-positive rate the threshold is set at.
    pub alpha: f64,
    /// At most this many ensemble members besides the base classifier.
    pub ensemble: usize,
    /// Stop when the remaining count has not fallen for this many members.
    pub patience: usize,
    /// Rows per batch (P images plus the remaining Q inputs).
    pub batch: usize,
    /// Detectron: epochs over P's training images per CDC.
    pub epochs: usize,
    /// Detectron: Adam's learning rate.
    pub lr: f64,
    /// Use only the first this many training images of P (all when absent).
    pub p_train: Option<usize>,
    /// Meta-detectron: Euler steps per member.
    pub guidance_steps: usize,
    /// Meta-detectron: guidance strength γ.
    pub guidance_scale: f64,
    /// Meta-detectron: weight of the disagreement loss against the cross-entropy on P.
    pub guidance_lambda: f64,
    /// Meta-detectron: members start near the base classifier's initialization (ρ; see
    /// [`GuidanceSettings::start_near_base`]); fresh source samples when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_near_base: Option<f64>,
    /// Meta-detectron by adjoint matching: the per-test tilt.
    #[serde(default = "default_tilt")]
    pub tilt: TiltSettings,
    /// Tests trained together (one record file each).
    pub chunk: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// The tilt settings of a comparison that does not name them (`nmflow finetune`'s defaults, 50
/// iterations).
pub fn default_tilt() -> TiltSettings {
    TiltSettings {
        iterations: 50,
        lambda: 10_000.0,
        lr: 1e-3,
        trajectories: 16,
        steps: 20,
    }
}

impl ShiftConfig {
    /// Checks ranges that do not need the data.
    ///
    /// # Errors
    /// [`UsageError`] naming the setting.
    pub fn validate(&self) -> Result<(), UsageError> {
        let bad = |m: String| Err(UsageError(m));
        if self.sizes.is_empty() || self.sizes.contains(&0) {
            return bad(format!(
                "--sizes must list sample sizes of at least 1 (got {:?})",
                self.sizes
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return bad(format!("--alpha must be in (0, 1) (got {})", self.alpha));
        }
        // The threshold is the ⌈(1 − α)(n + 1)⌉-th smallest of n null scores.
        let least = (1.0 / self.alpha - 1.0 - 1e-9).ceil().max(1.0) as usize;
        if self.seeds < least {
            return bad(format!(
                "--seeds must be at least {least} to calibrate a threshold at --alpha {} (got {})",
                self.alpha, self.seeds
            ));
        }
        if self.methods.is_empty() {
            return bad("--methods must name at least one of detectron, meta".into());
        }
        if self.needs_model() && self.model.is_none() {
            return bad(
                "--methods meta and meta-adjoint need --model (a meta-model trained on --zoo)"
                    .into(),
            );
        }
        let t = &self.tilt;
        if t.iterations == 0
            || t.trajectories == 0
            || t.steps == 0
            || !(t.lambda > 0.0 && t.lambda.is_finite())
            || !(t.lr > 0.0 && t.lr.is_finite())
        {
            return bad(
                "--tilt-iterations, --tilt-trajectories and --tilt-steps must be at least 1, --tilt-lambda and --tilt-lr positive"
                    .into(),
            );
        }
        if self.ensemble == 0 || self.patience == 0 {
            return bad("--ensemble and --patience must be at least 1".into());
        }
        let largest = self.sizes.iter().copied().max().unwrap_or(0);
        if self.batch <= largest {
            return bad(format!(
                "--batch ({}) must exceed the largest sample size ({largest}): a batch holds the sample and P images",
                self.batch
            ));
        }
        if self.epochs == 0 || !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--epochs must be at least 1 and --lr positive".into());
        }
        if self.p_train == Some(0) {
            return bad("--p-train must be at least 1".into());
        }
        if self.guidance_steps == 0
            || !(self.guidance_scale >= 0.0 && self.guidance_scale.is_finite())
            || !(self.guidance_lambda >= 0.0 && self.guidance_lambda.is_finite())
        {
            return bad(
                "--guidance-steps must be at least 1, --guidance-scale and --guidance-lambda finite and ≥ 0"
                    .into(),
            );
        }
        if let Some(rho) = self.start_near_base
            && !(rho > 0.0 && rho <= 1.0)
        {
            return bad(format!("--start-near-base must be in (0, 1] (got {rho})"));
        }
        if self.chunk == 0 {
            return bad("--chunk must be at least 1".into());
        }
        Ok(())
    }

    fn needs_model(&self) -> bool {
        self.methods
            .iter()
            .any(|m| matches!(m, ShiftMethod::Meta | ShiftMethod::MetaAdjoint))
    }

    fn rule(&self) -> RejectionRule {
        RejectionRule {
            max_members: self.ensemble,
            patience: self.patience,
        }
    }
}

/// One test's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// The seed index.
    pub seed: usize,
    /// The remaining count: the sample size, then after every member.
    pub counts: Vec<usize>,
    /// The ensemble's predictive entropy on every input of the sample.
    pub entropies: Vec<f64>,
    /// The base classifier's accuracy on the sample (with its true labels).
    pub base_accuracy: f64,
}

/// A record file: the tests of one chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// The detector.
    pub method: ShiftMethod,
    /// The hypothesis the samples come from.
    pub hypothesis: Hypothesis,
    /// The sample size.
    pub size: usize,
    /// The first seed index.
    pub first: usize,
    /// Wall-clock seconds of the chunk.
    pub seconds: f64,
    /// The tests.
    pub tests: Vec<TestRecord>,
}

/// Facts about a finished comparison (`shift-run.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// P's view.
    pub p: DatasetView,
    /// The shifted set.
    pub shift: String,
    /// The base classifier: the zoo's first held-out run.
    pub base_run: usize,
    /// Its accuracy on P's test split.
    pub base_p_accuracy: f64,
    /// Its accuracy on the whole shifted set.
    pub base_shift_accuracy: f64,
    /// Held-out runs of the zoo whose accuracies are averaged below.
    pub zoo_runs: usize,
    /// Their mean accuracy on P's test split.
    pub zoo_p_accuracy: f64,
    /// Their mean accuracy on the shifted set.
    pub zoo_shift_accuracy: f64,
    /// P's training images the detectors used.
    pub p_train: usize,
    /// Seconds of this invocation (records loaded from an earlier one excluded).
    pub seconds: f64,
    /// The output directory.
    pub out: PathBuf,
}

/// Where a comparison runs.
#[derive(Clone, Debug, Default)]
pub struct ShiftEnv {
    /// The data folder.
    pub data_dir: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Replace an output directory that holds another comparison.
    pub force: bool,
    /// A finished or partial comparison of another shifted set with otherwise equal settings:
    /// its null records (which do not depend on the shifted set) are copied instead of redone.
    pub null_from: Option<PathBuf>,
}

/// The data of a comparison: P's training images with the base's predictions, and the pools
/// samples are drawn from.
struct Pools {
    p_train: Split,
    p_hat: Vec<u8>,
    null: Split,
    alt: Split,
}

/// Runs (or resumes) a whole comparison and writes `shift.json`, `shift-run.json`, `shift.md`
/// and `roc-n{size}.png` into `out`.
///
/// # Errors
/// Usage errors (settings; a shifted set of another input shape; a sample larger than a pool; a
/// model of another zoo), zoo, model, data and file errors.
pub fn shift_test<B: AutodiffBackend>(
    cfg: &ShiftConfig,
    out: &Path,
    env: &ShiftEnv,
    device: &B::Device,
) -> Result<(Results, RunInfo), MetaError> {
    cfg.validate()?;
    let started = Instant::now();
    let zoo_dir = Path::new(&cfg.zoo);
    let manifest = Manifest::read(zoo_dir)?;
    manifest.require_single_task(zoo_dir)?;
    let arch = manifest.config.arch.clone();
    let layout = manifest.layout.clone();
    let p_view = manifest.config.dataset;
    arch.check_input(
        cfg.shift.view.input_shape(),
        NUM_CLASSES,
        &format!("{} (--shift)", cfg.shift),
    )?;
    let model = match (&cfg.model, cfg.needs_model()) {
        (Some(dir), true) => {
            let m = MetaModel::<B>::load(Path::new(dir), device)?;
            m.require_weight_space("nmflow shift-test")?;
            m.require_no_step_input("nmflow shift-test")?;
            let found = crate::meta::config::manifest_hash(zoo_dir)?;
            if found != m.config.zoo_manifest_sha256 {
                return Err(MetaError::Incompatible {
                    model: dir.into(),
                    zoo: zoo_dir.into(),
                    expected: m.config.zoo_manifest_sha256.clone(),
                    found,
                });
            }
            Some(m)
        }
        _ => None,
    };
    let p_data = Dataset::load(p_view, &env.data_dir)?;
    let shift_data = Dataset::load(cfg.shift.view, &env.data_dir)?;
    let mut alt = shift_data.test.clone();
    if let Some(t) = cfg.shift.transform {
        let s = cfg.shift.view.pixel_scaling();
        alt = t.apply(&alt, -s.mean / s.std);
    }
    let largest = cfg.sizes.iter().copied().max().unwrap_or(0);
    if largest > p_data.test.len() || largest > alt.len() {
        return Err(UsageError(format!(
            "--sizes {largest}: a sample holds distinct images, but P's test split ({p_view}) has {} and the shifted set ({}) {}",
            p_data.test.len(),
            cfg.shift,
            alt.len()
        ))
        .into());
    }
    let p_train = match cfg.p_train {
        Some(k) => p_data.train.head(k),
        None => p_data.train.clone(),
    };

    if let Some(from) = &env.null_from {
        check_null_source(cfg, from)?;
    }
    fs::create_dir_all(out).map_err(|e| MetaError::file(out, e))?;
    let _lock = DirLock::acquire(out).map_err(|e| MetaError::file(out, e))?;
    claim(cfg, out, env.force)?;

    let (base_run, base_init, base) = heldout_finals(zoo_dir, &manifest, 1)?
        .into_iter()
        .next()
        .ok_or_else(|| ZooError::corrupt(zoo_dir.join("manifest.json"), "has no held-out runs"))?;
    let p_hat = argmax_rows(
        &logits_on::<B>(&arch, &layout, &base, &p_train, device)?,
        NUM_CLASSES,
    );
    let pools = Pools {
        p_train,
        p_hat,
        null: p_data.test.clone(),
        alt,
    };

    if let Some(from) = &env.null_from {
        adopt_nulls(from, out)?;
    }
    let inner = model.as_ref().map(MetaModel::valid);
    let per_size = 2 * cfg.seeds + cfg.heldout_seeds;
    let total = cfg.methods.len() * cfg.sizes.len() * per_size;
    let bar = progress::bar(total as u64, "tests", env.quiet);
    bar.set_prefix("shift-test");
    let mut chunks = Vec::new();
    for &method in &cfg.methods {
        for &size in &cfg.sizes {
            for (hyp, count) in [
                (Hypothesis::Null, cfg.seeds + cfg.heldout_seeds),
                (Hypothesis::Alt, cfg.seeds),
            ] {
                let mut first = 0;
                while first < count {
                    let len = cfg.chunk.min(count - first);
                    bar.set_message(format!("{} {} |Q|={size}", method.name(), hyp.name()));
                    let path = out.join(RECORDS).join(format!(
                        "{}-{}-n{size}-s{first:04}.json",
                        method.name(),
                        hyp.name()
                    ));
                    let rec = match read_record(&path) {
                        Some(r) if r.tests.len() == len && r.first == first => r,
                        _ => {
                            let r = run_chunk::<B>(
                                cfg,
                                method,
                                hyp,
                                size,
                                first,
                                len,
                                &arch,
                                &layout,
                                &base,
                                &base_init,
                                &pools,
                                model.as_ref(),
                                inner.as_ref(),
                                device,
                            )?;
                            write_record(&path, &r)?;
                            r
                        }
                    };
                    bar.inc(len as u64);
                    chunks.push(rec);
                    first += len;
                }
            }
        }
    }
    bar.finish_and_clear();

    let results = report::analyse(cfg, &chunks);
    let zoo = heldout_finals(zoo_dir, &manifest, 100)?;
    let mut p_acc = 0.0;
    let mut s_acc = 0.0;
    for (_, _, w) in &zoo {
        p_acc += accuracy::<B>(&arch, &layout, w, &pools.null, device)?;
        s_acc += accuracy::<B>(&arch, &layout, w, &pools.alt, device)?;
    }
    let info = RunInfo {
        p: p_view,
        shift: cfg.shift.to_string(),
        base_run,
        base_p_accuracy: accuracy::<B>(&arch, &layout, &base, &pools.null, device)?,
        base_shift_accuracy: accuracy::<B>(&arch, &layout, &base, &pools.alt, device)?,
        zoo_runs: zoo.len(),
        zoo_p_accuracy: p_acc / zoo.len().max(1) as f64,
        zoo_shift_accuracy: s_acc / zoo.len().max(1) as f64,
        p_train: pools.p_train.len(),
        seconds: started.elapsed().as_secs_f64(),
        out: out.to_path_buf(),
    };
    report::write(out, cfg, &results, &chunks, &info)?;
    write_json(&out.join(RESULTS), &results)?;
    write_json(&out.join(RUN), &info)?;
    Ok((results, info))
}

/// The seed of test `index` of a hypothesis and size.
fn test_seed(seed: u64, hyp: Hypothesis, size: usize, index: usize) -> u64 {
    let h = match hyp {
        Hypothesis::Null => 0,
        Hypothesis::Alt => 1,
    };
    derive_seed(derive_seed(derive_seed(seed, h), size as u64), index as u64)
}

/// `n` distinct indices below `len` (a partial Fisher–Yates shuffle).
fn distinct(len: usize, n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    for i in 0..n {
        let j = i + rng.below(u32::try_from(len - i).unwrap_or(u32::MAX)) as usize;
        idx.swap(i, j);
    }
    idx.truncate(n);
    idx
}

/// Runs the tests `first..first + len` of one method, hypothesis and size together.
#[allow(clippy::too_many_arguments)]
fn run_chunk<B: AutodiffBackend>(
    cfg: &ShiftConfig,
    method: ShiftMethod,
    hyp: Hypothesis,
    size: usize,
    first: usize,
    len: usize,
    arch: &Arch,
    layout: &Layout,
    base: &[f32],
    base_init: &[f32],
    pools: &Pools,
    model: Option<&MetaModel<B>>,
    inner: Option<&MetaModel<B::InnerBackend>>,
    device: &B::Device,
) -> Result<ChunkRecord, MetaError> {
    let started = Instant::now();
    let pool = match hyp {
        Hypothesis::Null => &pools.null,
        Hypothesis::Alt => &pools.alt,
    };
    let d = pool.dim;
    let seeds: Vec<u64> = (first..first + len)
        .map(|i| test_seed(cfg.seed, hyp, size, i))
        .collect();
    let mut q_x = Vec::with_capacity(len * size * d);
    let mut q_y = Vec::with_capacity(len * size);
    for &s in &seeds {
        for i in distinct(pool.len(), size, &mut Rng::new(s, STREAM_SAMPLE)) {
            q_x.extend_from_slice(&pool.x[i * d..(i + 1) * d]);
            q_y.push(pool.y[i]);
        }
    }
    let samples = Tensor::<B::InnerBackend, 3>::from_data(
        TensorData::new(q_x.clone(), [len, size, d]),
        device,
    );
    let all: Vec<usize> = (0..len).collect();
    let bases: Vec<f32> = base
        .iter()
        .copied()
        .cycle()
        .take(base.len() * len)
        .collect();
    let base_logits =
        member_logits::<B::InnerBackend>(arch, layout, &bases, &samples, &all, device)?;
    let per = size * NUM_CLASSES;
    let mut ensembles: Vec<Ensemble> = (0..len)
        .map(|t| Ensemble::new(base_logits[t * per..(t + 1) * per].to_vec(), NUM_CLASSES))
        .collect();
    let q_hat: Vec<u8> = ensembles.iter().flat_map(|e| e.predicted.clone()).collect();
    let table = PqTable::<B::InnerBackend>::new(
        &pools.p_train.x,
        &pools.p_hat,
        &q_x,
        &q_hat,
        d,
        NUM_CLASSES,
        device,
    );
    match method {
        ShiftMethod::Detectron => detectron::grow::<B>(
            arch,
            layout,
            base,
            &table,
            &samples,
            &mut ensembles,
            &seeds,
            &DetectronSettings {
                batch: cfg.batch,
                epochs: cfg.epochs,
                lr: cfg.lr,
                rule: cfg.rule(),
            },
            device,
            &mut |_| {},
        )?,
        ShiftMethod::Meta => {
            let Some(inner) = inner else {
                return Err(UsageError("--methods meta needs --model".into()).into());
            };
            meta::grow::<B>(
                inner,
                arch,
                &table,
                &samples,
                &mut ensembles,
                &seeds,
                &guidance(cfg),
                base_init,
                device,
                &mut |_| {},
            )?;
        }
        ShiftMethod::MetaAdjoint => {
            let Some(model) = model else {
                return Err(UsageError("--methods meta-adjoint needs --model".into()).into());
            };
            tilt::grow::<B>(
                model,
                arch,
                &table,
                &samples,
                &mut ensembles,
                &seeds,
                &cfg.tilt,
                &guidance(cfg),
                device,
                &mut |_| {},
            )?;
        }
    }
    let tests = ensembles
        .iter()
        .enumerate()
        .map(|(t, e)| {
            let truth = &q_y[t * size..(t + 1) * size];
            let right = e
                .predicted
                .iter()
                .zip(truth)
                .filter(|(a, b)| a == b)
                .count();
            TestRecord {
                seed: first + t,
                counts: e.counts.clone(),
                entropies: e.entropies(),
                base_accuracy: right as f64 / size as f64,
            }
        })
        .collect();
    Ok(ChunkRecord {
        method,
        hypothesis: hyp,
        size,
        first,
        seconds: started.elapsed().as_secs_f64(),
        tests,
    })
}

/// Meta-detectron's sampling settings from a comparison's.
fn guidance(cfg: &ShiftConfig) -> GuidanceSettings {
    GuidanceSettings {
        steps: cfg.guidance_steps,
        scale: cfg.guidance_scale,
        lambda: cfg.guidance_lambda,
        batch: cfg.batch,
        start_near_base: cfg.start_near_base,
        rule: cfg.rule(),
    }
}

/// The logits (`[n, classes]`) of one classifier on a split.
fn logits_on<B: AutodiffBackend>(
    arch: &Arch,
    layout: &Layout,
    w: &[f32],
    split: &Split,
    device: &B::Device,
) -> Result<Vec<f32>, MetaError> {
    let params = crate::classifier::params_from_flat::<B::InnerBackend>(layout, w, 1, device);
    let mut out = Vec::with_capacity(split.len() * NUM_CLASSES);
    for (xs, n) in split
        .x
        .chunks(4096 * split.dim)
        .map(|c| (c, c.len() / split.dim))
    {
        let x = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(xs.to_vec(), [n, split.dim]),
            device,
        );
        let l = crate::classifier::forward(arch, &params, crate::classifier::Input::Shared(x));
        out.extend(crate::backend::values::<f32>(l.into_data())?);
    }
    Ok(out)
}

/// One classifier's accuracy on a split.
fn accuracy<B: AutodiffBackend>(
    arch: &Arch,
    layout: &Layout,
    w: &[f32],
    split: &Split,
    device: &B::Device,
) -> Result<f64, MetaError> {
    let pred = argmax_rows(
        &logits_on::<B>(arch, layout, w, split, device)?,
        NUM_CLASSES,
    );
    let right = pred.iter().zip(&split.y).filter(|(a, b)| a == b).count();
    Ok(right as f64 / split.len().max(1) as f64)
}

/// The initial and final weights of the zoo's first `n` held-out runs (lowest indices first),
/// reading only the shards that hold them (each checked against the manifest's hash).
#[allow(clippy::type_complexity)]
fn heldout_finals(
    zoo_dir: &Path,
    m: &Manifest,
    n: usize,
) -> Result<Vec<(usize, Vec<f32>, Vec<f32>)>, ZooError> {
    let mut wanted: Vec<usize> = m.split.heldout.clone();
    wanted.sort_unstable();
    wanted.truncate(n);
    let mut out = Vec::with_capacity(wanted.len());
    for info in &m.shards {
        let runs = info.first_run..info.first_run + info.runs;
        if !wanted.iter().any(|r| runs.contains(r)) {
            continue;
        }
        let path = zoo_dir.join(&info.file);
        let bytes = fs::read(&path).map_err(|e| ZooError::io(&path, e))?;
        if crate::io::sha256_hex(&bytes) != info.sha256 {
            return Err(ZooError::corrupt(
                &path,
                "sha256 differs from the manifest (the file was altered)",
            ));
        }
        let sh = shard::decode(&bytes, &path)?;
        let k = sh.steps.len();
        let p = sh.num_params;
        for (i, run) in sh.runs.iter().enumerate() {
            if wanted.contains(run) {
                let traj = sh.trajectory(i);
                out.push((*run, traj[..p].to_vec(), traj[(k - 1) * p..k * p].to_vec()));
            }
        }
    }
    out.sort_by_key(|(r, _, _)| *r);
    Ok(out)
}

/// Checks that the comparison in `from` has the settings `cfg` but for the shifted set, so that
/// its null tests are this comparison's.
fn check_null_source(cfg: &ShiftConfig, from: &Path) -> Result<(), MetaError> {
    let theirs: ShiftConfig = read_json(&from.join(SETTINGS))?;
    let mut ours = cfg.clone();
    ours.shift = theirs.shift;
    if ours != theirs {
        let have = serde_json::to_value(&theirs).map_err(|e| MetaError::file(from, e))?;
        let wanted = serde_json::to_value(&ours).map_err(|e| MetaError::file(from, e))?;
        return Err(UsageError(format!(
            "--null-from {}: its settings differ in more than --shift ({}), so its null tests are not these",
            from.display(),
            crate::io::first_difference(&have, &wanted)
        ))
        .into());
    }
    Ok(())
}

/// Copies the null records of the comparison in `from` (checked by [`check_null_source`]) into
/// `out`, those `out` lacks.
fn adopt_nulls(from: &Path, out: &Path) -> Result<(), MetaError> {
    let dir = from.join(RECORDS);
    let entries = fs::read_dir(&dir).map_err(|e| MetaError::file(&dir, e))?;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let is_null = name
            .to_str()
            .is_some_and(|n| n.contains("-null-") && n.ends_with(".json"));
        let target = out.join(RECORDS).join(&name);
        if is_null
            && !target.exists()
            && let Some(rec) = read_record(&e.path())
        {
            write_record(&target, &rec)?;
        }
    }
    Ok(())
}

/// Writes a chunk's record, then its SHA-256 beside it (`NAME.sha256`, the marker of a finished
/// chunk), both atomically.
fn write_record(path: &Path, rec: &ChunkRecord) -> Result<(), MetaError> {
    let bytes = serde_json::to_vec_pretty(rec).map_err(|e| MetaError::file(path, e))?;
    crate::io::write_atomic(path, &bytes).map_err(|e| MetaError::file(path, e))?;
    let mark = path.with_extension("sha256");
    crate::io::write_atomic(&mark, crate::io::sha256_hex(&bytes).as_bytes())
        .map_err(|e| MetaError::file(&mark, e))
}

/// A chunk's record when it and its SHA-256 are there and agree; otherwise (missing, altered,
/// unreadable) `None`, and the chunk is computed again.
fn read_record(path: &Path) -> Option<ChunkRecord> {
    let bytes = fs::read(path).ok()?;
    let mark = fs::read_to_string(path.with_extension("sha256")).ok()?;
    if crate::io::sha256_hex(&bytes) != mark.trim() {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// Makes `out` this comparison's directory: the same settings resume; other settings are refused
/// unless `force`, which clears the old records.
fn claim(cfg: &ShiftConfig, out: &Path, force: bool) -> Result<(), MetaError> {
    if same_settings(cfg, out, SETTINGS, "shift test", force)? {
        let records = out.join(RECORDS);
        return fs::create_dir_all(&records).map_err(|e| MetaError::file(&records, e));
    }
    let records = out.join(RECORDS);
    if records.exists() {
        fs::remove_dir_all(&records).map_err(|e| MetaError::file(&records, e))?;
    }
    fs::create_dir_all(&records).map_err(|e| MetaError::file(&records, e))?;
    for name in [RESULTS, RUN] {
        let p = out.join(name);
        if p.exists() {
            fs::remove_file(&p).map_err(|e| MetaError::file(&p, e))?;
        }
    }
    write_json(&out.join(SETTINGS), cfg)
}
