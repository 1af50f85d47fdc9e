//! The zoo: many training runs of one architecture on one dataset, trained together, with their
//! checkpoint trajectories recorded as safetensors shards and described by `manifest.json`.
//!
//! On-disk layout of a zoo directory:
//!
//! | file | what |
//! |---|---|
//! | `settings.json` | the job's settings, written first; a rerun with other settings is refused |
//! | `shard-NNNNN.safetensors` | the trajectories of runs `[NNNNN·S, …)`, see [`shard`] |
//! | `manifest.json` | written last: everything in [`manifest::Manifest`] |

pub mod config;
pub mod manifest;
pub mod run;
pub mod shard;
pub mod train;

pub use config::{Optimizer, Schedule, ZooConfig};
pub use manifest::Manifest;
pub use run::{ZooSummary, run_zoo};
