//! Detectron (Ginsberg et al., ICLR 2023; METHOD.md §6): constrained disagreement classifiers
//! (CDCs), each initialized from the base classifier and trained with Adam to agree with it on
//! P's training images and to disagree with it on the test's sample Q.
//!
//! A batch holds `B − |Q|` P images (a fresh permutation of P's training split every epoch,
//! incomplete last batch dropped) and every remaining Q input; the loss is the mean over the
//! batch of the P rows' cross-entropy to the base's predictions and the Q rows' disagreement loss
//! weighted by `λ = 1/(n_batches·|Q| + 1)`. Many tests train together: each is one run of a
//! batched classifier with its own rows, λ, data order and Adam moments, and leaves the batch
//! when its own step count is done, so its result does not depend on the others'.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};

use super::ensemble::{self, Ensemble, RejectionRule};
use super::pq::{self, PqTable, RunRows};
use crate::arch::{Arch, Layout};
use crate::backend::{TensorRead, values};
use crate::classifier::{self, Input};
use crate::optim::{AdamSettings, BatchedAdam};
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of a CDC's P data order.
const STREAM_ORDER: u64 = 40;

/// Detectron's training settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectronSettings {
    /// Rows per batch (P rows plus the remaining Q rows).
    pub batch: usize,
    /// Epochs over P's training split per CDC.
    pub epochs: usize,
    /// Adam's learning rate (PyTorch's Adam constants).
    pub lr: f64,
    /// The ensemble's rejection rule.
    pub rule: RejectionRule,
}

/// One test's CDC training job in a round.
struct Job {
    p_rows: usize,
    batches: usize,
    q_weight: f32,
    total: usize,
    rng: Rng,
    perm: Vec<u32>,
    q_rows: Vec<usize>,
}

/// Grows every test's ensemble with CDCs until its rule stops it.
///
/// `base` is the base classifier's weights (`[P]`), `samples` every test's sample (`[tests, n,
/// dim]`) whose rows in `table` are test-major, `seeds` one seed per test. `on_member(test)` is
/// called after each CDC.
///
/// # Errors
/// [`TensorRead`] when the backend's values cannot be read back.
#[allow(clippy::too_many_arguments)]
pub fn grow<B: AutodiffBackend>(
    arch: &Arch,
    layout: &Layout,
    base: &[f32],
    table: &PqTable<B::InnerBackend>,
    samples: &Tensor<B::InnerBackend, 3>,
    ensembles: &mut [Ensemble],
    seeds: &[u64],
    s: &DetectronSettings,
    device: &B::Device,
    on_member: &mut dyn FnMut(usize),
) -> Result<(), TensorRead> {
    let n = samples.dims()[1];
    let p = layout.num_params();
    for round in 0..s.rule.max_members {
        let active = ensemble::active(ensembles);
        if active.is_empty() {
            break;
        }
        let mut jobs: Vec<Job> = active
            .iter()
            .map(|&t| {
                let e = &ensembles[t];
                let count = e.count();
                let p_rows = s.batch - count;
                let batches = (table.p_len / p_rows).max(1);
                Job {
                    p_rows,
                    batches,
                    q_weight: (1.0 / ((batches * count) as f64 + 1.0) / s.batch as f64) as f32,
                    total: s.epochs * batches,
                    rng: Rng::new(derive_seed(seeds[t], round as u64), STREAM_ORDER),
                    perm: (0..u32::try_from(table.p_len).unwrap_or(u32::MAX)).collect(),
                    q_rows: table.remaining_rows(t, n, e),
                }
            })
            .collect();
        let init: Vec<f32> = base.iter().copied().cycle().take(p * jobs.len()).collect();
        let mut params =
            classifier::params_from_flat::<B::InnerBackend>(layout, &init, jobs.len(), device);
        let mut adam = BatchedAdam::new(AdamSettings::PYTORCH, s.lr, params.len());
        let mut batch: Vec<usize> = (0..jobs.len()).collect();
        let mut finals = vec![Vec::new(); jobs.len()];
        let p_weight = 1.0 / s.batch as f32;
        let mut step = 0;
        while !batch.is_empty() {
            let mut rows = Vec::with_capacity(batch.len() * s.batch);
            let mut weights = Vec::with_capacity(batch.len() * s.batch);
            for &j in &batch {
                let job = &mut jobs[j];
                let b = step % job.batches;
                if b == 0 {
                    job.rng.shuffle(&mut job.perm);
                }
                let run = RunRows {
                    p: &job.perm[b * job.p_rows..(b + 1) * job.p_rows],
                    q: &job.q_rows,
                    p_weight,
                    q_weight: job.q_weight,
                };
                pq::push_rows(&mut rows, &mut weights, &run);
            }
            let (x, target) = table.gather(&rows, batch.len());
            let w = Tensor::from_data(TensorData::new(weights, [batch.len(), s.batch, 1]), device);
            let grads = pq::gradients::<B>(arch, &params, x, target, w);
            adam.step(&mut params, grads);
            step += 1;
            if batch.iter().any(|&j| jobs[j].total == step) {
                let flat = classifier::params_to_flat(layout, &params)?;
                let mut keep = Vec::new();
                for (pos, &j) in batch.iter().enumerate() {
                    if jobs[j].total == step {
                        finals[j] = flat[pos * p..(pos + 1) * p].to_vec();
                    } else {
                        keep.push(pos);
                    }
                }
                if keep.is_empty() {
                    break;
                }
                let idx = Tensor::<B::InnerBackend, 1, Int>::from_data(
                    TensorData::new(
                        keep.iter().map(|&k| k as i64).collect::<Vec<_>>(),
                        [keep.len()],
                    ),
                    device,
                );
                params = params
                    .into_iter()
                    .map(|t| t.select(0, idx.clone()))
                    .collect();
                adam.retain(&idx);
                batch = keep.into_iter().map(|k| batch[k]).collect();
            }
        }
        let logits = member_logits::<B::InnerBackend>(
            arch,
            layout,
            &finals.concat(),
            samples,
            &active,
            device,
        )?;
        ensemble::add_members(ensembles, &active, &logits, s.rule, on_member);
    }
    Ok(())
}

/// The logits (`[runs, n, classes]`, flattened) of classifiers `weights` (`[runs, P]`), run `j`
/// on test `tests[j]`'s sample.
///
/// # Errors
/// [`TensorRead`] when the backend's values cannot be read back.
pub fn member_logits<B: burn::tensor::backend::Backend>(
    arch: &Arch,
    layout: &Layout,
    weights: &[f32],
    samples: &Tensor<B, 3>,
    tests: &[usize],
    device: &B::Device,
) -> Result<Vec<f32>, TensorRead> {
    let params = classifier::params_from_flat::<B>(layout, weights, tests.len(), device);
    let idx = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            tests.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [tests.len()],
        ),
        device,
    );
    let x = samples.clone().select(0, idx);
    values::<f32>(classifier::forward(arch, &params, Input::PerRun(x)).into_data())
}
