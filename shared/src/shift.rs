//! The shift section (format version 3): how a device decides, on a window of unlabeled inputs,
//! whether they are a covariate shift that harms its classifier, calibrated on the host.
//!
//! The device's classifier `f` is the one it synthesizes from `base_seed`. For a window `Q` of
//! `window` inputs it grows an ensemble of at most `members` classifiers: member `m` is
//! synthesized from `derive_seed(member_seed, m)` with Euler steps of the model's field, each
//! moved by reward guidance towards Detectron's objective on the window
//! (`v − γ·∇_z[CE(f_w on anchors, f's labels) + λ·ℓ_dis(f_w on the remaining window inputs)]`
//! at the predicted endpoint; `γ = guidance_scale`, `λ = guidance_lambda`; `γ = 0` is the untilted
//! ensemble). A member removes the remaining inputs on which it disagrees with `f`; growth stops
//! at `members`, when nothing remains, or after `patience` members without a removal. The window's
//! statistic is the removed count (`Disagreement`) or the mean predictive entropy of `f` and the
//! members (`Entropy`, nats); the device flags the window when the statistic exceeds `threshold`.

use serde::{Deserialize, Serialize};

use crate::error::FormatError;
use crate::model::le_f32;

/// Error part of the shift section.
pub const SHIFT_PART: u8 = 6;

/// The window statistic a shift section thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ShiftStatistic {
    /// Window inputs removed by the ensemble's members (disagreement with `f`).
    Disagreement,
    /// Mean over the window of the predictive entropy of the ensemble's mean probabilities.
    Entropy,
}

/// A calibrated shift detector (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ShiftSection<'a> {
    /// The statistic the threshold applies to.
    pub statistic: ShiftStatistic,
    /// Inputs per window.
    pub window: u16,
    /// Most ensemble members besides `f`.
    pub members: u16,
    /// Members without a removal after which the ensemble stops.
    pub patience: u16,
    /// Seed of the device's classifier `f`.
    pub base_seed: u64,
    /// Seed from which member `m`'s seed is derived.
    pub member_seed: u64,
    /// Guidance strength γ (0: the untilted ensemble).
    pub guidance_scale: f32,
    /// Weight λ of the disagreement term.
    pub guidance_lambda: f32,
    /// Inputs of P for the agreement term, f32 LE, `[k][d_in]` (`k` may be 0).
    #[serde(borrow)]
    pub anchors: &'a [u8],
    /// Flag a window whose statistic is above this.
    pub threshold: f32,
    /// The false-alarm rate the threshold was set for.
    pub alpha: f32,
    /// Null windows the threshold was computed from.
    pub calibration_windows: u32,
    /// The fraction of them above the threshold.
    pub fpr_calibration: f32,
    /// Further null windows checked after calibration.
    pub heldout_windows: u32,
    /// The fraction of them above the threshold.
    pub fpr_heldout: f32,
}

impl ShiftSection<'_> {
    /// Anchor inputs (`anchors.len() / (4·d_in)`).
    pub fn num_anchors(&self, d_in: usize) -> usize {
        self.anchors.len() / d_in.saturating_mul(4).max(1)
    }

    /// Anchor `i`'s value `j` (`d_in` values per anchor).
    pub fn anchor_value(&self, d_in: usize, i: usize, j: usize) -> f32 {
        le_f32(
            self.anchors,
            i.saturating_mul(d_in).saturating_add(j.min(d_in)),
        )
        .unwrap_or(0.0)
    }

    /// Checks the section against a classifier of `d_in` inputs.
    ///
    /// # Errors
    /// [`FormatError::DimensionMismatch`] (anchors not whole inputs, index 0) or
    /// [`FormatError::InvalidValue`] (index: 1 window, 2 members, 3 guidance, 4 anchors not
    /// finite, 5 threshold, 6 calibration record), part [`SHIFT_PART`].
    pub fn validate(&self, d_in: usize) -> Result<(), FormatError> {
        let invalid = |index| FormatError::InvalidValue {
            part: SHIFT_PART,
            index,
        };
        let row = (d_in as u64).saturating_mul(4).max(1);
        let len = self.anchors.len() as u64;
        if !len.is_multiple_of(row) {
            return Err(FormatError::DimensionMismatch {
                part: SHIFT_PART,
                index: 0,
                expected: u32::try_from(len / row * row).unwrap_or(u32::MAX),
                found: u32::try_from(len).unwrap_or(u32::MAX),
            });
        }
        if self.window == 0 {
            return Err(invalid(1));
        }
        if self.members == 0 || self.patience == 0 {
            return Err(invalid(2));
        }
        let nonneg = |v: f32| v.is_finite() && v >= 0.0;
        if !nonneg(self.guidance_scale) || !nonneg(self.guidance_lambda) {
            return Err(invalid(3));
        }
        if !self
            .anchors
            .chunks_exact(4)
            .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
        {
            return Err(invalid(4));
        }
        if !self.threshold.is_finite() {
            return Err(invalid(5));
        }
        let rate = |v: f32| (0.0..=1.0).contains(&v);
        let open_unit = self.alpha > 0.0 && self.alpha < 1.0;
        if !open_unit || !rate(self.fpr_calibration) || !rate(self.fpr_heldout) {
            return Err(invalid(6));
        }
        Ok(())
    }
}
