//! The fused CPU trainer of the set field, with the functional term.
//!
//! [`crate::meta::field`]'s set field treats each hidden unit `j` of a one-hidden-layer classifier
//! as a token `[W1[j, :], b1[j], W2[:, j]]`. Through burn's autodiff a step of the functional recipe
//! (flow matching plus the functional term on a 4-step rollout) spends most of its time building
//! the graph, laying out strided tensors and allocating; this module does the same computation
//! by hand on buffers allocated once. For `N` states of `U` units, width `H`, `D` blocks:
//!
//! * context `c = emb(t)·W_t + b_t + b2·W_g + b_g` (`[N, H]`);
//! * `h₀ = tokens·W_e + b_e + c` (every unit of a state gets its state's context);
//! * block `k`: `a_k = h_k·W_l + b_l + mean_U(h_k)·W_p + b_p + c`, `h_{k+1} = h_k + silu(a_k)·W_m + b_m`;
//! * outputs: the tokens' velocities `silu(h_D)·W_o + b_o` and the output bias's
//!   `silu(mean_U(h_D) + c)·W_go + b_go`, scattered back to the state's layout.
//!
//! The backward pass runs the same graph in reverse (`∂W = aᵀ·∂z`, `∂a = ∂z·Wᵀ`, a unit mean's
//! gradient spread as `1/U` over the units, the context's gradient summed over them) and, for the
//! sampler's rollout, also gives the gradient with respect to the input state, so the functional
//! term is backpropagated through every Euler step: `z_{j+1} = z_j + v(z_j, j/K)/K`, then the
//! generated classifiers' mean cross-entropy on a minibatch of training images (one wide product
//! for all classifiers' first layers). Adam is the MLP trainer's ([`super::fused_mlp::FusedAdam`]).
//!
//! Products go through [`crate::linalg::matmul`] and elementwise passes over fixed chunks on
//! rayon's pool: neither split depends on the number of threads, so a seed gives the same bytes
//! on any thread count. A unit test checks a step against burn's autodiff and Adam.

use rayon::prelude::*;

use super::fused_score::Scorer;
use crate::linalg::{View, matmul};
use crate::meta::field::time_frequencies;

/// Elements per parallel task of the elementwise passes.
const CHUNK: usize = 1 << 14;

/// The shape of a set field and of the classifiers it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetShape {
    /// Hidden units of the classifier (tokens).
    pub units: usize,
    /// Classifier inputs.
    pub d_in: usize,
    /// Classifier outputs.
    pub d_out: usize,
    /// Width of the field.
    pub hidden: usize,
    /// Residual blocks.
    pub depth: usize,
    /// Width of the time embedding (even).
    pub time_dim: usize,
    /// The time input also embeds the step size (`2·time_dim` wide).
    pub step_input: bool,
}

impl SetShape {
    /// `(units, d_out, hidden, depth, time_dim)`.
    fn sizes(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.units,
            self.d_out,
            self.hidden,
            self.depth,
            self.time_dim,
        )
    }

    /// Width of the time input: `time_dim`, or `2·time_dim` with the step size.
    fn time_input(&self) -> usize {
        self.time_dim * (1 + usize::from(self.step_input))
    }

    /// Values of a token.
    fn token(&self) -> usize {
        self.d_in + 1 + self.d_out
    }

    /// Values of a classifier's state (`P`).
    pub fn params(&self) -> usize {
        self.units * (self.d_in + 1 + self.d_out) + self.d_out
    }

    /// `(d_in, d_out)` of every linear layer, in module order: `embed`, `global_in`, `time_in`,
    /// each block's `local`, `pooled`, `mlp`, then `token_out`, `global_out`.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let (h, tk) = (self.hidden, self.token());
        let mut dims = vec![(tk, h), (self.d_out, h), (self.time_input(), h)];
        for _ in 0..self.depth {
            dims.extend([(h, h); 3]);
        }
        dims.extend([(h, tk), (h, self.d_out)]);
        dims
    }
}

impl SetShape {
    /// Calls `f(state, token, len, bias)` for every contiguous run of values that states (`[N, P]`,
    /// layout order) and their tokens (`[N·U, T]`) or output biases (`[N, C]`, `bias` true) share:
    /// offset `state` in the states holds the `len` values at offset `token` in the tokens (or
    /// biases).
    fn token_runs(&self, n: usize, mut f: impl FnMut(usize, usize, usize, bool)) {
        let (u, d_in, c, tk, p) = (
            self.units,
            self.d_in,
            self.d_out,
            self.token(),
            self.params(),
        );
        for r in 0..n {
            for j in 0..u {
                let (x, t) = (r * p, (r * u + j) * tk);
                f(x + j * d_in, t, d_in, false);
                f(x + u * d_in + j, t + d_in, 1, false);
                for o in 0..c {
                    f(x + u * d_in + u + o * u + j, t + d_in + 1 + o, 1, false);
                }
            }
            f(r * p + u * (d_in + 1 + c), r * c, c, true);
        }
    }

