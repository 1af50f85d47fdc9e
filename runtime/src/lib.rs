//! nmflow-runtime: the allocation-free, `no_std` half of nmflow.
//!
//! It reads an exported nmflow model in place, integrates its vector field to synthesize classifier
//! weights, and runs those classifiers. This first version provides the deterministic random number
//! generator shared by the host and the device; the model reader, solvers and classifier follow.
//!
//! Glossary (TorchCFM names): `x0` a source sample, `x1` trained weights, `t` in \[0, 1\], `vt` the
//! predicted velocity.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod rng;

pub use rng::Rng;
