//! What a user asks of `nmflow train` and the recipes that fill in what it leaves out: a
//! [`TrainRequest`] resolves, for a given zoo, to the [`MetaConfig`] a model is trained and saved
//! with, and to the reward stage of [`Recipe::Reward`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::{
    ConditionKind, Coupling, LatentSpec, LrSchedule, MetaConfig, Method, default_functional_batch,
    default_functional_samples, manifest_hash,
};
use super::field::{FieldConfig, FieldKind, JkoSteps, SetDims};
use super::source::Source;
use crate::error::{MetaError, UsageError};
use crate::flow::path::SplineKind;
use crate::flow::solver::Solver;
use crate::zoo::Manifest;

/// The set of defaults `nmflow train` starts from (`--recipe`); every setting given explicitly
/// overrides its recipe's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Two stages: the MLP field trained by flow matching alone from a Gaussian source (width
    /// 256, depth 2, 3,000 steps, cosine schedule, Euler × 8), then fine-tuned on the zoo's
    /// training loss through its sampler over a range of step counts (the reward stage). The
    /// default for NM-CFM on the weights of a single-task zoo.
    Reward,
    /// The set field with the functional term on the 4-step Euler sampler (width 128, 8,000
    /// steps, cosine schedule, λ = 2): the default for `--field set`, NM-MMFM and conditioned
    /// fields.
    Functional,
    /// No recipe: width 512, 2,000 steps, constant rate, no functional term, RK4 × 2.
    Plain,
}

/// The reward stage of [`Recipe::Reward`]: after flow matching, the field is fine-tuned by the
/// direct method with the per-coordinate term (`nmflow finetune --method direct --diagonal
/// --lambda 1 --lr-schedule cosine --eval-every 500`) on the zoo's own training images, each
/// iteration rolled out at a step count drawn from the stored sampler's up to `rollout_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardStage {
    /// Fine-tuning iterations.
    pub iterations: usize,
    /// The largest rollout step count.
    pub rollout_max: usize,
}

/// Fine-tuning iterations of the reward recipe's second stage.
pub const REWARD_ITERATIONS: usize = 5000;
/// The reward recipe's rollout range, as a multiple of the stored step count (so that 4× the
/// stored count lies inside the range: BENCHMARKS.md measured 8..=32 failing the 0.5 pp limit
/// at its edge on one MNIST seed, 8..=48 holding on six models).
pub const REWARD_ROLLOUT_FACTOR: usize = 6;

/// What a user asks of `nmflow train`. Settings left `None` take the defaults of the recipe the
/// request ends up with ([`TrainRequest::resolve`], [`Recipe`]): with no `--field`, NM-CFM on a
/// single-task zoo's weights gets [`Recipe::Reward`]; the set field with NM-CFM or NM-MMFM
/// [`Recipe::Functional`]; anything else [`Recipe::Plain`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainRequest {
    /// Recipe [default: see [`TrainRequest::recipe`]].
    pub recipe: Option<Recipe>,
    /// Method.
    pub method: Method,
    /// Coupling (NM-CFM) [default: independent for the reward recipe, else natural].
    pub coupling: Option<Coupling>,
    /// Spline (NM-MMFM).
    pub spline: SplineKind,
    /// Source law [default: N(0, `source_std`²) for the reward recipe, else Kaiming-uniform].
    pub source: Option<Source>,
    /// Standard deviation of the reward recipe's default Gaussian source (raw weight units).
    pub source_std: f32,
    /// Path noise in standardized units.
    pub sigma: f32,
    /// Hidden-unit permutation augmentation.
    pub permute: bool,
    /// Field kind [default: set where the classifier allows it, else mlp; potential for NM-JKO].
    pub field: Option<FieldKind>,
    /// NM-JKO step size τ.
    pub tau: f32,
    /// Width of the field network.
    pub hidden: Option<usize>,
    /// Hidden layers (set field: residual blocks) [default: 2 for the reward recipe, else 3].
    pub depth: Option<usize>,
    /// Width of the time embedding.
    pub time_dim: usize,
    /// Optimizer steps.
    pub steps: Option<usize>,
    /// Samples per minibatch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub lr_schedule: Option<LrSchedule>,
    /// Weight decay.
    pub weight_decay: f64,
    /// Weight of the functional term.
    pub functional_weight: Option<f32>,
    /// Images per step for the functional term.
    pub functional_batch: usize,
    /// Euler steps of the functional term's rollout.
    pub functional_rollout: Option<usize>,
    /// The largest rollout step count (0: always `functional_rollout`).
    pub functional_rollout_max: usize,
    /// The rollout step counts to draw from (empty: the range).
    pub functional_rollout_counts: Vec<usize>,
    /// Give the set field the sampler's step size as an input (`--step-input`).
    pub step_input: bool,
    /// Source samples rolled out per step.
    pub functional_samples: usize,
    /// Decay of the moving average of the field's weights (0: none).
    pub ema: f64,
    /// Steps between held-out evaluations.
    pub eval_every: Option<usize>,
    /// Seed.
    pub seed: u64,
    /// Default sampling solver.
    pub solver: Option<Solver>,
    /// Default sampling steps.
    pub solver_steps: Option<usize>,
    /// The VAE directory of a latent model (`nmflow vae`): the flow runs in its latent space.
    pub latent: Option<std::path::PathBuf>,
    /// Condition the field on the task (`--condition support`; a multi-task zoo).
    pub condition: Option<ConditionKind>,
    /// Labeled examples per class in a training support set.
    pub shots: usize,
    /// Rate at which the condition is dropped in training (classifier-free guidance).
    pub cfg_drop: f32,
    /// Relabel every training pair of a conditioned field by a random permutation of the
    /// classes.
    pub relabel: bool,
    /// Iterations of the reward stage [default: [`REWARD_ITERATIONS`] for the reward recipe,
    /// else 0: none].
    pub finetune_iterations: Option<usize>,
    /// The reward stage's largest rollout step count [default: [`REWARD_ROLLOUT_FACTOR`] × the
    /// stored step count].
    pub finetune_rollout_max: Option<usize>,
}

