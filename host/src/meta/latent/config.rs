//! The settings of `nmflow vae`, saved as `vae.json` in the VAE directory, and their checks.

use serde::{Deserialize, Serialize};

use super::network::{DecoderKind, VaeShape};
use crate::error::UsageError;
use crate::meta::config::LrSchedule;
use crate::meta::field::SetDims;
use crate::zoo::Manifest;

/// How the VAE treats the hidden-unit permutation symmetry of MLP classifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Symmetry {
    /// Every classifier is put in its canonical unit order before encoding (units sorted by their
    /// pre-activation on an all-ones input): the ∏ H_l! equivalent orderings of one network become
    /// one point, so the latent does not spend capacity on the order.
    Sort,
    /// The weights as the zoo stored them.
    None,
}

/// What the VAE's functional term scores a decoded classifier against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FunctionalTarget {
    /// The images' labels: every decoded classifier is pulled towards the same best classifier,
    /// which raises accuracy and narrows the decoder's range of functions.
    #[default]
    Labels,
    /// The predictions (softmax) of the run it was encoded from: the decoded classifier must
    /// behave like its own original, mistakes included, so the decoder keeps the zoo's
    /// functional diversity while spending its capacity on what the weights do rather than on
    /// the weights themselves.
    Teacher,
}

/// Every hyper-parameter of a VAE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// The networks.
    pub shape: VaeShape,
    /// Weight β of the KL term (per weight coordinate, see [`super::network`]).
    pub beta: f32,
    /// Weight of the functional term: the cross-entropy, on the zoo's training images, of the
    /// classifiers decoded from posterior samples of training runs' final weights, against
    /// [`Self::functional_target`]. 0 turns it off.
    pub functional_weight: f32,
    /// What the functional term scores against (older `vae.json` files: labels).
    #[serde(default)]
    pub functional_target: FunctionalTarget,
    /// Training images per step for the functional term.
    pub functional_batch: usize,
    /// Final weights per step encoded and decoded for the functional term.
    pub functional_samples: usize,
    /// The permutation symmetry.
    pub symmetry: Symmetry,
    /// Optimizer steps.
    pub steps: usize,
    /// Checkpoints (of any run and step) per minibatch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub lr_schedule: LrSchedule,
    /// Steps between held-out evaluations (the VAE with the best held-out loss is kept).
    pub eval_every: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// SHA-256 of the zoo's manifest.
    pub zoo_manifest_sha256: String,
    /// The zoo directory.
    pub zoo: String,
}

/// The largest VAE `nmflow vae` builds (parameters), as for fields.
pub const MAX_VAE_PARAMS: u128 = crate::meta::config::MAX_FIELD_PARAMS;

impl VaeConfig {
    /// Checks every setting against its range and against the zoo.
    ///
    /// # Errors
    /// A [`UsageError`] naming the option as `nmflow vae` spells it.
    pub fn validate(&self, manifest: &Manifest) -> Result<(), UsageError> {
        let bad = |what: String| Err(UsageError(what));
        for (name, v) in [
            ("--latent", self.shape.latent),
            ("--hidden", self.shape.hidden),
            ("--depth", self.shape.depth),
            ("--steps", self.steps),
            ("--batch-size", self.batch_size),
            ("--eval-every", self.eval_every),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1 (got 0)"));
            }
        }
        for (name, v) in [
            ("--beta", self.beta),
            ("--functional-weight", self.functional_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be a finite number ≥ 0 (got {v})"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "--lr must be a finite number > 0 (got {})",
                self.lr
            ));
        }
        if self.functional_target == FunctionalTarget::Teacher && self.functional_weight == 0.0 {
            return bad(
                "--functional-target teacher scores the functional term, which --functional-weight 0 turns off; give a weight > 0"
                    .into(),
            );
        }
        if self.functional_weight > 0.0
            && (self.functional_batch == 0 || self.functional_samples == 0)
        {
            return bad(
                "--functional-batch and --functional-samples must be at least 1 with a functional term"
                    .into(),
            );
        }
        if self.shape.dim != manifest.num_params {
            return bad(format!(
                "the VAE's input has {} values, but the zoo's classifiers have {} parameters",
                self.shape.dim, manifest.num_params
            ));
        }
        if self.shape.decoder == DecoderKind::Units {
            match SetDims::of(&manifest.layout) {
                None => {
                    return bad(format!(
                        "--decoder units needs a one-hidden-layer MLP classifier, but the zoo's is {}; use --decoder mlp",
                        manifest.config.arch
                    ));
                }
                Some(d) if self.shape.units != Some(d) => {
                    return bad(
                        "the units decoder's token dimensions differ from the zoo's layout".into(),
                    );
                }
                Some(_) => {}
            }
        }
        if self.shape.latent >= self.shape.dim {
            return bad(format!(
                "--latent {} must be smaller than the classifier's {} parameters",
                self.shape.latent, self.shape.dim
            ));
        }
        if self.symmetry == Symmetry::Sort
            && crate::meta::symmetry::HiddenLayers::of(&manifest.layout).is_none()
        {
            return bad(format!(
                "--symmetry sort needs an MLP classifier with hidden layers, but the zoo's is {}; use --symmetry none",
                manifest.config.arch
            ));
        }
        if self
            .shape
            .num_params_checked()
            .is_none_or(|n| n > MAX_VAE_PARAMS)
        {
            return bad(format!(
                "the VAE would have more than {MAX_VAE_PARAMS} parameters; use a smaller --hidden or --depth"
            ));
        }
        if manifest.split.train.is_empty() {
            return bad("the zoo has no training runs (all are held out)".into());
        }
        Ok(())
    }
}