    /// States `x` (`[N, P]`, layout order) as tokens (`[N·U, T]`) and output biases (`[N, C]`).
    fn split_tokens(&self, x: &[f32], tokens: &mut Vec<f32>, b2: &mut Vec<f32>) {
        let n = x.len() / self.params();
        tokens.resize(n * self.units * self.token(), 0.0);
        b2.resize(n * self.d_out, 0.0);
        self.token_runs(n, |s, t, len, bias| {
            let dst = if bias { &mut b2[..] } else { &mut tokens[..] };
            dst[t..t + len].copy_from_slice(&x[s..s + len]);
        });
    }

    /// The inverse of [`Self::split_tokens`]: tokens and output biases back to states in `x`.
    fn join_tokens(&self, tokens: &[f32], b2: &[f32], x: &mut Vec<f32>) {
        let n = b2.len() / self.d_out;
        x.resize(n * self.params(), 0.0);
        self.token_runs(n, |s, t, len, bias| {
            let src = if bias { b2 } else { tokens };
            x[s..s + len].copy_from_slice(&src[t..t + len]);
        });
    }
}

const EMBED: usize = 0;
const GLOBAL_IN: usize = 1;
const TIME_IN: usize = 2;
const fn local(k: usize) -> usize {
    3 + 3 * k
}
const fn pooled(k: usize) -> usize {
    4 + 3 * k
}
const fn mlp(k: usize) -> usize {
    5 + 3 * k
}

/// The set field as plain buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedSet {
    shape: SetShape,
    freqs: Vec<f32>,
    /// Per linear layer (module order): weight row-major `[d_in][d_out]` (burn's layout), bias.
    params: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The activations of one forward pass, kept for its backward pass.
#[derive(Debug, Default)]
pub struct Pass {
    n: usize,
    tokens: Vec<f32>,
    b2: Vec<f32>,
    temb: Vec<f32>,
    ctx: Vec<f32>,
    /// `h_0 … h_D`, `[N·U, H]` each.
    h: Vec<Vec<f32>>,
    /// Unit means of `h_0 … h_D`, `[N, H]` each.
    mean: Vec<Vec<f32>>,
    /// Blocks' pre-activations `a_k`.
    pre: Vec<Vec<f32>>,
    /// `silu(a_k)` and `σ(a_k)`.
    act: Vec<Vec<f32>>,
    sig: Vec<Vec<f32>>,
    /// `silu(h_D)` and `σ(h_D)`.
    s: Vec<f32>,
    sig_s: Vec<f32>,
    /// `mean_U(h_D) + c`, its SiLU and its σ.
    gpre: Vec<f32>,
    g: Vec<f32>,
    sig_g: Vec<f32>,
    /// Per-sample pooled terms of the current block (`[N, H]`).
    q: Vec<f32>,
    /// The context's two biases summed.
    bias: Vec<f32>,
    vtok: Vec<f32>,
    vg: Vec<f32>,
    /// The velocity, `[N, P]`.
    out: Vec<f32>,
}

