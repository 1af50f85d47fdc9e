//! Files written by an earlier build still load: a zoo and two model directories (MLP field, set
//! field) written by the `nmflow` of commit 1af7050 (before the source layout of `cli/` and
//! `meta/train/`), kept in `tests/fixtures/v0/`. Their classifiers are sampled by today's code and
//! compared with what that build sampled, and today's defaults resolve the same settings from the
//! same flags. `tests/fixtures/v0/make.sh` says how they were made.

use std::path::{Path, PathBuf};

use nmflow_host::backend::Cpu;
use nmflow_host::flow::solver::Solver;
use nmflow_host::meta::config::{MetaConfig, TrainRequest, manifest_hash};
use nmflow_host::meta::field::FieldKind;
use nmflow_host::meta::sample::MetaModel;
use nmflow_tests::fixtures;

fn v0(name: &str) -> PathBuf {
    fixtures().join("v0").join(name)
}

/// `weights` of a safetensors file written by `nmflow sample`.
fn samples(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("weights")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn an_earlier_zoo_still_verifies_and_loads() {
    let report = nmflow_host::inspect::inspect_zoo(&v0("zoo")).unwrap();
    assert!(report.shards_bad.is_empty(), "{report}");
    let (manifest, train, held) = nmflow_host::meta::trajectories::load(&v0("zoo")).unwrap();
    assert_eq!(manifest.config.arch.to_string(), "mlp:64-4-10");
    assert_eq!(train.len() + held.len(), 4);
}

#[test]
fn earlier_model_directories_still_sample_the_same_classifiers() {
    for (model, field) in [("model-mlp", FieldKind::Mlp), ("model-set", FieldKind::Set)] {
        let dir = v0(model);
        let m = MetaModel::<Cpu>::load(&dir, &Default::default()).unwrap();
        assert_eq!(m.config.field.kind, field);
        let (w, _) = m
            .sample(
                3,
                m.config.solver,
                m.config.solver_steps,
                1,
                &Default::default(),
            )
            .unwrap();
        let then = samples(&dir.with_extension("samples.safetensors"));
        assert_eq!(w.len(), then.len(), "{model}");
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (a, b) in w.iter().zip(&then) {
            diff += f64::from(a - b).powi(2);
            norm += f64::from(*b).powi(2);
        }
        // Bit for bit on the machine that wrote them; other CPUs' kernels round differently.
        assert!(
            (diff / norm).sqrt() < 1e-5,
            "{model}: relative L2 {}",
            (diff / norm).sqrt()
        );
    }
}

#[test]
fn todays_defaults_resolve_the_settings_earlier_flags_made() {
    let zoo = v0("zoo");
    let sha = manifest_hash(&zoo).unwrap();
    let flags = [
        (
            "model-mlp",
            TrainRequest {
                field: Some(FieldKind::Mlp),
                hidden: Some(16),
                depth: Some(1),
                time_dim: 4,
                steps: Some(20),
                ..TrainRequest::default()
            },
        ),
        (
            "model-set",
            TrainRequest {
                field: Some(FieldKind::Set),
                hidden: Some(8),
                depth: Some(1),
                time_dim: 4,
                steps: Some(20),
                eval_every: Some(100),
                lr_schedule: Some(nmflow_host::meta::config::LrSchedule::Constant),
                functional_weight: Some(0.0),
                solver: Some(Solver::Rk4),
                solver_steps: Some(2),
                ..TrainRequest::default()
            },
        ),
    ];
    for (model, request) in flags {
        let then: MetaConfig =
            serde_json::from_str(&std::fs::read_to_string(v0(model).join("config.json")).unwrap())
                .unwrap();
        let manifest = nmflow_host::zoo::Manifest::read(&zoo).unwrap();
        let now = request.resolve_with(&manifest, Path::new(&then.zoo), sha.clone());
        assert_eq!(now, then, "{model}");
    }
}
