//! Per-block standardization of flat weight vectors: `z = (w − μ_b) / s_b` for every coordinate of
//! block `b`, with `μ_b`, `s_b` the mean and standard deviation of that block over every checkpoint
//! of the training runs (held-out runs never contribute). Saved with the model; undone after
//! sampling.

use serde::{Deserialize, Serialize};

use super::trajectories::Trajectories;
use crate::arch::Layout;

/// Per-block statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Block lengths, in layout order.
    pub block_len: Vec<usize>,
    /// Per-block mean.
    pub mean: Vec<f32>,
    /// Per-block standard deviation (at least 1e-8).
    pub std: Vec<f32>,
}

impl Normalizer {
    /// Fits the statistics on every checkpoint of `train`.
    pub fn fit(layout: &Layout, train: &Trajectories) -> Self {
        let block_len: Vec<usize> = layout.blocks.iter().map(|b| b.len()).collect();
        let offsets = layout.offsets();
        let mut mean = Vec::with_capacity(block_len.len());
        let mut std = Vec::with_capacity(block_len.len());
        let points = train.len() * train.checkpoints();
        for (b, &len) in block_len.iter().enumerate() {
            let (mut s, mut s2) = (0.0f64, 0.0f64);
            for q in 0..points {
                let row = &train.data[q * train.num_params..(q + 1) * train.num_params];
                for &v in &row[offsets[b]..offsets[b] + len] {
                    s += f64::from(v);
                    s2 += f64::from(v) * f64::from(v);
                }
            }
            let n = (points * len).max(1) as f64;
            let m = s / n;
            mean.push(m as f32);
            std.push(((s2 / n - m * m).max(0.0).sqrt() as f32).max(1e-8));
        }
        Self {
            block_len,
            mean,
            std,
        }
    }

    /// Standardizes rows of flat vectors in place.
    pub fn apply(&self, rows: &mut [f32]) {
        self.map(rows, |v, m, s| (v - m) / s);
    }

    /// Per-coordinate `(std, mean)` rows of length `num_params`, so that `z · std + mean` undoes
    /// [`Normalizer::apply`] as tensor operations.
    pub fn coordinate_scales(&self) -> (Vec<f32>, Vec<f32>) {
        let mut s = Vec::new();
        let mut m = Vec::new();
        for ((&len, &mu), &sd) in self.block_len.iter().zip(&self.mean).zip(&self.std) {
            s.extend(std::iter::repeat_n(sd, len));
            m.extend(std::iter::repeat_n(mu, len));
        }
        (s, m)
    }

    /// [`Normalizer::coordinate_scales`] as `[1, P]` rows on a device: `(std, mean)`.
    pub fn scale_rows<B: burn::tensor::backend::Backend>(
        &self,
        device: &B::Device,
    ) -> (burn::tensor::Tensor<B, 2>, burn::tensor::Tensor<B, 2>) {
        use burn::tensor::{Tensor, TensorData};
        let (sd, mu) = self.coordinate_scales();
        let p = sd.len();
        (
            Tensor::from_data(TensorData::new(sd, [1, p]), device),
            Tensor::from_data(TensorData::new(mu, [1, p]), device),
        )
    }

    /// Undoes [`Normalizer::apply`] in place.
    pub fn invert(&self, rows: &mut [f32]) {
        self.map(rows, |v, m, s| v * s + m);
    }

    fn map(&self, rows: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
        let p: usize = self.block_len.iter().sum();
        for row in rows.chunks_exact_mut(p) {
            let mut off = 0;
            for (b, &len) in self.block_len.iter().enumerate() {
                for v in &mut row[off..off + len] {
                    *v = f(*v, self.mean[b], self.std[b]);
                }
                off += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizes_each_block_and_round_trips() {
        let layout: Layout = "mlp:2-1".parse::<crate::arch::Arch>().unwrap().layout();
        // blocks: fc1.weight (2 values), fc1.bias (1 value); two runs, two checkpoints.
        let train = Trajectories {
            runs: vec![0, 1],
            times: vec![0.0, 1.0],
            num_params: 3,
            data: vec![
                1.0, 3.0, 10.0, 1.0, 3.0, 10.0, 5.0, 7.0, 20.0, 5.0, 7.0, 20.0,
            ],
        };
        let n = Normalizer::fit(&layout, &train);
        assert_eq!(n.mean, vec![4.0, 15.0]);
        assert!((n.std[0] - 5.0f32.sqrt()).abs() < 1e-6 && (n.std[1] - 5.0).abs() < 1e-6);
        let mut rows = train.data.clone();
        n.apply(&mut rows);
        assert!((rows[2] + 1.0).abs() < 1e-6);
        n.invert(&mut rows);
        for (a, b) in rows.iter().zip(&train.data) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
