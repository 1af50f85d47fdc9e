//! The support-set encoder and the injection of its embedding into the field.
//!
//! A support set is `S` labeled examples `(x_i, y_i)`. Every example gets features
//! `g(x_i) = silu(F·x_i + b)`; the features are averaged per label into class prototypes
//! `p_c = mean_{i: y_i = c} g(x_i)` (zero for a label without examples), and the flattened
//! prototypes give the task embedding `e = silu(H·[p_0, …, p_{C−1}] + h)`. The mean makes the
//! embedding independent of the order of the examples; the per-label slots make it depend on
//! which images carry which label (what a label permutation changes). The field sees
//! `inject(e)` beside the time; the unconditional field sees `inject(∅)` with a learned null
//! embedding `∅` in place of `e`.
//!
//! With `--condition classes` the prototypes are not flattened: every label `c` gets a class
//! token `τ_c = [silu(H·p_c + h), x̄_c]` (the same `H` for every label; `x̄_c` the label's mean
//! support input), the embedding is the tokens in label order, the null embedding one learned
//! token for every label, and the field is [`super::lift`]'s class-equivariant one, which sees
//! `inject(τ_c)` per class.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::config::{ConditionConfig, ConditionKind};
use super::lift::{self, ClassLift};
use crate::backend::TensorRead;
use crate::meta::field::{DenseLayer, SequentialIds, SetDims, VectorField, dense_layer};

/// The encoder, the null embedding and the injection layer (and, for `--condition classes`,
/// the class lift).
#[derive(Module, Debug)]
pub struct ConditionNet<B: Backend> {
    feature: Linear<B>,
    /// `C·F → E` (support), `F → E` per label (classes).
    head: Linear<B>,
    /// `[1, E]` (support), one class token `[1, E + d]` (classes).
    null: Param<Tensor<B, 2>>,
    /// `E → H` (support), a class token `E + d → PAIR_WIDTH` (classes).
    inject: Linear<B>,
    classes: usize,
    d_in: usize,
    lift: Option<ClassLift<B>>,
}

impl ConditionConfig {
    /// The networks for a field whose injection width is `h`, with burn's default initialization
    /// (the null embedding starts at zero) and parameter ids numbered from `first_id` in module
    /// order (so a seed's files are identical byte for byte).
    pub fn init<B: Backend>(&self, h: usize, first_id: u64, device: &B::Device) -> ConditionNet<B> {
        let lin = |a: usize, b: usize| LinearConfig::new(a, b).init(device);
        let net = match self.kind {
            ConditionKind::Support => ConditionNet {
                feature: lin(self.d_in, self.features),
                head: lin(self.classes * self.features, self.embed),
                null: Param::from_tensor(Tensor::zeros([1, self.embed], device)),
                inject: lin(self.embed, h),
                classes: self.classes,
                d_in: self.d_in,
                lift: None,
            },
            ConditionKind::Classes => {
                let token = self.embed + self.d_in;
                ConditionNet {
                    feature: lin(self.d_in, self.features),
                    head: lin(self.features, self.embed),
                    null: Param::from_tensor(Tensor::zeros([1, token], device)),
                    inject: lin(token, lift::PAIR_WIDTH),
                    classes: self.classes,
                    d_in: self.d_in,
                    lift: Some(lift::init(device)),
                }
            }
        };
        net.map(&mut SequentialIds(first_id))
    }
}

/// A class-conditioned network's layers as plain data ([`ConditionNet::exported`]).
pub struct ExportedCondition {
    /// `d → F`.
    pub feature: DenseLayer,
    /// `F → E`.
    pub head: DenseLayer,
    /// `E + d → A`.
    pub inject: DenseLayer,
    /// The null class token (`E + d` values).
    pub null: Vec<f32>,
    /// The lift's ten layers in the model file's order.
    pub lift: Vec<DenseLayer>,
}

/// The record of models trained before `--condition classes` existed (no lift); read, never
/// written.
#[derive(Module, Debug)]
struct ConditionNetV1<B: Backend> {
    feature: Linear<B>,
    head: Linear<B>,
    null: Param<Tensor<B, 2>>,
    inject: Linear<B>,
    classes: usize,
}

