//! Latent meta-models on a small real zoo: the VAE keeps what its classifiers do, a latent flow
//! makes classifiers far above chance and the same ones for the same seed, and bad input (a latent
//! size of 0, a VAE of another zoo, a latent model given to a command that needs weights) is
//! refused by name.

use nmflow_host::backend::{Cpu, CpuAutodiff};
use nmflow_host::meta::config::{LrSchedule, TrainRequest, manifest_hash};
use nmflow_host::meta::latent::config::{FunctionalTarget, Symmetry, VaeConfig};
use nmflow_host::meta::latent::network::{DecoderKind, VaeShape};
use nmflow_host::meta::latent::train::{VaeEnv, train_vae};
use nmflow_host::meta::sample::MetaModel;
use nmflow_host::meta::train::{Engine, TrainEnv, train_meta};
use nmflow_host::zoo::Manifest;
use nmflow_tests::{data_dir, small_zoo, temp_dir};

fn vae_config(zoo: &std::path::Path, latent: usize) -> VaeConfig {
    let manifest = Manifest::read(zoo).unwrap();
    VaeConfig {
        shape: VaeShape {
            dim: manifest.num_params,
            latent,
            hidden: 128,
            depth: 2,
            decoder: DecoderKind::Mlp,
            units: nmflow_host::meta::field::SetDims::of(&manifest.layout),
        },
        beta: 0.01,
        functional_weight: 1.0,
        functional_target: FunctionalTarget::Labels,
        functional_batch: 256,
        functional_samples: 16,
        symmetry: Symmetry::Sort,
        steps: 400,
        batch_size: 64,
        lr: 1e-3,
        lr_schedule: LrSchedule::Cosine,
        eval_every: 100,
        seed: 0,
        zoo_manifest_sha256: manifest_hash(zoo).unwrap(),
        zoo: zoo.display().to_string(),
    }
}

fn vae_env() -> VaeEnv {
    VaeEnv {
        data_dir: data_dir(),
        quiet: true,
        force: false,
    }
}

fn train_env() -> TrainEnv {
    TrainEnv {
        data_dir: data_dir(),
        quiet: true,
        engine: Engine::Auto,
        force: false,
    }
}

fn accuracies(w: &[f32], n: usize, layout: &nmflow_host::arch::Layout) -> Vec<f64> {
    let data = nmflow_host::data::Dataset::load("mnist8".parse().unwrap(), &data_dir()).unwrap();
    let params =
        nmflow_host::classifier::params_from_flat::<Cpu>(layout, w, n, &Default::default());
    nmflow_host::classifier::evaluate(
        &"mlp:64-16-10".parse().unwrap(),
        &params,
        &data.test.x,
        &data.test.y,
        None,
        &Default::default(),
    )
    .unwrap()
    .into_iter()
    .map(|(_, a)| a)
    .collect()
}

