//! Golden files: the tiny model's exact bytes and its synthesized weights for a fixed seed.
//! Regenerate only on purpose: `UPDATE_GOLDEN=1 cargo test -p nmflow-tests --test golden`, then
//! review the diff like code (a byte change needs a FORMAT_VERSION bump and a changelog entry).

use nmflow_runtime::testing::tiny_model_bytes;
use nmflow_runtime::{ModelView, Workspace, synthesize};
use nmflow_tests::fixtures;

#[test]
fn tiny_model_bytes_and_weights_are_pinned() {
    let bytes = tiny_model_bytes();
    let model = ModelView::parse(&bytes).unwrap();
    let mut ws: Workspace<32, 32> = Workspace::new();
    let weights = synthesize(&model, 7, &mut ws).unwrap();
    let text: String = weights.iter().map(|w| format!("{w:.9e}\n")).collect();
    let (bin, txt) = (
        fixtures().join("tiny-v1.nmf"),
        fixtures().join("tiny-v1-seed7.txt"),
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&bin, &*bytes).unwrap();
        std::fs::write(&txt, &text).unwrap();
    }
    assert_eq!(
        &*bytes,
        std::fs::read(&bin).unwrap().as_slice(),
        "model bytes changed"
    );
    let expected: Vec<f32> = std::fs::read_to_string(&txt)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(expected.len(), weights.len());
    for (i, (a, b)) in weights.iter().zip(&expected).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "weight {i}: {a} vs {b}"
        );
    }
    // The pinned file still decodes with this build (a version bump must keep a rejected copy).
    assert!(ModelView::parse(&std::fs::read(&bin).unwrap()).is_ok());
}
