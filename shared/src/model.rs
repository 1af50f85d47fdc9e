//! The payload schema (postcard) and its validation.
//!
//! Conventions: f32 tensors are little-endian byte slices (postcard cannot borrow `&[f32]` without
//! alignment assumptions); int8 weights are bytes read as `i8`; every matrix is row-major
//! `[d_out][d_in]`. The time embedding is `emb(t) = [sin(ω_j t)…, cos(ω_j t)…]` with
//! `ω_j = 2π · max_frequency^(j/(half−1))`, `half = time.dim/2`.
//!
//! Two field networks ([`FieldNet`]): an MLP whose first layer takes `[z (P values), emb(t)]`
//! (`z` the standardized state), and the permutation-equivariant set field of a one-hidden-layer
//! MLP classifier ([`SetNet`]), whose tokens are the classifier's hidden units.

use serde::{Deserialize, Serialize};

use crate::condition::ConditionSection;
use crate::error::FormatError;
use crate::header::{HEADER_LEN, Header};
use crate::latent::LatentSection;
use crate::shift::ShiftSection;

/// Most classifier layers a file may describe.
pub const MAX_CLASSIFIER_LAYERS: usize = 8;
/// Most field layers a file may hold.
pub const MAX_FIELD_LAYERS: usize = 8;
/// Most residual blocks a set field may hold (the host's default depth is 3; the table is inline,
/// so every slot costs stack wherever a parsed model lives).
pub const MAX_SET_BLOCKS: usize = 6;

/// The part number of the MLP field's per-coordinate term in a [`FormatError`].
pub const DIAGONAL_PART: u8 = 9;
/// The part number of the memoryless SDE sampler's settings in a [`FormatError`] (index 0: fewer
/// than 2 steps for [`SolverKind::Sde`], 1: [`ModelFile::sde_t0`] outside (0, 1)); a zero step
/// count is part 1, as before version 8.
pub const SAMPLER_PART: u8 = 10;
/// The first time of the memoryless SDE sampler in files before version 8 (and the host's
/// default).
pub const DEFAULT_SDE_T0: f32 = 0.1;

/// An elementwise activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// None.
    Identity,
    /// max(x, 0).
    Relu,
    /// x for x > 0, 0.01·x otherwise.
    LeakyRelu,
    /// x·sigmoid(x).
    Silu,
}

/// One dense layer of the classifier (weight `[d_out][d_in]` then bias `[d_out]` in the flat
/// parameter vector), followed by `activation`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassifierLayer {
    /// Inputs.
    pub d_in: u32,
    /// Outputs.
    pub d_out: u32,
    /// Activation after the layer.
    pub activation: Activation,
    /// Init bound `1/√d_in` of the layer's weight and bias (the Kaiming source).
    pub init_bound: f32,
}

/// The source law `p_0`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SourceKind {
    /// U(−b, b) per block with the layer's `init_bound`.
    Kaiming,
    /// N(0, std²).
    Gaussian {
        /// Standard deviation.
        std: f32,
    },
}

/// Per-block standardization: for block `b` (layer `b/2`'s weight if even, bias if odd),
/// `z = (w − mean[b]) / std[b]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Normalization<'a> {
    /// Means, f32 LE, one per block.
    pub mean: &'a [u8],
    /// Standard deviations, f32 LE, one per block.
    pub std: &'a [u8],
}

/// The sinusoidal time embedding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimeEmbedding {
    /// Embedding width (even).
    pub dim: u32,
    /// Highest frequency in cycles per unit time.
    pub max_frequency: f32,
}

/// A field layer's weights.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FieldWeights<'a> {
    /// Symmetric int8 with one f32 scale per output row: `w[o][i] = scale[o] · q[o][i]`.
    Int8 {
        /// `d_out·d_in` bytes, read as i8.
        q: &'a [u8],
        /// `d_out` f32 LE scales.
        scales: &'a [u8],
    },
    /// f32 LE, `d_out·d_in` values.
    F32 {
        /// The weights.
        w: &'a [u8],
    },
}

