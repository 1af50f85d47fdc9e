//! The runtime on the tiny model: determinism, solvers, classification, ensemble statistics, and
//! "no panics on any input" for the parser (every truncation, every single-bit flip, random bytes).

use nmflow_format::{FormatError, SolverKind};
use nmflow_runtime::classifier::{Classifier, ClassifierScratch};
use nmflow_runtime::shift::{EnsembleStats, softmax};
use nmflow_runtime::testing::{
    TINY_SUPPORT, TINY_SUPPORT_LABELS, tiny_condition_model_bytes, tiny_diagonal_model_bytes,
    tiny_latent_model_bytes, tiny_model_bytes, tiny_sde_model_bytes, tiny_set_model_bytes,
    tiny_step_set_model_bytes,
};
use nmflow_runtime::vector_field::{self, Emit};
use nmflow_runtime::{
    Error, FieldKind, ModelView, Rng, Support, Workspace, synthesize, synthesize_task,
    synthesize_with,
};

#[test]
fn tiny_model_parses_and_synthesizes_deterministically() {
    let bytes = tiny_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    assert_eq!(model.num_params(), 23);
    assert_eq!(model.field_kind(), FieldKind::Mlp);
    assert_eq!(model.macs_per_evaluation(), 27 * 8 + 8 * 23);
    // RK4: state + two stages (3 × 23), time embedding 4, two activation buffers of 8.
    assert_eq!(model.workspace_floats(SolverKind::Rk4), 3 * 23 + 4 + 2 * 8);
    assert_eq!(model.workspace_floats(SolverKind::Euler), 23 + 4 + 2 * 8);
    let set_bytes = tiny_set_model_bytes();
    let set = ModelView::parse(&set_bytes).unwrap();
    assert_eq!(set.field_kind(), FieldKind::Set);
    // 3 tokens of 7 values through embed (7→8), local and mlp (8→8), token_out (8→7); once:
    // global_in (2→8), time_in (4→8), pooled (8→8), global_out (8→2).
    assert_eq!(
        set.macs_per_evaluation(),
        3 * (7 * 8 + 2 * 64 + 8 * 7) + 2 * 8 + 4 * 8 + 64 + 8 * 2
    );
    // Euler: the state, the time embedding, 3 token states of 8, c, p, y.
    assert_eq!(
        set.workspace_floats(SolverKind::Euler),
        23 + 4 + 3 * 8 + 3 * 8
    );
    let mut ws: Workspace<128> = Workspace::new();
    for model in [&model, &set] {
        let a = synthesize(model, 5, &mut ws).unwrap().to_vec();
        let b = synthesize(model, 5, &mut ws).unwrap().to_vec();
        let c = synthesize(model, 6, &mut ws).unwrap().to_vec();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| v.is_finite()));
        for (solver, nfe) in [
            (SolverKind::Euler, 3),
            (SolverKind::Heun, 6),
            (SolverKind::Rk4, 12),
        ] {
            let (_, got) = synthesize_with(model, 5, solver, 3, &mut ws).unwrap();
            assert_eq!(got, nfe);
        }
    }
}

#[test]
fn capacity_is_checked_before_any_work() {
    let bytes = tiny_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let mut small: Workspace<88> = Workspace::new();
    assert_eq!(
        synthesize(&model, 1, &mut small).unwrap_err(),
        Error::CapacityTooSmall {
            needed: 89,
            available: 88
        }
    );
    // Euler needs no stage buffers, so the same workspace fits it.
    assert!(synthesize_with(&model, 1, SolverKind::Euler, 2, &mut small).is_ok());
    assert_eq!(
        ModelView::parse_for(&bytes, 88).unwrap_err(),
        Error::CapacityTooSmall {
            needed: 89,
            available: 88
        }
    );
    assert!(ModelView::parse_for(&bytes, Workspace::<89>::FLOATS).is_ok());
}

/// The tiny set field's velocity at `(x, t)` through the two-phase API.
#[cfg(test)]
fn velocity(model: &ModelView<'_>, x: &[f32], t: f32) -> Vec<f32> {
    let mut scratch = vec![0.0f32; vector_field::scratch_floats(model)];
    let mut v = vec![0.0f32; x.len()];
    vector_field::evaluate(model, x, t, 0.25, &mut v, &mut scratch);
    v
}

