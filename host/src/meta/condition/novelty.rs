//! Novelty of a conditioned model's classifiers against the zoo's runs of the nearest other
//! task it was trained on: is a classifier for a new task made for that task, or retrieved from a
//! task the model saw?
//!
//! The nearest task of a task `t` is the seen task `s ≠ t` whose label map gives the most classes
//! the same label (the lowest index among ties). Reported per shot count, for the conditioned
//! samples (w = 1): the labels shared with the nearest task, the test accuracy (against `t`'s
//! labels) of the nearest task's trained runs (what retrieving them would score), and the highest
//! test-prediction agreement of every generated classifier with any run of the nearest task,
//! beside the same agreement for `t`'s own trained runs (independent solutions of `t`).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::arch::{Arch, Layout};
use crate::data::dataset::Split;
use crate::error::{MetaError, ZooError};
use crate::meta::eval::predictions;
use crate::meta::report::AccStats;
use crate::zoo::Manifest;

/// Test images the agreement is measured on (the first ones of the test split).
pub const AGREEMENT_IMAGES: usize = 1000;

/// Novelty at one shot count over every measured task.
#[derive(Clone, Debug, Serialize)]
pub struct NoveltyRow {
    /// Examples per class in the support set.
    pub shots: usize,
    /// Labels (of the classes) a measured task shares with its nearest seen task, mean over
    /// tasks.
    pub shared_labels: f64,
    /// Test accuracy, against the measured task's labels, of the nearest seen task's trained
    /// runs.
    pub nearest_runs: AccStats,
    /// Mean over generated classifiers of the highest prediction agreement with a run of the
    /// nearest seen task.
    pub agreement_generated: f64,
    /// The same for the measured task's own trained runs.
    pub agreement_trained: f64,
}

/// What a measured task is compared with: labels shared with its nearest seen task, that task's
/// runs' predictions, their accuracy on the measured task's labels, and the measured task's own
/// runs' best agreement with them.
type TaskReference = (f64, Vec<i64>, Vec<f64>, Vec<f64>);

/// The seen task other than `t` whose label map agrees with `t`'s on the most classes, and that
/// count (`None` without another seen task).
pub fn nearest_seen(maps: &[Vec<u8>], seen: &[usize], t: usize) -> Option<(usize, usize)> {
    let shared = |s: usize| maps[s].iter().zip(&maps[t]).filter(|(a, b)| a == b).count();
    seen.iter()
        .filter(|&&s| s != t)
        .map(|&s| (s, shared(s)))
        .fold(None, |best, (s, n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((s, n)),
        })
}

/// The final weights of every run of `tasks`, per task (flat, run after run).
///
/// # Errors
/// [`ZooError`] for a shard that is missing, altered or malformed.
pub fn final_weights(
    zoo_dir: &Path,
    manifest: &Manifest,
    tasks: &[usize],
) -> Result<BTreeMap<usize, Vec<f32>>, ZooError> {
    let p = manifest.num_params;
    let mut out: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    for info in &manifest.shards {
        let sh = crate::meta::trajectories::read_shard(zoo_dir, info)?;
        for (i, &run) in sh.runs.iter().enumerate() {
            let Some(task) = manifest.runs.get(run).and_then(|r| r.task) else {
                continue;
            };
            if tasks.contains(&task) {
                let traj = sh.trajectory(i);
                out.entry(task)
                    .or_default()
                    .extend_from_slice(&traj[traj.len() - p..]);
            }
        }
    }
    Ok(out)
}

/// Per query classifier, the highest fraction of `images` on which it predicts what one of the
/// `reference` classifiers predicts.
fn best_agreement(query: &[i64], reference: &[i64], images: usize) -> Vec<f64> {
    query
        .chunks(images.max(1))
        .map(|q| {
            reference
                .chunks(images.max(1))
                .map(|r| q.iter().zip(r).filter(|(a, b)| a == b).count() as f64)
                .fold(0.0, f64::max)
                / images.max(1) as f64
        })
        .collect()
}

