//! Shift detection on the device, prepared on the host (`nmflow shift-calibrate`): the runtime's
//! own [`ShiftDetector`] decides on null windows of P's test split, the threshold is the conformal
//! rank of those statistics, and the section goes into the model file; so the threshold belongs
//! to exactly the computation the device runs (the same Rust code, the same f32 operations).
//!
//! The same decisions with guidance switched off (γ = 0, the untilted ensemble) are calibrated on
//! the same windows, so the two can be compared at the same false-alarm rate; evaluation windows
//! of other views (consecutive inputs from the start of their test split, as a firmware reads
//! them from flash) measure the detection rate.

use std::time::Instant;

use nmflow_format::{ShiftSection, ShiftStatistic};
use nmflow_runtime::ModelView;
use nmflow_runtime::rng::derive_seed;
use nmflow_runtime::shift::{Decision, ShiftDetector};
use serde::Serialize;

use super::stats;
use crate::data::Split;
use nmflow_runtime::Rng;

/// PRNG stream of the anchor draw.
const STREAM_ANCHORS: u64 = 61;
/// PRNG stream of the null windows.
const STREAM_WINDOWS: u64 = 62;

/// What to calibrate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EdgeShiftSettings {
    /// The statistic stored in the file.
    #[serde(serialize_with = "statistic_name")]
    pub statistic: ShiftStatistic,
    /// Inputs per window.
    pub window: u16,
    /// Most members.
    pub members: u16,
    /// Patience of the rejection rule.
    pub patience: u16,
    /// Guidance γ (0: untilted only).
    pub guidance_scale: f32,
    /// Guidance λ.
    pub guidance_lambda: f32,
    /// Anchor inputs drawn from P's training split.
    pub anchors: usize,
    /// Target false-alarm rate.
    pub alpha: f64,
    /// Null windows for the threshold.
    pub calibration_windows: usize,
    /// Further null windows for the observed rate.
    pub heldout_windows: usize,
    /// The first test inputs never used for null windows (left for evaluation windows).
    pub reserve: usize,
    /// Seed of the anchors, the windows, the base classifier and the members.
    pub seed: u64,
}

fn statistic_name<S: serde::Serializer>(s: &ShiftStatistic, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(statistic_str(*s))
}

/// `disagreement` or `entropy`.
pub fn statistic_str(s: ShiftStatistic) -> &'static str {
    match s {
        ShiftStatistic::Disagreement => "disagreement",
        ShiftStatistic::Entropy => "entropy",
    }
}

/// The statistic of a decision.
pub fn statistic_of(d: &Decision, s: ShiftStatistic) -> f64 {
    match s {
        ShiftStatistic::Disagreement => f64::from(d.disagreement),
        ShiftStatistic::Entropy => f64::from(d.entropy),
    }
}

/// `k` anchor inputs drawn without replacement from `train`, as f32 LE bytes.
pub fn anchor_bytes(train: &Split, k: usize, seed: u64) -> Vec<u8> {
    let picks = distinct(&mut Rng::new(seed, STREAM_ANCHORS), 0, train.len(), k);
    picks
        .iter()
        .flat_map(|&i| train.x[i * train.dim..(i + 1) * train.dim].iter())
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// `k` distinct indices of `from..to` (`k ≤ to − from`), in draw order.
fn distinct(rng: &mut Rng, from: usize, to: usize, k: usize) -> Vec<usize> {
    let span = u32::try_from(to - from).unwrap_or(u32::MAX);
    let mut out: Vec<usize> = Vec::with_capacity(k);
    while out.len() < k {
        let i = from + rng.below(span) as usize;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// `count` null windows of `window` distinct inputs each from `test[reserve..]`, one seeded stream
/// (flattened `window · dim` values each).
pub fn null_windows(
    test: &Split,
    window: usize,
    count: usize,
    reserve: usize,
    seed: u64,
) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed, STREAM_WINDOWS);
    (0..count)
        .map(|_| gather(test, &distinct(&mut rng, reserve, test.len(), window)))
        .collect()
}

/// `count` consecutive windows from the start of `test` (what a firmware reads in order).
pub fn consecutive_windows(test: &Split, window: usize, count: usize) -> Vec<Vec<f32>> {
    (0..count)
        .map(|j| gather(test, &(j * window..(j + 1) * window).collect::<Vec<_>>()))
        .collect()
}

fn gather(split: &Split, idx: &[usize]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| split.x[i * split.dim..(i + 1) * split.dim].iter().copied())
        .collect()
}

