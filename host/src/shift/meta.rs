//! Meta-detectron (METHOD.md §6): the disagreement ensemble is sampled from the meta-model of
//! P's zoo, tilted towards Detectron's objective `r(w) = −(CE(f_w on P, ŷ) + λ·ℓ_dis(f_w on Q))`
//! by reward guidance during sampling.
//!
//! Each Euler step of the field from a fresh source sample predicts the endpoint
//! `x̂₁ = x + (1 − t)·v(x, t)`, takes the gradient of the objective at the classifier `x̂₁`
//! stands for (a minibatch of P's training images labelled with the base's predictions, and
//! the test's remaining Q inputs), and moves along `v − γ·∇ₓ(CE + λ·ℓ_dis)(x̂₁)`: the classifier's
//! gradient only, no vector–Jacobian product of the field, so the device can run the same
//! steps. Members stay where the field puts good classifiers; whether one of them can still
//! agree with the base on P and disagree on Q is the evidence of a harmful shift.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::detectron::member_logits;
use super::ensemble::{self, Ensemble, RejectionRule};
use super::pq::{self, PqTable};
use crate::arch::Arch;
use crate::backend::{TensorRead, values};
use crate::meta::sample::MetaModel;
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of a member's source sample.
pub(crate) const STREAM_SOURCE: u64 = 41;
/// PRNG stream of a member's P minibatches.
const STREAM_P: u64 = 42;

/// Meta-detectron's sampling settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuidanceSettings {
    /// Euler steps from the source to a member.
    pub steps: usize,
    /// Guidance strength γ (in the field's standardized coordinates per unit time).
    pub scale: f64,
    /// Weight λ of the mean disagreement loss on Q against the mean cross-entropy on P.
    pub lambda: f64,
    /// Rows of the objective per step (P images plus the remaining Q inputs).
    pub batch: usize,
    /// When set to ρ, a member starts from the base classifier's own initialization mixed with
    /// fresh source noise, `√(1 − ρ²)·w₀(f) + ρ·ε` (raw weights), instead of a fresh source sample:
    /// the field then carries it towards f's basin, so members agree with f where P lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_near_base: Option<f64>,
    /// The ensemble's rejection rule.
    #[serde(skip, default = "default_rule")]
    pub rule: RejectionRule,
}

fn default_rule() -> RejectionRule {
    RejectionRule {
        max_members: 5,
        patience: 2,
    }
}

/// Grows every test's ensemble with guided samples of `model` until its rule stops it (see
/// [`super::detectron::grow`] for the arguments); `base_init` is the base classifier's
/// initialization (used with [`GuidanceSettings::start_near_base`]).
///
/// # Errors
/// [`TensorRead`] when the backend's values cannot be read back.
#[allow(clippy::too_many_arguments)]
pub fn grow<B: AutodiffBackend>(
    model: &MetaModel<B::InnerBackend>,
    arch: &Arch,
    table: &PqTable<B::InnerBackend>,
    samples: &Tensor<B::InnerBackend, 3>,
    ensembles: &mut [Ensemble],
    seeds: &[u64],
    s: &GuidanceSettings,
    base_init: &[f32],
    device: &B::Device,
    on_member: &mut dyn FnMut(usize),
) -> Result<(), TensorRead> {
    let n = samples.dims()[1];
    let layout = &model.layout;
    let p = layout.num_params();
    let (sd, mu) = model.normalizer.scale_rows::<B::InnerBackend>(device);
    let steps = s.steps.max(1);
    let h = 1.0 / steps as f64;
    for round in 0..s.rule.max_members {
        let active = ensemble::active(ensembles);
        if active.is_empty() {
            break;
        }
        let a = active.len();
        let mut x0 = Vec::with_capacity(a * p);
        let mut rngs = Vec::with_capacity(a);
        let mut q_rows = Vec::with_capacity(a);
        for &t in &active {
            let seed = derive_seed(seeds[t], round as u64);
            let at = x0.len();
            model
                .config
                .source
                .sample_into(layout, 1, &mut Rng::new(seed, STREAM_SOURCE), &mut x0);
            if let Some(rho) = s.start_near_base {
                let keep = (1.0 - rho * rho).max(0.0).sqrt() as f32;
                for (x, w) in x0[at..].iter_mut().zip(base_init) {
                    *x = keep * w + rho as f32 * *x;
                }
            }
            rngs.push(Rng::new(seed, STREAM_P));
            q_rows.push(table.remaining_rows(t, n, &ensembles[t]));
        }
        model.normalizer.apply(&mut x0);
        let mut z = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(x0, [a, p]), device);
        for k in 0..steps {
            let t = k as f64 * h;
            let v = model
                .field
                .forward(z.clone(), Tensor::full([a, 1], t as f32, device));
            let w = (z.clone() + v.clone() * (1.0 - t)) * sd.clone() + mu.clone();
            let mut rows = Vec::with_capacity(a * s.batch);
            let mut weights = Vec::with_capacity(a * s.batch);
            for (rng, q) in rngs.iter_mut().zip(&q_rows) {
                pq::push_objective(
                    &mut rows,
                    &mut weights,
                    table.p_len,
                    s.batch,
                    s.lambda,
                    q,
                    rng,
                );
            }
            let (x, target) = table.gather(&rows, a);
            let wt = Tensor::from_data(TensorData::new(weights, [a, s.batch, 1]), device);
            let (g, _) = pq::state_gradient::<B>(arch, layout, w, x, target, wt);
            // ∂/∂z of the objective at x̂₁ through the standardization only.
            z = z + (v - g * sd.clone() * s.scale) * h;
        }
        let w = values::<f32>((z * sd.clone() + mu.clone()).into_data())?;
        let logits = member_logits::<B::InnerBackend>(arch, layout, &w, samples, &active, device)?;
        ensemble::add_members(ensembles, &active, &logits, s.rule, on_member);
    }
    Ok(())
}