/// Loads a model's `condition.bin` (`path` without the extension) for the settings `cfg` and a
/// field of injection width `h`; a file written before the class lift existed is read as such.
///
/// # Errors
/// The recorder's message when neither record fits the file.
pub fn load<B: Backend>(
    cfg: &ConditionConfig,
    h: usize,
    first_id: u64,
    path: &std::path::Path,
    device: &B::Device,
) -> Result<ConditionNet<B>, burn::record::RecorderError> {
    use burn::record::{BinFileRecorder, FullPrecisionSettings};
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let fresh = cfg.init::<B>(h, first_id, device);
    match fresh
        .clone()
        .load_file(path.to_path_buf(), &recorder, device)
    {
        Ok(net) => Ok(net),
        Err(e) if cfg.kind != ConditionKind::Support => Err(e),
        Err(e) => {
            let v1 = ConditionNetV1 {
                feature: fresh.feature,
                head: fresh.head,
                null: fresh.null,
                inject: fresh.inject,
                classes: fresh.classes,
            };
            let v1 = v1
                .load_file(path.to_path_buf(), &recorder, device)
                .map_err(|_| e)?;
            Ok(ConditionNet {
                feature: v1.feature,
                head: v1.head,
                null: v1.null,
                inject: v1.inject,
                classes: v1.classes,
                d_in: cfg.d_in,
                lift: None,
            })
        }
    }
}

impl<B: Backend> ConditionNet<B> {
    /// Task embeddings of `n` support sets: `x` `[n, S, d]`, `labels` `[n, S]` (class indices)
    /// → `[n, E]` (`[n, C·(E + d)]`, the class tokens, with `--condition classes`).
    pub fn encode(&self, x: Tensor<B, 3>, labels: &[u8]) -> Tensor<B, 2> {
        let [n, s, d] = x.dims();
        let c = self.classes;
        let device = x.device();
        // One-hot labels, transposed and divided by each label's count: [n, C, S].
        let mut weights = vec![0.0f32; n * c * s];
        for task in 0..n {
            let ls = &labels[task * s..(task + 1) * s];
            for class in 0..c {
                let count = ls.iter().filter(|&&l| usize::from(l) == class).count();
                if count == 0 {
                    continue;
                }
                for (i, &l) in ls.iter().enumerate() {
                    if usize::from(l) == class {
                        weights[(task * c + class) * s + i] = 1.0 / count as f32;
                    }
                }
            }
        }
        let pool = Tensor::<B, 3>::from_data(TensorData::new(weights, [n, c, s]), &device);
        let features = silu(self.feature.forward(x.clone().reshape([n * s, d])));
        let f = features.dims()[1];
        let prototypes = pool.clone().matmul(features.reshape([n, s, f]));
        if self.lift.is_none() {
            return silu(self.head.forward(prototypes.reshape([n, c * f])));
        }
        let q = silu(self.head.forward(prototypes.reshape([n * c, f])));
        let e = q.dims()[1];
        let xbar = pool.matmul(x).reshape([n * c, d]);
        Tensor::cat(vec![q, xbar], 1).reshape([n, c * (e + d)])
    }

    /// The null embedding for `n` rows: `[n, E]` (the null class token for every label with
    /// `--condition classes`).
    pub fn null(&self, n: usize) -> Tensor<B, 2> {
        let e = self.null.dims()[1];
        if self.lift.is_some() {
            let c = self.classes;
            return self
                .null
                .val()
                .reshape([1, 1, e])
                .expand([n, c, e])
                .reshape([n, c * e]);
        }
        self.null.val().expand([n, e])
    }

    /// The velocity of `field` at `(x, t)` (`[n, P]`, `[n, 1]`) for embeddings `e` (from
    /// [`Self::encode`], [`Self::null`] or [`Self::drop_rows`]).
    pub fn velocity(
        &self,
        field: &VectorField<B>,
        x: Tensor<B, 2>,
        t: Tensor<B, 2>,
        e: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let Some(lift) = &self.lift else {
            return field.forward_with(x, t, Some(self.inject(e)));
        };
        let [n, p] = x.dims();
        let (c, d) = (self.classes, self.d_in);
        let token = e.dims()[1] / c.max(1);
        let tokens = e.reshape([n, c, token]);
        let kappa = self.inject.forward(tokens.clone().reshape([n * c, token]));
        let kappa = kappa.reshape([n, c, lift::PAIR_WIDTH]);
        let xbar = tokens.narrow(2, token - d, d);
        let dims = SetDims {
            units: (p - c) / (d + 1 + c),
            d_in: d,
            d_out: c,
        };
        lift.velocity(field, dims, x, t, kappa, xbar)
    }

