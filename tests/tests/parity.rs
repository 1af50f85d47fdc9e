//! The key integration test: train a small flow, export it, synthesize with the no_std runtime on
//! the host, and compare with burn's sampler for the same seeds.

use nmflow_host::backend::{Cpu, CpuAutodiff};
use nmflow_host::classifier;
use nmflow_host::data::Dataset;
use nmflow_host::edge::edge_eval;
use nmflow_host::export::{Quant, export};
use nmflow_host::flow::solver::Solver;
use nmflow_host::meta::config::Method;
use nmflow_host::meta::field::{FieldConfig, FieldKind, SetDims};
use nmflow_host::meta::sample::MetaModel;
use nmflow_host::meta::train::train_meta;
use std::path::{Path, PathBuf};

use nmflow_tests::{data_dir, meta_config, small_zoo_of, temp_dir};

/// Trains a brief meta-model with `field` on a small zoo, then checks the runtime against burn's
/// sampler: the f32 export synthesizes the same weights within 1e-4 relative L2 per classifier,
/// and the int8 export's mean accuracy over 100 classifiers is within 0.5 pp of the host's f32
/// sampler on the same seeds.
fn runtime_matches_the_host_sampler(name: &str, field: FieldConfig, solver: Solver, steps: usize) {
    runtime_matches_on(name, "mnist8", "mlp:64-16-10", field, solver, steps, |_| {});
}

fn runtime_matches_on(
    name: &str,
    dataset: &str,
    arch: &str,
    field: FieldConfig,
    solver: Solver,
    steps: usize,
    tweak: impl Fn(&mut nmflow_host::meta::config::MetaConfig),
) {
    let (tmp, model_dir) = trained(name, dataset, arch, field, solver, steps, tweak);
    assert_parity(name, &tmp, &model_dir, dataset, arch, solver, steps);
    std::fs::remove_dir_all(tmp).unwrap();
}

/// A brief meta-model with `field` trained on a small zoo of `arch` on `dataset`, in a fresh
/// temporary directory: `(that directory, the model directory)`.
fn trained(
    name: &str,
    dataset: &str,
    arch: &str,
    field: FieldConfig,
    solver: Solver,
    steps: usize,
    tweak: impl Fn(&mut nmflow_host::meta::config::MetaConfig),
) -> (PathBuf, PathBuf) {
    let tmp = temp_dir(name);
    let zoo = tmp.join("zoo");
    small_zoo_of(&zoo, 11, dataset, arch);
    let mut mcfg = meta_config(Method::Cfm, &zoo);
    mcfg.field = field;
    mcfg.solver = solver;
    mcfg.solver_steps = steps;
    mcfg.steps = 300;
    tweak(&mut mcfg);
    let model_dir = tmp.join("model");
    train_meta::<CpuAutodiff>(
        &mcfg,
        &zoo,
        &model_dir,
        &nmflow_host::meta::train::TrainEnv {
            data_dir: data_dir(),
            quiet: true,
            engine: nmflow_host::meta::train::Engine::Auto,
            force: false,
        },
        &Default::default(),
    )
    .unwrap();
    (tmp, model_dir)
}

/// The parity checks on the model in `model_dir`: the f32 export synthesizes the host sampler's
/// weights, the int8 export's accuracy is the host's within 0.5 pp. Returns the f32 file, the
/// host's weights and its field evaluations per classifier (100 classifiers, seed 5).
fn assert_parity(
    name: &str,
    tmp: &Path,
    model_dir: &Path,
    dataset: &str,
    arch: &str,
    solver: Solver,
    steps: usize,
) -> (PathBuf, Vec<f32>, usize) {
    let f32_file = tmp.join("model-f32.nmf");
    export(model_dir, Quant::F32, None, None, &f32_file).unwrap();
    let host = MetaModel::<Cpu>::load(model_dir, &Default::default()).unwrap();
    let (n, seed) = (100, 5);
    let (host_w, host_nfe) = host
        .sample(n, solver, steps, seed, &Default::default())
        .unwrap();
    nmflow_tests::assert_runtime_matches(&f32_file, &host_w, n, seed, host_nfe);

    let int8_file = tmp.join("model-int8.nmf");
    export(model_dir, Quant::Int8, None, None, &int8_file).unwrap();
    let edge = edge_eval(&int8_file, n, seed, dataset.parse().unwrap(), &data_dir()).unwrap();
    let data = Dataset::load(dataset.parse().unwrap(), &data_dir()).unwrap();
    let params = classifier::params_from_flat::<Cpu>(&host.layout, &host_w, n, &Default::default());
    let accs = classifier::evaluate(
        &arch.parse().unwrap(),
        &params,
        &data.test.x,
        &data.test.y,
        None,
        &Default::default(),
    )
    .unwrap();
    let host_mean = accs.iter().map(|a| a.1).sum::<f64>() / n as f64;
    assert!(edge.acc_mean > 0.2, "{name}: {edge:?}");
    assert!(
        (edge.acc_mean - host_mean).abs() < 0.005,
        "{name}: int8 {} vs host f32 {host_mean}",
        edge.acc_mean
    );
    assert!(edge.bytes < std::fs::metadata(&f32_file).unwrap().len() as usize / 3);
    (f32_file, host_w, host_nfe)
}

