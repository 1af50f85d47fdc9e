//! Golden files: the tiny models' exact bytes and their synthesized weights for a fixed seed, per
//! format version. Regenerate only on purpose:
//! `UPDATE_GOLDEN=1 cargo test -p nmflow-tests --test golden`, then review the diff like code (a
//! byte change needs a FORMAT_VERSION bump and a changelog entry). Files of older versions are never
//! regenerated: they prove that this build still reads what earlier builds wrote.

use nmflow_runtime::testing::{
    TINY_SUPPORT, TINY_SUPPORT_LABELS, TinyModelBytes, tiny_condition_model_bytes,
    tiny_diagonal_model_bytes, tiny_latent_model_bytes, tiny_model_bytes, tiny_sde_model_bytes,
    tiny_set_model_bytes, tiny_shift_model_bytes, tiny_step_set_model_bytes,
};
use nmflow_runtime::{ModelView, Support, Workspace, synthesize, synthesize_task};
use nmflow_tests::fixtures;

/// The weights `bytes` synthesizes for seed 7 (a conditioned model: for the tiny support set),
/// one `{:.9e}` line each.
fn seed7(bytes: &[u8]) -> Vec<f32> {
    let model = ModelView::parse(bytes).unwrap();
    let mut ws: Workspace<512> = Workspace::new();
    if model.is_conditioned() {
        let task = Support {
            inputs: &TINY_SUPPORT,
            labels: &TINY_SUPPORT_LABELS,
        };
        let (solver, steps) = (model.file.solver, model.file.steps);
        return synthesize_task(&model, &task, 1.0, 7, solver, steps, &mut ws)
            .unwrap()
            .0
            .to_vec();
    }
    synthesize(&model, 7, &mut ws).unwrap().to_vec()
}

fn assert_close(weights: &[f32], txt: &str) {
    let expected: Vec<f32> = std::fs::read_to_string(fixtures().join(txt))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(expected.len(), weights.len(), "{txt}");
    for (i, (a, b)) in weights.iter().zip(&expected).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{txt}: weight {i}: {a} vs {b}"
        );
    }
}

fn pinned(bytes: &[u8], bin: &str, txt: &str) {
    let weights = seed7(bytes);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(fixtures().join(bin), bytes).unwrap();
        let text: String = weights.iter().map(|w| format!("{w:.9e}\n")).collect();
        std::fs::write(fixtures().join(txt), text).unwrap();
    }
    assert_eq!(
        bytes,
        std::fs::read(fixtures().join(bin)).unwrap().as_slice(),
        "{bin}: model bytes changed"
    );
    assert_close(&weights, txt);
}

#[test]
fn tiny_model_bytes_and_weights_are_pinned() {
    for (name, bytes) in version_7_models()
        .into_iter()
        .chain([("tiny-sde", tiny_sde_model_bytes())])
    {
        pinned(
            &bytes,
            &format!("{name}-v8.nmf"),
            &format!("{name}-v8-seed7.txt"),
        );
    }
}

/// Reads `NAME-vVERSION.nmf` of every `(NAME, today's bytes)`: the file has that version,
/// synthesizes its pinned weights and today's model's, and `check(old, today)` holds.
fn still_reads(
    version: u16,
    models: &[(&str, TinyModelBytes)],
    check: impl Fn(&ModelView<'_>, &ModelView<'_>, &str),
) {
    for (name, today) in models {
        let bin = format!("{name}-v{version}.nmf");
        let old = std::fs::read(fixtures().join(&bin)).unwrap();
        assert_eq!(u16::from_le_bytes([old[4], old[5]]), version);
        assert_close(&seed7(&old), &format!("{name}-v{version}-seed7.txt"));
        assert_eq!(seed7(&old), seed7(today), "{bin}");
        check(
            &ModelView::parse(&old).unwrap(),
            &ModelView::parse(today).unwrap(),
            &bin,
        );
    }
}

/// The tiny models of version 4 builds, by name.
fn version_4_models() -> Vec<(&'static str, TinyModelBytes)> {
    vec![
        ("tiny", tiny_model_bytes()),
        ("tiny-set", tiny_set_model_bytes()),
        ("tiny-shift", tiny_shift_model_bytes()),
        ("tiny-latent-units", tiny_latent_model_bytes(true)),
        ("tiny-latent-dense", tiny_latent_model_bytes(false)),
    ]
}

