//! nmflow-runtime: the allocation-free, `no_std` half of nmflow.
//!
//! It reads an exported model in place ([`ModelView::parse`]), integrates its vector field from a
//! seeded source sample to synthesize classifier weights ([`synthesize()`]; a latent model's
//! field runs in its latent space and [`decoder`] turns the result into weights), runs those classifiers
//! ([`classifier`]), and measures ensemble disagreement on unlabeled inputs ([`shift`]). Every
//! buffer is caller-owned ([`Workspace`]); nothing allocates, nothing is `unsafe`, and no input
//! makes it panic.
//!
//! Glossary (TorchCFM names): `x0` a source sample, `x1` synthesized weights, `t` in \[0, 1\], `vt`
//! the field's velocity, `h` the step size.
//!
//! # Examples
//! ```
//! use nmflow_runtime::{ModelView, Workspace, synthesize};
//! # let bytes = nmflow_runtime::testing::tiny_model_bytes();
//! let model = ModelView::parse(&bytes)?;
//! let mut ws: Workspace<256> = Workspace::new();
//! let weights = synthesize(&model, 7, &mut ws)?;
//! assert_eq!(weights.len(), model.num_params());
//! # Ok::<(), nmflow_runtime::Error>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod classifier;
pub mod condition;
pub mod decoder;
pub mod error;
pub mod gradient;
pub mod kernels;
pub mod math;
pub mod model_view;
pub mod rng;
pub mod set_field;
pub mod shift;
pub mod solver;
pub mod source;
pub mod synthesize;
pub mod testing;
pub mod vector_field;
pub mod workspace;

pub use condition::Support;
pub use error::Error;
pub use model_view::{FieldKind, ModelView};
pub use rng::Rng;
pub use synthesize::{synthesize, synthesize_task, synthesize_with};
pub use workspace::Workspace;
