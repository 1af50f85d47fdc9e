//! Evaluation of a meta-model against its zoo: accuracy of generated classifiers (per solver step
//! count), novelty (nearest training run, prediction agreement), trajectory fidelity (sliced W1 to
//! held-out marginals), the classifier loss along the sampling path, and fine-tuning from generated
//! vs Kaiming-uniform initializations; the figures are also drawn as PNG charts.

use std::path::Path;
use std::time::Instant;

use super::charts;
use super::downstream::downstream;
use super::metrics::{
    median, nearest, pairwise, pairwise_aligned, pairwise_disagreement, sliced_w1,
};
pub use super::report::{
    AccStats, Downstream, EvalReport, GeneratedRow, Novelty, PathLoss, StepRobustness, W1Row,
};
use super::sample::MetaModel;
use super::symmetry::HiddenLayers;
use super::trajectories::{self, Trajectories};
use crate::arch::{Arch, Layout};
use crate::backend::values;
use crate::classifier::{self, Input};
use crate::data::Dataset;
use crate::error::{MetaError, UsageError};
use crate::flow::solver::Solver;
use crate::progress;
use crate::zoo::manifest::Manifest;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
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
    /// Evaluate on another dataset view of the same input shape (e.g. a model fine-tuned from
    /// MNIST towards Fashion-MNIST): the zoo is then a reference zoo trained on that view with the
    /// model's architecture (trained accuracies, novelty and the downstream comparison are
    /// measured against its runs), not the model's own.
    pub dataset: Option<crate::data::DatasetView>,
}

impl EvalOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// A [`UsageError`] naming the option, the value and the range.
    pub fn validate(&self) -> Result<(), UsageError> {
        let bad = |what: &str| Err(UsageError(what.into()));
        if self.n == 0 {
            return bad("--n must be at least 1 (got 0)");
        }
        if self.steps.is_empty() || self.steps.contains(&0) {
            return bad(if self.solver == Solver::Sde {
                "--steps must list step counts of at least 2 for --solver sde (e.g. 2,4,8)"
            } else {
                "--steps must list step counts of at least 1 (e.g. 1,2,4,8)"
            });
        }
        if self.agreement_samples == 0 || self.w1_directions == 0 {
            return bad("agreement samples and W1 directions must be at least 1");
        }
        if self.downstream_epochs == Some(0) {
            return bad(
                "--downstream-epochs must be at least 1 (got 0); skip the comparison with --downstream 0",
            );
        }
        Ok(())
    }
}

pub(crate) fn accuracies<B: Backend>(
    arch: &Arch,
    layout: &Layout,
    flat: &[f32],
    n: usize,
    data: &Dataset,
    device: &B::Device,
) -> Result<Vec<f64>, MetaError> {
    let params = classifier::params_from_flat::<B>(layout, flat, n, device);
    let r = classifier::evaluate(arch, &params, &data.test.x, &data.test.y, None, device)?;
    Ok(r.into_iter().map(|(_, a)| a).collect())
}

/// Predicted classes of `n` classifiers on `m` samples of `x`, `[n, m]`.
pub(crate) fn predictions<B: Backend>(
    arch: &Arch,
    layout: &Layout,
    flat: &[f32],
    n: usize,
    x: &[f32],
    dim: usize,
    device: &B::Device,
) -> Result<Vec<i64>, MetaError> {
    let m = x.len() / dim;
    let params = classifier::params_from_flat::<B>(layout, flat, n, device);
    let xs = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [m, dim]), device);
    let classes = classifier::forward(arch, &params, Input::Shared(xs)).argmax(2);
    Ok(values::<i64>(classes.into_data())?)
}

