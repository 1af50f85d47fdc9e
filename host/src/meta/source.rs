//! The source law `p_0`: Kaiming-uniform per block (the runs' own initialization law) or an
//! isotropic Gaussian, sampled from a seeded [`Rng`] so the device can sample the same source.

use serde::{Deserialize, Serialize};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::arch::Layout;
use crate::meta::normalize::Normalizer;
use nmflow_runtime::Rng;

/// A source distribution, in raw weight units.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// U(−b, b) per block with that block's bound `1/√fan_in` (PyTorch's default init).
    Kaiming,
    /// N(0, std²) for every parameter.
    Gaussian {
        /// Standard deviation.
        std: f32,
    },
}

/// A standard normal sample by Box–Muller from two uniforms (deterministic across targets).
pub fn standard_normal(rng: &mut Rng) -> f32 {
    let u1 = (rng.uniform() + 1.0 / 33_554_432.0).min(1.0);
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

impl Source {
    /// The source named `name` (`kaiming` or `gaussian`; `std` is the Gaussian's standard
    /// deviation, in raw weight units).
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str, std: f32) -> Result<Self, crate::error::UsageError> {
        match name {
            "kaiming" => Ok(Self::Kaiming),
            "gaussian" => Ok(Self::Gaussian { std }),
            other => Err(crate::error::UsageError(format!(
                "--source: unknown source {other:?}; expected kaiming or gaussian"
            ))),
        }
    }

    /// Appends `n` samples (each `num_params` values in layout order) to `out`.
    pub fn sample_into(&self, layout: &Layout, n: usize, rng: &mut Rng, out: &mut Vec<f32>) {
        for _ in 0..n {
            match *self {
                Self::Kaiming => layout.init_into(rng, out),
                Self::Gaussian { std } => {
                    out.extend((0..layout.num_params()).map(|_| std * standard_normal(rng)));
                }
            }
        }
    }
}

/// Per-coordinate mean `μ` and scale `c` of the source in standardized coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceMoments {
    /// `μ`, one per parameter.
    pub mean: Vec<f32>,
    /// `c`, one per parameter.
    pub scale: Vec<f32>,
    /// Whether the source is Gaussian (the schedule is exactly memoryless) or only moment-matched.
    pub exact: bool,
}

impl SourceMoments {
    /// The moments of `source` after the standardization `normalizer`.
    pub fn of(source: &Source, layout: &Layout, normalizer: &Normalizer) -> Self {
        let (sd, mu) = normalizer.coordinate_scales();
        let mut raw_std = Vec::with_capacity(sd.len());
        for b in &layout.blocks {
            let s = match *source {
                Source::Kaiming => b.bound as f32 / 3f32.sqrt(),
                Source::Gaussian { std } => std,
            };
            raw_std.extend(std::iter::repeat_n(s, b.len()));
        }
        Self {
            mean: mu.iter().zip(&sd).map(|(m, s)| -m / s).collect(),
            scale: raw_std.iter().zip(&sd).map(|(r, s)| r / s).collect(),
            exact: matches!(source, Source::Gaussian { .. }),
        }
    }
}

/// The source moments as `[1, P]` rows on a device.
pub struct MomentRows<B: Backend> {
    pub(crate) mean: Tensor<B, 2>,
    pub(crate) scale: Tensor<B, 2>,
}

impl<B: Backend> MomentRows<B> {
    /// Uploads `m`.
    pub fn new(m: &SourceMoments, device: &B::Device) -> Self {
        let p = m.mean.len();
        Self {
            mean: Tensor::from_data(TensorData::new(m.mean.clone(), [1, p]), device),
            scale: Tensor::from_data(TensorData::new(m.scale.clone(), [1, p]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_samples_have_unit_variance() {
        let mut rng = Rng::new(3, 9);
        let v: Vec<f64> = (0..50_000)
            .map(|_| f64::from(standard_normal(&mut rng)))
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(m.abs() < 0.02 && (var - 1.0).abs() < 0.03, "{m} {var}");
    }
}
