//! The vector-field networks.
//!
//! * `mlp`: an MLP on `[x, emb(t)]` with SiLU activations (the method's default).
//! * `set`: a permutation-equivariant field for one-hidden-layer MLP classifiers. Hidden unit `j`
//!   is a token `[W1[j, :], b1[j], W2[:, j]]`; a shared network updates every token from itself, the
//!   mean of all tokens (DeepSets pooling), the output bias and the time, and a pooled head gives
//!   the output bias's velocity. Permuting the classifier's hidden units permutes the field's output
//!   the same way, so the field cannot memorize runs by unit position, and its size does not grow
//!   with the number of hidden units.
//!
//! `emb(t)` is a sinusoidal embedding: `[sin(2π f_j t), cos(2π f_j t)]` with `time_dim/2`
//! frequencies `f_j` spaced geometrically from 1 to 100.

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::TensorData;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backend::{TensorRead, values};

/// Which field network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// MLP on the flat vector.
    Mlp,
    /// Permutation-equivariant set field over hidden units (one-hidden-layer MLPs).
    Set,
    /// The gradient of a scalar potential (NM-JKO): `v(x) = −kτ∇V(x)`.
    Potential,
}

/// NM-JKO's step: `k` steps of size `τ`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct JkoSteps {
    /// Number of JKO steps (the zoo's checkpoint intervals).
    pub steps: usize,
    /// Step size τ.
    pub tau: f32,
}

/// Token dimensions of the set field: hidden units, classifier input width, classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDims {
    /// Hidden units (tokens).
    pub units: usize,
    /// Classifier input width.
    pub d_in: usize,
    /// Classifier output width.
    pub d_out: usize,
}

impl SetDims {
    /// The dims of a one-hidden-layer MLP layout, or `None`.
    pub fn of(layout: &crate::arch::Layout) -> Option<Self> {
        let b = &layout.blocks;
        (b.len() == 4 && b[0].shape.len() == 2 && b[2].shape.len() == 2).then(|| Self {
            units: b[0].shape[0],
            d_in: b[0].shape[1],
            d_out: b[2].shape[0],
        })
    }
}

/// Shape of the field network.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldConfig {
    /// Network kind.
    pub kind: FieldKind,
    /// Token dimensions (set field only).
    pub set: Option<SetDims>,
    /// JKO steps (potential field only).
    #[serde(default)]
    pub jko: Option<JkoSteps>,
    /// Dimension of the state (parameters per classifier).
    pub dim: usize,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of hidden layers.
    pub depth: usize,
    /// Width of the time embedding (even).
    pub time_dim: usize,
    /// The set field also takes the sampler's step size `h = 1/K` (`--step-input`): its time
    /// input is `[emb(t), emb(h)]`, `2·time_dim` wide, so every step count gets its own map.
    /// Absent from the configs of fields without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub step_input: bool,
    /// The MLP field also has a per-coordinate term `a(t) ⊙ x + b(t)`, with `[a | b]` a linear
    /// map of the time embedding (`finetune --diagonal`, zero when added). The MLP's own output
    /// lies in a fixed subspace as wide as its last hidden layer, so without the term a flow
    /// cannot change the source's value along the other `dim − hidden` directions. Stored as the
    /// last of the MLP's layers (`time_dim → 2·dim`). Absent from the configs of fields without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diagonal: bool,
}

impl FieldConfig {
    /// Width of the set field's time input: `time_dim`, or `2·time_dim` with the step size.
    pub fn time_input(&self) -> usize {
        if self.step_input {
            2 * self.time_dim
        } else {
            self.time_dim
        }
    }
}

/// `v(x, t)`.
#[derive(Module, Debug)]
pub struct VectorField<B: Backend> {
    layers: Vec<Linear<B>>,
    set: Option<SetField<B>>,
    potential: Option<super::potential::Potential<B>>,
    /// `k·τ` of a potential field.
    jko_scale: f32,
}

/// One residual block of the set field.
#[derive(Module, Debug)]
pub struct SetBlock<B: Backend> {
    local: Linear<B>,
    pooled: Linear<B>,
    mlp: Linear<B>,
}

