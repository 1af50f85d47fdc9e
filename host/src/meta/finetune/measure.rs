//! What a fine-tuning run measures and draws: the fixed evaluation draws (accuracy, reward,
//! distance from the base, spread) and the `finetune-*.png` charts.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use super::adjoint::{AdjointSettings, MomentRows, memoryless_path, normals};
use super::{EVAL_SEED, FinetuneConfig, Measurement, Row, STREAM_NOISE, State, inner_model};
use crate::arch::Arch;
use crate::backend::values;
use crate::classifier;
use crate::data::Dataset;
use crate::error::MetaError;
use crate::meta::field::VectorField;
use crate::meta::metrics::{median, pairwise, pairwise_aligned};
use crate::meta::reward::Reward;
use crate::meta::sample::MetaModel;
use crate::meta::symmetry::HiddenLayers;
use crate::plot::{self, LineChart, Series};
use nmflow_runtime::Rng;

/// The fixed draws every measurement uses: source samples, the base's classifiers from them, and
/// a batch of training images for the reward.
pub(super) struct Evaluation<'a> {
    arch: &'a Arch,
    data: &'a Dataset,
    x0: Vec<f32>,
    /// The seed `x0` came from.
    seed: u64,
    base_w: Vec<f32>,
    n: usize,
    images: usize,
    /// The classifiers' hidden layers, whose units the matched spread pairs up (none for
    /// convolutions).
    hidden: Option<HiddenLayers>,
}

impl<'a> Evaluation<'a> {
    pub(super) fn new<B: AutodiffBackend>(
        base: &MetaModel<B>,
        arch: &'a Arch,
        data: &'a Dataset,
        cfg: &FinetuneConfig,
        device: &B::Device,
    ) -> Result<Self, MetaError> {
        let n = cfg.eval_samples;
        let inner = inner_model(base, base.field.valid());
        let seed = cfg.seed ^ EVAL_SEED;
        let x0 = base.source_samples(n, seed, device)?;
        let (base_w, _) = inner.integrate_from(
            &x0,
            base.config.solver,
            base.config.solver_steps,
            seed,
            device,
            &mut |_, _| {},
        )?;
        Ok(Self {
            arch,
            data,
            x0,
            seed,
            base_w,
            n,
            images: cfg.reward_images.max(1024),
            hidden: HiddenLayers::of(&base.layout),
        })
    }

    /// Measures `field` on the fixed draws; with `sde` (adjoint matching: the source moments and
    /// the run's schedule) also the classifiers its memoryless SDE draws from the same source
    /// samples with fixed noise.
    pub(super) fn measure<B: AutodiffBackend>(
        &self,
        base: &MetaModel<B>,
        field: &VectorField<B::InnerBackend>,
        iteration: usize,
        sde: Option<(&MomentRows<B::InnerBackend>, AdjointSettings)>,
        device: &B::Device,
    ) -> Result<Measurement, MetaError> {
        let device = device.clone();
        let model = inner_model(base, field.clone());
        let (w, _) = model.integrate_from(
            &self.x0,
            base.config.solver,
            base.config.solver_steps,
            self.seed,
            &device,
            &mut |_, _| {},
        )?;
        let p = base.layout.num_params();
        let (acc_mean, acc_min, reward) = self.score(base, &w, &device)?;
        let (sde_acc_mean, sde_reward) = match sde {
            Some((moments, settings)) => {
                let mut z = self.x0.clone();
                model.normalizer.apply(&mut z);
                let q = model.state_dim();
                let rows = z.len() / q;
                let x0 = Tensor::from_data(TensorData::new(z, [rows, q]), &device);
                let mut noise = Rng::new(EVAL_SEED, STREAM_NOISE);
                let mut path =
                    memoryless_path(field, moments, settings.t0, settings.steps, x0, &mut || {
                        normals(rows, q, &mut noise, &device)
                    });
                // The path always holds at least its state at t0.
                let last = path.pop().ok_or_else(|| {
                    MetaError::Usage(crate::error::UsageError(
                        "the memoryless SDE returned no state".into(),
                    ))
                })?;
                let mut raw = values::<f32>(last.into_data())?;
                model.normalizer.invert(&mut raw);
                let ws = model.weights_of(raw, &device)?;
                let (a, _, r) = self.score(base, &ws, &device)?;
                (Some(a), Some(r))
            }
            None => (None, None),
        };
        let distance = w
            .chunks_exact(p)
            .zip(self.base_w.chunks_exact(p))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(u, v)| f64::from(u - v).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum::<f64>()
            / self.n as f64;
        Ok(Measurement {
            iteration,
            acc_mean,
            acc_min,
            reward,
            distance_from_base: distance,
            spread: median(pairwise(&w, p)),
            spread_aligned: self
                .hidden
                .as_ref()
                .map_or(0.0, |h| median(pairwise_aligned(&w, h, p, self.n))),
            sde_acc_mean,
            sde_reward,
        })
    }

