//! The payload schema (postcard) and its validation.
//!
//! Conventions: f32 tensors are little-endian byte slices (postcard cannot borrow `&[f32]` without
//! alignment assumptions); int8 weights are bytes read as `i8`; every matrix is row-major
//! `[d_out][d_in]`. The field's first layer takes `[x (P values), emb(t) (time.dim values)]`, where
//! `x` is the standardized state and `emb(t) = [sin(ω_j t)…, cos(ω_j t)…]` with
//! `ω_j = 2π · max_frequency^(j/(half−1))`, `half = time.dim/2`.

use serde::{Deserialize, Serialize};

use crate::error::FormatError;
use crate::header::{HEADER_LEN, Header};

/// Most classifier layers a file may describe.
pub const MAX_CLASSIFIER_LAYERS: usize = 8;
/// Most field layers a file may hold.
pub const MAX_FIELD_LAYERS: usize = 8;

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

/// The ODE solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SolverKind {
    /// Forward Euler (1 evaluation per step).
    Euler,
    /// Heun (2 evaluations per step).
    Heun,
    /// Classic RK4 (4 evaluations per step).
    Rk4,
}

impl SolverKind {
    /// Field evaluations per step.
    pub fn stages(self) -> u32 {
        match self {
            Self::Euler => 1,
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
    /// The field's layers.
    #[serde(borrow)]
    pub field: heapless::Vec<FieldLayer<'a>, MAX_FIELD_LAYERS>,
    /// Default solver.
    pub solver: SolverKind,
    /// Default step count.
    pub steps: u16,
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

fn all_finite(bytes: &[u8], positive: bool) -> bool {
    bytes.chunks_exact(4).all(|c| {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        v.is_finite() && (!positive || v > 0.0)
    })
}

fn mismatch(part: u8, index: usize, expected: u64, found: u64) -> FormatError {
    FormatError::DimensionMismatch {
        part,
        index: u16::try_from(index).unwrap_or(u16::MAX),
        expected: u32::try_from(expected).unwrap_or(u32::MAX),
        found: u32::try_from(found).unwrap_or(u32::MAX),
    }
}

fn invalid(part: u8, index: usize) -> FormatError {
    FormatError::InvalidValue {
        part,
        index: u16::try_from(index).unwrap_or(u16::MAX),
    }
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

    /// Widest hidden field layer output (the activation buffer size).
    pub fn max_field_width(&self) -> usize {
        // The last layer writes the P-sized velocity directly, not an activation buffer.
        let hidden = self.field.len().saturating_sub(1);
        self.field
            .iter()
            .take(hidden)
            .map(|l| l.d_out as usize)
            .max()
            .unwrap_or(0)
    }

    /// Widest classifier layer output.
    pub fn max_classifier_width(&self) -> usize {
        self.classifier
            .iter()
            .map(|l| l.d_out as usize)
            .max()
            .unwrap_or(0)
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
        if self.field.is_empty() || self.steps == 0 {
            return Err(invalid(1, 0));
        }
        let mut expected_in = params + u64::from(self.time.dim);
        for (i, l) in self.field.iter().enumerate() {
            if u64::from(l.d_in) != expected_in {
                return Err(mismatch(1, i, expected_in, u64::from(l.d_in)));
            }
            if l.d_out == 0 {
                return Err(invalid(1, i));
            }
            let cells = u64::from(l.d_out) * u64::from(l.d_in);
            match l.weights {
                FieldWeights::Int8 { q, scales } => {
                    if q.len() as u64 != cells {
                        return Err(mismatch(1, i, cells, q.len() as u64));
                    }
                    if scales.len() as u64 != 4 * u64::from(l.d_out) {
                        return Err(mismatch(1, i, 4 * u64::from(l.d_out), scales.len() as u64));
                    }
                    if !all_finite(scales, false) {
                        return Err(invalid(1, i));
                    }
                }
                FieldWeights::F32 { w } => {
                    if w.len() as u64 != 4 * cells {
                        return Err(mismatch(1, i, 4 * cells, w.len() as u64));
                    }
                    if !all_finite(w, false) {
                        return Err(invalid(1, i));
                    }
                }
            }
            if l.bias.len() as u64 != 4 * u64::from(l.d_out) {
                return Err(mismatch(1, i, 4 * u64::from(l.d_out), l.bias.len() as u64));
            }
            if !all_finite(l.bias, false) {
                return Err(invalid(1, i));
            }
            expected_in = u64::from(l.d_out);
        }
        if expected_in != params {
            let last = self.field.len().saturating_sub(1);
            return Err(mismatch(1, last, params, expected_in));
        }
        Ok(())
    }

    /// Decodes and validates a whole file (header + payload), borrowing tensors from `file`.
    ///
    /// # Errors
    /// Any [`FormatError`]; never panics on any input.
    pub fn decode(file: &'a [u8]) -> Result<Self, FormatError> {
        let (_, payload) = Header::split(file)?;
        let (model, rest) = postcard::take_from_bytes::<ModelFile<'a>>(payload)
            .map_err(|_| FormatError::Postcard)?;
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