/// The permutation-equivariant field (see the module docs).
#[derive(Module, Debug)]
pub struct SetField<B: Backend> {
    embed: Linear<B>,
    global_in: Linear<B>,
    time_in: Linear<B>,
    blocks: Vec<SetBlock<B>>,
    token_out: Linear<B>,
    global_out: Linear<B>,
    units: usize,
    d_in: usize,
    d_out: usize,
}

/// Renumbers parameters 1, 2, 3, … in module order: burn draws parameter ids at random, and they
/// are written into the weight files, so fixed ids make a seed's files identical byte for byte.
pub(crate) struct SequentialIds(pub(crate) u64);

impl<B: Backend> ModuleMapper<B> for SequentialIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        self.0 += 1;
        Param::from_mapped_value(ParamId::from(self.0), tensor, mapper)
    }
}

impl FieldConfig {
    /// Creates the network with burn's default (Kaiming-uniform) initialization (drawn from the
    /// backend's seed) and parameter ids numbered in module order.
    pub fn init<B: Backend>(&self, device: &B::Device) -> VectorField<B> {
        self.init_random_ids(device).map(&mut SequentialIds(0))
    }

    fn init_random_ids<B: Backend>(&self, device: &B::Device) -> VectorField<B> {
        if self.kind == FieldKind::Potential {
            let jko = self.jko.unwrap_or(JkoSteps { steps: 1, tau: 1.0 });
            return VectorField {
                layers: Vec::new(),
                set: None,
                potential: Some(super::potential::init(
                    self.dim,
                    self.hidden,
                    self.depth,
                    device,
                )),
                jko_scale: jko.steps as f32 * jko.tau,
            };
        }
        if let (FieldKind::Set, Some(d)) = (self.kind, self.set) {
            let h = self.hidden;
            let lin = |a: usize, b: usize| LinearConfig::new(a, b).init(device);
            let d_tok = d.d_in + 1 + d.d_out;
            return VectorField {
                layers: Vec::new(),
                set: Some(SetField {
                    embed: lin(d_tok, h),
                    global_in: lin(d.d_out, h),
                    time_in: lin(self.time_input(), h),
                    blocks: (0..self.depth)
                        .map(|_| SetBlock {
                            local: lin(h, h),
                            pooled: lin(h, h),
                            mlp: lin(h, h),
                        })
                        .collect(),
                    token_out: lin(h, d_tok),
                    global_out: lin(h, d.d_out),
                    units: d.units,
                    d_in: d.d_in,
                    d_out: d.d_out,
                }),
                potential: None,
                jko_scale: 0.0,
            };
        }
        let mut widths = vec![self.dim + self.time_dim];
        widths.extend(std::iter::repeat_n(self.hidden, self.depth));
        widths.push(self.dim);
        let field = VectorField {
            layers: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
            set: None,
            potential: None,
            jko_scale: 0.0,
        };
        if self.diagonal {
            field.push_diagonal(self.time_dim, device)
        } else {
            field
        }
    }

    /// Number of trainable parameters, computed without overflow (`None` past `u128`), so that a
    /// request for an absurd size is refused before anything is allocated.
    pub fn num_params_checked(&self) -> Option<u128> {
        let (h, depth, t) = (
            self.hidden as u128,
            self.depth as u128,
            self.time_input() as u128,
        );
        let lin = |a: u128, b: u128| a.checked_mul(b)?.checked_add(b);
        match (self.kind, self.set) {
            (FieldKind::Potential, _) => {
                let d = self.dim as u128;
                let first = lin(d, h)?;
                let inner = lin(h, h)?.checked_mul(depth.saturating_sub(1))?;
                first.checked_add(inner)?.checked_add(lin(h, 1)?)
            }
            (FieldKind::Set, Some(d)) => {
                let tok = (d.d_in + 1 + d.d_out) as u128;
                let out = d.d_out as u128;
                let parts = [
                    lin(tok, h)?,
                    lin(out, h)?,
                    lin(t, h)?,
                    lin(h, h)?.checked_mul(3)?.checked_mul(depth)?,
                    lin(h, tok)?,
                    lin(h, out)?,
                ];
                parts.iter().try_fold(0u128, |a, &b| a.checked_add(b))
            }
            _ => {
                let d = self.dim as u128;
                let mut widths = vec![d.checked_add(t)?];
                widths.extend(std::iter::repeat_n(h, self.depth));
                widths.push(d);
                let chain = widths
                    .windows(2)
                    .try_fold(0u128, |a, w| a.checked_add(lin(w[0], w[1])?))?;
                if self.diagonal {
                    chain.checked_add(lin(t, d.checked_mul(2)?)?)
                } else {
                    Some(chain)
                }
            }
        }
    }

