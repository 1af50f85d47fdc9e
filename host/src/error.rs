//! Typed errors of the host library. Every variant that concerns a file carries its path.

use std::path::PathBuf;

/// Problems with dataset files: missing, corrupt, or of the wrong shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A dataset file is not there.
    #[error("{path}: not found; run `nmflow data fetch` first (or set --data-dir / NMFLOW_DATA)")]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The decompressed bytes do not have the published SHA-256.
    #[error("{path}: checksum mismatch: expected sha256 {expected}, found {found}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The published SHA-256.
        expected: String,
        /// The SHA-256 of the bytes on disk.
        found: String,
    },
    /// An IDX header with an unexpected magic number.
    #[error("{path}: bad IDX magic {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number required here.
        expected: u32,
        /// The magic number in the file.
        found: u32,
    },
    /// The file's dimensions are not the ones this dataset has.
    #[error("{path}: wrong dimensions {found:?}, expected {expected:?}")]
    WrongDimensions {
        /// The file.
        path: PathBuf,
        /// The expected dimensions.
        expected: Vec<usize>,
        /// The dimensions in the header.
        found: Vec<usize>,
    },
    /// The file ends before its header says it should, or goes on after.
    #[error("{path}: {what}: expected {expected} bytes, found {found}")]
    Length {
        /// The file.
        path: PathBuf,
        /// "truncated" or "trailing bytes".
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The actual length.
        found: usize,
    },
    /// A malformed line in a CSV file.
    #[error("{path}: line {line}: {problem}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A labels file and an images file disagree, or a label is out of range.
    #[error("{path}: {problem}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An external program needed to fetch data failed or is missing.
    #[error("{0}")]
    Fetch(String),
}

impl DataError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Invalid settings: an unknown architecture, zero runs, a schedule past the end of training.
///
/// The command line maps these to exit code 2 (usage).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Problems with a zoo on disk or a zoo job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZooError {
    /// Invalid settings.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Reading the data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file of the zoo could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The output directory holds a zoo made with other settings.
    #[error(
        "{path} already holds a zoo with different settings ({difference}); \
         use another --out, or --force to delete it and start over"
    )]
    Conflict {
        /// The existing settings file.
        path: PathBuf,
        /// The first setting that differs.
        difference: String,
    },
    /// A zoo file is malformed or does not match its manifest.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A tensor's values could not be read back from the compute backend.
    #[error(transparent)]
    Tensor(#[from] crate::backend::TensorRead),
    /// Another process writes into the output folder.
    #[error("{0}")]
    Busy(String),
    /// Training produced a non-finite loss.
    #[error("run {run} diverged at step {step} (non-finite loss); lower --lr")]
    Diverged {
        /// The zoo-wide index of the first diverged run.
        run: usize,
        /// The optimizer step.
        step: usize,
    },
}

impl ZooError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed file.
    pub fn corrupt(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Problems training, loading or using a meta-model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// Invalid settings.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The zoo could not be read.
    #[error(transparent)]
    Zoo(#[from] ZooError),
    /// The dataset could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A model file could not be read or written.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// The loss became non-finite; the last good checkpoint was kept.
    #[error(
        "training diverged at step {step} (non-finite loss); the last good model (step {kept}) is kept in {out}; lower --lr"
    )]
    Diverged {
        /// The step.
        step: usize,
        /// The step of the kept model.
        kept: usize,
        /// The model directory.
        out: PathBuf,
    },
    /// A chart could not be written.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// A tensor's values could not be read back from the compute backend.
    #[error(transparent)]
    Tensor(#[from] crate::backend::TensorRead),
    /// Fine-tuning (the downstream comparison of `nmflow eval`) produced a non-finite loss.
    #[error(
        "fine-tuning for the downstream comparison diverged at step {step} (non-finite loss) with the zoo's optimizer settings; skip it with --downstream 0"
    )]
    FineTuneDiverged {
        /// The optimizer step.
        step: usize,
    },
    /// The model was trained on another zoo than the one given.
    #[error(
        "model {model} was trained on a zoo with manifest sha256 {expected}, but {zoo} has {found}"
    )]
    Incompatible {
        /// The model directory.
        model: PathBuf,
        /// The zoo directory.
        zoo: PathBuf,
        /// The hash recorded in the model.
        expected: String,
        /// The hash of the given zoo's manifest.
        found: String,
    },
    /// Another process writes into the output folder.
    #[error("{0}")]
    Busy(String),
    /// The output holds a finished or interrupted model trained with other settings.
    #[error(
        "{path} holds a model trained with other settings ({difference}); use another --out, or --force to replace it"
    )]
    Conflict {
        /// The model directory.
        path: PathBuf,
        /// The first setting that differs.
        difference: String,
    },
}

impl MetaError {
    /// A file problem.
    pub fn file(path: impl Into<PathBuf>, problem: impl ToString) -> Self {
        Self::File {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}
