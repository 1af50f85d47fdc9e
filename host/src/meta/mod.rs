//! Meta-models: vector fields on weight space learned from a zoo's checkpoint trajectories.
//!
//! The modules follow the data flow, from the state space to the report:
//!
//! | stage | module | one job |
//! |---|---|---|
//! | state | [`trajectories`] | a zoo's runs in memory, split into training and held-out runs |
//! | state | [`normalize`] | per-block standardization (statistics from training runs only) |
//! | state | [`source`] | samples of the source law `p_0` (Kaiming-uniform per block, or Gaussian) |
//! | state | [`symmetry`] | hidden-unit permutations (data augmentation by the network's symmetry) |
//! | network | [`field`] | the vector-field networks `v(x, t)`: MLP, permutation-equivariant set field, NM-JKO's potential |
//! | network | [`potential`] | NM-JKO's scalar potential with its closed-form gradient |
//! | network | [`latent`] | the VAE of latent meta-models: settings, networks, training, encode/decode |
//! | network | [`condition`] | task conditioning: the support-set encoder, its training step, guided sampling and the evaluation on unseen tasks |
//! | objective | [`pairs`] | flow-matching training pairs `(x_t, t, u_t)` per method and coupling |
//! | objective | [`reward`] | rewards on generated classifiers (the functional term; fine-tuning) |
//! | settings | [`config`] | every hyper-parameter of a meta-model (`config.json`), the defaults and their checks |
//! | training | [`train`] | the loop, its two engines and checkpoints |
//! | files | [`files`] | the files of a model directory |
//! | use | [`sample`] | loading a model and integrating its field to synthesize classifiers |
//! | use | [`eval`] | accuracy, novelty, trajectory fidelity, downstream fine-tuning |
//! | use | [`downstream`] | fine-tuning generated vs Kaiming-uniform initializations |
//! | report | [`report`] | the evaluation's result types (a leaf) |
//! | report | [`metrics`] | distances between sets of weights (nearest neighbour, pairwise, sliced W1) |
//! | report | [`charts`] | the PNG charts of training and evaluation |
//!
//! Dependencies point down this table's use and report rows and never back: `report` and
//! `metrics` depend on nothing here, `charts` only on `report`, `sample` on the network and the
//! files, not on training.

pub mod charts;
pub mod condition;
pub mod config;
pub mod downstream;
pub mod eval;
pub mod field;
pub mod files;
pub mod finetune;
pub mod latent;
pub mod metrics;
pub mod normalize;
pub mod pairs;
pub mod potential;
pub mod recipe;
pub mod report;
pub mod reward;
pub mod sample;
pub mod source;
pub mod symmetry;
pub mod train;
pub mod trajectories;
