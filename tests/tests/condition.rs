//! A conditioned meta-model on small real multi-task zoos (label permutations of mnist8, and its
//! classes merged in pairs): it trains, and its classifiers for seen and unseen tasks beat the
//! unconditional field's on those tasks' labels (`host/tests/cli.rs` checks that a killed run resumes to the same bytes; the guidance
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

/// The small permutation zoo the first two tests train on (built once).
fn zoo() -> &'static Path {
    static ZOO: OnceLock<PathBuf> = OnceLock::new();
    ZOO.get_or_init(|| build_zoo("condition-zoo", "perm:8:unseen=2"))
}

/// The small pairs zoo (the classes merged in pairs; labels 5 to 9 unused).
fn pairs_zoo() -> &'static Path {
    static ZOO: OnceLock<PathBuf> = OnceLock::new();
    ZOO.get_or_init(|| build_zoo("condition-pairs-zoo", "pairs:8:unseen=2"))
}

/// 96 runs of `mlp:64-16-10` on mnist8 over the tasks `tasks`.
fn build_zoo(name: &str, tasks: &str) -> PathBuf {
    let zoo = temp_dir(name).join("zoo");
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
        tasks: Some(tasks.parse().unwrap()),
        engine: nmflow_host::zoo::ZooEngine::Fused,
    };
    let opts = RunOptions {
        quiet: true,
        jobs: 2,
        ..RunOptions::default()
    };
    run_zoo::<CpuAutodiff>(&cfg, &zoo, &data_dir(), &opts, &Default::default()).unwrap();
    zoo
}

/// A conditioned field of `kind` trained on the permutation zoo for 240 steps (3 shots).
fn train(kind: ConditionKind, out: &Path) -> nmflow_host::meta::train::TrainSummary {
    train_on(zoo(), kind, out)
}

/// A conditioned field of `kind` trained on `zoo` for 240 steps (3 shots) into `out`.
fn train_on(zoo: &Path, kind: ConditionKind, out: &Path) -> nmflow_host::meta::train::TrainSummary {
    let request = TrainRequest {
        condition: Some(kind),
        shots: 3,
        steps: Some(240),
        eval_every: Some(80),
        hidden: Some(64),
        depth: Some(2),
        ..TrainRequest::default()
    };
    let mcfg = request.resolve(zoo).unwrap();
    assert!(mcfg.condition.is_some());
    let env = TrainEnv {
        data_dir: data_dir(),
        quiet: true,
        engine: Engine::Auto,
        force: false,
    };
    train_meta::<CpuAutodiff>(&mcfg, zoo, out, &env, &Default::default()).unwrap()
}

/// Two unseen tasks, 3 shots, w = 0 and 1, 5 classifiers each, no baselines; novelty against
/// `novelty_zoo`.
fn unseen_options(model: &MetaModel<Cpu>, novelty_zoo: Option<&Path>) -> TaskEvalOptions {
    TaskEvalOptions {
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
        novelty_zoo: novelty_zoo.map(Path::to_path_buf),
    }
}

