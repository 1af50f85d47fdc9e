//! Context-conditioned meta-models (METHOD.md §4, "Conditioning"): a support set of labeled
//! examples of a task is encoded into a task embedding, which the field sees beside the time
//! (`VectorField::forward_with`), so that one meta-model makes classifiers for the task in front
//! of it, including tasks it never saw. Trained with the condition dropped at a rate (the null
//! embedding), it samples with classifier-free guidance
//! `v = v(x, t, ∅) + w·(v(x, t, y) − v(x, t, ∅))`.
//!
//! | module | one job |
//! |---|---|
//! | [`config`] | the settings (`--condition support --shots K --cfg-drop P`) and their checks |
//! | [`network`] | the support-set encoder and the injection into the field |
//! | [`lift`] | the class-equivariant field of `--condition classes` around the set field |
//! | [`relabel`] | the output layer's symmetry: a training pair shown under another labelling |
//! | [`support`] | support sets of a task drawn from a dataset, and the tasks' relabellings |
//! | [`train`] | the training step of a conditioned field (flow matching and the functional term) |
//! | [`sample`] | guided sampling and the evaluation on unseen tasks |
//! | [`novelty`] | the samples against the zoo's runs of the nearest seen task |
//! | [`baseline`] | the few-shot baseline: Kaiming inits trained on the support set alone |
//! | [`device`] | `edge-eval` of an exported class-conditioned model: the runtime on tasks |

pub mod baseline;
pub mod config;
pub mod device;
pub mod lift;
pub mod network;
pub mod novelty;
pub mod relabel;
pub mod sample;
pub mod support;
pub mod train;
