//! Training a conditioned field: every training pair sees a support set of its run's task (or,
//! at the rate `--cfg-drop`, the null embedding), and the functional term scores classifiers the
//! conditioned sampler makes for random seen tasks against those tasks' labels.

use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::config::ConditionConfig;
use super::network::ConditionNet;
use super::relabel::Relabel;
use super::support::SupportPool;
use crate::arch::Layout;
use crate::error::MetaError;
use crate::meta::config::MetaConfig;
use crate::meta::field::VectorField;
use crate::meta::normalize::Normalizer;
use crate::meta::pairs::Batch;
use crate::meta::reward::DataReward;
use crate::meta::train::ema::Ema;
use crate::meta::train::{Trainer, VALIDATION_IMAGES, VALIDATION_SAMPLES, checkpoint, save_field};
use crate::optim::AdamSettings;
use nmflow_runtime::Rng;

/// The condition's weights in a model directory (beside `field.bin`).
pub const WEIGHTS: &str = "condition";
/// PRNG stream of the held-out evaluation's support sets and validation draws.
const STREAM_HELDOUT_SUPPORT: u64 = 14;
/// Parameter ids of the condition start here (the field's are numbered from 1).
pub const FIRST_ID: u64 = 1 << 20;

/// A field and its condition, trained together.
#[derive(Module, Debug)]
pub struct Conditioned<B: Backend> {
    /// The field.
    pub field: VectorField<B>,
    /// The support encoder and its injection.
    pub condition: ConditionNet<B>,
}

impl<B: Backend> Conditioned<B> {
    /// The velocity at `(x, t)` for task embeddings `e` (`[n, E]`).
    pub fn velocity(&self, x: Tensor<B, 2>, t: Tensor<B, 2>, e: Tensor<B, 2>) -> Tensor<B, 2> {
        self.condition.velocity(&self.field, x, t, e)
    }
}

/// Adam over the field and its condition.
pub type ConditionedOptimizer<B> = OptimizerAdaptor<Adam, Conditioned<B>, B>;

/// A fresh field and condition (burn's default initialization from the backend's seed).
pub fn init<B: Backend>(
    cfg: &MetaConfig,
    cond: &ConditionConfig,
    device: &B::Device,
) -> Conditioned<B> {
    let field: VectorField<B> = cfg.field.init(device);
    let h = field.inject_width();
    Conditioned {
        condition: cond.init(h, FIRST_ID, device),
        field,
    }
}

/// The burn engine for a conditioned field.
pub(crate) struct ConditionedTrainer<'a, B: AutodiffBackend> {
    pub(crate) cfg: &'a MetaConfig,
    pub(crate) cond: ConditionConfig,
    pub(crate) layout: &'a Layout,
    pub(crate) normalizer: &'a Normalizer,
    pub(crate) device: B::Device,
    pub(crate) model: Conditioned<B>,
    pub(crate) optim: ConditionedOptimizer<B>,
    pub(crate) functional: Option<DataReward<B>>,
    /// Training images to draw support sets from.
    pub(crate) pool: SupportPool<'a>,
    /// Label map of every task.
    pub(crate) maps: &'a [Vec<u8>],
    /// Task of every training run (in the pair sampler's order), and of every held-out run.
    pub(crate) train_tasks: Vec<usize>,
    pub(crate) held_tasks: Vec<usize>,
    /// The tasks seen in training (the functional term's rollouts draw from them).
    pub(crate) seen: Vec<usize>,
    /// The output layer, where training pairs are relabelled (`--relabel`).
    pub(crate) relabel: Option<Relabel>,
    /// Label maps of the unseen tasks, which relabelling never draws.
    pub(crate) unseen_maps: Vec<&'a [u8]>,
    /// The moving average of the field's and condition's weights (`--ema`), which the model
    /// keeps.
    pub(crate) ema: Option<Ema<B::InnerBackend, Conditioned<B::InnerBackend>>>,
}

/// A fresh Adam optimizer with the settings' weight decay.
pub(crate) fn adam<B: AutodiffBackend>(cfg: &MetaConfig) -> ConditionedOptimizer<B> {
    AdamSettings::BURN
        .with_weight_decay(cfg.weight_decay)
        .burn_config()
        .init::<B, Conditioned<B>>()
}

fn rows<B: Backend>(v: Vec<f32>, n: usize, m: usize, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(v, [n, m]), device)
}

