//! The VAE's networks and the closed-form pieces of its loss.
//!
//! Encoder: an MLP (SiLU) from the standardized, canonically ordered weight vector (`D` values) to
//! the mean and log-variance of a diagonal Gaussian posterior over `L` latent values. Decoder: an
//! MLP (SiLU) from `z` back to the `D` values. The loss per classifier is
//! `‖x̂ − x‖²/D + β·KL(q(z|x) ‖ N(0, I))/D` (both per weight coordinate, so β = 1 is the ELBO of
//! a Gaussian likelihood with variance ½ per standardized coordinate), plus the functional term of
//! [`super::train`].

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::meta::field::SequentialIds;

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
}

impl VaeShape {
    /// Trainable parameters, computed without overflow (`None` past `u128`).
    pub fn num_params_checked(&self) -> Option<u128> {
        let lin = |a: usize, b: usize| (a as u128).checked_mul(b as u128)?.checked_add(b as u128);
        let (d, l, h) = (self.dim, self.latent, self.hidden);
        let inner = lin(h, h)?.checked_mul(self.depth.saturating_sub(1) as u128)?;
        [
            lin(d, h)?,
            inner,
            lin(h, 2 * l)?,
            lin(l, h)?,
            inner,
            lin(h, d)?,
        ]
        .iter()
        .try_fold(0u128, |a, &b| a.checked_add(b))
    }

    /// Decoder parameters only (what a device needs to turn latents into weights).
    pub fn decoder_params(&self) -> usize {
        let lin = |a: usize, b: usize| a * b + b;
        let (d, l, h) = (self.dim, self.latent, self.hidden);
        lin(l, h) + lin(h, h) * self.depth.saturating_sub(1) + lin(h, d)
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
        Vae {
            encoder: stack(d),
            head: lin(h, 2 * l),
            decoder: stack(l),
            out: lin(h, d),
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
    decoder: Vec<Linear<B>>,
    out: Linear<B>,
    latent: usize,
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
        self.out.forward(h)
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
}
