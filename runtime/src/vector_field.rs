//! The field's forward pass: int8 (or f32) weights × f32 activations, f32 accumulation.
//!
//! An evaluation is split in two: [`absorb`] reads the state and leaves the last hidden
//! activations in the scratch, [`emit`] writes the velocity. Between them the state is not read,
//! so an Euler step writes `x += h·v` straight into it and needs no velocity buffer (the MLP
//! field's per-coordinate term, which reads the state, is computed in [`absorb`] and kept).

use nmflow_format::{Activation, FieldLayer, FieldNet, FieldWeights};

use crate::condition;
use crate::kernels;
use crate::math;
use crate::model_view::{ModelView, le_f32};
use crate::set_field;

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

/// Calls `sink(o, Σ_i W[o][i]·input[i] + bias[o])` for every output row `o` of `layer`, whose
/// input is the concatenation of `first` and `second` (either may be empty). The row is scaled
/// once (int8: `scale[o]·Σ q·x`), then the bias is added.
#[inline]
pub fn rows(
    layer: &FieldLayer<'_>,
    first: &[f32],
    second: &[f32],
    mut sink: impl FnMut(usize, f32),
) {
    let d_in = (layer.d_in as usize).max(1);
    let d_out = layer.d_out as usize;
    match layer.weights {
        FieldWeights::Int8 { q, scales } => {
            let mut rows = q.chunks_exact(d_in);
            for o in 0..d_out {
                let Some(row) = rows.next() else { break };
                let s = le_f32(scales, o).unwrap_or(0.0);
                let (head, tail) = row.split_at(first.len().min(row.len()));
                let acc = kernels::dot_i8(head, first) + kernels::dot_i8(tail, second);
                sink(o, acc * s + le_f32(layer.bias, o).unwrap_or(0.0));
            }
        }
        FieldWeights::F32 { w } => {
            let mut rows = w.chunks_exact(d_in.saturating_mul(4).max(4));
            for o in 0..d_out {
                let Some(row) = rows.next() else { break };
                let (head, tail) = row.split_at(first.len().saturating_mul(4).min(row.len()));
                let acc =
                    kernels::dot_f32_bytes(head, first) + kernels::dot_f32_bytes(tail, second);
                sink(o, acc + le_f32(layer.bias, o).unwrap_or(0.0));
            }
        }
    }
}

/// `out[o] = act(Σ_i W[o][i]·input[i] + bias[o])` for one layer whose input is the concatenation
/// of `first` and `second`.
pub fn dense(layer: &FieldLayer<'_>, first: &[f32], second: &[f32], out: &mut [f32]) {
    let act = layer.activation;
    rows(layer, first, second, |o, v| {
        if let Some(y) = out.get_mut(o) {
            *y = activate(act, v);
        }
    });
}

/// How a field evaluation writes its velocity `v` into the output vector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Emit {
    /// `out = v`.
    Store,
    /// `out += α·v` (an Euler step writes `x += h·v` into the state itself).
    Add(f32),
}

impl Emit {
    /// Writes `v` into `slot`.
    #[inline]
    pub fn apply(self, slot: &mut f32, v: f32) {
        match self {
            Self::Store => *slot = v,
            Self::Add(alpha) => *slot += alpha * v,
        }
    }
}

/// Floats of field scratch (activations and time embedding) a model needs.
pub fn scratch_floats(model: &ModelView<'_>) -> usize {
    let td = model.file.time_width();
    match &model.file.field {
        FieldNet::Mlp(_) => td
            .saturating_add(mlp_width(model).saturating_mul(2))
            .saturating_add(diagonal_floats(model)),
        FieldNet::Set(net) => match &model.file.condition {
            Some(cond) => td.saturating_add(condition::scratch_floats(
                cond,
                net,
                model.tokens(),
                model.num_params(),
            )),
            None => set_field::scratch_floats(net, model.tokens(), td),
        },
    }
}

/// Width of each of the MLP field's two activation buffers: its widest hidden layer, or
/// `state + time.dim` for a single-layer field (whose input is kept until [`emit`]).
fn mlp_width(model: &ModelView<'_>) -> usize {
    match &model.file.field {
        FieldNet::Mlp(layers) if layers.len() <= 1 => model
            .state_dim()
            .saturating_add(model.file.time.dim as usize),
        _ => model.file.max_field_width(),
    }
}

/// Floats of the per-coordinate term's buffer (`ModelFile::diagonal`): one per state value, or
/// none without the term.
fn diagonal_floats(model: &ModelView<'_>) -> usize {
    if model.file.diagonal.is_some() {
        model.state_dim()
    } else {
        0
    }
}

/// Writes the per-coordinate term `a_i(t)·x_i + b_i(t)` of every state value into `d` (the
/// term's layer gives `[a | b]` at `emb(t)`; rows come in order, so `a` sets and `b` adds).
fn diagonal_term(layer: &FieldLayer<'_>, x: &[f32], emb: &[f32], d: &mut [f32]) {
    let n = d.len();
    rows(layer, emb, &[], |o, v| {
        if o < n {
            if let (Some(slot), Some(&xi)) = (d.get_mut(o), x.get(o)) {
                *slot = v * xi;
            }
        } else if let Some(slot) = d.get_mut(o.wrapping_sub(n)) {
            *slot += v;
        }
    });
}

