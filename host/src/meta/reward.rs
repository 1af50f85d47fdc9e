//! Rewards on generated classifiers: a differentiable score of a batch of classifiers on a batch
//! of data, used as the functional term of `nmflow train` (and, as the method's fine-tuning stage
//! lands, as the reward that adjoint matching tilts a trained field towards).
//!
//! A [`Reward`] says what is scored; a [`DataReward`] binds it to a dataset on the device and to
//! the standardization of a meta-model's state, so that a field's output can be scored directly.
//! Everything is written as a loss (lower is better: the reward is its negative).

use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::normalize::Normalizer;
use crate::arch::{Arch, Layout};
use crate::classifier::{self, Input};
use crate::data::Dataset;
use crate::zoo::train::DeviceData;
use nmflow_runtime::Rng;

/// What a reward measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reward {
    /// Cross-entropy of the classifiers' predictions against the labels (reward: its negative).
    CrossEntropy,
}

impl Reward {
    /// The loss, averaged over classifiers, of the classifiers `weights` (raw weight units,
    /// `[runs, P]` in `layout` order) of architecture `arch` on the images `x` (`[m, d]`) with
    /// one-hot labels `y` (`[m, classes]`).
    pub fn loss<C: Backend>(
        self,
        arch: &Arch,
        layout: &Layout,
        weights: Tensor<C, 2>,
        x: Tensor<C, 2>,
        y: Tensor<C, 2>,
    ) -> Tensor<C, 1> {
        match self {
            Self::CrossEntropy => cross_entropy(arch, layout, weights, x, y.unsqueeze_dim(0)),
        }
    }
}

/// One-hot labels `y` (`[m, C]`) relabelled per classifier: `[maps, m, C]`.
fn relabelled<C: Backend, M: AsRef<[u8]>>(y: Tensor<C, 2>, maps: &[M]) -> Tensor<C, 3> {
    let [m, c] = y.dims();
    let r = maps.len();
    let relabel = classifier::relabel_matrices::<C, M>(maps, c, &y.device());
    y.unsqueeze_dim::<3>(0).expand([r, m, c]).matmul(relabel)
}

/// The mean cross-entropy of the classifiers `weights` (`[R, P]`, raw) on `x` (`[m, d]`) against
/// one-hot targets, per classifier (`[R, m, C]`) or shared (`[1, m, C]`).
fn cross_entropy<C: Backend>(
    arch: &Arch,
    layout: &Layout,
    weights: Tensor<C, 2>,
    x: Tensor<C, 2>,
    targets: Tensor<C, 3>,
) -> Tensor<C, 1> {
    let runs = weights.dims()[0];
    let params = classifier::params_from_tensor(layout, weights);
    let logits = classifier::forward(arch, &params, Input::Shared(x));
    classifier::cross_entropy_sum(logits, targets) / runs as f64
}

/// A reward bound to a dataset's training split on the device and to the per-coordinate scales
/// that undo a meta-model's standardization, so it scores standardized states directly.
pub struct DataReward<B: AutodiffBackend> {
    reward: Reward,
    arch: Arch,
    layout: Layout,
    data: DeviceData<B::InnerBackend>,
    std: Tensor<B, 2>,
    mean: Tensor<B, 2>,
}

impl<B: AutodiffBackend> DataReward<B> {
    /// Uploads the training split of `data` and the standardization of `normalizer`.
    pub fn new(
        reward: Reward,
        arch: &Arch,
        layout: &Layout,
        data: &Dataset,
        normalizer: &Normalizer,
        device: &B::Device,
    ) -> Self {
        let (std, mean) = normalizer.scale_rows::<B>(device);
        Self {
            reward,
            arch: arch.clone(),
            layout: layout.clone(),
            data: DeviceData::new(data, device),
            std,
            mean,
        }
    }

    /// The loss of the classifiers `states` (standardized, `[runs, P]`) on `m` training images
    /// drawn from `rng`, differentiable through `states`.
    pub fn loss(&self, states: Tensor<B, 2>, m: usize, rng: &mut Rng) -> Tensor<B, 1> {
        let (x, y) = self.data.draw(m, rng);
        let raw = states * self.std.clone() + self.mean.clone();
        self.reward.loss(
            &self.arch,
            &self.layout,
            raw,
            Tensor::from_inner(x),
            Tensor::from_inner(y),
        )
    }

