//! Meta-detectron by adjoint matching (METHOD.md §5–6): for each test, the meta-model is
//! fine-tuned towards Detectron's objective on that test's sample,
//! `r(w) = −(CE(f_w on P, ŷ) + λ_dis·ℓ_dis(f_w on Q))`, with the reward fine-tuning stage
//! ([`crate::meta::finetune::adjoint`]), and the ensemble is sampled from the tilted field (no
//! guidance). One tilt per test, with the whole sample; the members then follow the rejection
//! rule like the other detectors' (they differ by their source samples). Far costlier than
//! guidance (a fine-tuning run per test); `BENCHMARKS.md` compares the two.

use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::detectron::member_logits;
use super::ensemble::Ensemble;
use super::meta::{GuidanceSettings, STREAM_SOURCE};
use super::pq::{self, PqTable};
use crate::arch::{Arch, Layout};
use crate::backend::{TensorRead, values};
use crate::classifier::{self, Input};
use crate::meta::finetune::adjoint::{self, AdjointSettings, MomentRows, StateReward};
use crate::meta::finetune::memoryless::SourceMoments;
use crate::meta::sample::MetaModel;
use crate::optim::AdamSettings;
use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;

/// PRNG stream of the tilt's source samples.
const STREAM_TILT_SOURCE: u64 = 44;
/// PRNG stream of the tilt's SDE noise.
const STREAM_TILT_NOISE: u64 = 45;
/// PRNG stream of the tilt's P minibatches.
const STREAM_TILT_P: u64 = 46;
/// Index offset of the tilt's iteration seeds (kept apart from the members' round seeds).
const TILT_SEEDS: u64 = 1 << 20;

/// The adjoint matching settings of a per-test tilt.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TiltSettings {
    /// Fine-tuning iterations per test.
    pub iterations: usize,
    /// Reward multiplier λ of the tilt `p_base · exp(λ r)`.
    pub lambda: f64,
    /// Adam's learning rate (burn's Adam constants, as `nmflow finetune`).
    pub lr: f64,
    /// Trajectories per iteration.
    pub trajectories: usize,
    /// Euler–Maruyama steps per trajectory, from t0 = 0.1.
    pub steps: usize,
}

/// Detectron's objective on one test's sample as a reward on standardized states.
struct ObjectiveReward<'a, B: AutodiffBackend> {
    arch: &'a Arch,
    layout: &'a Layout,
    table: &'a PqTable<B::InnerBackend>,
    sd: Tensor<B::InnerBackend, 2>,
    mu: Tensor<B::InnerBackend, 2>,
    q: &'a [usize],
    batch: usize,
    lambda: f64,
    rng: Rng,
}

impl<B: AutodiffBackend> ObjectiveReward<'_, B> {
    fn batch_for(&mut self, runs: usize) -> (Vec<i64>, Vec<f32>) {
        let mut rows = Vec::with_capacity(runs * self.batch);
        let mut weights = Vec::with_capacity(runs * self.batch);
        for _ in 0..runs {
            pq::push_objective(
                &mut rows,
                &mut weights,
                self.table.p_len,
                self.batch,
                self.lambda,
                self.q,
                &mut self.rng,
            );
        }
        (rows, weights)
    }
}

impl<B: AutodiffBackend> StateReward<B> for ObjectiveReward<'_, B> {
    fn grad(&mut self, states: Tensor<B::InnerBackend, 2>) -> (Tensor<B::InnerBackend, 2>, f64) {
        let n = states.dims()[0];
        let (rows, weights) = self.batch_for(n);
        let (x, target) = self.table.gather(&rows, n);
        let device = states.device();
        let w = Tensor::from_data(TensorData::new(weights, [n, self.batch, 1]), &device);
        let raw = states * self.sd.clone() + self.mu.clone();
        let (g, loss) = pq::state_gradient::<B>(self.arch, self.layout, raw, x, target, w);
        // Each row's loss is its own term of the sum; the reward is minus it.
        (g * self.sd.clone() * -1.0, -loss / n as f64)
    }

    fn value(&mut self, states: Tensor<B, 2>) -> Tensor<B, 1> {
        let n = states.dims()[0];
        let (rows, weights) = self.batch_for(n);
        let (x, target) = self.table.gather(&rows, n);
        let device = states.device();
        let w = Tensor::<B::InnerBackend, 3>::from_data(
            TensorData::new(weights, [n, self.batch, 1]),
            &device,
        );
        let raw =
            states * Tensor::from_inner(self.sd.clone()) + Tensor::from_inner(self.mu.clone());
        let params = classifier::params_from_tensor(self.layout, raw);
        let logits = classifier::forward(self.arch, &params, Input::PerRun(Tensor::from_inner(x)));
        pq::weighted_ce(logits, Tensor::from_inner(target), Tensor::from_inner(w)).neg() / n as f64
    }
}

