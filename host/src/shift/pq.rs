//! The data both detectors train or steer on: P's training images labelled with the base
//! classifier's predictions, and each test's sample Q, in one table on the device; and
//! Detectron's loss, written as one weighted soft-target cross-entropy so that every run of a
//! batch can mix its own P rows and Q rows.
//!
//! A P row's target is the one-hot of the base classifier's prediction (cross-entropy: agree);
//! a Q row's target is uniform over the classes the base did *not* predict, which makes its
//! cross-entropy exactly Detectron's disagreement loss
//! `ℓ_dis = −(1/(C−1))·Σ_{k≠ŷ} logit_k + logsumexp(logits)`.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::ensemble::Ensemble;
use crate::arch::{Arch, Layout};
use crate::classifier::{self, Input};
use nmflow_runtime::Rng;

/// P's training rows and every test's Q rows on the device.
pub struct PqTable<B: Backend> {
    x: Tensor<B, 2>,
    target: Tensor<B, 2>,
    /// P's training rows (the first rows of the table).
    pub p_len: usize,
    dim: usize,
    classes: usize,
}

/// Soft targets of disagreement: uniform over the classes other than `predicted`.
pub fn disagreement_targets(predicted: &[u8], classes: usize) -> Vec<f32> {
    let off = 1.0 / (classes as f32 - 1.0);
    predicted
        .iter()
        .flat_map(|&p| (0..classes).map(move |k| if k == usize::from(p) { 0.0 } else { off }))
        .collect()
}

impl<B: Backend> PqTable<B> {
    /// Uploads P's training inputs `p_x` (`[p, dim]`) with the base's predictions `p_hat`, and
    /// the samples `q_x` (`[tests · q_len, dim]`) with the base's predictions `q_hat`.
    pub fn new(
        p_x: &[f32],
        p_hat: &[u8],
        q_x: &[f32],
        q_hat: &[u8],
        dim: usize,
        classes: usize,
        device: &B::Device,
    ) -> Self {
        let p_len = p_hat.len();
        let rows = p_len + q_hat.len();
        let mut x = Vec::with_capacity(rows * dim);
        x.extend_from_slice(p_x);
        x.extend_from_slice(q_x);
        let mut target = classifier::one_hot(p_hat, classes);
        target.extend(disagreement_targets(q_hat, classes));
        Self {
            x: Tensor::from_data(TensorData::new(x, [rows, dim]), device),
            target: Tensor::from_data(TensorData::new(target, [rows, classes]), device),
            p_len,
            dim,
            classes,
        }
    }

    /// The table row of input `i` of test `test`'s sample, whose samples have `n` inputs each.
    pub fn q_row(&self, test: usize, n: usize, i: usize) -> usize {
        self.p_len + test * n + i
    }

    /// The table rows of the inputs still in test `test`'s sample (`n` inputs).
    pub fn remaining_rows(&self, test: usize, n: usize, ensemble: &Ensemble) -> Vec<usize> {
        (0..n)
            .filter(|&i| ensemble.remaining[i])
            .map(|i| self.q_row(test, n, i))
            .collect()
    }

    /// The inputs `[runs, rows_per_run, dim]` and soft targets `[runs, rows_per_run, classes]`
    /// of the given table rows (run-major).
    pub fn gather(&self, rows: &[i64], runs: usize) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let per = rows.len() / runs.max(1);
        let idx = Tensor::<B, 1, Int>::from_data(
            TensorData::new(rows.to_vec(), [rows.len()]),
            &self.x.device(),
        );
        (
            self.x
                .clone()
                .select(0, idx.clone())
                .reshape([runs, per, self.dim]),
            self.target
                .clone()
                .select(0, idx)
                .reshape([runs, per, self.classes]),
        )
    }
}

/// `Σ_runs Σ_rows weight · CE(target, logits)`: each run's gradient is that of its own weighted
/// sum (Detectron's loss with weights `1/B` on P rows and `α/B` on Q rows).
///
/// # Shapes
/// `logits` and `target` `[R, rows, C]`, `weight` `[R, rows, 1]`; returns `[1]`.
pub fn weighted_ce<B: Backend>(
    logits: Tensor<B, 3>,
    target: Tensor<B, 3>,
    weight: Tensor<B, 3>,
) -> Tensor<B, 1> {
    (log_softmax(logits, 2) * target * weight).sum().neg()
}

/// The gradient of [`weighted_ce`] with respect to every parameter block of `R` classifiers.
pub fn gradients<B: burn::tensor::backend::AutodiffBackend>(
    arch: &Arch,
    params: &[Tensor<B::InnerBackend, 3>],
    x: Tensor<B::InnerBackend, 3>,
    target: Tensor<B::InnerBackend, 3>,
    weight: Tensor<B::InnerBackend, 3>,
) -> Vec<Tensor<B::InnerBackend, 3>> {
    let p_ad: Vec<Tensor<B, 3>> = params
        .iter()
        .map(|t| Tensor::from_inner(t.clone()).require_grad())
        .collect();
    let logits = classifier::forward(arch, &p_ad, Input::PerRun(Tensor::from_inner(x)));
    let loss = weighted_ce(
        logits,
        Tensor::from_inner(target),
        Tensor::from_inner(weight),
    );
    let grads = loss.backward();
    p_ad.iter()
        .map(|t| {
            t.grad(&grads)
                .unwrap_or_else(|| Tensor::zeros(t.dims(), &t.device()))
        })
        .collect()
}