/// The section of `settings` with γ replaced and a placeholder calibration (the threshold is set
/// once the null statistics are known).
pub fn draft_section<'a>(
    s: &EdgeShiftSettings,
    guidance_scale: f32,
    anchors: &'a [u8],
) -> ShiftSection<'a> {
    ShiftSection {
        statistic: s.statistic,
        window: s.window,
        members: s.members,
        patience: s.patience,
        base_seed: derive_seed(s.seed, 0),
        member_seed: derive_seed(s.seed, 1),
        guidance_scale,
        guidance_lambda: s.guidance_lambda,
        anchors,
        threshold: 0.0,
        alpha: s.alpha as f32,
        calibration_windows: 0,
        fpr_calibration: 0.0,
        heldout_windows: 0,
        fpr_heldout: 0.0,
    }
}

/// Decides on every window with the runtime's detector; `tick()` follows each decision.
///
/// # Errors
/// The runtime's error (a section the model cannot use, a blown-up integration).
pub fn decide_all(
    model: &ModelView<'_>,
    section: ShiftSection<'_>,
    windows: &[Vec<f32>],
    tick: &mut dyn FnMut(),
) -> Result<Vec<Decision>, nmflow_runtime::Error> {
    let mut buf = vec![0.0f32; ShiftDetector::workspace_floats(model, &section)];
    let mut det = ShiftDetector::with_section(model, section, &mut buf)?;
    windows
        .iter()
        .map(|w| {
            let d = det.decide(w, &mut |_| {});
            tick();
            d
        })
        .collect()
}

/// One statistic's calibration and detection rates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibrated {
    /// Flag when the statistic is above this.
    pub threshold: f64,
    /// Fraction of the calibration windows above it.
    pub fpr_calibration: f64,
    /// Fraction of the held-out null windows above it.
    pub fpr_heldout: f64,
    /// Per evaluated view: the fraction of its windows flagged.
    pub flagged: Vec<(String, f64)>,
    /// Per evaluated view: AUROC of its statistics against the calibration windows'.
    pub auroc: Vec<(String, f64)>,
}

/// One detector configuration (tilted or untilted) on every window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetectorRun {
    /// Guidance γ.
    pub guidance_scale: f32,
    /// Both statistics, calibrated on the same decisions.
    pub disagreement: Calibrated,
    /// The entropy statistic.
    pub entropy: Calibrated,
    /// Mean members per decision (null calibration windows).
    pub mean_members: f64,
    /// Host seconds per decision.
    pub seconds_per_decision: f64,
}

/// The decisions of one configuration: calibration, held-out, then each evaluated view's.
pub struct Decisions {
    /// Calibration windows.
    pub calibration: Vec<Decision>,
    /// Held-out null windows.
    pub heldout: Vec<Decision>,
    /// Per evaluated view.
    pub views: Vec<(String, Vec<Decision>)>,
    /// Host seconds per decision.
    pub seconds_per_decision: f64,
}

/// Calibrates a statistic on `d`.
pub fn calibrate(d: &Decisions, statistic: ShiftStatistic, alpha: f64) -> Calibrated {
    let score =
        |v: &[Decision]| -> Vec<f64> { v.iter().map(|x| statistic_of(x, statistic)).collect() };
    let null = score(&d.calibration);
    let tau = stats::threshold(&null, alpha);
    Calibrated {
        threshold: tau,
        fpr_calibration: stats::rate_above(&null, tau),
        fpr_heldout: stats::rate_above(&score(&d.heldout), tau),
        flagged: d
            .views
            .iter()
            .map(|(v, x)| (v.clone(), stats::rate_above(&score(x), tau)))
            .collect(),
        auroc: d
            .views
            .iter()
            .map(|(v, x)| (v.clone(), stats::auroc(&null, &score(x))))
            .collect(),
    }
}

