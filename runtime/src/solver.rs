//! Fixed-step Euler, Heun and RK4, the same schemes and step placement as the host's sampler.

use nmflow_format::SolverKind;

use crate::model_view::ModelView;
use crate::vector_field::{Emit, absorb, emit};

/// Buffers of one integration, carved from a [`crate::Workspace`]: the solver's two stage vectors
/// (`P` each; empty for Euler) and the field's scratch.
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
/// number of field evaluations, or the first step whose state is not finite.
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
            SolverKind::Euler => {
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
