//! Arbitrary bytes → `ModelView::parse` (and, when it parses, one synthesis; with a shift section,
//! one decision of its detector): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmflow_runtime::shift::ShiftDetector;
use nmflow_runtime::{ModelView, Workspace, synthesize};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = ModelView::parse(data) {
        let mut ws: Box<Workspace<16_384>> = Box::default();
        let _ = synthesize(&model, 1, &mut ws);
        if let Some(section) = model.file.shift {
            let floats = ShiftDetector::workspace_floats(&model, &section);
            let window = usize::from(section.window).saturating_mul(model.input_dim());
            if floats <= 1 << 20 && window <= 1 << 16 {
                let mut buf = vec![0.0f32; floats];
                if let Ok(mut det) = ShiftDetector::new(&model, &mut buf) {
                    let _ = det.decide(&vec![0.5f32; window], &mut |_| {});
                }
            }
        }
    }
});
