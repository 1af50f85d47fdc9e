//! The settings of a conditioned meta-model.

use serde::{Deserialize, Serialize};

use crate::error::UsageError;

/// How a meta-model is conditioned on its task (`nmflow train --condition support`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionConfig {
    /// Labeled examples per class in a training support set (`--shots`).
    pub shots: usize,
    /// Rate at which a training pair's condition is replaced by the null embedding
    /// (`--cfg-drop`; classifier-free guidance needs it above 0).
    pub drop: f32,
    /// Width of the per-example features the encoder pools per label.
    pub features: usize,
    /// Width of the task embedding.
    pub embed: usize,
    /// Classes of the tasks (the encoder's label slots).
    pub classes: usize,
    /// Inputs per example.
    pub d_in: usize,
}

impl ConditionConfig {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`UsageError`] naming the flag.
    pub fn validate(&self) -> Result<(), UsageError> {
        if self.shots == 0 {
            return Err(UsageError(
                "--shots must be at least 1 (labeled examples per class; got 0)".into(),
            ));
        }
        if !(self.drop.is_finite() && (0.0..1.0).contains(&self.drop)) {
            return Err(UsageError(format!(
                "--cfg-drop must be in [0, 1) (got {})",
                self.drop
            )));
        }
        if self.features == 0 || self.embed == 0 {
            return Err(UsageError(
                "the support encoder's widths must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Trainable parameters of the encoder and the injection into a field of width `h`.
    pub fn num_params(&self, h: usize) -> usize {
        let lin = |a: usize, b: usize| a.saturating_mul(b).saturating_add(b);
        lin(self.d_in, self.features)
            .saturating_add(lin(self.classes.saturating_mul(self.features), self.embed))
            .saturating_add(self.embed)
            .saturating_add(lin(self.embed, h))
    }
}
