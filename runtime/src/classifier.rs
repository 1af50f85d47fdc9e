//! The synthesized classifier's forward pass (dense layers from the model's layer table).

use crate::error::{Error, sat_u32};
use crate::model_view::ModelView;
use crate::vector_field::activate;

/// Activation scratch for classification: two buffers of `H` values.
#[derive(Clone, Debug)]
pub struct ClassifierScratch<const H: usize> {
    a: [f32; H],
    b: [f32; H],
}

impl<const H: usize> ClassifierScratch<H> {
    /// Zeroed scratch.
    pub const fn new() -> Self {
        Self {
            a: [0.0; H],
            b: [0.0; H],
        }
    }
}

impl<const H: usize> Default for ClassifierScratch<H> {
    fn default() -> Self {
        Self::new()
    }
}

/// A classifier: the model's layer table with a set of weights.
#[derive(Clone, Copy, Debug)]
pub struct Classifier<'m, 'w> {
    model: &'m ModelView<'m>,
    weights: &'w [f32],
}

impl<'m, 'w> Classifier<'m, 'w> {
    /// Wraps `weights` (in the model's layout).
    ///
    /// # Errors
    /// [`Error::InputLength`] when `weights` is not `num_params` long.
    pub fn new(model: &'m ModelView<'m>, weights: &'w [f32]) -> Result<Self, Error> {
        if weights.len() != model.num_params() {
            return Err(Error::InputLength {
                expected: sat_u32(model.num_params()),
                found: sat_u32(weights.len()),
            });
        }
        Ok(Self { model, weights })
    }

    /// Writes the logits for `input` into `logits` (length: classes) and returns the predicted
    /// class (the first maximum).
    ///
    /// # Errors
    /// [`Error::InputLength`] for a wrong input or logits length, [`Error::CapacityTooSmall`] when
    /// `H` is below the widest layer.
    pub fn logits<const H: usize>(
        &self,
        input: &[f32],
        scratch: &mut ClassifierScratch<H>,
        logits: &mut [f32],
    ) -> Result<usize, Error> {
        let f = &self.model.file;
        if input.len() != self.model.input_dim() || logits.len() != self.model.num_classes() {
            return Err(Error::InputLength {
                expected: sat_u32(self.model.input_dim()),
                found: sat_u32(input.len()),
            });
        }
        if f.max_classifier_width() > H {
            return Err(Error::CapacityTooSmall {
                needed: sat_u32(f.max_classifier_width()),
                available: sat_u32(H),
            });
        }
        let (mut cur, mut nxt) = (&mut scratch.a[..], &mut scratch.b[..]);
        let mut params = self.weights;
        let mut width = input.len();
        let n = f.classifier.len();
        for (l, layer) in f.classifier.iter().enumerate() {
            let (d_in, d_out) = (layer.d_in as usize, layer.d_out as usize);
            let (w, rest) = params.split_at(d_in.saturating_mul(d_out).min(params.len()));
            let (bias, rest) = rest.split_at(d_out.min(rest.len()));
            params = rest;
            let src: &[f32] = if l == 0 {
                input
            } else {
                cur.get(..width).unwrap_or(&[])
            };
            let last = l.saturating_add(1) == n;
            let dst: &mut [f32] = if last {
                &mut *logits
            } else {
                nxt.get_mut(..d_out).unwrap_or(&mut [])
            };
            let mut rows = w.chunks_exact(d_in.max(1));
            for (bo, y) in bias.iter().zip(dst.iter_mut()) {
                let Some(row) = rows.next() else { break };
                let s = crate::kernels::dot_f32(row, src);
                *y = activate(layer.activation, s + bo);
            }
            if !last {
                core::mem::swap(&mut cur, &mut nxt);
            }
            width = d_out;
        }
        Ok(argmax(logits))
    }
}

/// Index of the first maximum (0 for an empty slice).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best = i;
            best_v = x;
        }
    }
    best
}
