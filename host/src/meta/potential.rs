//! NM-JKO: a scalar potential `V(x)` whose gradient steps reproduce consecutive checkpoints.
//!
//! Training minimizes `Σ ‖τ∇V(y) + y − x‖²` over consecutive checkpoints `(x, y) = (θ_k, θ_{k+1})`
//! of a run (the first-order optimality condition of the JKO step; JKOnet*, Terpin et al. 2024).
//! burn has no second-order autodiff, so `∇V` is computed in closed form: the backward pass of the
//! potential's MLP written out as ordinary tensor operations; training then needs first-order
//! gradients only. Sampling takes `k` explicit steps `x ← x − τ∇V(x)`, which is Euler integration
//! with `k` steps of the field `v(x) = −kτ∇V(x)`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::backend::Backend;

/// `V(x)`: an MLP `P → hidden … → 1` with SiLU activations.
#[derive(Module, Debug)]
pub struct Potential<B: Backend> {
    layers: Vec<Linear<B>>,
}

/// Creates a potential with `depth` hidden layers of width `hidden`.
pub fn init<B: Backend>(
    dim: usize,
    hidden: usize,
    depth: usize,
    device: &B::Device,
) -> Potential<B> {
    let mut widths = vec![dim];
    widths.extend(std::iter::repeat_n(hidden, depth.max(1)));
    widths.push(1);
    Potential {
        layers: widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect(),
    }
}

impl<B: Backend> Potential<B> {
    /// `V(x)` and `∇V(x)`.
    ///
    /// # Shapes
    /// `x` `[N, P]` → (`[N, 1]`, `[N, P]`).
    pub fn value_and_grad(&self, x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let last = self.layers.len() - 1;
        let mut pre: Vec<Tensor<B, 2>> = Vec::with_capacity(last);
        let mut h = x;
        for layer in &self.layers[..last] {
            let z = layer.forward(h);
            pre.push(z.clone());
            h = silu(z);
        }
        let value = self.layers[last].forward(h);
        let n = value.dims()[0];
        // dV/dh_L = w_Lᵀ for every sample: [N, 1] · [1, H].
        let w_last = self.layers[last].weight.val();
        let mut delta = Tensor::<B, 2>::ones([n, 1], &value.device()).matmul(w_last.transpose());
        for (layer, z) in self.layers[..last].iter().zip(pre).rev() {
            let s = sigmoid(z.clone());
            let dsilu = s.clone() * (z * (s.neg() + 1.0) + 1.0);
            delta = (delta * dsilu).matmul(layer.weight.val().transpose());
        }
        (value, delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn closed_form_gradient_matches_finite_differences() {
        let dev = Default::default();
        let _seeded = crate::backend::seed_lock();
        Cpu::seed(&dev, 3);
        let pot = init::<Cpu>(5, 7, 2, &dev);
        let x = Tensor::<Cpu, 2>::random([3, 5], Distribution::Normal(0.0, 1.0), &dev);
        let (_, grad) = pot.value_and_grad(x.clone());
        let grad = grad.into_data().to_vec::<f32>().unwrap();
        let xs = x.into_data().to_vec::<f32>().unwrap();
        let eps = 1e-2f32;
        for j in 0..15 {
            let mut plus = xs.clone();
            let mut minus = xs.clone();
            plus[j] += eps;
            minus[j] -= eps;
            let v = |d: Vec<f32>| {
                let t = Tensor::<Cpu, 2>::from_data(TensorData::new(d, [3, 5]), &dev);
                pot.value_and_grad(t).0.into_data().to_vec::<f32>().unwrap()[j / 5]
            };
            let fd = (v(plus) - v(minus)) / (2.0 * eps);
            assert!(
                (fd - grad[j]).abs() < 2e-3,
                "coordinate {j}: fd {fd} vs {}",
                grad[j]
            );
        }
        let cfg = crate::meta::field::FieldConfig {
            kind: crate::meta::field::FieldKind::Potential,
            set: None,
            jko: None,
            dim: 5,
            hidden: 7,
            depth: 2,
            time_dim: 2,
            step_input: false,
            diagonal: false,
        };
        assert_eq!(cfg.num_params(), 5 * 7 + 7 + 7 * 7 + 7 + 7 + 1);
        assert_eq!(cfg.num_params(), burn::module::Module::num_params(&pot));
    }
}
