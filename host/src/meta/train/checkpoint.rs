//! Mid-training checkpoints of `nmflow train`, so that an interrupted run resumes where it stopped
//! and ends with the same bytes as an uninterrupted one.
//!
//! A checkpoint is the folder `checkpoint/` in the model directory: the field's weights
//! (`field.bin`), the optimizer state (`optim.bin`) and the loop state (`state.json`: step, loss
//! log, best held-out loss). It is written as `checkpoint-partial/` and then swapped in with
//! renames, so a kill at any moment leaves either the old or the new checkpoint whole. It is
//! removed when training finishes.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::MetaError;
use crate::io::write_atomic;
use crate::meta::config::MetaConfig;
use crate::meta::field::VectorField;

/// The optimizer of the field.
pub type FieldOptimizer<B> = OptimizerAdaptor<burn::optim::Adam, VectorField<B>, B>;

const DIR: &str = "checkpoint";
const PARTIAL: &str = "checkpoint-partial";
const OLD: &str = "checkpoint-old";
const STATE: &str = "state.json";
/// SHA-256 of every other file of a checkpoint, written before `state.json`.
const CHECKSUMS: &str = "checksums.json";

/// One row of the loss log (`loss.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// Optimizer step.
    pub step: usize,
    /// Flow-matching loss of the step's minibatch.
    pub train_loss: f64,
    /// Loss on the fixed held-out set, when measured at this step.
    pub heldout_loss: Option<f64>,
    /// The functional term's cross-entropy, when it is on.
    pub functional_loss: Option<f64>,
    /// The functional term's validation cross-entropy (fixed held-out draws), when measured.
    #[serde(default)]
    pub validation_functional_loss: Option<f64>,
}

/// The training loop's state at a step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Steps done.
    pub step: usize,
    /// The loss log so far.
    pub rows: Vec<LogRow>,
    /// The last (up to 50) minibatch losses.
    pub recent: Vec<f64>,
    /// The best held-out loss so far.
    pub best: Option<f64>,
    /// Its step (the weights in the model directory's `field.bin`).
    pub best_step: usize,
    /// The checkpoint was written by the fused CPU trainer (its optimizer file differs).
    #[serde(default)]
    pub fused: bool,
}

/// The loss log as CSV.
pub fn csv(rows: &[LogRow]) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let mut s =
        String::from("step,train_loss,heldout_loss,functional_loss,validation_functional_loss\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{}\n",
            r.step,
            r.train_loss,
            opt(r.heldout_loss),
            opt(r.functional_loss),
            opt(r.validation_functional_loss)
        ));
    }
    s
}

/// The folder holding the current checkpoint, if a whole one exists (after a kill between the
/// two renames of [`save`] the previous one is still whole under its old name).
fn current(out: &Path) -> Option<PathBuf> {
    [DIR, OLD]
        .map(|d| out.join(d))
        .into_iter()
        .find(|d| d.join(STATE).is_file())
}

/// The loop state of the checkpoint in `out` (`None` when there is none), after checking every
/// file of the checkpoint against the SHA-256 recorded when it was written.
///
/// # Errors
/// [`MetaError::File`] for a checkpoint that was altered or damaged (it is not resumed from: the
/// message says to delete it), or an unreadable state.
pub fn load_state(out: &Path) -> Result<Option<State>, MetaError> {
    load_state_as(out)
}

