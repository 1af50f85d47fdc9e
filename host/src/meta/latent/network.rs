//! The VAE's networks and the closed-form pieces of its loss.
//!
//! Encoder: an MLP (SiLU) from the standardized, canonically ordered weight vector (`D` values) to
//! the mean and log-variance of a diagonal Gaussian posterior over `L` latent values. Decoder
//! (`--decoder`): an MLP (SiLU) from `z` back to the `D` values (`mlp`), or, for one-hidden-layer
//! MLP classifiers, a decoder over hidden units (`units`): a trunk MLP maps `z` to `h`, and hidden
//! unit `j` (in canonical order) is the token `[W1[j, :], b1[j], W2[:, j]]` decoded by a shared
//! two-layer network from `silu(A·h + e_j)` with a learned slot embedding `e_j`
//! (`token(silu(A₂·silu(A·h + e_j)))`); the output bias comes from `h`. Its output layer has the size of one token, not of the whole classifier, so it is far
//! smaller where classifiers are large (MNIST). The loss per classifier is
//! `‖x̂ − x‖²/D + β·KL(q(z|x) ‖ N(0, I))/D` (both per weight coordinate, so β = 1 is the ELBO of
//! a Gaussian likelihood with variance ½ per standardized coordinate), plus the functional term of
//! [`super::train`].

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::TensorRead;
use crate::meta::field::{DenseLayer, SequentialIds, SetDims, dense_layer};

/// Log-variances are clamped to this range, so that `exp` neither overflows nor underflows in
/// early training.
pub const LOGVAR_RANGE: (f32, f32) = (-14.0, 6.0);

/// The shape of the two networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaeShape {
    /// Values per classifier (`D`).
    pub dim: usize,
    /// Latent values (`L`).
    pub latent: usize,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Hidden layers of the encoder, and of the decoder.
    pub depth: usize,
    /// The decoder's structure.
    #[serde(default)]
    pub decoder: DecoderKind,
    /// Token dimensions of the classifier (the `units` decoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<SetDims>,
}

/// The decoder's structure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// An MLP from `z` to the whole weight vector.
    #[default]
    Mlp,
    /// A decoder over hidden units (one-hidden-layer MLP classifiers): one shared output layer of
    /// a token's size.
    Units,
}

impl VaeShape {
    /// Trainable parameters, computed without overflow (`None` past `u128`).
    pub fn num_params_checked(&self) -> Option<u128> {
        let lin = |a: usize, b: usize| (a as u128).checked_mul(b as u128)?.checked_add(b as u128);
        let (d, l, h) = (self.dim, self.latent, self.hidden);
        let inner = lin(h, h)?.checked_mul(self.depth.saturating_sub(1) as u128)?;
        let encoder = [lin(d, h)?, inner, lin(h, 2 * l)?]
            .iter()
            .try_fold(0u128, |a, &b| a.checked_add(b))?;
        encoder.checked_add(self.decoder_params_checked()?)
    }

    fn decoder_params_checked(&self) -> Option<u128> {
        let lin = |a: usize, b: usize| (a as u128).checked_mul(b as u128)?.checked_add(b as u128);
        let (d, l, h) = (self.dim, self.latent, self.hidden);
        let inner = lin(h, h)?.checked_mul(self.depth.saturating_sub(1) as u128)?;
        let trunk = lin(l, h)?.checked_add(inner)?;
        let rest = match (self.decoder, self.units) {
            (DecoderKind::Units, Some(u)) => [
                lin(u.units, h)?,
                lin(h, h)?,
                lin(h, h)?,
                lin(h, u.d_in + 1 + u.d_out)?,
                lin(h, u.d_out)?,
            ]
            .iter()
            .try_fold(0u128, |a, &b| a.checked_add(b))?,
            _ => lin(h, d)?,
        };
        trunk.checked_add(rest)
    }

    /// Decoder parameters only (what a device needs to turn latents into weights).
    pub fn decoder_params(&self) -> usize {
        self.decoder_params_checked()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX)
    }

    /// Creates the networks with burn's default initialization (from the backend's seed) and
    /// parameter ids numbered in module order (so a seed's files are identical byte for byte).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vae<B> {
        let lin = |a: usize, b: usize| LinearConfig::new(a, b).init(device);
        let (d, l, h) = (self.dim, self.latent, self.hidden);
        let depth = self.depth.max(1);
        let stack = |first: usize| {
            std::iter::once(lin(first, h))
                .chain((1..depth).map(|_| lin(h, h)))
                .collect::<Vec<_>>()
        };
        let units = match (self.decoder, self.units) {
            (DecoderKind::Units, Some(u)) => Some(UnitDecoder {
                slots: lin(u.units, h),
                mix: lin(h, h),
                inner: lin(h, h),
                token: lin(h, u.d_in + 1 + u.d_out),
                bias: lin(h, u.d_out),
                units: u.units,
                d_in: u.d_in,
                d_out: u.d_out,
            }),
            _ => None,
        };
        Vae {
            encoder: stack(d),
            head: lin(h, 2 * l),
            decoder: stack(l),
            out: if units.is_some() {
                Vec::new()
            } else {
                vec![lin(h, d)]
            },
            units,
            latent: l,
        }
        .map(&mut SequentialIds(0))
    }
}