#[test]
fn set_field_is_equivariant_to_hidden_unit_permutations() {
    let bytes = tiny_set_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let mut rng = Rng::new(3, 0);
    let x: Vec<f32> = (0..23).map(|_| rng.uniform_symmetric(1.5)).collect();
    // Layout: W1 [3][4] at 0, b1 [3] at 12, W2 [2][3] at 15, b2 [2] at 21.
    let perm = [2usize, 0, 1];
    let permute = |v: &[f32]| {
        let mut out = v.to_vec();
        for (new, &old) in perm.iter().enumerate() {
            out[new * 4..new * 4 + 4].copy_from_slice(&v[old * 4..old * 4 + 4]);
            out[12 + new] = v[12 + old];
            for k in 0..2 {
                out[15 + k * 3 + new] = v[15 + k * 3 + old];
            }
        }
        out
    };
    let v = velocity(&model, &x, 0.3);
    let pv = velocity(&model, &permute(&x), 0.3);
    assert!(
        v.iter().any(|&a| a.abs() > 1e-3),
        "a zero field tests nothing"
    );
    for (a, b) in permute(&v).iter().zip(&pv) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn an_euler_step_in_place_equals_a_stored_velocity_step() {
    for bytes in [
        tiny_model_bytes(),
        tiny_set_model_bytes(),
        tiny_diagonal_model_bytes(),
    ] {
        let model = ModelView::parse(&bytes).unwrap();
        let mut rng = Rng::new(4, 0);
        let x: Vec<f32> = (0..23).map(|_| rng.uniform_symmetric(1.0)).collect();
        let v = velocity(&model, &x, 0.25);
        let mut scratch = vec![0.0f32; vector_field::scratch_floats(&model)];
        let mut y = x.clone();
        vector_field::absorb(&model, &y, 0.25, 0.25, &mut scratch);
        vector_field::emit(&model, &mut scratch, &mut y, Emit::Add(0.5));
        for ((yi, xi), vi) in y.iter().zip(&x).zip(&v) {
            assert_eq!(*yi, xi + 0.5 * vi);
        }
    }
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
    for bytes in [
        tiny_model_bytes(),
        tiny_set_model_bytes(),
        tiny_latent_model_bytes(true),
        tiny_latent_model_bytes(false),
        tiny_condition_model_bytes(),
        tiny_diagonal_model_bytes(),
    ] {
        truncations_and_flips(&bytes);
    }
}

#[cfg(test)]
fn truncations_and_flips(bytes: &[u8]) {
    for cut in 0..bytes.len() {
        assert!(
            ModelView::parse(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    let mut ws: Workspace<512> = Workspace::new();
    let mut buf = bytes.to_vec();
    let task = Support {
        inputs: &TINY_SUPPORT,
        labels: &TINY_SUPPORT_LABELS,
    };
    for i in 0..buf.len() {
        for bit in 0..8 {
            buf[i] ^= 1 << bit;
            if let Ok(m) = ModelView::parse(&buf) {
                // A flip the CRC cannot see is impossible; but if it parses, it must be usable.
                let _ = synthesize(&m, 1, &mut ws);
                let _ = synthesize_task(&m, &task, 2.0, 1, m.file.solver, 2, &mut ws);
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
    let next = nmflow_format::FORMAT_VERSION.to_le_bytes()[0].wrapping_add(1);
    for version in [0u8, next] {
        let mut other = bytes.to_vec();
        other[4] = version;
        assert_eq!(
            ModelView::parse(&other).unwrap_err(),
            Error::Format(FormatError::UnsupportedVersion {
                found: u16::from(version),
                supported: nmflow_format::FORMAT_VERSION
            })
        );
    }
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
    for bytes in [
        tiny_model_bytes(),
        tiny_set_model_bytes(),
        tiny_latent_model_bytes(true),
        tiny_diagonal_model_bytes(),
    ] {
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
}

#[test]
fn latent_models_integrate_in_the_latent_and_decode() {
    for units in [true, false] {
        let bytes = tiny_latent_model_bytes(units);
        let model = ModelView::parse(&bytes).unwrap();
        assert!(model.is_latent());
        assert_eq!((model.num_params(), model.state_dim()), (23, 3));
        assert_eq!(model.macs_per_evaluation(), 7 * 8 + 8 * 3);
        // The decoded weights (23), the latent (3), then the larger of the integration's needs
        // (Heun: two stages of 3, time embedding 4, two field buffers of 8) and the decoder's
        // (two trunk buffers of 6, and three of 6 for the units head).
        let decoder = if units { 2 * 6 + 3 * 6 } else { 2 * 6 };
        assert_eq!(
            model.workspace_floats(SolverKind::Heun),
            23 + 3 + (2 * 3 + 4 + 2 * 8).max(decoder)
        );
        let per_token = 6 * 6 + 6 * 7 + 6;
        let head = if units {
            3 * per_token + 6 * 6 + 6 * 2
        } else {
            6 * 23
        };
        assert_eq!(model.decoder_macs(), 3 * 6 + head);
        let mut ws: Workspace<128> = Workspace::new();
        let a = synthesize(&model, 5, &mut ws).unwrap().to_vec();
        let b = synthesize(&model, 5, &mut ws).unwrap().to_vec();
        let c = synthesize(&model, 6, &mut ws).unwrap().to_vec();
        assert_eq!(a.len(), 23);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| v.is_finite()));
        // The workspace is exactly as large as it needs to be.
        let needed = model.workspace_floats(SolverKind::Heun);
        assert!(ModelView::parse_for(&bytes, needed).is_ok());
        assert_eq!(
            ModelView::parse_for(&bytes, needed - 1).unwrap_err(),
            Error::CapacityTooSmall {
                needed: u32::try_from(needed).unwrap(),
                available: u32::try_from(needed - 1).unwrap()
            }
        );
        // Guidance acts on the weights; a latent model says so.
        let mut buf = vec![0.0f32; 256];
        assert_eq!(
            nmflow_runtime::synthesize::synthesize_guided(&model, 1, 1.0, &mut buf, &mut |_, _| {})
                .unwrap_err(),
            Error::LatentModel
        );
    }
}

#[test]
fn the_units_head_decodes_each_unit_into_its_place() {
    // Decoding twice with the slot embeddings of two units swapped swaps the two units' weights:
    // rows of W1, entries of b1, columns of W2; b2 is unchanged.
    use nmflow_format::{DecoderHead, FieldWeights, ModelFile};
    let bytes = tiny_latent_model_bytes(true);
    let file = ModelFile::decode(&bytes).unwrap();
    let latent = file.latent.clone().unwrap();
    let DecoderHead::Units(head) = latent.head else {
        panic!("units head")
    };
    let FieldWeights::Int8 { q, scales } = head.slots.weights else {
        panic!("int8")
    };
    // slots: [6][3]; swap columns 0 and 2 and zero the bias's effect by keeping it.
    let mut swapped = q.to_vec();
    for row in swapped.chunks_exact_mut(3) {
        row.swap(0, 2);
    }
    let mut other = latent.clone();
    if let DecoderHead::Units(h) = &mut other.head {
        h.slots.weights = FieldWeights::Int8 {
            q: &swapped,
            scales,
        };
    }
    let tokens = file.token_dims().unwrap();
    let z = [0.4f32, -1.1, 0.7];
    let decode = |section: &nmflow_format::LatentSection<'_>| {
        let mut out = vec![0.0f32; 23];
        let mut scratch = vec![0.0f32; nmflow_runtime::decoder::scratch_floats(section)];
        nmflow_runtime::decoder::decode(section, tokens, &z, &mut out, &mut scratch);
        out
    };
    let (a, b) = (decode(&latent), decode(&other));
    assert!(a.iter().all(|v| v.abs() > 0.0 && v.is_finite()));
    let unit = |w: &[f32], j: usize| -> Vec<f32> {
        let mut v = w[j * 4..j * 4 + 4].to_vec();
        v.push(w[12 + j]);
        v.extend((0..2).map(|k| w[15 + k * 3 + j]));
        v
    };
    assert_eq!(unit(&a, 0), unit(&b, 2));
    assert_eq!(unit(&a, 2), unit(&b, 0));
    assert_eq!(unit(&a, 1), unit(&b, 1));
    assert_ne!(unit(&a, 0), unit(&a, 2));
    assert_eq!(a[21..], b[21..]);
}

#[test]
fn a_latent_section_needs_a_gaussian_source_and_no_shift_section() {
    use nmflow_format::{ModelFile, SourceKind};
    let bytes = tiny_latent_model_bytes(false);
    let file = ModelFile::decode(&bytes).unwrap();
    let mut kaiming = file.clone();
    kaiming.source = SourceKind::Kaiming;
    assert_eq!(
        kaiming.validate().unwrap_err(),
        FormatError::InvalidValue { part: 3, index: 1 }
    );
    let mut wrong = file.clone();
    if let Some(l) = &mut wrong.latent {
        l.dim = 4;
    }
    // The trunk's first layer takes 3 values, not 4; the field too.
    assert_eq!(
        wrong.validate().unwrap_err(),
        FormatError::DimensionMismatch {
            part: 7,
            index: 0,
            expected: 4,
            found: 3
        }
    );
    let shift_bytes = nmflow_runtime::testing::tiny_shift_model_bytes();
    let shift = ModelFile::decode(&shift_bytes).unwrap().shift;
    let mut with_shift = file;
    with_shift.shift = shift;
    assert_eq!(
        with_shift.validate().unwrap_err(),
        FormatError::InvalidValue { part: 6, index: 0 }
    );
}

#[test]
fn a_conditioned_model_synthesizes_for_the_task_it_is_shown() {
    let bytes = tiny_condition_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    assert!(model.is_conditioned());
    assert_eq!(model.field_kind(), FieldKind::Set);
    let floats = model.workspace_floats(SolverKind::Euler);
    let mut ws: Workspace<512> = Workspace::new();
    assert!(floats <= 512, "{floats}");
    let task = Support {
        inputs: &TINY_SUPPORT,
        labels: &TINY_SUPPORT_LABELS,
    };
    let (euler, steps) = (SolverKind::Euler, model.file.steps);
    let mut run = |s: &Support<'_>, w: f32, solver| {
        synthesize_task(&model, s, w, 3, solver, steps, &mut ws).map(|(x, nfe)| (x.to_vec(), nfe))
    };
    let (cond, nfe) = run(&task, 1.0, euler).unwrap();
    assert_eq!(nfe, 3);
    assert!(cond.iter().all(|v| v.is_finite()));
    assert_eq!(run(&task, 1.0, euler).unwrap().0, cond, "deterministic");
    // w = 0 is the unconditional field, which a plain synthesis samples.
    let (uncond, nfe0) = run(&task, 0.0, euler).unwrap();
    assert_eq!(nfe0, 3);
    assert_ne!(uncond, cond);
    // Another labelling of the same examples is another task.
    let swapped = TINY_SUPPORT_LABELS.map(|l| 1 - l);
    let other = Support {
        inputs: &TINY_SUPPORT,
        labels: &swapped,
    };
    assert_ne!(run(&other, 1.0, euler).unwrap().0, cond);
    // w = 2 costs two evaluations a stage and extrapolates from the unconditional field.
    let (guided, nfe2) = run(&task, 2.0, euler).unwrap();
    assert_eq!(nfe2, 6);
    assert!(guided.iter().zip(&cond).any(|(a, b)| a != b));
    let (heun, nfe_h) = run(&task, 1.0, SolverKind::Heun).unwrap();
    assert_eq!(nfe_h, 6);
    assert!(heun.iter().all(|v| v.is_finite()));
    let mut plain: Workspace<512> = Workspace::new();
    let p = synthesize_with(&model, 3, euler, steps, &mut plain)
        .unwrap()
        .0;
    assert_eq!(p, uncond.as_slice());
    // A label without an example is absent from the task: finite weights, not an error, and
    // not the full task's; an unconditional model refuses a task.
    let one_class = [0u8; 4];
    let absent = Support {
        inputs: &TINY_SUPPORT,
        labels: &one_class,
    };
    let (partial, _) = run(&absent, 1.0, euler).unwrap();
    assert!(partial.iter().all(|v| v.is_finite()));
    assert_ne!(partial, cond);
    let set_bytes = tiny_set_model_bytes();
    let set = ModelView::parse(&set_bytes).unwrap();
    assert_eq!(
        synthesize_task(&set, &task, 1.0, 3, euler, 3, &mut plain).unwrap_err(),
        Error::NotConditioned
    );
}

/// A set field with the step-size input reads the solver's step size beside the time (a field
/// without it ignores it), and the file format refuses the input on a field that cannot take it.
#[test]
fn a_set_field_with_the_step_input_reads_the_step_size() {
    let at = |bytes: &[u8], h: f32| {
        let model = ModelView::parse(bytes).unwrap();
        let mut rng = Rng::new(5, 0);
        let x: Vec<f32> = (0..23).map(|_| rng.uniform_symmetric(1.0)).collect();
        let mut scratch = vec![0.0f32; vector_field::scratch_floats(&model)];
        let mut v = vec![0.0f32; 23];
        vector_field::evaluate(&model, &x, 0.3, h, &mut v, &mut scratch);
        v
    };
    let step = tiny_step_set_model_bytes();
    let model = ModelView::parse(&step).unwrap();
    assert!(model.file.step_input);
    assert_eq!(model.file.time_width(), 8);
    assert_ne!(at(&step, 0.25), at(&step, 0.125));
    let plain = tiny_set_model_bytes();
    assert_eq!(at(&plain, 0.25), at(&plain, 0.125));
    // The time input is twice as wide: four more floats of scratch than the plain set field.
    let plain_model = ModelView::parse(&plain).unwrap();
    assert_eq!(
        model.workspace_floats(SolverKind::Euler),
        plain_model.workspace_floats(SolverKind::Euler) + 4
    );
    // Synthesis feeds 1/K: other step counts give other (finite) weights.
    let mut ws: Workspace<512> = Workspace::new();
    let four = synthesize_with(&model, 7, SolverKind::Euler, 4, &mut ws)
        .unwrap()
        .0
        .to_vec();
    let eight = synthesize_with(&model, 7, SolverKind::Euler, 8, &mut ws)
        .unwrap()
        .0
        .to_vec();
    assert!(four.iter().chain(&eight).all(|w| w.is_finite()));
    assert_ne!(four, eight);
    // An MLP field, or a time input of the plain width, with the flag set: refused.
    for bytes in [tiny_model_bytes(), tiny_set_model_bytes()] {
        let mut file = nmflow_format::ModelFile::decode(&bytes).unwrap();
        file.step_input = true;
        assert!(file.encode_into(&mut vec![0u8; 8192]).is_err());
        // The same written by hand: the flag is the payload's byte before the absent
        // per-coordinate term's tag and the SDE's four-byte t0.
        let mut payload = bytes[nmflow_format::HEADER_LEN..].to_vec();
        let at = payload.len() - 6;
        payload[at] = 1;
        let mut forged = nmflow_format::Header::for_payload(&payload)
            .to_bytes()
            .to_vec();
        forged.extend(payload);
        let err = ModelView::parse(&forged).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Format(FormatError::InvalidValue { part: 4, .. })
            ) || matches!(
                err,
                Error::Format(FormatError::DimensionMismatch { part: 5, .. })
            ),
            "{err:?}"
        );
    }
}

#[test]
fn the_per_coordinate_term_adds_a_times_x_plus_b_to_the_mlp_velocity() {
    use nmflow_format::{FieldWeights, ModelFile};
    let diag = tiny_diagonal_model_bytes();
    let plain = tiny_model_bytes();
    let (with, without) = (
        ModelView::parse(&diag).unwrap(),
        ModelView::parse(&plain).unwrap(),
    );
    let term = with.file.diagonal.expect("the tiny model's term");
    let FieldWeights::Int8 { q, scales } = term.weights else {
        panic!("int8 term")
    };
    let f32_at = |b: &[u8], i: usize| f32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    let mut rng = Rng::new(8, 0);
    for t in [0.0f32, 0.3, 0.9] {
        let x: Vec<f32> = (0..23).map(|_| rng.uniform_symmetric(1.5)).collect();
        let mut emb = [0.0f32; 4];
        vector_field::time_embedding(with.file.time.max_frequency, t, &mut emb);
        // [a | b] by hand from the int8 rows.
        let row = |o: usize| {
            let dot: f32 = (0..4).map(|i| f32::from(q[o * 4 + i] as i8) * emb[i]).sum();
            dot * f32_at(scales, o) + f32_at(term.bias, o)
        };
        let (v, v0) = (velocity(&with, &x, t), velocity(&without, &x, t));
        let mut moved = 0.0f32;
        for o in 0..23 {
            let expected = v0[o] + row(o) * x[o] + row(23 + o);
            assert!(
                (v[o] - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                "t {t}, value {o}: {} vs {expected}",
                v[o]
            );
            moved = moved.max((v[o] - v0[o]).abs());
        }
        assert!(moved > 1e-2, "a term that changes nothing tests nothing");
    }
    // One state-sized buffer more, and the term's multiply-accumulates.
    assert_eq!(
        with.workspace_floats(SolverKind::Rk4),
        without.workspace_floats(SolverKind::Rk4) + 23
    );
    assert_eq!(
        with.macs_per_evaluation(),
        without.macs_per_evaluation() + 4 * 46
    );
    // Synthesis with every solver stays finite and differs from the plain field's.
    let mut ws: Workspace<512> = Workspace::new();
    for solver in [SolverKind::Euler, SolverKind::Heun, SolverKind::Rk4] {
        let a = synthesize_with(&with, 7, solver, 4, &mut ws)
            .unwrap()
            .0
            .to_vec();
        let b = synthesize_with(&without, 7, solver, 4, &mut ws)
            .unwrap()
            .0
            .to_vec();
        assert!(a.iter().all(|w| w.is_finite()));
        assert_ne!(a, b, "{solver:?}");
    }

    // Refused: on a set field, with an activation, and with the wrong shapes, naming part 9.
    let part9 = |file: &ModelFile<'_>| match file.validate() {
        Err(FormatError::InvalidValue { part, .. })
        | Err(FormatError::DimensionMismatch { part, .. }) => part,
        other => panic!("{other:?}"),
    };
    let base = ModelFile::decode(&diag).unwrap();
    let set_bytes = tiny_set_model_bytes();
    let mut on_set = ModelFile::decode(&set_bytes).unwrap();
    on_set.diagonal = base.diagonal;
    assert_eq!(part9(&on_set), nmflow_format::DIAGONAL_PART);
    let mut silu = base.clone();
    silu.diagonal.as_mut().unwrap().activation = nmflow_format::Activation::Silu;
    assert_eq!(part9(&silu), nmflow_format::DIAGONAL_PART);
    let mut narrow = base.clone();
    narrow.diagonal.as_mut().unwrap().d_out = 23;
    assert_eq!(part9(&narrow), nmflow_format::DIAGONAL_PART);
    let mut wide_in = base.clone();
    wide_in.diagonal.as_mut().unwrap().d_in = 8;
    assert_eq!(part9(&wide_in), nmflow_format::DIAGONAL_PART);
    assert!(
        FormatError::InvalidValue { part: 9, index: 0 }
            .to_string()
            .contains("per-coordinate")
    );
}

/// The memoryless SDE sampler by hand on the tiny model with a Gaussian source: the ODE step to
/// t0, then Euler–Maruyama with the source's moments worked out per block from the file and one
/// normal per coordinate from the classifier's noise stream.
#[test]
fn the_memoryless_sde_is_an_ode_step_to_t0_then_euler_maruyama_with_the_source_moments() {
    use nmflow_format::model::le_f32;
    use nmflow_runtime::source::{self, STREAM_SDE, STREAM_SOURCE, standard_normal};
    let bytes = tiny_sde_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let file = &model.file;
    assert_eq!(
        (file.solver, file.steps, file.sde_t0),
        (SolverKind::Sde, 4, 0.2)
    );
    // One velocity more than Euler's workspace.
    assert_eq!(
        model.workspace_floats(SolverKind::Sde),
        model.workspace_floats(SolverKind::Euler) + 23
    );
    let std = match file.source {
        nmflow_format::SourceKind::Gaussian { std } => std,
        nmflow_format::SourceKind::Kaiming => unreachable!("the tiny SDE model is Gaussian"),
    };
    // Block of every coordinate: W1 (12), b1 (3), W2 (6), b2 (2).
    let block: Vec<usize> = [12, 3, 6, 2]
        .iter()
        .enumerate()
        .flat_map(|(b, &n)| std::iter::repeat_n(b, n))
        .collect();
    let mean = |b: usize| {
        (
            le_f32(file.normalization.mean, b).unwrap(),
            le_f32(file.normalization.std, b).unwrap(),
        )
    };
    let (seed, steps) = (11u64, 3u16);
    let mut x = vec![0.0f32; 23];
    source::sample(file, &mut Rng::new(seed, STREAM_SOURCE), &mut x);
    for (i, v) in x.iter_mut().enumerate() {
        let (m, s) = mean(block[i]);
        *v = (*v - m) / s;
    }
    let (mut v, mut scratch) = (vec![0.0f32; 23], vec![0.0f32; 64]);
    let h_in = 1.0 / f32::from(steps);
    vector_field::evaluate(&model, &x, 0.0, h_in, &mut v, &mut scratch);
    for (xi, vi) in x.iter_mut().zip(&v) {
        *xi += 0.2 * vi;
    }
    let mut noise = Rng::new(seed, STREAM_SDE);
    let h = 0.8 / 2.0;
    for k in 0..2 {
        let t = 0.2 + k as f32 * h;
        vector_field::evaluate(&model, &x, t, h_in, &mut v, &mut scratch);
        for i in 0..23 {
            let (m, s) = mean(block[i]);
            let (mu, c) = (-m / s, std / s);
            let drift = 2.0 * v[i] + mu - (x[i] - (1.0 - t) * mu) / t;
            let sigma = (2.0 * (1.0 - t) / t).sqrt();
            x[i] += drift * h + c * standard_normal(&mut noise) * sigma * h.sqrt();
        }
    }
    for (i, w) in x.iter_mut().enumerate() {
        let (m, s) = mean(block[i]);
        *w = *w * s + m;
    }
    let mut ws: Workspace<512> = Workspace::new();
    let (got, nfe) = synthesize_with(&model, seed, SolverKind::Sde, steps, &mut ws).unwrap();
    assert_eq!(nfe, 3);
    for (i, (a, b)) in got.iter().zip(&x).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "weight {i}: {a} vs {b}"
        );
    }
    // The noise is the classifier's own: another seed, other weights; and the ODE of the same
    // field differs. Fewer than 2 steps are taken as 2.
    let other = synthesize_with(&model, seed + 1, SolverKind::Sde, steps, &mut ws)
        .unwrap()
        .0
        .to_vec();
    assert_ne!(other, x);
    let ode = synthesize_with(&model, seed, SolverKind::Euler, steps, &mut ws)
        .unwrap()
        .0
        .to_vec();
    assert_ne!(ode, x);
    let one = synthesize_with(&model, seed, SolverKind::Sde, 1, &mut ws)
        .unwrap()
        .1;
    assert_eq!(one, 2);
}

/// Version 8's sampler settings are validated: an SDE of fewer than 2 steps, a t0 outside (0, 1).
#[test]
fn sde_settings_out_of_range_are_refused() {
    let bytes = tiny_sde_model_bytes();
    for (steps, t0, index) in [
        (1u16, 0.2f32, 0u16),
        (4, 0.0, 1),
        (4, 1.0, 1),
        (4, f32::NAN, 1),
    ] {
        let mut file = nmflow_format::ModelFile::decode(&bytes).unwrap();
        file.steps = steps;
        file.sde_t0 = t0;
        assert_eq!(
            file.validate(),
            Err(FormatError::InvalidValue {
                part: nmflow_format::SAMPLER_PART,
                index
            }),
            "steps {steps}, t0 {t0}"
        );
    }
}
