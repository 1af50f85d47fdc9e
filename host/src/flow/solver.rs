//! ODE solvers for `dx/dt = v(x, t)` from `t = 0` to `t = 1`: fixed-step Euler, Heun and RK4, and
//! the adaptive Dormand–Prince 5(4) pair.
//!
//! The fixed-step schemes (and the same step placement) are implemented by the device runtime, so a
//! model exported with a solver and step count synthesizes the same weights on both sides.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

/// An explicit Runge–Kutta scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Forward Euler: 1 evaluation per step, first order.
    Euler,
    /// Heun (explicit trapezoid): 2 evaluations per step, second order.
    Heun,
    /// Classic RK4: 4 evaluations per step, fourth order.
    Rk4,
    /// Dormand–Prince 5(4), adaptive: the step count is the initial step (1/steps), the step
    /// size then follows the local error (relative and absolute tolerance 1e-4, one
    /// step size for the whole batch); 6 evaluations per accepted or rejected step, plus 1.
    Dopri5,
    /// The memoryless SDE with the flow's marginals, a stochastic sampler: one Euler step of the
    /// ODE to t0, then steps − 1 Euler–Maruyama steps; 1 evaluation per step, at least 2 steps.
    /// The law adjoint matching fine-tunes (`finetune --method adjoint` makes it the model's
    /// sampler); exact for a Gaussian source.
    Sde,
}

/// Relative and absolute tolerance of [`Solver::Dopri5`] (standardized weight units).
pub const DOPRI_TOL: f32 = 1e-4;

impl Solver {
    /// Network evaluations per step.
    pub fn stages(self) -> usize {
        match self {
            Self::Euler | Self::Sde => 1,
            Self::Heun => 2,
            Self::Rk4 => 4,
            Self::Dopri5 => 6,
        }
    }

    /// Whether the step size adapts (the states then do not fall on `k/steps`).
    pub fn is_adaptive(self) -> bool {
        self == Self::Dopri5
    }
}

/// Integrates `x` from `t = 0` to `1` in `steps` equal steps, calling `observe(k, x_k)` at every
/// step boundary `t = k/steps` (k = 0..=steps). Returns the final state and the number of field
/// evaluations (NFE). This is the ODE: it has no noise and takes [`Solver::Sde`] as
/// [`Solver::Euler`] (the flow whose marginals the SDE shares);
/// [`crate::meta::sample::MetaModel::integrate_from`] draws the SDE ([`crate::flow::sde`]).
pub fn integrate<B: Backend>(
    solver: Solver,
    steps: usize,
    x: Tensor<B, 2>,
    field: &mut dyn FnMut(Tensor<B, 2>, f32) -> Tensor<B, 2>,
    observe: &mut dyn FnMut(usize, &Tensor<B, 2>),
) -> (Tensor<B, 2>, usize) {
    let steps = steps.max(1);
    let h = 1.0 / steps as f32;
    if solver == Solver::Dopri5 {
        return dopri5(h, x, field, observe);
    }
    let mut x = x;
    let mut nfe = 0;
    observe(0, &x);
    for k in 0..steps {
        let t = k as f32 * h;
        x = match solver {
            Solver::Euler | Solver::Sde => {
                let v = field(x.clone(), t);
                nfe += 1;
                x + v * h
            }
            Solver::Heun => {
                let v1 = field(x.clone(), t);
                let v2 = field(x.clone() + v1.clone() * h, t + h);
                nfe += 2;
                x + (v1 + v2) * (h / 2.0)
            }
            Solver::Rk4 => {
                let k1 = field(x.clone(), t);
                let k2 = field(x.clone() + k1.clone() * (h / 2.0), t + h / 2.0);
                let k3 = field(x.clone() + k2.clone() * (h / 2.0), t + h / 2.0);
                let k4 = field(x.clone() + k3.clone() * h, t + h);
                nfe += 4;
                x + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0)
            }
            Solver::Dopri5 => unreachable!("handled above"),
        };
        observe(k + 1, &x);
    }
    (x, nfe)
}

