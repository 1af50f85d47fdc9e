//! The application on the host: prints the lines the firmware logs, so `run-qemu.sh` can compare
//! QEMU's output with the host's for the same seeds.

use nmflow_fw_app::{AppWorkspace, embedded_sensors, run_demo};

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