    /// [`Self::loss`] without gradients, on the inner backend.
    pub fn loss_inner(
        &self,
        states: Tensor<B::InnerBackend, 2>,
        m: usize,
        rng: &mut Rng,
    ) -> Tensor<B::InnerBackend, 1> {
        let (x, y) = self.data.draw(m, rng);
        let raw = states * self.std.clone().inner() + self.mean.clone().inner();
        self.reward.loss(&self.arch, &self.layout, raw, x, y)
    }

    /// [`Self::loss`] with classifier `r` scored against the labels of its task: an image of class
    /// `y` counts as `maps[r][y]` (label maps of a multi-task zoo).
    pub fn loss_relabelled<M: AsRef<[u8]>>(
        &self,
        states: Tensor<B, 2>,
        maps: &[M],
        m: usize,
        rng: &mut Rng,
    ) -> Tensor<B, 1> {
        let (x, y) = self.data.draw(m, rng);
        self.scored(states, x, relabelled(y, maps))
    }

    /// [`Self::loss_relabelled`] without gradients, on the inner backend.
    pub fn loss_inner_relabelled<M: AsRef<[u8]>>(
        &self,
        states: Tensor<B::InnerBackend, 2>,
        maps: &[M],
        m: usize,
        rng: &mut Rng,
    ) -> Tensor<B::InnerBackend, 1> {
        let (x, y) = self.data.draw(m, rng);
        self.scored_inner(states, x, relabelled(y, maps))
    }

    /// The cross-entropy of the classifiers `states` against the predictions (softmax) of the
    /// classifiers `teachers` (both standardized, `[runs, P]`, row `r` scored against row `r`) on
    /// `m` training images drawn from `rng`: a distillation loss, differentiable through `states`
    /// only. Its floor is the teachers' mean predictive entropy, not 0.
    pub fn loss_distilled(
        &self,
        states: Tensor<B, 2>,
        teachers: Tensor<B::InnerBackend, 2>,
        m: usize,
        rng: &mut Rng,
    ) -> Tensor<B, 1> {
        let (x, _) = self.data.draw(m, rng);
        let targets = self.teacher_targets(teachers, x.clone());
        self.scored(states, x, targets)
    }

    /// [`Self::loss_distilled`] without gradients, on the inner backend.
    pub fn loss_inner_distilled(
        &self,
        states: Tensor<B::InnerBackend, 2>,
        teachers: Tensor<B::InnerBackend, 2>,
        m: usize,
        rng: &mut Rng,
    ) -> Tensor<B::InnerBackend, 1> {
        let (x, _) = self.data.draw(m, rng);
        let targets = self.teacher_targets(teachers, x.clone());
        self.scored_inner(states, x, targets)
    }

    /// The cross-entropy of the standardized classifiers `states` on the images `x` against the
    /// per-classifier targets `targets` (`[runs, m, C]`), differentiable through `states`.
    fn scored(
        &self,
        states: Tensor<B, 2>,
        x: Tensor<B::InnerBackend, 2>,
        targets: Tensor<B::InnerBackend, 3>,
    ) -> Tensor<B, 1> {
        let raw = states * self.std.clone() + self.mean.clone();
        cross_entropy(
            &self.arch,
            &self.layout,
            raw,
            Tensor::from_inner(x),
            Tensor::from_inner(targets),
        )
    }

    /// [`Self::scored`] without gradients, on the inner backend.
    fn scored_inner(
        &self,
        states: Tensor<B::InnerBackend, 2>,
        x: Tensor<B::InnerBackend, 2>,
        targets: Tensor<B::InnerBackend, 3>,
    ) -> Tensor<B::InnerBackend, 1> {
        let raw = states * self.std.clone().inner() + self.mean.clone().inner();
        cross_entropy(&self.arch, &self.layout, raw, x, targets)
    }

    /// The predictive distributions (`[runs, m, C]`) of the standardized classifiers `teachers`
    /// on the images `x`.
    fn teacher_targets(
        &self,
        teachers: Tensor<B::InnerBackend, 2>,
        x: Tensor<B::InnerBackend, 2>,
    ) -> Tensor<B::InnerBackend, 3> {
        let raw = teachers * self.std.clone().inner() + self.mean.clone().inner();
        let params = classifier::params_from_tensor(&self.layout, raw);
        let logits = classifier::forward(&self.arch, &params, Input::Shared(x));
        burn::tensor::activation::softmax(logits, 2)
    }

    /// The layout of the classifiers it scores.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The device its data lives on.
    pub fn device(&self) -> B::Device {
        self.std.device()
    }
}