/// The novelty rows of the conditioned samples `samples` (`(shots, task, weights of n
/// classifiers)`) of a multi-task zoo's model.
///
/// # Errors
/// Zoo errors reading the runs' final weights; backend read-back errors.
#[allow(clippy::too_many_arguments)]
pub fn novelty<B: Backend>(
    arch: &Arch,
    layout: &Layout,
    manifest: &Manifest,
    zoo_dir: &Path,
    test: &Split,
    samples: &[(usize, usize, Vec<f32>)],
    n: usize,
    device: &B::Device,
) -> Result<Vec<NoveltyRow>, MetaError> {
    let Some(table) = &manifest.tasks else {
        return Ok(Vec::new());
    };
    let seen: Vec<usize> = (0..table.count)
        .filter(|t| !table.unseen.contains(t))
        .collect();
    let maps = &table.label_maps;
    let nearest: BTreeMap<usize, (usize, usize)> = samples
        .iter()
        .filter_map(|&(_, t, _)| nearest_seen(maps, &seen, t).map(|ns| (t, ns)))
        .collect();
    let mut wanted: Vec<usize> = nearest.keys().copied().collect();
    wanted.extend(nearest.values().map(|&(s, _)| s));
    let finals = final_weights(zoo_dir, manifest, &wanted)?;
    let p = layout.num_params();
    let sub = test.head(AGREEMENT_IMAGES);
    let m = sub.len();
    let predict =
        |w: &[f32]| predictions::<B>(arch, layout, w, w.len() / p, &sub.x, sub.dim, device);
    // Per measured task, once: the nearest task's predictions, what they score on this task's
    // labels, and how closely this task's own runs agree with them.
    let mut per_task: BTreeMap<usize, TaskReference> = BTreeMap::new();
    for (&t, &(s, same)) in &nearest {
        let (Some(near), Some(own)) = (finals.get(&s), finals.get(&t)) else {
            continue;
        };
        let near_pred = predict(near)?;
        let map = &maps[t];
        let copy = near_pred
            .chunks(m.max(1))
            .map(|run| {
                let correct = run
                    .iter()
                    .zip(&sub.y)
                    .filter(|&(&pred, &y)| pred == i64::from(map[usize::from(y)]))
                    .count();
                correct as f64 / m.max(1) as f64
            })
            .collect();
        let trained = best_agreement(&predict(own)?, &near_pred, m);
        per_task.insert(t, (same as f64, near_pred, copy, trained));
    }
    let mut shots: Vec<usize> = samples.iter().map(|s| s.0).collect();
    shots.dedup();
    let mut rows = Vec::new();
    for k in shots {
        let (mut shared, mut copy, mut generated, mut trained) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (_, t, wts) in samples.iter().filter(|s| s.0 == k) {
            let Some((same, near_pred, c, tr)) = per_task.get(t) else {
                continue;
            };
            shared.push(*same);
            copy.extend_from_slice(c);
            trained.extend_from_slice(tr);
            generated.extend(best_agreement(&predict(&wts[..n * p])?, near_pred, m));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        if !shared.is_empty() {
            rows.push(NoveltyRow {
                shots: k,
                shared_labels: mean(&shared),
                nearest_runs: AccStats::of(&copy),
                agreement_generated: mean(&generated),
                agreement_trained: mean(&trained),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_seen_task_shares_the_most_labels_and_is_never_the_task_itself() {
        let maps = vec![
            vec![0u8, 1, 2, 3],
            vec![1, 0, 2, 3],
            vec![1, 0, 3, 2],
            vec![0, 1, 3, 2],
        ];
        // Task 3 shares two labels with 0 and two with 2; the lowest index wins.
        assert_eq!(nearest_seen(&maps, &[0, 1, 2], 3), Some((0, 2)));
        assert_eq!(nearest_seen(&maps, &[1, 2], 3), Some((2, 2)));
        assert_eq!(nearest_seen(&maps, &[0, 1, 2], 0), Some((1, 2)));
        assert_eq!(nearest_seen(&maps, &[0], 0), None);
        assert_eq!(
            best_agreement(&[1, 2, 3, 1, 1, 1], &[1, 2, 0, 1, 1, 3], 3),
            vec![2.0 / 3.0, 2.0 / 3.0]
        );
    }
}
