//! `nmflow shift-calibrate`: a model file → the same file with a calibrated shift section.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use nmflow_format::{ModelFile, ShiftStatistic};
use nmflow_runtime::ModelView;
use serde::Serialize;

use crate::data::{self, Dataset, DatasetView};
use crate::edge::read_model;
use crate::error::{MetaError, UsageError};
use crate::shift::edge::{
    self, DetectorRun, EdgeShiftSettings, anchor_bytes, consecutive_windows, draft_section,
    finished_section, null_windows, run_config, summarize,
};

/// The statistic a device thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatisticArg {
    /// Window inputs the members removed (they disagreed with the base classifier).
    Disagreement,
    /// Mean predictive entropy of the ensemble over the window.
    Entropy,
}

/// Arguments of `nmflow shift-calibrate`.
#[derive(Debug, Args)]
pub struct ShiftCalibrateArgs {
    /// Model file (.nmf, from `nmflow export`); a shift section it already has is replaced.
    pub model: PathBuf,
    /// P, the view the classifiers were trained on: null windows come from its test split,
    /// anchors from its training split.
    #[arg(long)]
    pub dataset: String,
    /// Output model file (the input's bytes plus the section; format version 3).
    #[arg(long)]
    pub out: PathBuf,
    /// The statistic stored in the file (both are calibrated and reported).
    #[arg(long, value_enum, default_value_t = StatisticArg::Entropy)]
    pub statistic: StatisticArg,
    /// Inputs per window.
    #[arg(long, default_value_t = 20)]
    pub window: u16,
    /// Most ensemble members besides the base classifier.
    #[arg(long, default_value_t = 5)]
    pub members: u16,
    /// Stop after this many members in a row removed nothing.
    #[arg(long, default_value_t = 2)]
    pub patience: u16,
    /// Guidance strength γ towards disagreement on the window (0: the untilted ensemble only).
    /// The defaults (γ 20, λ 0.3, the entropy statistic) were chosen on mnist8 → optdigits with
    /// --seed 99 and measured with other seeds (BENCHMARKS.md).
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
    pub guidance_scale: f32,
    /// Weight λ of the disagreement term against the anchors' agreement term.
    #[arg(long, default_value_t = 0.3, allow_negative_numbers = true)]
    pub guidance_lambda: f32,
    /// Inputs of P's training split stored as anchors of the agreement term (0: none).
    #[arg(long, default_value_t = 32)]
    pub anchors: usize,
    /// Target false-alarm rate.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Null windows that set the threshold (at least (1 − α)/α).
    #[arg(long, default_value_t = 100)]
    pub calibration_windows: usize,
    /// Further null windows on which the false-alarm rate is observed.
    #[arg(long, default_value_t = 50)]
    pub heldout_windows: usize,
    /// The first inputs of P's test split are never in a null window: they are left for
    /// evaluation windows (a firmware's frames).
    #[arg(long, default_value_t = 1000)]
    pub reserve: usize,
    /// Views whose consecutive test windows (from the first input) measure the flag rate, e.g.
    /// `mnist8,digits`; P's own view here uses its reserved inputs.
    #[arg(long, value_delimiter = ',')]
    pub evaluate: Vec<String>,
    /// Windows per evaluated view.
    #[arg(long, default_value_t = 50)]
    pub eval_windows: usize,
    /// Seed of the anchors, the null windows, the base classifier and the members.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What `nmflow shift-calibrate` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ShiftCalibrateReport {
    /// The input model file.
    pub model: PathBuf,
    /// The written file.
    pub out: PathBuf,
    /// Its size.
    pub bytes: usize,
    /// P's view.
    pub dataset: String,
    /// The settings.
    pub settings: EdgeShiftSettings,
    /// The stored statistic's threshold.
    pub threshold: f32,
    /// Its rate on the calibration windows.
    pub fpr_calibration: f32,
    /// Its rate on the held-out null windows.
    pub fpr_heldout: f32,
    /// The stored configuration (guided, unless γ = 0).
    pub tilted: DetectorRun,
    /// The same decisions without guidance (absent when γ = 0).
    pub untilted: Option<DetectorRun>,
}

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