/// Working memory of the backward pass.
#[derive(Debug, Default)]
pub struct Work {
    dvtok: Vec<f32>,
    dvg: Vec<f32>,
    dg: Vec<f32>,
    dh: Vec<f32>,
    da: Vec<f32>,
    dr: Vec<f32>,
    dmean: Vec<f32>,
    dctx: Vec<f32>,
    dtok: Vec<f32>,
    db2: Vec<f32>,
    scratch: Vec<f32>,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// `out = silu(z)` and `sig = σ(z)` (kept for the backward pass), in parallel chunks.
fn silu_into(out: &mut Vec<f32>, sig: &mut Vec<f32>, z: &[f32]) {
    out.resize(z.len(), 0.0);
    sig.resize(z.len(), 0.0);
    out.par_chunks_mut(CHUNK)
        .zip(sig.par_chunks_mut(CHUNK))
        .zip(z.par_chunks(CHUNK))
        .for_each(|((o, sg), z)| {
            for ((o, sg), &z) in o.iter_mut().zip(sg).zip(z) {
                *sg = sigmoid(z);
                *o = z * *sg;
            }
        });
}

/// `g ⊙= silu′(z) = σ(z)(1 + z(1 − σ(z)))`, with `sig = σ(z)` from the forward pass.
fn times_silu_grad(g: &mut [f32], z: &[f32], sig: &[f32]) {
    g.par_chunks_mut(CHUNK)
        .zip(z.par_chunks(CHUNK).zip(sig.par_chunks(CHUNK)))
        .for_each(|(g, (z, sig))| {
            for ((g, &z), &s) in g.iter_mut().zip(z).zip(sig) {
                *g *= s * (1.0 + z * (1.0 - s));
            }
        });
}

/// Every row of `out` (`rows × width`) set to `bias`, plus row `r / per` of `extra` when given.
fn fill_rows(out: &mut Vec<f32>, rows: usize, bias: &[f32], extra: Option<(&[f32], usize)>) {
    let w = bias.len();
    out.resize(rows * w, 0.0);
    for (r, row) in out.chunks_exact_mut(w).enumerate() {
        match extra {
            Some((e, per)) => {
                let e = &e[(r / per) * w..][..w];
                for ((o, &b), &x) in row.iter_mut().zip(bias).zip(e) {
                    *o = b + x;
                }
            }
            None => row.copy_from_slice(bias),
        }
    }
}

/// `acc[j] += Σ_rows m[row, j]`.
pub(super) fn add_col_sums(acc: &mut [f32], m: &[f32]) {
    for row in m.chunks_exact(acc.len()) {
        for (a, &x) in acc.iter_mut().zip(row) {
            *a += x;
        }
    }
}

/// `out[i] = scale · Σ_u m[i·U + u]` over groups of `per` rows (`[N·U, W]` → `[N, W]`).
fn group_sums(out: &mut Vec<f32>, m: &[f32], width: usize, per: usize, scale: f32) {
    let groups = m.len() / (width * per);
    out.clear();
    out.resize(groups * width, 0.0);
    for (o, g) in out.chunks_exact_mut(width).zip(m.chunks_exact(width * per)) {
        for row in g.chunks_exact(width) {
            for (a, &x) in o.iter_mut().zip(row) {
                *a += x;
            }
        }
        for a in o.iter_mut() {
            *a *= scale;
        }
    }
}

/// `m[r, :] += scale · v[r / per, :]`.
fn add_spread(m: &mut [f32], v: &[f32], width: usize, per: usize, scale: f32) {
    for (r, row) in m.chunks_exact_mut(width).enumerate() {
        let src = &v[(r / per) * width..][..width];
        for (a, &x) in row.iter_mut().zip(src) {
            *a += scale * x;
        }
    }
}

/// A linear layer's gradients for its input `a` (`[rows, d_in]`) and output gradient `d`
/// (`[rows, d_out]`): `∂W += aᵀ·d`, `∂b += Σ_rows d`.
fn linear_grads(
    g: &mut (Vec<f32>, Vec<f32>),
    a: &[f32],
    d: &[f32],
    rows: usize,
    scratch: &mut Vec<f32>,
) {
    let (d_in, d_out) = (a.len() / rows, d.len() / rows);
    matmul(
        &mut g.0,
        rm(a, rows, d_in).t(),
        rm(d, rows, d_out),
        true,
        scratch,
    );
    add_col_sums(&mut g.1, d);
}

/// Row-major view shorthand.
pub(super) fn rm(data: &[f32], rows: usize, cols: usize) -> View<'_> {
    View::row_major(data, rows, cols)
}

impl FusedSet {
    /// The field from its layers (as [`crate::meta::field::VectorField::linear_layers`] gives
    /// them for a set field).
    ///
    /// # Errors
    /// A message if the layers do not have the shapes of `shape`.
    pub fn new(shape: SetShape, params: Vec<(Vec<f32>, Vec<f32>)>) -> Result<Self, String> {
        let dims = shape.layer_dims();
        if params.len() != dims.len() || !shape.time_dim.is_multiple_of(2) {
            return Err(format!(
                "a set field of depth {} has {} layers and an even time embedding; got {} layers, time embedding {}",
                shape.depth,
                dims.len(),
                params.len(),
                shape.time_dim
            ));
        }
        for (l, ((w, b), (d_in, d_out))) in params.iter().zip(&dims).enumerate() {
            if w.len() != d_in * d_out || b.len() != *d_out {
                return Err(format!(
                    "layer {l}: expected a {d_in}×{d_out} weight and {d_out} biases, got {} and {} values",
                    w.len(),
                    b.len()
                ));
            }
        }
        Ok(Self {
            shape,
            freqs: time_frequencies(shape.time_dim),
            params,
        })
    }

    /// The layers, as [`crate::meta::field::VectorField::with_linear_layers`] takes them.
    pub fn layers(&self) -> &[(Vec<f32>, Vec<f32>)] {
        &self.params
    }

    /// The field's shape.
    pub fn shape(&self) -> SetShape {
        self.shape
    }