    /// Number of trainable parameters (`usize::MAX` for sizes [`Self::num_params_checked`]
    /// refuses).
    pub fn num_params(&self) -> usize {
        self.num_params_checked()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX)
    }
}

/// Highest frequency of the time embedding (cycles per unit time).
pub const MAX_FREQUENCY: f32 = 100.0;

/// Frequencies of the time embedding: `2π · MAX_FREQUENCY^(j/(half−1))` (the runtime computes the
/// same).
pub fn time_frequencies(time_dim: usize) -> Vec<f32> {
    let half = (time_dim / 2).max(1);
    (0..half)
        .map(|j| {
            let e = if half > 1 {
                j as f32 / (half - 1) as f32
            } else {
                0.0
            };
            std::f32::consts::TAU * MAX_FREQUENCY.powf(e)
        })
        .collect()
}

/// One layer of an MLP field as burn stores it: the weight `[d_in, d_out]` row-major, and the
/// bias.
pub type MlpLayer = (Vec<f32>, Vec<f32>);

/// One dense layer of an MLP field as plain data: weight row-major `[d_out][d_in]`, bias.
#[derive(Clone, Debug)]
pub struct DenseLayer {
    /// Inputs.
    pub d_in: usize,
    /// Outputs.
    pub d_out: usize,
    /// Weights, row-major `[d_out][d_in]` (burn stores `[d_in, d_out]`; this is transposed).
    pub weight: Vec<f32>,
    /// Biases.
    pub bias: Vec<f32>,
}

impl<B: Backend> VectorField<B> {
    /// The MLP field's layers as `(weight, bias)` pairs, the weight row-major `[d_in][d_out]`
    /// (burn's `Linear` layout); `None` for the set and potential fields.
    ///
    /// # Errors
    /// [`TensorRead`] when the backend's values cannot be read back.
    pub fn mlp_layers(&self) -> Result<Option<Vec<MlpLayer>>, TensorRead> {
        if self.set.is_some() || self.potential.is_some() {
            return Ok(None);
        }
        self.linear_layers()
    }

