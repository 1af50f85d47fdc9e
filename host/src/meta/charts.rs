//! The PNG charts written next to a model: its loss curve (`nmflow train`) and the evaluation
//! figures (`nmflow eval`).

use std::path::Path;

use super::report::{Downstream, DownstreamPoint, EvalReport, GeneratedRow};
use crate::plot::{self, LineChart, PlotError, Series};

/// File names of the charts.
pub mod files {
    /// Training and held-out loss per step.
    pub const LOSS: &str = "loss.png";
    /// Accuracy histogram: generated vs trained runs.
    pub const ACC_HIST: &str = "eval-accuracy-hist.png";
    /// Accuracy vs network evaluations.
    pub const ACC_NFE: &str = "eval-accuracy-nfe.png";
    /// Sliced W1 per marginal.
    pub const W1: &str = "eval-w1.png";
    /// Classifier loss along the sampling path.
    pub const PATH_LOSS: &str = "eval-path-loss.png";
    /// Fine-tuning curves of generated and Kaiming-uniform inits.
    pub const DOWNSTREAM: &str = "eval-downstream.png";
    /// A conditioned model's accuracy on its zoo's tasks per shot count.
    pub const TASKS: &str = "eval-tasks.png";
}

/// A conditioned model on its zoo's tasks: test accuracy per shot count for every guidance
/// weight, the few-shot baseline and the fine-tuned samples, against the ceiling (the tasks'
/// trained runs) and what the nearest seen task's runs score.
///
/// # Errors
/// [`PlotError`].
pub fn tasks(
    dir: &Path,
    report: &crate::meta::condition::sample::TaskEvalReport,
) -> Result<(), PlotError> {
    let mut weights: Vec<f32> = report.rows.iter().map(|r| r.guidance).collect();
    weights.sort_by(f32::total_cmp);
    weights.dedup();
    let mut series: Vec<Series> = weights
        .iter()
        .map(|&w| {
            let label = match w {
                0.0 => "unconditional (w = 0)".to_string(),
                1.0 => "conditioned (w = 1)".to_string(),
                _ => format!("guided (w = {w})"),
            };
            let points = report
                .rows
                .iter()
                .filter(|r| r.guidance == w)
                .map(|r| (r.shots as f64, 100.0 * r.acc.acc_mean))
                .collect();
            Series::marked(label, points)
        })
        .collect();
    for (label, rows) in [
        ("few-shot baseline", &report.few_shot),
        ("conditioned, then fine-tuned", &report.fine_tuned),
    ] {
        if !rows.is_empty() {
            let points = rows
                .iter()
                .map(|r| (r.shots as f64, 100.0 * r.acc.acc_mean))
                .collect();
            series.push(Series::marked(label, points));
        }
    }
    if !report.novelty.is_empty() {
        let points = report
            .novelty
            .iter()
            .map(|r| (r.shots as f64, 100.0 * r.nearest_runs.acc_mean))
            .collect();
        series.push(Series::marked("runs of the nearest seen task", points));
    }
    plot::line_chart(
        &dir.join(files::TASKS),
        &LineChart {
            title: format!(
                "classifiers for {} {:?} tasks from a support set",
                report.task_ids.len(),
                report.tasks
            )
            .to_lowercase(),
            x_label: "labeled examples per class (shots)".into(),
            y_label: "test accuracy (%)".into(),
            series,
            references: vec![(
                "ceiling: trained runs of these tasks".into(),
                100.0 * report.trained.acc_mean,
            )],
            log_x: true,
            ..LineChart::default()
        },
    )
}

/// The loss curve from the rows `(step, train loss, held-out loss)` of a training log.
///
/// # Errors
/// [`PlotError`].
pub fn loss_curve(
    dir: &Path,
    rows: &[(usize, f64, Option<f64>)],
    zero_loss: f64,
) -> Result<(), PlotError> {
    let train = rows.iter().map(|r| (r.0 as f64, r.1)).collect();
    let held = rows
        .iter()
        .filter_map(|r| Some((r.0 as f64, r.2?)))
        .collect();
    plot::line_chart(
        &dir.join(files::LOSS),
        &LineChart {
            title: "flow-matching loss".into(),
            x_label: "optimizer step".into(),
            y_label: "mean squared error (standardized units)".into(),
            series: vec![
                Series::line("training minibatch", train),
                Series::marked("held-out runs", held),
            ],
            references: vec![("zero field on held-out runs".into(), zero_loss)],
            log_y: true,
            legend_top: true,
            ..LineChart::default()
        },
    )
}