/// Runs one configuration on every window set.
///
/// # Errors
/// As [`decide_all`].
pub fn run_config(
    model: &ModelView<'_>,
    section: ShiftSection<'_>,
    calibration: &[Vec<f32>],
    heldout: &[Vec<f32>],
    views: &[(String, Vec<Vec<f32>>)],
    tick: &mut dyn FnMut(),
) -> Result<Decisions, nmflow_runtime::Error> {
    let t0 = Instant::now();
    let calibration = decide_all(model, section, calibration, tick)?;
    let heldout = decide_all(model, section, heldout, tick)?;
    let mut out = Vec::with_capacity(views.len());
    for (name, windows) in views {
        out.push((name.clone(), decide_all(model, section, windows, tick)?));
    }
    let n = calibration.len() + heldout.len() + out.iter().map(|(_, v)| v.len()).sum::<usize>();
    Ok(Decisions {
        calibration,
        heldout,
        views: out,
        seconds_per_decision: t0.elapsed().as_secs_f64() / n.max(1) as f64,
    })
}

/// The summary of one configuration's decisions.
pub fn summarize(d: &Decisions, guidance_scale: f32, alpha: f64) -> DetectorRun {
    let members: f64 = d.calibration.iter().map(|x| f64::from(x.members)).sum();
    DetectorRun {
        guidance_scale,
        disagreement: calibrate(d, ShiftStatistic::Disagreement, alpha),
        entropy: calibrate(d, ShiftStatistic::Entropy, alpha),
        mean_members: members / d.calibration.len().max(1) as f64,
        seconds_per_decision: d.seconds_per_decision,
    }
}

/// The calibrated section: `draft` with the threshold and record of `c`.
pub fn finished_section<'a>(
    draft: ShiftSection<'a>,
    c: &Calibrated,
    calibration_windows: usize,
    heldout_windows: usize,
) -> ShiftSection<'a> {
    ShiftSection {
        // An infinite threshold (too few windows for α) never flags; the format wants it finite.
        threshold: if c.threshold.is_finite() {
            c.threshold as f32
        } else {
            f32::MAX
        },
        calibration_windows: u32::try_from(calibration_windows).unwrap_or(u32::MAX),
        fpr_calibration: c.fpr_calibration as f32,
        heldout_windows: u32::try_from(heldout_windows).unwrap_or(u32::MAX),
        fpr_heldout: c.fpr_heldout as f32,
        ..draft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(n: usize, dim: usize) -> Split {
        Split {
            x: (0..n * dim).map(|i| i as f32).collect(),
            y: vec![0; n],
            dim,
        }
    }

    #[test]
    fn null_windows_avoid_the_reserved_inputs_and_repeat_none() {
        let s = split(50, 2);
        let w = null_windows(&s, 5, 30, 20, 7);
        assert_eq!(w.len(), 30);
        for win in &w {
            let idx: Vec<usize> = win.chunks(2).map(|c| c[0] as usize / 2).collect();
            assert!(idx.iter().all(|&i| (20..50).contains(&i)), "{idx:?}");
            let mut u = idx.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), 5);
        }
        assert_eq!(w, null_windows(&s, 5, 30, 20, 7), "seeded");
        assert_ne!(w, null_windows(&s, 5, 30, 20, 8));
        let c = consecutive_windows(&s, 5, 2);
        assert_eq!(c[1][0], 10.0);
        assert_eq!(c[1].len(), 10);
    }

    #[test]
    fn anchors_are_whole_training_inputs() {
        let s = split(10, 3);
        let b = anchor_bytes(&s, 4, 1);
        assert_eq!(b.len(), 4 * 3 * 4);
        let first = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!(first % 3.0, 0.0);
    }
}