/// Encoder and decoder.
#[derive(Module, Debug)]
pub struct Vae<B: Backend> {
    encoder: Vec<Linear<B>>,
    head: Linear<B>,
    /// The decoder's trunk (`L → H`, then `H → H`).
    decoder: Vec<Linear<B>>,
    /// The MLP decoder's output layer (`H → D`; empty for the units decoder).
    out: Vec<Linear<B>>,
    units: Option<UnitDecoder<B>>,
    latent: usize,
}

/// The units decoder's heads (see the module docs).
#[derive(Module, Debug)]
pub struct UnitDecoder<B: Backend> {
    /// Slot embeddings `e_j`: row `j` of this layer's weights plus its bias.
    slots: Linear<B>,
    mix: Linear<B>,
    inner: Linear<B>,
    token: Linear<B>,
    bias: Linear<B>,
    units: usize,
    d_in: usize,
    d_out: usize,
}

impl<B: Backend> UnitDecoder<B> {
    /// The flat weight vector `[W1, b1, W2, b2]` from the trunk's output `h` (`[n, H]`).
    fn forward(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        let [n, width] = h.dims();
        let (u, d_in, d_out) = (self.units, self.d_in, self.d_out);
        let device = h.device();
        let eye: Vec<f32> = (0..u * u)
            .map(|k| if k / u == k % u { 1.0 } else { 0.0 })
            .collect();
        let slots = self.slots.forward(Tensor::<B, 2>::from_data(
            TensorData::new(eye, [u, u]),
            &device,
        ));
        let mixed: Tensor<B, 3> =
            self.mix.forward(h.clone()).reshape([n, 1, width]) + slots.reshape([1, u, width]);
        // Per-token layers as 2-D products over all `n·u` tokens (burn's rank-3 `Linear`
        // broadcasts its weight over the batch, which is far slower).
        let flat = silu(mixed).reshape([n * u, width]);
        let tokens =
            self.token
                .forward(silu(self.inner.forward(flat)))
                .reshape([n, u, d_in + 1 + d_out]);
        let w1 = tokens
            .clone()
            .slice([0..n, 0..u, 0..d_in])
            .reshape([n, u * d_in]);
        let b1 = tokens
            .clone()
            .slice([0..n, 0..u, d_in..d_in + 1])
            .reshape([n, u]);
        let w2 = tokens
            .slice([0..n, 0..u, d_in + 1..d_in + 1 + d_out])
            .swap_dims(1, 2)
            .reshape([n, d_out * u]);
        let b2 = self.bias.forward(h);
        Tensor::cat(vec![w1, b1, w2, b2], 1)
    }
}

impl<B: Backend> Vae<B> {
    /// The posterior's mean and (clamped) log-variance of each row of `x` (`[n, D]`), `[n, L]` each.
    pub fn encode(&self, x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let h = self
            .encoder
            .iter()
            .fold(x, |h, layer| silu(layer.forward(h)));
        let out = self.head.forward(h);
        let n = out.dims()[0];
        let l = self.latent;
        let mu = out.clone().slice([0..n, 0..l]);
        let logvar = out
            .slice([0..n, l..2 * l])
            .clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1);
        (mu, logvar)
    }

    /// The decoded rows of `z` (`[n, L]`), `[n, D]`.
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = self
            .decoder
            .iter()
            .fold(z, |h, layer| silu(layer.forward(h)));
        match (&self.units, self.out.first()) {
            (Some(units), _) => units.forward(h),
            (None, Some(out)) => out.forward(h),
            (None, None) => h,
        }
    }
}

/// The decoder's layers as plain data (row-major `[d_out][d_in]`), in export order.
pub struct DecoderLayers {
    /// The trunk (`L → H`, then `H → H`), each followed by SiLU.
    pub trunk: Vec<DenseLayer>,
    /// The head: `[out]` (`H → D`) for the MLP decoder; `[slots, mix, inner, token, bias]` for
    /// the units decoder.
    pub head: Vec<DenseLayer>,
    /// Which decoder it is.
    pub kind: DecoderKind,
}

impl<B: Backend> Vae<B> {
    /// The decoder's layers, for export.
    ///
    /// # Errors
    /// [`TensorRead`] when the backend's values cannot be read back.
    pub fn decoder_layers(&self) -> Result<DecoderLayers, TensorRead> {
        let trunk = self
            .decoder
            .iter()
            .map(dense_layer)
            .collect::<Result<Vec<_>, _>>()?;
        let (head, kind) = match &self.units {
            Some(u) => (
                [&u.slots, &u.mix, &u.inner, &u.token, &u.bias]
                    .into_iter()
                    .map(dense_layer)
                    .collect::<Result<Vec<_>, _>>()?,
                DecoderKind::Units,
            ),
            None => (
                self.out
                    .iter()
                    .map(dense_layer)
                    .collect::<Result<Vec<_>, _>>()?,
                DecoderKind::Mlp,
            ),
        };
        Ok(DecoderLayers { trunk, head, kind })
    }
}

