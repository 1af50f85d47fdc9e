//! One iteration of adjoint matching (METHOD.md §5), and the direct-backpropagation baseline.
//!
//! Adjoint matching: (1) Euler–Maruyama trajectories of the fine-tuned drift under the memoryless
//! schedule, without gradients; (2) the lean adjoint integrated backwards from
//! `ã(1) = −λ∇r(X_1)` with one vector–Jacobian product of the base field per step (the drift's
//! `−x/t` part in closed form); (3) the
//! regression loss `mean_k ‖2(v_fine − v_base)/(cσ) + cσ·ã‖²` over the trajectories' points,
//! whose gradient (in the fine-tuned field only) the caller applies.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};

pub use super::memoryless::{MomentRows, memoryless_path};
use super::memoryless::{grid, sigma};
use crate::flow::solver::{Solver, integrate};
use crate::meta::field::VectorField;
use crate::meta::source::standard_normal;
use nmflow_runtime::Rng;

/// A reward on states (standardized rows `[n, P]`), with its gradient.
pub trait StateReward<B: AutodiffBackend> {
    /// The gradient of the reward of each row with respect to that row (`[n, P]`, inner backend)
    /// and the mean reward.
    fn grad(&mut self, states: Tensor<B::InnerBackend, 2>) -> (Tensor<B::InnerBackend, 2>, f64);

    /// The mean reward of the rows, differentiable (the direct baseline backpropagates it).
    fn value(&mut self, states: Tensor<B, 2>) -> Tensor<B, 1>;
}

/// Settings of one adjoint matching iteration.
#[derive(Clone, Copy, Debug)]
pub struct AdjointSettings {
    /// Reward multiplier λ (the tilt is `p_base · exp(λ r)`).
    pub lambda: f64,
    /// Euler–Maruyama steps from `t0` to 1.
    pub steps: usize,
    /// First time of the SDE (the ODE carries the source sample to it).
    pub t0: f64,
}

/// What an iteration measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Mean reward of the trajectories' endpoints (adjoint matching) or of the rollouts (direct).
    pub reward: f64,
}

fn times<B: Backend>(n: usize, t: f64, device: &B::Device) -> Tensor<B, 2> {
    Tensor::full([n, 1], t as f32, device)
}

/// `[n, P]` standard normal draws from `rng`.
pub(super) fn normals<B: Backend>(
    n: usize,
    p: usize,
    rng: &mut Rng,
    device: &B::Device,
) -> Tensor<B, 2> {
    let v: Vec<f32> = (0..n * p).map(|_| standard_normal(rng)).collect();
    Tensor::from_data(TensorData::new(v, [n, p]), device)
}

/// The adjoint matching loss of one iteration from the standardized source samples `x0`
/// (`[n, P]`); the noise comes from `noise`. Backpropagate the returned loss into `fine`.
pub fn adjoint_loss<B: AutodiffBackend>(
    fine: &VectorField<B>,
    base: &VectorField<B>,
    moments: &MomentRows<B::InnerBackend>,
    settings: AdjointSettings,
    x0: Tensor<B::InnerBackend, 2>,
    noise: &mut Rng,
    reward: &mut dyn StateReward<B>,
) -> (Tensor<B, 1>, StepStats) {
    let [n, p] = x0.dims();
    let device = x0.device();
    let k_steps = settings.steps.max(1);
    let ts = grid(settings.t0, k_steps);
    let h = (1.0 - settings.t0) / k_steps as f64;
    let c = moments.scale.clone();
    // (1) Trajectories of the fine-tuned drift, no gradients.
    let xs = memoryless_path(
        &fine.valid(),
        moments,
        settings.t0,
        settings.steps,
        x0,
        &mut || normals(n, p, noise, &device),
    );
    // (2) The lean adjoint, backwards from ã(1) = −λ∇r(X_1).
    let (grad_r, reward_mean) = reward.grad(xs[k_steps].clone());
    let mut a = grad_r * (-settings.lambda);
    let mut adjoints = vec![a.clone()];
    for k in (0..k_steps).rev() {
        let t = ts[k + 1];
        let x = Tensor::<B, 2>::from_inner(xs[k + 1].clone()).require_grad();
        let v = base.forward(x.clone(), Tensor::from_inner(times(n, t, &device)));
        let dot = (v * Tensor::from_inner(a.clone())).sum();
        let grads = dot.backward();
        let vjp_v = x.grad(&grads).unwrap_or_else(|| a.zeros_like());
        // dã/dt = −ãᵀ∇b with ∇b = 2∇v − I/t: the −I/t part is integrated exactly (a factor
        // t_k/t_{k+1}), the 2∇v part by an Euler step; plain Euler on both underestimates the
        // adjoint near t0 by a quarter at 20 steps (checked against the closed form of a Gaussian).
        a = (a + vjp_v * (2.0 * h)) * (ts[k] / t);
        adjoints.push(a.clone());
    }
    adjoints.reverse();
    // (3) The regression at t_0 … t_{K−1} (σ vanishes at t = 1).
    let x_all = Tensor::cat(xs[..k_steps].to_vec(), 0);
    let a_all = Tensor::cat(adjoints[..k_steps].to_vec(), 0);
    let t_all: Vec<f32> = ts[..k_steps]
        .iter()
        .flat_map(|&t| std::iter::repeat_n(t as f32, n))
        .collect();
    let s_all: Vec<f32> = ts[..k_steps]
        .iter()
        .flat_map(|&t| std::iter::repeat_n(sigma(t) as f32, n))
        .collect();
    let rows = n * k_steps;
    let t_all = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(t_all, [rows, 1]), &device);
    let s_all = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(s_all, [rows, 1]), &device);
    let cs = c.clone() * s_all;
    let v_base = base.valid().forward(x_all.clone(), t_all.clone());
    // 2(v_f − v_b)/(cσ) + cσ·ã: the constant part first.
    let target = a_all * cs.clone() - v_base * 2.0 / cs.clone();
    let v_fine = fine.forward(Tensor::from_inner(x_all), Tensor::from_inner(t_all));
    let residual = v_fine * Tensor::from_inner(cs.recip() * 2.0) + Tensor::from_inner(target);
    let loss = residual.powi_scalar(2).sum_dim(1).mean();
    (
        loss,
        StepStats {
            reward: reward_mean,
        },
    )
}

