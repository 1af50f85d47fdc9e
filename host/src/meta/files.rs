//! The files of a model directory, and the JSON reads and writes every command shares: a leaf that
//! training writes and sampling, evaluation, export and `nmflow report` read.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::MetaError;
use crate::io::write_atomic;

/// Hyper-parameters ([`super::config::MetaConfig`]).
pub const CONFIG: &str = "config.json";
/// Normalization statistics.
pub const NORMALIZER: &str = "normalizer.json";
/// The zoo's layout table.
pub const LAYOUT: &str = "layout.json";
/// Field weights (burn record, without the `.bin` extension burn adds).
pub const WEIGHTS: &str = "field";
/// Loss log (CSV: step, train loss, held-out loss, functional terms).
pub const LOSS_LOG: &str = "loss.csv";
/// Training summary, written last: its presence marks a finished model.
pub const SUMMARY: &str = "train.json";
/// The report of `nmflow eval`.
pub const EVAL: &str = "eval.json";

/// Reads and parses a JSON file of a model directory.
///
/// # Errors
/// [`MetaError::File`] naming the file and what is wrong with it.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, MetaError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            MetaError::file(
                path,
                "missing: not a model directory (written by `nmflow train`)",
            )
        } else {
            MetaError::file(path, e)
        }
    })?;
    serde_json::from_str(&text).map_err(|e| MetaError::file(path, e))
}

/// Writes `value` as pretty JSON to `path` atomically (temporary file, then rename).
///
/// # Errors
/// [`MetaError::File`] when serializing or writing fails.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), MetaError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| MetaError::file(path, e))?;
    write_atomic(path, text.as_bytes()).map_err(|e| MetaError::file(path, e))
}

/// Compares the settings file `out/settings` of an output directory with a new job's `cfg`.
/// Returns `true` when they are equal (the job resumes what is there) and `false` when the
/// caller starts afresh: the directory holds no settings file and nothing else (`force`
/// overrides; `kind` names the job in the refusal), or other settings and `force` was given.
///
/// # Errors
/// [`MetaError::Conflict`] naming the first differing setting; [`MetaError::File`] when the
/// directory holds something else.
pub fn same_settings<T: Serialize + DeserializeOwned + PartialEq>(
    cfg: &T,
    out: &Path,
    settings: &str,
    kind: &str,
    force: bool,
) -> Result<bool, MetaError> {
    let path = out.join(settings);
    if let Ok(old) = read_json::<T>(&path) {
        if old == *cfg {
            return Ok(true);
        }
        if !force {
            let wanted = serde_json::to_value(cfg).map_err(|e| MetaError::file(&path, e))?;
            let have = serde_json::to_value(&old).map_err(|e| MetaError::file(&path, e))?;
            return Err(MetaError::Conflict {
                path: out.into(),
                difference: crate::io::first_difference(&have, &wanted),
            });
        }
    } else {
        let others = std::fs::read_dir(out)
            .map_err(|e| MetaError::file(out, e))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != crate::io::LOCK_FILE)
            .count();
        if others > 0 && !force {
            return Err(MetaError::file(
                out,
                format!(
                    "is not empty and holds no {kind}; choose another --out, or --force to write into it"
                ),
            ));
        }
    }
    Ok(false)
}
