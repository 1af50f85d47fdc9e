//! Loading a trained meta-model and integrating its field to synthesize classifiers.

use std::path::Path;

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::config::MetaConfig;
use super::field::{VectorField, time_input};
use super::files::{self, read_json};
use super::latent::codec::{self, Codec};
use super::normalize::Normalizer;
use super::source::{MomentRows, Source, SourceMoments, standard_normal};
use super::train::TrainSummary;
use crate::arch::Layout;
use crate::backend::values;
use crate::error::MetaError;
use crate::flow::sde;
use crate::flow::solver::{Solver, integrate};
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of source samples drawn for sampling (shared with the runtime).
pub const STREAM_SOURCE: u64 = nmflow_runtime::source::STREAM_SOURCE;
/// PRNG stream of the memoryless SDE sampler's noise (shared with the runtime).
pub const STREAM_SDE: u64 = nmflow_runtime::source::STREAM_SDE;
/// Seed of the encoded draws that estimate a latent Kaiming source's moments.
const MOMENT_SEED: u64 = 0x0A0E_5EED;

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
    /// A latent model's VAE (the field's state is its latent; samples are decoded).
    pub latent: Option<Codec<B>>,
    /// A conditioned model's support encoder and null embedding (unconditional sampling uses
    /// the null embedding).
    pub condition: Option<crate::meta::condition::network::ConditionNet<B>>,
}

impl<B: Backend> MetaModel<B> {
    /// Reads only the settings of the model directory `dir`.
    ///
    /// # Errors
    /// [`MetaError::File`] naming the missing or malformed file.
    pub fn read_config(dir: &Path) -> Result<MetaConfig, MetaError> {
        read_json(&dir.join(files::CONFIG))
    }

