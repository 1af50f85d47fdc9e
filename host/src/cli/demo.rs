//! `nmflow demo`: the whole product on local files, through the library's own functions:
//! data → zoo → train → sample → eval → device (export int8, run with the device runtime) →
//! report, ending with a short table of what it measured.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::arch::Arch;
use crate::backend::{Cpu, CpuAutodiff};
use crate::data::{self, DatasetView};
use crate::edge::{EdgeReport, edge_eval};
use crate::export::{Quant, export};
use crate::flow::solver::Solver;
use crate::meta::config::{LrSchedule, Method, TrainRequest};
use crate::meta::eval::{EvalOptions, EvalReport, evaluate};
use crate::meta::field::FieldKind;
use crate::meta::files::{self, write_json};
use crate::meta::sample::{MetaModel, write_classifiers};
use crate::meta::train::{Engine, TrainEnv, TrainSummary, train_meta};
use crate::report::write_report;
use crate::zoo::config::DEFAULT_CHECKPOINTS;
use crate::zoo::run::RunOptions;
use crate::zoo::{Optimizer, ZooConfig, ZooSummary, run_zoo};

/// Arguments of `nmflow demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output directory (resumed if interrupted: finished stages are not redone).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object (every stage's report) instead of the closing table.
    #[arg(long)]
    pub json: bool,
}

/// What `nmflow demo --json` prints: every stage's report.
#[derive(Debug, Serialize)]
pub struct DemoReport<'a> {
    /// The zoo job.
    pub zoo: &'a ZooSummary,
    /// The meta-model's training.
    pub train: &'a TrainSummary,
    /// The evaluation of its classifiers.
    pub eval: &'a EvalReport,
    /// The device runtime on the exported MLP field.
    pub edge: &'a EdgeReport,
    /// The page with everything.
    pub report: PathBuf,
}

/// The demo's zoo: 256 runs of mlp:64-16-10 on mnist8 for 3 epochs.
pub fn demo_zoo_config() -> ZooConfig {
    ZooConfig {
        dataset: DatasetView::Mnist8,
        arch: Arch::Mlp {
            widths: vec![64, 16, 10],
        },
        runs: 256,
        epochs: 3,
        batch_size: 64,
        optimizer: Optimizer::Adam,
        lr: 1e-3,
        momentum: 0.0,
        checkpoints: DEFAULT_CHECKPOINTS.into(),
        seed: 0,
        shard_runs: 16,
        heldout_fraction: 0.2,
        tasks: None,
        engine: crate::zoo::ZooEngine::Fused,
    }
}

/// The demo's meta-model: NM-CFM with the set field and the functional term on the 4-step Euler
/// sampler, short enough for a demo (1,000 steps, λ = 1, constant rate).
pub fn demo_train_request() -> TrainRequest {
    TrainRequest {
        method: Method::Cfm,
        field: Some(FieldKind::Set),
        hidden: Some(128),
        steps: Some(1000),
        eval_every: Some(100),
        lr_schedule: Some(LrSchedule::Constant),
        functional_weight: Some(1.0),
        functional_rollout: Some(4),
        solver: Some(Solver::Euler),
        solver_steps: Some(4),
        ..TrainRequest::default()
    }
}

/// Runs `nmflow demo`.
///
/// # Errors
/// Whatever a stage fails with (missing tools to fetch the data, I/O).
pub fn exec(a: &DemoArgs) -> Result<()> {
    let dir = data::data_dir(a.data_dir.clone());
    let out = &a.out;
    eprintln!("[1/7] data: MNIST into {}", dir.display());
    data::fetch(&dir, &["mnist"], &mut |l| eprintln!("  {l}"))?;

    let zoo_cfg = demo_zoo_config();
    let zoo_dir = out.join("zoo");
    eprintln!(
        "[2/7] zoo: {} runs of {} on {} for {} epochs → {}",
        zoo_cfg.runs,
        zoo_cfg.arch,
        zoo_cfg.dataset,
        zoo_cfg.epochs,
        zoo_dir.display()
    );
    let quiet = a.quiet || a.json;
    let opts = RunOptions {
        force: false,
        quiet,
        max_new_shards: None,
        shard: None,
        jobs: super::zoo::default_jobs(crate::backend::DeviceKind::Cpu),
    };
    let zoo = run_zoo::<CpuAutodiff>(&zoo_cfg, &zoo_dir, &dir, &opts, &Default::default())?;

    let model = out.join("cfm");
    eprintln!(
        "[3/7] train: NM-CFM (set field, functional term on the 4-step Euler sampler) → {}",
        model.display()
    );
    let train = train_stage(&demo_train_request(), &zoo_dir, &model, &dir, quiet)?;

    let generated = out.join("generated.safetensors");
    eprintln!("[4/7] sample: 100 classifiers → {}", generated.display());
    let m = MetaModel::<Cpu>::load(&model, &Default::default())?;
    let (w, _) = m.sample(
        100,
        m.config.solver,
        m.config.solver_steps,
        1,
        &Default::default(),
    )?;
    write_classifiers(&generated, &w, 100, m.layout.num_params())?;

    eprintln!("[5/7] eval: generated vs trained classifiers on the test set");
    let opts = EvalOptions {
        n: 100,
        solver: m.config.solver,
        steps: vec![1, 2, 4, 8],
        seed: 1,
        agreement_samples: 2000,
        w1_directions: 64,
        downstream_n: 32,
        downstream_epochs: None,
        quiet,
        dataset: None,
    };
    let eval = evaluate::<CpuAutodiff>(&model, &zoo_dir, &dir, &opts, &Default::default())?;
    write_json(&model.join(files::EVAL), &eval)?;

    let file = model.join("model-int8.nmf");
    eprintln!(
        "[6/7] device: the meta-model → int8 {} → the no_std runtime",
        file.display()
    );
    export(&model, Quant::Int8, None, None, &file)?;
    let edge = edge_eval(&file, 100, 1, DatasetView::Mnist8, &dir)?;
    write_json(&model.join("edge.json"), &edge)?;

    eprintln!("[7/7] report: {}", out.join("report.html").display());
    let page = write_report(out)?;
    let report = DemoReport {
        zoo: &zoo,
        train: &train,
        eval: &eval,
        edge: &edge,
        report: page.html,
    };
    super::emit(a.json, &report, || table(out, &zoo, &train, &eval, &edge))
}

