//! The fused engine: the MLP field trained by the hand-written CPU trainer of
//! [`super::fused_mlp`] (NM-CFM and NM-MMFM without a functional term), saved and checkpointed in
//! the same burn record format as the burn engine.

use std::path::Path;

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};

use super::checkpoint;
use super::fused_mlp::{AdamSettings, Buffers, FusedAdam, FusedMlp};
use super::{Trainer, save_field};
use crate::backend::Cpu;
use crate::error::MetaError;
use crate::io::write_atomic;
use crate::meta::config::MetaConfig;
use crate::meta::field::VectorField;
use crate::meta::pairs::Batch;
use nmflow_runtime::Rng;

/// The fused CPU trainer of the MLP field ([`super::fused_mlp`]).
pub(super) struct FusedTrainer<'a> {
    pub(super) cfg: &'a MetaConfig,
    pub(super) device: burn::tensor::Device<Cpu>,
    /// A burn module of the field's shape (its values are replaced on every save).
    pub(super) template: VectorField<Cpu>,
    pub(super) mlp: FusedMlp,
    pub(super) adam: FusedAdam,
    pub(super) settings: AdamSettings,
    pub(super) buf: Buffers,
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
    fn step(
        &mut self,
        (xt, ts, ut, _): &Batch,
        lr: f64,
        _data_rng: &mut Rng,
    ) -> (f32, Option<f32>) {
        let loss = self.mlp.step(&mut self.adam, xt, ts, ut, lr, &mut self.buf);
        (loss as f32, None)
    }

    fn heldout_loss(&mut self, (xt, ts, ut, _): &Batch) -> (f64, Option<f64>) {
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
            .mlp_layers()?
            .ok_or_else(|| MetaError::file(dir.join("field.bin"), "not an MLP field"))?;
        self.mlp = FusedMlp::new(self.cfg.field.dim, self.cfg.field.time_dim, layers)
            .map_err(|e| MetaError::file(dir.join("field.bin"), e))?;
        self.adam = FusedAdam::read(&dir.join(FUSED_OPTIM), self.settings, &self.mlp)?;
        Ok(())
    }
}