#[test]
fn runtime_synthesis_matches_the_host_sampler() {
    let mut field = meta_config_field();
    field.hidden = 128;
    runtime_matches_the_host_sampler("parity", field, Solver::Rk4, 2);
}

/// A small set field for `mlp:64-16-10`.
fn mnist8_set_field() -> FieldConfig {
    FieldConfig {
        kind: FieldKind::Set,
        set: Some(SetDims {
            units: 16,
            d_in: 64,
            d_out: 10,
        }),
        hidden: 32,
        depth: 2,
        ..meta_config_field()
    }
}

#[test]
fn runtime_set_field_matches_the_host_sampler() {
    runtime_matches_the_host_sampler("parity-set", mnist8_set_field(), Solver::Euler, 4);
}

/// A set field with the step-size input (trained over rollouts of 2 to 4 steps): the device feeds
/// 1/K as the host sampler does.
#[test]
fn runtime_step_input_set_field_matches_the_host_sampler() {
    let field = FieldConfig {
        step_input: true,
        ..mnist8_set_field()
    };
    runtime_matches_on(
        "parity-step-set",
        "mnist8",
        "mlp:64-16-10",
        field,
        Solver::Euler,
        3,
        |c| {
            c.functional_weight = 1.0;
            c.functional_rollout = 2;
            c.functional_rollout_max = 4;
            c.functional_samples = 16;
            c.functional_batch = 128;
        },
    );
}

#[test]
fn runtime_set_field_matches_the_host_sampler_on_mnist() {
    let field = FieldConfig {
        kind: FieldKind::Set,
        set: Some(SetDims {
            units: 10,
            d_in: 784,
            d_out: 10,
        }),
        dim: 7960,
        hidden: 32,
        depth: 2,
        ..meta_config_field()
    };
    runtime_matches_on(
        "parity-set-mnist",
        "mnist",
        "mlp:784-10-10",
        field,
        Solver::Euler,
        4,
        // Flow matching alone leaves 300 steps at chance on MNIST; the functional term on the
        // 4-step sampler makes classifiers worth comparing.
        |c| {
            c.functional_weight = 1.0;
            c.functional_rollout = 4;
            c.functional_samples = 16;
            c.functional_batch = 128;
        },
    );
}

/// The MLP field of the tests' standard configuration ([`meta_config`]).
fn meta_config_field() -> FieldConfig {
    FieldConfig {
        kind: FieldKind::Mlp,
        set: None,
        jko: None,
        dim: 1210,
        hidden: 256,
        depth: 2,
        time_dim: 16,
        step_input: false,
        diagonal: false,
    }
}

/// `base` fine-tuned on mnist8 with the per-coordinate term into `tmp/fine`: adjoint matching,
/// λ = 1, 8 trajectories of 10 steps, 30 iterations at lr 1e-3, unless `tweak` says otherwise.
fn fine_tuned(
    tmp: &Path,
    base: &Path,
    tweak: impl Fn(&mut nmflow_host::meta::finetune::FinetuneConfig),
) -> PathBuf {
    use nmflow_host::meta::finetune::{FinetuneConfig, FinetuneEnv, Method, RewardKind, finetune};
    let mut cfg = FinetuneConfig {
        method: Method::Adjoint,
        reward: RewardKind::Ce,
        dataset: "mnist8".parse().unwrap(),
        lambda: 1.0,
        iterations: 30,
        trajectories: 8,
        steps: 10,
        t0: 0.1,
        lr: 1e-3,
        lr_schedule: nmflow_host::meta::config::LrSchedule::Constant,
        max_grad_norm: None,
        control_cost: 0.0,
        entropy_weight: 0.0,
        diagonal: true,
        rollout_max: 0,
        reward_images: 256,
        eval_every: 30,
        eval_samples: 8,
        seed: 0,
        base: base.display().to_string(),
        base_field_sha256: None,
    };
    tweak(&mut cfg);
    let env = FinetuneEnv {
        data_dir: data_dir(),
        quiet: true,
        force: false,
    };
    let out = tmp.join("fine");
    finetune::<CpuAutodiff>(&cfg, base, &out, &env, &Default::default()).unwrap();
    out
}

