//! Evaluation of a meta-model against its zoo: accuracy of generated classifiers (per solver step
//! count), novelty (nearest training run, prediction agreement), trajectory fidelity (sliced W1 to
//! held-out marginals), the classifier loss along the sampling path, and fine-tuning from generated
//! vs Kaiming-uniform initializations; the figures are also drawn as PNG charts.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use super::charts;
use super::downstream::{Downstream, downstream};
use super::sample::MetaModel;
use super::source::standard_normal;
use super::trajectories::{self, Trajectories};
use crate::arch::{Arch, Layout};
use crate::classifier::{self, Input};
use crate::data::Dataset;
use crate::error::MetaError;
use crate::flow::solver::Solver;
use crate::progress;
use crate::zoo::manifest::Manifest;
use nmflow_runtime::Rng;

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Classifiers generated per step count.
    pub n: usize,
    /// Solver.
    pub solver: Solver,
    /// Step counts to sweep.
    pub steps: Vec<usize>,
    /// Seed of the source samples.
    pub seed: u64,
    /// Test samples used for prediction agreement and the path loss.
    pub agreement_samples: usize,
    /// Random directions of the sliced Wasserstein distance.
    pub w1_directions: usize,
    /// Classifiers per group fine-tuned for the downstream comparison (0: skip it).
    pub downstream_n: usize,
    /// Fine-tuning epochs [default: twice the zoo's].
    pub downstream_epochs: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
}

/// Accuracy statistics.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AccStats {
    /// Mean.
    pub acc_mean: f64,
    /// Minimum.
    pub acc_min: f64,
    /// Maximum.
    pub acc_max: f64,
}

impl AccStats {
    /// Statistics of `accs` (NaN when empty).
    pub fn of(accs: &[f64]) -> Self {
        let n = accs.len() as f64;
        Self {
            acc_mean: accs.iter().sum::<f64>() / n,
            acc_min: accs.iter().copied().fold(f64::NAN, f64::min),
            acc_max: accs.iter().copied().fold(f64::NAN, f64::max),
        }
    }
}

/// One row of the step sweep.
#[derive(Clone, Debug, Serialize)]
pub struct GeneratedRow {
    /// Solver.
    pub solver: Solver,
    /// Solver steps.
    pub steps: usize,
    /// Network evaluations per sample.
    pub nfe: usize,
    /// Mean test accuracy.
    pub acc_mean: f64,
    /// Lowest test accuracy.
    pub acc_min: f64,
    /// Highest test accuracy.
    pub acc_max: f64,
    /// Sampling wall-clock time per classifier (milliseconds).
    pub ms_per_classifier: f64,
}

/// Nearest-neighbour novelty figures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Novelty {
    /// The solver step count of the generated classifiers measured here.
    pub steps: usize,
    /// Median L2 distance from a generated classifier to the nearest training run's final weights.
    pub nn_dist_median_generated: f64,
    /// The same for held-out runs (what a new training run looks like).
    pub nn_dist_median_heldout: f64,
    /// Median test-prediction agreement of a generated classifier with that neighbour.
    pub agreement_median_generated: f64,
    /// The same for held-out runs.
    pub agreement_median_heldout: f64,
    /// Median L2 distance between two generated classifiers (diversity: a generator that
    /// collapses onto a few classifiers shows up here).
    pub pairwise_dist_median_generated: f64,
    /// The same between two held-out runs.
    pub pairwise_dist_median_heldout: f64,
}

/// Sliced W1 at one marginal.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct W1Row {
    /// Marginal time.
    pub t: f32,
    /// Generated states vs held-out runs.
    pub generated: f64,
    /// Training runs vs held-out runs (the sampling-noise floor).
    pub train_runs: f64,
}

/// Classifier loss of the sampled states along the path.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PathLoss {
    /// Time.
    pub t: f32,
    /// Mean test cross-entropy of the states at `t`.
    pub loss: f64,
    /// Mean test accuracy of the states at `t`.
    pub acc: f64,
}

/// The report of `nmflow eval`.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Trained training runs (final test accuracy).
    pub trained_train: AccStats,
    /// Trained held-out runs.
    pub trained_heldout: AccStats,
    /// Generated classifiers per step count.
    pub generated: Vec<GeneratedRow>,
    /// Novelty of the classifiers of the sweep row with the model's own solver and steps, else
    /// of the last row.
    pub novelty: Novelty,
    /// Trajectory fidelity per marginal.
    pub w1: Vec<W1Row>,
    /// Loss along the sampling path (default solver steps).
    pub path_loss: Vec<PathLoss>,
    /// Fine-tuning generated vs Kaiming-uniform initializations (`null` when skipped).
    pub downstream: Option<Downstream>,
    /// Test accuracy of every classifier of the sweep row with the model's own solver and steps,
    /// else of the last row (not in the JSON).
    #[serde(skip)]
    pub generated_accs: Vec<f64>,
    /// The step count of that row (not in the JSON).
    #[serde(skip)]
    pub generated_accs_steps: usize,
}

