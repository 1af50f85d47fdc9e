//! The vector-field network: an MLP on `[x, emb(t)]` with SiLU activations.
//!
//! `emb(t)` is a sinusoidal embedding: `[sin(2π f_j t), cos(2π f_j t)]` with `time_dim/2`
//! frequencies `f_j` spaced geometrically from 1 to 100.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::TensorData;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// Shape of the field network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldConfig {
    /// Dimension of the state (parameters per classifier).
    pub dim: usize,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of hidden layers.
    pub depth: usize,
    /// Width of the time embedding (even).
    pub time_dim: usize,
}

/// `v(x, t)`.
#[derive(Module, Debug)]
pub struct VectorField<B: Backend> {
    layers: Vec<Linear<B>>,
}

impl FieldConfig {
    /// Creates the network with burn's default (Kaiming-uniform) initialization.
    pub fn init<B: Backend>(&self, device: &B::Device) -> VectorField<B> {
        let mut widths = vec![self.dim + self.time_dim];
        widths.extend(std::iter::repeat_n(self.hidden, self.depth));
        widths.push(self.dim);
        VectorField {
            layers: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
        }
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let mut widths = vec![self.dim + self.time_dim];
        widths.extend(std::iter::repeat_n(self.hidden, self.depth));
        widths.push(self.dim);
        widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }
}

/// Frequencies of the time embedding.
pub fn time_frequencies(time_dim: usize) -> Vec<f32> {
    let half = (time_dim / 2).max(1);
    (0..half)
        .map(|j| {
            let e = if half > 1 {
                j as f32 / (half - 1) as f32
            } else {
                0.0
            };
            std::f32::consts::TAU * 100f32.powf(e)
        })
        .collect()
}

impl<B: Backend> VectorField<B> {
    /// The predicted velocity.
    ///
    /// # Shapes
    /// `x` `[N, dim]`, `t` `[N, 1]` → `[N, dim]`.
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 2>) -> Tensor<B, 2> {
        let time_dim = self.layers[0].weight.dims()[0] - x.dims()[1];
        let freqs = time_frequencies(time_dim);
        let f = Tensor::<B, 2>::from_data(
            TensorData::new(freqs.clone(), [1, freqs.len()]),
            &x.device(),
        );
        let angle = t.matmul(f);
        let mut h = Tensor::cat(vec![x, angle.clone().sin(), angle.cos()], 1);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = silu(h);
            }
        }
        h
    }
}
