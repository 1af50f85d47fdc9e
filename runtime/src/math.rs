//! Scalar maths from `libm` (the same code on every target; no `std`).

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
