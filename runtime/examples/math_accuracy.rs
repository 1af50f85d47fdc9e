//! How far the runtime's scalar maths (libm) and micromath are from an `f64` reference over the
//! arguments the runtime uses: `cargo run --release -p nmflow-runtime --example math_accuracy`.
//! The table is in BENCHMARKS.md ("Runtime maths"); it is why the runtime uses libm.
// A host measurement program, not device code: the runtime's no-panic lints do not apply.
#![allow(
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use micromath::F32Ext;

/// Prints the largest absolute and relative errors of `ours` (libm) and `micro` (micromath)
/// against `exact` on `n + 1` evenly spaced points of `[lo, hi]` (relative to at least 1e-3).
fn row(
    name: &str,
    (lo, hi): (f64, f64),
    ours: impl Fn(f32) -> f32,
    micro: impl Fn(f32) -> f32,
    exact: impl Fn(f64) -> f64,
) {
    let n = 2_000_000;
    let mut worst = [0f64; 4];
    for i in 0..=n {
        let x = (lo + (hi - lo) * f64::from(i) / f64::from(n)) as f32;
        let e = exact(f64::from(x));
        let scale = e.abs().max(1e-3);
        for (k, v) in [f64::from(ours(x)), f64::from(micro(x))]
            .into_iter()
            .enumerate()
        {
            worst[2 * k] = worst[2 * k].max((v - e).abs());
            worst[2 * k + 1] = worst[2 * k + 1].max((v - e).abs() / scale);
        }
    }
    println!(
        "| {name} | [{lo}, {hi:.1}] | {:.1e} | {:.1e} | {:.1e} | {:.1e} |",
        worst[0], worst[1], worst[2], worst[3]
    );
}

fn main() {
    println!(
        "| function | arguments | libm max abs | libm max rel | micromath max abs | micromath max rel |"
    );
    println!("|---|---|---|---|---|---|");
    let tau100 = std::f64::consts::TAU * 100.0;
    row("sin", (0.0, tau100), libm::sinf, F32Ext::sin, f64::sin);
    row("cos", (0.0, tau100), libm::cosf, F32Ext::cos, f64::cos);
    row("exp", (-20.0, 20.0), libm::expf, F32Ext::exp, f64::exp);
    row(
        "silu",
        (-20.0, 20.0),
        |x| x / (1.0 + libm::expf(-x)),
        |x| x / (1.0 + F32Ext::exp(-x)),
        |x| x / (1.0 + (-x).exp()),
    );
    row("ln", (1e-6, 1.0), libm::logf, F32Ext::ln, f64::ln);
    row("sqrt", (1e-6, 100.0), libm::sqrtf, F32Ext::sqrt, f64::sqrt);
}