/// Extra terms of the direct objective ([`direct_loss`]).
#[derive(Clone, Copy)]
pub struct DirectTerms<'a, B: AutodiffBackend> {
    /// The frozen base field and the weight of the control cost (none: no cost).
    pub control: Option<(&'a VectorField<B>, f64)>,
    /// Weight τ of the entropy estimate (0: none).
    pub entropy: f64,
}

/// The mean over rows of the log distance to the nearest other row (`[n, P]`, n ≥ 2).
pub fn log_nearest_distance<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = x.dims();
    let sq = x.clone().powi_scalar(2).sum_dim(1);
    let gram = x.clone().matmul(x.transpose());
    let d2 = sq.clone() + sq.transpose() - gram * 2.0;
    // The diagonal must never be the nearest: lift it above every other entry.
    let eye = Tensor::<B, 2>::eye(n, &d2.device());
    let lift = d2.clone().detach().max().unsqueeze::<2>() * 2.0 + 1.0;
    let nearest = (d2 + eye * lift).min_dim(1).clamp_min(1e-12);
    nearest.log().mean() * 0.5
}

/// The direct baseline: λ × minus the mean reward of the classifiers the fine-tuned field's own
/// sampler (`solver`, `steps`; fixed-step) makes from `x0`, differentiated through every step.
///
/// With `control = Some((base, c))` it adds the control cost `c · Σ_k h_k · mean ‖v_fine − v_base‖²`
/// over the rollout's field evaluations (standardized units): the deterministic counterpart of
/// the KL term of the tilted objective, which charges every sample for how far its own path
/// leaves the base's. Without it nothing stops the samples from collapsing onto one high-reward
/// region; with it, a sample moves only as far as the reward pays for (for one Euler step and
/// the reward `−½‖x − x*‖²`, exactly the fraction `λ/(λ + 2c)` of the way to `x*`).
///
/// With `entropy = τ > 0` it subtracts `τ × mean_i log ρ_i`, where `ρ_i` is the distance from
/// rollout `i`'s endpoint to its nearest other endpoint: the Kozachenko–Leonenko estimate of the
/// samples' entropy (up to the factor P and a constant), so the objective becomes
/// `λ·E[r] + τ'·H`, whose optimum is a spread-out tilt rather than one point.
pub fn direct_loss<B: AutodiffBackend>(
    fine: &VectorField<B>,
    lambda: f64,
    solver: Solver,
    steps: usize,
    x0: Tensor<B::InnerBackend, 2>,
    reward: &mut dyn StateReward<B>,
    terms: DirectTerms<'_, B>,
) -> (Tensor<B, 1>, StepStats) {
    let DirectTerms { control, entropy } = terms;
    let [n, _] = x0.dims();
    let device = x0.device();
    let mut penalty: Option<Tensor<B, 1>> = None;
    // A fixed-step solver evaluates the field `steps × stages` times with weights summing to 1
    // per step, so each evaluation carries h / stages of the time integral (for the adaptive
    // Dopri5, whose evaluation count varies, an approximation).
    let weight = 1.0 / (steps.max(1) * solver.stages()) as f64;
    let mut field = |x: Tensor<B, 2>, t: f32| {
        let tt = times::<B>(n, f64::from(t), &device);
        let v = fine.forward(x.clone(), tt.clone());
        if let Some((base, c)) = control {
            let dv = (v.clone() - base.forward(x, tt))
                .powi_scalar(2)
                .sum_dim(1)
                .mean();
            let term = dv * (c * weight);
            penalty = Some(match penalty.take() {
                Some(p) => p + term,
                None => term,
            });
        }
        v
    };
    let (end, _) = integrate(
        solver,
        steps,
        Tensor::<B, 2>::from_inner(x0),
        &mut field,
        &mut |_, _| {},
    );
    let spread = (entropy > 0.0 && n > 1).then(|| log_nearest_distance(end.clone()) * entropy);
    let r = reward.value(end);
    let value: f32 = r.clone().into_scalar().elem();
    let mut loss = r.neg() * lambda;
    if let Some(p) = penalty {
        loss = loss + p;
    }
    if let Some(h) = spread {
        loss = loss - h;
    }
    (
        loss,
        StepStats {
            reward: f64::from(value),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};
    use crate::meta::config::LrSchedule;
    use crate::meta::field::{FieldConfig, FieldKind};
    use crate::meta::finetune::memoryless::SourceMoments;
    use crate::optim::AdamSettings;
    use burn::module::Module;
    use burn::optim::{GradientsParams, Optimizer};

    type Ad = CpuAutodiff;

    /// r(x) = −½‖x − x*‖².
    struct Quadratic(f32);

    impl StateReward<Ad> for Quadratic {
        fn grad(&mut self, x: Tensor<Cpu, 2>) -> (Tensor<Cpu, 2>, f64) {
            let d = x - self.0;
            let r: f32 = (d.clone().powi_scalar(2).sum_dim(1).mean() * -0.5)
                .into_scalar()
                .elem();
            (d.neg(), f64::from(r))
        }

        fn value(&mut self, x: Tensor<Ad, 2>) -> Tensor<Ad, 1> {
            (x - self.0).powi_scalar(2).sum_dim(1).mean() * -0.5
        }
    }

    fn gaussian(n: usize, dim: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n * dim).map(|_| standard_normal(rng)).collect()
    }

    /// Mean and standard deviation over all coordinates of ODE samples of `field` (Euler, 50
    /// steps from N(0, I)).
    fn ode_moments(field: &VectorField<Cpu>, n: usize, dim: usize, seed: u64) -> (f64, f64) {
        let dev = Default::default();
        let x0 = gaussian(n, dim, &mut Rng::new(seed, 0));
        let mut x = Tensor::<Cpu, 2>::from_data(TensorData::new(x0, [n, dim]), &dev);
        for k in 0..50 {
            let t = times::<Cpu>(n, k as f64 / 50.0, &dev);
            x = x.clone() + field.forward(x, t) / 50.0;
        }
        let v = crate::backend::values::<f32>(x.into_data()).unwrap();
        let m = v.iter().map(|&a| f64::from(a)).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&a| (f64::from(a) - m).powi(2)).sum::<f64>() / v.len() as f64;
        (m, var.sqrt())
    }

    /// A base N(m, s²) learned by flow matching from N(0, I) and the reward −½(x − x*)² with
    /// multiplier λ: the tilt is Gaussian, precision 1/s² + λ, mean (m/s² + λx*)/(1/s² + λ).
    /// Adjoint matching must carry the sampler there: the spread within sampling error; the mean
    /// most of the way (measured: 84–90 % of the shift with 20 steps from t0 = 0.1; the rest is
    /// the control at early times, where σ is large and the regression weights it little).
    #[test]
    fn adjoint_matching_tilts_a_gaussian_towards_its_closed_form() {
        let dev = Default::default();
        let _seeded = crate::backend::seed_lock();
        Ad::seed(&dev, 0);
        let (dim, m, s) = (2usize, 1.0f32, 0.5f32);
        let cfg = FieldConfig {
            kind: FieldKind::Mlp,
            set: None,
            jko: None,
            dim,
            hidden: 64,
            depth: 2,
            time_dim: 8,
            step_input: false,
            diagonal: false,
        };
        let mut base = cfg.init::<Ad>(&dev);
        let mut optim = AdamSettings::BURN
            .burn_config()
            .init::<Ad, VectorField<Ad>>();
        let mut rng = Rng::new(1, 0);
        let (n, base_steps) = (256, 3000);
        for step in 0..base_steps {
            let x0 = gaussian(n, dim, &mut rng);
            let x1: Vec<f32> = gaussian(n, dim, &mut rng)
                .iter()
                .map(|z| m + s * z)
                .collect();
            let t: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
            let xt: Vec<f32> = (0..n * dim)
                .map(|i| t[i / dim] * x1[i] + (1.0 - t[i / dim]) * x0[i])
                .collect();
            let u: Vec<f32> = (0..n * dim).map(|i| x1[i] - x0[i]).collect();
            let xt = Tensor::<Ad, 2>::from_data(TensorData::new(xt, [n, dim]), &dev);
            let tt = Tensor::<Ad, 2>::from_data(TensorData::new(t, [n, 1]), &dev);
            let u = Tensor::<Ad, 2>::from_data(TensorData::new(u, [n, dim]), &dev);
            let loss = (base.forward(xt, tt) - u).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &base);
            base = optim.step(
                LrSchedule::Cosine.at(2e-3, step + 1, base_steps),
                base,
                grads,
            );
        }
        let (bm, bs) = ode_moments(&base.valid(), 8000, dim, 7);
        assert!(
            (bm - 1.0).abs() < 0.05 && (bs - 0.5).abs() < 0.05,
            "base {bm} {bs}"
        );

        let (lambda, target) = (2.0f64, -1.0f64);
        let precision = 1.0 / (bs * bs) + lambda;
        let tilt_mean = (bm / (bs * bs) + lambda * target) / precision;
        let tilt_std = (1.0 / precision).sqrt();
        let moments = SourceMoments {
            mean: vec![0.0; dim],
            scale: vec![1.0; dim],
            exact: true,
        };
        let rows = MomentRows::<Cpu>::new(&moments, &dev);
        let frozen = base.clone().no_grad();
        let mut fine = base.clone();
        let mut optim = AdamSettings::BURN
            .burn_config()
            .init::<Ad, VectorField<Ad>>();
        let settings = AdjointSettings {
            lambda,
            steps: 20,
            t0: 0.1,
        };
        let mut reward = Quadratic(target as f32);
        let iterations = 500;
        for it in 0..iterations {
            let x0 = Tensor::<Cpu, 2>::from_data(
                TensorData::new(gaussian(128, dim, &mut Rng::new(it as u64, 1)), [128, dim]),
                &dev,
            );
            let (loss, _) = adjoint_loss(
                &fine,
                &frozen,
                &rows,
                settings,
                x0,
                &mut Rng::new(it as u64, 2),
                &mut reward,
            );
            let grads = GradientsParams::from_grads(loss.backward(), &fine);
            fine = optim.step(LrSchedule::Cosine.at(1e-3, it + 1, iterations), fine, grads);
        }
        let (fm, fs) = ode_moments(&fine.valid(), 8000, dim, 9);
        let moved = (bm - fm) / (bm - tilt_mean);
        assert!(
            (0.75..1.1).contains(&moved),
            "the mean moved {moved:.2} of the way: {bm:.3} → {fm:.3}, closed form {tilt_mean:.3}"
        );
        assert!(
            (fs - tilt_std).abs() < 0.04,
            "std {fs:.3} vs closed form {tilt_std:.3} (base {bs:.3})"
        );
    }

    /// A random 2-D MLP field (`seed`) fine-tuned by the direct method through one Euler step
    /// towards r = −½‖x − x*‖² (multiplier λ) with `terms(base)`; returns the base and the
    /// fine-tuned field.
    fn direct_one_step(
        seed: u64,
        lambda: f64,
        target: f32,
        terms: impl Fn(&VectorField<Ad>) -> DirectTerms<'_, Ad>,
    ) -> (VectorField<Ad>, VectorField<Ad>) {
        let dev = Default::default();
        let _seeded = crate::backend::seed_lock();
        Ad::seed(&dev, seed);
        let cfg = FieldConfig {
            kind: FieldKind::Mlp,
            set: None,
            jko: None,
            dim: 2,
            hidden: 64,
            depth: 2,
            time_dim: 8,
            step_input: false,
            diagonal: false,
        };
        let mut fine = cfg.init::<Ad>(&dev);
        let base = fine.clone().no_grad();
        let mut optim = AdamSettings::BURN
            .burn_config()
            .init::<Ad, VectorField<Ad>>();
        let iterations = 1500;
        for it in 0..iterations {
            let x0 = Tensor::<Cpu, 2>::from_data(
                TensorData::new(gaussian(128, 2, &mut Rng::new(it as u64, 1)), [128, 2]),
                &dev,
            );
            let (loss, _) = direct_loss(
                &fine,
                lambda,
                Solver::Euler,
                1,
                x0,
                &mut Quadratic(target),
                terms(&base),
            );
            let grads = GradientsParams::from_grads(loss.backward(), &fine);
            fine = optim.step(LrSchedule::Cosine.at(3e-3, it + 1, iterations), fine, grads);
        }
        (base, fine)
    }

    /// One Euler step of `field` from `n` fresh standard normal draws, as values.
    fn endpoints(field: &VectorField<Ad>, n: usize) -> Vec<f32> {
        let dev = Default::default();
        let x0 = Tensor::<Cpu, 2>::from_data(
            TensorData::new(gaussian(n, 2, &mut Rng::new(99, 1)), [n, 2]),
            &dev,
        );
        let end = x0.clone() + field.valid().forward(x0, times::<Cpu>(n, 0.0, &dev));
        crate::backend::values::<f32>(end.into_data()).unwrap()
    }

    /// One Euler step and the reward −½‖x − x*‖² with multiplier λ: with the control cost c,
    /// each sample's optimum moves the fraction λ/(λ + 2c) of the way from the base's endpoint
    /// to x* (minimize λ/2‖x_b + δ − x*‖² + c‖δ‖²); without it, all the way. The fine-tuned
    /// field must land there per sample, from a random (untrained) base field.
    #[test]
    fn the_control_cost_moves_each_sample_the_closed_form_fraction() {
        let (lambda, target) = (1.0f64, 2.0f32);
        for (c, expected) in [(0.5f64, 0.5f64), (1.5, 0.25), (0.0, 1.0)] {
            let (base, fine) = direct_one_step(3, lambda, target, |base| DirectTerms {
                control: (c > 0.0).then_some((base, c)),
                entropy: 0.0,
            });
            // The least-squares fraction of (x* − x_b) that the samples moved.
            let (end_b, end_f) = (endpoints(&base, 512), endpoints(&fine, 512));
            let (mut dot, mut norm) = (0.0f64, 0.0f64);
            for (b, f) in end_b.iter().zip(&end_f) {
                dot += f64::from((f - b) * (target - b));
                norm += f64::from((target - b) * (target - b));
            }
            let fraction = dot / norm;
            assert!(
                (fraction - expected).abs() < 0.04,
                "control cost {c}: the samples moved {fraction:.3} of the way, closed form {expected}"
            );
        }
    }

    #[test]
    fn the_log_nearest_distance_matches_brute_force() {
        let dev = Default::default();
        let rows = [[0.0f32, 0.0], [3.0, 4.0], [0.0, 1.0], [6.0, 8.0]];
        let x = Tensor::<Cpu, 2>::from_data(TensorData::new(rows.concat(), [4, 2]), &dev);
        let got: f32 = log_nearest_distance(x).into_scalar().elem();
        // Nearest distances: 1, √18 (to (0, 1)), 1, 5.
        let want = (18.0f64.sqrt().ln() + 5.0f64.ln()) / 4.0;
        assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// One Euler step, r = −½‖x − x*‖² in 2-D and the entropy bonus τ·mean log ρ: since the
    /// Kozachenko–Leonenko entropy is P·mean log ρ + const, the optimum of E[r] + (τ/P)·H is
    /// N(x*, (τ/P)·I). Without the bonus the samples collapse onto x*.
    #[test]
    fn the_entropy_bonus_keeps_the_closed_form_spread() {
        for (tau, want_std) in [(0.5f64, 0.5f64), (0.0, 0.0)] {
            let (_, fine) = direct_one_step(5, 1.0, 1.0, |_| DirectTerms {
                control: None,
                entropy: tau,
            });
            let v = endpoints(&fine, 2000);
            let m = v.iter().map(|&a| f64::from(a)).sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|&a| (f64::from(a) - m).powi(2)).sum::<f64>() / v.len() as f64)
                .sqrt();
            assert!((m - 1.0).abs() < 0.1, "τ {tau}: mean {m:.3}, want 1");
            assert!(
                (sd - want_std).abs() < 0.15,
                "τ {tau}: std {sd:.3}, closed form {want_std}"
            );
        }
    }
}
