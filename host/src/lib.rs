//! nmflow-host: the host half of nmflow.
//!
//! It fetches real datasets, trains zoos of small classifiers while recording their checkpoint
//! trajectories, learns vector fields on weight space from them (meta-models), samples and
//! evaluates classifiers from those fields, and exports them for the `no_std` device runtime.
//! `docs/architecture.md` maps where each part lives and how data flows between them.
//!
//! | module | one job |
//! |---|---|
//! | [`data`] | dataset files: fetch, checksums, IDX/CSV parsers, named views |
//! | [`arch`] | classifier architectures and their parameter layout table |
//! | [`classifier`] | a batched burn classifier whose weights carry a run dimension |
//! | [`zoo`] | training many runs together and recording their checkpoints |
//! | [`flow`] | flow-matching parts: probability paths, ODE solvers |
//! | [`meta`] | meta-models: training, sampling and evaluating vector fields on weight space |
//! | [`edge`] | exported model files run with the device runtime on the host |
//! | [`export`] | meta-model → quantized device model file |
//! | [`inspect`] | summaries of files nmflow writes |
//! | [`io`] | atomic writes, gzip, SHA-256 |
//! | [`linalg`] | matrix products on preallocated buffers (the fused trainer's GEMMs) |
//! | [`optim`] | the Adam settings every trainer shares (and the one difference that stays) |
//! | [`plot`] | PNG line charts and histograms |
//! | [`report`] | one Markdown/HTML page gathering a run folder's results |
//! | [`shift`] | harmful covariate shift: Detectron and meta-detectron, calibrated |
//! | [`backend`] | compute backends (CPU, CUDA) and reading tensors back |
//! | [`progress`] | progress bars |
//! | `cli` | the `nmflow` command line (feature `cli`, on by default) |
//! | [`error`] | typed errors |

pub mod arch;
pub mod backend;
pub mod classifier;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod edge;
pub mod error;
pub mod export;
pub mod flow;
pub mod inspect;
pub mod io;
pub mod linalg;
pub mod meta;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod report;
pub mod shift;
pub mod zoo;
