//! Source sample → standardize → integrate → unstandardize: classifier weights without training.

use nmflow_format::SolverKind;

use crate::condition::Support;
use crate::error::Error;
use crate::model_view::ModelView;
use crate::rng::Rng;
use crate::solver::{self, Scratch};
use crate::source::{self, STREAM_SDE, STREAM_SOURCE};
use crate::vector_field::split;
use crate::workspace::Workspace;

/// Synthesizes one classifier from `seed` with the model's default solver and step count.
///
/// Returns the weights in the classifier's layout (a slice of the workspace); a latent model's
/// integrated latent is decoded into them.
///
/// # Errors
/// [`Error::CapacityTooSmall`] when the workspace does not fit the model,
/// [`Error::NonFiniteState`] when the integration blows up (for a latent model, also when the
/// decoded weights are not finite: `step` is then the step count).
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
    run(model, seed, solver, steps, None, ws)
}

/// Synthesizes one classifier for the task `support` shows, with a conditioned model (a
/// condition section) and guidance weight `w` (`v(∅) + w·(v(task) − v(∅))`; 1 is the conditional
/// field, 0 the unconditional one, any other weight costs two evaluations per stage, counted in
/// the returned evaluations). The support set is encoded once, into the field scratch. Without a
/// support set ([`synthesize_with`]) a conditioned model samples its unconditional field.
///
/// # Errors
/// As [`synthesize`], and [`Error::NotConditioned`] for a model without a condition section, the
/// support set's errors of [`crate::condition::prepare`], [`Error::BadGuidance`] for a weight that
/// is not finite and ≥ 0.
pub fn synthesize_task<'w, const N: usize>(
    model: &ModelView<'_>,
    support: &Support<'_>,
    w: f32,
    seed: u64,
    solver: SolverKind,
    steps: u16,
    ws: &'w mut Workspace<N>,
) -> Result<(&'w [f32], u32), Error> {
    if !model.is_conditioned() {
        return Err(Error::NotConditioned);
    }
    if !(w.is_finite() && w >= 0.0) {
        return Err(Error::BadGuidance);
    }
    run(model, seed, solver, steps, Some((support, w)), ws)
}

fn run<'w, const N: usize>(
    model: &ModelView<'_>,
    seed: u64,
    solver: SolverKind,
    steps: u16,
    task: Option<(&Support<'_>, f32)>,
    ws: &'w mut Workspace<N>,
) -> Result<(&'w [f32], u32), Error> {
    model.check_capacity(solver, N)?;
    let file = &model.file;
    let d = model.state_dim();
    // The stage vectors: none (Euler), the velocity (the SDE), a stage and a sum (Heun, RK4).
    let (tmp_len, acc_len) = match solver {
        SolverKind::Euler => (0, 0),
        SolverKind::Sde => (d, 0),
        SolverKind::Heun | SolverKind::Rk4 => (d, d),
    };
    // A latent model decodes into the first `P` floats; the state follows them.
    let decoded = if file.latent.is_some() {
        model.num_params()
    } else {
        0
    };
    let (weights, rest) = split(&mut ws.buf, decoded);
    let (x, rest) = split(rest, d);
    let branches = prepare_context(model, task, rest, tmp_len.saturating_add(acc_len))?;
    let mut rng = Rng::new(seed, STREAM_SOURCE);
    source::sample(file, &mut rng, x);
    source::map_state(file, x, |v, m, s| (v - m) / s);
    let nfe = {
        let (tmp, rest) = split(rest, tmp_len);
        let (acc, field) = split(rest, acc_len);
        let mut scratch = Scratch { tmp, acc, field };
        let done = if solver == SolverKind::Sde {
            let mut noise = Rng::new(seed, STREAM_SDE);
            solver::integrate_sde(model, steps, x, &mut scratch, &mut noise)
        } else {
            solver::integrate(model, solver, steps, x, &mut scratch)
        };
        done.map_err(|step| Error::NonFiniteState { step })?
            .saturating_mul(branches)
    };
    source::map_state(file, x, |v, m, s| v * s + m);
    let out = match &file.latent {
        Some(latent) => {
            crate::decoder::decode(latent, model.tokens(), x, weights, rest);
            source::map_blocks(file, weights, |v, m, s| v * s + m);
            if !weights.iter().all(|w| w.is_finite()) {
                return Err(Error::NonFiniteState { step: steps });
            }
            weights
        }
        None => x,
    };
    Ok((out, nfe))
}

