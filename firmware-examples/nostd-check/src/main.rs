//! Builds for a bare-metal target with no allocator: if `alloc` or `std` sneaks into
//! nmflow-runtime, this fails to link or compile. With `--features panic-never`, the panic handler
//! calls an undefined symbol, so a release link succeeds only if no panic path survives
//! optimisation in the public API used here (parse arbitrary bytes, synthesize, classify, ensemble
//! statistics, the calibrated shift detector with guided synthesis and the classifier's gradient,
//! and a class-conditioned model's synthesis for a support set).
#![no_std]
#![no_main]

use core::hint::black_box;
use nmflow_runtime::classifier::{Classifier, ClassifierScratch};
use nmflow_runtime::shift::{EnsembleStats, ShiftDetector, softmax};
use nmflow_runtime::{ModelView, Support, Workspace, synthesize, synthesize_task};

#[cfg(feature = "panic-never")]
unsafe extern "C" {
    fn __a_panic_path_is_reachable() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    #[cfg(feature = "panic-never")]
    unsafe {
        __a_panic_path_is_reachable()
    }
    #[cfg(not(feature = "panic-never"))]
    loop {
        core::hint::spin_loop();
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let bytes = black_box([0u8; 4096]);
    let len = black_box(4096usize).min(bytes.len());
    let mut ws: Workspace<4096> = Workspace::new();
    let mut scratch: ClassifierScratch<256> = ClassifierScratch::new();
    let mut logits = [0.0f32; 16];
    let mut probs = [0.0f32; 16];
    if let Ok(model) = ModelView::parse(bytes.get(..len).unwrap_or(&[])) {
        let classes = model.num_classes().min(16);
        let input = black_box([0.5f32; 64]);
        let dim = model.input_dim().min(64);
        if let Ok(stats) = EnsembleStats::<8, 16>::new(black_box(4)).as_mut() {
            for seed in 0..black_box(3u64) {
                if let Ok(w) = synthesize(&model, seed, &mut ws) {
                    let w = black_box(w);
                    if let Ok(clf) = Classifier::new(&model, w) {
                        let out = logits.get_mut(..classes).unwrap_or(&mut []);
                        if clf
                            .logits(input.get(..dim).unwrap_or(&[]), &mut scratch, out)
                            .is_ok()
                        {
                            let p = probs.get_mut(..classes).unwrap_or(&mut []);
                            softmax(out, p);
                            stats.add(0, p);
                        }
                    }
                }
                stats.finish_member();
            }
            black_box(stats.statistics());
        }
        // A task's support set: encoded once, then the guided class-conditioned synthesis.
        let support = black_box([0.25f32; 640]);
        let labels = black_box([0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let n = black_box(10usize).min(labels.len());
        let task = Support {
            inputs: support.get(..n.saturating_mul(dim)).unwrap_or(&[]),
            labels: labels.get(..n).unwrap_or(&[]),
        };
        let solver = model.file.solver;
        black_box(synthesize_task(&model, &task, black_box(2.0), 5, solver, 4, &mut ws)).ok();
        let mut det_ws = [0.0f32; 8192];
        if let Ok(mut det) = ShiftDetector::new(&model, &mut det_ws) {
            let window = black_box([0.25f32; 1024]);
            let n = black_box(1024usize).min(window.len());
            black_box(det.decide(window.get(..n).unwrap_or(&[]), &mut |m| {
                black_box(m);
            }))
            .ok();
        }
    }
    black_box(&ws);
    loop {
        core::hint::spin_loop();
    }
}
