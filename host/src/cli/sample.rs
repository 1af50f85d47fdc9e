//! `nmflow sample`: synthesize classifiers by integrating a meta-model's field.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendJob, dispatch};
use crate::error::UsageError;
use crate::flow::solver::Solver;
use crate::meta::condition::support::Supports;
use crate::meta::sample::{MetaModel, write_classifiers};

/// Arguments of `nmflow sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model directory (written by `nmflow train`).
    #[arg(long)]
    pub model: PathBuf,
    /// Number of classifiers.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Solver [default: the model's, the one it was trained for].
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Solver steps [default: the model's].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed of the source samples (and of the support set drawn for --task).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A conditioned model (`train --condition`) samples classifiers for this task of its zoo
    /// (an index into the zoo's task table; unseen tasks included), from a support set of
    /// --shots labeled training images per class drawn with --seed. Without it or --support, a conditioned
    /// model samples unconditionally.
    #[arg(long)]
    pub task: Option<usize>,
    /// A conditioned model samples classifiers for the task these labeled examples show (your
    /// own support set): `PREFIX.images`, every example's stored pixels (the zoo dataset view's
    /// grey levels and size, as `nmflow dump-inputs` writes them), and `PREFIX.labels`, one
    /// byte per example with its label in the task. Every label of the task needs at least one
    /// example; the shots per class need not be equal.
    #[arg(long, value_name = "PREFIX", conflicts_with = "task")]
    pub support: Option<PathBuf>,
    /// Labeled examples per class in the support set (--task).
    #[arg(long, default_value_t = 5)]
    pub shots: usize,
    /// Guidance weight w of `v(∅) + w·(v(task) − v(∅))` (--task, --support; 1: the conditional field;
    /// other weights than 0 and 1 cost two field evaluations a step).
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f32,
    /// Data folder (--task) [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output safetensors file: `weights` F32 [n, num_params] in the zoo's layout.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
    /// Compute device: `cpu`, or `cuda` (the first NVIDIA GPU; needs a build with
    /// `--features cuda` and a CUDA driver). The same code runs on both.
    #[arg(long, value_enum, default_value_t = crate::backend::DeviceKind::Cpu)]
    pub device: crate::backend::DeviceKind,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The result of `nmflow sample`.
#[derive(Clone, Debug, Serialize)]
pub struct SampleReport {
    /// Classifiers written.
    pub n: usize,
    /// Solver used.
    pub solver: Solver,
    /// Solver steps.
    pub steps: usize,
    /// Field evaluations per classifier.
    pub nfe: usize,
    /// Parameters per classifier.
    pub num_params: usize,
    /// Wall-clock seconds of the integration.
    pub seconds: f64,
    /// Milliseconds per classifier.
    pub ms_per_classifier: f64,
    /// The safetensors file.
    pub out: PathBuf,
}

/// The support set of a conditioned model: the files of `--support`, or for `--task`, `--shots`
/// training images per class of the model's zoo, labeled by the task.
fn task_support<B: burn::tensor::backend::Backend>(
    a: &SampleArgs,
    model: &MetaModel<B>,
) -> Result<Supports> {
    use crate::meta::condition::support::SupportPool;
    let flag = if a.support.is_some() {
        "--support"
    } else {
        "--task"
    };
    let Some(cond) = &model.config.condition else {
        return Err(UsageError(format!(
            "{flag} needs a conditioned model (`train --condition support` or `classes`)"
        ))
        .into());
    };
    if !(a.guidance.is_finite() && a.guidance >= 0.0) {
        return Err(UsageError(format!(
            "--guidance must be finite and ≥ 0 (got {})",
            a.guidance
        ))
        .into());
    }
    let zoo = PathBuf::from(&model.config.zoo);
    let manifest = crate::zoo::Manifest::read(&zoo)?;
    if let Some(prefix) = &a.support {
        return Ok(Supports::read_files(
            prefix,
            manifest.config.dataset,
            cond.d_in,
            cond.classes,
        )?);
    }
    let task = a.task.unwrap_or(0);
    if a.shots == 0 {
        return Err(UsageError("--shots must be at least 1 (got 0)".into()).into());
    }
    let map = manifest.label_map(&zoo, task)?;
    let data = crate::data::Dataset::load(
        manifest.config.dataset,
        &crate::data::data_dir(a.data_dir.clone()),
    )?;
    let pool = SupportPool::new(&data.train, manifest.config.arch.num_classes())?;
    Ok(pool.draw_task(map, a.shots, a.seed, task))
}

/// Runs `nmflow sample`.
///
/// # Errors
/// Zero classifiers or steps (usage), an unreadable model, a failed write.
pub fn exec(a: &SampleArgs) -> Result<()> {
    super::refuse_existing(&a.out, a.force)?;
    struct Job<'a>(&'a SampleArgs);
    impl BackendJob for Job<'_> {
        type Output = SampleReport;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<SampleReport> {
            let a = self.0;
            let model = MetaModel::<B::InnerBackend>::load(&a.model, device)?;
            let solver = a.solver.unwrap_or(model.config.solver);
            let steps = a.steps.unwrap_or(model.config.solver_steps);
            if a.n == 0 || steps == 0 {
                return Err(UsageError("--n and --steps must be at least 1".into()).into());
            }
            let support = (a.task.is_some() || a.support.is_some())
                .then(|| task_support(a, &model))
                .transpose()?;
            let t0 = std::time::Instant::now();
            let (w, nfe) = match &support {
                Some(s) => model.sample_task(s, a.n, a.guidance, solver, steps, a.seed, device)?,
                None => model.sample(a.n, solver, steps, a.seed, device)?,
            };
            let seconds = t0.elapsed().as_secs_f64();
            let p = model.layout.num_params();
            write_classifiers(&a.out, &w, a.n, p)?;
            Ok(SampleReport {
                n: a.n,
                solver,
                steps,
                nfe,
                num_params: p,
                seconds,
                ms_per_classifier: seconds * 1000.0 / a.n as f64,
                out: a.out.clone(),
            })
        }
    }
    let r = dispatch(a.device, Job(a))?;
    super::emit(a.json, &r, || {
        format!(
            "sample: {} classifiers × {} params with {:?} in {} steps (NFE {}) in {:.2}s → {}",
            r.n,
            r.num_params,
            r.solver,
            r.steps,
            r.nfe,
            r.seconds,
            r.out.display()
        )
    })
}