    /// The velocity `v(x, t)` of `t.len()` states `x` (`[N, P]`), as `pass.out`; `step` is the
    /// step size a field with a step-size input takes (ignored by one without).
    pub fn forward(
        &self,
        x: &[f32],
        t: &[f32],
        step: f32,
        pass: &mut Pass,
        scratch: &mut Vec<f32>,
    ) {
        let (u, c, h, depth, time_dim) = self.shape.sizes();
        let width = self.shape.time_input();
        let (n, p, tk) = (t.len(), self.shape.params(), self.shape.token());
        assert_eq!(x.len(), n * p, "x must be [n, P]");
        let nu = n * u;
        pass.n = n;
        self.shape.split_tokens(x, &mut pass.tokens, &mut pass.b2);
        // Time embedding.
        let half = self.freqs.len();
        pass.temb.resize(n * width, 0.0);
        for (row, &ts) in pass.temb.chunks_exact_mut(width).zip(t) {
            for (part, value) in row.chunks_exact_mut(time_dim).zip([ts, step]) {
                for (j, &f) in self.freqs.iter().enumerate() {
                    let angle = value * f;
                    part[j] = angle.sin();
                    part[half + j] = angle.cos();
                }
            }
        }
        let w = |l: usize| &self.params[l].0;
        let b = |l: usize| &self.params[l].1;
        // Context.
        pass.bias.clear();
        pass.bias
            .extend(b(TIME_IN).iter().zip(b(GLOBAL_IN)).map(|(a, b)| a + b));
        fill_rows(&mut pass.ctx, n, &pass.bias, None);
        matmul(
            &mut pass.ctx,
            rm(&pass.temb, n, width),
            rm(w(TIME_IN), width, h),
            true,
            scratch,
        );
        matmul(
            &mut pass.ctx,
            rm(&pass.b2, n, c),
            rm(w(GLOBAL_IN), c, h),
            true,
            scratch,
        );
        pass.h.resize_with(depth + 1, Vec::new);
        pass.mean.resize_with(depth + 1, Vec::new);
        pass.pre.resize_with(depth, Vec::new);
        pass.act.resize_with(depth, Vec::new);
        pass.sig.resize_with(depth, Vec::new);
        fill_rows(&mut pass.h[0], nu, b(EMBED), Some((&pass.ctx, u)));
        matmul(
            &mut pass.h[0],
            rm(&pass.tokens, nu, tk),
            rm(w(EMBED), tk, h),
            true,
            scratch,
        );
        let inv_u = 1.0 / u as f32;
        for k in 0..depth {
            let (done, rest) = pass.h.split_at_mut(k + 1);
            let hk = &done[k];
            group_sums(&mut pass.mean[k], hk, h, u, inv_u);
            // q = mean·W_p + b_p + c, per sample.
            fill_rows(&mut pass.q, n, b(pooled(k)), Some((&pass.ctx, 1)));
            matmul(
                &mut pass.q,
                rm(&pass.mean[k], n, h),
                rm(w(pooled(k)), h, h),
                true,
                scratch,
            );
            let a = &mut pass.pre[k];
            fill_rows(a, nu, b(local(k)), Some((&pass.q, u)));
            matmul(a, rm(hk, nu, h), rm(w(local(k)), h, h), true, scratch);
            silu_into(&mut pass.act[k], &mut pass.sig[k], a);
            let next = &mut rest[0];
            next.resize(nu * h, 0.0);
            next.par_chunks_mut(CHUNK)
                .zip(hk.par_chunks(CHUNK))
                .for_each(|(o, x)| o.copy_from_slice(x));
            add_spread(next, b(mlp(k)), h, nu, 1.0);
            matmul(
                next,
                rm(&pass.act[k], nu, h),
                rm(w(mlp(k)), h, h),
                true,
                scratch,
            );
        }
        group_sums(&mut pass.mean[depth], &pass.h[depth], h, u, inv_u);
        pass.gpre.clear();
        pass.gpre
            .extend(pass.mean[depth].iter().zip(&pass.ctx).map(|(m, c)| m + c));
        silu_into(&mut pass.g, &mut pass.sig_g, &pass.gpre);
        silu_into(&mut pass.s, &mut pass.sig_s, &pass.h[depth]);
        let (to, go) = (3 + 3 * depth, 4 + 3 * depth);
        fill_rows(&mut pass.vtok, nu, b(to), None);
        matmul(
            &mut pass.vtok,
            rm(&pass.s, nu, h),
            rm(w(to), h, tk),
            true,
            scratch,
        );
        fill_rows(&mut pass.vg, n, b(go), None);
        matmul(
            &mut pass.vg,
            rm(&pass.g, n, h),
            rm(w(go), h, c),
            true,
            scratch,
        );
        // Back to the state's layout.
        self.shape.join_tokens(&pass.vtok, &pass.vg, &mut pass.out);
    }

