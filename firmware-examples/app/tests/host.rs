//! The application on the host: prints the lines the firmware logs, so `run-qemu.sh` can compare
//! QEMU's output with the host's for the same seeds.

use nmflow_fw_app::{
    ADAPT_WORKSPACE_FLOATS, AdaptWorkspace, AppWorkspace, DEMO_FRAMES,
    MNIST_LATENT_WORKSPACE_FLOATS, MnistLatentWorkspace, MnistWorkspace, SHIFT_WORKSPACE_FLOATS,
    ShiftWorkspace, adapt_sensors, assets, embedded_sensors, run, run_adapt_demo, run_demo,
    run_mnist_demo, run_mnist_latent_demo, run_shift_demo,
};

#[test]
fn host_report() {
    let mut ws: Box<AppWorkspace> = Box::default();
    let (mut test, mut shifted) = embedded_sensors();
    let r = run_demo(&mut test, &mut shifted, &mut ws, &mut |_| {}).unwrap();
    println!(
        "accuracy {}/{} predictions-hash {:08x}",
        r.correct, r.frames, r.prediction_hash
    );
    println!(
        "mnist8 window: disagreement {} entropy {} members {}",
        r.mnist.disagreement, r.mnist.mean_entropy, r.mnist.members
    );
    println!(
        "digits window: disagreement {} entropy {} members {}",
        r.digits.disagreement, r.digits.mean_entropy, r.digits.members
    );
    assert!(r.correct > 30, "far above chance (10%): {r:?}");
}

#[test]
fn host_mnist_report() {
    let mut ws: Box<MnistWorkspace> = Box::default();
    let r = run_mnist_demo(&mut ws, &mut |_| {}).unwrap();
    println!(
        "mnist accuracy {}/{} predictions-hash {:08x}",
        r.correct, r.images, r.prediction_hash
    );
    assert_eq!(r.images, 200);
    assert!(r.correct > 150, "a working MNIST classifier: {r:?}");
}

/// The latent MNIST model: the line `run-qemu.sh` compares with QEMU's, on a workspace sized
/// exactly for it.
#[test]
fn host_mnist_latent_report() {
    let model = nmflow_runtime::ModelView::parse(assets::MNIST_LATENT_MODEL).unwrap();
    assert!(model.is_latent());
    assert_eq!(
        model.workspace_floats(model.file.solver),
        MNIST_LATENT_WORKSPACE_FLOATS,
        "the workspace is sized exactly"
    );
    let mut ws: Box<MnistLatentWorkspace> = Box::default();
    let r = run_mnist_latent_demo(&mut ws, &mut |_| {}).unwrap();
    println!(
        "mnist-latent accuracy {}/{} predictions-hash {:08x}",
        r.correct, r.images, r.prediction_hash
    );
    assert_eq!(r.images, 200);
    assert!(r.correct > 120, "a working MNIST classifier: {r:?}");
}

/// The firmware's accuracy for seeds 1..=10 (the same code and bits as on the device: the seed-1
/// run is compared with QEMU's bit for bit by `run-qemu.sh`).
#[test]
fn accuracy_over_ten_seeds() {
    let mut ws: Box<AppWorkspace> = Box::default();
    let mut total = 0u32;
    for seed in 1..=10u64 {
        let (mut test, mut shifted) = embedded_sensors();
        let r = run(
            assets::MODEL,
            &mut test,
            &mut shifted,
            DEMO_FRAMES,
            seed,
            &mut ws,
            &mut |_| {},
        )
        .unwrap();
        println!("seed {seed}: accuracy {}/{}", r.correct, r.frames);
        total += r.correct;
    }
    let mean = f64::from(total) / 10.0 / f64::from(DEMO_FRAMES);
    println!("mean accuracy over seeds 1..=10: {:.2} %", 100.0 * mean);
    assert!(mean > 0.8, "{mean}");
}

/// The shift demo on the host: the lines `run-qemu.sh` compares with QEMU's, and the detector's
/// measured rates (the same decisions as `nmflow shift-calibrate --evaluate mnist8,digits`).
#[test]
fn host_shift_report() {
    let mut ws: Box<ShiftWorkspace> = Box::new([0.0; SHIFT_WORKSPACE_FLOATS]);
    let model = nmflow_runtime::ModelView::parse(assets::SHIFT_MODEL).unwrap();
    let section = model.file.shift.unwrap();
    assert_eq!(
        nmflow_runtime::shift::ShiftDetector::workspace_floats(&model, &section),
        SHIFT_WORKSPACE_FLOATS,
        "the workspace is sized exactly"
    );
    let (mut test, mut shifted) = embedded_sensors();
    let r = run_shift_demo(&mut test, &mut shifted, &mut ws, &mut || {}).unwrap();
    println!("shift threshold {}", r.threshold);
    for (name, s) in [("mnist8", &r.mnist), ("digits", &r.digits)] {
        println!(
            "shift {name} windows {} flagged {} members {} decisions-hash {:08x}",
            s.windows, s.flagged, s.members, s.hash
        );
    }
    assert_eq!(r.mnist.windows, 50);
    assert!(r.mnist.flagged <= 10, "false alarms near α: {r:?}");
    assert!(r.digits.flagged >= 25, "optdigits mostly detected: {r:?}");
}

/// Adapting to an unseen label permutation from 50 labeled frames: the lines `run-qemu.sh`
/// compares with QEMU's, on a workspace sized exactly for the class-conditioned model.
#[test]
fn host_adapt_report() {
    let model = nmflow_runtime::ModelView::parse(assets::PERM_MODEL).unwrap();
    assert!(model.is_conditioned());
    assert_eq!(
        model.workspace_floats(model.file.solver),
        ADAPT_WORKSPACE_FLOATS,
        "the workspace is sized exactly"
    );
    let mut ws: Box<AdaptWorkspace> = Box::default();
    let (mut support, mut test) = adapt_sensors();
    let r = run_adapt_demo(&mut support, &mut test, &mut ws, &mut |_| {}).unwrap();
    for (k, c) in r.correct.iter().enumerate() {
        println!("adapt classifier {k} accuracy {c}/{}", r.frames);
    }
    println!(
        "adapt support {} frames nfe {} predictions-hash {:08x}",
        r.support, r.nfe, r.prediction_hash
    );
    println!(
        "adapt null-condition accuracy {}/{}",
        r.null_correct, r.frames
    );
    let mean = f64::from(r.correct.iter().sum::<u32>()) / (5.0 * f64::from(r.frames));
    println!("mean accuracy of the task's classifiers {:.2} %", 100.0 * mean);
    assert!(mean > 0.85, "classifiers for the unseen task: {r:?}");
    assert!(
        f64::from(r.null_correct) / f64::from(r.frames) < 0.3,
        "without the support set the labels are a guess: {r:?}"
    );
}