/// Grows every test's ensemble from its own tilt of `model` (see [`super::detectron::grow`] for
/// the arguments; `g` gives the objective's λ and batch, the rule and the members' Euler steps).
///
/// # Errors
/// [`TensorRead`] when the backend's values cannot be read back.
#[allow(clippy::too_many_arguments)]
pub fn grow<B: AutodiffBackend>(
    model: &MetaModel<B>,
    arch: &Arch,
    table: &PqTable<B::InnerBackend>,
    samples: &Tensor<B::InnerBackend, 3>,
    ensembles: &mut [Ensemble],
    seeds: &[u64],
    tilt: &TiltSettings,
    g: &GuidanceSettings,
    device: &B::Device,
    on_member: &mut dyn FnMut(usize),
) -> Result<(), TensorRead> {
    let n = samples.dims()[1];
    let layout = &model.layout;
    let p = layout.num_params();
    let (sd, mu) = model.normalizer.scale_rows::<B::InnerBackend>(device);
    let moments = SourceMoments::of(&model.config.source, layout, &model.normalizer);
    let rows = MomentRows::<B::InnerBackend>::new(&moments, device);
    let frozen = model.field.clone().no_grad();
    let settings = AdjointSettings {
        lambda: tilt.lambda,
        steps: tilt.steps,
        t0: 0.1,
    };
    for t in 0..ensembles.len() {
        if ensembles[t].done() {
            continue;
        }
        let q = table.remaining_rows(t, n, &ensembles[t]);
        let mut fine = model.field.clone();
        let mut optim = AdamSettings::BURN
            .burn_config()
            .init::<B, crate::meta::field::VectorField<B>>();
        for it in 0..tilt.iterations {
            let seed = derive_seed(seeds[t], TILT_SEEDS + it as u64);
            let mut x0 = Vec::with_capacity(tilt.trajectories * p);
            model.config.source.sample_into(
                layout,
                tilt.trajectories,
                &mut Rng::new(seed, STREAM_TILT_SOURCE),
                &mut x0,
            );
            model.normalizer.apply(&mut x0);
            let x0 = Tensor::<B::InnerBackend, 2>::from_data(
                TensorData::new(x0, [tilt.trajectories, p]),
                device,
            );
            let mut reward = ObjectiveReward::<B> {
                arch,
                layout,
                table,
                sd: sd.clone(),
                mu: mu.clone(),
                q: &q,
                batch: g.batch,
                lambda: g.lambda,
                rng: Rng::new(seed, STREAM_TILT_P),
            };
            let (loss, _) = adjoint::adjoint_loss(
                &fine,
                &frozen,
                &rows,
                settings,
                x0,
                &mut Rng::new(seed, STREAM_TILT_NOISE),
                &mut reward,
            );
            let grads = GradientsParams::from_grads(loss.backward(), &fine);
            fine = optim.step(tilt.lr, fine, grads);
        }
        let field = fine.valid();
        let steps = g.steps.max(1);
        let mut round = 0;
        while !ensembles[t].done() {
            let mut x0 = Vec::with_capacity(p);
            model.config.source.sample_into(
                layout,
                1,
                &mut Rng::new(derive_seed(seeds[t], round), STREAM_SOURCE),
                &mut x0,
            );
            model.normalizer.apply(&mut x0);
            let mut z =
                Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(x0, [1, p]), device);
            for k in 0..steps {
                let time = k as f32 / steps as f32;
                let v = field.forward(z.clone(), Tensor::full([1, 1], time, device));
                z = z + v / steps as f64;
            }
            let w = values::<f32>((z * sd.clone() + mu.clone()).into_data())?;
            let logits = member_logits::<B::InnerBackend>(arch, layout, &w, samples, &[t], device)?;
            ensembles[t].add(logits, g.rule);
            on_member(t);
            round += 1;
        }
    }
    Ok(())
}