    /// The backward pass of `pass` for the output gradient `dout` (`[N, P]`): adds the
    /// parameters' gradients to `grads` and, when `dx` is given, writes the input's gradient
    /// there.
    pub fn backward(
        &self,
        pass: &Pass,
        dout: &[f32],
        grads: &mut [(Vec<f32>, Vec<f32>)],
        dx: Option<&mut Vec<f32>>,
        work: &mut Work,
    ) {
        let (u, c, h, depth, _) = self.shape.sizes();
        let (n, tk) = (pass.n, self.shape.token());
        let nu = n * u;
        let w = |l: usize| &self.params[l].0;
        let (to, go) = (3 + 3 * depth, 4 + 3 * depth);
        let Work {
            dvtok,
            dvg,
            dg,
            dh,
            da,
            dr,
            dmean,
            dctx,
            dtok,
            db2,
            scratch,
        } = work;
        // The output's gradient in token layout.
        self.shape.split_tokens(dout, dvtok, dvg);
        // The output bias's head.
        linear_grads(&mut grads[go], &pass.g, dvg, n, scratch);
        dg.resize(n * h, 0.0);
        matmul(dg, rm(dvg, n, c), rm(w(go), h, c).t(), false, scratch);
        times_silu_grad(dg, &pass.gpre, &pass.sig_g);
        dctx.clear();
        dctx.extend_from_slice(dg);
        // The tokens' head.
        linear_grads(&mut grads[to], &pass.s, dvtok, nu, scratch);
        dh.resize(nu * h, 0.0);
        matmul(dh, rm(dvtok, nu, tk), rm(w(to), h, tk).t(), false, scratch);
        times_silu_grad(dh, &pass.h[depth], &pass.sig_s);
        let inv_u = 1.0 / u as f32;
        add_spread(dh, dg, h, u, inv_u);
        for k in (0..depth).rev() {
            // h_{k+1} = h_k + silu(a_k)·W_m + b_m.
            linear_grads(&mut grads[mlp(k)], &pass.act[k], dh, nu, scratch);
            da.resize(nu * h, 0.0);
            matmul(da, rm(dh, nu, h), rm(w(mlp(k)), h, h).t(), false, scratch);
            times_silu_grad(da, &pass.pre[k], &pass.sig[k]);
            linear_grads(&mut grads[local(k)], &pass.h[k], da, nu, scratch);
            // The per-sample terms: the pooled mean and the context.
            group_sums(dr, da, h, u, 1.0);
            for (a, &x) in dctx.iter_mut().zip(dr.iter()) {
                *a += x;
            }
            linear_grads(&mut grads[pooled(k)], &pass.mean[k], dr, n, scratch);
            dmean.resize(n * h, 0.0);
            matmul(
                dmean,
                rm(dr, n, h),
                rm(w(pooled(k)), h, h).t(),
                false,
                scratch,
            );
            matmul(dh, rm(da, nu, h), rm(w(local(k)), h, h).t(), true, scratch);
            add_spread(dh, dmean, h, u, inv_u);
        }
        // h_0 = tokens·W_e + b_e + c.
        linear_grads(&mut grads[EMBED], &pass.tokens, dh, nu, scratch);
        group_sums(dr, dh, h, u, 1.0);
        for (a, &x) in dctx.iter_mut().zip(dr.iter()) {
            *a += x;
        }
        linear_grads(&mut grads[TIME_IN], &pass.temb, dctx, n, scratch);
        linear_grads(&mut grads[GLOBAL_IN], &pass.b2, dctx, n, scratch);
        let Some(dx) = dx else {
            return;
        };
        dtok.resize(nu * tk, 0.0);
        matmul(dtok, rm(dh, nu, h), rm(w(EMBED), tk, h).t(), false, scratch);
        db2.resize(n * c, 0.0);
        matmul(
            db2,
            rm(dctx, n, h),
            rm(w(GLOBAL_IN), c, h).t(),
            false,
            scratch,
        );
        self.shape.join_tokens(dtok, db2, dx);
    }

    /// Zeroed gradients of this field's layers (reusing `grads`' memory).
    pub fn zero_grads(&self, grads: &mut Vec<(Vec<f32>, Vec<f32>)>) {
        grads.resize_with(self.params.len(), Default::default);
        for ((gw, gb), (w, b)) in grads.iter_mut().zip(&self.params) {
            gw.clear();
            gw.resize(w.len(), 0.0);
            gb.clear();
            gb.resize(b.len(), 0.0);
        }
    }
}

/// The functional term of one step: what the generated classifiers are scored on.
#[derive(Clone, Copy, Debug)]
pub struct Functional<'a> {
    /// Its weight λ in the objective.
    pub weight: f32,
    /// The sampler's rollout: standardized source states (`[S, P]`) and the number of Euler
    /// steps; `None` scores the endpoints the field points to from the training pairs,
    /// `x_t + (1 − t)·v(x_t, t)`.
    pub rollout: Option<(&'a [f32], usize)>,
    /// Training images (`[m, d_in]`) and their labels.
    pub images: &'a [f32],
    /// Labels of `images`.
    pub labels: &'a [u8],
    /// Per-coordinate scales that undo the standardization: `raw = z·std + mean`.
    pub std: &'a [f32],
    /// See `std`.
    pub mean: &'a [f32],
}

/// The buffers of one of a step's two independent halves (the flow-matching pairs, and the
/// sampler's rollout with its score), so that both can run at once.
#[derive(Debug, Default)]
struct Lane {
    work: Work,
    scratch: Vec<f32>,
    grads: Vec<(Vec<f32>, Vec<f32>)>,
}

/// What scoring generated classifiers needs.
#[derive(Debug, Default)]
struct Scoring {
    /// The classifiers (standardized) and the gradient with respect to them.
    z: Vec<f32>,
    dz: Vec<f32>,
    raw: Vec<f32>,
    draw: Vec<f32>,
    scorer: Scorer,
}

/// Every buffer of a training step, reused across steps.
#[derive(Debug, Default)]
pub struct StepBuffers {
    fm: Pass,
    dout: Vec<f32>,
    lane: Lane,
    roll: Vec<Pass>,
    roll_lane: Lane,
    scoring: Scoring,
    dx: Vec<f32>,
    t: Vec<f32>,
}

