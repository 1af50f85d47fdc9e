//! The NM-CFM / NM-MMFM training loop (burn's custom training loop shape).
//!
//! Each step draws a minibatch of training runs, a time `t ~ U(0, 1)` and noise `ε ~ N(0, I)` per
//! sample, forms `(xt, ut)` on the chosen path, and regresses `v(xt, t)` on `ut` (mean squared
//! error). Every `eval_every` steps the same loss is measured on a fixed set of held-out-run
//! samples; the model with the lowest held-out loss is the one kept (early stopping).
//!
//! With `functional_weight > 0`, the loss also holds the cross-entropy, on training images
//! of the zoo's dataset, of the classifier the field points to, `x̂₁ = x_t + (1 − t)·v(x_t, t)`, or
//! (`functional_rollout = K`) of the classifiers that `K` Euler steps of the sampler make from fresh
//! source samples, differentiated through every step (reward fine-tuning by direct backpropagation).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer, decay::WeightDecayConfig};
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::Serialize;

use super::checkpoint;
use super::config::{Coupling, MetaConfig, Method};
use super::field::{FieldKind, VectorField};
use super::fused::{AdamSettings, Buffers, FusedAdam, FusedMlp};
use super::normalize::Normalizer;
use super::source::standard_normal;
use super::symmetry::HiddenLayers;
use super::trajectories::{self, Trajectories};
use crate::arch::{Arch, Layout};
use crate::backend::Cpu;
use crate::classifier::Input;
use crate::data::Dataset;
use crate::error::{MetaError, UsageError};
use crate::flow::path::{Spline, linear};
use crate::io::{sha256_hex, write_atomic};
use crate::progress;
use crate::zoo::train::DeviceData;
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// Files of a model directory.
pub mod files {
    /// Hyper-parameters.
    pub const CONFIG: &str = "config.json";
    /// Normalization statistics.
    pub const NORMALIZER: &str = "normalizer.json";
    /// The zoo's layout table.
    pub const LAYOUT: &str = "layout.json";
    /// Field weights (burn record, without the `.bin` extension burn adds).
    pub const WEIGHTS: &str = "field";
    /// Loss log (CSV: step, train loss, held-out loss).
    pub const LOSS_LOG: &str = "loss.csv";
    /// Training summary.
    pub const SUMMARY: &str = "train.json";
}

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
}

/// PRNG stream of minibatch draws.
const STREAM_BATCH: u64 = 10;
/// PRNG stream of the functional term's image minibatches.
const STREAM_FUNCTIONAL: u64 = 12;
/// PRNG stream of the fixed held-out evaluation set.
const STREAM_HELDOUT: u64 = 11;
/// Samples in the held-out evaluation set.
const HELDOUT_SAMPLES: usize = 512;
/// PRNG stream of the functional term's fixed validation draws.
const STREAM_VALIDATION: u64 = 13;
/// Classifiers the sampler makes for the functional term's validation.
pub const VALIDATION_SAMPLES: usize = 64;
/// Training images the functional term's validation scores them on.
pub const VALIDATION_IMAGES: usize = 4096;

/// A flow-matching sampler of `(xt, t, ut)` over a set of runs (standardized weights).
pub struct PairSampler<'a> {
    cfg: &'a MetaConfig,
    runs: &'a Trajectories,
    splines: Vec<Spline>,
    layout: &'a Layout,
    normalizer: &'a Normalizer,
    symmetry: Option<HiddenLayers>,
}

impl<'a> PairSampler<'a> {
    /// Prepares the sampler (fits one spline per run for NM-MMFM).
    pub fn new(
        cfg: &'a MetaConfig,
        runs: &'a Trajectories,
        layout: &'a Layout,
        normalizer: &'a Normalizer,
    ) -> Self {
        let splines = if cfg.method == Method::Mmfm {
            (0..runs.len())
                .map(|i| Spline::fit(cfg.spline, &runs.times, runs.trajectory(i), runs.num_params))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            cfg,
            runs,
            splines,
            layout,
            normalizer,
            symmetry: if cfg.permute {
                HiddenLayers::of(layout)
            } else {
                None
            },
        }
    }

    /// Draws `n` samples: returns `(xt [n, P], t [n], ut [n, P])`.
    pub fn draw(&self, n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut batch = Batch::default();
        self.draw_into(n, rng, &mut batch);
        batch
    }