    /// Loads a finished model directory, checking that its files belong together: the training
    /// summary (written last) is there, the weights have the hash it recorded, and the layout,
    /// normalization and field all describe classifiers of the same size.
    ///
    /// # Errors
    /// [`MetaError::File`] naming the missing, altered or mismatched file.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, MetaError> {
        if !dir.is_dir() {
            return Err(MetaError::file(
                dir,
                "not a model directory (written by `nmflow train`)",
            ));
        }
        let config: MetaConfig = read_json(&dir.join(files::CONFIG))?;
        let summary_path = dir.join(files::SUMMARY);
        if !summary_path.is_file() {
            return Err(MetaError::file(
                dir,
                "training did not finish (no train.json); run the same `nmflow train` again to resume it",
            ));
        }
        let summary: TrainSummary = read_json(&summary_path)?;
        let normalizer: Normalizer = read_json(&dir.join(files::NORMALIZER))?;
        let layout: Layout = read_json(&dir.join(files::LAYOUT))?;
        let latent = match &config.latent {
            Some(spec) => {
                let folder = dir.join(codec::MODEL_FOLDER);
                let c = Codec::load(&folder, device)?;
                if c.config.zoo_manifest_sha256 != config.zoo_manifest_sha256
                    || c.latent() != spec.dim
                    || c.layout != layout
                    || c.weights_sha256.as_deref() != Some(spec.vae_sha256.as_str())
                {
                    return Err(MetaError::file(
                        folder,
                        "is not the VAE config.json records (another zoo, latent size, layout or weights)",
                    ));
                }
                Some(c)
            }
            None => None,
        };
        // The field's state: the classifier's weights, or a latent model's latent.
        let state = match &latent {
            Some(c) => codec::latent_layout(c.latent()),
            None => layout.clone(),
        };
        let p = state.num_params();
        let blocks: Vec<usize> = state.blocks.iter().map(|b| b.len()).collect();
        if config.field.dim != p
            || normalizer.block_len != blocks
            || normalizer.mean.len() != blocks.len()
            || normalizer.std.len() != blocks.len()
        {
            return Err(MetaError::file(
                dir.join(files::LAYOUT),
                format!(
                    "describes {} in {} blocks, but the field's state has {} values and the normalization {} blocks of {} values; the files come from different models",
                    if latent.is_some() {
                        format!("a {p}-value latent")
                    } else {
                        format!("{p}-parameter classifiers")
                    },
                    blocks.len(),
                    config.field.dim,
                    normalizer.block_len.len(),
                    normalizer.block_len.iter().sum::<usize>()
                ),
            ));
        }
        let weights = dir.join(files::WEIGHTS);
        let bin = weights.with_extension("bin");
        check_sha256(&bin, summary.field_sha256.as_deref())?;
        let field = config
            .field
            .init::<B>(device)
            .load_file(
                weights.clone(),
                &BinFileRecorder::<FullPrecisionSettings>::new(),
                device,
            )
            .map_err(|e| MetaError::file(&bin, e))?;
        let condition = match &config.condition {
            Some(c) => {
                use crate::meta::condition::train::WEIGHTS;
                let path = dir.join(WEIGHTS);
                let bin = path.with_extension("bin");
                check_sha256(&bin, summary.condition_sha256.as_deref())?;
                Some(
                    crate::meta::condition::network::load::<B>(
                        c,
                        field.inject_width(),
                        crate::meta::condition::train::FIRST_ID,
                        &path,
                        device,
                    )
                    .map_err(|e| MetaError::file(&bin, e))?,
                )
            }
            None => None,
        };
        Ok(Self {
            config,
            normalizer,
            layout,
            field,
            latent,
            condition,
        })
    }

    /// Values of the field's state: the classifier's parameters, or a latent model's latent size.
    pub fn state_dim(&self) -> usize {
        self.config.field.dim
    }

    /// Refuses a latent model where `what` needs a field on the weights themselves.
    ///
    /// # Errors
    /// [`MetaError::Usage`] naming the command.
    pub fn require_weight_space(&self, what: &str) -> Result<(), MetaError> {
        match &self.config.latent {
            None => Ok(()),
            Some(spec) => Err(crate::error::UsageError(format!(
                "{what} takes models whose field runs on the weights; this one is a latent model (its flow runs in the {}-value latent of the VAE {}): sample and eval it, or train one without --latent",
                spec.dim, spec.vae
            ))
            .into()),
        }
    }

    /// Refuses a field with a step-size input (`train --step-input`) where `what` does not feed
    /// one yet.
    ///
    /// # Errors
    /// [`MetaError::Usage`] naming the command.
    pub fn require_no_step_input(&self, what: &str) -> Result<(), MetaError> {
        if self.config.field.step_input {
            return Err(crate::error::UsageError(format!(
                "{what} does not take a field with a step-size input yet (this model was trained with --step-input): sample and eval it on the host, or train one without --step-input"
            ))
            .into());
        }
        Ok(())
    }

    /// Draws `n` source samples (raw state values, `[n, state_dim]`) from `seed`: sample `i`
    /// comes from `Rng::new(derive_seed(seed, i), STREAM_SOURCE)`, exactly what the device
    /// runtime's `synthesize(model, derive_seed(seed, i), …)` draws. For a latent model they are
    /// latents: the encoded Kaiming-uniform draws, or N(0, σ²) draws in latent units.
    ///
    /// # Errors
    /// [`MetaError::Tensor`] when encoding cannot read the backend's values back.
    pub fn source_samples(
        &self,
        n: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<Vec<f32>, MetaError> {
        let draw = |layout: &Layout| {
            let mut x0 = Vec::with_capacity(n * layout.num_params());
            for i in 0..n {
                self.config.source.sample_into(
                    layout,
                    1,
                    &mut Rng::new(derive_seed(seed, i as u64), STREAM_SOURCE),
                    &mut x0,
                );
            }
            x0
        };
        match (&self.latent, self.config.source) {
            (None, _) => Ok(draw(&self.layout)),
            (Some(c), Source::Kaiming) => c.encode(&draw(&self.layout), device),
            (Some(c), Source::Gaussian { .. }) => Ok(draw(&codec::latent_layout(c.latent()))),
        }
    }

    /// Raw states (`[n, state_dim]`) as raw weights: decoded for a latent model.
    ///
    /// # Errors
    /// [`MetaError::Tensor`] when decoding cannot read the backend's values back.
    pub fn weights_of(&self, states: Vec<f32>, device: &B::Device) -> Result<Vec<f32>, MetaError> {
        match &self.latent {
            Some(c) => c.decode(&states, device),
            None => Ok(states),
        }
    }

    /// The source's moments in the field's standardized coordinates ([`SourceMoments`]): in
    /// closed form for a weight model or a Gaussian latent source; for the encoded Kaiming
    /// source of a latent model, the per-coordinate mean and standard deviation of 4,096 encoded
    /// draws from a fixed seed (an approximation, as for any non-Gaussian source).
    ///
    /// # Errors
    /// [`MetaError::Tensor`] when encoding cannot read the backend's values back.
    pub fn source_moments(&self, device: &B::Device) -> Result<SourceMoments, MetaError> {
        let Some(codec) = &self.latent else {
            return Ok(SourceMoments::of(
                &self.config.source,
                &self.layout,
                &self.normalizer,
            ));
        };
        let latent = codec::latent_layout(codec.latent());
        if matches!(self.config.source, Source::Gaussian { .. }) {
            return Ok(SourceMoments::of(
                &self.config.source,
                &latent,
                &self.normalizer,
            ));
        }
        let n = 4096;
        let mut z = self.source_samples(n, MOMENT_SEED, device)?;
        self.normalizer.apply(&mut z);
        let l = codec.latent();
        let (mut mean, mut scale) = (vec![0.0f32; l], vec![0.0f32; l]);
        for j in 0..l {
            let col = z.iter().skip(j).step_by(l).map(|&v| f64::from(v));
            let (s, s2) = col.fold((0.0, 0.0), |(a, b), v| (a + v, b + v * v));
            let m = s / n as f64;
            mean[j] = m as f32;
            scale[j] = ((s2 / n as f64 - m * m).max(1e-12).sqrt()) as f32;
        }
        Ok(SourceMoments {
            mean,
            scale,
            exact: false,
        })
    }

    /// Integrates the field from the raw source samples `x0` (`[n, state_dim]`), returning raw
    /// weights (decoded, for a latent model) and the NFE; `observe(k, weights)` sees the raw
    /// weights at every state the solver visits (the step boundaries `k/steps` of an ODE solver;
    /// `x0`, then the grid from `t0` of [`Solver::Sde`]).
    ///
    /// [`Solver::Sde`] draws row `i`'s noise from `Rng::new(derive_seed(seed, i), STREAM_SDE)`
    /// (the stream the device runtime uses), so a classifier does not depend on how many are
    /// drawn with it; the ODE solvers ignore `seed`.
    ///
    /// # Errors
    /// [`MetaError::Tensor`] when the backend's values cannot be read back;
    /// [`MetaError::Usage`] for [`Solver::Sde`] with fewer than 2 steps.
    pub fn integrate_from(
        &self,
        x0: &[f32],
        solver: Solver,
        steps: usize,
        seed: u64,
        device: &B::Device,
        observe: &mut dyn FnMut(usize, Vec<f32>),
    ) -> Result<(Vec<f32>, usize), MetaError> {
        let p = self.state_dim();
        let n = x0.len() / p;
        let mut z = x0.to_vec();
        self.normalizer.apply(&mut z);
        let x = Tensor::<B, 2>::from_data(TensorData::new(z, [n, p]), device);
        // A conditioned model samples unconditionally here (the null embedding).
        let null = self.condition.as_ref().map(|c| c.inject(c.null(n)));
        let step = self.config.step_size(steps);
        let mut field = |x: Tensor<B, 2>, t: f32| {
            let tt = time_input::<B>(n, t, step, device);
            self.field.forward_with(x, tt, null.clone())
        };
        let mut failed = None;
        let mut obs = |k: usize, x: &Tensor<B, 2>| match values::<f32>(x.clone().into_data()) {
            Ok(mut raw) => {
                self.normalizer.invert(&mut raw);
                match self.weights_of(raw, device) {
                    Ok(w) => observe(k, w),
                    Err(e) => failed = Some(e),
                }
            }
            Err(e) => failed = Some(e.into()),
        };
        let (x1, nfe) = if solver == Solver::Sde {
            let mut v = |x: Tensor<B, 2>, t: f64| field(x, t as f32);
            self.integrate_sde(&mut v, x, steps, seed, device, &mut obs)?
        } else {
            integrate(solver, steps, x, &mut field, &mut obs)
        };
        if let Some(e) = failed {
            return Err(e);
        }
        let mut w = values::<f32>(x1.into_data())?;
        self.normalizer.invert(&mut w);
        Ok((self.weights_of(w, device)?, nfe))
    }

    /// The memoryless SDE sampler ([`Solver::Sde`], [`sde::integrate`]) of `field` from the
    /// standardized states `x` (`[n, state_dim]`) in `steps` evaluations: one Euler step of the
    /// ODE to the model's `t0`, then `steps − 1` Euler–Maruyama steps; row `i`'s noise comes from
    /// `Rng::new(derive_seed(seed, i), STREAM_SDE)`, as on the device.
    ///
    /// # Errors
    /// [`MetaError::Usage`] for fewer than 2 steps; [`MetaError::Tensor`] when a latent source's
    /// moments cannot be estimated.
    pub(crate) fn integrate_sde(
        &self,
        field: &mut dyn FnMut(Tensor<B, 2>, f64) -> Tensor<B, 2>,
        x: Tensor<B, 2>,
        steps: usize,
        seed: u64,
        device: &B::Device,
        observe: &mut dyn FnMut(usize, &Tensor<B, 2>),
    ) -> Result<(Tensor<B, 2>, usize), MetaError> {
        if steps < 2 {
            return Err(crate::error::UsageError(format!(
                "--solver sde takes at least 2 steps (one ODE step to t0, then Euler–Maruyama steps); got --steps {steps}"
            ))
            .into());
        }
        let [n, p] = x.dims();
        let moments = MomentRows::<B>::new(&self.source_moments(device)?, device);
        let mut rngs: Vec<Rng> = (0..n)
            .map(|i| Rng::new(derive_seed(seed, i as u64), STREAM_SDE))
            .collect();
        let mut noise = || {
            let mut z = Vec::with_capacity(n * p);
            for rng in &mut rngs {
                z.extend((0..p).map(|_| standard_normal(rng)));
            }
            Tensor::<B, 2>::from_data(TensorData::new(z, [n, p]), device)
        };
        Ok(sde::integrate(
            field,
            &moments.mean,
            &moments.scale,
            self.config.sde_t0(),
            steps - 1,
            x,
            &mut noise,
            observe,
        ))
    }

    /// Synthesizes `n` classifiers from `seed` (raw weights `[n, P]` in layout order) and the NFE.
    ///
    /// # Errors
    /// [`MetaError::Tensor`] when the backend's values cannot be read back.
    pub fn sample(
        &self,
        n: usize,
        solver: Solver,
        steps: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<f32>, usize), MetaError> {
        let x0 = self.source_samples(n, seed, device)?;
        self.integrate_from(&x0, solver, steps, seed, device, &mut |_, _| {})
    }
}

