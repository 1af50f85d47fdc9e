//! Meta-models trained briefly on a small real zoo: generated classifiers of every method beat
//! chance by a wide margin, models are tied to their zoo, and a diverging run keeps its last good
//! model.

use nmflow_host::backend::{Cpu, CpuAutodiff};
use nmflow_host::flow::solver::Solver;
use nmflow_host::meta::config::Method;
use nmflow_host::meta::sample::MetaModel;
use nmflow_host::meta::train::TrainEnv;
use nmflow_host::meta::train::train_meta;
use nmflow_tests::{data_dir, meta_config, small_zoo, temp_dir};

fn env() -> TrainEnv {
    TrainEnv {
        data_dir: data_dir(),
        quiet: true,
        engine: nmflow_host::meta::train::Engine::Auto,
        force: false,
    }
}

#[test]
fn cfm_and_mmfm_generate_classifiers_far_above_chance() {
    let tmp = temp_dir("meta");
    let zoo = tmp.join("zoo");
    small_zoo(&zoo, 3);
    let data = nmflow_host::data::Dataset::load("mnist8".parse().unwrap(), &data_dir()).unwrap();
    for method in [Method::Cfm, Method::Mmfm, Method::Jko] {
        let out = tmp.join(format!("{method:?}"));
        let s = train_meta::<CpuAutodiff>(
            &meta_config(method, &zoo),
            &zoo,
            &out,
            &env(),
            &Default::default(),
        )
        .unwrap();
        assert!(
            s.best_heldout_loss < 0.6 * s.heldout_zero_loss,
            "{method:?}: {s:?}"
        );
        let model = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
        let (solver, steps) = (model.config.solver, model.config.solver_steps);
        let (w, nfe) = model
            .sample(20, solver, steps, 1, &Default::default())
            .unwrap();
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
            None,
            &Default::default(),
        )
        .unwrap();
        let mean = accs.iter().map(|a| a.1).sum::<f64>() / 20.0;
        assert!(mean > 0.3, "{method:?}: generated accuracy {mean}");
        // Sampling is deterministic for a seed.
        let (w2, _) = model
            .sample(20, solver, steps, 1, &Default::default())
            .unwrap();
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
        downstream_n: 4,
        downstream_epochs: Some(1),
        quiet: true,
        dataset: None,
    };
    // On its own zoo the report is complete; the downstream comparison starts from exactly the
    // classifiers the sampler makes, and fine-tuning Kaiming inits improves them.
    let evaluate = |zoo: &std::path::Path| {
        nmflow_host::meta::eval::evaluate::<CpuAutodiff>(
            &tmp.join("Cfm"),
            zoo,
            &data_dir(),
            &opts,
            &Default::default(),
        )
    };
    let r = evaluate(&zoo).unwrap();
    let d = r.downstream.as_ref().unwrap();
    assert_eq!(d.n, 4);
    assert_eq!(d.curve.first().unwrap().step, 0);
    assert_eq!(d.curve.last().unwrap().step, d.budget_steps);
    let model = MetaModel::<Cpu>::load(&tmp.join("Cfm"), &Default::default()).unwrap();
    let (w, _) = model
        .sample(
            4,
            Solver::Euler,
            model.config.solver_steps,
            0,
            &Default::default(),
        )
        .unwrap();
    let params =
        nmflow_host::classifier::params_from_flat::<Cpu>(&model.layout, &w, 4, &Default::default());
    let accs = nmflow_host::classifier::evaluate(
        &"mlp:64-16-10".parse().unwrap(),
        &params,
        &data.test.x,
        &data.test.y,
        None,
        &Default::default(),
    )
    .unwrap();
    let start = accs.iter().map(|a| a.1).sum::<f64>() / 4.0;
    assert!(
        (d.curve[0].acc_generated - start).abs() < 1e-9,
        "{d:?} vs {start}"
    );
    assert!(d.curve[0].acc_kaiming < 0.3, "{d:?}");
    assert!(d.curve.last().unwrap().acc_kaiming > 0.8, "{d:?}");
    assert_eq!(
        d.steps_kaiming,
        d.curve
            .iter()
            .find(|p| p.acc_kaiming >= d.target_acc)
            .map(|p| p.step)
    );
    let err = evaluate(&other).err().unwrap();
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
    let err =
        train_meta::<CpuAutodiff>(&wild, &zoo, &out, &env(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("non-finite loss"), "{err}");
    assert!(out.join("field.bin").exists());
    std::fs::remove_dir_all(tmp).unwrap();
}

