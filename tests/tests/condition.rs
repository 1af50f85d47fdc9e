//! A conditioned meta-model on a small real multi-task zoo (label permutations of mnist8): it
//! trains, and its classifiers for seen tasks beat the unconditional field's on those tasks'
//! labels (`host/tests/cli.rs` checks that a killed run resumes to the same bytes; the guidance
//! arithmetic is a unit test of `meta::condition::sample`).

use nmflow_host::backend::{Cpu, CpuAutodiff};
use nmflow_host::meta::condition::sample::{TaskEvalOptions, TaskSplit, evaluate_tasks};
use nmflow_host::meta::config::{ConditionKind, TrainRequest};
use nmflow_host::meta::sample::MetaModel;
use nmflow_host::meta::train::{Engine, TrainEnv, train_meta};
use nmflow_host::zoo::run::RunOptions;
use nmflow_host::zoo::{Manifest, Optimizer, ZooConfig, run_zoo};
use nmflow_tests::{data_dir, temp_dir};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The small multi-task zoo both tests train on (built once).
fn zoo() -> &'static Path {
    static ZOO: OnceLock<PathBuf> = OnceLock::new();
    ZOO.get_or_init(|| {
        let zoo = temp_dir("condition-zoo").join("zoo");
        let cfg = ZooConfig {
            dataset: "mnist8".parse().unwrap(),
            arch: "mlp:64-16-10".parse().unwrap(),
            runs: 96,
            epochs: 2,
            batch_size: 64,
            optimizer: Optimizer::Adam,
            lr: 3e-3,
            momentum: 0.0,
            checkpoints: "early,epochs".into(),
            seed: 3,
            shard_runs: 48,
            heldout_fraction: 0.2,
            tasks: Some("perm:8:unseen=2".parse().unwrap()),
        };
        let opts = RunOptions {
            quiet: true,
            jobs: 2,
            ..RunOptions::default()
        };
        run_zoo::<CpuAutodiff>(&cfg, &zoo, &data_dir(), &opts, &Default::default()).unwrap();
        zoo
    })
}

/// A conditioned field of `kind` trained on the zoo for 240 steps (3 shots) into `out`.
fn train(kind: ConditionKind, out: &Path) -> nmflow_host::meta::train::TrainSummary {
    let request = TrainRequest {
        condition: Some(kind),
        shots: 3,
        steps: Some(240),
        eval_every: Some(80),
        hidden: Some(64),
        depth: 2,
        ..TrainRequest::default()
    };
    let mcfg = request.resolve(zoo()).unwrap();
    assert!(mcfg.condition.is_some());
    let env = TrainEnv {
        data_dir: data_dir(),
        quiet: true,
        engine: Engine::Auto,
        force: false,
    };
    train_meta::<CpuAutodiff>(&mcfg, zoo(), out, &env, &Default::default()).unwrap()
}

#[test]
fn a_conditioned_field_makes_classifiers_for_the_task_it_is_shown() {
    let tmp = temp_dir("condition");
    let zoo = zoo();
    let out = tmp.join("model");
    let s = train(ConditionKind::Support, &out);
    assert!(s.condition_sha256.is_some());

    let model = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
    assert!(model.condition.is_some());

    let manifest = Manifest::read(zoo).unwrap();
    let eval = |tasks, guidance: Vec<f32>| {
        evaluate_tasks::<CpuAutodiff>(
            &model,
            &manifest,
            &data_dir(),
            &TaskEvalOptions {
                tasks,
                max_tasks: 4,
                shots: vec![3],
                guidance,
                samples: 5,
                solver: model.config.solver,
                steps: model.config.solver_steps,
                seed: 1,
                few_shot_steps: 100,
                fine_tune_steps: 50,
                novelty_zoo: None,
            },
            &Default::default(),
        )
        .unwrap()
    };
    let seen = eval(TaskSplit::Seen, vec![0.0, 1.0]);
    let (uncond, cond) = (&seen.rows[0], &seen.rows[1]);
    assert_eq!((uncond.nfe, cond.nfe), (4, 4));
    assert!(
        cond.acc.acc_mean > uncond.acc.acc_mean + 0.05,
        "conditional {:?} vs unconditional {:?}",
        cond.acc,
        uncond.acc
    );
    assert!(seen.trained.acc_mean > 0.8);
    // The few-shot baseline trained on the same 3-shot support sets: above chance, below the
    // trained runs, stopped where its support-set accuracy stopped improving.
    let few = &seen.few_shot[0];
    assert_eq!(few.shots, 3);
    assert!(
        few.acc.acc_mean > 0.15 && few.acc.acc_mean < seen.trained.acc_mean,
        "{few:?}"
    );
    // The conditioned samples fine-tuned for 50 steps on their support set.
    let tuned = &seen.fine_tuned[0];
    assert_eq!((tuned.shots, tuned.stop_step_mean), (3, 50.0));
    assert!(tuned.acc.acc_mean > 0.15, "{tuned:?}");
    let unseen = eval(TaskSplit::Unseen, vec![2.0]);
    assert!(
        unseen.fine_tuned.is_empty(),
        "no w = 1 samples to fine-tune"
    );
    assert_eq!(unseen.task_ids, vec![6, 7]);
    assert_eq!(unseen.rows[0].nfe, 8);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The class-equivariant field (`--condition classes`) on the same zoo: its classifiers for the
/// two tasks it never saw beat the unconditional field's on those tasks' labels.
#[test]
fn the_class_equivariant_field_makes_classifiers_for_unseen_tasks() {
    let tmp = temp_dir("condition-classes");
    let zoo = zoo();
    let out = tmp.join("model");
    train(ConditionKind::Classes, &out);
    let model = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
    let manifest = Manifest::read(zoo).unwrap();
    let unseen = evaluate_tasks::<CpuAutodiff>(
        &model,
        &manifest,
        &data_dir(),
        &TaskEvalOptions {
            tasks: TaskSplit::Unseen,
            max_tasks: 2,
            shots: vec![3],
            guidance: vec![0.0, 1.0],
            samples: 5,
            solver: model.config.solver,
            steps: model.config.solver_steps,
            seed: 1,
            few_shot_steps: 0,
            fine_tune_steps: 0,
            novelty_zoo: Some(zoo.to_path_buf()),
        },
        &Default::default(),
    )
    .unwrap();
    assert_eq!(unseen.task_ids, vec![6, 7]);
    let (uncond, cond) = (&unseen.rows[0], &unseen.rows[1]);
    // Against the runs of the nearest seen task: two unseen tasks, each sharing fewer than all
    // labels with it; agreements are fractions.
    let nov = &unseen.novelty[0];
    assert_eq!(nov.shots, 3);
    assert!(nov.shared_labels < 10.0, "{nov:?}");
    assert!((0.0..=1.0).contains(&nov.agreement_generated), "{nov:?}");
    assert!((0.0..=1.0).contains(&nov.agreement_trained), "{nov:?}");
    assert!(
        nov.nearest_runs.acc_mean < unseen.trained.acc_mean,
        "{nov:?}"
    );
    // The chart `nmflow eval` draws of it.
    nmflow_host::meta::charts::tasks(&out, &unseen).unwrap();
    assert!(out.join("eval-tasks.png").is_file());
    // 20.5 % against 8.4 % here after 240 steps (chance is 10 %).
    assert!(
        cond.acc.acc_mean > uncond.acc.acc_mean + 0.08,
        "conditional {:?} vs unconditional {:?} on unseen tasks",
        cond.acc,
        uncond.acc
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
