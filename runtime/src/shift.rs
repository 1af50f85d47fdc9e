//! Ensemble statistics over a window of unlabeled inputs: the on-device half of shift detection.
//!
//! Synthesize `M` classifiers from `M` seeds; for each, call [`EnsembleStats::add`] with its
//! predicted probabilities on every input of the window. The statistics are the ensemble's
//! disagreement rate (mean over inputs of `1 − (votes for the modal class)/M`) and its mean
//! predictive entropy (entropy of the averaged probabilities, in nats). Calibrated thresholds come
//! with the shift-detection work.

use crate::classifier::argmax;
use crate::error::{Error, sat_u32};
use crate::math;

/// Accumulators for a window of `W` inputs and `C` classes (caller-owned, no allocation).
#[derive(Clone, Debug)]
pub struct EnsembleStats<const W: usize, const C: usize> {
    votes: [[u16; C]; W],
    prob_sum: [[f32; C]; W],
    members: u16,
    inputs: usize,
}

/// The statistics of a window.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ShiftStatistics {
    /// Mean over inputs of `1 − max votes / members`.
    pub disagreement: f32,
    /// Mean over inputs of the entropy of the ensemble's mean probabilities (nats).
    pub mean_entropy: f32,
    /// Ensemble members.
    pub members: u16,
}

/// Softmax of `logits` into `probs` (same length), numerically stable.
pub fn softmax(logits: &[f32], probs: &mut [f32]) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0;
    for (p, &l) in probs.iter_mut().zip(logits) {
        *p = math::exp(l - m);
        z += *p;
    }
    for p in probs.iter_mut() {
        *p /= z;
    }
}

impl<const W: usize, const C: usize> EnsembleStats<W, C> {
    /// Empty accumulators for a window of `inputs ≤ W` inputs.
    ///
    /// # Errors
    /// [`Error::CapacityTooSmall`] when `inputs > W`.
    pub fn new(inputs: usize) -> Result<Self, Error> {
        if inputs > W {
            return Err(Error::CapacityTooSmall {
                needed: sat_u32(inputs),
                available: sat_u32(W),
            });
        }
        Ok(Self {
            votes: [[0; C]; W],
            prob_sum: [[0.0; C]; W],
            members: 0,
            inputs,
        })
    }

    /// Adds one member's probabilities for input `i` (call for every input, then
    /// [`EnsembleStats::finish_member`]).
    pub fn add(&mut self, i: usize, probs: &[f32]) {
        if let (Some(v), Some(s)) = (self.votes.get_mut(i), self.prob_sum.get_mut(i)) {
            if let Some(c) = v.get_mut(argmax(probs)) {
                *c = c.saturating_add(1);
            }
            for (acc, p) in s.iter_mut().zip(probs) {
                *acc += p;
            }
        }
    }

    /// Marks the end of one member.
    pub fn finish_member(&mut self) {
        self.members = self.members.saturating_add(1);
    }

    /// The statistics so far.
    pub fn statistics(&self) -> ShiftStatistics {
        let m = f32::from(self.members.max(1));
        let mut dis = 0.0;
        let mut ent = 0.0;
        for (v, s) in self.votes.iter().zip(&self.prob_sum).take(self.inputs) {
            let top = v.iter().copied().max().unwrap_or(0);
            dis += 1.0 - f32::from(top) / m;
            ent -= s
                .iter()
                .map(|&p| p / m)
                .filter(|&p| p > 0.0)
                .map(|p| p * math::ln(p))
                .sum::<f32>();
        }
        let n = self.inputs.max(1) as f32;
        ShiftStatistics {
            disagreement: dis / n,
            mean_entropy: ent / n,
            members: self.members,
        }
    }
}
