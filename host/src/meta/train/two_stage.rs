//! `nmflow train` with a reward stage ([`crate::meta::config::Recipe::Reward`]): flow matching
//! into `OUT/base`, then `nmflow finetune`'s direct method on the zoo's own training images from
//! that base into `OUT`, so that `OUT` is a fine-tuned model directory and both stages resume
//! where they stopped.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use super::{TrainEnv, TrainSummary, train_meta};
use crate::data::DatasetView;
use crate::error::{MetaError, UsageError};
use crate::meta::config::{LrSchedule, MetaConfig, RewardStage};
use crate::meta::files;
use crate::meta::finetune::{
    self, FinetuneConfig, FinetuneEnv, FinetuneSummary, Method, RewardKind,
};
use crate::zoo::Manifest;

/// The folder of `OUT` that holds the flow-matching stage's model.
pub const BASE_DIR: &str = "base";

/// What `nmflow train` reports: the flow-matching stage's summary, and the reward stage's when
/// there is one (`--json`: the first's fields, plus `finetune`).
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// The flow-matching stage (its `out` is `OUT/base` when a reward stage follows).
    #[serde(flatten)]
    pub train: TrainSummary,
    /// The reward stage, whose `out` is the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneSummary>,
}

impl TrainReport {
    /// The model directory `sample` and `eval` take.
    pub fn model(&self) -> &Path {
        self.finetune.as_ref().map_or(&self.train.out, |f| &f.out)
    }
}

/// The fine-tuning settings of `stage` for a base trained with `cfg` on a zoo of `dataset`
/// (`base` as recorded in finetune-config.json: the folder name, relative to the model).
pub fn stage_config(
    stage: RewardStage,
    cfg: &MetaConfig,
    dataset: DatasetView,
    base_field_sha256: Option<String>,
) -> FinetuneConfig {
    FinetuneConfig {
        method: Method::Direct,
        reward: RewardKind::Ce,
        dataset,
        lambda: 1.0,
        iterations: stage.iterations,
        trajectories: 16,
        steps: 20,
        t0: 0.1,
        lr: 1e-3,
        lr_schedule: LrSchedule::Cosine,
        max_grad_norm: None,
        control_cost: 0.0,
        entropy_weight: 0.0,
        diagonal: true,
        rollout_max: stage.rollout_max,
        reward_images: 512,
        eval_every: 500.min(stage.iterations),
        eval_samples: 32,
        seed: cfg.seed,
        base: BASE_DIR.into(),
        base_field_sha256,
    }
}

/// Trains `cfg` on `zoo_dir` into `out`, or with a reward `stage` into `out/base` and then
/// fine-tunes it into `out`. Finished stages are not redone; interrupted ones resume.
///
/// # Errors
/// Those of [`train_meta`] and [`finetune::finetune`]; a zoo whose dataset has no view; an
/// `out` that holds something else (unless `env.force`).
pub fn train_model<B: AutodiffBackend>(
    cfg: &MetaConfig,
    stage: Option<RewardStage>,
    zoo_dir: &Path,
    out: &Path,
    env: &TrainEnv,
    device: &B::Device,
) -> Result<TrainReport, MetaError> {
    let Some(stage) = stage else {
        let train = train_meta::<B>(cfg, zoo_dir, out, env, device)?;
        return Ok(TrainReport {
            train,
            finetune: None,
        });
    };
    let manifest = Manifest::read(zoo_dir)?;
    let dataset: DatasetView = manifest.dataset.name.parse().map_err(|_| {
        MetaError::file(
            zoo_dir.join(crate::zoo::manifest::MANIFEST),
            format!(
                "dataset.name {:?} is no dataset view nmflow knows, so the reward stage has no training images",
                manifest.dataset.name
            ),
        )
    })?;
    if !dataset.has_train() {
        return Err(UsageError(format!(
            "the zoo's dataset {dataset} has no training split for the reward stage; use --finetune-iterations 0"
        ))
        .into());
    }
    let fresh = claim(out, env.force)?;
    let base = out.join(BASE_DIR);
    let train = train_meta::<B>(cfg, zoo_dir, &base, env, device)?;
    let ft = stage_config(stage, cfg, dataset, train.field_sha256.clone());
    let ft_env = FinetuneEnv {
        data_dir: env.data_dir.clone(),
        quiet: env.quiet,
        // `claim` found nothing but the base in a fresh `out`; a run with settings of its own is
        // refused by `finetune` unless --force.
        force: env.force || fresh,
    };
    let summary = finetune::finetune::<B>(&ft, &base, out, &ft_env, device)?;
    Ok(TrainReport {
        train,
        finetune: Some(summary),
    })
}

/// Refuses an `out` that holds anything but this recipe's files (unless `force`); true when it
/// holds no fine-tuning run yet.
fn claim(out: &Path, force: bool) -> Result<bool, MetaError> {
    if out.exists() && !out.is_dir() {
        return Err(MetaError::file(
            out,
            "exists and is not a directory; choose another --out",
        ));
    }
    if out.join(finetune::SETTINGS).is_file() {
        return Ok(false);
    }
    let others: Vec<PathBuf> = match fs::read_dir(out) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n != crate::io::LOCK_FILE && n != BASE_DIR)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Some(first) = others.first()
        && !force
    {
        let what = if out.join(files::CONFIG).is_file() {
            "a model trained without the reward stage"
        } else {
            "no model"
        };
        return Err(MetaError::file(
            out,
            format!(
                "holds {what} ({} entries, e.g. {}); choose another --out, or --force to write into it",
                others.len(),
                first.file_name().unwrap_or_default().to_string_lossy()
            ),
        ));
    }
    Ok(true)
}
