//! Training pairs of the flow-matching objectives: draws of `(x_t, t, u_t)` for NM-CFM (linear
//! path, natural, independent or minibatch-OT coupling), NM-MMFM (a spline through every
//! checkpoint) and NM-JKO (consecutive checkpoints), each augmented by a random hidden-unit
//! permutation. All vectors are standardized weights ([`super::normalize`]).

use super::config::{Coupling, MetaConfig, Method};
use super::normalize::Normalizer;
use super::source::standard_normal;
use super::symmetry::HiddenLayers;
use super::trajectories::Trajectories;
use crate::arch::Layout;
use crate::flow::path::{Spline, linear};
use nmflow_runtime::Rng;

/// A minibatch `(xt [n, P], t [n], ut [n, P], runs [n])`: `runs[s]` is the index (into the
/// sampler's runs) of the run pair `s` was drawn from (its task, for a conditioned meta-model).
pub type Batch = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<usize>);

/// A flow-matching sampler of `(xt, t, ut)` over a set of runs (standardized weights).
pub struct PairSampler<'a> {
    cfg: &'a MetaConfig,
    runs: &'a Trajectories,
    splines: Vec<Spline>,
    layout: &'a Layout,
    normalizer: &'a Normalizer,
    symmetry: Option<HiddenLayers>,
}

impl<'a> PairSampler<'a> {
    /// Prepares the sampler (fits one spline per run for NM-MMFM).
    pub fn new(
        cfg: &'a MetaConfig,
        runs: &'a Trajectories,
        layout: &'a Layout,
        normalizer: &'a Normalizer,
    ) -> Self {
        let splines = if cfg.method == Method::Mmfm {
            (0..runs.len())
                .map(|i| Spline::fit(cfg.spline, &runs.times, runs.trajectory(i), runs.num_params))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            cfg,
            runs,
            splines,
            layout,
            normalizer,
            symmetry: if cfg.permute {
                HiddenLayers::of(layout)
            } else {
                None
            },
        }
    }

    /// Draws `n` samples: returns `(xt [n, P], t [n], ut [n, P], runs [n])`.
    pub fn draw(&self, n: usize, rng: &mut Rng) -> Batch {
        let mut batch = Batch::default();
        self.draw_into(n, rng, &mut batch);
        batch
    }

    /// [`Self::draw`] into reused buffers (the same draws).
    pub fn draw_into(&self, n: usize, rng: &mut Rng, batch: &mut Batch) {
        if self.cfg.method == Method::Cfm && self.cfg.coupling == Coupling::Ot {
            *batch = self.draw_ot(n, rng);
            return;
        }
        let p = self.runs.num_params;
        let k_last = self.runs.checkpoints() - 1;
        let (xt, ts, ut, drawn) = batch;
        // Every value is overwritten below.
        xt.resize(n * p, 0.0);
        ut.resize(n * p, 0.0);
        ts.clear();
        drawn.clear();
        let mut eps = vec![0.0f32; p];
        let mut x0 = Vec::with_capacity(p);
        for s in 0..n {
            let i = rng.below(u32::try_from(self.runs.len()).unwrap_or(u32::MAX)) as usize;
            drawn.push(i);
            let t = rng.uniform();
            ts.push(t);
            if self.cfg.sigma != 0.0 {
                // Noise is drawn only when it is used (σ = 0 paths need none).
                for e in &mut eps {
                    *e = standard_normal(rng);
                }
            }
            let (xs, us) = (&mut xt[s * p..(s + 1) * p], &mut ut[s * p..(s + 1) * p]);
            match self.cfg.method {
                Method::Jko => {
                    // (xt, ut) = (y, x): consecutive checkpoints θ_{k+1}, θ_k of one run.
                    let k = rng.below(u32::try_from(k_last).unwrap_or(1)) as usize;
                    xs.copy_from_slice(self.runs.point(i, k + 1));
                    us.copy_from_slice(self.runs.point(i, k));
                }
                Method::Cfm => {
                    x0.clear();
                    match self.cfg.coupling {
                        Coupling::Natural => x0.extend_from_slice(self.runs.point(i, 0)),
                        Coupling::Independent | Coupling::Ot => {
                            self.cfg.source.sample_into(self.layout, 1, rng, &mut x0);
                            self.normalizer.apply(&mut x0);
                        }
                    }
                    linear(
                        &x0,
                        self.runs.point(i, k_last),
                        &eps,
                        t,
                        self.cfg.sigma,
                        xs,
                        us,
                    );
                }
                Method::Mmfm => {
                    self.splines[i].eval(t, xs, us);
                    for (x, e) in xs.iter_mut().zip(&eps) {
                        *x += self.cfg.sigma * e;
                    }
                }
            }
            if let Some(sym) = &self.symmetry {
                let perms = sym.draw(rng);
                sym.apply(&perms, xs);
                sym.apply(&perms, us);
            }
        }
    }
}

impl PairSampler<'_> {
    /// NM-CFM with the minibatch OT coupling: `n` source samples and `n` runs' final weights,
    /// paired by the assignment that minimizes the total squared distance.
    fn draw_ot(&self, n: usize, rng: &mut Rng) -> Batch {
        let p = self.runs.num_params;
        let k_last = self.runs.checkpoints() - 1;
        let runs: Vec<usize> = (0..n)
            .map(|_| rng.below(u32::try_from(self.runs.len()).unwrap_or(u32::MAX)) as usize)
            .collect();
        let mut x0 = Vec::with_capacity(n * p);
        self.cfg.source.sample_into(self.layout, n, rng, &mut x0);
        self.normalizer.apply(&mut x0);
        let x1 = |j: usize| self.runs.point(runs[j], k_last);
        let cost: Vec<f64> = (0..n * n)
            .map(|ab| {
                let (a, b) = (&x0[(ab / n) * p..(ab / n + 1) * p], x1(ab % n));
                a.iter().zip(b).map(|(u, v)| f64::from(u - v).powi(2)).sum()
            })
            .collect();
        let pair = crate::flow::assignment::min_cost_assignment(&cost, n);
        let drawn: Vec<usize> = pair.iter().map(|&j| runs[j]).collect();
        let mut xt = vec![0.0f32; n * p];
        let mut ut = vec![0.0f32; n * p];
        let mut ts = Vec::with_capacity(n);
        let mut eps = vec![0.0f32; p];
        for s in 0..n {
            let t = rng.uniform();
            ts.push(t);
            if self.cfg.sigma != 0.0 {
                for e in &mut eps {
                    *e = standard_normal(rng);
                }
            }
            let (xs, us) = (&mut xt[s * p..(s + 1) * p], &mut ut[s * p..(s + 1) * p]);
            linear(
                &x0[s * p..(s + 1) * p],
                x1(pair[s]),
                &eps,
                t,
                self.cfg.sigma,
                xs,
                us,
            );
            if let Some(sym) = &self.symmetry {
                let perms = sym.draw(rng);
                sym.apply(&perms, xs);
                sym.apply(&perms, us);
            }
        }
        (xt, ts, ut, drawn)
    }
}
