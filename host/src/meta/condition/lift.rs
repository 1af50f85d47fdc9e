//! The class-equivariant field of `--condition classes`: the output layer's classes become
//! tokens, each carrying its label's support prototype, so that relabelling a task permutes the
//! tokens and every labelling is covered by construction.
//!
//! For a one-hidden-layer classifier (`W1 [U, d]`, `b1 [U]`, `W2 [C, U]`, `b2 [C]`, standardized)
//! and class tokens `τ_c` (the encoder's per-label features and the label's mean support input
//! `x̄_c`, [`super::network`]):
//!
//! * class features `κ_c = inject(τ_c)`, `k_c = silu(κ_c + class_in(b2[c]))`;
//! * pair features of unit `j` and class `c`:
//!   `e_jc = silu(pair_in([W2[c, j], b2[c], s_jc]) + κ_c)` with `s_jc = W1[j]·x̄_c / √d + b1[j]`,
//!   the unit's pre-activation on the class's mean example;
//! * the set field (unchanged, permutation-equivariant in the units) runs on the lifted state
//!   whose unit tokens are `[W1[j], b1[j], r_j]`, `r_j = to_token(mean_c e_jc)`, and whose global
//!   input is `g = to_global(mean_c k_c)`; it returns `[v_W1, v_b1, o_j, o_g]`;
//! * `z_jc = silu(from_token(o_j) + pair_mix(e_jc))`, `v_W2[c, j] = pair_out(z_jc)`;
//!   `v_b2[c] = bias_out(silu(from_global(o_g) + class_mix(k_c) + mean_j z_jc))`.
//!
//! Every class is handled by the same layers and classes meet only through means, so permuting
//! the classes (rows of `W2` and `b2` with their tokens) permutes the velocity's rows alike; the
//! set field keeps the equivariance in the hidden units.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

use crate::backend::TensorRead;
use crate::meta::field::{DenseLayer, SetDims, VectorField, dense_layer, split_state};

/// Width of the lifted unit tokens' class summary `r_j` (the set field's "classes").
pub const LIFT_WIDTH: usize = 64;
/// Width of the pair and class features.
pub const PAIR_WIDTH: usize = 64;

/// The layers that lift classes into the set field and read its output back per class.
#[derive(Module, Debug)]
pub struct ClassLift<B: Backend> {
    class_in: Linear<B>,
    pair_in: Linear<B>,
    to_token: Linear<B>,
    to_global: Linear<B>,
    from_token: Linear<B>,
    pair_mix: Linear<B>,
    pair_out: Linear<B>,
    from_global: Linear<B>,
    class_mix: Linear<B>,
    bias_out: Linear<B>,
}

/// Trainable parameters of [`ClassLift`].
pub fn num_params() -> usize {
    let lin = |a: usize, b: usize| a * b + b;
    let (r, h) = (LIFT_WIDTH, PAIR_WIDTH);
    lin(1, h) + lin(3, h) + 2 * lin(h, r) + 2 * lin(r, h) + 2 * lin(h, h) + 2 * lin(h, 1)
}

/// A fresh lift (burn's default initialization).
pub fn init<B: Backend>(device: &B::Device) -> ClassLift<B> {
    let lin = |a: usize, b: usize| LinearConfig::new(a, b).init(device);
    let (r, h) = (LIFT_WIDTH, PAIR_WIDTH);
    ClassLift {
        class_in: lin(1, h),
        pair_in: lin(3, h),
        to_token: lin(h, r),
        to_global: lin(h, r),
        from_token: lin(r, h),
        pair_mix: lin(h, h),
        pair_out: lin(h, 1),
        from_global: lin(r, h),
        class_mix: lin(h, h),
        bias_out: lin(h, 1),
    }
}

/// The set field's token dimensions when it runs on a lifted state.
pub fn lifted_dims(d: SetDims) -> SetDims {
    SetDims {
        d_out: LIFT_WIDTH,
        ..d
    }
}