    /// [`Self::draw`] into reused buffers (the same draws).
    pub fn draw_into(&self, n: usize, rng: &mut Rng, batch: &mut Batch) {
        if self.cfg.method == Method::Cfm && self.cfg.coupling == Coupling::Ot {
            *batch = self.draw_ot(n, rng);
            return;
        }
        let p = self.runs.num_params;
        let k_last = self.runs.checkpoints() - 1;
        let (xt, ts, ut) = batch;
        // Every value is overwritten below.
        xt.resize(n * p, 0.0);
        ut.resize(n * p, 0.0);
        ts.clear();
        let mut eps = vec![0.0f32; p];
        let mut x0 = Vec::with_capacity(p);
        for s in 0..n {
            let i = rng.below(u32::try_from(self.runs.len()).unwrap_or(u32::MAX)) as usize;
            let t = rng.uniform();
            ts.push(t);
            if self.cfg.sigma != 0.0 {
                // Noise is drawn only when it is used (σ = 0 paths need none).
                for e in &mut eps {
                    *e = standard_normal(rng);
                }
            }
            let (xs, us) = (&mut xt[s * p..(s + 1) * p], &mut ut[s * p..(s + 1) * p]);
            match self.cfg.method {
                Method::Jko => {
                    // (xt, ut) = (y, x): consecutive checkpoints θ_{k+1}, θ_k of one run.
                    let k = rng.below(u32::try_from(k_last).unwrap_or(1)) as usize;
                    xs.copy_from_slice(self.runs.point(i, k + 1));
                    us.copy_from_slice(self.runs.point(i, k));
                }
                Method::Cfm => {
                    x0.clear();
                    match self.cfg.coupling {
                        Coupling::Natural => x0.extend_from_slice(self.runs.point(i, 0)),
                        Coupling::Independent | Coupling::Ot => {
                            self.cfg.source.sample_into(self.layout, 1, rng, &mut x0);
                            self.normalizer.apply(&mut x0);
                        }
                    }
                    linear(
                        &x0,
                        self.runs.point(i, k_last),
                        &eps,
                        t,
                        self.cfg.sigma,
                        xs,
                        us,
                    );
                }
                Method::Mmfm => {
                    self.splines[i].eval(t, xs, us);
                    for (x, e) in xs.iter_mut().zip(&eps) {
                        *x += self.cfg.sigma * e;
                    }
                }
            }
            if let Some(sym) = &self.symmetry {
                let perms = sym.draw(rng);
                sym.apply(&perms, xs);
                sym.apply(&perms, us);
            }
        }
    }
}

impl PairSampler<'_> {
    /// NM-CFM with the minibatch OT coupling: `n` source samples and `n` runs' final weights,
    /// paired by the assignment that minimizes the total squared distance.
    fn draw_ot(&self, n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let p = self.runs.num_params;
        let k_last = self.runs.checkpoints() - 1;
        let runs: Vec<usize> = (0..n)
            .map(|_| rng.below(u32::try_from(self.runs.len()).unwrap_or(u32::MAX)) as usize)
            .collect();
        let mut x0 = Vec::with_capacity(n * p);
        self.cfg.source.sample_into(self.layout, n, rng, &mut x0);
        self.normalizer.apply(&mut x0);
        let x1 = |j: usize| self.runs.point(runs[j], k_last);
        let cost: Vec<f64> = (0..n * n)
            .map(|ab| {
                let (a, b) = (&x0[(ab / n) * p..(ab / n + 1) * p], x1(ab % n));
                a.iter().zip(b).map(|(u, v)| f64::from(u - v).powi(2)).sum()
            })
            .collect();
        let pair = crate::flow::assignment::min_cost_assignment(&cost, n);
        let mut xt = vec![0.0f32; n * p];
        let mut ut = vec![0.0f32; n * p];
        let mut ts = Vec::with_capacity(n);
        let mut eps = vec![0.0f32; p];
        for s in 0..n {
            let t = rng.uniform();
            ts.push(t);
            if self.cfg.sigma != 0.0 {
                for e in &mut eps {
                    *e = standard_normal(rng);
                }
            }
            let (xs, us) = (&mut xt[s * p..(s + 1) * p], &mut ut[s * p..(s + 1) * p]);
            linear(
                &x0[s * p..(s + 1) * p],
                x1(pair[s]),
                &eps,
                t,
                self.cfg.sigma,
                xs,
                us,
            );
            if let Some(sym) = &self.symmetry {
                let perms = sym.draw(rng);
                sym.apply(&perms, xs);
                sym.apply(&perms, us);
            }
        }
        (xt, ts, ut)
    }
}