/// The gradient of [`weighted_ce`] with respect to the flat weights (`[R, P]`, layout order) of
/// `R` classifiers, and the loss's value.
pub fn state_gradient<B: burn::tensor::backend::AutodiffBackend>(
    arch: &Arch,
    layout: &Layout,
    weights: Tensor<B::InnerBackend, 2>,
    x: Tensor<B::InnerBackend, 3>,
    target: Tensor<B::InnerBackend, 3>,
    weight: Tensor<B::InnerBackend, 3>,
) -> (Tensor<B::InnerBackend, 2>, f64) {
    let w = Tensor::<B, 2>::from_inner(weights).require_grad();
    let params = classifier::params_from_tensor(layout, w.clone());
    let logits = classifier::forward(arch, &params, Input::PerRun(Tensor::from_inner(x)));
    let loss = weighted_ce(
        logits,
        Tensor::from_inner(target),
        Tensor::from_inner(weight),
    );
    let value: f32 = burn::tensor::ElementConversion::elem(loss.clone().into_scalar());
    let grads = loss.backward();
    (
        w.grad(&grads).unwrap_or_else(|| w.inner().zeros_like()),
        f64::from(value),
    )
}

/// One run's rows of a batch: `p_rows` P indices, then the remaining Q rows, with their weights.
pub struct RunRows<'a> {
    /// P's training indices of this batch.
    pub p: &'a [u32],
    /// Table rows of the remaining Q inputs.
    pub q: &'a [usize],
    /// Weight of each P row.
    pub p_weight: f32,
    /// Weight of each Q row.
    pub q_weight: f32,
}

/// Appends a run's rows and weights to a batch under construction.
pub fn push_rows(rows: &mut Vec<i64>, weights: &mut Vec<f32>, run: &RunRows<'_>) {
    rows.extend(run.p.iter().map(|&i| i64::from(i)));
    weights.extend(std::iter::repeat_n(run.p_weight, run.p.len()));
    rows.extend(run.q.iter().map(|&i| i as i64));
    weights.extend(std::iter::repeat_n(run.q_weight, run.q.len()));
}

/// Appends one run's rows of Detectron's objective as a reward: `batch − |q|` P images drawn
/// with replacement from `rng` at weight `1/(batch − |q|)` (their mean cross-entropy) and the
/// remaining Q rows `q` at weight `λ/|q|` (λ times their mean disagreement loss).
#[allow(clippy::too_many_arguments)]
pub fn push_objective(
    rows: &mut Vec<i64>,
    weights: &mut Vec<f32>,
    p_len: usize,
    batch: usize,
    lambda: f64,
    q: &[usize],
    rng: &mut Rng,
) {
    let p_rows = batch - q.len();
    let draw = draw_p(p_len, p_rows, rng);
    let run = RunRows {
        p: &draw,
        q,
        p_weight: 1.0 / p_rows as f32,
        q_weight: (lambda / q.len().max(1) as f64) as f32,
    };
    push_rows(rows, weights, &run);
}

/// `m` indices of P's training rows drawn uniformly with replacement.
pub fn draw_p(p_len: usize, m: usize, rng: &mut Rng) -> Vec<u32> {
    let n = u32::try_from(p_len).unwrap_or(u32::MAX);
    (0..m).map(|_| rng.below(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

    /// The soft-target cross-entropy of a Q row is Detectron's disagreement loss in closed form.
    #[test]
    fn disagreement_loss_matches_its_closed_form() {
        let logits = [1.5f32, -0.5, 0.25, 2.0];
        let predicted = 3u8;
        let c = logits.len();
        let lse = logits.iter().map(|&l| f64::from(l).exp()).sum::<f64>().ln();
        let closed = -(0..c)
            .filter(|&k| k != usize::from(predicted))
            .map(|k| f64::from(logits[k]))
            .sum::<f64>()
            / (c as f64 - 1.0)
            + lse;
        let dev = Default::default();
        let l = Tensor::<Cpu, 3>::from_data(TensorData::new(logits.to_vec(), [1, 1, c]), &dev);
        let t = Tensor::<Cpu, 3>::from_data(
            TensorData::new(disagreement_targets(&[predicted], c), [1, 1, c]),
            &dev,
        );
        let w = Tensor::<Cpu, 3>::ones([1, 1, 1], &dev);
        let got = f64::from(weighted_ce(l, t, w).into_scalar());
        assert!((got - closed).abs() < 1e-5, "{got} vs {closed}");
        // And it is smallest when the logits avoid the predicted class.
        assert!(closed > 0.0);
    }
}