    /// Mean and lowest test accuracy of the classifiers `w` (raw weights `[n, P]`) and their
    /// reward (minus the mean cross-entropy on the fixed training images).
    fn score<B: AutodiffBackend>(
        &self,
        base: &MetaModel<B>,
        w: &[f32],
        device: &B::Device,
    ) -> Result<(f64, f64, f64), MetaError> {
        let p = base.layout.num_params();
        let params =
            classifier::params_from_flat::<B::InnerBackend>(&base.layout, w, self.n, device);
        let accs = classifier::evaluate(
            self.arch,
            &params,
            &self.data.test.x,
            &self.data.test.y,
            None,
            device,
        )?;
        let acc: Vec<f64> = accs.iter().map(|a| a.1).collect();
        let acc_mean = acc.iter().sum::<f64>() / acc.len().max(1) as f64;
        let acc_min = acc.iter().copied().fold(f64::INFINITY, f64::min);
        let batch = self.data.train.head(self.images.min(self.data.train.len()));
        let (m, d) = (batch.len(), batch.dim);
        let classes = self.arch.num_classes();
        let onehot = classifier::one_hot(&batch.y, classes);
        let x = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(batch.x.clone(), [m, d]),
            device,
        );
        let y =
            Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(onehot, [m, classes]), device);
        let wt = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(w.to_vec(), [self.n, p]),
            device,
        );
        let ce = Reward::CrossEntropy.loss(self.arch, &base.layout, wt, x, y);
        let ce = values::<f32>(ce.into_data())?;
        Ok((
            acc_mean,
            acc_min,
            -f64::from(ce.first().copied().unwrap_or(f32::NAN)),
        ))
    }
}

/// `finetune-loss.png`, `finetune-reward.png`, `finetune-accuracy.png`, `finetune-distance.png`.
pub(super) fn charts(out: &Path, state: &State) -> Result<(), MetaError> {
    let chart = |name: &str, c: LineChart| -> Result<(), MetaError> {
        let path = out.join(name);
        plot::line_chart(&path, &c).map_err(|e| MetaError::file(&path, e))
    };
    let per_it = |f: fn(&Row) -> f64| -> Vec<(f64, f64)> {
        state
            .rows
            .iter()
            .map(|r| (r.iteration as f64, f(r)))
            .collect()
    };
    let measured = |f: fn(&Measurement) -> f64| -> Vec<(f64, f64)> {
        state
            .measurements
            .iter()
            .map(|m| (m.iteration as f64, f(m)))
            .collect()
    };
    chart(
        "finetune-loss.png",
        LineChart {
            title: "fine-tuning loss".into(),
            x_label: "iteration".into(),
            y_label: "loss".into(),
            series: vec![Series::line("per iteration", per_it(|r| r.loss))],
            log_y: true,
            legend_top: true,
            ..LineChart::default()
        },
    )?;
    chart(
        "finetune-reward.png",
        LineChart {
            title: "reward (minus cross-entropy)".into(),
            x_label: "iteration".into(),
            y_label: "reward".into(),
            series: vec![
                Series::line("iteration's samples", per_it(|r| r.reward)),
                Series::marked("fixed evaluation draws", measured(|m| m.reward)),
            ],
            ..LineChart::default()
        },
    )?;
    chart(
        "finetune-accuracy.png",
        LineChart {
            title: "test accuracy of sampled classifiers".into(),
            x_label: "iteration".into(),
            y_label: "accuracy".into(),
            series: vec![
                Series::marked("mean", measured(|m| m.acc_mean)),
                Series::marked("min", measured(|m| m.acc_min)),
            ],
            ..LineChart::default()
        },
    )?;
    chart(
        "finetune-distance.png",
        LineChart {
            title: "distance from the base's classifiers (same source samples) and spread".into(),
            x_label: "iteration".into(),
            y_label: "L2 distance (raw weights)".into(),
            series: vec![
                Series::marked("mean from the base", measured(|m| m.distance_from_base)),
                Series::marked("median pairwise (spread)", measured(|m| m.spread)),
                Series::marked(
                    "spread, hidden units matched",
                    measured(|m| m.spread_aligned),
                ),
            ],
            legend_top: true,
            ..LineChart::default()
        },
    )
}