fn to_tensors<B: Backend>(
    xt: Vec<f32>,
    ts: Vec<f32>,
    ut: Vec<f32>,
    p: usize,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let n = ts.len();
    (
        Tensor::from_data(TensorData::new(xt, [n, p]), device),
        Tensor::from_data(TensorData::new(ts, [n, 1]), device),
        Tensor::from_data(TensorData::new(ut, [n, p]), device),
    )
}

/// The per-element residual of a batch: `v(xt, t) − ut` for flows, and for NM-JKO (where
/// `xt = y`, `ut = x`) `τ∇V(y) + y − x`.
fn residual<B: Backend>(
    field: &VectorField<B>,
    x: Tensor<B, 2>,
    t: Tensor<B, 2>,
    u: Tensor<B, 2>,
    tau: f32,
) -> Tensor<B, 2> {
    match field.jko_residual(u.clone(), x.clone(), tau) {
        Some(r) => r,
        None => field.forward(x, t) - u,
    }
}

/// Mean squared error of `field` on a fixed sample set, in chunks.
fn set_loss<B: Backend>(
    field: &VectorField<B>,
    set: &(Vec<f32>, Vec<f32>, Vec<f32>),
    p: usize,
    tau: f32,
    device: &B::Device,
) -> f64 {
    let n = set.1.len();
    let chunk = 128;
    let mut total = 0.0;
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let (x, t, u) = to_tensors::<B>(
            set.0[start * p..(start + m) * p].to_vec(),
            set.1[start..start + m].to_vec(),
            set.2[start * p..(start + m) * p].to_vec(),
            p,
            device,
        );
        let se: f32 = residual(field, x, t, u, tau)
            .powi_scalar(2)
            .sum()
            .into_scalar()
            .elem();
        total += f64::from(se);
    }
    total / (n * p) as f64
}

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
#[derive(Clone, Debug)]
pub struct TrainEnv {
    /// The data folder (the functional term reads the zoo's dataset from it).
    pub data_dir: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Which implementation of the training step runs.
    pub engine: Engine,
}

/// The implementation of the training step (not a hyper-parameter: both train the same network
/// with the same algorithm and differ only in floating-point rounding).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `fused` where it applies, else `burn`.
    #[default]
    Auto,
    /// burn's autodiff and optimizer (every field, method and loss).
    Burn,
    /// The fused CPU trainer (module `meta::fused`): the MLP field with NM-CFM or NM-MMFM and
    /// no functional term.
    Fused,
}

/// The functional term's data: the zoo's training images and one-hot labels on the device, and the
/// per-coordinate scales that undo the standardization.
struct Functional<B: AutodiffBackend> {
    arch: Arch,
    layout: Layout,
    data: DeviceData<B::InnerBackend>,
    std: Tensor<B, 2>,
    mean: Tensor<B, 2>,
}

impl<B: AutodiffBackend> Functional<B> {
    /// Mean cross-entropy of the classifiers `end` (standardized, `[runs, P]`) on `m` training
    /// images drawn from `rng`.
    fn loss(&self, end: Tensor<B, 2>, m: usize, rng: &mut Rng) -> Tensor<B, 1> {
        let (xb, yb) = self.data.draw(m, rng);
        self.cross_entropy(
            end,
            self.std.clone(),
            self.mean.clone(),
            Tensor::from_inner(xb),
            Tensor::from_inner(yb),
        )
    }