/// One dense layer of the vector field.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FieldLayer<'a> {
    /// Inputs.
    pub d_in: u32,
    /// Outputs.
    pub d_out: u32,
    /// Activation after the layer.
    pub activation: Activation,
    /// Weights, row-major `[d_out][d_in]`.
    #[serde(borrow)]
    pub weights: FieldWeights<'a>,
    /// Biases, `d_out` f32 LE.
    pub bias: &'a [u8],
}

/// The sampler: an ODE solver, or the memoryless SDE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SolverKind {
    /// Forward Euler (1 evaluation per step).
    Euler,
    /// Heun (2 evaluations per step).
    Heun,
    /// Classic RK4 (4 evaluations per step).
    Rk4,
    /// The memoryless SDE of the linear path (version 8; 1 evaluation per step): one Euler step
    /// of the ODE to [`ModelFile::sde_t0`], then `steps − 1` Euler–Maruyama steps with drift
    /// `2v + μ − (z − (1 − t)μ)/t` and diffusion `c·√(2(1 − t)/t)`, where `μ`, `c` are the
    /// source's mean and standard deviation in standardized units. The sampler adjoint matching
    /// fine-tunes (`nmflow finetune --method adjoint`); at least 2 steps.
    Sde,
}

impl SolverKind {
    /// Field evaluations per step.
    pub fn stages(self) -> u32 {
        match self {
            Self::Euler | Self::Sde => 1,
            Self::Heun => 2,
            Self::Rk4 => 4,
        }
    }
}

/// Everything a device needs to synthesize classifiers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelFile<'a> {
    /// Id of the host model (the first 16 bytes of the SHA-256 of its `config.json`).
    pub model_id: [u8; 16],
    /// The classifier's layers.
    pub classifier: heapless::Vec<ClassifierLayer, MAX_CLASSIFIER_LAYERS>,
    /// The source law.
    pub source: SourceKind,
    /// Standardization statistics.
    #[serde(borrow)]
    pub normalization: Normalization<'a>,
    /// The time embedding.
    pub time: TimeEmbedding,
    /// The vector field.
    #[serde(borrow)]
    pub field: FieldNet<'a>,
    /// Default solver.
    pub solver: SolverKind,
    /// Default step count.
    pub steps: u16,
    /// The calibrated shift detector, when exported with one (version 3).
    #[serde(borrow)]
    pub shift: Option<ShiftSection<'a>>,
    /// A latent model's decoder (version 4): the field's state is its latent, not the weights.
    #[serde(borrow)]
    pub latent: Option<LatentSection<'a>>,
    /// A class-conditioned set field's support-set encoder and class lift (version 5).
    #[serde(borrow)]
    pub condition: Option<ConditionSection<'a>>,
    /// The set field also takes the sampler's step size `h = 1/K` (version 6): its time input is
    /// `[emb(t), emb(h)]`, `2·time.dim` wide, with the same embedding.
    pub step_input: bool,
    /// The MLP field's per-coordinate term (version 7): a layer `time.dim → 2·S` (`S` the state
    /// size, [`Self::state_dim`]) whose output `[a | b]` at `emb(t)` adds `a ⊙ z + b` to the
    /// velocity at the standardized state `z`, so every coordinate can move, not only those in
    /// the last layer's span (`finetune --diagonal`). Its activation is `Identity`.
    #[serde(borrow)]
    pub diagonal: Option<FieldLayer<'a>>,
    /// The first time `t0` of the memoryless SDE sampler ([`SolverKind::Sde`]; version 8, older
    /// files: [`DEFAULT_SDE_T0`]), in (0, 1).
    pub sde_t0: f32,
}

/// The vector-field network.
// No allocator on the device: the larger variant stays inline; a model is parsed once and lives in
// one place.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FieldNet<'a> {
    /// An MLP on `[z, emb(t)]`: layer 0 takes `P + time.dim` inputs, the last outputs `P`.
    Mlp(#[serde(borrow)] heapless::Vec<FieldLayer<'a>, MAX_FIELD_LAYERS>),
    /// The set field of a one-hidden-layer MLP classifier.
    Set(#[serde(borrow)] SetNet<'a>),
}

/// One residual block of the set field: `h_j += mlp(silu(local(h_j) + pooled(mean_k h_k) + c))`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SetBlock<'a> {
    /// Per-token layer, `H → H`.
    #[serde(borrow)]
    pub local: FieldLayer<'a>,
    /// Layer on the mean of the tokens, `H → H`.
    #[serde(borrow)]
    pub pooled: FieldLayer<'a>,
    /// Per-token layer after the SiLU, `H → H`, added to the token.
    #[serde(borrow)]
    pub mlp: FieldLayer<'a>,
}

