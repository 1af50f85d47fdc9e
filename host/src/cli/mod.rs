//! The `nmflow` command line: one module per command, each with its clap arguments and an
//! `exec` that turns them into library calls and prints the result.
//!
//! The CLI depends on the library and never the reverse: every check a library caller also needs
//! (settings in range, compatible inputs) lives in the library's typed configs, and the modules
//! here only parse flags, call the library and print.
//!
//! | module | command |
//! |---|---|
//! | [`data`] | `nmflow data fetch` |
//! | [`zoo`] | `nmflow zoo` (flags, `--config` TOML) |
//! | [`vae`] | `nmflow vae` |
//! | [`train`] | `nmflow train` |
//! | [`sample`] | `nmflow sample` |
//! | [`eval`] | `nmflow eval` |
//! | [`finetune`] | `nmflow finetune` |
//! | [`shift_calibrate`] | `nmflow shift-calibrate` |
//! | [`shift_test`] | `nmflow shift-test` |
//! | [`export`] | `nmflow export` |
//! | [`edge_eval`] | `nmflow edge-eval` |
//! | [`inspect`] | `nmflow inspect` |
//! | [`dump_inputs`] | `nmflow dump-inputs` |
//! | [`report`] | `nmflow report` |
//! | [`demo`] | `nmflow demo` |
//!
//! Exit codes: 0 success, 1 failure (missing data, corrupt files, conflicting output), 2 usage
//! (bad flags or settings).

pub mod data;
pub mod demo;
pub mod dump_inputs;
pub mod edge_eval;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod inspect;
pub mod report;
pub mod sample;
pub mod shift_calibrate;
pub mod shift_test;
pub mod train;
pub mod vae;
pub mod zoo;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;