fn accuracies<B: Backend>(
    arch: &Arch,
    layout: &Layout,
    flat: &[f32],
    n: usize,
    data: &Dataset,
    device: &B::Device,
) -> Vec<(f64, f64)> {
    let params = classifier::params_from_flat::<B>(layout, flat, n, device);
    classifier::evaluate(arch, &params, &data.test.x, &data.test.y, device)
}

/// Predicted classes of `n` classifiers on `m` samples of `x`, `[n, m]`.
fn predictions<B: Backend>(
    arch: &Arch,
    layout: &Layout,
    flat: &[f32],
    n: usize,
    x: &[f32],
    dim: usize,
    device: &B::Device,
) -> Vec<i64> {
    let m = x.len() / dim;
    let params = classifier::params_from_flat::<B>(layout, flat, n, device);
    let xs = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [m, dim]), device);
    classifier::forward(arch, &params, Input::Shared(xs))
        .argmax(2)
        .into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// For each row of `queries`, the index of and L2 distance to its nearest row of `pool`.
pub fn nearest(queries: &[f32], pool: &[f32], p: usize) -> Vec<(usize, f64)> {
    queries
        .chunks_exact(p)
        .map(|q| {
            pool.chunks_exact(p)
                .enumerate()
                .map(|(j, r)| {
                    let d2: f64 = q.iter().zip(r).map(|(a, b)| f64::from(a - b).powi(2)).sum();
                    (j, d2)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or((0, f64::NAN), |(j, d2)| (j, d2.sqrt()))
        })
        .collect()
}

/// Sliced Wasserstein-1 distance between two point sets (`[n, p]`, `[m, p]`), averaged over
/// `directions` random unit directions; 1-D distances by matching 256 quantiles.
pub fn sliced_w1(a: &[f32], b: &[f32], p: usize, directions: usize, rng: &mut Rng) -> f64 {
    let q = 256;
    let mut total = 0.0;
    for _ in 0..directions {
        let mut dir: Vec<f32> = (0..p).map(|_| standard_normal(rng)).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        dir.iter_mut().for_each(|v| *v /= norm);
        let project = |s: &[f32]| {
            let mut v: Vec<f64> = s
                .chunks_exact(p)
                .map(|r| r.iter().zip(&dir).map(|(x, d)| f64::from(x * d)).sum())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (pa, pb) = (project(a), project(b));
        let quantile = |v: &[f64], u: f64| v[((u * v.len() as f64) as usize).min(v.len() - 1)];
        total += (0..q)
            .map(|j| {
                let u = (j as f64 + 0.5) / q as f64;
                (quantile(&pa, u) - quantile(&pb, u)).abs()
            })
            .sum::<f64>()
            / q as f64;
    }
    total / directions.max(1) as f64
}

/// Evaluates the model in `model_dir` against the zoo it was trained on (fine-tuning, for the
/// downstream comparison, needs an autodiff backend; everything else runs on its inner backend).
///
/// # Errors
/// Model, zoo and data errors; [`MetaError::Incompatible`] when the zoo is not the model's;
/// [`MetaError::FineTuneDiverged`] when fine-tuning diverges.
pub fn evaluate<B: AutodiffBackend>(
    model_dir: &Path,
    zoo_dir: &Path,
    data_dir: &Path,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<EvalReport, MetaError> {
    let (mut report, model, manifest, data) =
        generation::<B::InnerBackend>(model_dir, zoo_dir, data_dir, opts, device)?;
    if opts.downstream_n > 0 {
        let x0 = model.source_samples(opts.downstream_n, opts.seed);
        let (w, _) = model.integrate_from(
            &x0,
            opts.solver,
            model.config.solver_steps,
            device,
            &mut |_, _| {},
        );
        let target = AccStats::of(
            &manifest
                .runs
                .iter()
                .map(|r| f64::from(r.final_test_acc))
                .collect::<Vec<_>>(),
        )
        .acc_mean;
        let epochs = opts
            .downstream_epochs
            .unwrap_or(2 * manifest.config.epochs)
            .max(1);
        let pb = progress::bar(0, "steps", opts.quiet);
        pb.set_prefix("fine-tune");
        let d = downstream::<B>(
            &manifest.config,
            &model.layout,
            &w,
            &data,
            target,
            epochs,
            opts.seed,
            device,
            &mut |step, total| {
                pb.set_length(total as u64);
                pb.set_position(step as u64);
            },
        )
        .map_err(|step| MetaError::FineTuneDiverged { step })?;
        pb.finish_and_clear();
        report.downstream = Some(d);
    }
    let finals = |heldout: bool| -> Vec<f64> {
        manifest
            .runs
            .iter()
            .filter(|r| r.heldout == heldout)
            .map(|r| f64::from(r.final_test_acc))
            .collect()
    };
    charts::evaluation(model_dir, &report, &finals(false), &finals(true))?;
    Ok(report)
}

/// Everything but the downstream comparison.
fn generation<B: Backend>(
    model_dir: &Path,
    zoo_dir: &Path,
    data_dir: &Path,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<(EvalReport, MetaModel<B>, Manifest, Dataset), MetaError> {
    let model = MetaModel::<B>::load(model_dir, device)?;
    let found = super::train::manifest_hash(zoo_dir)?;
    if found != model.config.zoo_manifest_sha256 {
        return Err(MetaError::Incompatible {
            model: model_dir.into(),
            zoo: zoo_dir.into(),
            expected: model.config.zoo_manifest_sha256.clone(),
            found,
        });
    }
    let (manifest, train, held) = trajectories::load(zoo_dir)?;
    let data = Dataset::load(manifest.config.dataset, data_dir)?;
    let arch = manifest.config.arch.clone();
    let layout = &model.layout;
    let p = layout.num_params();
    let acc_of = |heldout: bool| {
        let v: Vec<f64> = manifest
            .runs
            .iter()
            .filter(|r| r.heldout == heldout)
            .map(|r| f64::from(r.final_test_acc))
            .collect();
        AccStats::of(&v)
    };
    let x0 = model.source_samples(opts.n, opts.seed);
    let mut generated = Vec::new();
    // The row whose classifiers the histogram and the novelty figures describe.
    let shown = shown_row(
        &opts.steps,
        opts.solver == model.config.solver,
        model.config.solver_steps,
    );
    let mut shown_w = Vec::new();
    let mut shown_accs = Vec::new();
    for (row, &steps) in opts.steps.iter().enumerate() {
        let t0 = Instant::now();
        let (w, nfe) = model.integrate_from(&x0, opts.solver, steps, device, &mut |_, _| {});
        let ms = t0.elapsed().as_secs_f64() * 1000.0 / opts.n.max(1) as f64;
        let accs: Vec<f64> = accuracies::<B>(&arch, layout, &w, opts.n, &data, device)
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        let s = AccStats::of(&accs);
        generated.push(GeneratedRow {
            solver: opts.solver,
            steps,
            nfe,
            acc_mean: s.acc_mean,
            acc_min: s.acc_min,
            acc_max: s.acc_max,
            ms_per_classifier: ms,
        });
        if Some(row) == shown {
            shown_w = w;
            shown_accs = accs;
        }
    }
    let shown_steps = shown.map_or(0, |r| opts.steps[r]);
    let generated_at = (&shown_w[..], shown_steps);
    let novelty = novelty::<B>(
        &arch,
        layout,
        generated_at,
        &train,
        &held,
        &data,
        opts,
        device,
    );
    // Trajectory fidelity: integrate with one step per marginal interval so states land on t_k
    // (an adaptive solver's states do not: RK4 stands in for it there).
    let fixed = if opts.solver.is_adaptive() {
        Solver::Rk4
    } else {
        opts.solver
    };
    let k = train.checkpoints() - 1;
    let mut states: Vec<Vec<f32>> = Vec::new();
    model.integrate_from(&x0, fixed, k, device, &mut |_, s| states.push(s));
    let mut rng = Rng::new(opts.seed, 30);
    let normalized = |rows: &[f32]| {
        let mut z = rows.to_vec();
        model.normalizer.apply(&mut z);
        z
    };
    let w1 = (0..=k)
        .map(|j| {
            let (g, h, tr) = (
                normalized(&states[j]),
                normalized(&held.marginal(j)),
                normalized(&train.marginal(j)),
            );
            W1Row {
                t: train.times[j],
                generated: if held.is_empty() {
                    f64::NAN
                } else {
                    sliced_w1(&g, &h, p, opts.w1_directions, &mut rng)
                },
                train_runs: if held.is_empty() {
                    f64::NAN
                } else {
                    sliced_w1(&tr, &h, p, opts.w1_directions, &mut rng)
                },
            }
        })
        .collect();
    let sub = data.test.head(opts.agreement_samples);
    let default_steps = model.config.solver_steps;
    let mut path_states: Vec<Vec<f32>> = Vec::new();
    model.integrate_from(&x0, fixed, default_steps, device, &mut |_, s| {
        path_states.push(s)
    });
    let path_loss = path_states
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let params = classifier::params_from_flat::<B>(layout, s, opts.n, device);
            let r = classifier::evaluate(&arch, &params, &sub.x, &sub.y, device);
            let n = r.len() as f64;
            PathLoss {
                t: j as f32 / default_steps as f32,
                loss: r.iter().map(|(l, _)| l).sum::<f64>() / n,
                acc: r.iter().map(|(_, a)| a).sum::<f64>() / n,
            }
        })
        .collect();
    let report = EvalReport {
        trained_train: acc_of(false),
        trained_heldout: acc_of(true),
        generated,
        novelty,
        w1,
        path_loss,
        downstream: None,
        generated_accs: shown_accs,
        generated_accs_steps: shown_steps,
    };
    Ok((report, model, manifest, data))
}

/// The sweep row that stands for the model: the first with its own solver steps when the
/// sweep's solver is its own, else the last row (`None` for an empty sweep).
fn shown_row(steps: &[usize], own_solver: bool, own_steps: usize) -> Option<usize> {
    let own = steps.iter().position(|&s| own_solver && s == own_steps);
    own.or(steps.len().checked_sub(1))
}

#[allow(clippy::too_many_arguments)]
fn novelty<B: Backend>(
    arch: &Arch,
    layout: &Layout,
    (generated, steps): (&[f32], usize),
    train: &Trajectories,
    held: &Trajectories,
    data: &Dataset,
    opts: &EvalOptions,
    device: &B::Device,
) -> Novelty {
    let p = layout.num_params();
    let finals = train.finals();
    let sub = data.test.head(opts.agreement_samples);
    let train_pred = predictions::<B>(arch, layout, &finals, train.len(), &sub.x, sub.dim, device);
    let m = sub.len();
    let agreement = |queries: &[f32], nn: &[(usize, f64)]| -> Vec<f64> {
        let q = nn.len();
        let pred = predictions::<B>(arch, layout, queries, q, &sub.x, sub.dim, device);
        (0..q)
            .map(|i| {
                let j = nn[i].0;
                let same = (0..m)
                    .filter(|&s| pred[i * m + s] == train_pred[j * m + s])
                    .count();
                same as f64 / m.max(1) as f64
            })
            .collect()
    };
    let nn_gen = nearest(generated, &finals, p);
    let held_finals = held.finals();
    let nn_held = nearest(&held_finals, &finals, p);
    Novelty {
        steps,
        nn_dist_median_generated: median(nn_gen.iter().map(|x| x.1).collect()),
        nn_dist_median_heldout: median(nn_held.iter().map(|x| x.1).collect()),
        agreement_median_generated: median(agreement(generated, &nn_gen)),
        agreement_median_heldout: if held.is_empty() {
            f64::NAN
        } else {
            median(agreement(&held_finals, &nn_held))
        },
        pairwise_dist_median_generated: median(pairwise(generated, p)),
        pairwise_dist_median_heldout: median(pairwise(&held_finals, p)),
    }
}

/// L2 distances between all pairs of rows (at most the first 200 rows).
pub fn pairwise(rows: &[f32], p: usize) -> Vec<f64> {
    let rows: Vec<&[f32]> = rows.chunks_exact(p).take(200).collect();
    let mut d = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            d.push(
                a.iter()
                    .zip(*b)
                    .map(|(x, y)| f64::from(x - y).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_row_is_the_models_own_setting_else_the_last() {
        assert_eq!(shown_row(&[2, 4, 8], true, 4), Some(1));
        assert_eq!(shown_row(&[2, 4, 8], false, 4), Some(2));
        assert_eq!(shown_row(&[2, 8], true, 4), Some(1));
        assert_eq!(shown_row(&[4, 4], true, 4), Some(0));
        assert_eq!(shown_row(&[], true, 4), None);
    }

    #[test]
    fn sliced_w1_of_a_shift() {
        // Two 1-D point sets shifted by 2: W1 = 2 along the only direction.
        let a: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let b: Vec<f32> = a.iter().map(|v| v + 2.0).collect();
        let w = sliced_w1(&a, &b, 1, 4, &mut Rng::new(0, 0));
        assert!((w - 2.0).abs() < 1e-6, "{w}");
        assert!(sliced_w1(&a, &a, 1, 4, &mut Rng::new(0, 0)).abs() < 1e-9);
    }

    #[test]
    fn nearest_neighbours() {
        let pool = [0.0, 0.0, 10.0, 0.0];
        let q = [9.0, 0.0, 1.0, 1.0];
        let nn = nearest(&q, &pool, 2);
        assert_eq!(nn[0].0, 1);
        assert!((nn[0].1 - 1.0).abs() < 1e-12);
        assert_eq!(nn[1].0, 0);
        assert!((nn[1].1 - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.5);
        let d = pairwise(&[0.0, 0.0, 3.0, 4.0, 0.0, 1.0], 2);
        assert_eq!(d, vec![5.0, 1.0, 3f64.hypot(3.0)]);
    }
}