/// The minibatch OT coupling pairs sources and trained weights more closely than independent
/// pairing of the same kind of draws: its mean squared target velocity is lower (by ~2 % here:
/// in 1,210 dimensions the distances between inits and trained weights concentrate). The
/// functional term makes the one-step sampler it scores more accurate.
#[test]
fn ot_coupling_and_functional_term() {
    use nmflow_host::meta::config::Coupling;
    use nmflow_host::meta::normalize::Normalizer;
    use nmflow_host::meta::pairs::PairSampler;
    use nmflow_runtime::Rng;
    let tmp = temp_dir("meta-ot");
    let zoo = tmp.join("zoo");
    small_zoo(&zoo, 3);
    let (manifest, mut train, _) = nmflow_host::meta::trajectories::load(&zoo).unwrap();
    let normalizer = Normalizer::fit(&manifest.layout, &train);
    normalizer.apply(&mut train.data);
    let mean_sq = |coupling: Coupling| {
        let mut cfg = meta_config(Method::Cfm, &zoo);
        cfg.coupling = coupling;
        let sampler = PairSampler::new(&cfg, &train, &manifest.layout, &normalizer);
        let mut rng = Rng::new(5, 0);
        let mut total = 0.0f64;
        let mut count = 0usize;
        for _ in 0..8 {
            let (_, ts, ut, _) = sampler.draw(32, &mut rng);
            assert!(ts.iter().all(|t| (0.0..1.0).contains(t)));
            total += ut.iter().map(|u| f64::from(*u).powi(2)).sum::<f64>();
            count += ut.len();
        }
        total / count as f64
    };
    let (ot, independent) = (mean_sq(Coupling::Ot), mean_sq(Coupling::Independent));
    assert!(
        ot < 0.99 * independent,
        "OT {ot} vs independent {independent}"
    );

    // The functional term scoring the one-step sampler lifts that sampler's accuracy.
    let data = nmflow_host::data::Dataset::load("mnist8".parse().unwrap(), &data_dir()).unwrap();
    let one_step_acc = |weight: f32| {
        let mut cfg = meta_config(Method::Cfm, &zoo);
        cfg.functional_weight = weight;
        cfg.functional_rollout = 1;
        let out = tmp.join(format!("functional-{weight}"));
        train_meta::<CpuAutodiff>(&cfg, &zoo, &out, &env(), &Default::default()).unwrap();
        let model = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
        let (w, nfe) = model
            .sample(50, Solver::Euler, 1, 1, &Default::default())
            .unwrap();
        assert_eq!(nfe, 1);
        let params = nmflow_host::classifier::params_from_flat::<Cpu>(
            &model.layout,
            &w,
            50,
            &Default::default(),
        );
        let accs = nmflow_host::classifier::evaluate(
            &"mlp:64-16-10".parse().unwrap(),
            &params,
            &data.test.x,
            &data.test.y,
            None,
            &Default::default(),
        )
        .unwrap();
        accs.iter().map(|a| a.1).sum::<f64>() / 50.0
    };
    let (plain, functional) = (one_step_acc(0.0), one_step_acc(1.0));
    eprintln!("one-step accuracy: plain {plain}, functional {functional}");
    assert!(
        functional > 0.8 && functional > plain + 0.2,
        "one-step accuracy: functional term {functional}, without {plain}"
    );
    std::fs::remove_dir_all(tmp).unwrap();
}
