//! The set field's forward pass (`nmflow_format::SetNet`): the classifier's hidden units are
//! tokens, updated by one shared network from themselves, their mean and a context.
//!
//! Memory: the token states (`U × H` floats) are the only per-token buffer; each block updates
//! them in place (`h_j += mlp(silu(local(h_j) + pooled(mean) + c))` needs one `H`-vector of
//! scratch per token, reused), tokens are read from the state where they lie (the first `d_in`
//! values of a token are a contiguous row of `W1`; its `1 + d_out` others are gathered), and token
//! velocities are scattered into the output as they are computed.

use nmflow_format::{SetNet, TokenDims};

use crate::math;
use crate::vector_field::{Emit, rows, split};

/// Scratch floats besides the time embedding: the token states, the context `c`, the pooled
/// vector `p` and one work vector `y` (at least `1 + d_out` long, for a token's gathered tail).
pub fn scratch_floats(net: &SetNet<'_>, dims: TokenDims, time_dim: usize) -> usize {
    let h = net.hidden as usize;
    let y = h.max(dims.d_out.saturating_add(1));
    time_dim
        .saturating_add(dims.units.saturating_mul(h))
        .saturating_add(h.saturating_mul(2))
        .saturating_add(y)
}

/// The scratch carved into its parts.
struct Parts<'s> {
    c: &'s mut [f32],
    p: &'s mut [f32],
    y: &'s mut [f32],
    tokens: &'s mut [f32],
}

fn parts<'s>(net: &SetNet<'_>, dims: TokenDims, scratch: &'s mut [f32]) -> Parts<'s> {
    let h = net.hidden as usize;
    let (c, rest) = split(scratch, h);
    let (p, rest) = split(rest, h);
    let (y, rest) = split(rest, h.max(dims.d_out.saturating_add(1)));
    let (tokens, _) = split(rest, dims.units.saturating_mul(h));
    Parts { c, p, y, tokens }
}

/// Offsets of the state's blocks: `W1` at 0, `b1`, `W2`, `b2`.
fn offsets(d: TokenDims) -> (usize, usize, usize) {
    let b1 = d.units.saturating_mul(d.d_in);
    let w2 = b1.saturating_add(d.units);
    let b2 = w2.saturating_add(d.d_out.saturating_mul(d.units));
    (b1, w2, b2)
}

/// `out = mean over tokens` (`out` is `H` long).
fn mean_tokens(tokens: &[f32], out: &mut [f32], units: usize) {
    let h = out.len().max(1);
    out.fill(0.0);
    for token in tokens.chunks_exact(h) {
        for (m, v) in out.iter_mut().zip(token) {
            *m += v;
        }
    }
    let n = units.max(1) as f32;
    for m in out.iter_mut() {
        *m /= n;
    }
}

/// Reads the state `x` and computes the token states after every block (see the module docs).
/// `scratch` is the field scratch after the time embedding `emb`.
pub fn absorb(net: &SetNet<'_>, dims: TokenDims, x: &[f32], emb: &[f32], scratch: &mut [f32]) {
    let h = net.hidden as usize;
    let Parts { c, p, y, tokens } = parts(net, dims, scratch);
    let (b1_at, w2_at, b2_at) = offsets(dims);
    // c = time_in(emb) + global_in(b2).
    rows(&net.time_in, emb, &[], |o, v| {
        if let Some(slot) = c.get_mut(o) {
            *slot = v;
        }
    });
    let b2 = x
        .get(b2_at..b2_at.saturating_add(dims.d_out))
        .unwrap_or(&[]);
    rows(&net.global_in, b2, &[], |o, v| {
        if let Some(slot) = c.get_mut(o) {
            *slot += v;
        }
    });
    // h_j = embed([W1[j, :], b1[j], W2[:, j]]) + c.
    let mut w1_rows = x.chunks_exact(dims.d_in.max(1));
    for (j, token) in tokens.chunks_exact_mut(h.max(1)).enumerate() {
        let w1 = w1_rows.next().unwrap_or(&[]);
        let tail = y.get_mut(..dims.d_out.saturating_add(1)).unwrap_or(&mut []);
        for (k, slot) in tail.iter_mut().enumerate() {
            let at = if k == 0 {
                b1_at.saturating_add(j)
            } else {
                w2_at
                    .saturating_add(k.saturating_sub(1).saturating_mul(dims.units))
                    .saturating_add(j)
            };
            *slot = x.get(at).copied().unwrap_or(0.0);
        }
        rows(&net.embed, w1, tail, |o, v| {
            if let (Some(slot), Some(&ctx)) = (token.get_mut(o), c.get(o)) {
                *slot = v + ctx;
            }
        });
    }
    for block in &net.blocks {
        let m = y.get_mut(..h).unwrap_or(&mut []);
        mean_tokens(tokens, m, dims.units);
        rows(&block.pooled, m, &[], |o, v| {
            if let Some(slot) = p.get_mut(o) {
                *slot = v;
            }
        });
        for token in tokens.chunks_exact_mut(h.max(1)) {
            let z = y.get_mut(..h).unwrap_or(&mut []);
            rows(&block.local, token, &[], |o, v| {
                if let (Some(slot), Some(&po), Some(&co)) = (z.get_mut(o), p.get(o), c.get(o)) {
                    *slot = math::silu(v + po + co);
                }
            });
            rows(&block.mlp, z, &[], |o, v| {
                if let Some(slot) = token.get_mut(o) {
                    *slot += v;
                }
            });
        }
    }
}

/// Writes the velocity: every token's `token_out(silu(h_j))` scattered to its places in the
/// layout, and `global_out(silu(mean_j h_j + c))` for the output bias.
pub fn emit(net: &SetNet<'_>, dims: TokenDims, scratch: &mut [f32], out: &mut [f32], mode: Emit) {
    let h = net.hidden as usize;
    let Parts { c, p: _, y, tokens } = parts(net, dims, scratch);
    let (b1_at, w2_at, b2_at) = offsets(dims);
    for (j, token) in tokens.chunks_exact(h.max(1)).enumerate() {
        let s = y.get_mut(..h).unwrap_or(&mut []);
        for (si, &v) in s.iter_mut().zip(token) {
            *si = math::silu(v);
        }
        let row_at = j.saturating_mul(dims.d_in);
        rows(&net.token_out, s, &[], |o, v| {
            let at = if o < dims.d_in {
                row_at.saturating_add(o)
            } else if o == dims.d_in {
                b1_at.saturating_add(j)
            } else {
                w2_at
                    .saturating_add(
                        o.saturating_sub(dims.d_in.saturating_add(1))
                            .saturating_mul(dims.units),
                    )
                    .saturating_add(j)
            };
            if let Some(slot) = out.get_mut(at) {
                mode.apply(slot, v);
            }
        });
    }
    let g = y.get_mut(..h).unwrap_or(&mut []);
    mean_tokens(tokens, g, dims.units);
    for (gi, &ci) in g.iter_mut().zip(c.iter()) {
        *gi = math::silu(*gi + ci);
    }
    rows(&net.global_out, g, &[], |o, v| {
        if let Some(slot) = out.get_mut(b2_at.saturating_add(o)) {
            mode.apply(slot, v);
        }
    });
}