/// Evaluates the model in `model_dir` against the zoo it was trained on (fine-tuning, for the
/// downstream comparison, needs an autodiff backend; everything else runs on its inner backend),
/// and draws the charts into `model_dir`.
///
/// # Errors
/// Invalid options (usage); model, zoo and data errors; [`MetaError::Incompatible`] when the zoo
/// is not the model's; [`MetaError::FineTuneDiverged`] when fine-tuning diverges.
pub fn evaluate<B: AutodiffBackend>(
    model_dir: &Path,
    zoo_dir: &Path,
    data_dir: &Path,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<EvalReport, MetaError> {
    opts.validate()?;
    let model = MetaModel::<B::InnerBackend>::load(model_dir, device)?;
    match opts.dataset {
        Some(view) => check_reference_zoo(&model, zoo_dir, view)?,
        None => check_zoo(&model, model_dir, zoo_dir)?,
    }
    let (manifest, train, held) = trajectories::load(zoo_dir)?;
    let data = Dataset::load(manifest.config.dataset, data_dir)?;
    let mut report =
        generation::<B::InnerBackend>(&model, &manifest, &train, &held, &data, opts, device)?;
    if opts.downstream_n > 0 {
        report.downstream = Some(fine_tuning::<B>(&model, &manifest, &data, opts, device)?);
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

/// Refuses a zoo other than the one the model was trained on.
fn check_zoo<B: Backend>(
    model: &MetaModel<B>,
    model_dir: &Path,
    zoo_dir: &Path,
) -> Result<(), MetaError> {
    let found = super::config::manifest_hash(zoo_dir)?;
    if found == model.config.zoo_manifest_sha256 {
        return Ok(());
    }
    Err(MetaError::Incompatible {
        model: model_dir.into(),
        zoo: zoo_dir.into(),
        expected: model.config.zoo_manifest_sha256.clone(),
        found,
    })
}

/// Checks that `zoo_dir` holds runs of the model's architecture trained on `view` (a reference
/// zoo for `--dataset`).
fn check_reference_zoo<B: Backend>(
    model: &MetaModel<B>,
    zoo_dir: &Path,
    view: crate::data::DatasetView,
) -> Result<(), MetaError> {
    let manifest = crate::zoo::Manifest::read(zoo_dir)?;
    manifest.require_single_task(zoo_dir)?;
    if manifest.config.dataset != view {
        return Err(UsageError(format!(
            "--dataset {view}: the zoo {} was trained on {}; give --zoo a zoo trained on {view} with the model's architecture",
            zoo_dir.display(),
            manifest.config.dataset
        ))
        .into());
    }
    if manifest.config.arch.layout() != model.layout {
        return Err(UsageError(format!(
            "--dataset {view}: the zoo {} holds {} classifiers, not the model's",
            zoo_dir.display(),
            manifest.config.arch
        ))
        .into());
    }
    Ok(())
}

/// The downstream comparison: generated classifiers (the model's own sampler) against Kaiming
/// inits, fine-tuned with the zoo's optimizer.
fn fine_tuning<B: AutodiffBackend>(
    model: &MetaModel<B::InnerBackend>,
    manifest: &Manifest,
    data: &Dataset,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<Downstream, MetaError> {
    let x0 = model.source_samples(opts.downstream_n, opts.seed, device)?;
    let (w, _) = model.integrate_from(
        &x0,
        opts.solver,
        model.config.solver_steps,
        opts.seed,
        device,
        &mut |_, _| {},
    )?;
    let all: Vec<f64> = manifest
        .runs
        .iter()
        .map(|r| f64::from(r.final_test_acc))
        .collect();
    let target = AccStats::of(&all).acc_mean;
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
        data,
        target,
        epochs,
        opts.seed,
        device,
        &mut |step, total| {
            pb.set_length(total as u64);
            pb.set_position(step as u64);
        },
    )?;
    pb.finish_and_clear();
    Ok(d)
}

/// Everything but the downstream comparison.
fn generation<B: Backend>(
    model: &MetaModel<B>,
    manifest: &Manifest,
    train: &Trajectories,
    held: &Trajectories,
    data: &Dataset,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<EvalReport, MetaError> {
    let arch = &manifest.config.arch;
    let acc_of = |heldout: bool| {
        let v: Vec<f64> = manifest
            .runs
            .iter()
            .filter(|r| r.heldout == heldout)
            .map(|r| f64::from(r.final_test_acc))
            .collect();
        AccStats::of(&v)
    };
    let x0 = model.source_samples(opts.n, opts.seed, device)?;
    let (generated, shown_steps, shown_w, shown_accs) =
        sweep(model, arch, &x0, data, opts, device)?;
    // A latent model's classifiers come out in the VAE's canonical unit order: the runs they are
    // compared with (novelty, W1) are put in it too, so that a copy of a run in another order is
    // not novel and the marginals are compared in one order.
    // Copies only where the order changes (a weight-space model is measured as it is).
    let sorted = model.latent.as_ref().filter(|c| c.sorts()).map(|c| {
        let (mut w, mut tr, mut he) = (shown_w.clone(), train.clone(), held.clone());
        c.canonicalize(&mut w);
        c.canonicalize(&mut tr.data);
        c.canonicalize(&mut he.data);
        (w, tr, he)
    });
    let canonical = sorted.is_some();
    let (nov_w, nov_train, nov_held) = match &sorted {
        Some((w, tr, he)) => (&w[..], tr, he),
        None => (&shown_w[..], train, held),
    };
    let mut novelty = novelty::<B>(
        arch,
        &model.layout,
        (nov_w, shown_steps),
        nov_train,
        nov_held,
        data,
        opts,
        device,
    )?;
    novelty.canonical = canonical;
    let step_robustness =
        StepRobustness::of(&generated, model.config.solver, model.config.solver_steps);
    Ok(EvalReport {
        trained_train: acc_of(false),
        trained_heldout: acc_of(true),
        generated,
        novelty,
        w1: fidelity(model, &x0, nov_train, nov_held, opts, device)?,
        path_loss: path_loss(model, arch, &x0, data, opts, device)?,
        downstream: None,
        step_robustness,
        generated_accs: shown_accs,
        generated_accs_steps: shown_steps,
    })
}

/// The step sweep: one row per step count, and the classifiers and accuracies of the row that
/// stands for the model ([`shown_row`]) with its step count.
type Sweep = (Vec<GeneratedRow>, usize, Vec<f32>, Vec<f64>);

fn sweep<B: Backend>(
    model: &MetaModel<B>,
    arch: &Arch,
    x0: &[f32],
    data: &Dataset,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<Sweep, MetaError> {
    let shown = shown_row(
        &opts.steps,
        opts.solver == model.config.solver,
        model.config.solver_steps,
    );
    let mut rows = Vec::new();
    let (mut shown_w, mut shown_accs) = (Vec::new(), Vec::new());
    for (row, &steps) in opts.steps.iter().enumerate() {
        let t0 = Instant::now();
        let (w, nfe) =
            model.integrate_from(x0, opts.solver, steps, opts.seed, device, &mut |_, _| {})?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0 / opts.n.max(1) as f64;
        let accs = accuracies::<B>(arch, &model.layout, &w, opts.n, data, device)?;
        let s = AccStats::of(&accs);
        rows.push(GeneratedRow {
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
    Ok((rows, shown_steps, shown_w, shown_accs))
}

/// A fixed-step ODE solver for measurements at step boundaries: the sweep's solver, RK4 in place
/// of an adaptive one (whose states do not land on given times), Euler for the memoryless SDE
/// (its states lie on another grid; Euler integrates its probability-flow ODE, the flow itself).
fn fixed_solver(solver: Solver) -> Solver {
    match solver {
        Solver::Dopri5 => Solver::Rk4,
        Solver::Sde => Solver::Euler,
        other => other,
    }
}

/// Trajectory fidelity: sliced W1 between generated states and held-out runs at every marginal,
/// integrating with one step per checkpoint interval so that states land on `t_k`.
fn fidelity<B: Backend>(
    model: &MetaModel<B>,
    x0: &[f32],
    train: &Trajectories,
    held: &Trajectories,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<Vec<W1Row>, MetaError> {
    let p = model.layout.num_params();
    let k = train.checkpoints() - 1;
    let mut states: Vec<Vec<f32>> = Vec::new();
    model.integrate_from(
        x0,
        fixed_solver(opts.solver),
        k,
        opts.seed,
        device,
        &mut |_, s| {
            states.push(s);
        },
    )?;
    let mut rng = Rng::new(opts.seed, 30);
    // Distances in standardized weight units: a latent model's states are decoded weights, so
    // its VAE's standardization applies.
    let normalizer = model
        .latent
        .as_ref()
        .map_or(&model.normalizer, |c| &c.normalizer);
    let normalized = |rows: &[f32]| {
        let mut z = rows.to_vec();
        normalizer.apply(&mut z);
        z
    };
    Ok((0..=k)
        .map(|j| {
            let (g, h, tr) = (
                normalized(&states[j]),
                normalized(&held.marginal(j)),
                normalized(&train.marginal(j)),
            );
            let w1 = |a: &[f32], rng: &mut Rng| {
                if held.is_empty() {
                    f64::NAN
                } else {
                    sliced_w1(a, &h, p, opts.w1_directions, rng)
                }
            };
            W1Row {
                t: train.times[j],
                generated: w1(&g, &mut rng),
                train_runs: w1(&tr, &mut rng),
            }
        })
        .collect())
}

/// The classifiers' test loss and accuracy at every step boundary of the model's own sampler.
fn path_loss<B: Backend>(
    model: &MetaModel<B>,
    arch: &Arch,
    x0: &[f32],
    data: &Dataset,
    opts: &EvalOptions,
    device: &B::Device,
) -> Result<Vec<PathLoss>, MetaError> {
    let sub = data.test.head(opts.agreement_samples);
    let steps = model.config.solver_steps;
    let mut states: Vec<Vec<f32>> = Vec::new();
    model.integrate_from(
        x0,
        fixed_solver(opts.solver),
        steps,
        opts.seed,
        device,
        &mut |_, s| {
            states.push(s);
        },
    )?;
    states
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let params = classifier::params_from_flat::<B>(&model.layout, s, opts.n, device);
            let r = classifier::evaluate(arch, &params, &sub.x, &sub.y, None, device)?;
            let n = r.len() as f64;
            Ok(PathLoss {
                t: j as f32 / steps as f32,
                loss: r.iter().map(|(l, _)| l).sum::<f64>() / n,
                acc: r.iter().map(|(_, a)| a).sum::<f64>() / n,
            })
        })
        .collect()
}

/// The sweep row that stands for the model: the first with its own solver steps when the
/// sweep's solver is its own, else the last row (`None` for an empty sweep).
fn shown_row(steps: &[usize], own_solver: bool, own_steps: usize) -> Option<usize> {
    let own = steps.iter().position(|&s| own_solver && s == own_steps);
    own.or(steps.len().checked_sub(1))
}

/// Classifiers whose pairwise distances are also measured with their units matched (4,950 pairs).
const ALIGNED_ROWS: usize = 100;

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
) -> Result<Novelty, MetaError> {
    let p = layout.num_params();
    let finals = train.finals();
    let sub = data.test.head(opts.agreement_samples);
    let train_pred = predictions::<B>(arch, layout, &finals, train.len(), &sub.x, sub.dim, device)?;
    let m = sub.len();
    let agreement = |pred: &[i64], nn: &[(usize, f64)]| -> Vec<f64> {
        nn.iter()
            .enumerate()
            .map(|(i, &(j, _))| {
                let same = (0..m)
                    .filter(|&s| pred[i * m + s] == train_pred[j * m + s])
                    .count();
                same as f64 / m.max(1) as f64
            })
            .collect()
    };
    let nn_gen = nearest(generated, &finals, p);
    let gen_pred = predictions::<B>(
        arch,
        layout,
        generated,
        nn_gen.len(),
        &sub.x,
        sub.dim,
        device,
    )?;
    let held_finals = held.finals();
    let nn_held = nearest(&held_finals, &finals, p);
    let aligned = HiddenLayers::of(layout);
    let held_pred = if held.is_empty() {
        Vec::new()
    } else {
        predictions::<B>(
            arch,
            layout,
            &held_finals,
            held.len(),
            &sub.x,
            sub.dim,
            device,
        )?
    };
    Ok(Novelty {
        steps,
        nn_dist_median_generated: median(nn_gen.iter().map(|x| x.1).collect()),
        nn_dist_median_heldout: median(nn_held.iter().map(|x| x.1).collect()),
        agreement_median_generated: median(agreement(&gen_pred, &nn_gen)),
        agreement_median_heldout: if held.is_empty() {
            f64::NAN
        } else {
            median(agreement(&held_pred, &nn_held))
        },
        pairwise_dist_median_generated: median(pairwise(generated, p)),
        pairwise_dist_median_heldout: median(pairwise(&held_finals, p)),
        pairwise_dist_aligned_median_generated: aligned
            .as_ref()
            .map(|h| median(pairwise_aligned(generated, h, p, ALIGNED_ROWS))),
        pairwise_dist_aligned_median_heldout: aligned
            .as_ref()
            .map(|h| median(pairwise_aligned(&held_finals, h, p, ALIGNED_ROWS))),
        pairwise_disagreement_median_generated: median(pairwise_disagreement(&gen_pred, m)),
        pairwise_disagreement_median_heldout: median(pairwise_disagreement(&held_pred, m)),
        canonical: false,
    })
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
}
