//! The fused engine: the MLP field (NM-CFM and NM-MMFM without a functional term) and the set
//! field (NM-CFM and NM-MMFM, with or without the functional term) trained by the hand-written CPU
//! trainers of [`super::fused_mlp`] and [`super::fused_set`], saved and checkpointed in the same
//! burn record format as the burn engine.

use std::path::Path;

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};

use super::checkpoint;
use super::fused_mlp::{AdamSettings, Buffers, FusedAdam, FusedMlp};
use super::fused_set::{Functional, FusedSet, StepBuffers};
use super::{Trainer, save_field};
use crate::arch::Layout;
use crate::backend::{Cpu, CpuAutodiff};
use crate::data::Dataset;
use crate::data::dataset::Split;
use crate::error::MetaError;
use crate::io::write_atomic;
use crate::meta::config::MetaConfig;
use crate::meta::field::VectorField;
use crate::meta::normalize::Normalizer;
use crate::meta::pairs::Batch;
use crate::meta::reward::{DataReward, Reward};
use nmflow_runtime::Rng;

/// A network the fused engine trains: its layers and its training step.
pub(super) trait FusedNet: Send {
    /// The layers in module order, as [`VectorField::with_linear_layers`] takes them.
    fn layers(&self) -> &[(Vec<f32>, Vec<f32>)];
    /// The same network with the values `layers` (read back from a checkpoint).
    ///
    /// # Errors
    /// A message if they do not have this network's shapes.
    fn replace(&mut self, layers: Vec<(Vec<f32>, Vec<f32>)>) -> Result<(), String>;
    /// One optimizer step; see [`Trainer::step`].
    fn step(
        &mut self,
        adam: &mut FusedAdam,
        batch: &Batch,
        lr: f64,
        data_rng: &mut Rng,
    ) -> (f32, Option<f32>);
    /// See [`Trainer::heldout_loss`]; `field` is this network as a burn module.
    fn heldout_loss(&mut self, set: &Batch, field: &VectorField<Cpu>) -> (f64, Option<f64>);
}

/// The MLP field on [`FusedMlp`].
pub(super) struct MlpNet {
    pub(super) mlp: FusedMlp,
    pub(super) buf: Buffers,
}

impl FusedNet for MlpNet {
    fn layers(&self) -> &[(Vec<f32>, Vec<f32>)] {
        self.mlp.layers()
    }

    fn replace(&mut self, layers: Vec<(Vec<f32>, Vec<f32>)>) -> Result<(), String> {
        self.mlp = FusedMlp::new(self.mlp.dim(), self.mlp.time_dim(), layers)?;
        Ok(())
    }

    fn step(
        &mut self,
        adam: &mut FusedAdam,
        (xt, ts, ut, _): &Batch,
        lr: f64,
        _data_rng: &mut Rng,
    ) -> (f32, Option<f32>) {
        let loss = self.mlp.step(adam, xt, ts, ut, lr, &mut self.buf);
        (loss as f32, None)
    }

    fn heldout_loss(
        &mut self,
        (xt, ts, ut, _): &Batch,
        _: &VectorField<Cpu>,
    ) -> (f64, Option<f64>) {
        let (n, p) = (ts.len(), self.mlp.dim());
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
}

/// The fused CPU trainer of a field ([`super::fused_mlp`], [`super::fused_set`]).
pub(super) struct FusedTrainer<N: FusedNet> {
    pub(super) device: burn::tensor::Device<Cpu>,
    /// A burn module of the field's shape (its values are replaced on every save).
    pub(super) template: VectorField<Cpu>,
    pub(super) net: N,
    pub(super) adam: FusedAdam,
    pub(super) settings: AdamSettings,
}

/// The fused trainer's optimizer file in a checkpoint.
const FUSED_OPTIM: &str = "optim-fused.safetensors";

impl<N: FusedNet> FusedTrainer<N> {
    /// The field as a burn module (for saving and loading burn records).
    fn field(&self) -> VectorField<Cpu> {
        self.template.clone().with_linear_layers(self.net.layers())
    }
}

impl<N: FusedNet> Trainer for FusedTrainer<N> {
    fn step(&mut self, batch: &Batch, lr: f64, data_rng: &mut Rng) -> (f32, Option<f32>) {
        // The whole step runs on one of rayon's workers: its many parallel passes are then
        // forked from inside the pool (run inline when the pool has one thread) instead of each
        // waking a worker and putting the calling thread to sleep.
        let (net, adam) = (&mut self.net, &mut self.adam);
        rayon::scope(|_| net.step(adam, batch, lr, data_rng))
    }