/// Writes a conditioned model's task context into the field scratch, which starts `offset`
/// floats into `rest` (after the solver's stages) and begins with the time embedding; returns the
/// field evaluations per velocity (1, or 2 for a guided one).
fn prepare_context(
    model: &ModelView<'_>,
    task: Option<(&Support<'_>, f32)>,
    rest: &mut [f32],
    offset: usize,
) -> Result<u32, Error> {
    let Some(cond) = &model.file.condition else {
        return Ok(1);
    };
    let at = offset.saturating_add(model.file.time_width());
    let scratch = rest.get_mut(at..).unwrap_or(&mut []);
    crate::condition::prepare(model, cond, task, scratch)?;
    Ok(task.map_or(1, |(_, w)| crate::condition::evaluations(w)))
}

/// Floats [`synthesize_guided`] needs: the state, the velocity, the predicted endpoint and its
/// gradient (`4·P`), and the field's scratch.
pub fn guided_floats(model: &ModelView<'_>) -> usize {
    model
        .num_params()
        .saturating_mul(4)
        .saturating_add(crate::vector_field::scratch_floats(model))
}

/// Synthesizes one classifier from `seed` with Euler steps of the field moved by reward guidance:
/// at each step, `objective(ŵ₁, grad)` adds to `grad` (zeroed before) the gradient of a loss at
/// the predicted endpoint `ŵ₁` (raw weights of `ẑ₁ = z + (1 − t)·v`), and the state moves along
/// `v − scale·∂loss/∂z` (the gradient through the standardization only; no vector–Jacobian
/// product of the field). `scale = 0` is [`synthesize_with`] with Euler. Uses the model's step
/// count; the weights are the first `P` values of `buf`, which must hold [`guided_floats`].
///
/// # Errors
/// [`Error::CapacityTooSmall`] when `buf` is short, [`Error::NonFiniteState`] when the integration
/// blows up, [`Error::LatentModel`] for a latent model (the guidance acts on the weights).
pub fn synthesize_guided<'b>(
    model: &ModelView<'_>,
    seed: u64,
    scale: f32,
    buf: &'b mut [f32],
    objective: &mut dyn FnMut(&[f32], &mut [f32]),
) -> Result<&'b [f32], Error> {
    if model.is_latent() {
        return Err(Error::LatentModel);
    }
    let needed = guided_floats(model);
    if buf.len() < needed {
        return Err(Error::CapacityTooSmall {
            needed: crate::error::sat_u32(needed),
            available: crate::error::sat_u32(buf.len()),
        });
    }
    let p = model.num_params();
    let (x, rest) = split(buf, p);
    let (v, rest) = split(rest, p);
    let (w_hat, rest) = split(rest, p);
    let (grad, field) = split(rest, p);
    prepare_context(model, None, field, 0)?;
    let file = &model.file;
    let mut rng = Rng::new(seed, STREAM_SOURCE);
    source::sample(file, &mut rng, x);
    source::map_blocks(file, x, |w, m, s| (w - m) / s);
    let steps = file.steps.max(1);
    let h = 1.0 / f32::from(steps);
    for step in 0..steps {
        let t = f32::from(step) * h;
        crate::vector_field::evaluate(model, x, t, h, v, field);
        if scale != 0.0 {
            for ((e, xi), vi) in w_hat.iter_mut().zip(x.iter()).zip(v.iter()) {
                *e = xi + (1.0 - t) * vi;
            }
            source::map_blocks(file, w_hat, |z, m, s| z * s + m);
            grad.fill(0.0);
            objective(w_hat, grad);
            source::map_blocks(file, grad, |g, _m, s| g * s);
            for (vi, g) in v.iter_mut().zip(grad.iter()) {
                *vi -= scale * g;
            }
        }
        for (xi, vi) in x.iter_mut().zip(v.iter()) {
            *xi += h * vi;
        }
        if !x.iter().all(|w| w.is_finite()) {
            return Err(Error::NonFiniteState { step });
        }
    }
    source::map_blocks(file, x, |z, m, s| z * s + m);
    Ok(x)
}
