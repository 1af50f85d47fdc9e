//! The on-device shift detector: deterministic decisions, the untilted ensemble equal to plain
//! Euler synthesis, guidance that moves members, and refusals instead of panics.

#![allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]
use nmflow_format::{ShiftStatistic, SolverKind};
use nmflow_runtime::shift::ShiftDetector;
use nmflow_runtime::testing::{tiny_set_model_bytes, tiny_shift_model_bytes};
use nmflow_runtime::{Error, ModelView, Rng, Workspace, synthesize_with};

fn window(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed, 9);
    (0..n * 4).map(|_| rng.uniform_symmetric(2.0)).collect()
}

#[test]
fn decisions_are_deterministic_and_follow_the_threshold() {
    let bytes = tiny_shift_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let section = model.file.shift.unwrap();
    let mut buf = vec![0.0f32; ShiftDetector::workspace_floats(&model, &section)];
    let mut det = ShiftDetector::new(&model, &mut buf).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let w = window(seed, 4);
        let mut calls = 0;
        let a = det.decide(&w, &mut |_| calls += 1).unwrap();
        let b = det.decide(&w, &mut |_| {}).unwrap();
        assert_eq!(a, b, "same window, same decision");
        assert_eq!(calls, a.members);
        assert!(a.members >= 1 && a.members <= 3);
        assert!(a.disagreement <= 4);
        assert_eq!(a.statistic, f32::from(a.disagreement));
        assert_eq!(a.shifted, a.statistic > 1.5);
        assert!(a.entropy >= 0.0 && a.entropy <= 2f32.ln() + 1e-6);
        seen.insert(a.disagreement);
    }
    assert!(
        seen.len() > 1,
        "windows differ in their statistic: {seen:?}"
    );
}

#[test]
fn the_untilted_base_is_plain_euler_synthesis() {
    let bytes = tiny_shift_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let section = model.file.shift.unwrap();
    let mut buf = vec![0.0f32; ShiftDetector::workspace_floats(&model, &section)];
    let det = ShiftDetector::new(&model, &mut buf).unwrap();
    let mut ws: Workspace<512> = Workspace::new();
    let (w, _) = synthesize_with(
        &model,
        section.base_seed,
        SolverKind::Euler,
        model.file.steps,
        &mut ws,
    )
    .unwrap();
    assert_eq!(det.base_weights(), w, "bit for bit");
}

#[test]
fn guidance_changes_the_ensemble_and_the_entropy_statistic_is_thresholded() {
    let bytes = tiny_shift_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let tilted = model.file.shift.unwrap();
    let mut untilted = tilted;
    untilted.guidance_scale = 0.0;
    untilted.statistic = ShiftStatistic::Entropy;
    untilted.threshold = 0.3;
    let n = ShiftDetector::workspace_floats(&model, &tilted);
    let (mut b1, mut b2) = (vec![0.0f32; n], vec![0.0f32; n]);
    let mut a = ShiftDetector::with_section(&model, tilted, &mut b1).unwrap();
    let mut b = ShiftDetector::with_section(&model, untilted, &mut b2).unwrap();
    let mut differ = 0;
    for seed in 0..20 {
        let w = window(seed, 4);
        let (x, y) = (
            a.decide(&w, &mut |_| {}).unwrap(),
            b.decide(&w, &mut |_| {}).unwrap(),
        );
        differ += usize::from(x.entropy != y.entropy);
        assert_eq!(y.statistic, y.entropy);
        assert_eq!(y.shifted, y.entropy > 0.3);
    }
    assert!(
        differ > 10,
        "guidance moved the members in {differ} of 20 windows"
    );
}

#[test]
fn bad_windows_buffers_and_models_are_errors() {
    let bytes = tiny_shift_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let section = model.file.shift.unwrap();
    let n = ShiftDetector::workspace_floats(&model, &section);
    let mut short = vec![0.0f32; n - 1];
    assert!(matches!(
        ShiftDetector::new(&model, &mut short),
        Err(Error::CapacityTooSmall { .. })
    ));
    let mut buf = vec![0.0f32; n];
    let mut det = ShiftDetector::new(&model, &mut buf).unwrap();
    assert_eq!(
        det.decide(&window(0, 3), &mut |_| {}).unwrap_err(),
        Error::InputLength {
            expected: 16,
            found: 12
        }
    );
    let plain = tiny_set_model_bytes();
    let plain = ModelView::parse(&plain).unwrap();
    assert_eq!(
        ShiftDetector::new(&plain, &mut buf).err(),
        Some(Error::NoShiftSection)
    );
    let mut nan = window(1, 4);
    nan[3] = f32::NAN;
    let mut buf = vec![0.0f32; n];
    let mut det = ShiftDetector::new(&model, &mut buf).unwrap();
    // A non-finite input is not a panic: an error or a decision.
    let _ = det.decide(&nan, &mut |_| {});
}

/// Every truncation of a file with a shift section is refused, and every single-bit flip is
/// refused or gives a detector that decides without panicking.
#[test]
fn every_truncation_and_bit_flip_of_a_shift_model_is_handled() {
    let bytes = tiny_shift_model_bytes().to_vec();
    for cut in 0..bytes.len() {
        assert!(
            ModelView::parse(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    let w = window(3, 4);
    let mut buf = bytes.clone();
    let mut ws = vec![0.0f32; 4096];
    for i in 0..buf.len() {
        for bit in 0..8 {
            buf[i] ^= 1 << bit;
            if let Ok(m) = ModelView::parse(&buf)
                && let Ok(mut det) = ShiftDetector::new(&m, &mut ws)
            {
                let _ = det.decide(&w, &mut |_| {});
            }
            buf[i] ^= 1 << bit;
        }
    }
}
