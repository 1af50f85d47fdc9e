//! Latent meta-models (METHOD.md §4, "latent variant"): a VAE encodes a classifier's flat
//! weights into a short latent `z`, the flow runs in `z`, and samples are decoded.
//!
//! | module | one job |
//! |---|---|
//! | [`config`] | the VAE's settings (`vae.json`) and their checks; how it treats the unit symmetry |
//! | [`network`] | encoder, decoder, and the closed-form pieces of the loss |
//! | [`train`] | `nmflow vae`: the resumable training loop and the reconstruction measurements |
//! | [`codec`] | a trained VAE loaded from its directory: encode raw weights, decode latents |
//!
//! A latent meta-model (`nmflow train --latent VAE`) is an ordinary model directory whose state is
//! `z`: its `normalizer.json` standardizes latents, its `config.json` records the VAE's hash, and a
//! copy of the VAE lives in its `vae/` folder, so that `sample` and `eval` decode without the
//! original VAE directory.

pub mod codec;
pub mod config;
pub mod network;
pub mod train;
