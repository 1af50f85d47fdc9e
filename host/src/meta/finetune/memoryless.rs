//! The memoryless noise schedule of the linear path and the SDE it gives (METHOD.md §5).
//!
//! For `x_t = t·x_1 + (1 − t)·x_0` with a standard Gaussian source, `σ(t) = √(2(1 − t)/t)` and
//! the drift `b = 2v − x/t` give an SDE with the ODE's marginals whose endpoint is independent of
//! its start, which is what makes the lean adjoint's regression target unbiased.
//!
//! The flows here run in standardized coordinates, where the source is not standard: a Gaussian
//! source `N(0, s²)` in raw units becomes `N(μ, c²)` per coordinate (`μ = −mean_b/std_b`,
//! `c = s/std_b` for block `b`). The affine change `y = (x − (1 − t)μ)/c` turns that path into
//! the standard one exactly, so everything is written for a source `N(μ, diag(c²))`:
//! `b(x, t) = 2v + μ − (x − (1 − t)μ)/t`, diffusion `c·σ(t)`, and the adjoint matching residual
//! `2(v_fine − v_base)/(c·σ) + c·σ·ã`. A Kaiming-uniform source is replaced by the Gaussian with
//! its mean and variance (`c = bound/(√3·std_b)`): the schedule is then only approximately
//! memoryless ([`SourceMoments::exact`] says which). The derivation also assumes the base's flow
//! has independent endpoints (trained with `--coupling independent`); the natural coupling pairs
//! each run's own init with its final weights, another approximation.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::super::normalize::Normalizer;
use super::super::source::Source;
use crate::arch::Layout;
use crate::meta::field::VectorField;

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

/// Euler–Maruyama of `field`'s memoryless SDE (drift `2v + μ − (x − (1 − t)μ)/t`, diffusion
/// `c·σ(t)`) from the standardized source samples `x0` (`[n, P]`): one Euler step of the ODE
/// carries them to `t0`, then `steps` steps reach 1. Returns the states at the grid's
/// `steps + 1` times (`steps + 1` evaluations of the field); `noise()` gives each step's
/// standard normal draws (`[n, P]`). Adjoint matching tilts the law of the last state.
pub fn memoryless_path<B: Backend>(
    field: &VectorField<B>,
    moments: &MomentRows<B>,
    t0: f64,
    steps: usize,
    x0: Tensor<B, 2>,
    noise: &mut dyn FnMut() -> Tensor<B, 2>,
) -> Vec<Tensor<B, 2>> {
    let n = x0.dims()[0];
    let device = x0.device();
    let k_steps = steps.max(1);
    let ts = grid(t0, k_steps);
    let h = (1.0 - t0) / k_steps as f64;
    let (mu, c) = (moments.mean.clone(), moments.scale.clone());
    let times = |t: f64| Tensor::<B, 2>::full([n, 1], t as f32, &device);
    let x_t0 = x0.clone() + field.forward(x0, times(0.0)) * t0;
    let mut xs = vec![x_t0];
    for &t in &ts[..k_steps] {
        let x = xs[xs.len() - 1].clone();
        let v = field.forward(x.clone(), times(t));
        let drift = v * 2.0 + mu.clone() - (x.clone() - mu.clone() * (1.0 - t)) / t;
        let step = drift * h + c.clone() * noise() * (sigma(t) * h.sqrt());
        xs.push(x + step);
    }
    xs
}

/// `σ(t) = √(2(1 − t)/t)` (0 at `t = 1`; `t` must be positive).
pub fn sigma(t: f64) -> f64 {
    (2.0 * (1.0 - t).max(0.0) / t).sqrt()
}

/// The time grid `t_k = t0 + k·(1 − t0)/steps`, `k = 0..=steps`.
pub fn grid(t0: f64, steps: usize) -> Vec<f64> {
    let h = (1.0 - t0) / steps.max(1) as f64;
    (0..=steps).map(|k| t0 + k as f64 * h).collect()
}

/// The drift `b(x, t) = 2v + μ − (x − (1 − t)μ)/t` for one coordinate.
pub fn drift(v: f32, x: f32, mu: f32, t: f64) -> f32 {
    let t32 = t as f32;
    2.0 * v + mu - (x - (1.0 - t32) * mu) / t32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_and_drift_match_their_closed_forms() {
        assert!((sigma(0.5) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(sigma(1.0), 0.0);
        assert!((sigma(0.1) - 18f64.sqrt()).abs() < 1e-12);
        let g = grid(0.2, 4);
        assert_eq!(g.len(), 5);
        assert!((g[1] - 0.4).abs() < 1e-12 && (g[4] - 1.0).abs() < 1e-12);
        // Standard source: b = 2v − x/t.
        assert!((drift(0.5, 2.0, 0.0, 0.25) - (1.0 - 8.0)).abs() < 1e-6);
        // Shifted source at t = 1: b = 2v + μ − x.
        assert!((drift(0.5, 2.0, 3.0, 1.0) - (1.0 + 3.0 - 2.0)).abs() < 1e-6);
    }

    /// With a standard Gaussian source and data `N(m, s²)`, the flow's field is known in closed
    /// form; Euler–Maruyama with the memoryless schedule from `t0` must end at the data law.
    #[test]
    fn the_memoryless_sde_keeps_the_flow_marginals() {
        use nmflow_runtime::Rng;
        let (m, s) = (1.5f64, 0.5f64);
        // x_t = t·x1 + (1 − t)·x0 is N(t·m, t²s² + (1 − t)²); E[x1 − x0 | x_t] in closed form.
        let v = |x: f64, t: f64| {
            let var = t * t * s * s + (1.0 - t).powi(2);
            let cov = t * s * s - (1.0 - t);
            m + cov / var * (x - t * m)
        };
        let (t0, steps, n) = (0.01, 400, 20_000);
        let g = grid(t0, steps);
        let h = (1.0 - t0) / steps as f64;
        let mut rng = Rng::new(5, 1);
        let normal = |rng: &mut Rng| f64::from(super::super::super::source::standard_normal(rng));
        let mut ends = Vec::with_capacity(n);
        for _ in 0..n {
            // Start from the marginal at t0 exactly.
            let var0 = t0 * t0 * s * s + (1.0 - t0).powi(2);
            let mut x = t0 * m + var0.sqrt() * normal(&mut rng);
            for &t in &g[..steps] {
                let b = f64::from(drift(v(x, t) as f32, x as f32, 0.0, t));
                x += h * b + sigma(t) * h.sqrt() * normal(&mut rng);
            }
            ends.push(x);
        }
        let mean = ends.iter().sum::<f64>() / n as f64;
        let var = ends.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - m).abs() < 0.03, "mean {mean}");
        assert!((var.sqrt() - s).abs() < 0.04, "std {}", var.sqrt());
    }
}
