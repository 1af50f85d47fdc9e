//! Adjoint matching's view of the memoryless SDE ([`crate::flow::sde`]): the states of one
//! batch of trajectories of a field, kept for the lean adjoint.
//!
//! The flows here run in standardized coordinates, where a Gaussian source `N(s²)` in raw units is
//! `N(μ, c²)` per coordinate ([`SourceMoments`]). A Kaiming-uniform source is replaced by the
//! Gaussian with its mean and variance: the schedule is then only approximately memoryless
//! ([`SourceMoments::exact`] says which). The derivation also assumes the base's flow has
//! independent endpoints (trained with `--coupling independent`); the natural coupling pairs each
//! run's own init with its final weights, another approximation.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub use crate::flow::sde::{drift, grid, sigma};
use crate::meta::field::VectorField;
pub use crate::meta::source::{MomentRows, SourceMoments};

/// Euler–Maruyama of `field`'s memoryless SDE ([`crate::flow::sde::integrate`]) from the
/// standardized source samples `x0` (`[n, P]`): one Euler step of the ODE carries them to `t0`,
/// then `steps` steps reach 1. Returns the states at the grid's `steps + 1` times (`steps + 1`
/// evaluations of the field); `noise()` gives each step's standard normal draws (`[n, P]`).
/// Adjoint matching tilts the law of the last state.
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
    let mut v =
        |x: Tensor<B, 2>, t: f64| field.forward(x, Tensor::<B, 2>::full([n, 1], t as f32, &device));
    let mut xs = Vec::with_capacity(steps.max(1) + 1);
    crate::flow::sde::integrate(
        &mut v,
        &moments.mean,
        &moments.scale,
        t0,
        steps,
        x0,
        noise,
        &mut |k, x| {
            if k >= 1 {
                xs.push(x.clone());
            }
        },
    );
    xs
}