/// The permutation-equivariant set field of a classifier with two dense layers
/// (`W1 [U][d_in]`, `b1 [U]`, `W2 [d_out][U]`, `b2 [d_out]`).
///
/// Hidden unit `j` is a token `s_j = [W1[j, :], b1[j], W2[:, j]]` of `D = d_in + 1 + d_out` values
/// (standardized). With the context `c = time_in(emb(t)) + global_in(b2)`:
/// `h_j = embed(s_j) + c`; then every block; then the token's velocity `token_out(silu(h_j))` and
/// the output bias's velocity `global_out(silu(mean_j h_j + c))`. Every layer is affine
/// (its `activation` is `Identity`); the SiLUs are where this description puts them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SetNet<'a> {
    /// Width `H` of the token states.
    pub hidden: u32,
    /// Token embedding, `D → H`.
    #[serde(borrow)]
    pub embed: FieldLayer<'a>,
    /// Output-bias input, `d_out → H`.
    #[serde(borrow)]
    pub global_in: FieldLayer<'a>,
    /// Time input, `time.dim → H`.
    #[serde(borrow)]
    pub time_in: FieldLayer<'a>,
    /// Residual blocks.
    #[serde(borrow)]
    pub blocks: heapless::Vec<SetBlock<'a>, MAX_SET_BLOCKS>,
    /// Token velocity head, `H → D`.
    #[serde(borrow)]
    pub token_out: FieldLayer<'a>,
    /// Output-bias velocity head, `H → d_out`.
    #[serde(borrow)]
    pub global_out: FieldLayer<'a>,
}

/// Token shape of a set field's classifier: hidden units `U`, inputs, classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenDims {
    /// Hidden units (tokens).
    pub units: usize,
    /// Classifier inputs.
    pub d_in: usize,
    /// Classes.
    pub d_out: usize,
}

impl TokenDims {
    /// Values per token, `d_in + 1 + d_out`.
    pub fn token(&self) -> usize {
        self.d_in.saturating_add(1).saturating_add(self.d_out)
    }
}

impl<'a> SetNet<'a> {
    /// The layers in file order: embed, global_in, time_in, each block's local, pooled, mlp,
    /// token_out, global_out (the index of a [`FormatError`] of part 5).
    pub fn layers(&self) -> impl Iterator<Item = &FieldLayer<'a>> {
        [&self.embed, &self.global_in, &self.time_in]
            .into_iter()
            .chain(
                self.blocks
                    .iter()
                    .flat_map(|b| [&b.local, &b.pooled, &b.mlp]),
            )
            .chain([&self.token_out, &self.global_out])
    }
}

/// Reads the `i`-th little-endian f32 of `bytes`.
pub fn le_f32(bytes: &[u8], i: usize) -> Option<f32> {
    let at = i.checked_mul(4)?;
    let s = bytes.get(at..at.checked_add(4)?)?;
    Some(f32::from_le_bytes([
        *s.first()?,
        *s.get(1)?,
        *s.get(2)?,
        *s.get(3)?,
    ]))
}

pub(crate) fn all_finite(bytes: &[u8], positive: bool) -> bool {
    bytes.chunks_exact(4).all(|c| {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        v.is_finite() && (!positive || v > 0.0)
    })
}

pub(crate) fn mismatch(part: u8, index: usize, expected: u64, found: u64) -> FormatError {
    FormatError::DimensionMismatch {
        part,
        index: u16::try_from(index).unwrap_or(u16::MAX),
        expected: u32::try_from(expected).unwrap_or(u32::MAX),
        found: u32::try_from(found).unwrap_or(u32::MAX),
    }
}

pub(crate) fn invalid(part: u8, index: usize) -> FormatError {
    FormatError::InvalidValue {
        part,
        index: u16::try_from(index).unwrap_or(u16::MAX),
    }
}

