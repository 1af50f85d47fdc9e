//! Training one shard of runs together: every run has its own initialization, its own data order
//! and its own minibatches, but all runs advance in the same tensor operations.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use super::config::{Optimizer, Schedule, ZooConfig, ZooEngine};
use super::fused::{PixelSplit, evaluate_fused, train_runs_fused};
use crate::arch::{Arch, Layout};
use crate::classifier::{self, Input, cross_entropy_sum, one_hot};
use crate::data::{Dataset, dataset::NUM_CLASSES};
use crate::error::{UsageError, ZooError};
use crate::optim::{AdamSettings, BatchedAdam};
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of a run's initialization.
pub const STREAM_INIT: u64 = 1;
/// PRNG stream of a run's data order.
pub const STREAM_DATA: u64 = 2;

/// The training data on the device, ready for per-run minibatch gathers.
pub struct DeviceData<B: Backend> {
    x: Tensor<B, 2>,
    onehot: Tensor<B, 2>,
    n: usize,
    dim: usize,
}

impl<B: Backend> DeviceData<B> {
    /// Uploads the training split of `data`.
    pub fn new(data: &Dataset, device: &B::Device) -> Self {
        let n = data.train.len();
        let dim = data.train.dim;
        Self {
            x: Tensor::from_data(TensorData::new(data.train.x.clone(), [n, dim]), device),
            onehot: Tensor::from_data(
                TensorData::new(one_hot(&data.train.y, NUM_CLASSES), [n, NUM_CLASSES]),
                device,
            ),
            n,
            dim,
        }
    }
}

impl<B: Backend> DeviceData<B> {
    /// `m` samples drawn uniformly with replacement from `rng`: inputs `[m, d]` and one-hot
    /// labels `[m, classes]`.
    pub fn draw(&self, m: usize, rng: &mut Rng) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let idx: Vec<i64> = (0..m)
            .map(|_| i64::from(rng.below(u32::try_from(self.n).unwrap_or(u32::MAX))))
            .collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [m]), &self.x.device());
        (
            self.x.clone().select(0, idx.clone()),
            self.onehot.clone().select(0, idx),
        )
    }
}

/// The training split prepared once per zoo for its engine: burn tensors on the device, or the
/// stored pixels the fused trainer reads.
pub enum TrainingData<'a, B: Backend> {
    /// For the burn engine.
    Device(DeviceData<B>),
    /// For the fused engine.
    Pixels(PixelSplit<'a>),
}

impl<'a, B: Backend> TrainingData<'a, B> {
    /// The training split of `data` as `cfg.engine` reads it.
    ///
    /// # Errors
    /// [`UsageError`] when the fused engine is asked for and the split's inputs are not the
    /// view's pixel scaling.
    pub fn new(cfg: &ZooConfig, data: &'a Dataset, device: &B::Device) -> Result<Self, UsageError> {
        match cfg.engine {
            ZooEngine::Burn => Ok(Self::Device(DeviceData::new(data, device))),
            ZooEngine::Fused => PixelSplit::new(&data.train, cfg.dataset.pixel_scaling())
                .map(Self::Pixels)
                .ok_or_else(|| {
                    UsageError(format!(
                        "--engine fused reads stored pixels, and the training inputs of {} are not its pixel scaling; use --engine burn",
                        cfg.dataset
                    ))
                }),
        }
    }
}

/// What the progress display is told after every optimizer step.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Steps done in this shard.
    pub step: usize,
    /// Mean minibatch accuracy over the shard's runs, when it was measured at this step.
    pub batch_acc: Option<f64>,
}

/// The result of training a shard.
pub struct ShardResult {
    /// Checkpoints, `[runs, K+1, P]` row-major.
    pub weights: Vec<f32>,
    /// Per-run seeds.
    pub seeds: Vec<u64>,
    /// Per-run final (loss, accuracy) on the full training split.
    pub train: Vec<(f64, f64)>,
    /// Per-run final (loss, accuracy) on the test split.
    pub test: Vec<(f64, f64)>,
}

/// Optimizer state for the block tensors (PyTorch's Adam and SGD update rules).
enum OptimState<B: Backend> {
    Adam(BatchedAdam<B>),
    Sgd {
        lr: f64,
        momentum: f64,
        buf: Vec<Option<Tensor<B, 3>>>,
    },
}

impl<B: Backend> OptimState<B> {
    fn new(cfg: &ZooConfig, blocks: usize) -> Self {
        match cfg.optimizer {
            Optimizer::Adam => Self::Adam(BatchedAdam::new(AdamSettings::PYTORCH, cfg.lr, blocks)),
            Optimizer::Sgd => Self::Sgd {
                lr: cfg.lr,
                momentum: cfg.momentum,
                buf: vec![None; blocks],
            },
        }
    }