/// A Linear layer on the last axis of a rank-`D` tensor.
fn last_axis<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = x.shape().num_elements() / d.max(1);
    let y = layer.forward(x.reshape([rows, d]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

impl<B: Backend> ClassLift<B> {
    /// The layers as plain data, in the model file's order: class_in, pair_in, to_token,
    /// to_global, from_token, pair_mix, pair_out, from_global, class_mix, bias_out.
    ///
    /// # Errors
    /// When the backend's values cannot be read back.
    pub fn dense_layers(&self) -> Result<Vec<DenseLayer>, TensorRead> {
        [
            &self.class_in,
            &self.pair_in,
            &self.to_token,
            &self.to_global,
            &self.from_token,
            &self.pair_mix,
            &self.pair_out,
            &self.from_global,
            &self.class_mix,
            &self.bias_out,
        ]
        .into_iter()
        .map(dense_layer)
        .collect()
    }

    /// The velocity of the classifiers `x` (`[N, P]`, layout order) at `t` (`[N, 1]`) for the
    /// class features `kappa` (`[N, C, PAIR_WIDTH]`, `inject(τ_c)`) and the classes' mean support
    /// inputs `xbar` (`[N, C, d]`), with the set field `field` (built on [`lifted_dims`]).
    pub fn velocity(
        &self,
        field: &VectorField<B>,
        dims: SetDims,
        x: Tensor<B, 2>,
        t: Tensor<B, 2>,
        kappa: Tensor<B, 3>,
        xbar: Tensor<B, 3>,
    ) -> Tensor<B, 2> {
        let (u, d, c) = (dims.units, dims.d_in, dims.d_out);
        let (r, h) = (LIFT_WIDTH, PAIR_WIDTH);
        let n = x.dims()[0];
        // W2 as [n, U, C] (unit-major), b2 as [n, C].
        let [w1, b1, w2, b2] = split_state(x.clone(), dims);
        let b2: Tensor<B, 2> = b2.reshape([n, c]);

        // Class features.
        let b2c: Tensor<B, 3> = b2.clone().reshape([n, c, 1]);
        let k = silu(kappa.clone() + last_axis(&self.class_in, b2c));
        // Pair features [n, U, C, h].
        let s = w1.clone().matmul(xbar.swap_dims(1, 2)) / (d as f64).sqrt()
            + b1.clone().expand([n, u, c]);
        let pair = Tensor::stack::<4>(
            vec![w2, b2.clone().reshape([n, 1, c]).expand([n, u, c]), s],
            3,
        );
        let e =
            silu(last_axis(&self.pair_in, pair) + kappa.reshape([n, 1, c, h]).expand([n, u, c, h]));
        // The lifted state, and the set field on it.
        let r_tok: Tensor<B, 3> =
            last_axis(&self.to_token, e.clone().mean_dim(2).reshape([n, u, h]));
        let g: Tensor<B, 2> = last_axis(&self.to_global, k.clone().mean_dim(1).reshape([n, h]));
        let lifted = Tensor::cat(
            vec![
                x.narrow(1, 0, u * d + u),
                r_tok.swap_dims(1, 2).reshape([n, r * u]),
                g,
            ],
            1,
        );
        let v = field.forward(lifted, t);
        let v_w1b1 = v.clone().narrow(1, 0, u * d + u);
        let o: Tensor<B, 3> = v
            .clone()
            .narrow(1, u * d + u, r * u)
            .reshape([n, r, u])
            .swap_dims(1, 2);
        let og: Tensor<B, 2> = v.narrow(1, u * d + u + r * u, r);
        // Read back per class.
        let z = silu(
            last_axis(&self.from_token, o)
                .reshape([n, u, 1, h])
                .expand([n, u, c, h])
                + last_axis(&self.pair_mix, e),
        );
        let v_w2: Tensor<B, 3> = last_axis(&self.pair_out, z.clone()).reshape([n, u, c]);
        let y = silu(
            last_axis(&self.from_global, og)
                .reshape([n, 1, h])
                .expand([n, c, h])
                + last_axis(&self.class_mix, k)
                + z.mean_dim(1).reshape([n, c, h]),
        );
        let v_b2: Tensor<B, 2> = last_axis(&self.bias_out, y).reshape([n, c]);
        Tensor::cat(
            vec![v_w1b1, v_w2.swap_dims(1, 2).reshape([n, c * u]), v_b2],
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::backend::Cpu;
    use crate::meta::condition::config::{ConditionConfig, ConditionKind};
    use crate::meta::condition::network::ConditionNet;
    use crate::meta::condition::relabel::Relabel;
    use crate::meta::field::{FieldConfig, FieldKind};
    use crate::meta::symmetry::HiddenLayers;
    use burn::tensor::TensorData;
    use nmflow_runtime::Rng;

    /// A class-token condition and its set field for `mlp:6-5-3`.
    fn nets() -> (
        ConditionConfig,
        ConditionNet<Cpu>,
        VectorField<Cpu>,
        crate::arch::Layout,
    ) {
        let layout = "mlp:6-5-3".parse::<Arch>().unwrap().layout();
        let dev = Default::default();
        let _seeded = crate::backend::seed_lock();
        Cpu::seed(&dev, 5);
        let cfg = FieldConfig {
            kind: FieldKind::Set,
            set: SetDims::of(&layout).map(lifted_dims),
            jko: None,
            dim: layout.num_params(),
            hidden: 16,
            depth: 2,
            time_dim: 8,
            step_input: false,
            diagonal: false,
        };
        let field = cfg.init::<Cpu>(&dev);
        let cond = ConditionConfig {
            shots: 2,
            drop: 0.1,
            features: 5,
            embed: 4,
            classes: 3,
            d_in: 6,
            relabel: false,
            kind: ConditionKind::Classes,
        };
        let net = cond.init(field.inject_width(), 1000, &dev);
        assert_eq!(cond.num_params(16), Module::num_params(&net));
        (cond, net, field, layout)
    }

    fn velocity(
        net: &ConditionNet<Cpu>,
        field: &VectorField<Cpu>,
        w: &[f32],
        support: &[f32],
        labels: &[u8],
    ) -> Vec<f32> {
        let dev = Default::default();
        let x = Tensor::<Cpu, 2>::from_data(TensorData::new(w.to_vec(), [1, w.len()]), &dev);
        let s = Tensor::<Cpu, 3>::from_data(
            TensorData::new(support.to_vec(), [1, labels.len(), 6]),
            &dev,
        );
        let e = net.encode(s, labels);
        let t = Tensor::<Cpu, 2>::full([1, 1], 0.4, &dev);
        net.velocity(field, x, t, e)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn relabelling_the_task_relabels_the_velocity_and_units_stay_equivariant() {
        let (_, net, field, layout) = nets();
        let mut rng = Rng::new(8, 0);
        let mut w = Vec::new();
        layout.init_into(&mut rng, &mut w);
        let support: Vec<f32> = (0..36).map(|i| ((i * 7 % 13) as f32 / 6.0) - 1.0).collect();
        let labels = [0u8, 1, 2, 0, 1, 2];
        let v = velocity(&net, &field, &w, &support, &labels);
        // Relabel classes by σ: the classifier's output rows and the support set's labels.
        let sigma = [2u8, 0, 1];
        let r = Relabel::of(&layout).unwrap();
        let mut w_s = w.clone();
        r.apply(&sigma, &mut w_s);
        let labels_s: Vec<u8> = labels.iter().map(|&l| sigma[usize::from(l)]).collect();
        let v_s = velocity(&net, &field, &w_s, &support, &labels_s);
        let mut expected = v.clone();
        r.apply(&sigma, &mut expected);
        for (a, b) in expected.iter().zip(&v_s) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Permuting the hidden units permutes the velocity alike.
        let sym = HiddenLayers::of(&layout).unwrap();
        let perms = sym.draw(&mut rng);
        let mut w_p = w.clone();
        sym.apply(&perms, &mut w_p);
        let v_p = velocity(&net, &field, &w_p, &support, &labels);
        let mut expected = v;
        sym.apply(&perms, &mut expected);
        for (a, b) in expected.iter().zip(&v_p) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Another task (two labels swapped, the images kept) moves the classifier elsewhere.
        let swapped = [1u8, 0, 2, 1, 0, 2];
        let v_o = velocity(&net, &field, &w, &support, &swapped);
        let v = velocity(&net, &field, &w, &support, &labels);
        assert!(v.iter().zip(&v_o).any(|(a, b)| (a - b).abs() > 1e-4));
    }

    #[test]
    fn the_null_token_is_the_same_for_every_class() {
        let (cond, net, _, _) = nets();
        let null: Vec<f32> = net.null(2).into_data().to_vec().unwrap();
        let token = cond.embed + cond.d_in;
        assert_eq!(null.len(), 2 * cond.classes * token);
        for chunk in null.chunks(token) {
            assert_eq!(chunk, &null[..token]);
        }
    }
}
