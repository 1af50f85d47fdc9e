//! The memoryless SDE of the linear path (METHOD.md §5): the stochastic sampler with the same
//! marginals as the flow's ODE whose endpoint is independent of its start.
//!
//! For `x_t = t·x_1 + (1 − t)·x_0` with a standard Gaussian source, `σ(t) = √(2(1 − t)/t)` and the
//! drift `b = 2v − x/t` give an SDE with the ODE's marginals. For a source `N(μ, diag(c²))` (a
//! Gaussian source after standardization) the affine change `y = (x − (1 − t)μ)/c` turns the path
//! into the standard one exactly: `b(x, t) = 2v + μ − (x − (1 − t)μ)/t`, diffusion `c·σ(t)`.
//!
//! `σ` is infinite at `t = 0`, so the integration starts with one Euler step of the ODE to a
//! small `t0` and continues by Euler–Maruyama from there. Adjoint matching
//! ([`crate::meta::finetune`]) tilts the law of this sampler's endpoint, and `sample`/`eval`
//! draw with it when asked for [`super::solver::Solver::Sde`].

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The `t0` of the memoryless sampler when a model does not record one.
pub const DEFAULT_T0: f64 = 0.1;

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

/// Euler–Maruyama of the memoryless SDE of `field` (`(x, t) ↦ v`) for the source moments `mean`
/// (`μ`) and `scale` (`c`), `[1, P]` rows, from the standardized source samples `x0` (`[n, P]`):
/// one Euler step of the ODE carries them to `t0`, then `steps` steps reach 1. `noise()` gives
/// each step's standard normal draws (`[n, P]`); `observe(k, x)` sees `x0` (`k = 0`) and the state
/// at every grid time `t0 + (k − 1)·(1 − t0)/steps`. Returns the state at 1 and the number of
/// field evaluations (`steps + 1`).
#[allow(clippy::too_many_arguments)]
pub fn integrate<B: Backend>(
    field: &mut dyn FnMut(Tensor<B, 2>, f64) -> Tensor<B, 2>,
    mean: &Tensor<B, 2>,
    scale: &Tensor<B, 2>,
    t0: f64,
    steps: usize,
    x0: Tensor<B, 2>,
    noise: &mut dyn FnMut() -> Tensor<B, 2>,
    observe: &mut dyn FnMut(usize, &Tensor<B, 2>),
) -> (Tensor<B, 2>, usize) {
    let k_steps = steps.max(1);
    let ts = grid(t0, k_steps);
    let h = (1.0 - t0) / k_steps as f64;
    observe(0, &x0);
    let mut x = x0.clone() + field(x0, 0.0) * t0;
    observe(1, &x);
    for (k, &t) in ts[..k_steps].iter().enumerate() {
        let v = field(x.clone(), t);
        let drift = v * 2.0 + mean.clone() - (x.clone() - mean.clone() * (1.0 - t)) / t;
        let step = drift * h + scale.clone() * noise() * (sigma(t) * h.sqrt());
        x = x + step;
        observe(k + 2, &x);
    }
    (x, k_steps + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use burn::tensor::TensorData;

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

    /// The flow of `N(μ, c²)` to `N(m, s²)` per coordinate has a field known in closed form; the
    /// memoryless sampler driven by it must end at the data law, whatever the source's moments,
    /// and its observations must land on the grid.
    #[test]
    fn the_sampler_keeps_the_flow_marginals_for_a_shifted_scaled_source() {
        use nmflow_runtime::Rng;
        let (m, s) = (1.5f64, 0.5f64);
        let (mu, c) = (-0.8f64, 2.0f64);
        // x_t = t·x1 + (1 − t)·x0: mean t·m + (1 − t)·μ, variance t²s² + (1 − t)²c².
        let v = move |x: f64, t: f64| {
            let mean = t * m + (1.0 - t) * mu;
            let var = t * t * s * s + (1.0 - t).powi(2) * c * c;
            let cov = t * s * s - (1.0 - t) * c * c;
            (m - mu) + cov / var * (x - mean)
        };
        let (n, steps, t0) = (20_000usize, 200usize, 0.01);
        let dev = Default::default();
        let row =
            |x: f64| Tensor::<Cpu, 2>::from_data(TensorData::new(vec![x as f32], [1, 1]), &dev);
        let (mean, scale) = (row(mu), row(c));
        let mut rng = Rng::new(9, 2);
        let x0: Vec<f32> = (0..n)
            .map(|_| (mu + c * f64::from(crate::meta::source::standard_normal(&mut rng))) as f32)
            .collect();
        let mut field = |x: Tensor<Cpu, 2>, t: f64| {
            let xs = x.into_data().to_vec::<f32>().unwrap();
            let vs: Vec<f32> = xs.iter().map(|&xi| v(f64::from(xi), t) as f32).collect();
            Tensor::from_data(TensorData::new(vs, [n, 1]), &dev)
        };
        let mut noise = || {
            let z: Vec<f32> = (0..n)
                .map(|_| crate::meta::source::standard_normal(&mut rng))
                .collect();
            Tensor::from_data(TensorData::new(z, [n, 1]), &dev)
        };
        let mut seen = Vec::new();
        let (x1, nfe) = integrate(
            &mut field,
            &mean,
            &scale,
            t0,
            steps,
            Tensor::from_data(TensorData::new(x0, [n, 1]), &dev),
            &mut noise,
            &mut |k, _| seen.push(k),
        );
        assert_eq!(nfe, steps + 1);
        assert_eq!(seen, (0..=steps + 1).collect::<Vec<_>>());
        let ends = x1.into_data().to_vec::<f32>().unwrap();
        let avg = ends.iter().map(|&e| f64::from(e)).sum::<f64>() / n as f64;
        let var = ends
            .iter()
            .map(|&e| (f64::from(e) - avg).powi(2))
            .sum::<f64>()
            / n as f64;
        assert!((avg - m).abs() < 0.03, "mean {avg}");
        assert!((var.sqrt() - s).abs() < 0.04, "std {}", var.sqrt());
    }
}