    /// Embeddings `e` (`[n, E]`) where `keep[i]`, the null embedding elsewhere (the condition
    /// dropped for classifier-free guidance).
    pub fn drop_rows(&self, e: Tensor<B, 2>, keep: &[bool]) -> Tensor<B, 2> {
        let [n, width] = e.dims();
        let mask: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [n, 1]), &e.device());
        let null = self.null(n);
        e * mask.clone().expand([n, width]) + null * (mask.neg() + 1.0).expand([n, width])
    }

    /// A class-conditioned (`--condition classes`) network as plain data for the model file:
    /// the encoder's feature, head and inject layers, the null class token, and the lift's
    /// layers ([`ClassLift::dense_layers`]); `None` for a `--condition support` network.
    ///
    /// # Errors
    /// When the backend's values cannot be read back.
    pub fn exported(&self) -> Result<Option<ExportedCondition>, TensorRead> {
        let Some(lift) = &self.lift else {
            return Ok(None);
        };
        Ok(Some(ExportedCondition {
            feature: dense_layer(&self.feature)?,
            head: dense_layer(&self.head)?,
            inject: dense_layer(&self.inject)?,
            null: crate::backend::values::<f32>(self.null.val().into_data())?,
            lift: lift.dense_layers()?,
        }))
    }

    /// What the field gets for embeddings `e` (`[n, E]` → `[n, H]`).
    pub fn inject(&self, e: Tensor<B, 2>) -> Tensor<B, 2> {
        self.inject.forward(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

    fn cfg() -> ConditionConfig {
        ConditionConfig {
            shots: 2,
            drop: 0.1,
            features: 5,
            embed: 4,
            classes: 3,
            d_in: 6,
            relabel: false,
            kind: ConditionKind::Support,
        }
    }

    fn support(order: &[usize]) -> (Tensor<Cpu, 3>, Vec<u8>) {
        // Six examples of three classes, in the given order.
        let xs: Vec<Vec<f32>> = (0..6)
            .map(|i| {
                (0..6)
                    .map(|j| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.4)
                    .collect()
            })
            .collect();
        let ys = [0u8, 1, 2, 0, 1, 2];
        let x: Vec<f32> = order.iter().flat_map(|&i| xs[i].clone()).collect();
        let y: Vec<u8> = order.iter().map(|&i| ys[i]).collect();
        (
            Tensor::from_data(TensorData::new(x, [1, 6, 6]), &Default::default()),
            y,
        )
    }

    #[test]
    fn the_embedding_ignores_the_order_of_the_examples_and_sees_the_labels() {
        let net: ConditionNet<Cpu> = cfg().init(8, 0, &Default::default());
        let (x, y) = support(&[0, 1, 2, 3, 4, 5]);
        let a: Vec<f32> = net.encode(x, &y).into_data().to_vec().unwrap();
        let (x, y) = support(&[5, 3, 1, 0, 4, 2]);
        let b: Vec<f32> = net.encode(x, &y).into_data().to_vec().unwrap();
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-6, "{a:?} vs {b:?}");
        }
        // The same images with the labels of classes 0 and 1 swapped: another task.
        let (x, mut y) = support(&[0, 1, 2, 3, 4, 5]);
        for l in &mut y {
            *l = match *l {
                0 => 1,
                1 => 0,
                o => o,
            };
        }
        let c: Vec<f32> = net.encode(x, &y).into_data().to_vec().unwrap();
        assert!(a.iter().zip(&c).any(|(u, v)| (u - v).abs() > 1e-4));
        assert_eq!(cfg().num_params(8), burn::module::Module::num_params(&net));
    }

    #[test]
    fn dropped_rows_get_the_null_embedding() {
        let net: ConditionNet<Cpu> = cfg().init(8, 0, &Default::default());
        let e = Tensor::<Cpu, 2>::from_data(
            TensorData::new(vec![1.0f32; 8], [2, 4]),
            &Default::default(),
        );
        let d: Vec<f32> = net
            .drop_rows(e, &[true, false])
            .into_data()
            .to_vec()
            .unwrap();
        let null: Vec<f32> = net.null(1).into_data().to_vec().unwrap();
        assert_eq!(&d[..4], &[1.0; 4]);
        assert_eq!(&d[4..], null.as_slice());
    }
}