impl FusedSet {
    /// The objective of one step and its gradient (kept in `buf` for [`Self::apply`]): the mean
    /// squared error of `v(x_t, t)` against `u_t` over `t.len()` training pairs, plus, with a
    /// functional term, λ × the generated classifiers' cross-entropy. Returns the flow-matching
    /// loss and the cross-entropy. `step` is the pairs' step-size input (a field with one; a
    /// rollout of K steps feeds its own 1/K).
    ///
    /// With a rollout the two terms are independent until their gradients are summed, so they
    /// run side by side (`rayon::join`; each half's products split further when a thread is
    /// free), and the sum is taken in a fixed order: the bytes do not depend on the threads.
    pub fn loss_and_grads(
        &self,
        xt: &[f32],
        t: &[f32],
        step: f32,
        ut: &[f32],
        functional: Option<Functional<'_>>,
        buf: &mut StepBuffers,
    ) -> (f64, Option<f64>) {
        let StepBuffers {
            fm: fm_pass,
            dout,
            lane,
            roll,
            roll_lane,
            scoring,
            dx,
            t: times,
        } = buf;
        self.zero_grads(&mut lane.grads);
        let pairs = |lane: &mut Lane, dout: &mut Vec<f32>, pass: &mut Pass| {
            self.forward(xt, t, step, pass, &mut lane.scratch);
            super::fused_mlp::mse_and_grad(&pass.out, ut, dout)
        };
        match functional {
            None => {
                let fm = pairs(lane, dout, fm_pass);
                self.backward(fm_pass, dout, &mut lane.grads, None, &mut lane.work);
                (fm, None)
            }
            Some(f) => match f.rollout {
                None => {
                    let fm = pairs(lane, dout, fm_pass);
                    let ce = self.score_endpoints(&f, xt, t, fm_pass, dout, scoring);
                    self.backward(fm_pass, dout, &mut lane.grads, None, &mut lane.work);
                    (fm, Some(ce))
                }
                Some((source, k)) => {
                    self.zero_grads(&mut roll_lane.grads);
                    let (fm, ce) = rayon::join(
                        || {
                            let fm = pairs(lane, dout, fm_pass);
                            self.backward(fm_pass, dout, &mut lane.grads, None, &mut lane.work);
                            fm
                        },
                        || self.rollout(&f, source, k, roll, roll_lane, scoring, dx, times),
                    );
                    for ((gw, gb), (rw, rb)) in lane.grads.iter_mut().zip(&roll_lane.grads) {
                        for (a, &b) in gw.iter_mut().zip(rw).chain(gb.iter_mut().zip(rb)) {
                            *a += b;
                        }
                    }
                    (fm, Some(ce))
                }
            },
        }
    }

    /// The functional term on the endpoints `x_t + (1 − t)·v` of the training pairs: their
    /// cross-entropy, with λ × its gradient through `v` added to `dout`.
    fn score_endpoints(
        &self,
        f: &Functional<'_>,
        xt: &[f32],
        t: &[f32],
        pass: &Pass,
        dout: &mut [f32],
        scoring: &mut Scoring,
    ) -> f64 {
        let p = self.shape.params();
        scoring.z.clear();
        for ((x, v), &ts) in xt.chunks_exact(p).zip(pass.out.chunks_exact(p)).zip(t) {
            scoring
                .z
                .extend(x.iter().zip(v).map(|(&x, &v)| x + (1.0 - ts) * v));
        }
        let ce = self.score(f, scoring);
        for ((g, d), &ts) in dout
            .chunks_exact_mut(p)
            .zip(scoring.dz.chunks_exact(p))
            .zip(t)
        {
            for (g, &d) in g.iter_mut().zip(d) {
                *g += (1.0 - ts) * d;
            }
        }
        ce
    }

    /// The functional term on the sampler itself: `k` Euler steps from `source`, the
    /// cross-entropy of where they end, and λ × its gradient backpropagated through every step
    /// into `lane.grads`: `∂z_j = ∂z_{j+1} + (1/K)·J_vᵀ ∂z_{j+1}`.
    #[allow(clippy::too_many_arguments)]
    fn rollout(
        &self,
        f: &Functional<'_>,
        source: &[f32],
        k: usize,
        passes: &mut Vec<Pass>,
        lane: &mut Lane,
        scoring: &mut Scoring,
        dx: &mut Vec<f32>,
        times: &mut Vec<f32>,
    ) -> f64 {
        let s = source.len() / self.shape.params();
        scoring.z.clear();
        scoring.z.extend_from_slice(source);
        passes.resize_with(k, Pass::default);
        let step = 1.0 / k as f32;
        for (j, pass) in passes.iter_mut().enumerate().take(k) {
            times.clear();
            times.resize(s, j as f32 / k as f32);
            self.forward(&scoring.z, times, step, pass, &mut lane.scratch);
            for (z, &v) in scoring.z.iter_mut().zip(&pass.out) {
                *z += v * step;
            }
        }
        let ce = self.score(f, scoring);
        let Scoring { dz, draw, .. } = scoring;
        for j in (0..k).rev() {
            draw.clear();
            draw.extend(dz.iter().map(|&d| d * step));
            let input = (j > 0).then_some(&mut *dx);
            let has_input = input.is_some();
            self.backward(&passes[j], draw, &mut lane.grads, input, &mut lane.work);
            if has_input {
                for (d, &x) in dz.iter_mut().zip(dx.iter()) {
                    *d += x;
                }
            }
        }
        ce
    }

