//! The calibrated comparison: per method, statistic and sample size, the threshold at the null's
//! false-positive rate, the power (TPR) there, the AUROC, the false-positive rate observed on
//! held-out null seeds, and the time per test; written as JSON, a Markdown table and ROC curves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::run::{ChunkRecord, Hypothesis, RunInfo, ShiftConfig, ShiftMethod, TestRecord};
use super::stats;
use crate::error::MetaError;
use crate::io::write_atomic;
use crate::plot::{self, LineChart, Series};

/// One cell of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Fraction of shifted samples flagged at the threshold.
    pub tpr: f64,
    /// Area under the ROC curve (null calibration seeds against shifted seeds).
    pub auroc: f64,
    /// Fraction of held-out null samples flagged at the threshold (`null` without held-out seeds).
    pub fpr_observed: Option<f64>,
    /// Wall-clock seconds per test (a chunk's time divided by its tests).
    pub seconds_per_test: f64,
    /// The threshold: a sample is flagged when its statistic exceeds it.
    pub threshold: f64,
    /// Fraction of null calibration samples flagged (≤ α).
    pub fpr_calibration: f64,
    /// Mean ensemble size (members besides the base classifier).
    pub mean_members: f64,
}

/// `j[method][statistic][size]`.
pub type Results = BTreeMap<String, BTreeMap<String, BTreeMap<String, Cell>>>;

/// The statistics, by name.
pub const STATISTICS: [&str; 2] = ["disagreement", "entropy"];

/// Scores (larger: more shifted) of the null calibration, null held-out and shifted tests.
struct Scores {
    null: Vec<f64>,
    heldout: Vec<f64>,
    alt: Vec<f64>,
}

fn tests(
    chunks: &[ChunkRecord],
    method: ShiftMethod,
    size: usize,
    hyp: Hypothesis,
) -> Vec<&TestRecord> {
    let mut t: Vec<&TestRecord> = chunks
        .iter()
        .filter(|c| c.method == method && c.size == size && c.hypothesis == hyp)
        .flat_map(|c| &c.tests)
        .collect();
    t.sort_by_key(|r| r.seed);
    t
}

fn disagreement(r: &TestRecord) -> f64 {
    (r.counts[0] - r.counts.last().copied().unwrap_or(0)) as f64
}

fn scores(cfg: &ShiftConfig, null: &[&TestRecord], alt: &[&TestRecord], statistic: &str) -> Scores {
    let (cal, held): (Vec<&TestRecord>, Vec<&TestRecord>) =
        null.iter().partition(|r| r.seed < cfg.seeds);
    match statistic {
        "disagreement" => Scores {
            null: cal.iter().map(|r| disagreement(r)).collect(),
            heldout: held.iter().map(|r| disagreement(r)).collect(),
            alt: alt.iter().map(|r| disagreement(r)).collect(),
        },
        _ => {
            // KS distance of a sample's entropies from the calibration null's pooled entropies
            // (leaving a calibration sample's own out).
            let pool_without = |skip: Option<usize>| -> Vec<f64> {
                cal.iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != skip)
                    .flat_map(|(_, r)| r.entropies.iter().copied())
                    .collect()
            };
            let full = pool_without(None);
            Scores {
                null: cal
                    .iter()
                    .enumerate()
                    .map(|(i, r)| stats::ks_statistic(&r.entropies, &pool_without(Some(i))))
                    .collect(),
                heldout: held
                    .iter()
                    .map(|r| stats::ks_statistic(&r.entropies, &full))
                    .collect(),
                alt: alt
                    .iter()
                    .map(|r| stats::ks_statistic(&r.entropies, &full))
                    .collect(),
            }
        }
    }
}