impl<B: AutodiffBackend> ConditionedTrainer<'_, B> {
    /// The model kept: the moving average, or the trained weights.
    fn kept(&self) -> Conditioned<B::InnerBackend> {
        self.ema
            .as_ref()
            .map_or_else(|| self.model.valid(), |e| e.model().clone())
    }

    /// Task embeddings of one support set per label map.
    fn embed<C: Backend>(
        &self,
        net: &ConditionNet<C>,
        maps: &[&[u8]],
        rng: &mut Rng,
        device: &C::Device,
    ) -> Tensor<C, 2> {
        let s = self.pool.draw(maps, self.cond.shots, rng);
        net.encode(s.tensor::<C>(self.pool.dim(), device), &s.labels)
    }

    /// Classifiers (standardized) the conditioned sampler makes for the label maps `maps`, with `k` Euler
    /// steps from fresh source samples, differentiable through every step.
    fn rollout<C: Backend>(
        &self,
        model: &Conditioned<C>,
        maps: &[&[u8]],
        k: usize,
        rng: &mut Rng,
        device: &C::Device,
    ) -> Tensor<C, 2> {
        let e = self.embed(&model.condition, maps, rng, device);
        let (n, p) = (maps.len(), self.layout.num_params());
        let mut z = Vec::new();
        self.cfg.source.sample_into(self.layout, n, rng, &mut z);
        self.normalizer.apply(&mut z);
        let mut z = rows::<C>(z, n, p, device);
        for j in 0..k {
            let tj = Tensor::<C, 2>::full([n, 1], j as f32 / k as f32, device);
            z = z.clone() + model.velocity(z, tj, e.clone()) / k as f64;
        }
        z
    }
}