/// `KL(N(μ, diag e^{lv}) ‖ N(0, I))` summed over latent values, averaged over rows: `[1]`.
pub fn kl<B: Backend>(mu: Tensor<B, 2>, logvar: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = mu.dims()[0].max(1);
    ((mu.powi_scalar(2) + logvar.clone().exp() - logvar - 1.0).sum() * 0.5) / n as f64
}

/// Mean squared error per value: `[1]`.
pub fn reconstruction<B: Backend>(x_hat: Tensor<B, 2>, x: Tensor<B, 2>) -> Tensor<B, 1> {
    (x_hat - x).powi_scalar(2).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use burn::tensor::{ElementConversion, TensorData};

    fn t(v: Vec<f32>, n: usize, m: usize) -> Tensor<Cpu, 2> {
        Tensor::from_data(TensorData::new(v, [n, m]), &Default::default())
    }

    #[test]
    fn kl_of_known_gaussians() {
        // The prior itself: zero.
        let zero: f32 = kl(t(vec![0.0; 6], 2, 3), t(vec![0.0; 6], 2, 3))
            .into_scalar()
            .elem();
        assert!(zero.abs() < 1e-7);
        // One value: μ = 2, σ² = e: ½(4 + e − 1 − 1) = 1 + e/2; a second row of the prior halves
        // the mean over rows.
        let v: f32 = kl(t(vec![2.0, 0.0], 2, 1), t(vec![1.0, 0.0], 2, 1))
            .into_scalar()
            .elem();
        let expected = (1.0 + std::f32::consts::E / 2.0) / 2.0;
        assert!((v - expected).abs() < 1e-5, "{v} vs {expected}");
    }

    #[test]
    fn reconstruction_of_a_constant() {
        let x = t(vec![3.0; 8], 2, 4);
        let same: f32 = reconstruction(x.clone(), x.clone()).into_scalar().elem();
        assert_eq!(same, 0.0);
        let off: f32 = reconstruction(x.clone() + 0.5, x).into_scalar().elem();
        assert!((off - 0.25).abs() < 1e-7);
    }

    #[test]
    fn shapes_and_parameter_counts_agree() {
        let shape = VaeShape {
            dim: 12,
            latent: 3,
            hidden: 8,
            depth: 2,
            decoder: DecoderKind::Mlp,
            units: None,
        };
        let vae: Vae<Cpu> = shape.init(&Default::default());
        assert_eq!(
            vae.num_params() as u128,
            shape.num_params_checked().unwrap()
        );
        let (mu, lv) = vae.encode(t(vec![0.1; 24], 2, 12));
        assert_eq!((mu.dims(), lv.dims()), ([2, 3], [2, 3]));
        assert_eq!(vae.decode(mu).dims(), [2, 12]);
        let decoder = 3 * 8 + 8 + 8 * 8 + 8 + 8 * 12 + 12;
        assert_eq!(shape.decoder_params(), decoder);
    }

    #[test]
    fn the_units_decoder_puts_each_token_where_the_layout_has_it() {
        // mlp:3-2-2: W1 [2][3], b1 [2], W2 [2][2], b2 [2] = 14 values; tokens of 3 + 1 + 2.
        let shape = VaeShape {
            dim: 14,
            latent: 2,
            hidden: 4,
            depth: 1,
            decoder: DecoderKind::Units,
            units: Some(SetDims {
                units: 2,
                d_in: 3,
                d_out: 2,
            }),
        };
        let vae: Vae<Cpu> = shape.init(&Default::default());
        assert_eq!(
            vae.num_params() as u128,
            shape.num_params_checked().unwrap()
        );
        let z = t(vec![0.3, -0.7, 1.1, 0.2], 2, 2);
        let out = vae.decode(z.clone());
        assert_eq!(out.dims(), [2, 14]);
        // Recompute unit 1's token by hand from the trunk and the shared layers.
        let u = vae.units.as_ref().unwrap();
        let h = silu(vae.decoder[0].forward(z));
        let eye = t(vec![1.0, 0.0, 0.0, 1.0], 2, 2);
        let slot = u.slots.forward(eye).slice([1..2, 0..4]);
        let token: Vec<f32> = u
            .token
            .forward(silu(u.inner.forward(silu(u.mix.forward(h) + slot))))
            .into_data()
            .to_vec()
            .unwrap();
        let got: Vec<f32> = out.into_data().to_vec().unwrap();
        for row in 0..2 {
            let (tok, w) = (&token[row * 6..row * 6 + 6], &got[row * 14..row * 14 + 14]);
            // W1 row 1, b1[1], then W2[o][1] for o = 0, 1.
            for (a, b) in w[3..6].iter().zip(&tok[0..3]) {
                assert!((a - b).abs() < 1e-6);
            }
            assert!((w[7] - tok[3]).abs() < 1e-6);
            assert!((w[9] - tok[4]).abs() < 1e-6 && (w[11] - tok[5]).abs() < 1e-6);
        }
    }
}