/// An MLP field fine-tuned with `finetune --diagonal` (format version 7 carries its per-coordinate
/// term): the device synthesizes what the host samples, and without the term it would not.
#[test]
fn runtime_matches_the_host_sampler_with_the_per_coordinate_term() {
    use nmflow_host::meta::finetune::Method;
    let (solver, steps) = (Solver::Euler, 4);
    let (tmp, base) = trained(
        "parity-diagonal",
        "mnist8",
        "mlp:64-16-10",
        meta_config_field(),
        solver,
        steps,
        |_| {},
    );
    // A large step, so that 30 iterations move the term well away from its zero start.
    let model_dir = fine_tuned(&tmp, &base, |c| {
        c.method = Method::Direct;
        c.lambda = 1.0;
        c.iterations = 30;
        c.eval_every = 30;
        c.lr = 3e-3;
    });
    let (f32_file, host_w, nfe) = assert_parity(
        "parity-diagonal",
        &tmp,
        &model_dir,
        "mnist8",
        "mlp:64-16-10",
        solver,
        steps,
    );

    // The same file without the term synthesizes other weights: the check above saw it.
    let bytes = std::fs::read(&f32_file).unwrap();
    let mut file = nmflow_format::ModelFile::decode(&bytes).unwrap();
    assert!(file.diagonal.is_some());
    file.diagonal = None;
    let stripped = file.encode().unwrap();
    let view = nmflow_runtime::ModelView::parse(&stripped).unwrap();
    let p = view.num_params();
    let mut ws: Box<nmflow_host::edge::HostWorkspace> = Box::default();
    let worst = (0..100)
        .map(|i| {
            let (w, used) =
                nmflow_host::edge::synthesize_one(&view, 5, i, &mut ws, &f32_file).unwrap();
            assert_eq!(used as usize, nfe);
            nmflow_tests::relative_l2(&w, &host_w[i * p..(i + 1) * p])
        })
        .fold(0.0f64, f64::max);
    assert!(worst > 1e-3, "the term moved the samples by only {worst}");
    std::fs::remove_dir_all(tmp).unwrap();
}

/// A model fine-tuned by adjoint matching samples with the memoryless SDE (format version 8): the
/// device draws the host's noise for each classifier, so the f32 export synthesizes the host
/// sampler's weights, and the int8 export's accuracy is the host's within 0.5 pp.
#[test]
fn runtime_matches_the_host_memoryless_sde_sampler() {
    use nmflow_host::meta::source::Source;
    let (tmp, base) = trained(
        "parity-sde",
        "mnist8",
        "mlp:64-16-10",
        meta_config_field(),
        Solver::Euler,
        8,
        |c| {
            c.source = Source::Gaussian { std: 0.1 };
            c.coupling = nmflow_host::meta::config::Coupling::Independent;
        },
    );
    let model_dir = fine_tuned(&tmp, &base, |c| {
        c.lambda = 100.0;
        c.iterations = 10;
        c.eval_every = 10;
        c.steps = 7;
        c.t0 = 0.15;
    });
    let host = MetaModel::<Cpu>::load(&model_dir, &Default::default()).unwrap();
    // Fine-tuning stored its sampler: one ODE step to t0 and 7 Euler–Maruyama steps.
    assert_eq!(
        (
            host.config.solver,
            host.config.solver_steps,
            host.config.sde_t0
        ),
        (Solver::Sde, 8, Some(0.15))
    );
    let (f32_file, host_w, nfe) = assert_parity(
        "parity-sde",
        &tmp,
        &model_dir,
        "mnist8",
        "mlp:64-16-10",
        Solver::Sde,
        8,
    );
    assert_eq!(nfe, 8);
    let file = std::fs::read(&f32_file).unwrap();
    let view = nmflow_runtime::ModelView::parse(&file).unwrap();
    assert_eq!(
        (view.file.solver, view.file.steps, view.file.sde_t0),
        (nmflow_format::SolverKind::Sde, 8, 0.15)
    );
    // Each classifier's noise is its own: the first 3 of 100 are the 3 drawn alone.
    let p = host.layout.num_params();
    let (three, _) = host
        .sample(3, Solver::Sde, 8, 5, &Default::default())
        .unwrap();
    assert!(nmflow_tests::relative_l2(&three, &host_w[..3 * p]) < 1e-6);
    // And the noise matters: the ODE of the same field gives other classifiers.
    let (ode, _) = host
        .sample(3, Solver::Euler, 8, 5, &Default::default())
        .unwrap();
    assert!(nmflow_tests::relative_l2(&ode, &three) > 1e-2);
    std::fs::remove_dir_all(tmp).unwrap();
}