/// Checks one dense layer's byte lengths and values (and its output width, when fixed).
pub(crate) fn check_layer(
    part: u8,
    i: usize,
    l: &FieldLayer<'_>,
    d_out: Option<u64>,
) -> Result<(), FormatError> {
    if l.d_out == 0 {
        return Err(invalid(part, i));
    }
    if let Some(d) = d_out
        && u64::from(l.d_out) != d
    {
        return Err(mismatch(part, i, d, u64::from(l.d_out)));
    }
    let cells = u64::from(l.d_out) * u64::from(l.d_in);
    let rows = 4 * u64::from(l.d_out);
    match l.weights {
        FieldWeights::Int8 { q, scales } => {
            if q.len() as u64 != cells {
                return Err(mismatch(part, i, cells, q.len() as u64));
            }
            if scales.len() as u64 != rows {
                return Err(mismatch(part, i, rows, scales.len() as u64));
            }
            if !all_finite(scales, false) {
                return Err(invalid(part, i));
            }
        }
        FieldWeights::F32 { w } => {
            if w.len() as u64 != 4 * cells {
                return Err(mismatch(part, i, 4 * cells, w.len() as u64));
            }
            if !all_finite(w, false) {
                return Err(invalid(part, i));
            }
        }
    }
    if l.bias.len() as u64 != rows {
        return Err(mismatch(part, i, rows, l.bias.len() as u64));
    }
    if !all_finite(l.bias, false) {
        return Err(invalid(part, i));
    }
    Ok(())
}

impl<'a> ModelFile<'a> {
    /// Number of classifier parameters `P` (the ODE state size).
    pub fn num_params(&self) -> usize {
        self.classifier
            .iter()
            .map(|l| {
                (l.d_out as usize)
                    .saturating_mul(l.d_in as usize)
                    .saturating_add(l.d_out as usize)
            })
            .fold(0usize, usize::saturating_add)
    }

    /// Values of the ODE state: the latent size of a latent model, the classifier's parameters
    /// otherwise.
    pub fn state_dim(&self) -> usize {
        match &self.latent {
            Some(l) => l.dim as usize,
            None => self.num_params(),
        }
    }

    /// Widest hidden activation of the field: the widest hidden MLP layer, or the set field's
    /// token width `H`.
    pub fn max_field_width(&self) -> usize {
        match &self.field {
            // The last layer writes the P-sized velocity directly, not an activation buffer.
            FieldNet::Mlp(layers) => layers
                .iter()
                .take(layers.len().saturating_sub(1))
                .map(|l| l.d_out as usize)
                .max()
                .unwrap_or(0),
            FieldNet::Set(net) => net.hidden as usize,
        }
    }

    /// The token shape when the classifier has exactly two layers (the set field's case).
    pub fn token_dims(&self) -> Option<TokenDims> {
        match self.classifier.as_slice() {
            [first, second] => Some(TokenDims {
                units: first.d_out as usize,
                d_in: first.d_in as usize,
                d_out: second.d_out as usize,
            }),
            _ => None,
        }
    }

    /// The token shape the set field runs on: the classifier's ([`Self::token_dims`]), or for a
    /// class-conditioned field the lifted one, whose output layer has the lift's `R` "classes".
    pub fn field_tokens(&self) -> Option<TokenDims> {
        let dims = self.token_dims()?;
        Some(match &self.condition {
            Some(c) => TokenDims {
                d_out: c.lift_width(),
                ..dims
            },
            None => dims,
        })
    }

    /// Widest classifier layer output.
    pub fn max_classifier_width(&self) -> usize {
        self.classifier
            .iter()
            .map(|l| l.d_out as usize)
            .max()
            .unwrap_or(0)
    }

    /// Width of the field's time input: `time.dim`, or `2·time.dim` with the step-size input.
    pub fn time_width(&self) -> usize {
        (self.time.dim as usize).saturating_mul(1 + usize::from(self.step_input))
    }