/// [`load_state`] for another loop's state type (fine-tuning keeps its own).
///
/// # Errors
/// As [`load_state`].
pub fn load_state_as<S: serde::de::DeserializeOwned>(out: &Path) -> Result<Option<S>, MetaError> {
    let Some(dir) = current(out) else {
        return Ok(None);
    };
    verify(&dir)?;
    let path = dir.join(STATE);
    let text = fs::read_to_string(&path).map_err(|e| MetaError::file(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| damaged(&path, &dir, &e.to_string()))
}

/// The error for a damaged checkpoint file.
fn damaged(path: &Path, dir: &Path, what: &str) -> MetaError {
    MetaError::file(
        path,
        format!(
            "{what}: the checkpoint was altered or damaged and is not resumed from; delete {} to train from the start",
            dir.display()
        ),
    )
}

/// Checks the files of the checkpoint folder `dir` against its `checksums.json` (checkpoints
/// written before checksums existed have none and are taken as they are).
fn verify(dir: &Path) -> Result<(), MetaError> {
    let path = dir.join(CHECKSUMS);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let sums: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| damaged(&path, dir, &e.to_string()))?;
    for (name, sum) in &sums {
        let file = dir.join(name);
        let bytes = fs::read(&file).map_err(|e| damaged(&file, dir, &e.to_string()))?;
        if crate::io::sha256_hex(&bytes) != *sum {
            return Err(damaged(&file, dir, "sha256 differs from the one recorded"));
        }
    }
    Ok(())
}

/// Records the SHA-256 of every file in the checkpoint folder `dir`.
fn write_checksums(dir: &Path) -> Result<(), MetaError> {
    let mut sums = std::collections::BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| MetaError::file(dir, e))? {
        let path = entry.map_err(|e| MetaError::file(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| n != STATE && n != CHECKSUMS) {
            let bytes = fs::read(&path).map_err(|e| MetaError::file(&path, e))?;
            sums.insert(name, crate::io::sha256_hex(&bytes));
        }
    }
    let text = serde_json::to_string_pretty(&sums).map_err(|e| MetaError::file(dir, e))?;
    let path = dir.join(CHECKSUMS);
    write_atomic(&path, text.as_bytes()).map_err(|e| MetaError::file(&path, e))
}

/// Loads the checkpoint's field and optimizer state (`optim` is a fresh optimizer).
///
/// # Errors
/// [`MetaError::File`] naming the unreadable file.
pub fn load_model<B: AutodiffBackend>(
    out: &Path,
    cfg: &MetaConfig,
    optim: FieldOptimizer<B>,
    device: &B::Device,
) -> Result<(VectorField<B>, FieldOptimizer<B>), MetaError> {
    let dir = folder(out);
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let field = cfg
        .field
        .init::<B>(device)
        .load_file(dir.join("field"), &recorder, device)
        .map_err(|e| MetaError::file(dir.join("field.bin"), e))?;
    let record = Recorder::<B>::load(&recorder, dir.join("optim"), device)
        .map_err(|e| MetaError::file(dir.join("optim.bin"), e))?;
    Ok((field, optim.load_record(record)))
}

/// Writes a checkpoint of the loop state, the field and the optimizer.
///
/// # Errors
/// [`MetaError::File`] naming the file that could not be written.
pub fn save<B: AutodiffBackend, S: Serialize>(
    out: &Path,
    state: &S,
    field: &VectorField<B>,
    optim: &FieldOptimizer<B>,
) -> Result<(), MetaError> {
    save_with(out, state, |partial| write_model(partial, field, optim))
}

/// Writes the field and the optimizer state into the new checkpoint folder `partial` (for
/// [`save_with`]).
///
/// # Errors
/// [`MetaError::File`] naming the file that could not be written.
pub fn write_model<B: AutodiffBackend>(
    partial: &Path,
    field: &VectorField<B>,
    optim: &FieldOptimizer<B>,
) -> Result<(), MetaError> {
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    field
        .clone()
        .save_file(partial.join("field"), &recorder)
        .map_err(|e| MetaError::file(partial.join("field.bin"), e))?;
    Recorder::<B>::record(&recorder, optim.to_record(), partial.join("optim"))
        .map_err(|e| MetaError::file(partial.join("optim.bin"), e))
}