impl<B: AutodiffBackend> Trainer for ConditionedTrainer<'_, B> {
    fn step(
        &mut self,
        (xt, ts, ut, runs): &Batch,
        lr: f64,
        data_rng: &mut Rng,
    ) -> (f32, Option<f32>) {
        let (cfg, device) = (self.cfg, &self.device);
        let (n, p) = (ts.len(), self.layout.num_params());
        let (mut xt, mut ut) = (xt.clone(), ut.clone());
        let maps: Vec<Vec<u8>> = runs
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let map = self.maps[self.train_tasks[r]].as_slice();
                let Some(relabel) = &self.relabel else {
                    return map.to_vec();
                };
                let (sigma, relabelled) = relabel.draw(map, &self.unseen_maps, data_rng);
                relabel.apply(&sigma, &mut xt[i * p..(i + 1) * p]);
                relabel.apply(&sigma, &mut ut[i * p..(i + 1) * p]);
                relabelled
            })
            .collect();
        let maps: Vec<&[u8]> = maps.iter().map(Vec::as_slice).collect();
        let e = self.embed(&self.model.condition, &maps, data_rng, device);
        let keep: Vec<bool> = (0..n)
            .map(|_| data_rng.uniform() >= self.cond.drop)
            .collect();
        let e = self.model.condition.drop_rows(e, &keep);
        let x = rows::<B>(xt, n, p, device);
        let t = rows::<B>(ts.clone(), n, 1, device);
        let u = rows::<B>(ut, n, p, device);
        let fm = (self.model.velocity(x, t, e) - u).powi_scalar(2).mean();
        let fm_value: f32 = fm.clone().into_scalar().elem();
        let (loss, ce_value) = match &self.functional {
            Some(f) => {
                let len = u32::try_from(self.seen.len()).unwrap_or(u32::MAX);
                let maps: Vec<Vec<u8>> = (0..cfg.functional_samples)
                    .map(|_| {
                        let map = self.maps[self.seen[data_rng.below(len) as usize]].as_slice();
                        match &self.relabel {
                            Some(r) => r.draw(map, &self.unseen_maps, data_rng).1,
                            None => map.to_vec(),
                        }
                    })
                    .collect();
                let maps: Vec<&[u8]> = maps.iter().map(Vec::as_slice).collect();
                let k = cfg.rollout_steps(data_rng);
                let end = self.rollout(&self.model, &maps, k, data_rng, device);
                let ce = f.loss_relabelled(end, &maps, cfg.functional_batch, data_rng);
                let ce_value: f32 = ce.clone().into_scalar().elem();
                (fm + ce * f64::from(cfg.functional_weight), Some(ce_value))
            }
            None => (fm, None),
        };
        if fm_value.is_finite() && ce_value.is_none_or(f32::is_finite) {
            let grads = GradientsParams::from_grads(loss.backward(), &self.model);
            self.model = self.optim.step(lr, self.model.clone(), grads);
        }
        if let Some(ema) = &mut self.ema {
            ema.update(&self.model.valid());
        }
        (fm_value, ce_value)
    }

    fn heldout_loss(&mut self, (xt, ts, ut, runs): &Batch) -> (f64, Option<f64>) {
        let model = self.kept();
        let device = &self.device;
        let p = self.layout.num_params();
        let mut rng = Rng::new(self.cfg.seed, STREAM_HELDOUT_SUPPORT);
        let chunk = 128;
        let mut total = 0.0;
        for start in (0..ts.len()).step_by(chunk) {
            let m = chunk.min(ts.len() - start);
            let maps: Vec<&[u8]> = runs[start..start + m]
                .iter()
                .map(|&r| self.maps[self.held_tasks[r]].as_slice())
                .collect();
            let e = self.embed(&model.condition, &maps, &mut rng, device);
            let x = rows(xt[start * p..(start + m) * p].to_vec(), m, p, device);
            let t = rows(ts[start..start + m].to_vec(), m, 1, device);
            let u = rows(ut[start * p..(start + m) * p].to_vec(), m, p, device);
            let se: f32 = (model.velocity(x, t, e) - u)
                .powi_scalar(2)
                .sum()
                .into_scalar()
                .elem();
            total += f64::from(se);
        }
        let fm = total / (ts.len() * p) as f64;
        let ce = self.functional.as_ref().map(|f| {
            // The model's own sampler (solver and steps) on fixed tasks, supports and sources.
            let tasks: Vec<usize> = (0..VALIDATION_SAMPLES)
                .map(|i| self.seen[i % self.seen.len()])
                .collect();
            let maps: Vec<&[u8]> = tasks.iter().map(|&t| self.maps[t].as_slice()).collect();
            let e = self.embed(&model.condition, &maps, &mut rng, device);
            let n = tasks.len();
            let mut z = Vec::new();
            self.cfg
                .source
                .sample_into(self.layout, n, &mut rng, &mut z);
            self.normalizer.apply(&mut z);
            let mut v = |x: Tensor<B::InnerBackend, 2>, t: f32| {
                model.velocity(x, Tensor::full([n, 1], t, device), e.clone())
            };
            let (end, _) = crate::flow::solver::integrate(
                self.cfg.solver,
                self.cfg.solver_steps,
                rows(z, n, p, device),
                &mut v,
                &mut |_, _| {},
            );
            let ce: f32 = f
                .loss_inner_relabelled(end, &maps, VALIDATION_IMAGES, &mut rng)
                .into_scalar()
                .elem();
            f64::from(ce)
        });
        (fm, ce)
    }

    fn save_field(&self, out: &Path) -> Result<(), MetaError> {
        let model = self.kept();
        save_field(&model.field, out)?;
        save_condition(&model.condition, out)
    }

    fn checkpoint(&self, out: &Path, state: &checkpoint::State) -> Result<(), MetaError> {
        checkpoint::save_with(out, state, |partial| {
            let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
            self.model
                .clone()
                .save_file(partial.join("model"), &recorder)
                .map_err(|e| MetaError::file(partial.join("model.bin"), e))?;
            Recorder::<B>::record(&recorder, self.optim.to_record(), partial.join("optim"))
                .map_err(|e| MetaError::file(partial.join("optim.bin"), e))?;
            self.ema.as_ref().map_or(Ok(()), |e| e.save(partial))
        })
    }

    fn resume(&mut self, out: &Path) -> Result<(), MetaError> {
        let dir = checkpoint::folder(out);
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        let cond = self
            .cfg
            .condition
            .ok_or_else(|| MetaError::file(out, "the settings have no condition"))?;
        self.model = init::<B>(self.cfg, &cond, &self.device)
            .load_file(dir.join("model"), &recorder, &self.device)
            .map_err(|e| MetaError::file(dir.join("model.bin"), e))?;
        let record = Recorder::<B>::load(&recorder, dir.join("optim"), &self.device)
            .map_err(|e| MetaError::file(dir.join("optim.bin"), e))?;
        self.optim = adam::<B>(self.cfg).load_record(record);
        if let Some(ema) = &mut self.ema {
            let steps = checkpoint::load_state(out)?.map_or(0, |s| s.step);
            ema.load(&dir, steps, &self.device)?;
        }
        Ok(())
    }
}

/// Saves the condition atomically as `dir/condition.bin`.
///
/// # Errors
/// [`MetaError::File`] naming the file that could not be written.
pub fn save_condition<B: Backend>(net: &ConditionNet<B>, dir: &Path) -> Result<(), MetaError> {
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let tmp = dir.join("condition-partial");
    net.clone()
        .save_file(tmp.clone(), &recorder)
        .map_err(|e| MetaError::file(&tmp, e))?;
    let from = dir.join("condition-partial.bin");
    let to = dir.join(format!("{WEIGHTS}.bin"));
    std::fs::rename(&from, &to).map_err(|e| MetaError::file(&to, e))
}