    /// The cross-entropy of the classifiers `scoring.z` (standardized) and λ × its gradient with
    /// respect to them, in `scoring.dz`.
    fn score(&self, f: &Functional<'_>, scoring: &mut Scoring) -> f64 {
        let p = self.shape.params();
        scoring.raw.clear();
        for row in scoring.z.chunks_exact(p) {
            scoring.raw.extend(
                row.iter()
                    .zip(f.std.iter().zip(f.mean))
                    .map(|(&z, (&s, &m))| z * s + m),
            );
        }
        let ce = scoring.scorer.loss_and_grad(
            self.shape,
            &scoring.raw,
            f.images,
            f.labels,
            &mut scoring.draw,
        );
        scoring.dz.clear();
        for row in scoring.draw.chunks_exact(p) {
            scoring
                .dz
                .extend(row.iter().zip(f.std).map(|(&g, &s)| g * s * f.weight));
        }
        ce
    }

    /// One Adam step on the gradients of the last [`Self::loss_and_grads`].
    pub fn apply(&mut self, adam: &mut super::fused_mlp::FusedAdam, lr: f64, buf: &StepBuffers) {
        adam.update(&mut self.params, &buf.lane.grads, lr);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fused_mlp::{AdamSettings, FusedAdam};
    use super::*;
    use crate::arch::Arch;
    use crate::backend::CpuAutodiff;
    use crate::meta::field::{FieldConfig, FieldKind, SetDims, VectorField, time_input};
    use crate::meta::reward::Reward;
    use burn::module::AutodiffModule;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::backend::Backend;
    use burn::tensor::{Tensor, TensorData};
    use nmflow_runtime::Rng;

    type B = CpuAutodiff;

    fn draw(rng: &mut Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| lo + (hi - lo) * rng.uniform()).collect()
    }