    fn step(&mut self, params: &mut [Tensor<B, 3>], grads: Vec<Tensor<B, 3>>) {
        match self {
            Self::Adam(adam) => adam.step(params, grads),
            Self::Sgd { lr, momentum, buf } => {
                for (i, g) in grads.into_iter().enumerate() {
                    let step = if *momentum > 0.0 {
                        let b = match buf[i].take() {
                            Some(b) => b * *momentum + g,
                            None => g,
                        };
                        buf[i] = Some(b.clone());
                        b
                    } else {
                        g
                    };
                    params[i] = params[i].clone() - step * *lr;
                }
            }
        }
    }
}

/// Trains the runs `runs` (zoo-wide indices) of a zoo and records their checkpoints.
///
/// `on_step` is called after every optimizer step.
///
/// # Errors
/// [`ZooError::Diverged`] when a run's loss becomes non-finite.
#[allow(clippy::too_many_arguments)]
pub fn train_shard<B: AutodiffBackend>(
    cfg: &ZooConfig,
    layout: &Layout,
    schedule: &Schedule,
    data: &Dataset,
    prepared: &TrainingData<'_, B::InnerBackend>,
    runs: std::ops::Range<usize>,
    device: &B::Device,
    on_step: &mut dyn FnMut(StepInfo),
) -> Result<ShardResult, ZooError> {
    let r = runs.len();
    let p = layout.num_params();
    let seeds: Vec<u64> = runs
        .clone()
        .map(|i| derive_seed(cfg.seed, i as u64))
        .collect();
    let mut init = Vec::with_capacity(r * p);
    for &s in &seeds {
        layout.init_into(&mut Rng::new(s, STREAM_INIT), &mut init);
    }
    let maps: Option<Vec<Vec<u8>>> = cfg.tasks.map(|t| {
        runs.clone()
            .map(|i| t.label_map(cfg.seed, t.task_of(i), NUM_CLASSES))
            .collect()
    });
    let (weights, train, test) = match (prepared, &cfg.arch) {
        (TrainingData::Pixels(pixels), Arch::Mlp { widths }) => {
            let outcome = train_runs_fused(
                cfg,
                widths,
                &init,
                &seeds,
                maps.as_deref(),
                pixels,
                cfg.epochs,
                &schedule.steps,
                &mut |step, batch_acc| on_step(StepInfo { step, batch_acc }),
            )
            .map_err(|(run, step)| ZooError::Diverged {
                run: runs.start + run,
                step,
            })?;
            let train = evaluate_fused(widths, &outcome.params, &data.train, maps.as_deref());
            let test = evaluate_fused(widths, &outcome.params, &data.test, maps.as_deref());
            (outcome.checkpoints, train, test)
        }
        (TrainingData::Pixels(_), Arch::CnnS) => {
            return Err(ZooError::Usage(UsageError(
                "--engine fused trains MLP architectures only (got cnn-s); use --engine burn or auto"
                    .into(),
            )));
        }
        (TrainingData::Device(device_data), _) => {
            let (weights, params) = train_shard_burn::<B>(
                cfg,
                layout,
                schedule,
                &init,
                &seeds,
                maps.as_deref(),
                device_data,
                runs.clone(),
                device,
                on_step,
            )?;
            let train = classifier::evaluate(
                &cfg.arch,
                &params,
                &data.train.x,
                &data.train.y,
                maps.as_deref(),
                device,
            )?;
            let test = classifier::evaluate(
                &cfg.arch,
                &params,
                &data.test.x,
                &data.test.y,
                maps.as_deref(),
                device,
            )?;
            (weights, train, test)
        }
    };
    let step = schedule.total_steps;
    if let Some(bad) = train.iter().position(|(l, _)| !l.is_finite()) {
        return Err(ZooError::Diverged {
            run: runs.start + bad,
            step,
        });
    }
    Ok(ShardResult {
        weights,
        seeds,
        train,
        test,
    })
}

