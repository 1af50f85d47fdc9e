//! Harmful covariate shift (METHOD.md §6): given a classifier `f` trained on P and an unlabeled
//! sample Q, decide whether Q is a shift that harms `f`.
//!
//! | module | one job |
//! |---|---|
//! | [`spec`] | the shifted set: a view and a deterministic transform (`--shift VIEW[:TRANSFORM]`) |
//! | [`pq`] | P's training rows and the samples on the device; Detectron's loss as one weighted cross-entropy |
//! | [`ensemble`] | a test's disagreement ensemble and the rejection rule (both detectors) |
//! | [`detectron`] | Detectron: constrained disagreement classifiers trained by Adam, many tests at once |
//! | [`meta`] | meta-detectron: members sampled from the meta-model with reward guidance |
//! | [`tilt`] | meta-detectron by adjoint matching: one fine-tuning of the meta-model per test |
//! | [`stats`] | entropy, KS distance, threshold, TPR, AUROC, ROC |
//! | [`run`] | the settings, the tests, resumable record files (`nmflow shift-test`) |
//! | [`report`] | the calibrated comparison as JSON, Markdown and ROC charts |
//! | [`edge`] | the device's detector calibrated on the host (`nmflow shift-calibrate`) |
//!
//! Both detectors grow an ensemble per test in the same way and report the same two statistics:
//! the number of sample inputs the members disagreed on (the disagreement test) and the KS
//! distance of the ensemble's predictive entropies from the null's (the entropy test). The
//! threshold of each statistic is its null distribution's `1 − α` quantile over calibration
//! seeds whose samples come from P's test split.

pub mod detectron;
pub mod edge;
pub mod ensemble;
pub mod meta;
pub mod pq;
pub mod report;
pub mod run;
pub mod spec;
pub mod stats;
pub mod tilt;
