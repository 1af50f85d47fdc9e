//! Fixed-step Euler, Heun and RK4, the same schemes and step placement as the host's sampler.

use nmflow_format::SolverKind;

use crate::model_view::ModelView;
use crate::vector_field;

/// Scratch of one integration (slices of a [`crate::Workspace`], each at least `P` / the widest
/// layer long).
pub struct Scratch<'w> {
    /// Stage input.
    pub tmp: &'w mut [f32],
    /// Stage derivative.
    pub k: &'w mut [f32],
    /// Accumulated increment.
    pub acc: &'w mut [f32],
    /// Activations.
    pub a: &'w mut [f32],
    /// Activations.
    pub b: &'w mut [f32],
    /// Time embedding.
    pub emb: &'w mut [f32],
}

fn axpy(y: &mut [f32], x: &[f32], alpha: f32) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

fn set_axpy(dst: &mut [f32], base: &[f32], x: &[f32], alpha: f32) {
    for ((d, b), xi) in dst.iter_mut().zip(base).zip(x) {
        *d = b + alpha * xi;
    }
}

/// Integrates `x` (standardized, length `P`) from `t = 0` to `1` in `steps` steps. Returns the
/// number of field evaluations, or the first step whose state is not finite.
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
        let field = |input: &[f32],
                     t: f32,
                     out: &mut [f32],
                     a: &mut [f32],
                     b: &mut [f32],
                     emb: &mut [f32]| {
            vector_field::evaluate(model, input, t, out, a, b, emb);
        };
        match solver {
            SolverKind::Euler => {
                field(x, t, s.k, s.a, s.b, s.emb);
                axpy(x, s.k, h);
            }
            SolverKind::Heun => {
                field(x, t, s.k, s.a, s.b, s.emb);
                s.acc.copy_from_slice(s.k);
                set_axpy(s.tmp, x, s.k, h);
                field(s.tmp, t + h, s.k, s.a, s.b, s.emb);
                axpy(s.acc, s.k, 1.0);
                axpy(x, s.acc, h / 2.0);
            }
            SolverKind::Rk4 => {
                field(x, t, s.k, s.a, s.b, s.emb);
                s.acc.copy_from_slice(s.k);
                set_axpy(s.tmp, x, s.k, h / 2.0);
                field(s.tmp, t + h / 2.0, s.k, s.a, s.b, s.emb);
                axpy(s.acc, s.k, 2.0);
                set_axpy(s.tmp, x, s.k, h / 2.0);
                field(s.tmp, t + h / 2.0, s.k, s.a, s.b, s.emb);
                axpy(s.acc, s.k, 2.0);
                set_axpy(s.tmp, x, s.k, h);
                field(s.tmp, t + h, s.k, s.a, s.b, s.emb);
                axpy(s.acc, s.k, 1.0);
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