/// nmflow: learn the flow that training induces on weight space, and replay it without training.
///
/// Exit codes: 0 success, 1 failure, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "nmflow", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch and verify datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train many classifiers together and record their checkpoint trajectories.
    Zoo(Box<zoo::ZooArgs>),
    /// Summarize a zoo directory (verifying its shards) or a model file.
    Inspect(inspect::InspectArgs),
    /// Train a VAE over a zoo's checkpoints (reconstruction + β·KL + the decoded classifiers'
    /// cross-entropy), for latent meta-models (`train --latent`).
    ///
    /// A finished VAE with the same settings is not trained again; an interrupted one resumes
    /// from its last checkpoint to the same bytes.
    Vae(Box<vae::VaeArgs>),
    /// Train a meta-model (NM-CFM, NM-MMFM or NM-JKO) on a zoo's trajectories.
    ///
    /// With only --zoo and --out, the reward recipe BENCHMARKS.md measures above the zoo's
    /// trained held-out mean on MNIST and mnist8 over three seeds, at 8 NFE and at 4× that:
    /// (1) the MLP field by flow matching alone from N(0, 0.1²) with independent coupling (width
    /// 256, depth 2, 3,000 steps, cosine schedule, Euler × 8) into OUT/base, then (2) the zoo's
    /// training loss as a reward backpropagated through the field's sampler (`finetune --method
    /// direct --diagonal --lambda 1 --lr-schedule cosine`, 5,000 iterations, each rolled out at a
    /// step count drawn from 8 to 48) into OUT. `--recipe functional` trains the set field with
    /// the functional term on the 4-step Euler sampler (the default before); `--recipe plain`
    /// keeps width 512, 2,000 steps, every 100, a constant rate, no functional term and RK4 × 2.
    /// Every flag below overrides its recipe's default.
    ///
    /// A finished model with the same settings is not trained again; an interrupted one resumes
    /// from its last checkpoint (either stage); a model with other settings in --out is refused
    /// unless --force.
    Train(Box<train::TrainArgs>),
    /// Synthesize classifiers by integrating a meta-model's field.
    Sample(sample::SampleArgs),
    /// Evaluate a meta-model against its zoo: accuracy, novelty, trajectory fidelity, downstream.
    Eval(eval::EvalArgs),
    /// Fine-tune a meta-model towards a reward on its classifiers (adjoint matching, METHOD.md
    /// §5; or the direct baseline), e.g. an MNIST meta-model towards Fashion-MNIST classifiers.
    ///
    /// The output is a model directory that `sample`, `eval`, `export` and `edge-eval` take. A
    /// finished run with the same settings is not redone; an interrupted one resumes from its last
    /// checkpoint to the same bytes.
    Finetune(Box<finetune::FinetuneArgs>),
    /// Test whether unlabeled samples are a shift that harms a classifier: Detectron against
    /// meta-detectron, calibrated on null samples from P's test split (METHOD.md §6).
    ///
    /// Writes shift.json (`j[method][statistic][size]`), a Markdown table and ROC curves. Finished
    /// chunks of tests are not redone when the same command runs again.
    ShiftTest(Box<shift_test::ShiftTestArgs>),
    /// Export a meta-model as a quantized model file for the device runtime.
    Export(export::ExportArgs),
    /// Add a calibrated shift section to a model file: the device's own detector (meta-detectron
    /// by reward guidance, `nmflow_runtime::shift::ShiftDetector`) runs on null windows of P's test
    /// split here, on the host, and the threshold is the conformal rank of its statistics.
    ///
    /// The same decisions without guidance are calibrated on the same windows, and `--evaluate`
    /// views measure both detectors' flag rates at the same false-alarm rate.
    ShiftCalibrate(Box<shift_calibrate::ShiftCalibrateArgs>),
    /// Synthesize and evaluate classifiers from a model file with the device runtime itself.
    EdgeEval(edge_eval::EdgeEvalArgs),
    /// Write test inputs as raw bytes for firmware (`N×D` pixel values in `OUT.images`: 0..=16
    /// for 8×8 views, 0..=255 for 28×28 ones; `N` labels in `OUT.labels`).
    DumpInputs(dump_inputs::DumpInputsArgs),
    /// Gather the JSON results and PNG charts of a run folder into one Markdown and HTML page.
    Report(report::ReportArgs),
    /// The main job end to end on local files: fetch MNIST, build a zoo of 256 mnist8 classifiers,
    /// train a meta-model on it, sample 100 classifiers, evaluate them, export the field and run it
    /// with the device runtime.
    Demo(demo::DemoArgs),
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with; [`crate::error::UsageError`]s map to exit code 2 in `main`.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(data::DataCommand::Fetch(a)) => data::exec(a),
        Command::Zoo(a) => zoo::exec(&a),
        Command::Inspect(a) => inspect::exec(&a),
        Command::Vae(a) => vae::exec(&a),
        Command::Train(a) => train::exec(&a),
        Command::Sample(a) => sample::exec(&a),
        Command::Eval(a) => eval::exec(&a),
        Command::Finetune(a) => finetune::exec(&a),
        Command::ShiftTest(a) => shift_test::exec(&a),
        Command::Export(a) => export::exec(&a),
        Command::ShiftCalibrate(a) => shift_calibrate::exec(&a),
        Command::EdgeEval(a) => edge_eval::exec(&a),
        Command::DumpInputs(a) => dump_inputs::exec(&a),
        Command::Report(a) => report::exec(&a),
        Command::Demo(a) => demo::exec(&a),
    }
}

/// Refuses to replace an existing output file unless `--force` was given.
///
/// # Errors
/// A [`crate::error::UsageError`]-free failure (exit code 1) naming the file.
pub fn refuse_existing(path: &std::path::Path, force: bool) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "{}: is a directory; --out takes a file name",
            path.display()
        );
    }
    if path.exists() && !force {
        anyhow::bail!(
            "{} already exists; choose another --out, or --force to replace it",
            path.display()
        );
    }
    Ok(())
}

/// Prints a command's result: one JSON object with `--json`, else the one-line summary.
///
/// # Errors
/// When the report cannot be serialized.
pub fn emit<T: Serialize>(json: bool, report: &T, line: impl FnOnce() -> String) -> Result<()> {
    if json {
        say(&serde_json::to_string(report)?)
    } else {
        say(&line())
    }
}

/// Writes `text` and a newline to standard output. A reader that has gone away (`nmflow inspect F
/// | head -3`) ends the output quietly instead of panicking as `println!` does.
///
/// # Errors
/// Any other write error.
pub fn say(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