    /// The functional term on held-out draws, without gradients: the mean cross-entropy of the
    /// classifiers the model's own sampler (solver and steps) makes from a fixed set of
    /// [`VALIDATION_SAMPLES`] source samples, on a fixed set of [`VALIDATION_IMAGES`] training
    /// images (the same draws at every evaluation, from their own PRNG stream).
    fn validation(
        &self,
        cfg: &MetaConfig,
        normalizer: &Normalizer,
        field: &VectorField<B::InnerBackend>,
    ) -> f64 {
        let mut rng = Rng::new(cfg.seed, STREAM_VALIDATION);
        let (n, p) = (VALIDATION_SAMPLES, self.layout.num_params());
        let mut z = Vec::new();
        cfg.source.sample_into(&self.layout, n, &mut rng, &mut z);
        normalizer.apply(&mut z);
        let device = self.std.device();
        let x = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(z, [n, p]), &device);
        let mut v = |x: Tensor<B::InnerBackend, 2>, t: f32| {
            field.forward(x, Tensor::full([n, 1], t, &device))
        };
        let (end, _) =
            crate::flow::solver::integrate(cfg.solver, cfg.solver_steps, x, &mut v, &mut |_, _| {});
        let (xb, yb) = self.data.draw(VALIDATION_IMAGES, &mut rng);
        let ce: f32 = self
            .cross_entropy(
                end,
                self.std.clone().inner(),
                self.mean.clone().inner(),
                xb,
                yb,
            )
            .into_scalar()
            .elem();
        f64::from(ce)
    }

    /// Mean cross-entropy of the classifiers `end` (standardized, `[runs, P]`; `std`, `mean`
    /// undo the standardization) on the images `xb` with one-hot labels `yb`.
    fn cross_entropy<C: Backend>(
        &self,
        end: Tensor<C, 2>,
        std: Tensor<C, 2>,
        mean: Tensor<C, 2>,
        xb: Tensor<C, 2>,
        yb: Tensor<C, 2>,
    ) -> Tensor<C, 1> {
        let runs = end.dims()[0];
        let params = crate::classifier::params_from_tensor(&self.layout, end * std + mean);
        let logits = crate::classifier::forward(&self.arch, &params, Input::Shared(xb));
        crate::classifier::cross_entropy_sum(logits, yb.unsqueeze_dim(0)) / runs as f64
    }
}

/// One implementation of the training step, with the model files it owns.
trait Trainer {
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

/// A minibatch `(xt [n, P], t [n], ut [n, P])`.
pub type Batch = (Vec<f32>, Vec<f32>, Vec<f32>);

/// burn's autodiff and Adam: every field, method and loss.
struct BurnTrainer<'a, B: AutodiffBackend> {
    cfg: &'a MetaConfig,
    layout: &'a Layout,
    normalizer: &'a Normalizer,
    device: B::Device,
    field: VectorField<B>,
    optim: checkpoint::FieldOptimizer<B>,
    functional: Option<Functional<B>>,
    tau: f32,
}

impl<B: AutodiffBackend> Trainer for BurnTrainer<'_, B> {
    fn step(&mut self, (xt, ts, ut): &Batch, lr: f64, data_rng: &mut Rng) -> (f32, Option<f32>) {
        let (cfg, device, field) = (self.cfg, &self.device, &self.field);
        let p = self.layout.num_params();
        let (x, t, u) = to_tensors::<B>(xt.clone(), ts.clone(), ut.clone(), p, device);
        let (loss, ce) = match &self.functional {
            Some(f) => {
                let v = field.forward(x.clone(), t.clone());
                let fm = (v.clone() - u).powi_scalar(2).mean();
                let end = if cfg.functional_rollout == 0 {
                    // The endpoint the field points to from each training pair's x_t.
                    x + (t.neg() + 1.0) * v
                } else {
                    // The sampler itself: Euler steps from fresh source samples, differentiated
                    // through every step.
                    let mut z = Vec::new();
                    cfg.source
                        .sample_into(self.layout, cfg.functional_samples, data_rng, &mut z);
                    self.normalizer.apply(&mut z);
                    let k = cfg.functional_rollout;
                    let n = cfg.functional_samples;
                    let mut z = Tensor::<B, 2>::from_data(TensorData::new(z, [n, p]), device);
                    for j in 0..k {
                        let tj = Tensor::<B, 2>::full([n, 1], j as f32 / k as f32, device);
                        z = z.clone() + field.forward(z, tj) / k as f64;
                    }
                    z
                };
                let ce = f.loss(end, cfg.functional_batch, data_rng);
                let ce_value: f32 = ce.clone().into_scalar().elem();
                (
                    fm.clone() + ce * f64::from(cfg.functional_weight),
                    Some((fm, ce_value)),
                )
            }
            None => (
                residual(field, x, t, u, self.tau).powi_scalar(2).mean(),
                None,
            ),
        };
        let (value, ce_value): (f32, Option<f32>) = match &ce {
            Some((fm, c)) => (fm.clone().into_scalar().elem(), Some(*c)),
            None => (loss.clone().into_scalar().elem(), None),
        };
        if value.is_finite() && ce_value.is_none_or(f32::is_finite) {
            let grads = GradientsParams::from_grads(loss.backward(), field);
            self.field = self.optim.step(lr, self.field.clone(), grads);
        }
        (value, ce_value)
    }

    fn heldout_loss(&mut self, set: &Batch) -> (f64, Option<f64>) {
        let p = self.layout.num_params();
        let field = self.field.valid();
        let fm = set_loss(&field, set, p, self.tau, &self.device);
        let ce = self
            .functional
            .as_ref()
            .map(|f| f.validation(self.cfg, self.normalizer, &field));
        (fm, ce)
    }

    fn save_field(&self, out: &Path) -> Result<(), MetaError> {
        save_field(&self.field.valid(), out)
    }

    fn checkpoint(&self, out: &Path, state: &checkpoint::State) -> Result<(), MetaError> {
        checkpoint::save(out, state, &self.field, &self.optim)
    }

    fn resume(&mut self, out: &Path) -> Result<(), MetaError> {
        let fresh = AdamConfig::new()
            .with_weight_decay(
                (self.cfg.weight_decay > 0.0)
                    .then(|| WeightDecayConfig::new(self.cfg.weight_decay as f32)),
            )
            .init::<B, VectorField<B>>();
        let (f, o) = checkpoint::load_model(out, self.cfg, fresh, &self.device)?;
        self.field = f;
        self.optim = o;
        Ok(())
    }
}

