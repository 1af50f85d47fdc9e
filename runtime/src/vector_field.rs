//! The field's forward pass: int8 (or f32) weights × f32 activations, f32 accumulation.

use nmflow_format::{Activation, FieldLayer, FieldWeights};

use crate::kernels;
use crate::math;
use crate::model_view::{ModelView, le_f32};

/// Applies an activation.
pub fn activate(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::LeakyRelu => {
            if v > 0.0 {
                v
            } else {
                0.01 * v
            }
        }
        Activation::Silu => math::silu(v),
    }
}

/// Writes the time embedding `[sin(ω_j t)…, cos(ω_j t)…]` into `emb` (its length is the width).
pub fn time_embedding(max_frequency: f32, t: f32, emb: &mut [f32]) {
    let half = emb.len() / 2;
    let denom = half.saturating_sub(1).max(1) as f32;
    let (sines, cosines) = emb.split_at_mut(half);
    for (j, (s, c)) in sines.iter_mut().zip(cosines.iter_mut()).enumerate() {
        let e = if half > 1 { j as f32 / denom } else { 0.0 };
        let omega = core::f32::consts::TAU * math::powf(max_frequency, e);
        let angle = t * omega;
        *s = math::sin(angle);
        *c = math::cos(angle);
    }
}

/// `out[o] = act(Σ_i W[o][i]·input[i] + bias[o])` for one layer whose input is the concatenation
/// of `first` and `second` (the field's first layer takes `[x, emb(t)]`; later layers pass an empty
/// `second`).
pub fn dense(layer: &FieldLayer<'_>, first: &[f32], second: &[f32], out: &mut [f32]) {
    let d_in = (layer.d_in as usize).max(1);
    match layer.weights {
        FieldWeights::Int8 { q, scales } => {
            let mut rows = q.chunks_exact(d_in);
            for (o, y) in out.iter_mut().enumerate() {
                let Some(row) = rows.next() else { break };
                let s = le_f32(scales, o).unwrap_or(0.0);
                let (head, tail) = row.split_at(first.len().min(row.len()));
                let acc = kernels::dot_i8(head, first) + kernels::dot_i8(tail, second);
                *y = activate(
                    layer.activation,
                    acc * s + le_f32(layer.bias, o).unwrap_or(0.0),
                );
            }
        }
        FieldWeights::F32 { w } => {
            let mut rows = w.chunks_exact(d_in.saturating_mul(4).max(4));
            for (o, y) in out.iter_mut().enumerate() {
                let Some(row) = rows.next() else { break };
                let (head, tail) = row.split_at(first.len().saturating_mul(4).min(row.len()));
                let acc =
                    kernels::dot_f32_bytes(head, first) + kernels::dot_f32_bytes(tail, second);
                *y = activate(layer.activation, acc + le_f32(layer.bias, o).unwrap_or(0.0));
            }
        }
    }
}

/// Evaluates `v(x, t)` into `out` (`x` standardized, both of length `P`), using `a`, `b` (at least
/// the widest layer) and `emb` (at least the time-embedding width) as scratch.
pub fn evaluate(
    model: &ModelView<'_>,
    x: &[f32],
    t: f32,
    out: &mut [f32],
    a: &mut [f32],
    b: &mut [f32],
    emb: &mut [f32],
) {
    let f = &model.file;
    let td = f.time.dim as usize;
    let emb = emb.get_mut(..td).unwrap_or(&mut []);
    time_embedding(f.time.max_frequency, t, emb);
    let n = f.field.len();
    let (mut cur, mut nxt) = (a, b);
    let mut width = 0usize;
    for (i, layer) in f.field.iter().enumerate() {
        let last = i.saturating_add(1) == n;
        let d_out = layer.d_out as usize;
        if i == 0 {
            let dst = if last {
                &mut *out
            } else {
                cur.get_mut(..d_out).unwrap_or(&mut [])
            };
            dense(layer, x, emb, dst);
        } else {
            let input = cur.get(..width).unwrap_or(&[]);
            let dst = if last {
                &mut *out
            } else {
                nxt.get_mut(..d_out).unwrap_or(&mut [])
            };
            dense(layer, input, &[], dst);
            core::mem::swap(&mut cur, &mut nxt);
        }
        width = d_out;
    }
}
