//! Meta-models trained briefly on a small real zoo: generated classifiers beat chance by a wide
//! margin, models are tied to their zoo, and bad input fails clearly.

mod common;

use std::path::Path;
use std::process::Command;

use nmflow_host::backend::{Cpu, CpuAutodiff};
use nmflow_host::flow::path::SplineKind;
use nmflow_host::flow::solver::Solver;
use nmflow_host::meta::config::{Coupling, MetaConfig, Method};
use nmflow_host::meta::field::{FieldConfig, FieldKind, JkoSteps};
use nmflow_host::meta::sample::MetaModel;
use nmflow_host::meta::source::Source;
use nmflow_host::meta::train::{manifest_hash, train_meta};
use nmflow_host::zoo::run::RunOptions;
use nmflow_host::zoo::{Optimizer, ZooConfig, run_zoo};

fn small_zoo(dir: &Path) {
    let cfg = ZooConfig {
        dataset: "mnist8".parse().unwrap(),
        arch: "mlp:64-16-10".parse().unwrap(),
        runs: 32,
        epochs: 1,
        batch_size: 128,
        optimizer: Optimizer::Adam,
        lr: 3e-3,
        momentum: 0.0,
        checkpoints: "early,epochs".into(),
        seed: 3,
        shard_runs: 16,
        heldout_fraction: 0.25,
    };
    let opts = RunOptions {
        quiet: true,
        jobs: 2,
        ..RunOptions::default()
    };
    run_zoo::<CpuAutodiff>(&cfg, dir, &common::data_dir(), &opts, &Default::default()).unwrap();
}

fn meta_config(method: Method, zoo: &Path) -> MetaConfig {
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
        },
        steps: 400,
        batch_size: 64,
        lr: 1e-3,
        weight_decay: 0.0,
        eval_every: 100,
        seed: 0,
        solver: if jko { Solver::Euler } else { Solver::Rk4 },
        solver_steps: if jko { intervals } else { 2 },
        zoo_manifest_sha256: manifest_hash(zoo).unwrap(),
        zoo: zoo.display().to_string(),
    }
}

#[test]
fn cfm_and_mmfm_generate_classifiers_far_above_chance() {
    let tmp = common::temp_dir("meta");
    let zoo = tmp.join("zoo");
    small_zoo(&zoo);
    let data =
        nmflow_host::data::Dataset::load("mnist8".parse().unwrap(), &common::data_dir()).unwrap();
    for method in [Method::Cfm, Method::Mmfm, Method::Jko] {
        let out = tmp.join(format!("{method:?}"));
        let s = train_meta::<CpuAutodiff>(
            &meta_config(method, &zoo),
            &zoo,
            &out,
            &Default::default(),
            true,
        )
        .unwrap();
        assert!(
            s.best_heldout_loss < 0.6 * s.heldout_zero_loss,
            "{method:?}: {s:?}"
        );
        let model = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
        let (solver, steps) = (model.config.solver, model.config.solver_steps);
        let (w, nfe) = model.sample(20, solver, steps, 1, &Default::default());
        assert_eq!(nfe, steps * solver.stages());
        let params = nmflow_host::classifier::params_from_flat::<Cpu>(
            &model.layout,
            &w,
            20,
            &Default::default(),
        );
        let arch = "mlp:64-16-10".parse().unwrap();
        let accs = nmflow_host::classifier::evaluate(
            &arch,
            &params,
            &data.test.x,
            &data.test.y,
            &Default::default(),
        );
        let mean = accs.iter().map(|a| a.1).sum::<f64>() / 20.0;
        assert!(mean > 0.3, "{method:?}: generated accuracy {mean}");
        // Sampling is deterministic for a seed.
        let (w2, _) = model.sample(20, solver, steps, 1, &Default::default());
        assert_eq!(w, w2);
    }
    // A model is tied to its zoo: an altered manifest is refused.
    let other = tmp.join("other-zoo");
    std::fs::create_dir_all(&other).unwrap();
    for f in std::fs::read_dir(&zoo).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), other.join(f.file_name())).unwrap();
    }
    let mut m = std::fs::read_to_string(other.join("manifest.json")).unwrap();
    m.push('\n');
    std::fs::write(other.join("manifest.json"), m).unwrap();
    let opts = nmflow_host::meta::eval::EvalOptions {
        n: 4,
        solver: Solver::Euler,
        steps: vec![1],
        seed: 0,
        agreement_samples: 100,
        w1_directions: 2,
    };
    let err = nmflow_host::meta::eval::evaluate::<Cpu>(
        &tmp.join("Cfm"),
        &other,
        &common::data_dir(),
        &opts,
        &Default::default(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("was trained on a zoo with manifest sha256"),
        "{err}"
    );

    // A diverging run stops with a clear error and keeps the last good weights.
    let mut wild = meta_config(Method::Cfm, &zoo);
    wild.lr = 1e8;
    wild.steps = 200;
    let out = tmp.join("wild");
    let err = train_meta::<CpuAutodiff>(&wild, &zoo, &out, &Default::default(), true).unwrap_err();
    assert!(err.to_string().contains("non-finite loss"), "{err}");
    assert!(out.join("field.bin").exists());
    std::fs::remove_dir_all(tmp).unwrap();
}

fn nmflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn train_and_eval_refuse_bad_input() {
    let tmp = common::temp_dir("meta-cli");
    let missing = tmp.join("nozoo");
    let out = nmflow(&[
        "train",
        "--zoo",
        missing.to_str().unwrap(),
        "--out",
        tmp.join("m").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest: not a zoo directory"));

    // A zoo of a future format version.
    let future = tmp.join("future");
    std::fs::create_dir_all(&future).unwrap();
    std::fs::write(
        future.join("manifest.json"),
        r#"{"format":"nmflow-zoo","format_version":99}"#,
    )
    .unwrap();
    let out = nmflow(&[
        "train",
        "--zoo",
        future.to_str().unwrap(),
        "--out",
        tmp.join("m").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("zoo format version 99 is not supported")
    );

    let out = nmflow(&["eval", "--model", tmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a model directory"));
    std::fs::remove_dir_all(tmp).unwrap();
}