/// Computes every cell from the records, and the ROC curves per size.
pub fn analyse(cfg: &ShiftConfig, chunks: &[ChunkRecord]) -> Results {
    let mut out = Results::new();
    for &method in &cfg.methods {
        let m = out.entry(method.name().to_string()).or_default();
        for statistic in STATISTICS {
            let s = m.entry(statistic.to_string()).or_default();
            for &size in &cfg.sizes {
                let null = tests(chunks, method, size, Hypothesis::Null);
                let alt = tests(chunks, method, size, Hypothesis::Alt);
                let sc = scores(cfg, &null, &alt, statistic);
                let tau = stats::threshold(&sc.null, cfg.alpha);
                let (secs, n): (f64, usize) = chunks
                    .iter()
                    .filter(|c| c.method == method && c.size == size)
                    .fold((0.0, 0), |(s, n), c| (s + c.seconds, n + c.tests.len()));
                let members: usize = null.iter().chain(&alt).map(|r| r.counts.len() - 1).sum();
                s.insert(
                    size.to_string(),
                    Cell {
                        tpr: stats::rate_above(&sc.alt, tau),
                        auroc: stats::auroc(&sc.null, &sc.alt),
                        fpr_observed: (!sc.heldout.is_empty())
                            .then(|| stats::rate_above(&sc.heldout, tau)),
                        seconds_per_test: secs / n.max(1) as f64,
                        threshold: tau,
                        fpr_calibration: stats::rate_above(&sc.null, tau),
                        mean_members: members as f64 / (null.len() + alt.len()).max(1) as f64,
                    },
                );
            }
        }
    }
    out
}

/// Writes `shift.md` and `roc-n{size}.png`.
///
/// # Errors
/// [`MetaError::File`] or [`MetaError::Plot`] when a file cannot be written.
pub fn write(
    out: &Path,
    cfg: &ShiftConfig,
    results: &Results,
    chunks: &[ChunkRecord],
    info: &RunInfo,
) -> Result<(), MetaError> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Shift test: {} → {}\n\nBase classifier: held-out run {} of the zoo ({:.2} % on P's test split, {:.2} % on the shifted set; the zoo's first {} held-out runs: {:.2} % and {:.2} %). Threshold at the null's {:.0} % false-positive rate from {} null seeds; observed FPR on {} further null seeds; power from {} shifted seeds.\n",
        info.p,
        info.shift,
        info.base_run,
        100.0 * info.base_p_accuracy,
        100.0 * info.base_shift_accuracy,
        info.zoo_runs,
        100.0 * info.zoo_p_accuracy,
        100.0 * info.zoo_shift_accuracy,
        100.0 * cfg.alpha,
        cfg.seeds,
        cfg.heldout_seeds,
        cfg.seeds,
    );
    let _ = writeln!(
        md,
        "| method | statistic | \\|Q\\| | TPR at {:.0} % FPR | AUROC | observed FPR | s/test | members |\n|---|---|---|---|---|---|---|---|",
        100.0 * cfg.alpha
    );
    for (method, stats_) in results {
        for (statistic, sizes) in stats_ {
            for size in &cfg.sizes {
                if let Some(c) = sizes.get(&size.to_string()) {
                    let fpr = c
                        .fpr_observed
                        .map_or_else(|| "–".to_string(), |f| format!("{f:.2}"));
                    let _ = writeln!(
                        md,
                        "| {method} | {statistic} | {size} | {:.2} | {:.3} | {fpr} | {:.2} | {:.2} |",
                        c.tpr, c.auroc, c.seconds_per_test, c.mean_members
                    );
                }
            }
        }
    }
    let md_path = out.join("shift.md");
    write_atomic(&md_path, md.as_bytes()).map_err(|e| MetaError::file(&md_path, e))?;
    for &size in &cfg.sizes {
        let mut series = Vec::new();
        for &method in &cfg.methods {
            let null = tests(chunks, method, size, Hypothesis::Null);
            let alt = tests(chunks, method, size, Hypothesis::Alt);
            for statistic in STATISTICS {
                let sc = scores(cfg, &null, &alt, statistic);
                series.push(Series::line(
                    format!("{} {statistic}", method.name()),
                    stats::roc_curve(&sc.null, &sc.alt),
                ));
            }
        }
        series.push(Series::line("chance", vec![(0.0, 0.0), (1.0, 1.0)]));
        plot::line_chart(
            &out.join(format!("roc-n{size}.png")),
            &LineChart {
                title: format!("P = {}, shifted set {}, |Q| = {size}", info.p, info.shift),
                x_label: "false-positive rate".into(),
                y_label: "true-positive rate".into(),
                series,
                ..LineChart::default()
            },
        )?;
    }
    Ok(())
}