impl Default for TrainRequest {
    fn default() -> Self {
        Self {
            recipe: None,
            method: Method::Cfm,
            coupling: None,
            spline: SplineKind::Pchip,
            source: None,
            source_std: 0.1,
            sigma: 0.0,
            permute: true,
            field: None,
            tau: 1.0,
            hidden: None,
            depth: None,
            time_dim: 32,
            steps: None,
            batch_size: 128,
            lr: 1e-3,
            lr_schedule: None,
            weight_decay: 0.0,
            functional_weight: None,
            functional_batch: default_functional_batch(),
            functional_rollout: None,
            functional_rollout_max: 0,
            functional_rollout_counts: Vec::new(),
            step_input: false,
            functional_samples: default_functional_samples(),
            ema: 0.0,
            eval_every: None,
            seed: 0,
            solver: None,
            solver_steps: None,
            latent: None,
            condition: None,
            shots: 5,
            cfg_drop: 0.1,
            relabel: false,
            finetune_iterations: None,
            finetune_rollout_max: None,
        }
    }
}

impl TrainRequest {
    /// The complete, validated settings for the zoo in `zoo_dir` (its manifest gives the state's
    /// dimension, the set field's tokens and NM-JKO's number of steps).
    ///
    /// # Errors
    /// An unreadable zoo, or settings out of range ([`MetaConfig::validate`]).
    pub fn resolve(&self, zoo_dir: &Path) -> Result<MetaConfig, MetaError> {
        let manifest = Manifest::read(zoo_dir)?;
        if self.condition.is_none() {
            if self.relabel {
                return Err(UsageError(
                    "--relabel goes with --condition (it relabels a conditioned field's training pairs)"
                        .into(),
                )
                .into());
            }
            manifest.require_single_task(zoo_dir)?;
        }
        self.check_recipe(&manifest)?;
        let sha256 = manifest_hash(zoo_dir)?;
        let mut cfg = match &self.latent {
            Some(dir) => self.resolve_latent(&manifest, zoo_dir, sha256, dir)?,
            None => self.resolve_with(&manifest, zoo_dir, sha256),
        };
        if let Some(kind) = self.condition {
            crate::meta::condition::config::attach(&mut cfg, self, kind, &manifest);
        }
        cfg.validate(&manifest)?;
        Ok(cfg)
    }

