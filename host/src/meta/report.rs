//! The result types of evaluation (`eval.json`): a leaf that the evaluation fills in and the
//! charts, the CLI and `nmflow report` read. It depends on nothing but serde.

use serde::Serialize;

use crate::flow::solver::Solver;

/// Sample standard deviation (0 for fewer than two values).
pub fn sd(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    (v.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / v.len().saturating_sub(1).max(1) as f64)
        .sqrt()
}

/// Accuracy statistics.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
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
    /// Median pairwise distance between generated classifiers once each pair's hidden units are
    /// matched (the first 100; exact for one hidden layer, weight matching for more): the spread
    /// that is not just the order of the units. Absent for architectures without hidden units
    /// to match (convolutions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairwise_dist_aligned_median_generated: Option<f64>,
    /// The same between held-out runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairwise_dist_aligned_median_heldout: Option<f64>,
    /// Median fraction of test inputs on which two generated classifiers predict differently
    /// (diversity in function; weight distances also count weights that never train).
    pub pairwise_disagreement_median_generated: f64,
    /// The same between two held-out runs.
    pub pairwise_disagreement_median_heldout: f64,
    /// Every distance was measured with the classifiers in canonical unit order (latent models
    /// whose VAE sorts units), so that a permuted copy of a run counts as that run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canonical: bool,
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
    /// Whether more solver steps than the model was trained for cost accuracy (`null` when the
    /// sweep does not cover the model's own solver and steps and a larger count within 4×).
    pub step_robustness: Option<StepRobustness>,
    /// Test accuracy of every classifier of the sweep row with the model's own solver and steps,
    /// else of the last row (not in the JSON).
    #[serde(skip)]
    pub generated_accs: Vec<f64>,
    /// The step count of that row (not in the JSON).
    #[serde(skip)]
    pub generated_accs_steps: usize,
}

/// What spending more solver steps does to the generated classifiers: from the model's own step
/// count up to four times it, the largest drop of the mean test accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepRobustness {
    /// The step count the model was trained for (its default sampler).
    pub trained_steps: usize,
    /// The largest swept step count within four times it.
    pub max_steps_checked: usize,
    /// Mean test accuracy at the trained step count.
    pub acc_mean_trained: f64,
    /// The largest drop of the mean, in percentage points (negative: every larger count did
    /// better), over the swept counts from the trained one to four times it.
    pub worst_drop_pp: f64,
    /// `worst_drop_pp ≤ 0.5`: more steps do not make worse classifiers.
    pub holds: bool,
}

/// The largest drop a user may see by spending more steps, in percentage points.
pub const STEP_DROP_TOLERANCE_PP: f64 = 0.5;

impl StepRobustness {
    /// The figure for the sweep `rows` of a model whose own sampler is `solver` × `trained_steps`
    /// (`None` when the rows do not hold the trained count and a larger one within 4×).
    pub fn of(rows: &[GeneratedRow], solver: Solver, trained_steps: usize) -> Option<Self> {
        let own: Vec<&GeneratedRow> = rows.iter().filter(|r| r.solver == solver).collect();
        let base = own.iter().find(|r| r.steps == trained_steps)?;
        let limit = trained_steps.saturating_mul(4);
        let more: Vec<&&GeneratedRow> = own
            .iter()
            .filter(|r| r.steps > trained_steps && r.steps <= limit)
            .collect();
        let max_steps_checked = more.iter().map(|r| r.steps).max()?;
        let worst = more
            .iter()
            .map(|r| 100.0 * (base.acc_mean - r.acc_mean))
            .fold(f64::NEG_INFINITY, f64::max);
        Some(Self {
            trained_steps,
            max_steps_checked,
            acc_mean_trained: base.acc_mean,
            worst_drop_pp: worst,
            holds: worst <= STEP_DROP_TOLERANCE_PP,
        })
    }
}

/// One point of the fine-tuning curves.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DownstreamPoint {
    /// Optimizer steps done.
    pub step: usize,
    /// Mean test accuracy of the fine-tuned generated classifiers.
    pub acc_generated: f64,
    /// Mean test accuracy of the fine-tuned Kaiming-initialized classifiers.
    pub acc_kaiming: f64,
}

/// The downstream-initialization report.
#[derive(Clone, Debug, Serialize)]
pub struct Downstream {
    /// The accuracy to reach: the zoo's mean final test accuracy over all its runs.
    pub target_acc: f64,
    /// Classifiers per group.
    pub n: usize,
    /// Optimizer steps trained (the step budget).
    pub budget_steps: usize,
    /// First evaluated step at which the generated group's mean test accuracy reached the target
    /// (`null`: not within the budget).
    pub steps_generated: Option<usize>,
    /// The same for Kaiming-uniform initializations.
    pub steps_kaiming: Option<usize>,
    /// `steps_kaiming / steps_generated` when both reached the target (`steps_generated` = 0 counts
    /// as one step).
    pub speedup: Option<f64>,
    /// Mean test accuracy of both groups at every evaluated step.
    pub curve: Vec<DownstreamPoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(steps: usize, acc_mean: f64) -> GeneratedRow {
        GeneratedRow {
            solver: Solver::Euler,
            steps,
            nfe: steps,
            acc_mean,
            acc_min: acc_mean,
            acc_max: acc_mean,
            ms_per_classifier: 0.0,
        }
    }

    #[test]
    fn step_robustness_is_the_worst_drop_within_four_times_the_trained_steps() {
        let rows = [
            row(2, 0.47),
            row(4, 0.92),
            row(8, 0.68),
            row(16, 0.90),
            row(32, 0.1),
        ];
        let r = StepRobustness::of(&rows, Solver::Euler, 4).unwrap();
        assert_eq!((r.trained_steps, r.max_steps_checked), (4, 16));
        assert!((r.worst_drop_pp - 24.0).abs() < 1e-9, "{r:?}");
        assert!(!r.holds);
        let fine = [row(4, 0.92), row(8, 0.921), row(16, 0.918)];
        let r = StepRobustness::of(&fine, Solver::Euler, 4).unwrap();
        assert!(r.holds && (r.worst_drop_pp - 0.2).abs() < 1e-9, "{r:?}");
        // No larger count in the sweep, another solver, or no trained count: nothing to say.
        assert!(StepRobustness::of(&[row(4, 0.9)], Solver::Euler, 4).is_none());
        assert!(StepRobustness::of(&fine, Solver::Rk4, 4).is_none());
        assert!(StepRobustness::of(&fine, Solver::Euler, 2).is_none());
    }
}
