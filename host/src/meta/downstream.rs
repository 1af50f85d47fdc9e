//! Downstream initialization: generated classifiers and fresh Kaiming-uniform ones are fine-tuned
//! with the zoo's own optimizer, batch size and data pipeline, and we count the optimizer steps
//! each group needs to reach the zoo's mean final test accuracy.

use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use super::report::{Downstream, DownstreamPoint};
use crate::arch::Layout;
use crate::classifier;
use crate::data::Dataset;
use crate::error::MetaError;
use crate::zoo::ZooConfig;
use crate::zoo::train::{DeviceData, train_runs};
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of the Kaiming-uniform initializations of the baseline group.
const STREAM_KAIMING: u64 = 40;
/// PRNG stream of the fine-tuning data orders (shared by the pair `i` of both groups).
const STREAM_ORDER: u64 = 41;

/// The steps at which both groups are evaluated: 0, 1, 2, 5, 10, 20, 50, … and 50 evenly spaced
/// steps up to `budget`.
pub fn eval_steps(budget: usize) -> Vec<usize> {
    let mut s = vec![0];
    let mut decade = 1;
    while decade <= budget {
        s.extend(
            [decade, 2 * decade, 5 * decade]
                .iter()
                .filter(|&&v| v <= budget),
        );
        decade *= 10;
    }
    let every = budget.div_ceil(50).max(1);
    s.extend((every..=budget).step_by(every));
    s.push(budget);
    s.sort_unstable();
    s.dedup();
    s
}

/// The first step of `curve` at which `acc(point)` reaches `target`.
pub fn first_reaching(
    curve: &[DownstreamPoint],
    target: f64,
    acc: impl Fn(&DownstreamPoint) -> f64,
) -> Option<usize> {
    curve.iter().find(|p| acc(p) >= target).map(|p| p.step)
}

/// Fine-tunes the `generated` classifiers (`[n, P]`, raw weights) and `n` fresh Kaiming-uniform
/// initializations for `epochs` epochs with the zoo's optimizer settings, pair `i` of both groups
/// seeing the same data order, and reports the steps each group needs to reach `target_acc`.
///
/// # Errors
/// [`MetaError::FineTuneDiverged`] with the step of a non-finite loss; [`MetaError::Tensor`].
#[allow(clippy::too_many_arguments)]
pub fn downstream<B: AutodiffBackend>(
    zoo: &ZooConfig,
    layout: &Layout,
    generated: &[f32],
    data: &Dataset,
    target_acc: f64,
    epochs: usize,
    seed: u64,
    device: &B::Device,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Downstream, MetaError> {
    let p = layout.num_params();
    let n = generated.len() / p;
    let mut init = generated.to_vec();
    for i in 0..n {
        let s = derive_seed(seed, i as u64);
        layout.init_into(&mut Rng::new(s, STREAM_KAIMING), &mut init);
    }
    let orders: Vec<u64> = (0..n)
        .map(|i| derive_seed(derive_seed(seed, i as u64), STREAM_ORDER))
        .collect();
    let seeds: Vec<u64> = orders.iter().chain(&orders).copied().collect();
    let device_data = DeviceData::<B::InnerBackend>::new(data, device);
    let budget = data.train.len().div_ceil(zoo.batch_size.max(1)) * epochs;
    let grid = eval_steps(budget);
    let mut curve = Vec::with_capacity(grid.len());
    let mut failed = None;
    train_runs::<B>(
        zoo,
        layout,
        &init,
        &seeds,
        None,
        &device_data,
        epochs,
        device,
        &mut |step, params: &[Tensor<B::InnerBackend, 3>], _| {
            on_step(step, budget);
            if grid.binary_search(&step).is_ok() && failed.is_none() {
                let r = match classifier::evaluate(
                    &zoo.arch,
                    params,
                    &data.test.x,
                    &data.test.y,
                    None,
                    device,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                };
                let mean = |rows: &[(f64, f64)]| {
                    rows.iter().map(|(_, a)| a).sum::<f64>() / rows.len().max(1) as f64
                };
                curve.push(DownstreamPoint {
                    step,
                    acc_generated: mean(&r[..n]),
                    acc_kaiming: mean(&r[n..]),
                });
            }
        },
    )
    .map_err(|step| MetaError::FineTuneDiverged { step })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let steps_generated = first_reaching(&curve, target_acc, |p| p.acc_generated);
    let steps_kaiming = first_reaching(&curve, target_acc, |p| p.acc_kaiming);
    Ok(Downstream {
        target_acc,
        n,
        budget_steps: budget,
        steps_generated,
        steps_kaiming,
        speedup: match (steps_generated, steps_kaiming) {
            (Some(g), Some(k)) => Some(k as f64 / g.max(1) as f64),
            _ => None,
        },
        curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_dense_early_and_covers_the_budget() {
        let g = eval_steps(360);
        assert_eq!(&g[..7], &[0, 1, 2, 5, 8, 10, 16]);
        assert_eq!(*g.last().unwrap(), 360);
        assert!(g.windows(2).all(|w| w[0] < w[1]));
        assert!(g.contains(&100) && g.contains(&200));
        assert_eq!(eval_steps(1), vec![0, 1]);
    }

    #[test]
    fn first_step_reaching_a_target() {
        let c = [(0, 0.1), (5, 0.6), (10, 0.9), (20, 0.95)].map(|(s, a)| DownstreamPoint {
            step: s,
            acc_generated: a,
            acc_kaiming: a / 2.0,
        });
        assert_eq!(first_reaching(&c, 0.9, |p| p.acc_generated), Some(10));
        assert_eq!(first_reaching(&c, 0.9, |p| p.acc_kaiming), None);
        assert_eq!(first_reaching(&c, 0.05, |p| p.acc_kaiming), Some(0));
    }
}
