//! Sampling a conditioned meta-model for a task, with classifier-free guidance, and measuring it
//! on the tasks of a multi-task zoo (`nmflow eval` of a conditioned model).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use super::network::ConditionNet;
use super::support::{SupportPool, Supports};
use crate::data::Dataset;
use crate::error::{MetaError, UsageError};
use crate::flow::solver::Solver;
use crate::meta::field::VectorField;
use crate::meta::report::{AccStats, sd};
use crate::meta::sample::MetaModel;
use crate::zoo::Manifest;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of the support sets drawn for evaluation.
pub const STREAM_EVAL_SUPPORT: u64 = 15;

/// Field evaluations one guided velocity costs: one for `w = 0` (the unconditional field) and
/// `w = 1` (the conditional field), two otherwise.
pub fn evaluations(w: f32) -> usize {
    if w == 0.0 || w == 1.0 { 1 } else { 2 }
}

/// `v(x, t, ∅) + w·(v(x, t, e) − v(x, t, ∅))` for task embeddings `e` (`[n, E]`).
pub fn guided<B: Backend>(
    field: &VectorField<B>,
    cond: &ConditionNet<B>,
    x: Tensor<B, 2>,
    t: Tensor<B, 2>,
    e: &Tensor<B, 2>,
    w: f32,
) -> Tensor<B, 2> {
    let n = x.dims()[0];
    let conditional = |x, t| cond.velocity(field, x, t, e.clone());
    let unconditional = |x, t| cond.velocity(field, x, t, cond.null(n));
    if w == 1.0 {
        return conditional(x, t);
    }
    if w == 0.0 {
        return unconditional(x, t);
    }
    let u = unconditional(x.clone(), t.clone());
    let c = conditional(x, t);
    u.clone() + (c - u) * f64::from(w)
}

impl<B: Backend> MetaModel<B> {
    /// Synthesizes `n` classifiers for the task of `support` (one support set) with guidance
    /// weight `w`, from `seed` (sources as [`MetaModel::sample`] draws them); returns the raw
    /// weights and the field evaluations per classifier (two per step and stage where `w` is
    /// neither 0 nor 1).
    ///
    /// # Errors
    /// [`MetaError::Usage`] for a model without a condition or a support set of another input
    /// size; [`MetaError::Tensor`] when the backend's values cannot be read back.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_task(
        &self,
        support: &Supports,
        n: usize,
        w: f32,
        solver: Solver,
        steps: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<f32>, usize), MetaError> {
        let (Some(cond), Some(cfg)) = (&self.condition, &self.config.condition) else {
            return Err(UsageError(
                "the model is not conditioned on a task (train it with --condition support or classes)".into(),
            )
            .into());
        };
        if support.len() != 1 || support.x.len() != support.size * cfg.d_in {
            return Err(UsageError(format!(
                "a support set of this model has examples of {} values",
                cfg.d_in
            ))
            .into());
        }
        let e1 = cond.encode(support.tensor::<B>(cfg.d_in, device), &support.labels);
        let e = e1.repeat_dim(0, n);
        let x0 = self.source_samples(n, seed, device)?;
        let p = self.state_dim();
        let mut z = x0;
        self.normalizer.apply(&mut z);
        let x = Tensor::<B, 2>::from_data(TensorData::new(z, [n, p]), device);
        let mut v = |x: Tensor<B, 2>, t: f32| {
            guided(&self.field, cond, x, Tensor::full([n, 1], t, device), &e, w)
        };
        let (x1, nfe) = if solver == Solver::Sde {
            let mut v = |x: Tensor<B, 2>, t: f64| v(x, t as f32);
            self.integrate_sde(&mut v, x, steps, seed, device, &mut |_, _| {})?
        } else {
            crate::flow::solver::integrate(solver, steps, x, &mut v, &mut |_, _| {})
        };
        let mut out = crate::backend::values::<f32>(x1.into_data())?;
        self.normalizer.invert(&mut out);
        Ok((out, nfe * evaluations(w)))
    }
}

