//! Arbitrary bytes → `ModelView::parse` (and, when it parses, one synthesis): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmflow_runtime::{ModelView, Workspace, synthesize};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = ModelView::parse(data) {
        let mut ws: Box<Workspace<16_384>> = Box::default();
        let _ = synthesize(&model, 1, &mut ws);
    }
});
