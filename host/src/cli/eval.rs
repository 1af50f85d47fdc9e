//! `nmflow eval`: generated classifiers against the zoo's trained ones.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendJob, dispatch};
use crate::data;
use crate::flow::solver::Solver;
use crate::meta::eval::{EvalOptions, EvalReport, evaluate};
use crate::meta::files;
use crate::meta::sample::MetaModel;

/// Arguments of `nmflow eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The zoo [default: the one recorded in the model].
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// Classifiers generated per step count.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Solver [default: the model's, the one it was trained for].
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Step counts to sweep (comma-separated; with the sde solver, counts below 2 are skipped:
    /// it spends one step reaching t0).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    pub steps: Vec<usize>,
    /// Seed of the source samples (and of the downstream comparison's inits and data orders).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Downstream comparison: generated classifiers (model's default solver steps) and as many
    /// Kaiming-uniform inits are fine-tuned with the zoo's optimizer; 0 skips it.
    #[arg(long, default_value_t = 32)]
    pub downstream: usize,
    /// Fine-tuning epochs of the downstream comparison [default: twice the zoo's epochs].
    #[arg(long)]
    pub downstream_epochs: Option<usize>,
    /// Evaluate on another dataset view of the same input shape, against a reference zoo trained
    /// on it (`--zoo`, required then): e.g. a model fine-tuned from MNIST towards Fashion-MNIST
    /// with `--dataset fashion --zoo FASHION_ZOO`, whose runs give the trained accuracies, the
    /// novelty distances and the downstream comparison.
    #[arg(long, requires = "zoo")]
    pub dataset: Option<crate::data::DatasetView>,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A conditioned model (`train --condition`) is measured on tasks of its multi-task zoo:
    /// `unseen` (never used in training), `seen`, or `fresh` (more unseen tasks of the zoo's
    /// family than it holds, from its task generator), at its own sampler; the report (eval.json)
    /// gives, per shot count and guidance weight, the accuracy of --per-task classifiers per task
    /// against the task's labels, beside the zoo's runs of those tasks (the ceiling).
    #[arg(long, value_enum, default_value_t = crate::meta::condition::sample::TaskSplit::Unseen)]
    pub tasks: crate::meta::condition::sample::TaskSplit,
    /// Labeled examples per class in the support set (conditioned models; comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    pub shots: Vec<usize>,
    /// Guidance weights w of `v(∅) + w·(v(task) − v(∅))` (conditioned models; 0 is the
    /// unconditional field, 1 the conditional one; other weights cost two field evaluations a
    /// step).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub guidance: Vec<f32>,
    /// At most this many tasks (conditioned models).
    #[arg(long, default_value_t = 100)]
    pub max_tasks: usize,
    /// Classifiers per task (conditioned models).
    #[arg(long, default_value_t = 10)]
    pub per_task: usize,
    /// The few-shot baseline of a conditioned model: as many Kaiming-uniform inits per task
    /// trained on the same support set alone with the zoo's optimizer, for at most this many
    /// steps, reported where their accuracy on the support set stopped improving (0: skip).
    #[arg(long, default_value_t = 500)]
    pub few_shot_steps: usize,
    /// Fine-tune a conditioned model's w = 1 samples on their support set with the zoo's
    /// optimizer for this many steps (a multiple of 25; 0: skip) and report them beside.
    #[arg(long, default_value_t = 100)]
    pub fine_tune_steps: usize,
    /// Compute device: `cpu`, or `cuda` (the first NVIDIA GPU; needs a build with
    /// `--features cuda` and a CUDA driver). The same code runs on both.
    #[arg(long, value_enum, default_value_t = crate::backend::DeviceKind::Cpu)]
    pub device: crate::backend::DeviceKind,
    /// Print the JSON report (also written to MODEL/eval.json).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl EvalArgs {
    /// The library's options for these flags; `model_solver` stands in for an absent --solver.
    pub fn to_options(&self, model_solver: Solver) -> EvalOptions {
        let solver = self.solver.unwrap_or(model_solver);
        // The memoryless SDE spends its first step reaching t0: it has no 1-step sampler.
        let steps = self
            .steps
            .iter()
            .copied()
            .filter(|&k| solver != Solver::Sde || k >= 2)
            .collect();
        EvalOptions {
            n: self.n,
            solver,
            steps,
            seed: self.seed,
            agreement_samples: 2000,
            w1_directions: 64,
            downstream_n: self.downstream,
            downstream_epochs: self.downstream_epochs,
            quiet: self.quiet || self.json,
            dataset: self.dataset,
        }
    }
}

/// Runs `nmflow eval`: writes `eval.json` and the charts into the model directory.
///
/// # Errors
/// Invalid options (usage), an unreadable model, zoo or dataset, a zoo other than the model's.
pub fn exec(a: &EvalArgs) -> Result<()> {
    let config = MetaModel::<crate::backend::Cpu>::read_config(&a.model)?;
    let zoo = a.zoo.clone().unwrap_or_else(|| PathBuf::from(&config.zoo));
    if config.condition.is_some() {
        return exec_tasks(a, &zoo, &config);
    }
    let opts = a.to_options(config.solver);
    struct Job<'a>(&'a EvalArgs, &'a PathBuf, &'a EvalOptions);
    impl BackendJob for Job<'_> {
        type Output = EvalReport;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<EvalReport> {
            let data_dir = data::data_dir(self.0.data_dir.clone());
            Ok(evaluate::<B>(
                &self.0.model,
                self.1,
                &data_dir,
                self.2,
                device,
            )?)
        }
    }
    let r = dispatch(a.device, Job(a, &zoo, &opts))?;
    let text = serde_json::to_string_pretty(&r)?;
    crate::io::write_atomic(&a.model.join(files::EVAL), text.as_bytes())?;
    if a.json {
        super::say(&text)
    } else {
        super::say(&summary_line(&r, &a.model))
    }
}

