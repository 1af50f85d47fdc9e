//! Meta-models: vector fields on weight space learned from a zoo's checkpoint trajectories.
//!
//! | module | one job |
//! |---|---|
//! | [`trajectories`] | a zoo's runs in memory, split into training and held-out runs |
//! | [`normalize`] | per-block standardization (statistics from training runs only) |
//! | [`source`] | samples of the source law `p_0` (Kaiming-uniform per block, or Gaussian) |
//! | [`symmetry`] | hidden-unit permutations (data augmentation by the network's symmetry) |
//! | [`field`] | the vector-field network `v(x, t)` |
//! | [`potential`] | NM-JKO's scalar potential with its closed-form gradient |
//! | [`config`] | every hyper-parameter of a meta-model (`config.json`) |
//! | [`checkpoint`] | mid-training checkpoints (resume after an interruption) |
//! | [`train`] | the NM-CFM / NM-MMFM / NM-JKO training loop |
//! | [`sample`] | integrating the field to synthesize classifiers |
//! | [`eval`] | accuracy, novelty and trajectory fidelity of generated classifiers |
//! | [`charts`] | the PNG charts of training and evaluation |
//! | [`downstream`] | fine-tuning generated vs Kaiming-uniform initializations |

pub mod charts;
pub mod checkpoint;
pub mod config;
pub mod downstream;
pub mod eval;
pub mod field;
pub mod fused;
pub mod normalize;
pub mod potential;
pub mod sample;
pub mod source;
pub mod symmetry;
pub mod train;
pub mod trajectories;
