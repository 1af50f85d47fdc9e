//! The functional term's score in the fused trainer: the mean cross-entropy of a batch of
//! one-hidden-layer ReLU classifiers on a batch of images, and its gradient with respect to their
//! weights, with all classifiers' first layers in one wide product.

use super::fused_set::{SetShape, add_col_sums, rm};
use crate::linalg::matmul;

/// The mean cross-entropy of one-hidden-layer ReLU classifiers on a batch of images, and its
/// gradient with respect to their weights: the functional term's score.
#[derive(Debug, Default)]
pub struct Scorer {
    w1: Vec<f32>,
    pre: Vec<f32>,
    hid: Vec<f32>,
    dhid: Vec<f32>,
    dw1: Vec<f32>,
    db1: Vec<f32>,
    logits: Vec<f32>,
    scratch: Vec<f32>,
}

impl Scorer {
    /// The loss `(1/R) Σ_r (1/m) Σ_i −log softmax(f_r(x_i))[y_i]` of the `R` classifiers `raw`
    /// (`[R, P]`, layout order W1 `[U, d_in]`, b1, W2 `[d_out, U]`, b2) on the images `x`
    /// (`[m, d_in]`) with labels `y`, and its gradient with respect to `raw` in `grad` (`[R, P]`).
    pub fn loss_and_grad(
        &mut self,
        shape: SetShape,
        raw: &[f32],
        x: &[f32],
        y: &[u8],
        grad: &mut Vec<f32>,
    ) -> f64 {
        let SetShape {
            units: u,
            d_in,
            d_out: c,
            ..
        } = shape;
        let p = shape.params();
        let (r, m) = (raw.len() / p, y.len());
        let ru = r * u;
        // Every classifier's first layer side by side: hidden = x·[W1_1ᵀ … W1_Rᵀ] + b1.
        self.w1.clear();
        for row in raw.chunks_exact(p) {
            self.w1.extend_from_slice(&row[..u * d_in]);
        }
        self.pre.clear();
        for _ in 0..m {
            for row in raw.chunks_exact(p) {
                self.pre.extend_from_slice(&row[u * d_in..u * d_in + u]);
            }
        }
        matmul(
            &mut self.pre,
            rm(x, m, d_in),
            rm(&self.w1, ru, d_in).t(),
            true,
            &mut self.scratch,
        );
        self.hid.clear();
        self.hid.extend(self.pre.iter().map(|&z| z.max(0.0)));
        self.dhid.clear();
        self.dhid.resize(m * ru, 0.0);
        grad.clear();
        grad.resize(r * p, 0.0);
        let scale = 1.0 / (m * r) as f32;
        let mut total = 0.0f64;
        let logits = &mut self.logits;
        logits.clear();
        logits.resize(c, 0.0);
        for (k, (row, g)) in raw
            .chunks_exact(p)
            .zip(grad.chunks_exact_mut(p))
            .enumerate()
        {
            let w2 = &row[u * d_in + u..][..c * u];
            let b2 = &row[u * d_in + u + c * u..][..c];
            let (gw2, gb2) = g[u * d_in + u..].split_at_mut(c * u);
            for (i, &label) in y.iter().enumerate() {
                let hid = &self.hid[i * ru + k * u..][..u];
                for (o, l) in logits.iter_mut().enumerate() {
                    *l = b2[o]
                        + hid
                            .iter()
                            .zip(&w2[o * u..][..u])
                            .map(|(a, b)| a * b)
                            .sum::<f32>();
                }
                let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = logits.iter().map(|&l| (l - top).exp()).sum();
                let lse = top + sum.ln();
                total += f64::from(lse - logits[usize::from(label)]);
                let dhid = &mut self.dhid[i * ru + k * u..][..u];
                for o in 0..c {
                    let mut d = (logits[o] - lse).exp();
                    if o == usize::from(label) {
                        d -= 1.0;
                    }
                    let d = d * scale;
                    gb2[o] += d;
                    for ((gw, dh), (&hv, &wv)) in gw2[o * u..][..u]
                        .iter_mut()
                        .zip(dhid.iter_mut())
                        .zip(hid.iter().zip(&w2[o * u..][..u]))
                    {
                        *gw += d * hv;
                        *dh += d * wv;
                    }
                }
            }
        }
        // Through the ReLU, then the first layers.
        for (d, &z) in self.dhid.iter_mut().zip(&self.pre) {
            if z <= 0.0 {
                *d = 0.0;
            }
        }
        self.dw1.resize(ru * d_in, 0.0);
        matmul(
            &mut self.dw1,
            rm(&self.dhid, m, ru).t(),
            rm(x, m, d_in),
            false,
            &mut self.scratch,
        );
        self.db1.clear();
        self.db1.resize(ru, 0.0);
        add_col_sums(&mut self.db1, &self.dhid);
        for (k, g) in grad.chunks_exact_mut(p).enumerate() {
            g[..u * d_in].copy_from_slice(&self.dw1[k * u * d_in..][..u * d_in]);
            g[u * d_in..u * d_in + u].copy_from_slice(&self.db1[k * u..][..u]);
        }
        total / (m * r) as f64
    }
}