    /// A latent model's settings: the field's state is the VAE's latent; the defaults are those
    /// of the MLP field (no permutation augmentation, no functional term).
    ///
    /// # Errors
    /// A VAE that is unfinished, unreadable or trained on another zoo.
    fn resolve_latent(
        &self,
        manifest: &Manifest,
        zoo_dir: &Path,
        sha256: String,
        dir: &Path,
    ) -> Result<MetaConfig, MetaError> {
        use crate::meta::latent::codec;
        if !dir.join(codec::SETTINGS).is_file() {
            return Err(MetaError::file(
                dir,
                "--latent: not a VAE directory (written by `nmflow vae`): it has no vae.json",
            ));
        }
        let vae: crate::meta::latent::config::VaeConfig =
            super::files::read_json(&dir.join(codec::SETTINGS))?;
        if vae.zoo_manifest_sha256 != sha256 {
            return Err(UsageError(format!(
                "--latent {}: the VAE was trained on another zoo ({}, manifest sha256 {}), not on {} ({sha256})",
                dir.display(),
                vae.zoo,
                vae.zoo_manifest_sha256,
                zoo_dir.display()
            ))
            .into());
        }
        if !dir.join(codec::SUMMARY).is_file() {
            return Err(MetaError::file(
                dir,
                "VAE training did not finish (no vae-summary.json); run the same `nmflow vae` again to resume it",
            ));
        }
        let request = Self {
            field: Some(self.field.unwrap_or(FieldKind::Mlp)),
            recipe: Some(self.recipe.unwrap_or(Recipe::Plain)),
            permute: false,
            ..self.clone()
        };
        let mut cfg = request.resolve_with(manifest, zoo_dir, sha256);
        let dim = vae.shape.latent;
        cfg.field.set = None;
        cfg.field.dim = dim;
        cfg.latent = Some(LatentSpec {
            vae: dir.display().to_string(),
            vae_sha256: codec::weights_sha256(dir)?,
            dim,
        });
        Ok(cfg)
    }

    /// The recipe whose defaults the request takes: the one asked for, else with no `--field`
    /// the reward recipe for NM-CFM on a single-task zoo's weights (no `--latent`, no
    /// `--condition`), else the functional recipe for the set field (given, or the default of a
    /// one-hidden-layer MLP classifier) with NM-CFM or NM-MMFM, else none.
    pub fn recipe(&self, manifest: &Manifest) -> Recipe {
        if let Some(r) = self.recipe {
            return r;
        }
        let jko = self.method == Method::Jko;
        let set = match self.field {
            Some(k) => k == FieldKind::Set,
            None => SetDims::of(&manifest.layout).is_some(),
        };
        if self.field.is_none()
            && self.method == Method::Cfm
            && self.latent.is_none()
            && self.condition.is_none()
        {
            Recipe::Reward
        } else if set && !jko {
            Recipe::Functional
        } else {
            Recipe::Plain
        }
    }

    /// Refuses a recipe asked for with settings it cannot take.
    ///
    /// # Errors
    /// [`UsageError`] naming the flags.
    fn check_recipe(&self, manifest: &Manifest) -> Result<(), UsageError> {
        let recipe = self.recipe(manifest);
        match recipe {
            Recipe::Reward => {
                let conflict = if self.method != Method::Cfm {
                    Some(format!("--method {}", self.method.name()))
                } else if self.latent.is_some() {
                    Some("--latent".to_string())
                } else if self.condition.is_some() {
                    Some("--condition".to_string())
                } else if self.field.is_some_and(|k| k != FieldKind::Mlp) {
                    Some("--field set".to_string())
                } else {
                    None
                };
                if let Some(flag) = conflict {
                    return Err(UsageError(format!(
                        "--recipe reward trains NM-CFM with the MLP field on the weights (its fine-tuning stage's per-coordinate term is the MLP field's), so it does not take {flag}; choose --recipe functional or --recipe plain"
                    )));
                }
            }
            Recipe::Functional => {
                if self.field.is_some_and(|k| k != FieldKind::Set)
                    || (self.field.is_none() && SetDims::of(&manifest.layout).is_none())
                {
                    return Err(UsageError(
                        "--recipe functional is the set field's recipe (one-hidden-layer MLP classifiers); choose --recipe reward or --recipe plain for this field".into(),
                    ));
                }
                if self.method == Method::Jko {
                    return Err(UsageError(
                        "--recipe functional trains NM-CFM or NM-MMFM; NM-JKO takes --recipe plain"
                            .into(),
                    ));
                }
            }
            Recipe::Plain => {}
        }
        Ok(())
    }