/// Dormand–Prince coefficients: `A[i]` are the weights of the stages before stage `i + 1`.
const DP_C: [f64; 6] = [0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0];
const DP_A: [&[f64]; 6] = [
    &[0.2],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    // The fifth-order solution (first same as last: its derivative starts the next step).
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// The embedded fourth-order weights.
const DP_B4: [f64; 7] = [
    5179.0 / 57600.0,
    0.0,
    7571.0 / 16695.0,
    393.0 / 640.0,
    -92097.0 / 339200.0,
    187.0 / 2100.0,
    1.0 / 40.0,
];

/// Adaptive Dormand–Prince 5(4) from 0 to 1 starting with step `h`; `observe` sees every accepted
/// state (numbered 0, 1, 2, …).
fn dopri5<B: Backend>(
    h: f32,
    x: Tensor<B, 2>,
    field: &mut dyn FnMut(Tensor<B, 2>, f32) -> Tensor<B, 2>,
    observe: &mut dyn FnMut(usize, &Tensor<B, 2>),
) -> (Tensor<B, 2>, usize) {
    let mut x = x;
    let mut t = 0.0f64;
    let mut h = f64::from(h);
    let mut accepted = 0;
    observe(0, &x);
    let mut k1 = field(x.clone(), 0.0);
    let mut nfe = 1;
    while t < 1.0 - 1e-9 {
        h = h.min(1.0 - t);
        let mut k = vec![k1.clone()];
        for (i, a) in DP_A.iter().enumerate() {
            let mut y = x.clone();
            for (kj, &aij) in k.iter().zip(a.iter()) {
                if aij != 0.0 {
                    y = y + kj.clone() * (h * aij);
                }
            }
            if i == DP_A.len() - 1 {
                // y is the fifth-order solution; its derivative is stage 7.
                k.push(field(y.clone(), (t + h) as f32));
                nfe += 1;
                let mut err = x.zeros_like();
                for (j, kj) in k.iter().enumerate() {
                    let e = DP_A[5].get(j).copied().unwrap_or(0.0) - DP_B4[j];
                    if e != 0.0 {
                        err = err + kj.clone() * (h * e);
                    }
                }
                let scale = x.clone().abs().max_pair(y.clone().abs()) * f64::from(DOPRI_TOL)
                    + f64::from(DOPRI_TOL);
                let ratio: f32 = (err / scale)
                    .powi_scalar(2)
                    .mean()
                    .sqrt()
                    .into_scalar()
                    .elem();
                let ratio = f64::from(ratio);
                // A step that cannot be resolved (h → 0, e.g. a non-finite field) is taken anyway
                // so that integration always ends.
                if ratio <= 1.0 || h <= 1e-6 {
                    t += h;
                    x = y;
                    k1 = k.pop().unwrap_or(k1);
                    accepted += 1;
                    observe(accepted, &x);
                }
                let factor = if ratio == 0.0 {
                    5.0
                } else {
                    (0.9 * ratio.powf(-0.2)).clamp(0.2, 5.0)
                };
                h *= if ratio.is_finite() { factor } else { 0.2 };
            } else {
                k.push(field(y, (t + DP_C[i] * h) as f32));
                nfe += 1;
            }
        }
    }
    (x, nfe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use burn::tensor::TensorData;

    fn start() -> Tensor<Cpu, 2> {
        Tensor::from_data(
            TensorData::new(vec![1.0f32, -2.0], [1, 2]),
            &Default::default(),
        )
    }

    fn value(x: Tensor<Cpu, 2>) -> Vec<f32> {
        x.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn euler_is_exact_for_a_constant_field() {
        let mut f = |x: Tensor<Cpu, 2>, _t: f32| x.zeros_like() + 0.5;
        let (x, nfe) = integrate(Solver::Euler, 3, start(), &mut f, &mut |_, _| {});
        assert_eq!(nfe, 3);
        let v = value(x);
        assert!((v[0] - 1.5).abs() < 1e-6 && (v[1] + 1.5).abs() < 1e-6);
    }

    #[test]
    fn heun_exact_for_linear_and_rk4_for_cubic_time_fields() {
        // dx/dt = 2t → x(1) = x0 + 1 ; dx/dt = 4t³ → x(1) = x0 + 1.
        let mut lin = |x: Tensor<Cpu, 2>, t: f32| x.zeros_like() + 2.0 * t;
        let (x, nfe) = integrate(Solver::Heun, 2, start(), &mut lin, &mut |_, _| {});
        assert_eq!(nfe, 4);
        assert!((value(x)[0] - 2.0).abs() < 1e-6);
        let mut cubic = |x: Tensor<Cpu, 2>, t: f32| x.zeros_like() + 4.0 * t * t * t;
        let (x, nfe) = integrate(Solver::Rk4, 2, start(), &mut cubic, &mut |_, _| {});
        assert_eq!(nfe, 8);
        assert!((value(x)[0] - 2.0).abs() < 1e-6);
        // Euler is not exact there.
        let (x, _) = integrate(Solver::Euler, 2, start(), &mut cubic, &mut |_, _| {});
        assert!((value(x)[0] - 2.0).abs() > 0.1);
    }

    #[test]
    fn dopri5_is_accurate_adapts_and_counts_evaluations() {
        // Cubic in t: both embedded solutions are exact, the error estimate vanishes and one step
        // of 7 evaluations is taken.
        let mut cubic = |x: Tensor<Cpu, 2>, t: f32| x.zeros_like() + 4.0 * t.powi(3);
        let (x, nfe) = integrate(Solver::Dopri5, 1, start(), &mut cubic, &mut |_, _| {});
        assert!((value(x)[0] - 2.0).abs() < 1e-5);
        assert_eq!(nfe, 7);
        // Quartic: only the fifth-order solution is exact; the result is, whatever the steps.
        let mut quartic = |x: Tensor<Cpu, 2>, t: f32| x.zeros_like() + 5.0 * t.powi(4);
        let (x, _) = integrate(Solver::Dopri5, 1, start(), &mut quartic, &mut |_, _| {});
        assert!((value(x)[0] - 2.0).abs() < 1e-5);
        // Exponential growth from a deliberately large first step: accurate to the tolerance,
        // with more than one step and the NFE of the steps taken.
        let f = |x: Tensor<Cpu, 2>, _t: f32| x;
        let mut calls = 0;
        let mut counted = |x: Tensor<Cpu, 2>, t: f32| {
            calls += 1;
            f(x, t)
        };
        let mut seen = Vec::new();
        let (x, nfe) = integrate(Solver::Dopri5, 1, start(), &mut counted, &mut |k, _| {
            seen.push(k)
        });
        assert_eq!(nfe, calls);
        assert!(seen.len() > 2, "{seen:?}");
        assert_eq!((nfe - 1) % 6, 0);
        let v = value(x);
        assert!((v[0] - std::f32::consts::E).abs() < 1e-3, "{v:?}");
        assert!((v[1] + 2.0 * std::f32::consts::E).abs() < 2e-3, "{v:?}");
    }

    #[test]
    fn rk4_converges_on_exponential_growth() {
        let mut f = |x: Tensor<Cpu, 2>, _t: f32| x;
        let mut seen = Vec::new();
        let (x, _) = integrate(Solver::Rk4, 8, start(), &mut f, &mut |k, _| seen.push(k));
        assert_eq!(seen, (0..=8).collect::<Vec<_>>());
        assert!((value(x)[0] - std::f32::consts::E).abs() < 1e-4);
    }
}