/// The tiny models of version 6 builds, by name.
fn version_6_models() -> Vec<(&'static str, TinyModelBytes)> {
    let mut models = version_4_models();
    models.push(("tiny-condition", tiny_condition_model_bytes()));
    models.push(("tiny-step-set", tiny_step_set_model_bytes()));
    models
}

/// The tiny models of version 7 builds, by name.
fn version_7_models() -> Vec<(&'static str, TinyModelBytes)> {
    let mut models = version_6_models();
    models.push(("tiny-diagonal", tiny_diagonal_model_bytes()));
    models
}

#[test]
fn version_7_files_still_read_and_synthesize_what_they_did() {
    still_reads(7, &version_7_models(), |a, b, bin| {
        let (a, b) = (&a.file, &b.file);
        assert_eq!(a.sde_t0, nmflow_format::DEFAULT_SDE_T0);
        assert_eq!(
            (&a.shift, &a.latent, &a.condition, a.step_input, &a.diagonal),
            (&b.shift, &b.latent, &b.condition, b.step_input, &b.diagonal),
            "{bin}"
        );
    });
}

#[test]
fn version_6_files_still_read_and_synthesize_what_they_did() {
    still_reads(6, &version_6_models(), |a, b, bin| {
        let (a, b) = (&a.file, &b.file);
        assert!(a.diagonal.is_none());
        assert_eq!(
            (&a.shift, &a.latent, &a.condition, a.step_input),
            (&b.shift, &b.latent, &b.condition, b.step_input),
            "{bin}"
        );
    });
}

#[test]
fn version_5_files_still_read_and_synthesize_what_they_did() {
    let mut models = version_4_models();
    models.push(("tiny-condition", tiny_condition_model_bytes()));
    still_reads(5, &models, |a, b, bin| {
        let (a, b) = (&a.file, &b.file);
        assert!(!a.step_input);
        assert_eq!(
            (&a.shift, &a.latent, &a.condition),
            (&b.shift, &b.latent, &b.condition),
            "{bin}"
        );
    });
}

#[test]
fn version_4_files_still_read_and_synthesize_what_they_did() {
    still_reads(4, &version_4_models(), |a, b, bin| {
        let (a, b) = (&a.file, &b.file);
        assert!(a.condition.is_none());
        assert_eq!((&a.shift, &a.latent), (&b.shift, &b.latent), "{bin}");
    });
}

#[test]
fn version_3_files_still_read_and_synthesize_what_they_did() {
    for (bin, txt, today) in [
        ("tiny-v3.nmf", "tiny-v3-seed7.txt", tiny_model_bytes()),
        (
            "tiny-set-v3.nmf",
            "tiny-set-v3-seed7.txt",
            tiny_set_model_bytes(),
        ),
        (
            "tiny-shift-v3.nmf",
            "tiny-shift-v3-seed7.txt",
            tiny_shift_model_bytes(),
        ),
    ] {
        let old = std::fs::read(fixtures().join(bin)).unwrap();
        assert_eq!(u16::from_le_bytes([old[4], old[5]]), 3);
        assert_close(&seed7(&old), txt);
        assert_eq!(seed7(&old), seed7(&today), "{bin}");
        let (a, b) = (
            ModelView::parse(&old).unwrap().file,
            ModelView::parse(&today).unwrap().file,
        );
        assert!(a.latent.is_none());
        assert_eq!(a.shift, b.shift, "{bin}");
    }
}

#[test]
fn version_2_files_still_read_and_synthesize_what_they_did() {
    for (bin, txt, today) in [
        ("tiny-v2.nmf", "tiny-v2-seed7.txt", tiny_model_bytes()),
        (
            "tiny-set-v2.nmf",
            "tiny-set-v2-seed7.txt",
            tiny_set_model_bytes(),
        ),
    ] {
        let old = std::fs::read(fixtures().join(bin)).unwrap();
        assert_eq!(u16::from_le_bytes([old[4], old[5]]), 2);
        assert_close(&seed7(&old), txt);
        assert_eq!(seed7(&old), seed7(&today), "{bin}");
        assert!(ModelView::parse(&old).unwrap().file.shift.is_none());
    }
}

#[test]
fn a_version_1_file_still_reads_and_synthesizes_what_it_did() {
    let old = std::fs::read(fixtures().join("tiny-v1.nmf")).unwrap();
    assert_eq!(u16::from_le_bytes([old[4], old[5]]), 1);
    assert_close(&seed7(&old), "tiny-v1-seed7.txt");
    // The same model, written today, is a version 6 file synthesizing the same weights.
    assert_eq!(seed7(&old), seed7(&tiny_model_bytes()));
}
