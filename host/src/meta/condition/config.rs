//! The settings of a conditioned meta-model.

use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::meta::config::{MetaConfig, Method};
use crate::meta::field::{FieldKind, SetDims};
use crate::zoo::Manifest;

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
    /// Relabel every training pair by a random permutation of the classes (`--relabel`; see
    /// [`super::relabel`]). Absent in models trained before it existed: off.
    #[serde(default)]
    pub relabel: bool,
    /// How the support set enters the field (absent in models trained before `classes`
    /// existed: `support`).
    #[serde(default)]
    pub kind: ConditionKind,
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

    /// Trainable parameters of the encoder and the injection into a field of width `h` (and
    /// the class lift).
    pub fn num_params(&self, h: usize) -> usize {
        let lin = |a: usize, b: usize| a.saturating_mul(b).saturating_add(b);
        let feature = lin(self.d_in, self.features);
        match self.kind {
            ConditionKind::Support => feature
                .saturating_add(lin(self.classes.saturating_mul(self.features), self.embed))
                .saturating_add(self.embed)
                .saturating_add(lin(self.embed, h)),
            ConditionKind::Classes => {
                let token = self.embed.saturating_add(self.d_in);
                feature
                    .saturating_add(lin(self.features, self.embed))
                    .saturating_add(token)
                    .saturating_add(lin(token, super::lift::PAIR_WIDTH))
                    .saturating_add(super::lift::num_params())
            }
        }
    }
}

/// What a conditioned field is conditioned on, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ConditionKind {
    /// A support set: a few labeled examples of every class of the task, encoded into one
    /// task embedding the field sees beside the time.
    #[default]
    Support,
    /// A support set as class tokens: each label's prototype rides with that label's output
    /// weights in a field equivariant in the classes (set field only), so that every labelling
    /// of the classes is covered by construction.
    Classes,
}

/// Width of the support encoder's per-example features.
pub const CONDITION_FEATURES: usize = 64;
/// Width of the task embedding.
pub const CONDITION_EMBED: usize = 128;
/// Width of a class token's encoded features (`--condition classes`; the token also carries the
/// label's mean support input).
pub const CONDITION_CLASS_TOKEN: usize = 64;

/// Adds the condition of `req` (`--condition kind`, `--shots`, `--cfg-drop`, `--relabel`) to
/// the settings `cfg` for the zoo's classifier; the class-equivariant field's set field runs on
/// the lifted state.
pub(crate) fn attach(
    cfg: &mut MetaConfig,
    req: &crate::meta::config::TrainRequest,
    kind: ConditionKind,
    manifest: &Manifest,
) {
    let c = ConditionConfig {
        shots: req.shots,
        drop: req.cfg_drop,
        features: CONDITION_FEATURES,
        embed: match kind {
            ConditionKind::Support => CONDITION_EMBED,
            ConditionKind::Classes => CONDITION_CLASS_TOKEN,
        },
        classes: manifest.config.arch.num_classes(),
        d_in: manifest.config.arch.input_dim(),
        relabel: req.relabel,
        kind,
    };
    if cfg.field.kind == FieldKind::Set {
        cfg.field.set = cfg.field.set.map(|z| set_dims(Some(&c), z));
    }
    cfg.condition = Some(c);
}

/// The set field's token dimensions for the zoo's classifier `z` under the condition `c`: the
/// lifted ones for `classes`, `z` otherwise.
pub fn set_dims(c: Option<&ConditionConfig>, z: SetDims) -> SetDims {
    match c {
        Some(c) if c.kind == ConditionKind::Classes => super::lift::lifted_dims(z),
        _ => z,
    }
}

/// The checks of a conditioned field: a multi-task zoo (and a multi-task zoo only with a
/// condition), NM-CFM on the weights, the burn engine's fields, and a functional term that
/// rolls the sampler out (its classifiers are scored against their tasks' labels).
pub(crate) fn validate_for(cfg: &MetaConfig, manifest: &Manifest) -> Result<(), UsageError> {
    let bad = |what: &str| Err(UsageError(format!("--condition: {what}")));
    let Some(c) = &cfg.condition else {
        return Ok(());
    };
    c.validate()?;
    if manifest.tasks.is_none() {
        return bad(
            "the zoo holds one task; a conditioned field needs a multi-task zoo (`nmflow zoo --tasks perm:N`)",
        );
    }
    if cfg.latent.is_some() {
        return bad("a latent model is not conditioned yet (drop --latent)");
    }
    if cfg.method != Method::Cfm {
        return bad("conditioning goes with --method cfm");
    }
    if cfg.field.kind == FieldKind::Potential {
        return bad("conditioning goes with --field mlp or set");
    }
    if c.kind == ConditionKind::Classes && cfg.field.kind != FieldKind::Set {
        return bad(
            "`classes` goes with --field set (the classes join the set field's hidden units)",
        );
    }
    if cfg.functional_weight > 0.0 && cfg.functional_rollout == 0 {
        return bad(
            "the functional term of a conditioned field rolls the sampler out: use --functional-rollout ≥ 1 (or --functional-weight 0)",
        );
    }
    if c.d_in != manifest.config.arch.input_dim() || c.classes != manifest.config.arch.num_classes()
    {
        return bad("the support encoder's input or class count differs from the zoo's classifier");
    }
    Ok(())
}
