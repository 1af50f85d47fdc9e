//! Scalar maths from `libm` (the same code on every target; no `std`).
//!
//! Why not `micromath` (the small-and-fast `no_std` maths crate): measured against an `f64`
//! reference on the host, its `sin`/`cos` err by 1.1e-3 (libm: 3e-8) over the time embedding's
//! arguments (0 to 2π·100), `exp` by 2.4e-3 relative (libm: 7e-8), SiLU by 8e-4 relative, `ln`
//! and `sqrt` by up to 100 % and 6 % relative; with it in place of libm the runtime's
//! synthesized weights differ from the host sampler's by 6.2e-4 relative L2 (classifier 0 of
//! `tests/tests/parity.rs`), six times the 1e-4 the parity test allows. So the runtime uses libm,
//! and micromath is not a dependency (BENCHMARKS.md, "Runtime maths").

/// e^x.
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
}

/// Natural logarithm.
pub fn ln(x: f32) -> f32 {
    libm::logf(x)
}

/// Square root.
pub fn sqrt(x: f32) -> f32 {
    libm::sqrtf(x)
}

/// Sine.
pub fn sin(x: f32) -> f32 {
    libm::sinf(x)
}

/// Cosine.
pub fn cos(x: f32) -> f32 {
    libm::cosf(x)
}

/// `base^e`.
pub fn powf(base: f32, e: f32) -> f32 {
    libm::powf(base, e)
}

/// SiLU: `x · sigmoid(x)`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}