/// Trains (or finds finished) the model `request` asks for.
fn train_stage(
    request: &TrainRequest,
    zoo: &Path,
    out: &Path,
    data_dir: &Path,
    quiet: bool,
) -> Result<TrainSummary> {
    let cfg = request.resolve(zoo)?;
    // burn's engine for both models, so that reruns (and the firmware's assets) keep their bytes.
    let env = TrainEnv {
        data_dir: data_dir.to_path_buf(),
        quiet,
        engine: Engine::Burn,
        force: false,
    };
    Ok(train_meta::<CpuAutodiff>(
        &cfg,
        zoo,
        out,
        &env,
        &Default::default(),
    )?)
}

/// The closing table: one row per stage with what it measured.
fn table(
    out: &Path,
    zoo: &ZooSummary,
    train: &TrainSummary,
    eval: &EvalReport,
    edge: &EdgeReport,
) -> String {
    let own = eval
        .generated
        .iter()
        .find(|g| g.steps == eval.novelty.steps)
        .or(eval.generated.last());
    let generated = own.map_or_else(
        || "–".into(),
        |g| {
            format!(
                "{:?} × {} steps: test acc mean {:.2} %, min {:.2} %",
                g.solver,
                g.steps,
                100.0 * g.acc_mean,
                100.0 * g.acc_min
            )
        },
    );
    let down = eval.downstream.as_ref().map_or_else(
        || "skipped".into(),
        |d| {
            let s = |v: Option<usize>| v.map_or(format!("> {}", d.budget_steps), |v| v.to_string());
            format!(
                "steps to {:.2} %: generated inits {}, Kaiming inits {}",
                100.0 * d.target_acc,
                s(d.steps_generated),
                s(d.steps_kaiming)
            )
        },
    );
    let rows = [
        (
            "zoo".to_string(),
            format!(
                "{} runs × {} checkpoints; trained test acc mean {:.2} % (min {:.2} %)",
                zoo.runs,
                zoo.checkpoints_per_run,
                100.0 * zoo.test_acc_mean,
                100.0 * zoo.test_acc_min
            ),
        ),
        (
            "meta-model".into(),
            format!(
                "{} steps, kept step {}, {} field parameters",
                train.steps, train.best_step, train.field_params
            ),
        ),
        (
            "trained held-out runs".into(),
            format!(
                "test acc mean {:.2} %, min {:.2} %",
                100.0 * eval.trained_heldout.acc_mean,
                100.0 * eval.trained_heldout.acc_min
            ),
        ),
        ("generated (100)".into(), generated),
        (
            "novelty".into(),
            format!(
                "nearest training run at {:.2} (held-out runs: {:.2})",
                eval.novelty.nn_dist_median_generated, eval.novelty.nn_dist_median_heldout
            ),
        ),
        ("downstream".into(), down),
        (
            format!("device (int8 {} field)", edge.field_kind),
            format!(
                "{} bytes, {} MACs per synthesis: test acc mean {:.2} %",
                edge.bytes,
                edge.macs_per_synthesis,
                100.0 * edge.acc_mean
            ),
        ),
    ];
    let mut t = String::from("| stage | result |\n|---|---|\n");
    for (k, v) in rows {
        t += &format!("| {k} | {v} |\n");
    }
    t += &format!(
        "charts: {}/cfm/*.png; everything on one page: {}",
        out.display(),
        out.join("report.html").display()
    );
    t
}
