//! Host time per synthesized classifier (the runtime's code, one thread).
//!
//! `cargo bench -p nmflow-runtime --bench synthesize`; model files are taken from
//! `$NMFLOW_BENCH_MODELS` (colon-separated absolute paths), else the firmware example's model.
// A benchmark harness, not device code: panicking on a bad model file is fine here.
#![allow(clippy::expect_used, clippy::arithmetic_side_effects)]
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nmflow_runtime::{ModelView, Workspace, synthesize};

fn bench(c: &mut Criterion) {
    let default = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware-examples/app/assets/model.nmf"
    )
    .to_string();
    let models = std::env::var("NMFLOW_BENCH_MODELS").unwrap_or(default);
    for path in models.split(':').filter(|p| !p.is_empty()) {
        let Ok(bytes) = std::fs::read(path) else {
            eprintln!("skipping {path}: not readable");
            continue;
        };
        let model = ModelView::parse(&bytes).expect("valid model");
        let mut ws: Box<Workspace<262_144>> = Box::default();
        let name = std::path::Path::new(path)
            .file_name()
            .map_or(path.into(), |n| n.to_string_lossy().into_owned());
        let mut seed = 0u64;
        c.bench_function(
            &format!("synthesize {name} (P={})", model.num_params()),
            |b| {
                b.iter(|| {
                    seed += 1;
                    black_box(synthesize(&model, seed, &mut ws).expect("synthesis").len())
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
