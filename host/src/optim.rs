//! The Adam update rule's settings, shared by every trainer in nmflow, with the one difference
//! that must stay named:
//!
//! | trainer | settings | why |
//! |---|---|---|
//! | the zoo ([`crate::zoo::train`]) | [`AdamSettings::PYTORCH`] (ε = 1e-8) | its runs are compared with PyTorch's `torch.optim.Adam` reference (`bench/`) |
//! | the meta-model's burn engine | [`AdamSettings::BURN`] (ε = 1e-5) through [`AdamSettings::burn_config`] | burn's `AdamConfig` defaults |
//! | the meta-model's fused engine ([`crate::meta::train::fused_mlp`]) | [`AdamSettings::BURN`] | the same update as the burn engine, so the two engines differ by rounding only |
//!
//! All three compute `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `θ ← θ − lr · m/(1−β₁ᵗ) / (√(v/(1−β₂ᵗ)) + ε)` (burn folds the bias corrections into the step
//! and ε: the same formula, other rounding). The SGD rule of the zoo needs no settings beyond
//! its learning rate and momentum.

use burn::optim::AdamConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Adam's constants and an optional L2 penalty added to the gradient (`g + λθ`, burn's
/// `WeightDecay`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamSettings {
    /// β₁.
    pub beta_1: f64,
    /// β₂.
    pub beta_2: f64,
    /// ε.
    pub epsilon: f64,
    /// L2 penalty added to the gradient; 0 for none.
    pub weight_decay: f64,
}

impl AdamSettings {
    /// PyTorch's defaults (`torch.optim.Adam`).
    pub const PYTORCH: Self = Self {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
    };

    /// burn's defaults (`burn::optim::AdamConfig`).
    pub const BURN: Self = Self {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-5,
        weight_decay: 0.0,
    };

    /// These settings with an L2 penalty `weight_decay`.
    #[must_use]
    pub fn with_weight_decay(self, weight_decay: f64) -> Self {
        Self {
            weight_decay,
            ..self
        }
    }

    /// `(β₁, β₂, ε, weight decay)` in single precision, for the trainers that compute in `f32`
    /// (each the nearest `f32`, the same value as an `f32` literal of the constant).
    pub fn as_f32(self) -> (f32, f32, f32, f32) {
        (
            self.beta_1 as f32,
            self.beta_2 as f32,
            self.epsilon as f32,
            self.weight_decay as f32,
        )
    }

    /// burn's optimizer configuration with these settings.
    pub fn burn_config(self) -> AdamConfig {
        let (beta_1, beta_2, epsilon, weight_decay) = self.as_f32();
        AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)))
    }
}

impl Default for AdamSettings {
    fn default() -> Self {
        Self::BURN
    }
}

/// Adam over parameter blocks that carry a leading run dimension (`[R, rows, cols]`, see
/// [`crate::classifier`]): every run has its own moments, and runs can leave the batch.
pub struct BatchedAdam<B: Backend> {
    settings: AdamSettings,
    lr: f64,
    m: Vec<Option<Tensor<B, 3>>>,
    v: Vec<Option<Tensor<B, 3>>>,
    t: i32,
}

impl<B: Backend> BatchedAdam<B> {
    /// Fresh moments for `blocks` parameter blocks.
    pub fn new(settings: AdamSettings, lr: f64, blocks: usize) -> Self {
        Self {
            settings,
            lr,
            m: vec![None; blocks],
            v: vec![None; blocks],
            t: 0,
        }
    }

    /// One update of every block from its gradient.
    pub fn step(&mut self, params: &mut [Tensor<B, 3>], grads: Vec<Tensor<B, 3>>) {
        self.t += 1;
        let (b1, b2, eps) = (
            self.settings.beta_1,
            self.settings.beta_2,
            self.settings.epsilon,
        );
        for (i, g) in grads.into_iter().enumerate() {
            let m = match self.m[i].take() {
                Some(m) => m * b1 + g.clone() * (1.0 - b1),
                None => g.clone() * (1.0 - b1),
            };
            let v = match self.v[i].take() {
                Some(v) => v * b2 + g.clone() * g * (1.0 - b2),
                None => g.clone() * g * (1.0 - b2),
            };
            let bc1 = 1.0 - b1.powi(self.t);
            let bc2 = 1.0 - b2.powi(self.t);
            let denom = v.clone().sqrt() / bc2.sqrt() + eps;
            let update = m.clone() / denom * (self.lr / bc1);
            self.m[i] = Some(m);
            self.v[i] = Some(v);
            params[i] = params[i].clone() - update;
        }
    }

    /// Keeps only the runs `keep` (indices along the run dimension) of the moments.
    pub fn retain(&mut self, keep: &Tensor<B, 1, Int>) {
        for slot in self.m.iter_mut().chain(self.v.iter_mut()) {
            if let Some(t) = slot.take() {
                *slot = Some(t.select(0, keep.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burns_defaults_are_the_burn_settings() {
        let json = |c: &AdamConfig| serde_json::to_value(c).unwrap();
        assert_eq!(
            json(&AdamSettings::BURN.burn_config()),
            json(&AdamConfig::new())
        );
        let decayed = json(&AdamSettings::BURN.with_weight_decay(0.01).burn_config());
        let penalty = decayed["weight_decay"]["penalty"].as_f64().unwrap();
        assert!((penalty - 0.01).abs() < 1e-9, "{decayed}");
        // The single-precision constants are exactly the f32 literals the trainers used.
        assert_eq!(
            AdamSettings::BURN.as_f32(),
            (0.9f32, 0.999f32, 1e-5f32, 0.0f32)
        );
        assert_eq!(AdamSettings::PYTORCH.epsilon, 1e-8f64);
    }
}