/// Which tasks of a multi-task zoo to measure on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum TaskSplit {
    /// Tasks never seen in training.
    Unseen,
    /// Tasks seen in training.
    Seen,
    /// Tasks of the zoo's family that it does not hold: its task generator continued past its
    /// last task, so never seen in training and as many as --max-tasks asks for. Their ceiling is
    /// the zoo's runs of its unseen tasks (a relabelling changes nothing training reaches); no
    /// novelty (no runs of their own).
    Fresh,
}

/// The tasks of `split` to measure (at most `max`): ids and label maps.
///
/// # Errors
/// A zoo without tasks; fewer fresh tasks than asked (the family ran out of labellings).
pub fn split_tasks(
    manifest: &Manifest,
    split: TaskSplit,
    max: usize,
) -> Result<Vec<(usize, Vec<u8>)>, UsageError> {
    let table = manifest.tasks.as_ref().ok_or_else(|| {
        UsageError("the zoo has no tasks (build it with `nmflow zoo --tasks`)".into())
    })?;
    if split == TaskSplit::Fresh {
        let classes = manifest.config.arch.num_classes();
        let fresh = table.fresh(manifest.config.seed, max, classes);
        if fresh.len() < max {
            return Err(UsageError(format!(
                "--max-tasks {max}: the zoo's family has only {} labellings of {classes} classes it does not hold",
                fresh.len()
            )));
        }
        return Ok(fresh);
    }
    Ok((0..table.count)
        .filter(|t| table.unseen.contains(t) == (split == TaskSplit::Unseen))
        .take(max)
        .map(|t| (t, table.label_maps[t].clone()))
        .collect())
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct TaskEvalOptions {
    /// Which tasks.
    pub tasks: TaskSplit,
    /// At most this many tasks (the first ones of the split).
    pub max_tasks: usize,
    /// Labeled examples per class in a support set.
    pub shots: Vec<usize>,
    /// Guidance weights (0: the unconditional field).
    pub guidance: Vec<f32>,
    /// Classifiers per task.
    pub samples: usize,
    /// Solver and steps.
    pub solver: Solver,
    /// Steps.
    pub steps: usize,
    /// Seed of the support sets and the sources.
    pub seed: u64,
    /// Most optimizer steps of the few-shot baseline (0: no baseline).
    pub few_shot_steps: usize,
    /// Optimizer steps of fine-tuning the conditioned samples (w = 1) on their support set (0:
    /// none).
    pub fine_tune_steps: usize,
    /// The zoo's folder, to measure the conditioned samples' novelty against its runs of the
    /// nearest seen task ([`super::novelty`]; `None`: not measured).
    pub novelty_zoo: Option<std::path::PathBuf>,
}

/// One row: a shot count and a guidance weight over every measured task.
#[derive(Clone, Debug, Serialize)]
pub struct TaskEvalRow {
    /// Examples per class in the support set.
    pub shots: usize,
    /// Guidance weight.
    pub guidance: f32,
    /// Field evaluations per classifier.
    pub nfe: usize,
    /// Test accuracy (against the task's labels) of every generated classifier.
    #[serde(flatten)]
    pub acc: AccStats,
    /// Standard deviation over tasks of the per-task mean.
    pub task_sd: f64,
}

/// The few-shot baseline at one shot count over every measured task.
#[derive(Clone, Debug, Serialize)]
pub struct FewShotRow {
    /// Examples per class in the support set.
    pub shots: usize,
    /// Test accuracy of every baseline classifier at its stopping step.
    #[serde(flatten)]
    pub acc: AccStats,
    /// Standard deviation over tasks of the per-task mean.
    pub task_sd: f64,
    /// Mean step at which the support-set accuracy stopped improving.
    pub stop_step_mean: f64,
}

/// What the evaluation of a conditioned model reports.
#[derive(Clone, Debug, Serialize)]
pub struct TaskEvalReport {
    /// `unseen`, `seen` or `fresh`.
    pub tasks: TaskSplit,
    /// Tasks measured.
    pub task_ids: Vec<usize>,
    /// Classifiers per task and row.
    pub samples: usize,
    /// The ceiling: the zoo's runs of these tasks, trained on each task's full training set (for
    /// fresh tasks, the runs of the zoo's unseen tasks).
    pub trained: AccStats,
    /// Runs behind the ceiling.
    pub trained_runs: usize,
    /// One row per shot count and guidance weight.
    pub rows: Vec<TaskEvalRow>,
    /// The few-shot baseline per shot count: as many Kaiming-uniform inits per task trained on
    /// the same support set alone with the zoo's optimizer (empty when skipped).
    pub few_shot: Vec<FewShotRow>,
    /// The conditioned samples (w = 1) fine-tuned on their support set with the zoo's optimizer
    /// for a fixed number of steps, per shot count (`stop_step_mean` is that number; empty when
    /// skipped).
    pub fine_tuned: Vec<FewShotRow>,
    /// Novelty of the conditioned samples (w = 1) against the zoo's runs of the nearest seen
    /// task, per shot count (empty when not measured).
    pub novelty: Vec<super::novelty::NoveltyRow>,
}

/// Measures a conditioned model on the tasks of its zoo: for every task, every shot count (a
/// support set of the training split drawn from `derive_seed(seed, task)`) and every guidance
/// weight, the test accuracy of `samples` generated classifiers against the task's labels.
///
/// # Errors
/// A model that is not conditioned, a zoo without tasks, bad options (usage), data errors.
pub fn evaluate_tasks<B: burn::tensor::backend::AutodiffBackend>(
    model: &MetaModel<B::InnerBackend>,
    manifest: &Manifest,
    data_dir: &Path,
    opts: &TaskEvalOptions,
    device: &B::Device,
) -> Result<TaskEvalReport, MetaError> {
    let table = manifest.tasks.as_ref().ok_or_else(|| {
        UsageError("the zoo has no tasks (build it with `nmflow zoo --tasks`)".into())
    })?;
    if opts.shots.contains(&0) || opts.shots.is_empty() {
        return Err(UsageError("--shots must list counts of at least 1".into()).into());
    }
    if let Some(w) = opts.guidance.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(UsageError(format!("--guidance must be finite and ≥ 0 (got {w})")).into());
    }
    if !opts
        .fine_tune_steps
        .is_multiple_of(super::baseline::MEASURE_EVERY)
    {
        return Err(UsageError(format!(
            "--fine-tune-steps must be a multiple of {} (got {})",
            super::baseline::MEASURE_EVERY,
            opts.fine_tune_steps
        ))
        .into());
    }
    if opts.samples == 0 || opts.max_tasks == 0 {
        return Err(UsageError("--n and --max-tasks must be at least 1".into()).into());
    }
    let tasks = split_tasks(manifest, opts.tasks, opts.max_tasks)?;
    let ids: Vec<usize> = tasks.iter().map(|t| t.0).collect();
    let maps: BTreeMap<usize, Vec<u8>> = tasks.into_iter().collect();
    // Fresh tasks have no runs: their ceiling is the runs of the zoo's unseen tasks.
    let ceiling_tasks: &[usize] = match opts.tasks {
        TaskSplit::Fresh => &table.unseen,
        _ => &ids,
    };
    let data = Dataset::load(manifest.config.dataset, data_dir)?;
    let classes = manifest.config.arch.num_classes();
    let pool = SupportPool::new(&data.train, classes)?;
    let arch = &manifest.config.arch;
    let layout = &model.layout;
    let trained: Vec<f64> = manifest
        .runs
        .iter()
        .filter(|r| r.task.is_some_and(|t| ceiling_tasks.contains(&t)))
        .map(|r| f64::from(r.final_test_acc))
        .collect();
    let mut rows = Vec::new();
    // The conditioned (w = 1) samples of every shot count and task, for fine-tuning.
    let mut conditioned: Vec<(usize, usize, Vec<f32>)> = Vec::new();
    for &shots in &opts.shots {
        for &w in &opts.guidance {
            let mut accs = Vec::new();
            let mut task_means = Vec::new();
            let mut nfe = 0;
            for (&t, map) in &maps {
                let support = pool.draw_task(map, shots, opts.seed, t);
                let (wts, used) = model.sample_task(
                    &support,
                    opts.samples,
                    w,
                    opts.solver,
                    opts.steps,
                    derive_seed(opts.seed, t as u64),
                    device,
                )?;
                nfe = used;
                if w == 1.0 && (opts.fine_tune_steps > 0 || opts.novelty_zoo.is_some()) {
                    conditioned.push((shots, t, wts.clone()));
                }
                let params = crate::classifier::params_from_flat::<B::InnerBackend>(
                    layout,
                    &wts,
                    opts.samples,
                    device,
                );
                let maps = vec![map.clone(); opts.samples];
                let r = crate::classifier::evaluate(
                    arch,
                    &params,
                    &data.test.x,
                    &data.test.y,
                    Some(&maps),
                    device,
                )?;
                let a: Vec<f64> = r.into_iter().map(|(_, a)| a).collect();
                task_means.push(a.iter().sum::<f64>() / a.len() as f64);
                accs.extend(a);
            }
            rows.push(TaskEvalRow {
                shots,
                guidance: w,
                nfe,
                acc: AccStats::of(&accs),
                task_sd: sd(&task_means),
            });
        }
    }
    let mut few = Vec::new();
    for &shots in opts.shots.iter().filter(|_| opts.few_shot_steps > 0) {
        let (mut accs, mut task_means, mut stops) = (Vec::new(), Vec::new(), Vec::new());
        for (&t, map) in &maps {
            // The same support set as the conditioned rows.
            let support = pool.draw_task(map, shots, opts.seed, t);
            let r = super::baseline::few_shot::<B>(
                &manifest.config,
                layout,
                &support,
                &data.test,
                map,
                opts.samples,
                opts.few_shot_steps,
                derive_seed(opts.seed, t as u64),
                device,
            )?;
            task_means.push(r.accs.iter().sum::<f64>() / r.accs.len().max(1) as f64);
            stops.push(r.stop_step as f64);
            accs.extend(r.accs);
        }
        few.push(FewShotRow {
            shots,
            acc: AccStats::of(&accs),
            task_sd: sd(&task_means),
            stop_step_mean: stops.iter().sum::<f64>() / stops.len().max(1) as f64,
        });
    }
    let mut tuned = Vec::new();
    for &shots in opts.shots.iter().filter(|_| opts.fine_tune_steps > 0) {
        let (mut accs, mut task_means) = (Vec::new(), Vec::new());
        for (_, t, wts) in conditioned.iter().filter(|c| c.0 == shots) {
            let map = &maps[t];
            let support = pool.draw_task(map, shots, opts.seed, *t);
            let r = super::baseline::fine_tune::<B>(
                &manifest.config,
                layout,
                &support,
                &data.test,
                map,
                wts,
                opts.fine_tune_steps,
                derive_seed(opts.seed, *t as u64),
                device,
            )?;
            task_means.push(r.accs.iter().sum::<f64>() / r.accs.len().max(1) as f64);
            accs.extend(r.accs);
        }
        if !accs.is_empty() {
            tuned.push(FewShotRow {
                shots,
                acc: AccStats::of(&accs),
                task_sd: sd(&task_means),
                stop_step_mean: opts.fine_tune_steps as f64,
            });
        }
    }
    let novelty = match &opts.novelty_zoo {
        // Fresh tasks have no runs of their own to compare with.
        Some(zoo) if opts.tasks != TaskSplit::Fresh => super::novelty::novelty::<B::InnerBackend>(
            arch,
            layout,
            manifest,
            zoo,
            &data.test,
            &conditioned,
            opts.samples,
            device,
        )?,
        _ => Vec::new(),
    };
    Ok(TaskEvalReport {
        novelty,
        tasks: opts.tasks,
        task_ids: ids,
        samples: opts.samples,
        trained: AccStats::of(&trained),
        trained_runs: trained.len(),
        rows,
        few_shot: few,
        fine_tuned: tuned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::meta::condition::config::ConditionConfig;
    use crate::meta::field::{FieldConfig, FieldKind, SetDims};

    fn close(a: &Tensor<Cpu, 2>, b: &Tensor<Cpu, 2>) -> bool {
        let (a, b): (Vec<f32>, Vec<f32>) = (
            a.clone().into_data().to_vec().unwrap(),
            b.clone().into_data().to_vec().unwrap(),
        );
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    /// For both field kinds and the class-equivariant field: w = 1 is the conditional field,
    /// w = 0 the field with the null embedding, any other w the linear combination; no condition
    /// is the plain field.
    #[test]
    fn guidance_weights_mix_the_conditional_and_the_null_field() {
        let dev = Default::default();
        let set = SetDims {
            units: 3,
            d_in: 4,
            d_out: 2,
        };
        use super::super::config::ConditionKind;
        for (kind, ck) in [
            (FieldKind::Mlp, ConditionKind::Support),
            (FieldKind::Set, ConditionKind::Support),
            (FieldKind::Set, ConditionKind::Classes),
        ] {
            let lifted =
                (ck == ConditionKind::Classes).then(|| super::super::lift::lifted_dims(set));
            let field: VectorField<Cpu> = FieldConfig {
                kind,
                set: Some(lifted.unwrap_or(set)),
                jko: None,
                dim: 23,
                hidden: 8,
                depth: 2,
                time_dim: 4,
                step_input: false,
                diagonal: false,
            }
            .init(&dev);
            let cond: ConditionNet<Cpu> = ConditionConfig {
                shots: 1,
                drop: 0.1,
                features: 3,
                embed: 5,
                classes: 2,
                d_in: 4,
                relabel: false,
                kind: ck,
            }
            .init(field.inject_width(), 1000, &dev);
            // Two rows of embeddings of the right width: 5 (support), 2 class tokens of 5 + 4.
            let width = if ck == ConditionKind::Classes { 18 } else { 5 };
            let x = Tensor::<Cpu, 2>::from_data(
                TensorData::new((0..46).map(|i| (i as f32 * 0.37).sin()).collect(), [2, 23]),
                &dev,
            );
            let t = Tensor::<Cpu, 2>::from_data(TensorData::new(vec![0.2f32, 0.7], [2, 1]), &dev);
            let e = Tensor::<Cpu, 2>::from_data(
                TensorData::new(
                    (0..2 * width).map(|i| i as f32 * 0.1 - 0.3).collect(),
                    [2, width],
                ),
                &dev,
            );
            let c = cond.velocity(&field, x.clone(), t.clone(), e.clone());
            let u = cond.velocity(&field, x.clone(), t.clone(), cond.null(2));
            if ck == ConditionKind::Support {
                assert!(close(
                    &c,
                    &field.forward_with(x.clone(), t.clone(), Some(cond.inject(e.clone())))
                ));
            }
            assert!(!close(&c, &u), "{kind:?}: the condition changes nothing");
            assert!(close(
                &guided(&field, &cond, x.clone(), t.clone(), &e, 1.0),
                &c
            ));
            assert!(close(
                &guided(&field, &cond, x.clone(), t.clone(), &e, 0.0),
                &u
            ));
            let two = u.clone() + (c.clone() - u.clone()) * 2.0;
            assert!(close(
                &guided(&field, &cond, x.clone(), t.clone(), &e, 2.0),
                &two
            ));
            if ck == ConditionKind::Support {
                assert!(close(
                    &field.forward_with(x.clone(), t.clone(), None),
                    &field.forward(x, t)
                ));
            }
            assert_eq!(
                (evaluations(0.0), evaluations(1.0), evaluations(2.0)),
                (1, 1, 2)
            );
        }
    }
}
