//! The burn engine: burn's autodiff and Adam train every field, method and objective.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::checkpoint;
use super::ema::Ema;
use super::{Trainer, VALIDATION_IMAGES, VALIDATION_SAMPLES, save_field};
use crate::arch::Layout;
use crate::error::MetaError;
use crate::meta::config::MetaConfig;
use crate::meta::field::{VectorField, time_input};
use crate::meta::normalize::Normalizer;
use crate::meta::pairs::Batch;
use crate::meta::reward::DataReward;
use crate::optim::AdamSettings;
use nmflow_runtime::Rng;

/// PRNG stream of the functional term's fixed validation draws.
const STREAM_VALIDATION: u64 = 13;

/// A fresh Adam optimizer with the settings' weight decay.
pub(super) fn adam<B: AutodiffBackend>(cfg: &MetaConfig) -> checkpoint::FieldOptimizer<B> {
    AdamSettings::BURN
        .with_weight_decay(cfg.weight_decay)
        .burn_config()
        .init::<B, VectorField<B>>()
}

/// A batch as tensors; the times as `[n, 1]`, or `[n, 2]` with the field's step-size input.
fn to_tensors<B: Backend>(
    xt: Vec<f32>,
    ts: Vec<f32>,
    ut: Vec<f32>,
    p: usize,
    step: Option<f32>,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let n = ts.len();
    let t = match step {
        None => TensorData::new(ts, [n, 1]),
        Some(h) => TensorData::new(ts.iter().flat_map(|&t| [t, h]).collect(), [n, 2]),
    };
    (
        Tensor::from_data(TensorData::new(xt, [n, p]), device),
        Tensor::from_data(t, device),
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

/// Mean squared error of `field` on a fixed sample set, in chunks (`step`: the field's step-size
/// input, if it takes one).
pub(super) fn set_loss<B: Backend>(
    field: &VectorField<B>,
    set: &Batch,
    p: usize,
    tau: f32,
    step: Option<f32>,
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
            step,
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

/// The functional term on held-out draws, without gradients: the mean loss of the classifiers the
/// model's own sampler (solver and steps) makes from a fixed set of [`VALIDATION_SAMPLES`] source
/// samples, on a fixed set of [`VALIDATION_IMAGES`] training images (the same draws at every
/// evaluation, from their own PRNG stream).
pub(super) fn validation<B: AutodiffBackend>(
    reward: &DataReward<B>,
    cfg: &MetaConfig,
    normalizer: &Normalizer,
    field: &VectorField<B::InnerBackend>,
) -> f64 {
    let mut rng = Rng::new(cfg.seed, STREAM_VALIDATION);
    let layout = reward.layout();
    let (n, p) = (VALIDATION_SAMPLES, layout.num_params());
    let mut z = Vec::new();
    cfg.source.sample_into(layout, n, &mut rng, &mut z);
    normalizer.apply(&mut z);
    let device = reward.device();
    let x = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(z, [n, p]), &device);
    let step = cfg.step_size(cfg.solver_steps);
    let mut v =
        |x: Tensor<B::InnerBackend, 2>, t: f32| field.forward(x, time_input(n, t, step, &device));
    let (end, _) =
        crate::flow::solver::integrate(cfg.solver, cfg.solver_steps, x, &mut v, &mut |_, _| {});
    let ce: f32 = reward
        .loss_inner(end, VALIDATION_IMAGES, &mut rng)
        .into_scalar()
        .elem();
    f64::from(ce)
}

/// burn's autodiff and Adam: every field, method and loss.
pub(super) struct BurnTrainer<'a, B: AutodiffBackend> {
    pub(super) cfg: &'a MetaConfig,
    pub(super) layout: &'a Layout,
    pub(super) normalizer: &'a Normalizer,
    pub(super) device: B::Device,
    pub(super) field: VectorField<B>,
    pub(super) optim: checkpoint::FieldOptimizer<B>,
    pub(super) functional: Option<DataReward<B>>,
    pub(super) tau: f32,
    /// The moving average of the field's weights (`--ema`), which the model keeps.
    pub(super) ema: Option<Ema<B::InnerBackend, VectorField<B::InnerBackend>>>,
}

impl<B: AutodiffBackend> BurnTrainer<'_, B> {
    /// The field the model keeps: the moving average, or the trained weights.
    fn kept(&self) -> VectorField<B::InnerBackend> {
        self.ema
            .as_ref()
            .map_or_else(|| self.field.valid(), |e| e.model().clone())
    }
}

