//! Source sample → standardize → integrate → unstandardize: classifier weights without training.

use nmflow_format::SolverKind;

use crate::error::Error;
use crate::model_view::ModelView;
use crate::rng::Rng;
use crate::solver::{self, Scratch};
use crate::source::{self, STREAM_SOURCE};
use crate::workspace::Workspace;

/// Synthesizes one classifier from `seed` with the model's default solver and step count.
///
/// Returns the weights in the classifier's layout (a slice of the workspace).
///
/// # Errors
/// [`Error::CapacityTooSmall`] when the workspace does not fit the model,
/// [`Error::NonFiniteState`] when the integration blows up.
pub fn synthesize<'w, const N: usize>(
    model: &ModelView<'_>,
    seed: u64,
    ws: &'w mut Workspace<N>,
) -> Result<&'w [f32], Error> {
    synthesize_with(model, seed, model.file.solver, model.file.steps, ws).map(|(w, _)| w)
}

/// Synthesizes one classifier with an explicit solver and step count; also returns the number of
/// field evaluations.
///
/// # Errors
/// As [`synthesize`].
pub fn synthesize_with<'w, const N: usize>(
    model: &ModelView<'_>,
    seed: u64,
    solver: SolverKind,
    steps: u16,
    ws: &'w mut Workspace<N>,
) -> Result<(&'w [f32], u32), Error> {
    model.check_capacity(solver, N)?;
    let p = model.num_params();
    let stage = match solver {
        SolverKind::Euler => 0,
        SolverKind::Heun | SolverKind::Rk4 => p,
    };
    let (x, rest) = ws.buf.split_at_mut(p.min(N));
    let (tmp, rest) = rest.split_at_mut(stage.min(rest.len()));
    let (acc, field) = rest.split_at_mut(stage.min(rest.len()));
    let mut rng = Rng::new(seed, STREAM_SOURCE);
    source::sample(&model.file, &mut rng, x);
    source::map_blocks(&model.file, x, |v, m, s| (v - m) / s);
    let mut scratch = Scratch { tmp, acc, field };
    let nfe = solver::integrate(model, solver, steps, x, &mut scratch)
        .map_err(|step| Error::NonFiniteState { step })?;
    source::map_blocks(&model.file, x, |v, m, s| v * s + m);
    Ok((x, nfe))
}