/// Every evaluation chart; `trained` and `heldout` are the zoo's final test accuracies (the
/// histogram shows `report.generated_accs`, the sweep row `report.generated_accs_steps`).
///
/// # Errors
/// [`PlotError`].
pub fn evaluation(
    dir: &Path,
    report: &EvalReport,
    trained: &[f64],
    heldout: &[f64],
) -> Result<(), PlotError> {
    let pct = |v: &[f64]| v.iter().map(|a| 100.0 * a).collect::<Vec<_>>();
    let shown = report
        .generated
        .iter()
        .find(|g| g.steps == report.generated_accs_steps);
    plot::histogram(
        &dir.join(files::ACC_HIST),
        "test accuracy: generated vs trained classifiers",
        "test accuracy (%)",
        &[
            (
                shown.map_or("generated".into(), |g| format!("generated (NFE {})", g.nfe)),
                pct(&report.generated_accs),
            ),
            ("trained (training runs)".into(), pct(trained)),
            ("trained (held-out runs)".into(), pct(heldout)),
        ],
        40,
    )?;
    accuracy_by_nfe(dir, report)?;
    fidelity(dir, report)?;
    match &report.downstream {
        Some(d) => downstream(dir, d)?,
        // No comparison this time: a chart of an earlier one would not describe this report.
        None => {
            let path = dir.join(files::DOWNSTREAM);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(PlotError {
                        path,
                        problem: e.to_string(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Accuracy of the step sweep's classifiers against network evaluations.
fn accuracy_by_nfe(dir: &Path, report: &EvalReport) -> Result<(), PlotError> {
    let by_nfe = |f: fn(&GeneratedRow) -> f64| {
        report
            .generated
            .iter()
            .map(|g| (g.nfe as f64, 100.0 * f(g)))
            .collect::<Vec<_>>()
    };
    plot::line_chart(
        &dir.join(files::ACC_NFE),
        &LineChart {
            title: "generated classifiers: test accuracy vs network evaluations".into(),
            x_label: "network evaluations (NFE)".into(),
            y_label: "test accuracy (%)".into(),
            series: vec![
                Series::marked("mean", by_nfe(|g| g.acc_mean)),
                Series::marked("min", by_nfe(|g| g.acc_min)),
                Series::marked("max", by_nfe(|g| g.acc_max)),
            ],
            references: vec![
                (
                    "trained held-out mean".into(),
                    100.0 * report.trained_heldout.acc_mean,
                ),
                (
                    "trained held-out min".into(),
                    100.0 * report.trained_heldout.acc_min,
                ),
            ],
            log_x: true,
            ..LineChart::default()
        },
    )
}

/// Sliced W1 per marginal and the classifier loss along the sampling path.
fn fidelity(dir: &Path, report: &EvalReport) -> Result<(), PlotError> {
    plot::line_chart(
        &dir.join(files::W1),
        &LineChart {
            title: "sliced W1 to the held-out runs' marginals".into(),
            x_label: "t".into(),
            y_label: "sliced W1 (standardized units)".into(),
            series: vec![
                Series::marked(
                    "generated",
                    report
                        .w1
                        .iter()
                        .map(|w| (f64::from(w.t), w.generated))
                        .collect(),
                ),
                Series::marked(
                    "training runs (floor)",
                    report
                        .w1
                        .iter()
                        .map(|w| (f64::from(w.t), w.train_runs))
                        .collect(),
                ),
            ],
            ..LineChart::default()
        },
    )?;
    plot::line_chart(
        &dir.join(files::PATH_LOSS),
        &LineChart {
            title: "classifier test loss along the sampling path".into(),
            x_label: "t".into(),
            y_label: "mean cross-entropy".into(),
            series: vec![Series::marked(
                "generated states",
                report
                    .path_loss
                    .iter()
                    .map(|p| (f64::from(p.t), p.loss))
                    .collect(),
            )],
            log_y: true,
            legend_top: true,
            ..LineChart::default()
        },
    )
}

/// Fine-tuning curves of generated and Kaiming-uniform inits.
fn downstream(dir: &Path, d: &Downstream) -> Result<(), PlotError> {
    let curve = |f: fn(&DownstreamPoint) -> f64| {
        d.curve
            .iter()
            .map(|p| (p.step as f64, 100.0 * f(p)))
            .collect::<Vec<_>>()
    };
    plot::line_chart(
        &dir.join(files::DOWNSTREAM),
        &LineChart {
            title: format!("fine-tuning with the zoo's optimizer ({} per group)", d.n),
            x_label: "optimizer step".into(),
            y_label: "mean test accuracy (%)".into(),
            series: vec![
                Series::marked("generated inits", curve(|p| p.acc_generated)),
                Series::marked("Kaiming-uniform inits", curve(|p| p.acc_kaiming)),
            ],
            references: vec![("zoo mean final accuracy".into(), 100.0 * d.target_acc)],
            ..LineChart::default()
        },
    )
}