/// Checks the settings against the data before any work.
fn check(a: &ShiftCalibrateArgs, data: &Dataset, model: &ModelView<'_>) -> Result<()> {
    let w = usize::from(a.window);
    if a.window == 0 || a.members == 0 || a.patience == 0 {
        return Err(usage(
            "--window, --members and --patience must be at least 1".into(),
        ));
    }
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        return Err(usage(format!(
            "--alpha must be in (0, 1) (got {})",
            a.alpha
        )));
    }
    let needed = ((1.0 - a.alpha) / a.alpha - 1e-9).ceil() as usize;
    if a.calibration_windows < needed {
        return Err(usage(format!(
            "--calibration-windows {} cannot set a threshold at --alpha {}: at least {needed} are needed",
            a.calibration_windows, a.alpha
        )));
    }
    let finite = |v: f32| v.is_finite() && v >= 0.0;
    if !finite(a.guidance_scale) || !finite(a.guidance_lambda) {
        return Err(usage(
            "--guidance-scale and --guidance-lambda must be finite and ≥ 0".into(),
        ));
    }
    if data.test.dim != model.input_dim() {
        return Err(MetaError::file(
            &a.model,
            format!(
                "the classifier takes {} inputs but dataset {} has {}",
                model.input_dim(),
                data.view,
                data.test.dim
            ),
        )
        .into());
    }
    let pool = data.test.len().saturating_sub(a.reserve);
    if w > pool {
        return Err(usage(format!(
            "--window {w} is larger than the {pool} test inputs of {} after --reserve {}",
            data.view, a.reserve
        )));
    }
    if a.anchors > data.train.len() {
        return Err(usage(format!(
            "--anchors {} is more than the {} training inputs of {}",
            a.anchors,
            data.train.len(),
            data.view
        )));
    }
    Ok(())
}

/// Runs `nmflow shift-calibrate`.
///
/// # Errors
/// Bad settings (usage), an unreadable or invalid model file, a view of another input shape, a
/// failed write.
pub fn exec(a: &ShiftCalibrateArgs) -> Result<()> {
    super::refuse_existing(&a.out, a.force)?;
    let view: DatasetView = a.dataset.parse()?;
    let eval_views = a
        .evaluate
        .iter()
        .map(|v| v.parse::<DatasetView>())
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = read_model(&a.model)?;
    let model = ModelView::parse(&bytes).map_err(|e| MetaError::file(&a.model, e))?;
    if model.is_latent() {
        return Err(MetaError::file(
            &a.model,
            "is a latent model: the device's detector guides a field on the classifier's weights; export a weight-space model (trained without --latent)",
        )
        .into());
    }
    let dir = data::data_dir(a.data_dir.clone());
    let data = Dataset::load(view, &dir)?;
    check(a, &data, &model)?;
    let w = usize::from(a.window);
    let mut views = Vec::with_capacity(eval_views.len());
    for v in &eval_views {
        let d = if *v == view {
            data.clone()
        } else {
            Dataset::load(*v, &dir)?
        };
        if d.test.dim != model.input_dim() {
            return Err(usage(format!(
                "--evaluate {v}: its inputs have {} values, the classifier takes {}",
                d.test.dim,
                model.input_dim()
            )));
        }
        let limit = if *v == view { a.reserve } else { d.test.len() };
        if a.eval_windows * w > limit {
            return Err(usage(format!(
                "--evaluate {v}: {} windows of {w} need {} inputs, {limit} are available{}",
                a.eval_windows,
                a.eval_windows * w,
                if *v == view { " (--reserve)" } else { "" }
            )));
        }
        views.push((
            v.to_string(),
            consecutive_windows(&d.test, w, a.eval_windows),
        ));
    }
    let settings = EdgeShiftSettings {
        statistic: match a.statistic {
            StatisticArg::Disagreement => ShiftStatistic::Disagreement,
            StatisticArg::Entropy => ShiftStatistic::Entropy,
        },
        window: a.window,
        members: a.members,
        patience: a.patience,
        guidance_scale: a.guidance_scale,
        guidance_lambda: a.guidance_lambda,
        anchors: a.anchors,
        alpha: a.alpha,
        calibration_windows: a.calibration_windows,
        heldout_windows: a.heldout_windows,
        reserve: a.reserve,
        seed: a.seed,
    };
    let anchors = anchor_bytes(&data.train, a.anchors, a.seed);
    let cal = null_windows(&data.test, w, a.calibration_windows, a.reserve, a.seed);
    let held = null_windows(
        &data.test,
        w,
        a.heldout_windows,
        a.reserve,
        nmflow_runtime::rng::derive_seed(a.seed, 1),
    );
    let mut scales = vec![a.guidance_scale];
    if a.guidance_scale > 0.0 {
        scales.push(0.0);
    }
    let per_config = cal.len() + held.len() + views.iter().map(|(_, v)| v.len()).sum::<usize>();
    let bar = crate::progress::bar((per_config * scales.len()) as u64, "windows", a.quiet);
    let mut runs = Vec::with_capacity(scales.len());
    let mut stored = None;
    for &g in &scales {
        let draft = draft_section(&settings, g, &anchors);
        let d = run_config(&model, draft, &cal, &held, &views, &mut || bar.inc(1))
            .map_err(|e| MetaError::file(&a.model, e))?;
        let run = summarize(&d, g, a.alpha);
        if stored.is_none() {
            let c = match settings.statistic {
                ShiftStatistic::Disagreement => &run.disagreement,
                ShiftStatistic::Entropy => &run.entropy,
            };
            stored = Some(finished_section(draft, c, cal.len(), held.len()));
        }
        runs.push(run);
    }
    bar.finish_and_clear();
    let section = stored.ok_or_else(|| usage("nothing to calibrate".into()))?;
    let mut file: ModelFile<'_> = model.file.clone();
    file.shift = Some(section);
    let out_bytes = file.encode().map_err(|e| MetaError::file(&a.out, e))?;
    // The written file must give the device the decisions calibrated here.
    let check_model = ModelView::parse(&out_bytes).map_err(|e| MetaError::file(&a.out, e))?;
    let again = edge::decide_all(&check_model, section, &cal[..1.min(cal.len())], &mut || {})
        .map_err(|e| MetaError::file(&a.out, e))?;
    let first = edge::decide_all(&model, section, &cal[..1.min(cal.len())], &mut || {})
        .map_err(|e| MetaError::file(&a.model, e))?;
    if again != first {
        return Err(MetaError::file(&a.out, "the written section decides differently").into());
    }
    crate::io::write_atomic(&a.out, &out_bytes).map_err(|e| MetaError::file(&a.out, e))?;
    let mut runs = runs.into_iter();
    let tilted = runs
        .next()
        .ok_or_else(|| usage("nothing to calibrate".into()))?;
    let r = ShiftCalibrateReport {
        model: a.model.clone(),
        out: a.out.clone(),
        bytes: out_bytes.len(),
        dataset: view.to_string(),
        settings,
        threshold: section.threshold,
        fpr_calibration: section.fpr_calibration,
        fpr_heldout: section.fpr_heldout,
        tilted,
        untilted: runs.next(),
    };
    super::emit(a.json, &r, || summary(&r))
}