/// The fused CPU trainer of the MLP field ([`super::fused`]).
struct FusedTrainer<'a> {
    cfg: &'a MetaConfig,
    device: burn::tensor::Device<Cpu>,
    /// A burn module of the field's shape (its values are replaced on every save).
    template: VectorField<Cpu>,
    mlp: FusedMlp,
    adam: FusedAdam,
    settings: AdamSettings,
    buf: Buffers,
}

/// The fused trainer's optimizer file in a checkpoint.
const FUSED_OPTIM: &str = "optim-fused.safetensors";

impl FusedTrainer<'_> {
    /// The field as a burn module (for saving and loading burn records).
    fn field(&self) -> VectorField<Cpu> {
        self.template.clone().with_mlp_layers(self.mlp.layers())
    }
}

impl Trainer for FusedTrainer<'_> {
    fn step(&mut self, (xt, ts, ut): &Batch, lr: f64, _data_rng: &mut Rng) -> (f32, Option<f32>) {
        let loss = self.mlp.step(&mut self.adam, xt, ts, ut, lr, &mut self.buf);
        (loss as f32, None)
    }

    fn heldout_loss(&mut self, (xt, ts, ut): &Batch) -> (f64, Option<f64>) {
        let (n, p) = (ts.len(), self.cfg.field.dim);
        let chunk = 128;
        let mut total = 0.0;
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            total += self.mlp.sum_sq(
                &xt[start * p..end * p],
                &ts[start..end],
                &ut[start * p..end * p],
                &mut self.buf,
            );
        }
        (total / (n * p) as f64, None)
    }

    fn save_field(&self, out: &Path) -> Result<(), MetaError> {
        save_field(&self.field(), out)
    }

    fn checkpoint(&self, out: &Path, state: &checkpoint::State) -> Result<(), MetaError> {
        checkpoint::save_with(out, state, |dir| {
            let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
            self.field()
                .save_file(dir.join("field"), &recorder)
                .map_err(|e| MetaError::file(dir.join("field.bin"), e))?;
            let path = dir.join(FUSED_OPTIM);
            let bytes = self
                .adam
                .to_bytes()
                .map_err(|e| MetaError::file(&path, e))?;
            write_atomic(&path, &bytes).map_err(|e| MetaError::file(&path, e))
        })
    }

    fn resume(&mut self, out: &Path) -> Result<(), MetaError> {
        let dir = checkpoint::folder(out);
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        let field = self
            .template
            .clone()
            .load_file(dir.join("field"), &recorder, &self.device)
            .map_err(|e| MetaError::file(dir.join("field.bin"), e))?;
        let layers = field
            .mlp_layers()
            .ok_or_else(|| MetaError::file(dir.join("field.bin"), "not an MLP field"))?;
        self.mlp = FusedMlp::new(self.cfg.field.dim, self.cfg.field.time_dim, layers)
            .map_err(|e| MetaError::file(dir.join("field.bin"), e))?;
        self.adam = FusedAdam::read(&dir.join(FUSED_OPTIM), self.settings, &self.mlp)?;
        Ok(())
    }
}

