//! A latent model's decoder: the latent state `z` (unstandardized) → the classifier's
//! standardized weights, as the host's VAE decodes them (see `nmflow_format::latent`).

use nmflow_format::{DecoderHead, FieldLayer, FieldWeights, LatentSection, TokenDims};

use crate::math;
use crate::model_view::le_f32;
use crate::vector_field::{dense, rows, split};

/// Floats of scratch [`decode`] needs: two trunk-wide buffers, and three `H`-wide ones for the
/// units head.
pub fn scratch_floats(section: &LatentSection<'_>) -> usize {
    let head = match section.head {
        DecoderHead::Dense(_) => 0,
        DecoderHead::Units(_) => section.width().saturating_mul(3),
    };
    section
        .max_trunk_width()
        .saturating_mul(2)
        .saturating_add(head)
}

/// Multiply-accumulates of one decoding (the units head's per-token layers count once per unit).
pub fn macs(section: &LatentSection<'_>, tokens: TokenDims) -> u64 {
    let macs = |l: &FieldLayer<'_>| u64::from(l.d_in).saturating_mul(u64::from(l.d_out));
    let trunk = section
        .trunk
        .iter()
        .map(macs)
        .fold(0u64, u64::saturating_add);
    let head = match &section.head {
        DecoderHead::Dense(l) => macs(l),
        DecoderHead::Units(u) => {
            let per_token = macs(&u.inner)
                .saturating_add(macs(&u.token))
                .saturating_add(u64::from(u.slots.d_out));
            (tokens.units as u64)
                .saturating_mul(per_token)
                .saturating_add(macs(&u.mix))
                .saturating_add(macs(&u.bias))
        }
    };
    trunk.saturating_add(head)
}

/// The weight `W[o][i]` of a layer (0 outside it).
fn weight_at(layer: &FieldLayer<'_>, o: usize, i: usize) -> f32 {
    let at = o.saturating_mul(layer.d_in as usize).saturating_add(i);
    match layer.weights {
        FieldWeights::Int8 { q, scales } => {
            let v = q.get(at).map_or(0, |&b| b as i8);
            f32::from(v) * le_f32(scales, o).unwrap_or(0.0)
        }
        FieldWeights::F32 { w } => le_f32(w, at).unwrap_or(0.0),
    }
}

/// Decodes the latent `z` (`L` values) into `out` (`P` standardized weights in the classifier's
/// layout) with `scratch` (at least [`scratch_floats`] long). `tokens` is the classifier's token
/// shape (used by the units head).
pub fn decode(
    section: &LatentSection<'_>,
    tokens: TokenDims,
    z: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let t = section.max_trunk_width();
    let (a, rest) = split(scratch, t);
    let (b, rest) = split(rest, t);
    let (mut cur, mut nxt) = (a, b);
    let mut width = 0usize;
    for (i, layer) in section.trunk.iter().enumerate() {
        let d_out = layer.d_out as usize;
        if i == 0 {
            dense(layer, z, &[], cur.get_mut(..d_out).unwrap_or(&mut []));
        } else {
            let input = cur.get(..width).unwrap_or(&[]);
            dense(layer, input, &[], nxt.get_mut(..d_out).unwrap_or(&mut []));
            core::mem::swap(&mut cur, &mut nxt);
        }
        width = d_out;
    }
    let h: &[f32] = cur.get(..width).unwrap_or(&[]);
    match &section.head {
        DecoderHead::Dense(layer) => dense(layer, h, &[], out),
        DecoderHead::Units(u) => {
            let (mixed, rest) = split(rest, width);
            let (act, rest) = split(rest, width);
            let (inner, _) = split(rest, width);
            dense(&u.mix, h, &[], mixed);
            let TokenDims { units, d_in, .. } = tokens;
            let b1 = units.saturating_mul(d_in);
            let w2 = b1.saturating_add(units);
            let b2 = w2.saturating_add(units.saturating_mul(tokens.d_out));
            rows(&u.bias, h, &[], |o, v| {
                if let Some(y) = out.get_mut(b2.saturating_add(o)) {
                    *y = v;
                }
            });
            for j in 0..units {
                for (o, (a, m)) in act.iter_mut().zip(mixed.iter()).enumerate() {
                    let e = weight_at(&u.slots, o, j) + le_f32(u.slots.bias, o).unwrap_or(0.0);
                    *a = math::silu(m + e);
                }
                rows(&u.inner, act, &[], |o, v| {
                    if let Some(y) = inner.get_mut(o) {
                        *y = math::silu(v);
                    }
                });
                rows(&u.token, inner, &[], |o, v| {
                    let at = if o < d_in {
                        j.saturating_mul(d_in).saturating_add(o)
                    } else if o == d_in {
                        b1.saturating_add(j)
                    } else {
                        let k = o.saturating_sub(d_in.saturating_add(1));
                        w2.saturating_add(k.saturating_mul(units)).saturating_add(j)
                    };
                    if let Some(y) = out.get_mut(at) {
                        *y = v;
                    }
                });
            }
        }
    }
}