    /// The reward stage this request asks for after flow matching (`None`: none), with its
    /// defaults resolved against the stage-one settings `cfg`.
    ///
    /// # Errors
    /// [`UsageError`]: a stage on a field, method or model it does not apply to, or a range
    /// that starts above its maximum.
    pub fn reward_stage(
        &self,
        manifest: &Manifest,
        cfg: &MetaConfig,
    ) -> Result<Option<RewardStage>, UsageError> {
        let reward = self.recipe(manifest) == Recipe::Reward;
        let iterations =
            self.finetune_iterations
                .unwrap_or(if reward { REWARD_ITERATIONS } else { 0 });
        if iterations == 0 {
            if let Some(k) = self.finetune_rollout_max {
                return Err(UsageError(format!(
                    "--finetune-rollout-max {k} goes with a reward stage (--recipe reward, or --finetune-iterations N > 0)"
                )));
            }
            return Ok(None);
        }
        if cfg.field.kind != FieldKind::Mlp
            || cfg.method == Method::Jko
            || cfg.latent.is_some()
            || cfg.condition.is_some()
        {
            return Err(UsageError(format!(
                "--finetune-iterations {iterations}: the reward stage fine-tunes an unconditioned MLP field on the weights (NM-CFM or NM-MMFM), not a {} field{}",
                format!("{:?}", cfg.field.kind).to_lowercase(),
                if cfg.latent.is_some() {
                    " of a latent model"
                } else if cfg.condition.is_some() {
                    " with a condition"
                } else {
                    ""
                }
            )));
        }
        let rollout_max = self
            .finetune_rollout_max
            .unwrap_or(REWARD_ROLLOUT_FACTOR * cfg.solver_steps);
        if rollout_max < cfg.solver_steps {
            return Err(UsageError(format!(
                "--finetune-rollout-max {rollout_max}: the range starts at the stored sampler's {} steps, so its maximum must be at least that",
                cfg.solver_steps
            )));
        }
        Ok(Some(RewardStage {
            iterations,
            rollout_max,
        }))
    }