/// Trains a meta-model on the zoo in `zoo_dir` and writes it to `out`.
///
/// # Errors
/// Zoo errors, I/O errors, and [`MetaError::Diverged`] (the best model so far is kept).
pub fn train_meta<B: AutodiffBackend>(
    cfg: &MetaConfig,
    zoo_dir: &Path,
    out: &Path,
    env: &TrainEnv,
    device: &B::Device,
) -> Result<TrainSummary, MetaError> {
    let quiet = env.quiet;
    let started = Instant::now();
    // The fused trainer runs on the CPU: it stands in for burn's CPU backend only.
    let on_cpu = std::any::TypeId::of::<B::InnerBackend>() == std::any::TypeId::of::<Cpu>();
    let fusable = on_cpu
        && cfg.field.kind == FieldKind::Mlp
        && cfg.method != Method::Jko
        && cfg.functional_weight == 0.0;
    let fused = match env.engine {
        Engine::Auto => fusable,
        Engine::Burn => false,
        Engine::Fused if fusable => true,
        Engine::Fused => {
            return Err(UsageError(
                "--engine fused trains the MLP field (--field mlp) with NM-CFM or NM-MMFM and no functional term, on the CPU".into(),
            )
            .into());
        }
    };
    // A finished model with the same settings is not trained again.
    let summary_path = out.join(files::SUMMARY);
    if let (Ok(old_cfg), Ok(old_summary)) = (
        fs::read_to_string(out.join(files::CONFIG)),
        fs::read_to_string(&summary_path),
    ) && serde_json::from_str::<MetaConfig>(&old_cfg).is_ok_and(|c| c == *cfg)
        && let Ok(s) = serde_json::from_str::<TrainSummary>(&old_summary)
        // Weights written by an older, incompatible build are trained again.
        && cfg
            .field
            .init::<B>(device)
            .load_file(
                out.join(files::WEIGHTS),
                &BinFileRecorder::<FullPrecisionSettings>::new(),
                device,
            )
            .is_ok()
    {
        return Ok(s);
    }
    // An interrupted run with the same settings resumes from its last checkpoint; a checkpoint
    // of other settings is discarded.
    let same_config = fs::read_to_string(out.join(files::CONFIG))
        .ok()
        .and_then(|c| serde_json::from_str::<MetaConfig>(&c).ok())
        .is_some_and(|c| c == *cfg);
    let resume = if same_config {
        checkpoint::load_state(out)
    } else {
        checkpoint::discard(out)?;
        None
    };
    let (manifest, mut train, mut held) = trajectories::load(zoo_dir)?;
    let layout = manifest.layout.clone();
    let normalizer = Normalizer::fit(&layout, &train);
    normalizer.apply(&mut train.data);
    normalizer.apply(&mut held.data);
    let p = layout.num_params();
    fs::create_dir_all(out).map_err(|e| MetaError::file(out, e))?;
    let json = |v: &dyn erased::Json| v.to_json();
    write_atomic(&out.join(files::CONFIG), json(cfg).as_bytes())
        .map_err(|e| MetaError::file(out, e))?;
    write_atomic(&out.join(files::NORMALIZER), json(&normalizer).as_bytes())
        .map_err(|e| MetaError::file(out, e))?;
    write_atomic(&out.join(files::LAYOUT), json(&layout).as_bytes())
        .map_err(|e| MetaError::file(out, e))?;

    B::seed(device, cfg.seed);
    let tau = cfg.field.jko.map_or(1.0, |j| j.tau);
    let field: VectorField<B> = cfg.field.init(device);
    let adam = AdamSettings {
        weight_decay: cfg.weight_decay as f32,
        ..AdamSettings::default()
    };
    let mut trainer: Box<dyn Trainer + '_> = if fused {
        let layers = field
            .mlp_layers()
            .ok_or_else(|| UsageError("the fused trainer needs an MLP field".into()))?;
        let mlp = FusedMlp::new(cfg.field.dim, cfg.field.time_dim, layers).map_err(UsageError)?;
        let device = Default::default();
        Box::new(FusedTrainer {
            cfg,
            template: cfg.field.init(&device),
            device,
            adam: FusedAdam::new(adam, &mlp),
            settings: adam,
            mlp,
            buf: Buffers::default(),
        })
    } else {
        let functional = if cfg.functional_weight > 0.0 {
            let data = Dataset::load(manifest.config.dataset, &env.data_dir)?;
            let (sd, mu) = normalizer.coordinate_scales();
            Some(Functional::<B> {
                arch: manifest.config.arch.clone(),
                layout: layout.clone(),
                data: DeviceData::new(&data, device),
                std: Tensor::from_data(TensorData::new(sd, [1, p]), device),
                mean: Tensor::from_data(TensorData::new(mu, [1, p]), device),
            })
        } else {
            None
        };
        Box::new(BurnTrainer {
            cfg,
            layout: &layout,
            normalizer: &normalizer,
            device: device.clone(),
            field,
            optim: AdamConfig::new()
                .with_weight_decay(
                    (cfg.weight_decay > 0.0)
                        .then(|| WeightDecayConfig::new(cfg.weight_decay as f32)),
                )
                .init::<B, VectorField<B>>(),
            functional,
            tau,
        })
    };
    let sampler = PairSampler::new(cfg, &train, &layout, &normalizer);
    let held_set = (!held.is_empty()).then(|| {
        PairSampler::new(cfg, &held, &layout, &normalizer)
            .draw(HELDOUT_SAMPLES, &mut Rng::new(cfg.seed, STREAM_HELDOUT))
    });
    // The loss of the trivial model: zero velocity, or for NM-JKO a flat potential (‖y − x‖²).
    let zero_loss = held_set.as_ref().map_or(f64::NAN, |s| {
        let sq: f64 = if cfg.method == Method::Jko {
            s.0.iter()
                .zip(&s.2)
                .map(|(&y, &x)| f64::from(y - x).powi(2))
                .sum()
        } else {
            s.2.iter().map(|&u| f64::from(u) * f64::from(u)).sum()
        };
        sq / s.2.len() as f64
    });
    let loop_started = Instant::now();
    let pb = progress::bar(cfg.steps as u64, "steps", quiet);
    pb.set_prefix(format!("train {:?}", cfg.method).to_lowercase());
    // A checkpoint of the other engine is not resumed (its optimizer file differs).
    let resume = resume.filter(|s| s.fused == fused);
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
            return Err(MetaError::Diverged {
                step,
                kept: state.best_step,
                out: out.into(),
            });
        }
        state.recent.push(f64::from(value));
        if state.recent.len() > 50 {
            state.recent.remove(0);
        }
        let evaluate = step % cfg.eval_every.max(1) == 0 || step == cfg.steps;
        let held = match (&held_set, evaluate) {
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
    write_atomic(
        &out.join(files::LOSS_LOG),
        checkpoint::csv(&state.rows).as_bytes(),
    )
    .map_err(|e| MetaError::file(out, e))?;
    let chart_rows: Vec<(usize, f64, Option<f64>)> = state
        .rows
        .iter()
        .map(|r| (r.step, r.train_loss, r.heldout_loss))
        .collect();
    super::charts::loss_curve(out, &chart_rows, zero_loss)?;
    checkpoint::discard(out)?;
    let (recent, best, best_step) = (&state.recent, state.best, state.best_step);
    let seconds = started.elapsed().as_secs_f64();
    let summary = TrainSummary {
        method: cfg.method,
        steps: cfg.steps,
        final_loss: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        best_heldout_loss: best.unwrap_or(f64::NAN),
        best_step,
        heldout_zero_loss: zero_loss,
        field_params: cfg.field.num_params(),
        engine: if fused { Engine::Fused } else { Engine::Burn },
        seconds,
        steps_per_second: (cfg.steps + 1 - first_step) as f64
            / loop_started.elapsed().as_secs_f64().max(1e-9),
        out: out.into(),
    };
    write_atomic(&out.join(files::SUMMARY), json(&summary).as_bytes())
        .map_err(|e| MetaError::file(out, e))?;
    Ok(summary)
}

/// SHA-256 of a zoo's manifest file (recorded in the model so a model and a zoo can be matched).
///
/// # Errors
/// I/O errors naming the file.
pub fn manifest_hash(zoo_dir: &Path) -> Result<String, MetaError> {
    let path = zoo_dir.join(crate::zoo::manifest::MANIFEST);
    let bytes = fs::read(&path).map_err(|e| MetaError::file(&path, e))?;
    Ok(sha256_hex(&bytes))
}

/// Pretty JSON for anything serializable (object-safe helper).
mod erased {
    /// A value that can be written as pretty JSON.
    pub trait Json {
        /// The JSON text.
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_default()
        }
    }
}
