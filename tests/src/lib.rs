//! Cross-crate tests of nmflow (host ↔ runtime): see `tests/`. This library holds their helpers.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nmflow_host::backend::CpuAutodiff;
use nmflow_host::flow::path::SplineKind;
use nmflow_host::flow::solver::Solver;
use nmflow_host::meta::config::manifest_hash;
use nmflow_host::meta::config::{Coupling, LrSchedule, MetaConfig, Method};
use nmflow_host::meta::field::{FieldConfig, FieldKind, JkoSteps};
use nmflow_host::meta::source::Source;
use nmflow_host::zoo::run::RunOptions;
use nmflow_host::zoo::{Optimizer, ZooConfig, run_zoo};

/// The data folder (`$NMFLOW_DATA`, else the workspace's `data/`), fetched on first use.
///
/// # Panics
/// When the data cannot be fetched (tests need npm and apt-get).
pub fn data_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("NMFLOW_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
        nmflow_host::data::fetch(&dir, &["mnist", "digits"], &mut |l| eprintln!("{l}"))
            .expect("fetching test data");
        dir
    })
    .clone()
}

/// A fresh temporary directory.
///
/// # Panics
/// When it cannot be created.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nmflow-xtest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Builds a small real zoo (32 runs of `mlp:64-16-10` on mnist8, one epoch) in `dir`.
///
/// # Panics
/// When the zoo cannot be built.
pub fn small_zoo(dir: &Path, seed: u64) {
    small_zoo_of(dir, seed, "mnist8", "mlp:64-16-10");
}

/// Builds a small real zoo of 32 runs of `arch` on `dataset` (one epoch) in `dir`.
///
/// # Panics
/// When the zoo cannot be built.
pub fn small_zoo_of(dir: &Path, seed: u64, dataset: &str, arch: &str) {
    let cfg = ZooConfig {
        dataset: dataset.parse().unwrap(),
        arch: arch.parse().unwrap(),
        runs: 32,
        epochs: 1,
        batch_size: 128,
        optimizer: Optimizer::Adam,
        lr: 3e-3,
        momentum: 0.0,
        checkpoints: "early,epochs".into(),
        seed,
        shard_runs: 16,
        heldout_fraction: 0.25,
        tasks: None,
        engine: nmflow_host::zoo::ZooEngine::Fused,
    };
    let opts = RunOptions {
        quiet: true,
        jobs: 2,
        ..RunOptions::default()
    };
    run_zoo::<CpuAutodiff>(&cfg, dir, &data_dir(), &opts, &Default::default()).unwrap();
}

/// A brief meta-model configuration for `method` on the zoo in `zoo` (MLP field 2×256, 400 steps;
/// NM-JKO gets its potential and one Euler step per checkpoint interval).
///
/// # Panics
/// When the zoo's manifest cannot be read.
pub fn meta_config(method: Method, zoo: &Path) -> MetaConfig {
    let jko = method == Method::Jko;
    let intervals = nmflow_host::zoo::Manifest::read(zoo)
        .unwrap()
        .schedule
        .len()
        - 1;
    MetaConfig {
        method,
        coupling: Coupling::Natural,
        spline: SplineKind::Pchip,
        source: Source::Kaiming,
        sigma: 0.0,
        permute: true,
        field: FieldConfig {
            kind: if jko {
                FieldKind::Potential
            } else {
                FieldKind::Mlp
            },
            set: None,
            jko: jko.then_some(JkoSteps {
                steps: intervals,
                tau: 1.0,
            }),
            dim: 64 * 16 + 16 + 16 * 10 + 10,
            hidden: 256,
            depth: 2,
            time_dim: 16,
            step_input: false,
            diagonal: false,
        },
        steps: 400,
        batch_size: 64,
        lr: 1e-3,
        lr_schedule: LrSchedule::Constant,
        weight_decay: 0.0,
        functional_weight: 0.0,
        functional_batch: 256,
        functional_rollout: 0,
        functional_rollout_max: 0,
        functional_rollout_counts: Vec::new(),
        functional_samples: 32,
        ema: 0.0,
        eval_every: 100,
        seed: 0,
        solver: if jko { Solver::Euler } else { Solver::Rk4 },
        solver_steps: if jko { intervals } else { 2 },
        sde_t0: None,
        zoo_manifest_sha256: manifest_hash(zoo).unwrap(),
        zoo: zoo.display().to_string(),
        latent: None,
        condition: None,
    }
}

/// `‖got − reference‖ / ‖reference‖`.
pub fn relative_l2(got: &[f32], reference: &[f32]) -> f64 {
    let diff: f64 = got
        .iter()
        .zip(reference)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = reference
        .iter()
        .map(|b| f64::from(*b).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / norm
}

/// Checks that the runtime synthesizes, from the model file `path`, the host sampler's weights
/// `host` (`[n, P]`, seeds `derive_seed(seed, i)`) within 1e-4 relative L2 per classifier, with
/// `nfe` field evaluations each.
///
/// # Panics
/// When the file does not parse, a synthesis fails, or a classifier differs.
pub fn assert_runtime_matches(path: &Path, host: &[f32], n: usize, seed: u64, nfe: usize) {
    use nmflow_host::edge::{HostWorkspace, synthesize_one};
    let bytes = std::fs::read(path).unwrap();
    let view = nmflow_runtime::ModelView::parse(&bytes).unwrap();
    let mut ws: Box<HostWorkspace> = Box::default();
    let p = view.num_params();
    assert_eq!(host.len(), n * p, "{}", path.display());
    for i in 0..n {
        let (w, used) = synthesize_one(&view, seed, i, &mut ws, path).unwrap();
        assert_eq!(used as usize, nfe);
        let h = &host[i * p..(i + 1) * p];
        let rel = relative_l2(&w, h);
        assert!(
            rel < 1e-4,
            "{}: classifier {i}: relative L2 {rel}",
            path.display()
        );
    }
}