/// First half of an evaluation of `v(x, t)`: reads `x` (standardized, length `P`) and leaves
/// everything the output layers need in `scratch` (at least [`scratch_floats`] long; for a
/// conditioned model, with the task context [`condition::prepare`] wrote after the time
/// embedding). `h` is the solver's step size, which a field with the step-size input
/// (`ModelFile::step_input`) reads beside the time. After it,
/// `x` may be overwritten, so an Euler step can [`emit`] into the state itself.
pub fn absorb(model: &ModelView<'_>, x: &[f32], t: f32, h: f32, scratch: &mut [f32]) {
    let f = &model.file;
    let (emb, rest) = split(scratch, f.time_width());
    let (emb_t, emb_h) = emb.split_at_mut((f.time.dim as usize).min(emb.len()));
    time_embedding(f.time.max_frequency, t, emb_t);
    if f.step_input {
        time_embedding(f.time.max_frequency, h, emb_h);
    }
    match &f.field {
        FieldNet::Mlp(layers) => {
            let w = mlp_width(model);
            let (a, rest) = split(rest, w);
            let (b, rest) = split(rest, w);
            if let Some(term) = &f.diagonal {
                let (d, _) = split(rest, diagonal_floats(model));
                diagonal_term(term, x, emb_t, d);
            }
            let hidden = layers.len().saturating_sub(1);
            if hidden == 0 {
                let (xs, es) = split(a, x.len());
                xs.copy_from_slice(x.get(..xs.len()).unwrap_or(&[]));
                let n = es.len().min(emb.len());
                if let (Some(d), Some(s)) = (es.get_mut(..n), emb.get(..n)) {
                    d.copy_from_slice(s);
                }
                return;
            }
            let (mut cur, mut nxt) = (a, b);
            let mut width = 0usize;
            for (i, layer) in layers.iter().take(hidden).enumerate() {
                let d_out = layer.d_out as usize;
                if i == 0 {
                    dense(layer, x, emb, cur.get_mut(..d_out).unwrap_or(&mut []));
                } else {
                    let input = cur.get(..width).unwrap_or(&[]);
                    dense(layer, input, &[], nxt.get_mut(..d_out).unwrap_or(&mut []));
                    core::mem::swap(&mut cur, &mut nxt);
                }
                width = d_out;
            }
        }
        FieldNet::Set(net) => match &f.condition {
            Some(cond) => condition::absorb(model, cond, net, x, emb, rest),
            None => set_field::absorb(net, model.tokens(), x, emb, rest),
        },
    }
}

/// Second half of an evaluation: writes the velocity into `out` (length `P`) as `mode` says.
pub fn emit(model: &ModelView<'_>, scratch: &mut [f32], out: &mut [f32], mode: Emit) {
    let f = &model.file;
    let (_emb, rest) = split(scratch, f.time_width());
    match &f.field {
        FieldNet::Mlp(layers) => {
            let Some(last) = layers.last() else { return };
            let w = mlp_width(model);
            let (a, rest) = split(rest, w);
            let (b, rest) = split(rest, w);
            let (d, _) = split(rest, diagonal_floats(model));
            let hidden = layers.len().saturating_sub(1);
            // Layer i (< hidden) wrote `a` for even i, `b` for odd i; a single-layer field keeps
            // its input in `a`. So the last hidden layer's output is in `a` iff `hidden` is odd.
            let held: &[f32] = if hidden == 0 || hidden % 2 == 1 { a } else { b };
            let input = held.get(..last.d_in as usize).unwrap_or(&[]);
            let act = last.activation;
            // With the per-coordinate term, `absorb` left `a_o·x_o + b_o` in `d`.
            rows(last, input, &[], |o, v| {
                if let Some(y) = out.get_mut(o) {
                    mode.apply(y, activate(act, v) + d.get(o).copied().unwrap_or(0.0));
                }
            });
        }
        FieldNet::Set(net) => match &f.condition {
            Some(cond) => condition::emit(model, cond, net, rest, out, mode),
            None => set_field::emit(net, model.tokens(), rest, out, mode),
        },
    }
}

/// Evaluates `v(x, t)` into `out` (both of length `P`, `x` standardized) with `scratch` (at least
/// [`scratch_floats`] long); `h` is the solver's step size (see [`absorb`]).
pub fn evaluate(
    model: &ModelView<'_>,
    x: &[f32],
    t: f32,
    h: f32,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    absorb(model, x, t, h, scratch);
    emit(model, scratch, out, Emit::Store);
}

/// Splits `n` values off the front of `buf` (fewer if it is shorter; validation and the capacity
/// check make it long enough).
pub(crate) fn split(buf: &mut [f32], n: usize) -> (&mut [f32], &mut [f32]) {
    let n = n.min(buf.len());
    buf.split_at_mut(n)
}
