//! The zoo: many training runs of one architecture on one dataset, trained together, with their
//! checkpoint trajectories recorded as safetensors shards and described by `manifest.json`.
//!
//! On-disk layout of a zoo directory:
//!
//! | file | what |
//! |---|---|
//! | `settings.json` | the job's settings, written first; a rerun with other settings is refused |
//! | `shard-NNNNN.safetensors` | the trajectories of runs `[NNNNN·S, …)`, see [`shard`] |
//! | `shard-NNNNN.sha256` | the shard's SHA-256 when it was written: an altered shard is not adopted on resume |
//! | `.nmflow.lock` | the process id of the job writing into the folder, while it runs |
//! | `manifest.json` | written last: everything in [`manifest::Manifest`] |
//!
//! | module | one job |
//! |---|---|
//! | [`config`] | the settings (`ZooConfig`) with their checks, and the checkpoint schedule |
//! | [`train`] | the batched trainer: every run of a shard in one model with a run dimension (burn, any backend) |
//! | [`fused`] | the fused CPU trainer of MLP zoos: the same training written out on reused buffers |
//! | [`shard`] | encoding and decoding shard files |
//! | [`manifest`] | `manifest.json`, read with its tables checked against each other |
//! | [`run`] | the resumable job: lock, settings, shards, manifest |
//! | [`tasks`] | multi-task zoos: task families, each run's task, unseen tasks |

pub mod config;
pub mod fused;
pub mod manifest;
pub mod run;
pub mod shard;
pub mod tasks;
pub mod train;

pub use config::{Optimizer, Schedule, ZooConfig, ZooEngine};
pub use manifest::Manifest;
pub use run::{ZooSummary, run_zoo};
