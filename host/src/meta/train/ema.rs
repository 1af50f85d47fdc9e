//! An exponential moving average of a model's weights (`nmflow train --ema DECAY`).
//!
//! After optimizer step `n` (counted from 1) every weight of the average moves towards the
//! trained weight: `ē ← r·ē + (1 − r)·w` with `r = min(DECAY, n / (n + 9))`, so the first steps
//! (where `r` is small) do not freeze the average at the initialization. The average, not the
//! trained weights, is what held-out evaluations measure and what the model directory keeps;
//! checkpoints hold both, so a resumed run ends with the same bytes.

use std::marker::PhantomData;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::MetaError;

/// The averaged weights' file in a checkpoint folder (`ema.bin`).
pub const FILE: &str = "ema";

/// The moving average of a model `M`'s weights.
#[derive(Debug)]
pub struct Ema<B: Backend, M: Module<B>> {
    model: M,
    decay: f64,
    updates: usize,
    backend: PhantomData<B>,
}

/// The rate `r` of update number `n` (from 1) for the decay `decay`.
pub fn rate(decay: f64, n: usize) -> f64 {
    decay.min(n as f64 / (n as f64 + 9.0))
}

/// Every float parameter of a module, flattened, in visiting order.
struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

/// Moves every float parameter towards the collected ones: `p ← r·p + (1 − r)·w`.
struct Blend<B: Backend> {
    towards: std::vec::IntoIter<Tensor<B, 1>>,
    rate: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, value, mapper) = param.consume();
        let value = match self.towards.next() {
            Some(w) => {
                let w = w.reshape(value.shape());
                value * self.rate + w * (1.0 - self.rate)
            }
            // Both modules come from the same configuration, so this does not happen; the
            // parameter is then left as it is.
            None => value,
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

impl<B: Backend, M: Module<B>> Ema<B, M> {
    /// An average that starts at `model` with the decay `decay` (in `(0, 1)`).
    pub fn new(model: M, decay: f64) -> Self {
        Self {
            model,
            decay,
            updates: 0,
            backend: PhantomData,
        }
    }

    /// The averaged model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Moves the average towards `current` (the weights after the next optimizer step).
    pub fn update(&mut self, current: &M) {
        self.updates += 1;
        let mut collect = Collect(Vec::new());
        current.visit(&mut collect);
        let mut blend = Blend {
            towards: collect.0.into_iter(),
            rate: rate(self.decay, self.updates),
        };
        self.model = self.model.clone().map(&mut blend);
    }

    /// Writes the average into the checkpoint folder `dir`.
    ///
    /// # Errors
    /// [`MetaError::File`] naming the file.
    pub fn save(&self, dir: &Path) -> Result<(), MetaError> {
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        self.model
            .clone()
            .save_file(dir.join(FILE), &recorder)
            .map_err(|e| MetaError::file(dir.join(format!("{FILE}.bin")), e))
    }

    /// Reads the average of the checkpoint folder `dir`, taken after `updates` optimizer steps.
    ///
    /// # Errors
    /// [`MetaError::File`] naming the unreadable file.
    pub fn load(
        &mut self,
        dir: &Path,
        updates: usize,
        device: &B::Device,
    ) -> Result<(), MetaError> {
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        self.model = self
            .model
            .clone()
            .load_file(dir.join(FILE), &recorder, device)
            .map_err(|e| MetaError::file(dir.join(format!("{FILE}.bin")), e))?;
        self.updates = updates;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    fn weights(l: &Linear<Cpu>) -> Vec<f32> {
        let mut c = Collect(Vec::new());
        l.visit(&mut c);
        c.0.into_iter()
            .flat_map(|t| t.into_data().to_vec::<f32>().unwrap())
            .collect()
    }

    fn filled(l: &Linear<Cpu>, v: f32) -> Linear<Cpu> {
        struct Fill(f32);
        impl ModuleMapper<Cpu> for Fill {
            fn map_float<const D: usize>(
                &mut self,
                p: Param<Tensor<Cpu, D>>,
            ) -> Param<Tensor<Cpu, D>> {
                let (id, t, m) = p.consume();
                let shape = t.shape();
                let n = shape.num_elements();
                let t =
                    Tensor::<Cpu, 1>::from_data(TensorData::new(vec![self.0; n], [n]), &t.device())
                        .reshape(shape);
                Param::from_mapped_value(id, t, m)
            }
        }
        l.clone().map(&mut Fill(v))
    }

    #[test]
    fn the_rate_warms_up_and_is_capped_by_the_decay() {
        assert!((rate(0.999, 1) - 0.1).abs() < 1e-12);
        assert!((rate(0.999, 91) - 0.91).abs() < 1e-12);
        assert_eq!(rate(0.999, 1_000_000), 0.999);
    }

    #[test]
    fn the_average_follows_the_closed_form_for_every_parameter() {
        let device = Default::default();
        let start = filled(&LinearConfig::new(3, 2).init::<Cpu>(&device), 1.0);
        let mut ema = Ema::new(start.clone(), 0.5);
        // Steps 1, 2, 3 with the trained weights at 2, 3, 4: rates 0.1, 2/11, 0.25.
        let mut expect = 1.0f64;
        for (n, w) in [2.0f32, 3.0, 4.0].into_iter().enumerate() {
            ema.update(&filled(&start, w));
            let r = rate(0.5, n + 1);
            expect = r * expect + (1.0 - r) * f64::from(w);
        }
        let got = weights(ema.model());
        assert_eq!(got.len(), 3 * 2 + 2, "weight and bias");
        for g in got {
            assert!((f64::from(g) - expect).abs() < 1e-6, "{g} vs {expect}");
        }
    }
}