/// `nmflow eval` of a conditioned model: the tasks of its zoo.
fn exec_tasks(
    a: &EvalArgs,
    zoo: &std::path::Path,
    config: &crate::meta::config::MetaConfig,
) -> Result<()> {
    use crate::meta::condition::sample::{TaskEvalOptions, TaskEvalReport, evaluate_tasks};
    let manifest = crate::zoo::Manifest::read(zoo)?;
    if crate::meta::config::manifest_hash(zoo)? != config.zoo_manifest_sha256 {
        anyhow::bail!(
            "{}: the model was trained on another zoo ({})",
            zoo.display(),
            config.zoo
        );
    }
    let opts = TaskEvalOptions {
        tasks: a.tasks,
        max_tasks: a.max_tasks,
        shots: a.shots.clone(),
        guidance: a.guidance.clone(),
        samples: a.per_task,
        solver: a.solver.unwrap_or(config.solver),
        steps: config.solver_steps,
        seed: a.seed,
        few_shot_steps: a.few_shot_steps,
        fine_tune_steps: a.fine_tune_steps,
        novelty_zoo: Some(zoo.to_path_buf()),
    };
    struct Job<'a>(&'a EvalArgs, &'a crate::zoo::Manifest, &'a TaskEvalOptions);
    impl BackendJob for Job<'_> {
        type Output = TaskEvalReport;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<TaskEvalReport> {
            let model = MetaModel::<B::InnerBackend>::load(&self.0.model, device)?;
            let data_dir = data::data_dir(self.0.data_dir.clone());
            Ok(evaluate_tasks::<B>(
                &model, self.1, &data_dir, self.2, device,
            )?)
        }
    }
    let r = dispatch(a.device, Job(a, &manifest, &opts))?;
    let text = serde_json::to_string_pretty(&r)?;
    crate::io::write_atomic(&a.model.join(files::EVAL), text.as_bytes())?;
    crate::meta::charts::tasks(&a.model, &r)?;
    if a.json {
        super::say(&text)
    } else {
        let best = r
            .rows
            .iter()
            .max_by(|x, y| x.acc.acc_mean.total_cmp(&y.acc.acc_mean));
        let line = best.map_or_else(String::new, |b| {
            format!(
                "best {} shots, guidance {} (NFE {}): {:.2}% mean over {} tasks",
                b.shots,
                b.guidance,
                b.nfe,
                100.0 * b.acc.acc_mean,
                r.task_ids.len()
            )
        });
        let list = |rows: &[crate::meta::condition::sample::FewShotRow]| -> String {
            if rows.is_empty() {
                return "skipped".into();
            }
            let parts: Vec<String> = rows
                .iter()
                .map(|f| format!("{} shots {:.2}%", f.shots, 100.0 * f.acc.acc_mean))
                .collect();
            parts.join(", ")
        };
        super::say(&format!(
            "eval ({:?} tasks): {line}; trained runs of these tasks {:.2}%; few-shot baseline {}; fine-tuned samples {} → {}",
            r.tasks,
            100.0 * r.trained.acc_mean,
            list(&r.few_shot),
            list(&r.fine_tuned),
            a.model.join(files::EVAL).display()
        ))
    }
}

/// The one-line summary of an evaluation: the model's own sampler's row against trained runs,
/// novelty and the downstream comparison; the full table is in `eval.json`.
pub fn summary_line(r: &EvalReport, model: &std::path::Path) -> String {
    let own = r
        .generated
        .iter()
        .find(|g| g.steps == r.novelty.steps)
        .or(r.generated.last());
    let generated = own.map_or_else(String::new, |g| {
        format!(
            "generated {:?}×{} (NFE {}) acc mean {:.2}% min {:.2}%",
            g.solver,
            g.steps,
            g.nfe,
            100.0 * g.acc_mean,
            100.0 * g.acc_min
        )
    });
    let downstream = r.downstream.as_ref().map_or_else(String::new, |d| {
        let show = |s: Option<usize>| s.map_or(format!(">{}", d.budget_steps), |s| s.to_string());
        format!(
            "; downstream steps to {:.2}%: generated {} vs Kaiming {}",
            100.0 * d.target_acc,
            show(d.steps_generated),
            show(d.steps_kaiming)
        )
    });
    let robust = r.step_robustness.map_or_else(String::new, |s| {
        format!(
            "; up to {} steps the mean drops at most {:.2} pp ({})",
            s.max_steps_checked,
            s.worst_drop_pp.max(0.0),
            if s.holds {
                "holds"
            } else {
                "more steps cost accuracy"
            }
        )
    });
    format!(
        "eval: {generated} vs trained held-out {:.2}% / {:.2}%; NN distance {:.2} vs held-out {:.2}{robust}{downstream} → {}",
        100.0 * r.trained_heldout.acc_mean,
        100.0 * r.trained_heldout.acc_min,
        r.novelty.nn_dist_median_generated,
        r.novelty.nn_dist_median_heldout,
        model.join(files::EVAL).display()
    )
}