fn summary(r: &ShiftCalibrateReport) -> String {
    let stat = r.settings.statistic;
    let pick = |run: &DetectorRun| match stat {
        ShiftStatistic::Disagreement => run.disagreement.clone(),
        ShiftStatistic::Entropy => run.entropy.clone(),
    };
    let mut text = String::new();
    for (name, run) in [
        ("guided", Some(&r.tilted)),
        ("untilted", r.untilted.as_ref()),
    ] {
        let Some(run) = run else { continue };
        for (sname, c) in [
            ("disagreement", &run.disagreement),
            ("entropy", &run.entropy),
        ] {
            let views: Vec<String> = c
                .flagged
                .iter()
                .zip(&c.auroc)
                .map(|((v, f), (_, au))| format!("{v} flagged {:.0}% (AUROC {au:.3})", 100.0 * f))
                .collect();
            text.push_str(&format!(
                "{name:<9} γ={:<5} {sname:<12} threshold {:.4}  FPR calibration {:.3} held-out {:.3}  {}  ({:.1} members, {:.1} ms per decision)\n",
                run.guidance_scale,
                c.threshold,
                c.fpr_calibration,
                c.fpr_heldout,
                views.join(", "),
                run.mean_members,
                1e3 * run.seconds_per_decision
            ));
        }
    }
    let c = pick(&r.tilted);
    text.push_str(&format!(
        "shift-calibrate: {} windows of {} from {}, {} statistic, threshold {} (FPR {:.3} on {} calibration windows, {:.3} on {} held-out) → {} ({} bytes)",
        edge::statistic_str(stat),
        r.settings.window,
        r.dataset,
        edge::statistic_str(stat),
        r.threshold,
        c.fpr_calibration,
        r.settings.calibration_windows,
        c.fpr_heldout,
        r.settings.heldout_windows,
        r.out.display(),
        r.bytes
    ));
    text
}