/// The second family: the class-equivariant field on the pairs zoo, whose support sets hold no
/// example of the five unused labels. Conditioned classifiers beat unconditional ones on the
/// unseen tasks' labels, and the device (int8) measures what the host does, absent labels
/// included.
#[test]
fn the_class_equivariant_field_learns_which_classes_share_a_label() {
    use nmflow_host::edge::edge_eval_jobs;
    use nmflow_host::export::{Quant, export};
    use nmflow_host::meta::condition::device::{self, TaskSource};

    let tmp = temp_dir("condition-pairs");
    let zoo = pairs_zoo();
    let out = tmp.join("model");
    train_on(zoo, ConditionKind::Classes, &out);
    let model = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
    let manifest = Manifest::read(zoo).unwrap();
    let table = manifest.tasks.as_ref().unwrap();
    assert!(table.label_maps.iter().all(|m| m.iter().all(|&l| l < 5)));
    let unseen = evaluate_tasks::<CpuAutodiff>(
        &model,
        &manifest,
        &data_dir(),
        &unseen_options(&model, None),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(unseen.task_ids, vec![6, 7]);
    assert!(unseen.trained.acc_mean > 0.8, "{:?}", unseen.trained);
    let (uncond, cond) = (&unseen.rows[0], &unseen.rows[1]);
    assert!(
        cond.acc.acc_mean > uncond.acc.acc_mean + 0.05,
        "conditional {:?} vs unconditional {:?} on unseen pairs tasks",
        cond.acc,
        uncond.acc
    );
    let int8_file = tmp.join("pairs-int8.nmf");
    export(&out, Quant::Int8, None, None, &int8_file).unwrap();
    let view = "mnist8".parse().unwrap();
    let source = TaskSource::Zoo {
        zoo: zoo.to_path_buf(),
        split: TaskSplit::Unseen,
        shots: 3,
        max_tasks: 2,
    };
    let edge = edge_eval_jobs(&int8_file, 5, view, &data_dir(), &mut |m, d| {
        device::jobs(&source, 1.0, 1, view, m, d)
    })
    .unwrap();
    assert_eq!(edge.n, 10);
    assert!(
        (edge.acc_mean - cond.acc.acc_mean).abs() <= 0.005,
        "device {} vs host {}",
        edge.acc_mean,
        cond.acc.acc_mean
    );
    std::fs::remove_dir_all(&tmp).unwrap();
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
    let unseen_opts = unseen_options(&model, Some(zoo));
    let unseen = evaluate_tasks::<CpuAutodiff>(
        &model,
        &manifest,
        &data_dir(),
        &unseen_opts,
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
    // Fresh tasks: the zoo's generator past its 8 tasks, none of them trained; their ceiling is
    // the runs of the zoo's unseen tasks, and there is no novelty (no runs of their own).
    let fresh = evaluate_tasks::<CpuAutodiff>(
        &model,
        &manifest,
        &data_dir(),
        &TaskEvalOptions {
            tasks: TaskSplit::Fresh,
            max_tasks: 3,
            ..unseen_opts.clone()
        },
        &Default::default(),
    )
    .unwrap();
    let table = manifest.tasks.as_ref().unwrap();
    assert_eq!(fresh.task_ids, vec![8, 9, 10]);
    assert_eq!(
        (fresh.trained_runs, fresh.trained.acc_mean),
        (unseen.trained_runs, unseen.trained.acc_mean)
    );
    assert!(fresh.novelty.is_empty());
    let (f_uncond, f_cond) = (&fresh.rows[0], &fresh.rows[1]);
    assert!(
        f_cond.acc.acc_mean > f_uncond.acc.acc_mean + 0.05,
        "conditional {:?} vs unconditional {:?} on fresh tasks",
        f_cond.acc,
        f_uncond.acc
    );
    assert_eq!(table.count, 8);
    the_device_runs_the_exported_field(
        &out,
        &model,
        &tmp,
        (cond.acc.acc_mean, f_cond.acc.acc_mean),
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The exported class-conditioned field on the device runtime: the f32 file makes the host
/// sampler's classifiers for a task's support set (guided or not, whatever the order of the
/// examples), bad support sets are refused, and the int8 file's accuracy on the unseen and the
/// fresh tasks is the host's (`host_acc`, w = 1, the same support sets and seeds) within 0.5 pp.
fn the_device_runs_the_exported_field(
    dir: &Path,
    model: &MetaModel<Cpu>,
    tmp: &Path,
    host_acc: (f64, f64),
) {
    use nmflow_host::data::Dataset;
    use nmflow_host::edge::{HostWorkspace, edge_eval_jobs};
    use nmflow_host::export::{Quant, export};
    use nmflow_host::meta::condition::device::{self, TaskSource};
    use nmflow_host::meta::condition::support::SupportPool;
    use nmflow_runtime::rng::derive_seed;
    use nmflow_runtime::{Error, ModelView, Support, synthesize_task};

    let manifest = Manifest::read(zoo()).unwrap();
    let table = manifest.tasks.as_ref().unwrap();
    let t = table.unseen[0];
    let data = Dataset::load("mnist8".parse().unwrap(), &data_dir()).unwrap();
    let pool = SupportPool::new(&data.train, 10).unwrap();
    let support = pool.draw_task(&table.label_maps[t], 3, 1, t);
    let f32_file = tmp.join("cond-f32.nmf");
    export(dir, Quant::F32, None, None, &f32_file).unwrap();
    let bytes = std::fs::read(&f32_file).unwrap();
    let view = ModelView::parse(&bytes).unwrap();
    assert!(view.is_conditioned());
    let mut ws: Box<HostWorkspace> = Box::default();
    let (solver, steps) = (view.file.solver, view.file.steps);
    let task = Support {
        inputs: &support.x,
        labels: &support.labels,
    };
    // A support set without label 4's examples: the label is absent from the task (an all-zero
    // class token on both sides, as for the pairs family's unused labels).
    let keep: Vec<usize> = (0..support.labels.len())
        .filter(|&i| support.labels[i] != 4)
        .collect();
    let d = view.input_dim();
    let absent = nmflow_host::meta::condition::support::Supports {
        x: keep
            .iter()
            .flat_map(|&i| support.x[i * d..(i + 1) * d].to_vec())
            .collect(),
        labels: keep.iter().map(|&i| support.labels[i]).collect(),
        size: keep.len(),
    };
    let (n, seed) = (6, 4);
    for (w, s) in [(1.0f32, &support), (2.0, &support), (1.0, &absent)] {
        let task = Support {
            inputs: &s.x,
            labels: &s.labels,
        };
        let (host, host_nfe) = model
            .sample_task(
                s,
                n,
                w,
                model.config.solver,
                model.config.solver_steps,
                seed,
                &Default::default(),
            )
            .unwrap();
        let p = view.num_params();
        for i in 0..n {
            let (got, nfe) = synthesize_task(
                &view,
                &task,
                w,
                derive_seed(seed, i as u64),
                solver,
                steps,
                &mut ws,
            )
            .unwrap();
            assert_eq!(nfe as usize, host_nfe, "w = {w}");
            let h = &host[i * p..(i + 1) * p];
            let rel = nmflow_tests::relative_l2(got, h);
            assert!(rel < 1e-4, "w = {w}, classifier {i}: relative L2 {rel}");
        }
    }
    // The encoder does not depend on the order of the examples.
    let first = synthesize_task(&view, &task, 1.0, 9, solver, steps, &mut ws)
        .unwrap()
        .0
        .to_vec();
    let order: Vec<usize> = (0..support.labels.len()).rev().collect();
    let xs: Vec<f32> = order
        .iter()
        .flat_map(|&i| support.x[i * d..(i + 1) * d].to_vec())
        .collect();
    let ys: Vec<u8> = order.iter().map(|&i| support.labels[i]).collect();
    let rev = Support {
        inputs: &xs,
        labels: &ys,
    };
    let second = synthesize_task(&view, &rev, 1.0, 9, solver, steps, &mut ws)
        .unwrap()
        .0;
    for (a, b) in first.iter().zip(second) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
    }
    // Bad support sets and weights are refused, not sampled.
    let mut outside = support.labels.clone();
    outside[2] = 10;
    let cases: [(Support<'_>, f32, Error); 4] = [
        (
            Support {
                inputs: &support.x,
                labels: &outside,
            },
            1.0,
            Error::SupportLabel {
                index: 2,
                label: 10,
            },
        ),
        (
            Support {
                inputs: &support.x[1..],
                labels: &support.labels,
            },
            1.0,
            Error::InputLength {
                expected: 30 * 64,
                found: 30 * 64 - 1,
            },
        ),
        (
            Support {
                inputs: &[],
                labels: &[],
            },
            1.0,
            Error::EmptySupport,
        ),
        (task, f32::NAN, Error::BadGuidance),
    ];
    for (s, w, expected) in cases {
        assert_eq!(
            synthesize_task(&view, &s, w, 1, solver, steps, &mut ws).unwrap_err(),
            expected
        );
    }
    // The int8 file on the unseen tasks, as `nmflow eval` measured the host's samples.
    let int8_file = tmp.join("cond-int8.nmf");
    export(dir, Quant::Int8, None, None, &int8_file).unwrap();
    let view_name = "mnist8".parse().unwrap();
    for (split, ids, host) in [
        (TaskSplit::Unseen, vec![6, 7], host_acc.0),
        (TaskSplit::Fresh, vec![8, 9, 10], host_acc.1),
    ] {
        let source = TaskSource::Zoo {
            zoo: zoo().to_path_buf(),
            split,
            shots: 3,
            max_tasks: ids.len(),
        };
        let edge = edge_eval_jobs(&int8_file, 5, view_name, &data_dir(), &mut |m, d| {
            device::jobs(&source, 1.0, 1, view_name, m, d)
        })
        .unwrap();
        assert_eq!(edge.n, 5 * ids.len());
        assert_eq!(edge.tasks.as_ref().unwrap().task_ids, ids);
        assert!(
            (edge.acc_mean - host).abs() <= 0.005,
            "{split:?}: device {} vs host {host}",
            edge.acc_mean
        );
    }
}
