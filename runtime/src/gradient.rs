//! The synthesized classifier's forward pass with its pre-activations kept, and the backward pass
//! that accumulates a loss's gradient with respect to the classifier's flat weights: what reward
//! guidance needs on the device (no autodiff, no allocation).
//!
//! Scratch: [`scratch_floats`] values from the caller (the pre-activations of every layer, then two
//! work vectors of the widest layer for the backward pass).

use nmflow_format::{Activation, ClassifierLayer};

use crate::math;
use crate::model_view::ModelView;
use crate::vector_field::{activate, split};

/// Floats of scratch [`forward`] and [`backward`] need: the pre-activations of every layer
/// (`Σ d_out`) and two vectors of the widest layer.
pub fn scratch_floats(model: &ModelView<'_>) -> usize {
    let (total, widest) = sizes(model);
    total.saturating_add(widest.saturating_mul(2))
}

/// The classifier's pre-activation count (`Σ d_out`) and its widest layer side.
fn sizes(model: &ModelView<'_>) -> (usize, usize) {
    let layers = &model.file.classifier;
    let total = layers
        .iter()
        .map(|l| l.d_out as usize)
        .fold(0usize, usize::saturating_add);
    let widest = layers
        .iter()
        .map(|l| (l.d_in as usize).max(l.d_out as usize))
        .max()
        .unwrap_or(0);
    (total, widest)
}

/// The derivative of an activation at the pre-activation `v`.
pub fn activation_derivative(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => {
            if v > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu => {
            if v > 0.0 {
                1.0
            } else {
                0.01
            }
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + math::exp(-v));
            s * (1.0 + v * (1.0 - s))
        }
    }
}

/// One layer's place in the flat weights: (weight offset, bias offset, next layer's offset).
fn offsets(layer: &ClassifierLayer, at: usize) -> (usize, usize, usize) {
    let (d_in, d_out) = (layer.d_in as usize, layer.d_out as usize);
    let b = at.saturating_add(d_in.saturating_mul(d_out));
    (at, b, b.saturating_add(d_out))
}

/// Runs the classifier with `weights` (the model's layout) on `input`, keeping every layer's
/// pre-activations at the front of `scratch`, and writes the outputs (the last layer's
/// activations) into `logits`. Lengths are the caller's responsibility (checked by
/// [`crate::shift::ShiftDetector`]); short buffers give zeros, never a panic.
pub fn forward(
    model: &ModelView<'_>,
    weights: &[f32],
    input: &[f32],
    scratch: &mut [f32],
    logits: &mut [f32],
) {
    let layers = &model.file.classifier;
    let mut at = 0usize;
    let mut pre_at = 0usize;
    let n = layers.len();
    for (l, layer) in layers.iter().enumerate() {
        let (d_in, d_out) = (layer.d_in as usize, layer.d_out as usize);
        let (w_at, b_at, next) = offsets(layer, at);
        let w = weights.get(w_at..b_at).unwrap_or(&[]);
        let bias = weights.get(b_at..next).unwrap_or(&[]);
        let (done, rest) = scratch.split_at_mut(pre_at.min(scratch.len()));
        let prev_act = if l == 0 {
            Activation::Identity
        } else {
            layers
                .get(l.saturating_sub(1))
                .map_or(Activation::Identity, |p| p.activation)
        };
        let src: &[f32] = if l == 0 {
            input
        } else {
            done.get(pre_at.saturating_sub(d_in)..).unwrap_or(&[])
        };
        let (dst, _) = split(rest, d_out);
        for ((row, b), y) in w.chunks_exact(d_in.max(1)).zip(bias).zip(dst.iter_mut()) {
            let mut s = 0.0f32;
            for (wi, xi) in row.iter().zip(src) {
                let a = if l == 0 { *xi } else { activate(prev_act, *xi) };
                s += wi * a;
            }
            *y = s + b;
        }
        if l.saturating_add(1) == n {
            for (o, p) in logits.iter_mut().zip(dst.iter()) {
                *o = activate(layer.activation, *p);
            }
        }
        at = next;
        pre_at = pre_at.saturating_add(d_out);
    }
}