impl<B: burn::tensor::backend::AutodiffBackend> MetaModel<B> {
    /// The same model on the inner backend (no gradients).
    pub fn valid(&self) -> MetaModel<B::InnerBackend> {
        use burn::module::AutodiffModule;
        MetaModel {
            config: self.config.clone(),
            normalizer: self.normalizer.clone(),
            layout: self.layout.clone(),
            field: self.field.valid(),
            latent: self.latent.as_ref().map(Codec::valid),
            condition: self.condition.as_ref().map(|c| c.valid()),
        }
    }
}

/// Checks a weights file against the SHA-256 `train.json` recorded (models of earlier builds
/// recorded none).
fn check_sha256(bin: &Path, expected: Option<&str>) -> Result<(), MetaError> {
    if let Some(expected) = expected {
        let bytes = std::fs::read(bin).map_err(|e| MetaError::file(bin, e))?;
        if crate::io::sha256_hex(&bytes) != expected {
            return Err(MetaError::file(
                bin,
                "sha256 differs from the one train.json recorded: the weights were altered or damaged",
            ));
        }
    }
    Ok(())
}

/// Writes classifiers (`[n, P]` raw weights in layout order) as a safetensors file with one F32
/// tensor `weights` of shape `[n, P]`, atomically.
///
/// # Errors
/// [`MetaError::File`] when the shape does not match the data or the write fails.
pub fn write_classifiers(
    path: &Path,
    weights: &[f32],
    n: usize,
    p: usize,
) -> Result<(), MetaError> {
    let bytes: Vec<u8> = weights.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n, p], &bytes)
        .map_err(|e| MetaError::file(path, e))?;
    let file =
        safetensors::serialize([("weights", view)], None).map_err(|e| MetaError::file(path, e))?;
    crate::io::write_atomic(path, &file).map_err(|e| MetaError::file(path, e))
}