    /// [`Self::resolve`] against a manifest already read (not validated).
    pub fn resolve_with(&self, manifest: &Manifest, zoo_dir: &Path, sha256: String) -> MetaConfig {
        let set_dims = SetDims::of(&manifest.layout);
        let jko = self.method == Method::Jko;
        let chosen = self.recipe(manifest);
        let reward = chosen == Recipe::Reward;
        let kind = match self.field {
            _ if jko => FieldKind::Potential,
            Some(k) => k,
            None if chosen == Recipe::Functional => FieldKind::Set,
            None => FieldKind::Mlp,
        };
        // The functional recipe: the set field with a flow-matching method.
        let recipe = chosen == Recipe::Functional && kind == FieldKind::Set && !jko;
        let functional_weight = self
            .functional_weight
            .unwrap_or(if recipe { 2.0 } else { 0.0 });
        let rollout = self
            .functional_rollout
            .unwrap_or(if functional_weight > 0.0 && recipe {
                4
            } else {
                0
            });
        let intervals = manifest.schedule.len().saturating_sub(1);
        let (solver, solver_steps) = if jko {
            (Solver::Euler, intervals)
        } else if rollout > 0 && functional_weight > 0.0 {
            (
                self.solver.unwrap_or(Solver::Euler),
                self.solver_steps.unwrap_or(rollout),
            )
        } else if reward {
            // The sampler the reward stage fine-tunes (BENCHMARKS.md's two-stage recipe).
            (
                self.solver.unwrap_or(Solver::Euler),
                self.solver_steps.unwrap_or(8),
            )
        } else {
            (
                self.solver.unwrap_or(Solver::Rk4),
                self.solver_steps.unwrap_or(2),
            )
        };
        let source = self.source.unwrap_or(if reward {
            Source::Gaussian {
                std: self.source_std,
            }
        } else {
            Source::Kaiming
        });
        let coupling = self.coupling.unwrap_or(if reward {
            Coupling::Independent
        } else {
            Coupling::Natural
        });
        MetaConfig {
            method: self.method,
            coupling,
            spline: self.spline,
            source,
            sigma: self.sigma,
            permute: self.permute,
            field: FieldConfig {
                kind,
                // Recorded for every field kind (config.json has always carried it).
                set: set_dims,
                jko: jko.then_some(JkoSteps {
                    steps: intervals,
                    tau: self.tau,
                }),
                dim: manifest.num_params,
                hidden: self.hidden.unwrap_or(if recipe {
                    128
                } else if reward {
                    256
                } else {
                    512
                }),
                depth: self.depth.unwrap_or(if reward { 2 } else { 3 }),
                time_dim: self.time_dim,
                step_input: self.step_input,
                // Added by `finetune --diagonal`, never trained from a zoo.
                diagonal: false,
            },
            steps: self.steps.unwrap_or(if recipe {
                8000
            } else if reward {
                3000
            } else {
                2000
            }),
            batch_size: self.batch_size,
            lr: self.lr,
            lr_schedule: self.lr_schedule.unwrap_or(if recipe || reward {
                LrSchedule::Cosine
            } else {
                LrSchedule::Constant
            }),
            weight_decay: self.weight_decay,
            functional_weight,
            functional_batch: self.functional_batch,
            functional_rollout: rollout,
            functional_rollout_max: self.functional_rollout_max,
            functional_rollout_counts: self.functional_rollout_counts.clone(),
            functional_samples: self.functional_samples,
            ema: self.ema,
            eval_every: self.eval_every.unwrap_or(if recipe { 200 } else { 100 }),
            seed: self.seed,
            solver,
            solver_steps,
            sde_t0: None,
            zoo_manifest_sha256: sha256,
            zoo: zoo_dir.display().to_string(),
            latent: None,
            condition: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    #[test]
    fn defaults_are_the_measured_recipes_and_the_old_ones_otherwise() {
        use super::{
            Coupling, FieldKind, Method, Recipe, RewardStage, Solver, Source, TrainRequest,
        };
        let zoo =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
        let manifest = crate::zoo::Manifest::read(&zoo).unwrap();
        let resolve = |r: TrainRequest| {
            let cfg = r.resolve_with(&manifest, &zoo, "0".repeat(64));
            cfg.validate(&manifest).unwrap();
            let stage = r.reward_stage(&manifest, &cfg).unwrap();
            (cfg, stage)
        };
        // No flags: the reward recipe, BENCHMARKS.md's two-stage commands.
        assert_eq!(TrainRequest::default().recipe(&manifest), Recipe::Reward);
        let (reward, stage) = resolve(TrainRequest::default());
        assert_eq!(reward.field.kind, FieldKind::Mlp);
        assert_eq!(
            (reward.source, reward.coupling),
            (Source::Gaussian { std: 0.1 }, Coupling::Independent)
        );
        assert_eq!(
            (
                reward.field.hidden,
                reward.field.depth,
                reward.steps,
                reward.eval_every,
                reward.lr_schedule
            ),
            (256, 2, 3000, 100, LrSchedule::Cosine)
        );
        assert_eq!(
            (reward.functional_weight, reward.solver, reward.solver_steps),
            (0.0, Solver::Euler, 8)
        );
        assert_eq!(
            stage,
            Some(RewardStage {
                iterations: 5000,
                rollout_max: 48
            })
        );
        // Flags override the recipe's values, the stage's range follows the stored count.
        let (short, stage) = resolve(TrainRequest {
            solver_steps: Some(4),
            finetune_iterations: Some(7),
            ..TrainRequest::default()
        });
        assert_eq!(short.solver_steps, 4);
        assert_eq!(
            stage,
            Some(RewardStage {
                iterations: 7,
                rollout_max: 24
            })
        );
        assert_eq!(
            resolve(TrainRequest {
                finetune_iterations: Some(0),
                ..TrainRequest::default()
            })
            .1,
            None
        );
        // The set field: the functional recipe.
        let (set, stage) = resolve(TrainRequest {
            field: Some(FieldKind::Set),
            ..TrainRequest::default()
        });
        assert_eq!(stage, None);
        assert_eq!(set.source, Source::Kaiming);
        assert_eq!(
            (set.field.hidden, set.steps, set.eval_every, set.lr_schedule),
            (128, 8000, 200, LrSchedule::Cosine)
        );
        assert_eq!(
            (
                set.functional_weight,
                set.functional_rollout,
                set.functional_samples
            ),
            (2.0, 4, 32)
        );
        assert_eq!((set.solver, set.solver_steps), (Solver::Euler, 4));
        let functional = TrainRequest {
            recipe: Some(Recipe::Functional),
            ..TrainRequest::default()
        };
        assert_eq!(resolve(functional).0, set);
        // NM-MMFM without --field keeps the set field's recipe.
        let mmfm = TrainRequest {
            method: Method::Mmfm,
            ..TrainRequest::default()
        };
        assert_eq!(mmfm.recipe(&manifest), Recipe::Functional);
        // An explicit MLP field, or --recipe plain: the old defaults.
        for request in [
            TrainRequest {
                field: Some(FieldKind::Mlp),
                ..TrainRequest::default()
            },
            TrainRequest {
                recipe: Some(Recipe::Plain),
                ..TrainRequest::default()
            },
        ] {
            let (mlp, stage) = resolve(request);
            assert_eq!(stage, None);
            assert_eq!(mlp.field.kind, FieldKind::Mlp);
            assert_eq!(
                (mlp.source, mlp.coupling, mlp.field.depth),
                (Source::Kaiming, Coupling::Natural, 3)
            );
            assert_eq!(
                (mlp.field.hidden, mlp.steps, mlp.eval_every, mlp.lr_schedule),
                (512, 2000, 100, LrSchedule::Constant)
            );
            assert_eq!((mlp.functional_weight, mlp.functional_rollout), (0.0, 0));
            assert_eq!((mlp.solver, mlp.solver_steps), (Solver::Rk4, 2));
        }
        let (jko, _) = resolve(TrainRequest {
            method: Method::Jko,
            recipe: Some(Recipe::Plain),
            ..TrainRequest::default()
        });
        assert_eq!(jko.field.kind, FieldKind::Potential);
        assert_eq!(jko.functional_weight, 0.0);
        assert_eq!(
            (jko.solver, jko.solver_steps),
            (Solver::Euler, manifest.schedule.len() - 1)
        );
        // A rollout the user asks for is the sampler stored, unless a solver is named.
        let (k8, _) = resolve(TrainRequest {
            field: Some(FieldKind::Set),
            functional_rollout: Some(8),
            ..TrainRequest::default()
        });
        assert_eq!((k8.solver, k8.solver_steps), (Solver::Euler, 8));
    }

    #[test]
    fn a_recipe_refuses_what_it_cannot_take() {
        use super::{FieldKind, Method, Recipe, TrainRequest};
        let zoo =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0/zoo");
        let manifest = crate::zoo::Manifest::read(&zoo).unwrap();
        let cases = [
            (
                TrainRequest {
                    recipe: Some(Recipe::Reward),
                    field: Some(FieldKind::Set),
                    ..TrainRequest::default()
                },
                "does not take --field set",
            ),
            (
                TrainRequest {
                    recipe: Some(Recipe::Reward),
                    method: Method::Mmfm,
                    ..TrainRequest::default()
                },
                "does not take --method mmfm",
            ),
            (
                TrainRequest {
                    recipe: Some(Recipe::Functional),
                    field: Some(FieldKind::Mlp),
                    ..TrainRequest::default()
                },
                "is the set field's recipe",
            ),
            (
                TrainRequest {
                    recipe: Some(Recipe::Functional),
                    method: Method::Jko,
                    ..TrainRequest::default()
                },
                "NM-JKO takes --recipe plain",
            ),
        ];
        for (request, needle) in cases {
            let err = request.check_recipe(&manifest).unwrap_err().0;
            assert!(err.contains(needle), "{err}");
        }
        // A stage on a field it does not apply to, or a range below the stored count.
        let set = TrainRequest {
            field: Some(FieldKind::Set),
            finetune_iterations: Some(10),
            ..TrainRequest::default()
        };
        let cfg = set.resolve_with(&manifest, &zoo, "0".repeat(64));
        let err = set.reward_stage(&manifest, &cfg).unwrap_err().0;
        assert!(err.contains("not a set field"), "{err}");
        let low = TrainRequest {
            finetune_rollout_max: Some(4),
            ..TrainRequest::default()
        };
        let cfg = low.resolve_with(&manifest, &zoo, "0".repeat(64));
        let err = low.reward_stage(&manifest, &cfg).unwrap_err().0;
        assert!(err.contains("at least that"), "{err}");
        let none = TrainRequest {
            finetune_iterations: Some(0),
            finetune_rollout_max: Some(16),
            ..TrainRequest::default()
        };
        let cfg = none.resolve_with(&manifest, &zoo, "0".repeat(64));
        let err = none.reward_stage(&manifest, &cfg).unwrap_err().0;
        assert!(err.contains("goes with a reward stage"), "{err}");
    }
}