    fn tensor(v: &[f32], rows: usize, cols: usize) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(v.to_vec(), [rows, cols]),
            &Default::default(),
        )
    }

    /// Forward, backward through the flow-matching loss and the functional term (a rollout of
    /// several Euler steps, and the endpoints of the training pairs), and Adam agree with burn's
    /// autodiff and optimizer over several steps.
    #[test]
    fn steps_match_burns_autodiff_and_adam() {
        matches_burn("mlp:6-5-3", 8, 2, 4, (7, 4, 9), false);
    }

    /// The same for a field with a step-size input: the rollout of K steps feeds 1/K, the pairs
    /// the step's own step size.
    #[test]
    fn steps_match_burn_with_a_step_size_input() {
        matches_burn("mlp:6-5-3", 8, 2, 4, (7, 4, 9), true);
    }

    /// The same at sizes where every product is split over several parallel blocks.
    #[test]
    fn steps_match_burn_on_products_split_into_blocks() {
        matches_burn("mlp:100-10-10", 128, 3, 32, (130, 32, 70), false);
    }

    fn matches_burn(
        arch: &str,
        hidden: usize,
        depth: usize,
        time_dim: usize,
        sizes: (usize, usize, usize),
        step_input: bool,
    ) {
        let arch: Arch = arch.parse().unwrap();
        let layout = arch.layout();
        let p = layout.num_params();
        let dims = SetDims::of(&layout).unwrap();
        let (d_in, classes) = (dims.d_in, dims.d_out);
        let cfg = FieldConfig {
            kind: FieldKind::Set,
            set: Some(dims),
            jko: None,
            dim: p,
            hidden,
            depth,
            time_dim,
            step_input,
            diagonal: false,
        };
        let device = Default::default();
        let _seeded = crate::backend::seed_lock();
        B::seed(&device, 5);
        let mut field: VectorField<B> = cfg.init(&device);
        let shape = SetShape {
            units: dims.units,
            d_in: dims.d_in,
            d_out: dims.d_out,
            hidden,
            depth,
            time_dim,
            step_input,
        };
        assert_eq!(shape.params(), p);
        let mut fused = FusedSet::new(shape, field.linear_layers().unwrap().unwrap()).unwrap();
        let wd = 0.01;
        let mut optim = AdamConfig::new()
            .with_weight_decay(Some(WeightDecayConfig::new(wd)))
            .init::<B, VectorField<B>>();
        let mut adam = FusedAdam::new(
            AdamSettings::BURN.with_weight_decay(f64::from(wd)),
            fused.layers(),
        );
        let mut buf = StepBuffers::default();
        let mut rng = Rng::new(9, 0);
        let std = draw(&mut rng, p, 0.5, 2.0);
        let mean = draw(&mut rng, p, -0.3, 0.3);
        let (weight, lr) = (0.7f32, 0.01);
        for (step, rollout) in [Some(3), None, Some(1), Some(2)].into_iter().enumerate() {
            let (n, s, m) = sizes;
            let xt = draw(&mut rng, n * p, -2.0, 2.0);
            let t = draw(&mut rng, n, 0.0, 1.0);
            let ut = draw(&mut rng, n * p, -1.0, 1.0);
            let source = draw(&mut rng, s * p, -1.5, 1.5);
            let images = draw(&mut rng, m * d_in, 0.0, 1.0);
            let labels: Vec<u8> = (0..m).map(|_| rng.below(classes as u32) as u8).collect();
            let onehot: Vec<f32> = labels
                .iter()
                .flat_map(|&l| (0..classes).map(move |c| f32::from(u8::from(c == usize::from(l)))))
                .collect();
            // The pairs take the rollout's step size (or another one without a rollout).
            let h = 1.0 / rollout.unwrap_or(5) as f32;
            let step_of = |h: f32| step_input.then_some(h);
            // burn.
            let x = tensor(&xt, n, p);
            let tt = tensor(&t, n, 1);
            let tin = match step_of(h) {
                Some(h) => tensor(&t.iter().flat_map(|&t| [t, h]).collect::<Vec<_>>(), n, 2),
                None => tt.clone(),
            };
            let v = field.forward(x.clone(), tin);
            let fm = (v.clone() - tensor(&ut, n, p)).powi_scalar(2).mean();
            let end = match rollout {
                Some(k) => {
                    let mut z = tensor(&source, s, p);
                    for j in 0..k {
                        let tj = time_input::<B>(s, j as f32 / k as f32, step_of(h), &device);
                        z = z.clone() + field.forward(z, tj) / k as f64;
                    }
                    z
                }
                None => x + (tt.neg() + 1.0) * v,
            };
            let rows = end.dims()[0];
            let raw = end * tensor(&std, 1, p) + tensor(&mean, 1, p);
            let ce = Reward::CrossEntropy.loss(
                &arch,
                &layout,
                raw.expand([rows, p]),
                tensor(&images, m, d_in),
                tensor(&onehot, m, classes),
            );
            let burn_fm: f32 = fm.clone().into_scalar();
            let burn_ce: f32 = ce.clone().into_scalar();
            let loss = fm + ce * f64::from(weight);
            let grads = GradientsParams::from_grads(loss.backward(), &field);
            field = optim.step(lr, field, grads);
            // fused.
            let f = Functional {
                weight,
                rollout: rollout.map(|k| (source.as_slice(), k)),
                images: &images,
                labels: &labels,
                std: &std,
                mean: &mean,
            };
            let (fm, ce) = fused.loss_and_grads(&xt, &t, h, &ut, Some(f), &mut buf);
            fused.apply(&mut adam, lr, &buf);
            let ce = ce.unwrap();
            assert!(
                (fm - f64::from(burn_fm)).abs() < 1e-5 * fm.max(1.0),
                "step {step}: fm {fm} vs {burn_fm}"
            );
            assert!(
                (ce - f64::from(burn_ce)).abs() < 1e-5 * ce.max(1.0),
                "step {step}: ce {ce} vs {burn_ce}"
            );
            let want = field.valid().linear_layers().unwrap().unwrap();
            let diff = fused
                .layers()
                .iter()
                .zip(&want)
                .flat_map(|((wa, ba), (wb, bb))| wa.iter().zip(wb).chain(ba.iter().zip(bb)))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 5e-5,
                "step {step} ({rollout:?}): weights differ by {diff}"
            );
        }
        // The forward pass alone, on a batch of another size.
        let x = draw(&mut rng, 3 * p, -1.0, 1.0);
        let t = [0.1, 0.5, 0.9];
        let mut pass = Pass::default();
        fused.forward(&x, &t, 0.125, &mut pass, &mut Vec::new());
        let tin = if step_input {
            TensorData::new(t.iter().flat_map(|&t| [t, 0.125]).collect(), [3, 2])
        } else {
            TensorData::new(t.to_vec(), [3, 1])
        };
        let want: Vec<f32> = field
            .valid()
            .forward(
                Tensor::from_data(TensorData::new(x, [3, p]), &device),
                Tensor::from_data(tin, &device),
            )
            .into_data()
            .into_vec()
            .unwrap();
        for (a, b) in pass.out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn layers_of_another_shape_are_refused() {
        let shape = SetShape {
            units: 2,
            d_in: 3,
            d_out: 2,
            hidden: 4,
            depth: 1,
            time_dim: 4,
            step_input: false,
        };
        let ok: Vec<(Vec<f32>, Vec<f32>)> = shape
            .layer_dims()
            .iter()
            .map(|&(i, o)| (vec![0.0; i * o], vec![0.0; o]))
            .collect();
        assert!(FusedSet::new(shape, ok.clone()).is_ok());
        let mut bad = ok.clone();
        bad[4].1.pop();
        assert!(FusedSet::new(shape, bad).unwrap_err().contains("layer 4"));
        assert!(FusedSet::new(shape, ok[..5].to_vec()).is_err());
        let odd = SetShape {
            time_dim: 3,
            ..shape
        };
        assert!(FusedSet::new(odd, ok).is_err());
    }
}