impl<B: AutodiffBackend> Trainer for BurnTrainer<'_, B> {
    fn step(&mut self, (xt, ts, ut, _): &Batch, lr: f64, data_rng: &mut Rng) -> (f32, Option<f32>) {
        let (cfg, device, field) = (self.cfg, &self.device, &self.field);
        let p = self.layout.num_params();
        // The same draws, in the same order, as the fused engine: source samples, the rollout's
        // length, then the images. The flow-matching pairs take the rollout's step size.
        let rollout = (self.functional.is_some() && cfg.functional_rollout > 0).then(|| {
            let mut z = Vec::new();
            cfg.source
                .sample_into(self.layout, cfg.functional_samples, data_rng, &mut z);
            self.normalizer.apply(&mut z);
            (z, cfg.rollout_steps(data_rng))
        });
        let steps = rollout.as_ref().map_or(cfg.solver_steps, |r| r.1);
        let step = cfg.step_size(steps);
        let (x, t, u) = to_tensors::<B>(xt.clone(), ts.clone(), ut.clone(), p, step, device);
        let (loss, ce) = match &self.functional {
            Some(f) => {
                let v = field.forward(x.clone(), t.clone());
                let fm = (v.clone() - u).powi_scalar(2).mean();
                let end = match rollout {
                    // The endpoint the field points to from each training pair's x_t.
                    None => x + (t.narrow(1, 0, 1).neg() + 1.0) * v,
                    // The sampler itself: Euler steps from fresh source samples, differentiated
                    // through every step.
                    Some((z, k)) => {
                        let n = cfg.functional_samples;
                        let mut z = Tensor::<B, 2>::from_data(TensorData::new(z, [n, p]), device);
                        for j in 0..k {
                            let tj = time_input(n, j as f32 / k as f32, step, device);
                            z = z.clone() + field.forward(z, tj) / k as f64;
                        }
                        z
                    }
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
        if let Some(ema) = &mut self.ema {
            ema.update(&self.field.valid());
        }
        (value, ce_value)
    }

    fn heldout_loss(&mut self, set: &Batch) -> (f64, Option<f64>) {
        let p = self.layout.num_params();
        let field = self.kept();
        let step = self.cfg.step_size(self.cfg.solver_steps);
        let fm = set_loss(&field, set, p, self.tau, step, &self.device);
        let ce = self
            .functional
            .as_ref()
            .map(|f| validation(f, self.cfg, self.normalizer, &field));
        (fm, ce)
    }

    fn save_field(&self, out: &Path) -> Result<(), MetaError> {
        save_field(&self.kept(), out)
    }

    fn checkpoint(&self, out: &Path, state: &checkpoint::State) -> Result<(), MetaError> {
        checkpoint::save_with(out, state, |partial| {
            checkpoint::write_model(partial, &self.field, &self.optim)?;
            self.ema.as_ref().map_or(Ok(()), |e| e.save(partial))
        })
    }

    fn resume(&mut self, out: &Path) -> Result<(), MetaError> {
        let (f, o) = checkpoint::load_model(out, self.cfg, adam::<B>(self.cfg), &self.device)?;
        self.field = f;
        self.optim = o;
        if let Some(ema) = &mut self.ema {
            let steps = checkpoint::load_state(out)?.map_or(0, |s| s.step);
            ema.load(&checkpoint::folder(out), steps, &self.device)?;
        }
        Ok(())
    }
}