    /// The layers of an MLP or set field as `(weight, bias)` pairs in burn's `Linear` layout
    /// (weight row-major `[d_in][d_out]`), in module order: for the set field `embed`,
    /// `global_in`, `time_in`, each block's `local`, `pooled`, `mlp`, then `token_out` and
    /// `global_out`; `None` for a potential field.
    ///
    /// # Errors
    /// [`TensorRead`] when the backend's values cannot be read back.
    pub fn linear_layers(&self) -> Result<Option<Vec<MlpLayer>>, TensorRead> {
        if self.potential.is_some() {
            return Ok(None);
        }
        self.linears()
            .into_iter()
            .map(|l| {
                let [_, d_out] = l.weight.dims();
                let bias = match &l.bias {
                    Some(b) => values::<f32>(b.val().into_data())?,
                    None => vec![0.0; d_out],
                };
                Ok((values::<f32>(l.weight.val().into_data())?, bias))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The linear layers in module order (see [`Self::linear_layers`]).
    fn linears(&self) -> Vec<&Linear<B>> {
        match &self.set {
            Some(set) => {
                let mut l = vec![&set.embed, &set.global_in, &set.time_in];
                for b in &set.blocks {
                    l.extend([&b.local, &b.pooled, &b.mlp]);
                }
                l.extend([&set.token_out, &set.global_out]);
                l
            }
            None => self.layers.iter().collect(),
        }
    }

    /// [`Self::linears`], mutable.
    fn linears_mut(&mut self) -> Vec<&mut Linear<B>> {
        match &mut self.set {
            Some(set) => {
                let mut l = vec![&mut set.embed, &mut set.global_in, &mut set.time_in];
                for b in &mut set.blocks {
                    l.extend([&mut b.local, &mut b.pooled, &mut b.mlp]);
                }
                l.extend([&mut set.token_out, &mut set.global_out]);
                l
            }
            None => self.layers.iter_mut().collect(),
        }
    }

    /// This MLP field with its layers' values replaced by `layers` (as [`Self::mlp_layers`] gives
    /// them); parameter ids are kept.
    ///
    /// # Panics
    /// If `layers` does not have this field's layer shapes.
    pub fn with_mlp_layers(self, layers: &[(Vec<f32>, Vec<f32>)]) -> Self {
        self.with_linear_layers(layers)
    }

    /// This MLP or set field with its layers' values replaced by `layers` (as
    /// [`Self::linear_layers`] gives them); parameter ids are kept.
    ///
    /// # Panics
    /// If `layers` does not have this field's layer shapes.
    pub fn with_linear_layers(mut self, layers: &[(Vec<f32>, Vec<f32>)]) -> Self {
        let mut linears = self.linears_mut();
        assert_eq!(linears.len(), layers.len(), "number of layers");
        for (layer, (w, b)) in linears.iter_mut().zip(layers) {
            layer.weight = layer.weight.clone().map(|old: Tensor<B, 2>| {
                let dims = old.dims();
                assert_eq!(w.len(), dims[0] * dims[1], "weight of shape {dims:?}");
                Tensor::from_data(TensorData::new(w.clone(), dims), &old.device())
                    .set_require_grad(old.is_require_grad())
            });
            layer.bias = layer.bias.take().map(|p| {
                p.map(|old: Tensor<B, 1>| {
                    assert_eq!(b.len(), old.dims()[0], "bias length");
                    Tensor::from_data(TensorData::new(b.clone(), [b.len()]), &old.device())
                        .set_require_grad(old.is_require_grad())
                })
            });
        }
        drop(linears);
        self
    }

    /// The JKO residual `τ∇V(y) + y − x` (potential fields; `None` otherwise).
    ///
    /// # Shapes
    /// `x`, `y` `[N, P]` → `[N, P]`.
    pub fn jko_residual(&self, x: Tensor<B, 2>, y: Tensor<B, 2>, tau: f32) -> Option<Tensor<B, 2>> {
        let p = self.potential.as_ref()?;
        Some(p.value_and_grad(y.clone()).1 * tau + y - x)
    }

    /// The layers of an MLP field as row-major data (`None` for the set and potential fields).
    ///
    /// # Errors
    /// [`TensorRead`] when the backend's values cannot be read back.
    pub fn dense_layers(&self) -> Result<Option<Vec<DenseLayer>>, TensorRead> {
        if self.set.is_some() || self.potential.is_some() {
            return Ok(None);
        }
        self.layers
            .iter()
            .map(dense_layer)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// The set field's width `H` and layers as row-major data, in the model file's order:
    /// `embed`, `global_in`, `time_in`, each block's `local`, `pooled`, `mlp`, then `token_out`
    /// and `global_out` (`None` for the other fields).
    ///
    /// # Errors
    /// [`TensorRead`] when the backend's values cannot be read back.
    pub fn set_dense_layers(&self) -> Result<Option<(usize, Vec<DenseLayer>)>, TensorRead> {
        let Some(set) = &self.set else {
            return Ok(None);
        };
        let hidden = set.embed.weight.dims()[1];
        let linears = self.linears();
        let layers = linears
            .into_iter()
            .map(dense_layer)
            .collect::<Result<_, _>>()?;
        Ok(Some((hidden, layers)))
    }

    /// The predicted velocity.
    ///
    /// # Shapes
    /// `x` `[N, dim]`, `t` `[N, 1]` → `[N, dim]`.
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward_with(x, t, None)
    }

    /// Width `H` of the first hidden layer (the MLP field) or of the set field's context: what an
    /// injected condition must have.
    pub fn inject_width(&self) -> usize {
        match (&self.set, self.layers.first()) {
            (Some(set), _) => set.embed.weight.dims()[1],
            (None, Some(first)) => first.weight.dims()[1],
            (None, None) => 0,
        }
    }

    /// The velocity with a condition `extra` (`[N, H]`, [`Self::inject_width`]) added where the
    /// time enters: to the MLP field's first hidden pre-activation, or to the set field's context
    /// (so every token and the output-bias head see it). A potential field takes none.
    ///
    /// # Shapes
    /// `x` `[N, dim]`, `t` `[N, 1]` (`[N, 2]`: time and step size, for a set field with
    /// [`FieldConfig::step_input`]; see [`time_input`]), `extra` `[N, H]` → `[N, dim]`.
    pub fn forward_with(
        &self,
        x: Tensor<B, 2>,
        t: Tensor<B, 2>,
        extra: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2> {
        if let Some(set) = &self.set {
            return set.forward(x, t, extra);
        }
        if let Some(p) = &self.potential {
            return p.value_and_grad(x).1 * (-self.jko_scale);
        }
        let dim = x.dims()[1];
        let time_dim = self.layers[0].weight.dims()[0] - dim;
        let emb = time_embedding(t, time_dim);
        let (chain, diagonal) = self.split_diagonal(dim);
        let mut h = Tensor::cat(vec![x.clone(), emb.clone()], 1);
        let last = chain.len() - 1;
        let mut extra = extra;
        for (i, layer) in chain.iter().enumerate() {
            h = layer.forward(h);
            if let Some(e) = extra.take() {
                h = h + e;
            }
            if i < last {
                h = silu(h);
            }
        }
        match diagonal {
            Some(d) => {
                let ab = d.forward(emb);
                h + ab.clone().narrow(1, 0, dim) * x + ab.narrow(1, dim, dim)
            }
            None => h,
        }
    }

    /// The MLP's layers and its per-coordinate term ([`FieldConfig::diagonal`]), told apart by
    /// width: the chain's last layer has `dim` outputs, the term's layer `2·dim`.
    fn split_diagonal(&self, dim: usize) -> (&[Linear<B>], Option<&Linear<B>>) {
        match self.layers.split_last() {
            Some((d, chain)) if !chain.is_empty() && d.weight.dims()[1] == 2 * dim => {
                (chain, Some(d))
            }
            _ => (&self.layers, None),
        }
    }

    /// This MLP field with a zero per-coordinate term appended ([`FieldConfig::diagonal`]): the
    /// same velocity, and room to move every coordinate. Parameter ids are renumbered in module
    /// order, so a seed's files stay identical byte for byte.
    pub fn push_diagonal(mut self, time_dim: usize, device: &B::Device) -> Self {
        let dim = self.layers.last().map_or(0, |l| l.weight.dims()[1]);
        let term = LinearConfig::new(time_dim, 2 * dim)
            .with_initializer(burn::nn::Initializer::Zeros)
            .init(device);
        self.layers.push(term);
        self.map(&mut SequentialIds(0))
    }
}

/// A burn `Linear` as row-major `[d_out][d_in]` data (burn stores `[d_in, d_out]`).
pub(crate) fn dense_layer<B: Backend>(l: &Linear<B>) -> Result<DenseLayer, TensorRead> {
    let [d_in, d_out] = l.weight.dims();
    let w = values::<f32>(l.weight.val().into_data())?;
    let bias = match &l.bias {
        Some(b) => values::<f32>(b.val().into_data())?,
        None => vec![0.0; d_out],
    };
    let mut weight = vec![0.0f32; d_in * d_out];
    for i in 0..d_in {
        for o in 0..d_out {
            weight[o * d_in + i] = w[i * d_out + o];
        }
    }
    Ok(DenseLayer {
        d_in,
        d_out,
        weight,
        bias,
    })
}

/// The time input of `n` states at time `t`: `[n, 1]`, or `[n, 2]` with the step size `step`
/// for a field with [`FieldConfig::step_input`].
pub fn time_input<B: Backend>(
    n: usize,
    t: f32,
    step: Option<f32>,
    device: &B::Device,
) -> Tensor<B, 2> {
    match step {
        None => Tensor::full([n, 1], t, device),
        Some(h) => Tensor::from_data(TensorData::new([t, h].repeat(n), [n, 2]), device),
    }
}

/// The set field's time input: `emb(t)` (`width` wide) for `t` `[N, 1]`, or `[emb(t), emb(h)]`
/// (each `width/2` wide) for `[N, 2]` (time and step size).
///
/// # Panics
/// If `t` has another number of columns, or `width` is not a multiple of twice of them.
fn time_features<B: Backend>(t: Tensor<B, 2>, width: usize) -> Tensor<B, 2> {
    let cols = t.dims()[1];
    assert!(
        (cols == 1 || cols == 2) && width.is_multiple_of(2 * cols),
        "a time input of {cols} columns for a {width}-wide embedding"
    );
    if cols == 1 {
        return time_embedding(t, width);
    }
    let per = width / 2;
    Tensor::cat(
        vec![
            time_embedding(t.clone().narrow(1, 0, 1), per),
            time_embedding(t.narrow(1, 1, 1), per),
        ],
        1,
    )
}

/// `[sin(2π f_j t), cos(2π f_j t)]`, `[N, 1]` → `[N, time_dim]`.
fn time_embedding<B: Backend>(t: Tensor<B, 2>, time_dim: usize) -> Tensor<B, 2> {
    let freqs = time_frequencies(time_dim);
    let f = Tensor::<B, 2>::from_data(
        TensorData::new(freqs.clone(), [1, freqs.len()]),
        &t.device(),
    );
    let angle = t.matmul(f);
    Tensor::cat(vec![angle.clone().sin(), angle.cos()], 1)
}

/// A Linear layer applied to every token: `[N, U, d_in]` → `[N, U, d_out]` as one 2-D product
/// (burn's rank-3 `Linear` broadcasts the weight over the batch, which is far slower).
fn per_token<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [n, u, d] = x.dims();
    let y = layer.forward(x.reshape([n * u, d]));
    let out = y.dims()[1];
    y.reshape([n, u, out])
}

/// A one-hidden-layer classifier's flat state `[N, P]` (layout order) as `W1 [N, U, d_in]`,
/// `b1 [N, U, 1]`, `W2` unit-major `[N, U, d_out]` and `b2 [N, 1, d_out]`.
pub(crate) fn split_state<B: Backend>(x: Tensor<B, 2>, dims: SetDims) -> [Tensor<B, 3>; 4] {
    let (u, d, c) = (dims.units, dims.d_in, dims.d_out);
    let n = x.dims()[0];
    [
        x.clone().narrow(1, 0, u * d).reshape([n, u, d]),
        x.clone().narrow(1, u * d, u).reshape([n, u, 1]),
        x.clone()
            .narrow(1, u * d + u, c * u)
            .reshape([n, c, u])
            .swap_dims(1, 2),
        x.narrow(1, u * d + u + c * u, c).reshape([n, 1, c]),
    ]
}

impl<B: Backend> SetField<B> {
    /// # Shapes
    /// `x` `[N, P]` (layout order: W1 `[U, d_in]`, b1 `[U]`, W2 `[d_out, U]`, b2 `[d_out]`), `t`
    /// `[N, 1]`, `extra` `[N, H]` (added to the context) → `[N, P]`.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        t: Tensor<B, 2>,
        extra: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2> {
        let (u, d_in, d_out) = (self.units, self.d_in, self.d_out);
        let n = x.dims()[0];
        let [w1, b1, w2, b2] = split_state(
            x,
            SetDims {
                units: u,
                d_in,
                d_out,
            },
        );
        let b2 = b2.reshape([n, d_out]);
        let tokens = Tensor::cat(vec![w1, b1, w2], 2);
        let width = self.time_in.weight.dims()[0];
        let tau = self.time_in.forward(time_features(t, width));
        let g = self.global_in.forward(b2);
        let c = match extra {
            Some(e) => tau + g + e,
            None => tau + g,
        };
        let context: Tensor<B, 3> = c.unsqueeze_dim(1);
        // Per-sample terms are tiled over the units before they are added: the same sums, but
        // burn-flex adds same-shape contiguous tensors on its fast path and broadcasts through a
        // generic strided iterator (1.2× the training speed of the functional recipe, same bytes).
        let mut h = per_token(&self.embed, tokens) + context.clone().repeat_dim(1, u);
        for block in &self.blocks {
            let pooled = per_token(&block.pooled, h.clone().mean_dim(1));
            let z = silu(
                per_token(&block.local, h.clone())
                    + pooled.repeat_dim(1, u)
                    + context.clone().repeat_dim(1, u),
            );
            h = h + per_token(&block.mlp, z);
        }
        let v = per_token(&self.token_out, silu(h.clone()));
        let vg = self
            .global_out
            .forward(silu(h.mean_dim(1) + context).reshape([n, self.global_out.weight.dims()[0]]))
            .reshape([n, d_out]);
        let v_w1 = v.clone().narrow(2, 0, d_in).reshape([n, u * d_in]);
        let v_b1 = v.clone().narrow(2, d_in, 1).reshape([n, u]);
        let v_w2 = v
            .narrow(2, d_in + 1, d_out)
            .swap_dims(1, 2)
            .reshape([n, d_out * u]);
        Tensor::cat(vec![v_w1, v_b1, v_w2, vg], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::backend::Cpu;
    use crate::meta::symmetry::HiddenLayers;
    use nmflow_runtime::Rng;

    #[test]
    fn parameter_counts_match_the_networks_and_absurd_sizes_do_not_overflow() {
        let layout = "mlp:6-5-3".parse::<Arch>().unwrap().layout();
        let dev = Default::default();
        for kind in [FieldKind::Mlp, FieldKind::Set, FieldKind::Potential] {
            let cfg = FieldConfig {
                kind,
                set: SetDims::of(&layout),
                jko: None,
                dim: layout.num_params(),
                hidden: 16,
                depth: 2,
                time_dim: 8,
                step_input: false,
                diagonal: false,
            };
            let field = cfg.init::<Cpu>(&dev);
            assert_eq!(cfg.num_params(), Module::num_params(&field), "{kind:?}");
            if kind == FieldKind::Mlp {
                let diag = FieldConfig {
                    diagonal: true,
                    ..cfg
                };
                let with = diag.init::<Cpu>(&dev);
                assert_eq!(diag.num_params(), Module::num_params(&with));
                assert_eq!(
                    diag.num_params(),
                    cfg.num_params() + 8 * 2 * cfg.dim + 2 * cfg.dim
                );
            }
            let huge = FieldConfig {
                hidden: usize::MAX / 2,
                ..cfg
            };
            assert!(
                huge.num_params_checked().is_none_or(|n| n > 1 << 40),
                "{kind:?}"
            );
            assert_eq!(huge.num_params(), usize::MAX, "{kind:?}");
        }
    }

    /// Residual of each row of `v` (minus `bias`) after projecting it onto the span of `basis`
    /// (rows), by Gram–Schmidt; the largest residual norm.
    fn largest_residual(v: &[f32], bias: &[f32], basis: &[Vec<f32>]) -> f32 {
        let d = bias.len();
        let mut ortho: Vec<Vec<f64>> = Vec::new();
        for b in basis {
            let mut u: Vec<f64> = b.iter().map(|&x| x as f64).collect();
            for q in &ortho {
                let dot: f64 = u.iter().zip(q).map(|(a, b)| a * b).sum();
                u.iter_mut().zip(q).for_each(|(a, b)| *a -= dot * b);
            }
            let n = u.iter().map(|a| a * a).sum::<f64>().sqrt();
            if n > 1e-9 {
                ortho.push(u.into_iter().map(|a| a / n).collect());
            }
        }
        v.chunks(d)
            .map(|row| {
                let mut r: Vec<f64> = row.iter().zip(bias).map(|(a, b)| (a - b) as f64).collect();
                for q in &ortho {
                    let dot: f64 = r.iter().zip(q).map(|(a, b)| a * b).sum();
                    r.iter_mut().zip(q).for_each(|(a, b)| *a -= dot * b);
                }
                r.iter().map(|a| a * a).sum::<f64>().sqrt() as f32
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn the_mlp_velocity_stays_in_its_last_layer_span_and_the_diagonal_term_leaves_it() {
        let cfg = FieldConfig {
            kind: FieldKind::Mlp,
            set: None,
            jko: None,
            dim: 6,
            hidden: 2,
            depth: 1,
            time_dim: 4,
            step_input: false,
            diagonal: false,
        };
        let dev = Default::default();
        let _seeded = crate::backend::seed_lock();
        Cpu::seed(&dev, 3);
        let plain = cfg.init::<Cpu>(&dev);
        let n = 12;
        let mut rng = Rng::new(5, 0);
        let xs: Vec<f32> = (0..n * 6).map(|_| rng.uniform() * 4.0 - 2.0).collect();
        let ts: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
        let x = || Tensor::<Cpu, 2>::from_data(TensorData::new(xs.clone(), [n, 6]), &dev);
        let t = || Tensor::<Cpu, 2>::from_data(TensorData::new(ts.clone(), [n, 1]), &dev);
        let v_plain = values::<f32>(plain.forward(x(), t()).into_data()).unwrap();
        // The last layer's weight is [2, 6]: its two rows span every velocity, up to the bias.
        let layers = plain.linear_layers().unwrap().unwrap();
        let (w_out, b_out) = &layers[1];
        let basis = vec![w_out[..6].to_vec(), w_out[6..].to_vec()];
        assert!(largest_residual(&v_plain, b_out, &basis) < 1e-4);
        // A zero term changes nothing, exactly.
        let with = plain.clone().push_diagonal(4, &dev);
        let v_zero = values::<f32>(with.forward(x(), t()).into_data()).unwrap();
        assert_eq!(v_zero, v_plain);
        // A nonzero one adds a(t)⊙x + b(t), [a | b] = W·emb(t) + c, and leaves the span.
        let mut set = with.linear_layers().unwrap().unwrap();
        let (w_d, c_d) = set.last_mut().unwrap();
        w_d.iter_mut()
            .enumerate()
            .for_each(|(i, w)| *w = ((i % 7) as f32 - 3.0) * 0.1);
        c_d.iter_mut()
            .enumerate()
            .for_each(|(i, c)| *c = (i as f32 - 5.0) * 0.05);
        let (w_d, c_d) = (w_d.clone(), c_d.clone());
        let diag = with.with_linear_layers(&set);
        let v = values::<f32>(diag.forward(x(), t()).into_data()).unwrap();
        let emb = values::<f32>(time_embedding(t(), 4).into_data()).unwrap();
        for r in 0..n {
            for i in 0..6 {
                // burn's weight is [d_in = 4, d_out = 12]: output j reads column j.
                let ab = |j: usize| {
                    c_d[j]
                        + (0..4)
                            .map(|k| emb[r * 4 + k] * w_d[k * 12 + j])
                            .sum::<f32>()
                };
                let want = v_plain[r * 6 + i] + ab(i) * xs[r * 6 + i] + ab(6 + i);
                assert!(
                    (v[r * 6 + i] - want).abs() < 1e-4,
                    "row {r}, coordinate {i}"
                );
            }
        }
        assert!(largest_residual(&v, b_out, &basis) > 0.1);
    }

    #[test]
    fn set_field_is_permutation_equivariant() {
        let layout = "mlp:6-5-3".parse::<Arch>().unwrap().layout();
        let cfg = FieldConfig {
            kind: FieldKind::Set,
            set: SetDims::of(&layout),
            jko: None,
            dim: layout.num_params(),
            hidden: 16,
            depth: 2,
            time_dim: 8,
            step_input: false,
            diagonal: false,
        };
        let dev = Default::default();
        let _seeded = crate::backend::seed_lock();
        Cpu::seed(&dev, 0);
        let field = cfg.init::<Cpu>(&dev);
        let mut rng = Rng::new(2, 0);
        let mut x = Vec::new();
        layout.init_into(&mut rng, &mut x);
        let sym = HiddenLayers::of(&layout).unwrap();
        let perms = sym.draw(&mut rng);
        let mut px = x.clone();
        sym.apply(&perms, &mut px);
        let run = |v: Vec<f32>| {
            let xt =
                Tensor::<Cpu, 2>::from_data(TensorData::new(v, [1, layout.num_params()]), &dev);
            let t = Tensor::<Cpu, 2>::full([1, 1], 0.3, &dev);
            field.forward(xt, t).into_data().to_vec::<f32>().unwrap()
        };
        let mut v = run(x);
        let pv = run(px);
        sym.apply(&perms, &mut v);
        for (a, b) in v.iter().zip(&pv) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(cfg.num_params(), {
            let d_tok = 6 + 1 + 3;
            (d_tok * 16 + 16)
                + (3 * 16 + 16)
                + (8 * 16 + 16)
                + 2 * 3 * (16 * 16 + 16)
                + (16 * d_tok + d_tok)
                + (16 * 3 + 3)
        });
    }
}
