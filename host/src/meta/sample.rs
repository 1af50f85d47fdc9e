//! Loading a trained meta-model and integrating its field to synthesize classifiers.

use std::fs;
use std::path::Path;

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::de::DeserializeOwned;

use super::config::MetaConfig;
use super::field::VectorField;
use super::normalize::Normalizer;
use super::train::files;
use crate::arch::Layout;
use crate::error::MetaError;
use crate::flow::solver::{Solver, integrate};
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of source samples drawn for sampling (shared with the runtime).
pub const STREAM_SOURCE: u64 = nmflow_runtime::source::STREAM_SOURCE;

/// A trained meta-model, ready to sample.
pub struct MetaModel<B: Backend> {
    /// Its settings.
    pub config: MetaConfig,
    /// Standardization statistics.
    pub normalizer: Normalizer,
    /// Layout of the classifiers it makes.
    pub layout: Layout,
    /// The field.
    pub field: VectorField<B>,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, MetaError> {
    let text = fs::read_to_string(path).map_err(|e| {
        MetaError::file(
            path,
            format!("{e} (is this a model directory written by `nmflow train`?)"),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| MetaError::file(path, e))
}

impl<B: Backend> MetaModel<B> {
    /// Loads a model directory.
    ///
    /// # Errors
    /// [`MetaError::File`] naming the missing or malformed file.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, MetaError> {
        let config: MetaConfig = read_json(&dir.join(files::CONFIG))?;
        let normalizer: Normalizer = read_json(&dir.join(files::NORMALIZER))?;
        let layout: Layout = read_json(&dir.join(files::LAYOUT))?;
        let weights = dir.join(files::WEIGHTS);
        let field = config
            .field
            .init::<B>(device)
            .load_file(
                weights.clone(),
                &BinFileRecorder::<FullPrecisionSettings>::new(),
                device,
            )
            .map_err(|e| MetaError::file(weights.with_extension("bin"), e))?;
        Ok(Self {
            config,
            normalizer,
            layout,
            field,
        })
    }

    /// Draws `n` source samples (raw weights, `[n, P]`) from `seed`: sample `i` comes from
    /// `Rng::new(derive_seed(seed, i), STREAM_SOURCE)`, exactly what the device runtime's
    /// `synthesize(model, derive_seed(seed, i), …)` draws.
    pub fn source_samples(&self, n: usize, seed: u64) -> Vec<f32> {
        let mut x0 = Vec::with_capacity(n * self.layout.num_params());
        for i in 0..n {
            self.config.source.sample_into(
                &self.layout,
                1,
                &mut Rng::new(derive_seed(seed, i as u64), STREAM_SOURCE),
                &mut x0,
            );
        }
        x0
    }

    /// Integrates the field from the raw source samples `x0` (`[n, P]`), returning raw weights and
    /// the NFE; `observe(k, states)` sees the raw states at every step boundary `k/steps`.
    pub fn integrate_from(
        &self,
        x0: &[f32],
        solver: Solver,
        steps: usize,
        device: &B::Device,
        observe: &mut dyn FnMut(usize, Vec<f32>),
    ) -> (Vec<f32>, usize) {
        let p = self.layout.num_params();
        let n = x0.len() / p;
        let mut z = x0.to_vec();
        self.normalizer.apply(&mut z);
        let x = Tensor::<B, 2>::from_data(TensorData::new(z, [n, p]), device);
        let mut field = |x: Tensor<B, 2>, t: f32| {
            let tt = Tensor::<B, 2>::full([n, 1], t, device);
            self.field.forward(x, tt)
        };
        let mut obs = |k: usize, x: &Tensor<B, 2>| {
            let mut raw = x.clone().into_data().to_vec::<f32>().unwrap_or_default();
            self.normalizer.invert(&mut raw);
            observe(k, raw);
        };
        let (x1, nfe) = integrate(solver, steps, x, &mut field, &mut obs);
        let mut w = x1.into_data().to_vec::<f32>().unwrap_or_default();
        self.normalizer.invert(&mut w);
        (w, nfe)
    }

    /// Synthesizes `n` classifiers from `seed` (raw weights `[n, P]` in layout order) and the NFE.
    pub fn sample(
        &self,
        n: usize,
        solver: Solver,
        steps: usize,
        seed: u64,
        device: &B::Device,
    ) -> (Vec<f32>, usize) {
        let x0 = self.source_samples(n, seed);
        self.integrate_from(&x0, solver, steps, device, &mut |_, _| {})
    }
}
