//! Fixed-step Euler, Heun and RK4, and the memoryless SDE sampler: the same schemes and step
//! placement as the host's sampler.

use nmflow_format::SolverKind;

use crate::math;
use crate::model_view::ModelView;
use crate::rng::Rng;
use crate::source::{self, standard_normal};
use crate::vector_field::{Emit, absorb, emit};

/// Buffers of one integration, carved from a [`crate::Workspace`]: the solver's two stage vectors
/// (`P` each; empty for Euler; `tmp` only, the velocity, for the SDE) and the field's scratch.
pub struct Scratch<'w> {
    /// Stage input and stage derivative (Heun, RK4).
    pub tmp: &'w mut [f32],
    /// Accumulated increment (Heun, RK4).
    pub acc: &'w mut [f32],
    /// The field's activations ([`crate::vector_field::scratch_floats`]).
    pub field: &'w mut [f32],
}

fn axpy(y: &mut [f32], x: &[f32], alpha: f32) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `dst = base + α·dst`.
fn rebase(dst: &mut [f32], base: &[f32], alpha: f32) {
    for (d, b) in dst.iter_mut().zip(base) {
        *d = b + alpha * *d;
    }
}

/// `dst = base + α·x`.
fn set_axpy(dst: &mut [f32], base: &[f32], x: &[f32], alpha: f32) {
    for ((d, b), xi) in dst.iter_mut().zip(base).zip(x) {
        *d = b + alpha * xi;
    }
}

/// Integrates `x` (standardized, length `P`) from `t = 0` to `1` in `steps` steps. Returns the
/// number of field evaluations, or the first step whose state is not finite. This is the ODE:
/// [`SolverKind::Sde`] is integrated as Euler here (the flow whose marginals the SDE shares);
/// [`integrate_sde`] draws the SDE.
///
/// Euler writes `x += h·v` into the state during the evaluation; Heun and RK4 keep a stage input
/// (`tmp`) and the weighted sum of the stage derivatives (`acc`), reusing `tmp` for each stage's
/// derivative once the field has read it.
pub fn integrate(
    model: &ModelView<'_>,
    solver: SolverKind,
    steps: u16,
    x: &mut [f32],
    s: &mut Scratch<'_>,
) -> Result<u32, u16> {
    let steps = steps.max(1);
    let h = 1.0 / f32::from(steps);
    let mut nfe = 0u32;
    for step in 0..steps {
        let t = f32::from(step) * h;
        let f = &mut *s.field;
        match solver {
            SolverKind::Euler | SolverKind::Sde => {
                absorb(model, x, t, h, f);
                emit(model, f, x, Emit::Add(h));
            }
            SolverKind::Heun => {
                absorb(model, x, t, h, f);
                emit(model, f, s.acc, Emit::Store);
                set_axpy(s.tmp, x, s.acc, h);
                absorb(model, s.tmp, t + h, h, f);
                emit(model, f, s.acc, Emit::Add(1.0));
                axpy(x, s.acc, h / 2.0);
            }
            SolverKind::Rk4 => {
                absorb(model, x, t, h, f);
                emit(model, f, s.acc, Emit::Store);
                set_axpy(s.tmp, x, s.acc, h / 2.0);
                for (dt, weight, next) in [(h / 2.0, 2.0, h / 2.0), (h / 2.0, 2.0, h)] {
                    absorb(model, s.tmp, t + dt, h, f);
                    emit(model, f, s.tmp, Emit::Store);
                    axpy(s.acc, s.tmp, weight);
                    rebase(s.tmp, x, next);
                }
                absorb(model, s.tmp, t + h, h, f);
                emit(model, f, s.acc, Emit::Add(1.0));
                axpy(x, s.acc, h / 6.0);
            }
        }
        nfe = nfe.saturating_add(solver.stages());
        if !x.iter().all(|v| v.is_finite()) {
            return Err(step);
        }
    }
    Ok(nfe)
}

/// The memoryless SDE sampler ([`SolverKind::Sde`]) from the standardized source sample `x`: one
/// Euler step of the ODE to `t0` ([`nmflow_format::ModelFile::sde_t0`]), then `steps − 1`
/// Euler–Maruyama steps of `dz = (2v + μ − (z − (1 − t)μ)/t)·dt + c·σ(t)·dW`, `σ(t) = √(2(1 −
/// t)/t)`, with `μ`, `c` the source's moments in standardized units ([`source::moments`]) and one
/// standard normal per coordinate per step from `noise` (in coordinate order, as the host draws
/// them). Uses `tmp` (`P` floats) for the velocity. A step count below 2 is taken as 2. Returns
/// the field evaluations (`steps`), or the first step whose state is not finite.
pub fn integrate_sde(
    model: &ModelView<'_>,
    steps: u16,
    x: &mut [f32],
    s: &mut Scratch<'_>,
    noise: &mut Rng,
) -> Result<u32, u16> {
    let steps = steps.max(2);
    // The step-size input of a field trained with one: the nominal 1/steps, as the host feeds it.
    let h_in = 1.0 / f32::from(steps);
    let t0 = model.file.sde_t0;
    let f = &mut *s.field;
    absorb(model, x, 0.0, h_in, f);
    emit(model, f, x, Emit::Add(t0));
    if !x.iter().all(|v| v.is_finite()) {
        return Err(0);
    }
    let em = steps.saturating_sub(1);
    let h = (1.0 - t0) / f32::from(em);
    for k in 0..em {
        let t = t0 + f32::from(k) * h;
        absorb(model, x, t, h_in, f);
        emit(model, f, s.tmp, Emit::Store);
        let spread = math::sqrt(2.0 * (1.0 - t).max(0.0) / t) * math::sqrt(h);
        let v = &*s.tmp;
        source::moments(&model.file, |i, mu, c| {
            if let (Some(xi), Some(vi)) = (x.get_mut(i), v.get(i)) {
                let drift = *vi * 2.0 + mu - (*xi - mu * (1.0 - t)) / t;
                *xi += drift * h + c * standard_normal(noise) * spread;
            }
        });
        if !x.iter().all(|v| v.is_finite()) {
            return Err(k.saturating_add(1));
        }
    }
    Ok(u32::from(steps))
}
