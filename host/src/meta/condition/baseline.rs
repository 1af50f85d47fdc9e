//! Training on a support set alone, with the zoo's optimizer: the few-shot baseline of a
//! conditioned model (Kaiming-uniform inits, until their accuracy on the support set stops
//! improving) and the fine-tuning of its generated classifiers (a fixed number of steps).

use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use super::support::Supports;
use crate::arch::Layout;
use crate::data::{Dataset, Split};
use crate::error::MetaError;
use crate::zoo::ZooConfig;
use crate::zoo::train::{DeviceData, train_runs};
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of the baseline's inits (and, derived, of its data orders).
const STREAM_FEW_SHOT: u64 = 42;
/// Optimizer steps between two measurements of the baseline.
pub const MEASURE_EVERY: usize = 25;

/// What the baseline reached on one task.
#[derive(Clone, Debug)]
pub struct FewShot {
    /// Test accuracy (against the task's labels) of every classifier at the stopping step.
    pub accs: Vec<f64>,
    /// The step at which the mean accuracy on the support set stopped improving.
    pub stop_step: usize,
}

/// Trains `n` Kaiming-uniform inits (from `seed`) on the support set `support` (one set, with the
/// task's labels) with the zoo's optimizer, learning rate and batch size for `steps` steps at
/// most, measuring every [`MEASURE_EVERY`] steps; stops (reports) at the first measurement where
/// the mean support-set accuracy reached its best, and scores the classifiers there on `test`
/// against the task's labels (`map[y]`).
///
/// # Errors
/// A diverged training ([`MetaError::FineTuneDiverged`]) or unreadable backend values.
#[allow(clippy::too_many_arguments)]
pub fn few_shot<B: AutodiffBackend>(
    zoo: &ZooConfig,
    layout: &Layout,
    support: &Supports,
    test: &Split,
    map: &[u8],
    n: usize,
    steps: usize,
    seed: u64,
    device: &B::Device,
) -> Result<FewShot, MetaError> {
    let mut init = Vec::with_capacity(n * layout.num_params());
    for i in 0..n {
        layout.init_into(
            &mut Rng::new(derive_seed(seed, i as u64), STREAM_FEW_SHOT),
            &mut init,
        );
    }
    let (task, test) = (Task { support, map }, Scored { test, map });
    train_on_support::<B>(zoo, layout, &task, &test, &init, steps, true, seed, device)
}

/// Fine-tunes the classifiers `init` (`[n, P]`, e.g. a conditioned model's samples for the task)
/// on the support set for exactly `steps` steps (a multiple of [`MEASURE_EVERY`]) with the zoo's
/// optimizer, and scores them there.
///
/// # Errors
/// As [`few_shot`].
#[allow(clippy::too_many_arguments)]
pub fn fine_tune<B: AutodiffBackend>(
    zoo: &ZooConfig,
    layout: &Layout,
    support: &Supports,
    test: &Split,
    map: &[u8],
    init: &[f32],
    steps: usize,
    seed: u64,
    device: &B::Device,
) -> Result<FewShot, MetaError> {
    let (task, test) = (Task { support, map }, Scored { test, map });
    train_on_support::<B>(zoo, layout, &task, &test, init, steps, false, seed, device)
}

/// A support set with its task's label map.
struct Task<'a> {
    support: &'a Supports,
    map: &'a [u8],
}

/// A test split scored against a task's label map.
struct Scored<'a> {
    test: &'a Split,
    map: &'a [u8],
}

/// Trains `init` on the support set, measuring every [`MEASURE_EVERY`] steps; reports at the
/// first measurement of the best support-set accuracy (`until_fit`) or at the last one.
#[allow(clippy::too_many_arguments)]
fn train_on_support<B: AutodiffBackend>(
    zoo: &ZooConfig,
    layout: &Layout,
    task: &Task<'_>,
    scored: &Scored<'_>,
    init: &[f32],
    steps: usize,
    until_fit: bool,
    seed: u64,
    device: &B::Device,
) -> Result<FewShot, MetaError> {
    let (support, map, test) = (task.support, task.map, scored.test);
    debug_assert_eq!(task.map, scored.map);
    let n = init.len() / layout.num_params().max(1);
    let dim = test.dim;
    let train = Split {
        x: support.x.clone(),
        y: support.labels.clone(),
        dim,
    };
    let data = Dataset {
        view: zoo.dataset,
        train,
        test: Split {
            x: Vec::new(),
            y: Vec::new(),
            dim,
        },
    };
    let orders: Vec<u64> = (0..n)
        .map(|i| derive_seed(derive_seed(seed, i as u64), STREAM_FEW_SHOT))
        .collect();
    let device_data = DeviceData::<B::InnerBackend>::new(&data, device);
    let per_epoch = support.labels.len().div_ceil(zoo.batch_size.max(1));
    let epochs = steps.div_ceil(per_epoch.max(1)).max(1);
    let maps = vec![map.to_vec(); n];
    // (step, mean support accuracy, test accuracies) at every measurement.
    let mut points: Vec<(usize, f64, Vec<f64>)> = Vec::new();
    let mut failed = None;
    let train_x = &data.train.x;
    let train_y = &data.train.y;
    train_runs::<B>(
        zoo,
        layout,
        init,
        &orders,
        None,
        &device_data,
        epochs,
        device,
        &mut |step, params: &[Tensor<B::InnerBackend, 3>], _| {
            if step % MEASURE_EVERY != 0 || failed.is_some() {
                return;
            }
            let fit =
                crate::classifier::evaluate(&zoo.arch, params, train_x, train_y, None, device);
            let scored = crate::classifier::evaluate(
                &zoo.arch,
                params,
                &test.x,
                &test.y,
                Some(&maps),
                device,
            );
            match (fit, scored) {
                (Ok(fit), Ok(scored)) => {
                    let mean = fit.iter().map(|(_, a)| a).sum::<f64>() / fit.len().max(1) as f64;
                    points.push((step, mean, scored.into_iter().map(|(_, a)| a).collect()));
                }
                (Err(e), _) | (_, Err(e)) => failed = Some(e),
            }
        },
    )
    .map_err(|step| MetaError::FineTuneDiverged { step })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let best = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let chosen = if until_fit {
        points.into_iter().find(|p| p.1 >= best)
    } else {
        points.into_iter().rfind(|p| p.0 <= steps)
    };
    let (stop_step, _, accs) = chosen.unwrap_or((0, 0.0, Vec::new()));
    Ok(FewShot { accs, stop_step })
}
