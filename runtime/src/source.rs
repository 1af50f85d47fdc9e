//! Sampling the source law in the classifier's layout order (the host draws the same values).

use nmflow_format::{ModelFile, SourceKind};

use crate::math;
use crate::rng::Rng;

/// PRNG stream of source samples (the host's `STREAM_SOURCE`).
pub const STREAM_SOURCE: u64 = 20;
/// PRNG stream of the memoryless SDE sampler's noise (the host's `STREAM_SDE`), seeded like the
/// source sample.
pub const STREAM_SDE: u64 = 21;

/// A standard normal sample by Box–Muller (the host's formula).
pub fn standard_normal(rng: &mut Rng) -> f32 {
    let u1 = (rng.uniform() + 1.0 / 33_554_432.0).min(1.0);
    let u2 = rng.uniform();
    math::sqrt(-2.0 * math::ln(u1)) * math::cos(core::f32::consts::TAU * u2)
}

/// Fills `x` (the state's length) with a raw source sample: per layer, the weight block then the
/// bias block; for a latent model, N(0, σ²) latent values.
pub fn sample(file: &ModelFile<'_>, rng: &mut Rng, x: &mut [f32]) {
    if file.latent.is_some() {
        let std = match file.source {
            SourceKind::Gaussian { std } => std,
            // Validation refuses a latent model with another source.
            SourceKind::Kaiming => 1.0,
        };
        for v in x.iter_mut() {
            *v = std * standard_normal(rng);
        }
        return;
    }
    let mut it = x.iter_mut();
    for layer in &file.classifier {
        let n = (layer.d_out as usize)
            .saturating_mul(layer.d_in as usize)
            .saturating_add(layer.d_out as usize);
        for v in it.by_ref().take(n) {
            *v = match file.source {
                SourceKind::Kaiming => rng.uniform_symmetric(layer.init_bound),
                SourceKind::Gaussian { std } => std * standard_normal(rng),
            };
        }
    }
}

/// Calls `f(i, μ, c)` for every coordinate `i` of the standardized state, in order: the source's
/// mean `μ = −mean/std` and standard deviation `c = s/std` there (`s` the source's own standard
/// deviation: `bound/√3` for Kaiming-uniform, a Gaussian's `std`), as the host's
/// `SourceMoments` computes them for the memoryless SDE.
pub fn moments(file: &ModelFile<'_>, mut f: impl FnMut(usize, f32, f32)) {
    let raw_std = |bound: f32| match file.source {
        SourceKind::Kaiming => bound / math::sqrt(3.0),
        SourceKind::Gaussian { std } => std,
    };
    match &file.latent {
        Some(latent) => {
            let (m, s) = latent_stats(latent);
            // Validation admits only a Gaussian source for a latent model.
            let (mu, c) = (-m / s, raw_std(1.0) / s);
            for i in 0..latent.dim as usize {
                f(i, mu, c);
            }
        }
        None => {
            let mut i = 0usize;
            for_each_block(file, |bound, len, m, s| {
                let (mu, c) = (-m / s, raw_std(bound) / s);
                for _ in 0..len {
                    f(i, mu, c);
                    i = i.saturating_add(1);
                }
            });
        }
    }
}

/// Applies `f(value, mean, std)` to the ODE state: block by block for weights ([`map_blocks`]),
/// with the latent section's one mean and std for a latent.
pub fn map_state(file: &ModelFile<'_>, x: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
    match &file.latent {
        Some(latent) => {
            let (m, s) = latent_stats(latent);
            for v in x.iter_mut() {
                *v = f(*v, m, s);
            }
        }
        None => map_blocks(file, x, f),
    }
}

/// Applies `f(value, mean, std)` block by block (weight, bias of each layer).
pub fn map_blocks(file: &ModelFile<'_>, x: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
    let mut it = x.iter_mut();
    for_each_block(file, |_, len, m, s| {
        for v in it.by_ref().take(len) {
            *v = f(*v, m, s);
        }
    });
}

/// The latent state's one mean and std.
fn latent_stats(latent: &nmflow_format::LatentSection<'_>) -> (f32, f32) {
    (
        nmflow_format::model::le_f32(latent.state.mean, 0).unwrap_or(0.0),
        nmflow_format::model::le_f32(latent.state.std, 0).unwrap_or(1.0),
    )
}

/// Calls `f(init_bound, len, mean, std)` for every normalization block of the classifier's
/// weights in order (each layer's weight block, then its bias block).
fn for_each_block(file: &ModelFile<'_>, mut f: impl FnMut(f32, usize, f32, f32)) {
    let n = &file.normalization;
    let mut block = 0usize;
    for layer in &file.classifier {
        let lens = [
            (layer.d_out as usize).saturating_mul(layer.d_in as usize),
            layer.d_out as usize,
        ];
        for len in lens {
            let m = nmflow_format::model::le_f32(n.mean, block).unwrap_or(0.0);
            let s = nmflow_format::model::le_f32(n.std, block).unwrap_or(1.0);
            f(layer.init_bound, len, m, s);
            block = block.saturating_add(1);
        }
    }
}