#[test]
fn a_vae_and_a_latent_flow_make_working_classifiers() {
    let tmp = temp_dir("latent");
    let zoo = tmp.join("zoo");
    small_zoo(&zoo, 5);
    let env = vae_env();
    let vae_dir = tmp.join("vae");
    let cfg = vae_config(&zoo, 16);
    let s = train_vae::<CpuAutodiff>(&cfg, &zoo, &vae_dir, &env, &Default::default()).unwrap();
    // Encode → decode keeps the held-out classifiers working: within 15 pp of the originals'
    // mean accuracy after 400 steps on 26 training runs (measured: 79 % against 90 %; the
    // functional term asks the decoder for good classifiers, while the weights themselves, mostly
    // initialization noise, are not kept). BENCHMARKS.md measures the large zoos.
    let rec = s.reconstruction.as_ref().unwrap();
    assert!(
        rec.decoded.acc_mean > rec.original.acc_mean - 0.15,
        "decoded {:?} vs original {:?}",
        rec.decoded,
        rec.original
    );
    assert_eq!(rec.blocks.len(), 4);
    // A finished VAE with the same settings is returned as it is.
    let again = train_vae::<CpuAutodiff>(&cfg, &zoo, &vae_dir, &env, &Default::default()).unwrap();
    assert_eq!(again.vae_sha256, s.vae_sha256);

    // A latent flow on it.
    let request = TrainRequest {
        latent: Some(vae_dir.clone()),
        steps: Some(400),
        hidden: Some(128),
        ..TrainRequest::default()
    };
    let mcfg = request.resolve(&zoo).unwrap();
    assert_eq!(mcfg.field.dim, 16);
    assert!(!mcfg.permute);
    let out = tmp.join("model");
    train_meta::<CpuAutodiff>(&mcfg, &zoo, &out, &train_env(), &Default::default()).unwrap();
    let model = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
    let (solver, steps) = (model.config.solver, model.config.solver_steps);
    let (w, _) = model
        .sample(20, solver, steps, 3, &Default::default())
        .unwrap();
    assert_eq!(w.len(), 20 * model.layout.num_params());
    let accs = accuracies(&w, 20, &model.layout);
    let mean = accs.iter().sum::<f64>() / 20.0;
    assert!(mean > 0.5, "latent generated accuracy {mean}");
    // Deterministic for a seed; another seed makes other classifiers.
    let (w2, _) = model
        .sample(20, solver, steps, 3, &Default::default())
        .unwrap();
    assert_eq!(w, w2);
    let (w3, _) = model
        .sample(20, solver, steps, 4, &Default::default())
        .unwrap();
    assert_ne!(w, w3);

    // Evaluation decodes: novelty and W1 are measured in canonical unit order, in the VAE's
    // standardized weight units.
    let opts = nmflow_host::meta::eval::EvalOptions {
        n: 8,
        solver: nmflow_host::flow::solver::Solver::Euler,
        steps: vec![2],
        seed: 0,
        agreement_samples: 100,
        w1_directions: 4,
        downstream_n: 0,
        downstream_epochs: None,
        quiet: true,
        dataset: None,
    };
    let r = nmflow_host::meta::eval::evaluate::<CpuAutodiff>(
        &out,
        &zoo,
        &data_dir(),
        &opts,
        &Default::default(),
    )
    .unwrap();
    assert!(r.novelty.canonical);
    assert!(r.novelty.nn_dist_median_generated > 0.0);
    // Functional diversity: independently trained runs disagree on some test inputs; the
    // generated fractions are fractions.
    let (g, h) = (
        r.novelty.pairwise_disagreement_median_generated,
        r.novelty.pairwise_disagreement_median_heldout,
    );
    assert!(h > 0.0 && h < 0.5, "held-out disagreement {h}");
    assert!((0.0..=1.0).contains(&g), "generated disagreement {g}");
    assert!(
        r.w1.iter()
            .all(|w| w.generated.is_finite() && w.generated < 10.0),
        "{:?}",
        r.w1
    );

    // Fine-tuning tilts the latent flow through the frozen decoder and writes a latent model
    // that loads and samples.
    let ft_cfg = nmflow_host::meta::finetune::FinetuneConfig {
        method: nmflow_host::meta::finetune::Method::Adjoint,
        reward: nmflow_host::meta::finetune::RewardKind::Ce,
        dataset: "mnist8".parse().unwrap(),
        lambda: 1000.0,
        iterations: 6,
        trajectories: 8,
        steps: 10,
        t0: 0.1,
        lr: 1e-3,
        lr_schedule: nmflow_host::meta::config::LrSchedule::Constant,
        max_grad_norm: None,
        control_cost: 0.0,
        entropy_weight: 0.0,
        diagonal: false,
        rollout_max: 0,
        reward_images: 256,
        eval_every: 3,
        eval_samples: 8,
        seed: 0,
        base: out.display().to_string(),
        base_field_sha256: None,
    };
    let ft_env = nmflow_host::meta::finetune::FinetuneEnv {
        data_dir: data_dir(),
        quiet: true,
        force: false,
    };
    let ft_out = tmp.join("finetuned");
    let ft = nmflow_host::meta::finetune::finetune::<CpuAutodiff>(
        &ft_cfg,
        &out,
        &ft_out,
        &ft_env,
        &Default::default(),
    )
    .unwrap();
    assert!(ft.acc_after.is_finite() && ft.acc_before > 0.5, "{ft:?}");
    let tuned = MetaModel::<Cpu>::load(&ft_out, &Default::default()).unwrap();
    assert!(tuned.latent.is_some());
    let (wt, _) = tuned
        .sample(4, solver, steps, 3, &Default::default())
        .unwrap();
    assert_eq!(wt.len(), 4 * model.layout.num_params());

    // The device draws its own source: a latent model with the encoded-Kaiming source (it would
    // need the encoder there) is refused by name.
    let err = nmflow_host::export::export(
        &out,
        nmflow_host::export::Quant::F32,
        None,
        None,
        &tmp.join("m.nmf"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("latent model") && err.contains("--source gaussian"),
        "{err}"
    );

    // A VAE of another zoo is refused, naming both.
    let other = tmp.join("other-zoo");
    small_zoo(&other, 6);
    let err = request.resolve(&other).unwrap_err().to_string();
    assert!(
        err.contains("another zoo") && err.contains("--latent"),
        "{err}"
    );

    // A latent size of 0 is refused before anything is written.
    let bad = vae_config(&zoo, 0);
    let err = train_vae::<CpuAutodiff>(&bad, &zoo, &tmp.join("vae0"), &env, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--latent must be at least 1"), "{err}");
    assert!(!tmp.join("vae0").exists());
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// An exported latent model (N(0, I) source; the units decoder and the MLP decoder) synthesizes
/// what the host samples: the f32 file the host's weights within 1e-4 relative L2 per classifier,
/// the int8 file a mean accuracy over 100 classifiers within 0.5 pp of the host's.
#[test]
fn exported_latent_models_match_the_host_sampler() {
    use nmflow_host::edge::edge_eval;
    use nmflow_host::export::{Quant, export};
    use nmflow_runtime::ModelView;
    let tmp = temp_dir("latent-export");
    let zoo = tmp.join("zoo");
    small_zoo(&zoo, 7);
    let env = vae_env();
    for decoder in [DecoderKind::Units, DecoderKind::Mlp] {
        let name = format!("{decoder:?}");
        let vae_dir = tmp.join(format!("vae-{name}"));
        let mut cfg = vae_config(&zoo, 8);
        cfg.shape.decoder = decoder;
        cfg.steps = 300;
        train_vae::<CpuAutodiff>(&cfg, &zoo, &vae_dir, &env, &Default::default()).unwrap();
        let request = TrainRequest {
            latent: Some(vae_dir),
            source: Some(nmflow_host::meta::source::Source::Gaussian { std: 1.0 }),
            coupling: Some(nmflow_host::meta::config::Coupling::Independent),
            steps: Some(300),
            hidden: Some(64),
            ..TrainRequest::default()
        };
        let mcfg = request.resolve(&zoo).unwrap();
        let out = tmp.join(format!("model-{name}"));
        train_meta::<CpuAutodiff>(&mcfg, &zoo, &out, &train_env(), &Default::default()).unwrap();
        let host = MetaModel::<Cpu>::load(&out, &Default::default()).unwrap();
        let (solver, steps) = (host.config.solver, host.config.solver_steps);
        let (n, seed) = (100, 5);
        let (host_w, host_nfe) = host
            .sample(n, solver, steps, seed, &Default::default())
            .unwrap();

        let f32_file = tmp.join(format!("{name}-f32.nmf"));
        let report = export(&out, Quant::F32, None, None, &f32_file).unwrap();
        let latent = report.latent.as_ref().unwrap();
        assert_eq!((latent.dim, latent.decoder), (8, decoder));
        let bytes = std::fs::read(&f32_file).unwrap();
        let view = ModelView::parse(&bytes).unwrap();
        assert_eq!((view.state_dim(), view.num_params()), (8, 1210));
        nmflow_tests::assert_runtime_matches(&f32_file, &host_w, n, seed, host_nfe);

        let int8_file = tmp.join(format!("{name}-int8.nmf"));
        export(&out, Quant::Int8, None, None, &int8_file).unwrap();
        let edge = edge_eval(&int8_file, n, seed, "mnist8".parse().unwrap(), &data_dir()).unwrap();
        assert_eq!(edge.latent_dim, Some(8));
        let host_accs = accuracies(&host_w, n, &host.layout);
        let host_mean = host_accs.iter().sum::<f64>() / n as f64;
        // Above chance (10 %), so that the comparison means something (300 VAE steps on a small
        // zoo: measured 28 % for the units decoder).
        assert!(host_mean > 0.2, "{name}: host {host_mean}");
        assert!(
            (edge.acc_mean - host_mean).abs() < 0.005,
            "{name}: int8 {} vs host f32 {host_mean}",
            edge.acc_mean
        );
        assert!(edge.bytes < bytes.len() / 3, "{name}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The VAE's teacher target (`--functional-target teacher`) is a distillation loss: a classifier
/// scored against its own predictions costs exactly its mean predictive entropy on the drawn
/// images (computed here independently from the same draws), and any other classifier costs more
/// (Gibbs' inequality).
#[test]
fn the_teacher_target_costs_a_classifier_its_own_entropy_and_others_more() {
    use burn::tensor::{Tensor, TensorData, activation::log_softmax};
    use nmflow_host::classifier::{Input, forward, params_from_flat};
    use nmflow_host::meta::normalize::Normalizer;
    use nmflow_host::meta::reward::{DataReward, Reward};
    use nmflow_runtime::Rng;

    let zoo = temp_dir("latent-teacher");
    small_zoo(&zoo, 8);
    let (manifest, train, _) = nmflow_host::meta::trajectories::load(&zoo).unwrap();
    let (layout, arch) = (&manifest.layout, &manifest.config.arch);
    let data = nmflow_host::data::Dataset::load(manifest.config.dataset, &data_dir()).unwrap();
    let normalizer = Normalizer::fit(layout, &train);
    let device = Default::default();
    let reward = DataReward::<CpuAutodiff>::new(
        Reward::CrossEntropy,
        arch,
        layout,
        &data,
        &normalizer,
        &device,
    );
    let p = layout.num_params();
    let mut raw = train.finals();
    raw.truncate(2 * p);
    let mut std = raw.clone();
    normalizer.apply(&mut std);
    let states =
        |rows: &[f32]| Tensor::<Cpu, 2>::from_data(TensorData::new(rows.to_vec(), [1, p]), &device);
    let (a, b) = (&std[..p], &std[p..]);
    let m = 64;
    let distilled = |student: &[f32], teacher: &[f32]| -> f32 {
        let s = Tensor::from_inner(states(student));
        let mut rng = Rng::new(3, 9);
        reward
            .loss_distilled(s, states(teacher), m, &mut rng)
            .into_scalar()
    };
    // The same draws, by hand: the training images `rng.below(n)` picks.
    let mut rng = Rng::new(3, 9);
    let n = u32::try_from(data.train.len()).unwrap();
    let dim = data.train.dim;
    let x: Vec<f32> = (0..m)
        .flat_map(|_| {
            let i = rng.below(n) as usize;
            data.train.x[i * dim..(i + 1) * dim].to_vec()
        })
        .collect();
    let x = Tensor::<Cpu, 2>::from_data(TensorData::new(x, [m, dim]), &device);
    let params = params_from_flat::<Cpu>(layout, &raw[..p], 1, &device);
    let logp = log_softmax(forward(arch, &params, Input::Shared(x)), 2);
    let entropy: f32 = (logp.clone().exp() * logp).sum().neg().into_scalar() / m as f32;
    let own = distilled(a, a);
    assert!(
        (own - entropy).abs() < 1e-4 * entropy.max(1.0),
        "self-distillation {own} against the entropy {entropy}"
    );
    assert!(entropy > 0.0 && entropy < 10f32.ln(), "{entropy}");
    let other = distilled(b, a);
    assert!(
        other > own + 1e-3,
        "another classifier {other} against {own}"
    );
    let _ = std::fs::remove_dir_all(&zoo);
}