    /// Checks every length and dimension once; kernels may then index without checks failing.
    ///
    /// # Errors
    /// [`FormatError::DimensionMismatch`] or [`FormatError::InvalidValue`] naming the part.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.classifier.is_empty() {
            return Err(invalid(0, 0));
        }
        let mut params: u64 = 0;
        for (i, l) in self.classifier.iter().enumerate() {
            if l.d_in == 0 || l.d_out == 0 || !(l.init_bound.is_finite() && l.init_bound > 0.0) {
                return Err(invalid(0, i));
            }
            if let Some(next) = self.classifier.get(i + 1)
                && next.d_in != l.d_out
            {
                return Err(mismatch(0, i + 1, u64::from(l.d_out), u64::from(next.d_in)));
            }
            params += u64::from(l.d_out) * u64::from(l.d_in) + u64::from(l.d_out);
        }
        if params > u64::from(u32::MAX) {
            return Err(invalid(0, 0));
        }
        let blocks = 2 * self.classifier.len() as u64;
        let n = &self.normalization;
        if n.mean.len() as u64 != 4 * blocks {
            return Err(mismatch(2, 0, 4 * blocks, n.mean.len() as u64));
        }
        if n.std.len() as u64 != 4 * blocks {
            return Err(mismatch(2, 1, 4 * blocks, n.std.len() as u64));
        }
        if !all_finite(n.mean, false) || !all_finite(n.std, true) {
            return Err(invalid(2, 0));
        }
        if let SourceKind::Gaussian { std } = self.source
            && !(std.is_finite() && std > 0.0)
        {
            return Err(invalid(3, 0));
        }
        if self.time.dim < 2
            || !self.time.dim.is_multiple_of(2)
            || !(self.time.max_frequency.is_finite() && self.time.max_frequency > 0.0)
        {
            return Err(invalid(4, 0));
        }
        if self.steps == 0 {
            return Err(invalid(1, 0));
        }
        if self.solver == SolverKind::Sde && self.steps < 2 {
            return Err(invalid(SAMPLER_PART, 0));
        }
        if !(self.sde_t0.is_finite() && self.sde_t0 > 0.0 && self.sde_t0 < 1.0) {
            return Err(invalid(SAMPLER_PART, 1));
        }
        let state = match &self.latent {
            Some(latent) => {
                // The device draws the latent source itself: only N(0, σ²) can be drawn there.
                if !matches!(self.source, SourceKind::Gaussian { .. }) {
                    return Err(invalid(3, 1));
                }
                // The set field and the shift detector work on the classifier's weights.
                if matches!(self.field, FieldNet::Set(_)) {
                    return Err(invalid(crate::latent::LATENT_PART, 0));
                }
                if self.shift.is_some() {
                    return Err(invalid(6, 0));
                }
                latent.validate(params, self.token_dims())?;
                u64::from(latent.dim)
            }
            None => params,
        };
        match &self.field {
            // The step-size input is the set field's (and not a conditioned one's).
            FieldNet::Mlp(_) if self.step_input => return Err(invalid(4, 1)),
            _ if self.step_input && self.condition.is_some() => return Err(invalid(4, 1)),
            FieldNet::Mlp(layers) => self.validate_mlp(layers, state)?,
            FieldNet::Set(net) => self.validate_set(net)?,
        }
        if let Some(d) = &self.diagonal {
            // Part 9: the per-coordinate term of an MLP field, `time.dim → 2·state`.
            if !matches!(self.field, FieldNet::Mlp(_)) || d.activation != Activation::Identity {
                return Err(invalid(DIAGONAL_PART, 0));
            }
            if u64::from(d.d_in) != u64::from(self.time.dim) {
                return Err(mismatch(
                    DIAGONAL_PART,
                    0,
                    u64::from(self.time.dim),
                    u64::from(d.d_in),
                ));
            }
            check_layer(DIAGONAL_PART, 0, d, Some(2 * state))?;
        }
        if let Some(cond) = &self.condition {
            // The lift works on a set field of a one-hidden-layer classifier's weights; the shift
            // detector's ensemble is drawn unconditionally.
            if !matches!(self.field, FieldNet::Set(_)) || self.latent.is_some() {
                return Err(invalid(crate::condition::CONDITION_PART, 0));
            }
            if self.shift.is_some() {
                return Err(invalid(6, 1));
            }
            cond.validate(self.classifier.first().map_or(0, |l| l.d_in as usize))?;
        }
        match &self.shift {
            Some(section) => {
                section.validate(self.classifier.first().map_or(0, |l| l.d_in as usize))
            }
            None => Ok(()),
        }
    }

    /// Checks the MLP field against a state of `params` values.
    fn validate_mlp(&self, layers: &[FieldLayer<'_>], params: u64) -> Result<(), FormatError> {
        if layers.is_empty() {
            return Err(invalid(1, 0));
        }
        let mut expected_in = params + u64::from(self.time.dim);
        for (i, l) in layers.iter().enumerate() {
            if u64::from(l.d_in) != expected_in {
                return Err(mismatch(1, i, expected_in, u64::from(l.d_in)));
            }
            check_layer(1, i, l, None)?;
            expected_in = u64::from(l.d_out);
        }
        if expected_in != params {
            let last = layers.len().saturating_sub(1);
            return Err(mismatch(1, last, params, expected_in));
        }
        Ok(())
    }

    fn validate_set(&self, net: &SetNet<'_>) -> Result<(), FormatError> {
        // Part 5: the set field; index = the layer's position in `SetNet::layers`.
        let dims = self
            .field_tokens()
            .ok_or(mismatch(0, 0, 2, self.classifier.len() as u64))?;
        let h = u64::from(net.hidden);
        if h == 0 {
            return Err(invalid(5, 0));
        }
        let (tok, td) = (dims.token() as u64, self.time_width() as u64);
        let out = dims.d_out as u64;
        let blocks = net.blocks.len();
        for (i, l) in net.layers().enumerate() {
            let shape = match i {
                0 => (tok, h),
                1 => (out, h),
                2 => (td, h),
                i if i < 3 + 3 * blocks => (h, h),
                i if i == 3 + 3 * blocks => (h, tok),
                _ => (h, out),
            };
            if u64::from(l.d_in) != shape.0 {
                return Err(mismatch(5, i, shape.0, u64::from(l.d_in)));
            }
            check_layer(5, i, l, Some(shape.1))?;
            if l.activation != Activation::Identity {
                return Err(invalid(5, i));
            }
        }
        Ok(())
    }

    /// Decodes and validates a whole file (header + payload), borrowing tensors from `file`.
    ///
    /// # Errors
    /// Any [`FormatError`]; never panics on any input.
    pub fn decode(file: &'a [u8]) -> Result<Self, FormatError> {
        let (header, payload) = Header::split(file)?;
        let (model, rest) =
            crate::versions::take(header.version, payload).map_err(|_| FormatError::Postcard)?;
        if !rest.is_empty() {
            return Err(FormatError::TrailingBytes {
                extra: u32::try_from(rest.len()).unwrap_or(u32::MAX),
            });
        }
        model.validate()?;
        Ok(model)
    }

    /// Encodes the model as a whole file into `buf` without allocating; returns the file length.
    ///
    /// # Errors
    /// The validation error, or [`FormatError::Truncated`] when `buf` is too small.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        self.validate()?;
        let available = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let too_small = FormatError::Truncated {
            needed: available.saturating_add(1),
            available,
        };
        let (head, body) = buf.split_at_mut(HEADER_LEN.min(buf.len()));
        if head.len() < HEADER_LEN {
            return Err(too_small);
        }
        let n = postcard::to_slice(self, body).map_err(|_| too_small)?.len();
        let payload = body.get(..n).ok_or(too_small)?;
        head.copy_from_slice(&Header::for_payload(payload).to_bytes());
        Ok(HEADER_LEN + n)
    }

    /// Encodes the model as a whole file (header + payload) after validating it.
    ///
    /// # Errors
    /// The validation error, or [`FormatError::Postcard`].
    #[cfg(feature = "alloc")]
    pub fn encode(&self) -> Result<alloc::vec::Vec<u8>, FormatError> {
        self.validate()?;
        let payload = postcard::to_allocvec(self).map_err(|_| FormatError::Postcard)?;
        let mut out = alloc::vec::Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&Header::for_payload(&payload).to_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }
}
