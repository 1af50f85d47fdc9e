//! Fixed-step ODE solvers for `dx/dt = v(x, t)` from `t = 0` to `t = 1`.
//!
//! The same schemes (and the same step placement) are implemented by the device runtime, so a model
//! exported with a solver and step count synthesizes the same weights on both sides.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// An explicit Runge–Kutta scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Forward Euler: 1 evaluation per step, first order.
    Euler,
    /// Heun (explicit trapezoid): 2 evaluations per step, second order.
    Heun,
    /// Classic RK4: 4 evaluations per step, fourth order.
    Rk4,
}

impl Solver {
    /// Network evaluations per step.
    pub fn stages(self) -> usize {
        match self {
            Self::Euler => 1,
            Self::Heun => 2,
            Self::Rk4 => 4,
        }
    }
}

/// Integrates `x` from `t = 0` to `1` in `steps` equal steps, calling `observe(k, x_k)` at every
/// step boundary `t = k/steps` (k = 0..=steps). Returns the final state and the number of field
/// evaluations (NFE).
pub fn integrate<B: Backend>(
    solver: Solver,
    steps: usize,
    x: Tensor<B, 2>,
    field: &mut dyn FnMut(Tensor<B, 2>, f32) -> Tensor<B, 2>,
    observe: &mut dyn FnMut(usize, &Tensor<B, 2>),
) -> (Tensor<B, 2>, usize) {
    let steps = steps.max(1);
    let h = 1.0 / steps as f32;
    let mut x = x;
    let mut nfe = 0;
    observe(0, &x);
    for k in 0..steps {
        let t = k as f32 * h;
        x = match solver {
            Solver::Euler => {
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
        };
        observe(k + 1, &x);
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
    fn rk4_converges_on_exponential_growth() {
        let mut f = |x: Tensor<Cpu, 2>, _t: f32| x;
        let mut seen = Vec::new();
        let (x, _) = integrate(Solver::Rk4, 8, start(), &mut f, &mut |k, _| seen.push(k));
        assert_eq!(seen, (0..=8).collect::<Vec<_>>());
        assert!((value(x)[0] - std::f32::consts::E).abs() < 1e-4);
    }
}