/// The burn engine's part of [`train_shard`]: the checkpoints `[runs, K, P]` and the final
/// parameter blocks.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn train_shard_burn<B: AutodiffBackend>(
    cfg: &ZooConfig,
    layout: &Layout,
    schedule: &Schedule,
    init: &[f32],
    seeds: &[u64],
    maps: Option<&[Vec<u8>]>,
    device_data: &DeviceData<B::InnerBackend>,
    runs: std::ops::Range<usize>,
    device: &B::Device,
    on_step: &mut dyn FnMut(StepInfo),
) -> Result<(Vec<f32>, Vec<Tensor<B::InnerBackend, 3>>), ZooError> {
    let r = runs.len();
    let p = layout.num_params();
    let k = schedule.len();
    let mut weights = vec![0.0f32; r * k * p];
    let mut failed = None;
    let mut record =
        |params: &[Tensor<B::InnerBackend, 3>], slot: usize| match classifier::params_to_flat(
            layout, params,
        ) {
            Ok(flat) => {
                for run in 0..r {
                    weights[(run * k + slot) * p..(run * k + slot + 1) * p]
                        .copy_from_slice(&flat[run * p..(run + 1) * p]);
                }
            }
            Err(e) => failed = Some(e),
        };
    let mut next_slot = 0;
    let params = train_runs::<B>(
        cfg,
        layout,
        init,
        seeds,
        maps,
        device_data,
        cfg.epochs,
        device,
        &mut |step, params, batch_acc| {
            if schedule.steps.get(next_slot) == Some(&step) {
                record(params, next_slot);
                next_slot += 1;
            }
            if step > 0 {
                on_step(StepInfo { step, batch_acc });
            }
        },
    )
    .map_err(|step| ZooError::Diverged {
        run: runs.start,
        step,
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok((weights, params))
}

/// The observer of [`train_runs`]: `(step, parameter blocks, mean minibatch accuracy)`.
pub type OnStep<'a, B> = dyn FnMut(usize, &[Tensor<B, 3>], Option<f64>) + 'a;

/// Trains classifiers from the given initializations (`init`, `[runs, P]`) with the zoo's
/// optimizer, batch size and per-run data order (`data_seeds`, one per run) for `epochs` epochs;
/// with `label_maps` (one per run), run `r` learns the label `label_maps[r][y]` for class `y`.
///
/// `on_step(step, params, batch_acc)` is called before the first step (`step` 0) and after every
/// optimizer step; `batch_acc` is the mean minibatch accuracy when it was measured. Returns the
/// final parameters, or the step at which the loss became non-finite.
///
/// # Errors
/// The step number at which the minibatch loss became non-finite.
#[allow(clippy::too_many_arguments)]
pub fn train_runs<B: AutodiffBackend>(
    cfg: &ZooConfig,
    layout: &Layout,
    init: &[f32],
    data_seeds: &[u64],
    label_maps: Option<&[Vec<u8>]>,
    device_data: &DeviceData<B::InnerBackend>,
    epochs: usize,
    device: &B::Device,
    on_step: &mut OnStep<'_, B::InnerBackend>,
) -> Result<Vec<Tensor<B::InnerBackend, 3>>, usize> {
    let r = data_seeds.len();
    let mut data_rngs: Vec<Rng> = data_seeds
        .iter()
        .map(|&s| Rng::new(s, STREAM_DATA))
        .collect();
    let mut params: Vec<Tensor<B::InnerBackend, 3>> =
        classifier::params_from_flat(layout, init, r, device);
    let mut optim = OptimState::<B::InnerBackend>::new(cfg, params.len());
    on_step(0, &params, None);
    let n = device_data.n;
    let bs = cfg.batch_size;
    let steps_per_epoch = n.div_ceil(bs);
    let total_steps = steps_per_epoch * epochs;
    let mut perms: Vec<Vec<u32>> = vec![(0..n as u32).collect(); r];
    // Per run, the permutation matrix `M[c][map[c]] = 1`: `onehot · M` relabels the batch.
    let relabel = label_maps
        .map(|maps| classifier::relabel_matrices::<B::InnerBackend, _>(maps, NUM_CLASSES, device));
    let mut step = 0;
    for _epoch in 0..epochs {
        for (perm, rng) in perms.iter_mut().zip(data_rngs.iter_mut()) {
            rng.shuffle(perm);
        }
        for s in 0..steps_per_epoch {
            let lo = s * bs;
            let hi = (lo + bs).min(n);
            let b = hi - lo;
            let idx: Vec<i64> = perms
                .iter()
                .flat_map(|perm| perm[lo..hi].iter().map(|&i| i64::from(i)))
                .collect();
            let idx =
                Tensor::<B::InnerBackend, 1, Int>::from_data(TensorData::new(idx, [r * b]), device);
            let x = device_data
                .x
                .clone()
                .select(0, idx.clone())
                .reshape([r, b, device_data.dim]);
            let y = device_data
                .onehot
                .clone()
                .select(0, idx)
                .reshape([r, b, NUM_CLASSES]);
            let y = match &relabel {
                Some(m) => y.matmul(m.clone()),
                None => y,
            };
            let p_ad: Vec<Tensor<B, 3>> = params
                .iter()
                .map(|t| Tensor::from_inner(t.clone()).require_grad())
                .collect();
            let logits =
                classifier::forward(&cfg.arch, &p_ad, Input::PerRun(Tensor::from_inner(x)));
            let measure = step % 25 == 0 || step + 1 == total_steps;
            let batch_acc = measure.then(|| {
                let inner = logits.clone().inner();
                let pred = inner.argmax(2);
                let truth = y.clone().argmax(2);
                let correct = pred.equal(truth).float().sum().into_scalar();
                f64::from(burn::tensor::ElementConversion::elem::<f32>(correct)) / (r * b) as f64
            });
            let loss = cross_entropy_sum(logits, Tensor::from_inner(y.clone()));
            if measure {
                let l: f32 =
                    burn::tensor::ElementConversion::elem(loss.clone().inner().into_scalar());
                if !l.is_finite() {
                    return Err(step);
                }
            }
            let grads = loss.backward();
            let g: Vec<Tensor<B::InnerBackend, 3>> = p_ad
                .iter()
                .map(|t| {
                    t.grad(&grads)
                        .unwrap_or_else(|| Tensor::zeros(t.dims(), device))
                })
                .collect();
            optim.step(&mut params, g);
            step += 1;
            on_step(step, &params, batch_acc);
        }
    }
    Ok(params)
}
