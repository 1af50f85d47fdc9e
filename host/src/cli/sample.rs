//! `nmflow sample`: synthesize classifiers by integrating a meta-model's field.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendJob, dispatch};
use crate::error::UsageError;
use crate::flow::solver::Solver;
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
    /// Seed of the source samples.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
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
            let t0 = std::time::Instant::now();
            let (w, nfe) = model.sample(a.n, solver, steps, a.seed, device)?;
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