/// Writes a checkpoint of the loop state and whatever `write` puts into the new checkpoint folder
/// (it gets the folder's path), swapping it in whole.
///
/// # Errors
/// [`MetaError::File`] naming the file that could not be written, or `write`'s error.
pub fn save_with<S: Serialize>(
    out: &Path,
    state: &S,
    write: impl FnOnce(&Path) -> Result<(), MetaError>,
) -> Result<(), MetaError> {
    let partial = out.join(PARTIAL);
    remove(&partial)?;
    fs::create_dir_all(&partial).map_err(|e| MetaError::file(&partial, e))?;
    write(&partial)?;
    write_checksums(&partial)?;
    let text = serde_json::to_string(state).map_err(|e| MetaError::file(&partial, e))?;
    write_atomic(&partial.join(STATE), text.as_bytes())
        .map_err(|e| MetaError::file(partial.join(STATE), e))?;
    let (dir, old) = (out.join(DIR), out.join(OLD));
    remove(&old)?;
    if dir.exists() {
        fs::rename(&dir, &old).map_err(|e| MetaError::file(&dir, e))?;
    }
    fs::rename(&partial, &dir).map_err(|e| MetaError::file(&dir, e))?;
    remove(&old)
}

/// The folder of the current checkpoint of `out` (for engines that read their own files).
pub fn folder(out: &Path) -> PathBuf {
    current(out).unwrap_or_else(|| out.join(DIR))
}

/// Removes every checkpoint folder in `out`.
///
/// # Errors
/// [`MetaError::File`] naming the folder that could not be removed.
pub fn discard(out: &Path) -> Result<(), MetaError> {
    for d in [DIR, PARTIAL, OLD] {
        remove(&out.join(d))?;
    }
    Ok(())
}

fn remove(dir: &Path) -> Result<(), MetaError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(MetaError::file(dir, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_csv_with_empty_cells_for_missing_values() {
        let rows = [
            LogRow {
                step: 10,
                train_loss: 0.5,
                heldout_loss: None,
                functional_loss: Some(2.0),
                validation_functional_loss: None,
            },
            LogRow {
                step: 20,
                train_loss: 0.25,
                heldout_loss: Some(0.3),
                functional_loss: Some(1.5),
                validation_functional_loss: Some(1.25),
            },
        ];
        assert_eq!(
            csv(&rows),
            "step,train_loss,heldout_loss,functional_loss,validation_functional_loss\n10,0.5,,2,\n20,0.25,0.3,1.5,1.25\n"
        );
    }

    #[test]
    fn an_altered_checkpoint_is_refused_and_named() {
        let out = std::env::temp_dir().join(format!("nmflow-ckpt-alt-{}", std::process::id()));
        discard(&out).unwrap();
        let state = State {
            step: 3,
            ..State::default()
        };
        save_with(&out, &state, |dir| {
            fs::write(dir.join("field.bin"), b"weights").map_err(|e| MetaError::file(dir, e))
        })
        .unwrap();
        assert_eq!(load_state(&out).unwrap(), Some(state));
        fs::write(out.join(DIR).join("field.bin"), b"weighty").unwrap();
        let err = load_state(&out).unwrap_err().to_string();
        assert!(
            err.contains("field.bin") && err.contains("altered"),
            "{err}"
        );
        // A damaged state file is an error too, not a silent restart.
        fs::write(out.join(DIR).join("field.bin"), b"weights").unwrap();
        fs::write(out.join(DIR).join(STATE), b"{").unwrap();
        assert!(load_state(&out).is_err());
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_half_swapped_checkpoint_is_still_found() {
        let out = std::env::temp_dir().join(format!("nmflow-ckpt-{}", std::process::id()));
        discard(&out).unwrap();
        assert!(load_state(&out).unwrap().is_none());
        let old = out.join(OLD);
        fs::create_dir_all(&old).unwrap();
        let state = State {
            step: 7,
            ..State::default()
        };
        fs::write(old.join(STATE), serde_json::to_string(&state).unwrap()).unwrap();
        // A partial folder without its state file does not count.
        fs::create_dir_all(out.join(PARTIAL)).unwrap();
        assert_eq!(load_state(&out).unwrap(), Some(state));
        discard(&out).unwrap();
        assert!(!old.exists() && !out.join(PARTIAL).exists());
        fs::remove_dir_all(&out).unwrap();
    }
}
