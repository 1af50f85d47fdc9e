//! The runtime on the tiny model: determinism, solvers, classification, ensemble statistics, and
//! "no panics on any input" for the parser (every truncation, every single-bit flip, random bytes).

use nmflow_format::{FormatError, SolverKind};
use nmflow_runtime::classifier::{Classifier, ClassifierScratch};
use nmflow_runtime::shift::{EnsembleStats, softmax};
use nmflow_runtime::testing::tiny_model_bytes;
use nmflow_runtime::{Error, ModelView, Rng, Workspace, synthesize, synthesize_with};

#[test]
fn tiny_model_parses_and_synthesizes_deterministically() {
    let bytes = tiny_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    assert_eq!(model.num_params(), 23);
    assert_eq!(model.max_width(), 8);
    assert_eq!(model.macs_per_evaluation(), 27 * 8 + 8 * 23);
    let mut ws: Workspace<32, 32> = Workspace::new();
    let a = synthesize(&model, 5, &mut ws).unwrap().to_vec();
    let b = synthesize(&model, 5, &mut ws).unwrap().to_vec();
    let c = synthesize(&model, 6, &mut ws).unwrap().to_vec();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|v| v.is_finite()));
    for (solver, nfe) in [
        (SolverKind::Euler, 3),
        (SolverKind::Heun, 6),
        (SolverKind::Rk4, 12),
    ] {
        let (_, got) = synthesize_with(&model, 5, solver, 3, &mut ws).unwrap();
        assert_eq!(got, nfe);
    }
}

#[test]
fn capacity_is_checked_before_any_work() {
    let bytes = tiny_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let mut small: Workspace<16, 32> = Workspace::new();
    assert_eq!(
        synthesize(&model, 1, &mut small).unwrap_err(),
        Error::CapacityTooSmall {
            needed: 23,
            available: 16
        }
    );
    let mut narrow: Workspace<32, 4> = Workspace::new();
    assert!(matches!(
        synthesize(&model, 1, &mut narrow),
        Err(Error::CapacityTooSmall { .. })
    ));
}

#[test]
fn classifier_matches_a_hand_computation() {
    let bytes = tiny_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    // W1 = rows e_0, e_1, e_2 (4 inputs), b1 = 0; W2 = [[1, -1, 0], [0, 1, 1]], b2 = [0.5, 0].
    let mut w = vec![0.0f32; 23];
    w[0] = 1.0;
    w[5] = 1.0;
    w[10] = 1.0;
    w[15..21].copy_from_slice(&[1.0, -1.0, 0.0, 0.0, 1.0, 1.0]);
    w[21] = 0.5;
    let clf = Classifier::new(&model, &w).unwrap();
    let mut scratch: ClassifierScratch<8> = ClassifierScratch::new();
    let mut logits = [0.0f32; 2];
    // x = [2, -3, 1, 9] → hidden relu([2, -3, 1]) = [2, 0, 1] → logits [2.5, 1].
    let class = clf
        .logits(&[2.0, -3.0, 1.0, 9.0], &mut scratch, &mut logits)
        .unwrap();
    assert_eq!(logits, [2.5, 1.0]);
    assert_eq!(class, 0);
    assert!(clf.logits(&[1.0], &mut scratch, &mut logits).is_err());
    assert!(Classifier::new(&model, &w[..22]).is_err());
}

#[test]
fn ensemble_statistics_closed_form() {
    let mut stats: EnsembleStats<4, 2> = EnsembleStats::new(2).unwrap();
    // Input 0: both members say class 0 with certainty; input 1: they disagree.
    stats.add(0, &[1.0, 0.0]);
    stats.add(1, &[1.0, 0.0]);
    stats.finish_member();
    stats.add(0, &[1.0, 0.0]);
    stats.add(1, &[0.0, 1.0]);
    stats.finish_member();
    let s = stats.statistics();
    assert_eq!(s.members, 2);
    assert!((s.disagreement - 0.25).abs() < 1e-6);
    // Input 1's mean is [0.5, 0.5]: entropy ln 2; input 0's is 0.
    assert!((s.mean_entropy - core::f32::consts::LN_2 / 2.0).abs() < 1e-5);
    assert!(EnsembleStats::<4, 2>::new(5).is_err());
    let mut p = [0.0f32; 3];
    softmax(&[1000.0, 1000.0, -1000.0], &mut p);
    assert!((p[0] - 0.5).abs() < 1e-6 && p[2] == 0.0);
}

#[test]
fn every_truncation_and_bit_flip_is_an_error_or_a_valid_model() {
    let bytes = tiny_model_bytes();
    for cut in 0..bytes.len() {
        assert!(
            ModelView::parse(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    let mut ws: Workspace<32, 32> = Workspace::new();
    let mut buf = bytes.to_vec();
    for i in 0..buf.len() {
        for bit in 0..8 {
            buf[i] ^= 1 << bit;
            if let Ok(m) = ModelView::parse(&buf) {
                // A flip the CRC cannot see is impossible; but if it parses, it must be usable.
                let _ = synthesize(&m, 1, &mut ws);
            }
            buf[i] ^= 1 << bit;
        }
    }
    let mut long = bytes.to_vec();
    long.push(0);
    assert_eq!(
        ModelView::parse(&long).unwrap_err(),
        Error::Format(FormatError::TrailingBytes { extra: 1 })
    );
    let mut v2 = bytes.to_vec();
    v2[4] = 2;
    assert_eq!(
        ModelView::parse(&v2).unwrap_err(),
        Error::Format(FormatError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(99, 0);
    let mut buf = vec![0u8; 600];
    for round in 0..20_000 {
        let len = rng.below(600) as usize;
        for b in &mut buf[..len] {
            *b = rng.next_u32().to_le_bytes()[0];
        }
        if round % 2 == 0 && len >= 4 {
            buf[..4].copy_from_slice(b"NMFL");
        }
        let _ = ModelView::parse(&buf[..len]);
    }
    // Valid headers around random payloads reach the postcard decoder and validation.
    for _ in 0..20_000 {
        let len = rng.below(400) as usize;
        let payload: Vec<u8> = (0..len).map(|_| rng.next_u32().to_le_bytes()[0]).collect();
        let mut file = nmflow_format::Header::for_payload(&payload)
            .to_bytes()
            .to_vec();
        file.extend_from_slice(&payload);
        let _ = ModelView::parse(&file);
    }
}

#[test]
fn encode_decode_round_trips_for_generated_models() {
    // Models of random shapes (built from the tiny model's tensors re-sliced) encode and decode to
    // themselves, and every encoding is accepted by the runtime.
    use nmflow_format::ModelFile;
    let bytes = tiny_model_bytes();
    let model = ModelFile::decode(&bytes).unwrap();
    let mut buf = [0u8; 4096];
    let mut rng = Rng::new(17, 0);
    for _ in 0..200 {
        let mut m = model.clone();
        m.steps = 1 + u16::try_from(rng.below(1000)).unwrap();
        m.time.max_frequency = 1.0 + rng.uniform() * 200.0;
        m.solver = match rng.below(3) {
            0 => SolverKind::Euler,
            1 => SolverKind::Heun,
            _ => SolverKind::Rk4,
        };
        let n = m.encode_into(&mut buf).unwrap();
        let back = ModelFile::decode(&buf[..n]).unwrap();
        assert_eq!(back, m);
        assert!(ModelView::parse(&buf[..n]).is_ok());
    }
    // A buffer too small is an error, not a panic.
    assert!(model.encode_into(&mut buf[..100]).is_err());
}