    fn heldout_loss(&mut self, set: &Batch) -> (f64, Option<f64>) {
        let field = self.field();
        self.net.heldout_loss(set, &field)
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
            .linear_layers()?
            .ok_or_else(|| MetaError::file(dir.join("field.bin"), "not an MLP or set field"))?;
        self.net
            .replace(layers)
            .map_err(|e| MetaError::file(dir.join("field.bin"), e))?;
        self.adam = FusedAdam::read(&dir.join(FUSED_OPTIM), self.settings, self.net.layers())?;
        Ok(())
    }
}

/// The set field on [`FusedSet`], with the functional term when it is on.
pub(super) struct SetNet<'a> {
    pub(super) cfg: &'a MetaConfig,
    pub(super) layout: &'a Layout,
    pub(super) normalizer: &'a Normalizer,
    pub(super) field: FusedSet,
    pub(super) buf: StepBuffers,
    /// The training images the functional term scores on (`None`: no functional term).
    pub(super) images: Option<&'a Split>,
    /// The same images for the held-out validation, which runs the model's own solver on burn.
    pub(super) reward: Option<DataReward<CpuAutodiff>>,
    /// Per-coordinate `(std, mean)` that undo the standardization.
    pub(super) scales: (Vec<f32>, Vec<f32>),
    pub(super) device: burn::tensor::Device<Cpu>,
    source: Vec<f32>,
    batch_images: Vec<f32>,
    batch_labels: Vec<u8>,
}

impl<'a> SetNet<'a> {
    /// The trainer of `field`; `images` (the zoo's training split) switches the functional term
    /// on.
    pub(super) fn new(
        cfg: &'a MetaConfig,
        layout: &'a Layout,
        normalizer: &'a Normalizer,
        field: FusedSet,
        images: Option<(&'a Dataset, &crate::arch::Arch)>,
    ) -> Self {
        let device = Default::default();
        Self {
            cfg,
            layout,
            normalizer,
            field,
            buf: StepBuffers::default(),
            images: images.map(|(d, _)| &d.train),
            reward: images.map(|(data, arch)| {
                DataReward::new(
                    Reward::CrossEntropy,
                    arch,
                    layout,
                    data,
                    normalizer,
                    &device,
                )
            }),
            scales: normalizer.coordinate_scales(),
            device,
            source: Vec::new(),
            batch_images: Vec::new(),
            batch_labels: Vec::new(),
        }
    }
}

impl FusedNet for SetNet<'_> {
    fn layers(&self) -> &[(Vec<f32>, Vec<f32>)] {
        self.field.layers()
    }

    fn replace(&mut self, layers: Vec<(Vec<f32>, Vec<f32>)>) -> Result<(), String> {
        self.field = FusedSet::new(self.field.shape(), layers)?;
        Ok(())
    }

    fn step(
        &mut self,
        adam: &mut FusedAdam,
        (xt, ts, ut, _): &Batch,
        lr: f64,
        data_rng: &mut Rng,
    ) -> (f32, Option<f32>) {
        let cfg = self.cfg;
        // The same draws, in the same order, as the burn engine: source samples, the rollout's
        // length, then the images.
        let functional = self.images.map(|split| {
            let rollout = (cfg.functional_rollout > 0).then(|| {
                self.source.clear();
                cfg.source.sample_into(
                    self.layout,
                    cfg.functional_samples,
                    data_rng,
                    &mut self.source,
                );
                self.normalizer.apply(&mut self.source);
                cfg.rollout_steps(data_rng)
            });
            let (n, d) = (split.len(), split.dim);
            self.batch_images.clear();
            self.batch_labels.clear();
            for _ in 0..cfg.functional_batch {
                let i = data_rng.below(u32::try_from(n).unwrap_or(u32::MAX)) as usize;
                self.batch_images.extend_from_slice(&split.x[i * d..][..d]);
                self.batch_labels.push(split.y[i]);
            }
            rollout
        });
        let steps = functional.flatten().unwrap_or(cfg.solver_steps);
        let step = cfg.step_size(steps).unwrap_or(0.0);
        let functional = functional.map(|rollout| Functional {
            weight: cfg.functional_weight,
            rollout: rollout.map(|k| (self.source.as_slice(), k)),
            images: &self.batch_images,
            labels: &self.batch_labels,
            std: &self.scales.0,
            mean: &self.scales.1,
        });
        let (fm, ce) = self
            .field
            .loss_and_grads(xt, ts, step, ut, functional, &mut self.buf);
        if fm.is_finite() && ce.is_none_or(f64::is_finite) {
            self.field.apply(adam, lr, &self.buf);
        }
        (fm as f32, ce.map(|c| c as f32))
    }

    fn heldout_loss(&mut self, set: &Batch, field: &VectorField<Cpu>) -> (f64, Option<f64>) {
        let p = self.field.shape().params();
        let step = self.cfg.step_size(self.cfg.solver_steps);
        let fm = super::burn_engine::set_loss(field, set, p, 1.0, step, &self.device);
        let ce = self
            .reward
            .as_ref()
            .map(|r| super::burn_engine::validation(r, self.cfg, self.normalizer, field));
        (fm, ce)
    }
}