/// Adds to `grad` (the model's layout) the gradient of a loss with respect to the weights, given
/// `dlogits`, the loss's gradient with respect to the outputs, after [`forward`] with the same
/// `weights`, `input` and `scratch`.
pub fn backward(
    model: &ModelView<'_>,
    weights: &[f32],
    input: &[f32],
    scratch: &mut [f32],
    dlogits: &[f32],
    grad: &mut [f32],
) {
    let layers = &model.file.classifier;
    let (total, widest) = sizes(model);
    let (pre, rest) = split(scratch, total);
    let (mut delta, rest) = split(rest, widest);
    let (mut below, _) = split(rest, widest);
    // Layer offsets, walked backwards from the end.
    let mut at = model.num_params();
    let mut pre_end = total;
    for (l, layer) in layers.iter().enumerate().rev() {
        let (d_in, d_out) = (layer.d_in as usize, layer.d_out as usize);
        let size = d_in.saturating_mul(d_out).saturating_add(d_out);
        let start = at.saturating_sub(size);
        let (w_at, b_at, _) = offsets(layer, start);
        let pre_start = pre_end.saturating_sub(d_out);
        let z = pre.get(pre_start..pre_end).unwrap_or(&[]);
        if l.saturating_add(1) == layers.len() {
            for ((d, g), v) in delta.iter_mut().zip(dlogits).zip(z) {
                *d = g * activation_derivative(layer.activation, *v);
            }
        }
        let prev = if l == 0 {
            None
        } else {
            layers.get(l.saturating_sub(1))
        };
        let src_pre = pre
            .get(pre_start.saturating_sub(d_in)..pre_start)
            .unwrap_or(&[]);
        // Bias and weight gradients.
        if let Some(gb) = grad.get_mut(b_at..b_at.saturating_add(d_out)) {
            for (g, d) in gb.iter_mut().zip(delta.iter()) {
                *g += d;
            }
        }
        if let Some(gw) = grad.get_mut(w_at..b_at) {
            for (row, d) in gw.chunks_exact_mut(d_in.max(1)).zip(delta.iter()) {
                match prev {
                    None => {
                        for (g, x) in row.iter_mut().zip(input) {
                            *g += d * x;
                        }
                    }
                    Some(p) => {
                        for (g, v) in row.iter_mut().zip(src_pre) {
                            *g += d * activate(p.activation, *v);
                        }
                    }
                }
            }
        }
        // The gradient at the layer's input, through the activation below.
        if let Some(p) = prev {
            let w = weights.get(w_at..b_at).unwrap_or(&[]);
            if let Some(b) = below.get_mut(..d_in) {
                b.fill(0.0);
                for (row, d) in w.chunks_exact(d_in.max(1)).zip(delta.iter()) {
                    for (bi, wi) in b.iter_mut().zip(row) {
                        *bi += wi * d;
                    }
                }
                for (bi, v) in b.iter_mut().zip(src_pre) {
                    *bi *= activation_derivative(p.activation, *v);
                }
            }
            core::mem::swap(&mut delta, &mut below);
        }
        at = start;
        pre_end = pre_start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny_model_bytes;

    fn loss(model: &ModelView<'_>, w: &[f32], x: &[f32], target: &[f32]) -> f32 {
        let mut scratch = [0.0f32; 64];
        let mut out = [0.0f32; 8];
        let c = model.num_classes();
        forward(model, w, x, &mut scratch, &mut out[..c]);
        out.iter()
            .zip(target)
            .take(c)
            .map(|(o, t)| 0.5 * (o - t) * (o - t))
            .sum()
    }

    /// The backward pass matches central finite differences of a squared loss, weight by weight.
    #[test]
    fn gradient_matches_finite_differences() {
        let bytes = tiny_model_bytes();
        let model = ModelView::parse(&bytes).unwrap();
        let p = model.num_params();
        let c = model.num_classes();
        let d = model.input_dim();
        assert!(scratch_floats(&model) <= 64);
        let mut rng = crate::Rng::new(3, 1);
        let w: std::vec::Vec<f32> = (0..p).map(|_| rng.uniform_symmetric(1.0)).collect();
        let x: std::vec::Vec<f32> = (0..d).map(|_| rng.uniform_symmetric(1.0)).collect();
        let target: std::vec::Vec<f32> = (0..c).map(|_| rng.uniform_symmetric(1.0)).collect();
        let mut scratch = [0.0f32; 64];
        let mut out = [0.0f32; 8];
        forward(&model, &w, &x, &mut scratch, &mut out[..c]);
        let dl: std::vec::Vec<f32> = out
            .iter()
            .zip(&target)
            .take(c)
            .map(|(o, t)| o - t)
            .collect();
        let mut grad = std::vec![0.0f32; p];
        backward(&model, &w, &x, &mut scratch, &dl, &mut grad);
        for i in 0..p {
            let mut wp = w.clone();
            let mut wm = w.clone();
            wp[i] += 1e-2;
            wm[i] -= 1e-2;
            let fd = (loss(&model, &wp, &x, &target) - loss(&model, &wm, &x, &target)) / 2e-2;
            assert!(
                (fd - grad[i]).abs() <= 2e-3 * fd.abs().max(1.0),
                "weight {i}: finite difference {fd}, backward {}",
                grad[i]
            );
        }
    }

    #[test]
    fn activation_derivatives_match_finite_differences() {
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu,
            Activation::Silu,
        ] {
            for v in [-2.0f32, -0.3, 0.4, 1.7] {
                let fd = (activate(act, v + 1e-3) - activate(act, v - 1e-3)) / 2e-3;
                assert!(
                    (fd - activation_derivative(act, v)).abs() < 1e-2,
                    "{act:?} at {v}"
                );
            }
        }
    }
}
