//! The fused CPU trainer of a zoo's MLP classifiers (`--engine fused`).
//!
//! The same training as [`super::train::train_runs`] (each run's own initialization, data order,
//! minibatches, label map; mean cross-entropy; PyTorch's Adam or SGD), written out by hand instead
//! of through burn's autodiff: per run and step, the minibatch's stored pixels (one byte each,
//! [`PixelSplit`]) are copied into a small buffer that stays in cache, the forward and backward
//! products are single-threaded GEMMs on that run's own buffers
//! ([`crate::linalg::matmul_serial`]), and the optimizer update is one pass over the run's flat
//! parameters. The input scaling `x = α·p + β` is folded into the first layer's products
//! (`x·wᵀ = α·(p·wᵀ) + β·Σw`, and the weight gradient likewise), so a minibatch moves a quarter of
//! the bytes the scaled inputs would. Runs are independent, so a step
//! spreads them over rayon's pool; each run's arithmetic is the same whatever the number of
//! threads, so a seed gives the same bytes on any thread count.
//!
//! Parameters stay in the zoo's flat layout ([`crate::arch::Layout`]: per layer the weight
//! `[out][in]`, then the bias), which is also what a checkpoint records.
//!
//! | per run and step | burn engine | fused engine |
//! |---|---|---|
//! | minibatch | scaled inputs gathered for the whole shard into a new tensor | stored pixels copied into the run's reused buffer |
//! | products | batched over runs, autodiff graph | three GEMMs per layer on reused buffers |
//! | loss check | every 25 steps, for the shard | every step, per run |

use rayon::prelude::*;

use super::config::{Optimizer, ZooConfig};
use crate::data::dataset::{PixelScaling, Split};
use crate::linalg::{View, matmul_serial};
use nmflow_runtime::Rng;

use super::train::STREAM_DATA;

/// Steps between two measurements of the minibatch accuracy (as the burn engine).
const MEASURE_EVERY: usize = 25;

/// What a run diverged at: `(index of the run in the batch, step)`.
pub type Divergence = (usize, usize);

/// The parameters after training and the recorded checkpoints.
pub struct FusedOutcome {
    /// Final parameters, `[runs, P]` row-major in layout order.
    pub params: Vec<f32>,
    /// Checkpoints at `record_at`, `[runs, K, P]` row-major.
    pub checkpoints: Vec<f32>,
}

/// A training split as stored pixels: input value `x = alpha·p + beta` of pixel `p` (the view's
/// [`PixelScaling`], up to rounding).
pub struct PixelSplit<'a> {
    codes: Vec<u8>,
    y: &'a [u8],
    alpha: f32,
    beta: f32,
}

impl<'a> PixelSplit<'a> {
    /// The pixels of `split`, whose inputs `scaling` made; `None` when an input is not the
    /// scaling of a pixel (bit for bit), i.e. the split was not made by `scaling`.
    pub fn new(split: &'a Split, scaling: PixelScaling) -> Option<Self> {
        let mut codes = Vec::with_capacity(split.x.len());
        for &x in &split.x {
            let p = scaling.pixel(x);
            if scaling.input(p).to_bits() != x.to_bits() {
                return None;
            }
            codes.push(p);
        }
        let alpha = 1.0 / (scaling.levels * scaling.std);
        Some(Self {
            codes,
            y: &split.y,
            alpha,
            beta: -scaling.mean / scaling.std,
        })
    }

    fn len(&self) -> usize {
        self.y.len()
    }
}

/// One run: its parameters, optimizer state, data order and working buffers.
struct RunState {
    params: Vec<f32>,
    grad: Vec<f32>,
    /// Adam's first moment, or SGD's momentum buffer.
    m: Vec<f32>,
    /// Adam's second moment (empty for SGD).
    v: Vec<f32>,
    /// Whether SGD's momentum buffer holds a value yet (PyTorch starts it at the first gradient).
    has_momentum: bool,
    rng: Rng,
    perm: Vec<u32>,
    map: Option<Vec<u8>>,
    /// The minibatch's pixels as numbers, `[b, d0]`.
    x: Vec<f32>,
    /// Per first-layer unit, the sum of its weights (the offset of the input scaling).
    wsum: Vec<f32>,
    /// The minibatch's target labels.
    target: Vec<usize>,
    /// Per layer, the pre-activations `[b, out]` (the last layer's are the logits).
    z: Vec<Vec<f32>>,
    /// Per hidden layer, the activations `relu(z)`.
    a: Vec<Vec<f32>>,
    /// The gradient with respect to the current layer's pre-activations, and its predecessor's.
    dz: Vec<f32>,
    da: Vec<f32>,
    /// Mean loss and correct predictions of the last step.
    loss: f64,
    correct: usize,
}

/// Offsets of layer `l`'s weight and bias in the flat layout.
fn offsets(widths: &[usize]) -> Vec<(usize, usize)> {
    let mut off = 0;
    widths
        .windows(2)
        .map(|w| {
            let weight = off;
            off += w[0] * w[1];
            let bias = off;
            off += w[1];
            (weight, bias)
        })
        .collect()
}

impl RunState {
    fn new(init: &[f32], seed: u64, map: Option<Vec<u8>>, widths: &[usize], n: usize) -> Self {
        let p = init.len();
        let layers = widths.len() - 1;
        Self {
            params: init.to_vec(),
            grad: vec![0.0; p],
            m: vec![0.0; p],
            v: Vec::new(),
            has_momentum: false,
            rng: Rng::new(seed, STREAM_DATA),
            perm: (0..n as u32).collect(),
            map,
            x: Vec::new(),
            wsum: Vec::new(),
            target: Vec::new(),
            z: vec![Vec::new(); layers],
            a: vec![Vec::new(); layers.saturating_sub(1)],
            dz: Vec::new(),
            da: Vec::new(),
            loss: 0.0,
            correct: 0,
        }
    }

    /// Forward and backward pass on the minibatch `perm[lo..hi]`; leaves the gradient of the mean
    /// cross-entropy in `grad`.
    fn gradient(
        &mut self,
        split: &PixelSplit<'_>,
        widths: &[usize],
        offs: &[(usize, usize)],
        lo: usize,
        hi: usize,
    ) {
        let b = hi - lo;
        let d0 = widths[0];
        self.x.resize(b * d0, 0.0);
        self.target.clear();
        // One read per cache line of every row first: the loads are independent, so their
        // misses overlap instead of stalling the conversion row after row.
        let mut touch = 0u8;
        for &i in &self.perm[lo..hi] {
            let i = i as usize;
            for c in (0..d0).step_by(64) {
                touch ^= split.codes[i * d0 + c];
            }
        }
        std::hint::black_box(touch);
        for (row, &i) in self.x.chunks_exact_mut(d0).zip(&self.perm[lo..hi]) {
            let i = i as usize;
            for (v, &p) in row.iter_mut().zip(&split.codes[i * d0..(i + 1) * d0]) {
                *v = f32::from(p);
            }
            let y = usize::from(split.y[i]);
            self.target
                .push(self.map.as_ref().map_or(y, |m| usize::from(m[y])));
        }
        let layers = widths.len() - 1;
        // Forward.
        for l in 0..layers {
            let (fan_in, out) = (widths[l], widths[l + 1]);
            let (wo, bo) = offs[l];
            let input = if l == 0 { &self.x } else { &self.a[l - 1] };
            let z = &mut self.z[l];
            z.resize(b * out, 0.0);
            let w = View::row_major(&self.params[wo..wo + out * fan_in], out, fan_in);
            matmul_serial(z, View::row_major(input, b, fan_in), w.t(), false);
            let bias = &self.params[bo..bo + out];
            if l == 0 {
                // x·wᵀ + c = α·(p·wᵀ) + (β·Σw + c).
                self.wsum.clear();
                self.wsum.extend(
                    self.params[wo..wo + out * fan_in]
                        .chunks_exact(fan_in)
                        .zip(bias)
                        .map(|(w, &c)| split.beta * w.iter().sum::<f32>() + c),
                );
                for row in z.chunks_exact_mut(out) {
                    for (v, &c) in row.iter_mut().zip(&self.wsum) {
                        *v = split.alpha * *v + c;
                    }
                }
            } else {
                add_to_rows(z, bias);
            }
            if l + 1 < layers {
                let a = &mut self.a[l];
                a.clear();
                a.extend(self.z[l].iter().map(|&v| v.max(0.0)));
            }
        }
        // Softmax cross-entropy: dz = (softmax − onehot) / b.
        let classes = widths[layers];
        self.dz.clear();
        self.dz.extend_from_slice(&self.z[layers - 1]);
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for (row, &t) in self.dz.chunks_exact_mut(classes).zip(&self.target) {
            let (best, max) = argmax(row);
            correct += usize::from(best == t);
            let shifted = row[t] - max;
            let mut sum = 0.0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            loss += f64::from(sum.ln() - shifted);
            let scale = 1.0 / (sum * b as f32);
            for v in row.iter_mut() {
                *v *= scale;
            }
            row[t] -= 1.0 / b as f32;
        }
        self.loss = loss / b as f64;
        self.correct = correct;
        // Backward.
        for l in (0..layers).rev() {
            let (fan_in, out) = (widths[l], widths[l + 1]);
            let (wo, bo) = offs[l];
            let input = if l == 0 { &self.x } else { &self.a[l - 1] };
            let dz = View::row_major(&self.dz, b, out);
            matmul_serial(
                &mut self.grad[wo..wo + out * fan_in],
                dz.t(),
                View::row_major(input, b, fan_in),
                false,
            );
            let (gw, db) = self.grad[wo..bo + out].split_at_mut(out * fan_in);
            db.fill(0.0);
            for row in self.dz.chunks_exact(out) {
                for (g, &d) in db.iter_mut().zip(row) {
                    *g += d;
                }
            }
            if l == 0 {
                // ∂w = dzᵀ·x = α·(dzᵀ·p) + β·(column sums of dz).
                for (row, &d) in gw.chunks_exact_mut(fan_in).zip(db.iter()) {
                    let offset = split.beta * d;
                    for g in row {
                        *g = split.alpha * *g + offset;
                    }
                }
            }
            if l > 0 {
                self.da.resize(b * fan_in, 0.0);
                let w = View::row_major(&self.params[wo..wo + out * fan_in], out, fan_in);
                matmul_serial(&mut self.da, dz, w, false);
                // dz of the layer below: da where its pre-activation was positive.
                for (d, &z) in self.da.iter_mut().zip(&self.z[l - 1]) {
                    if z <= 0.0 {
                        *d = 0.0;
                    }
                }
                std::mem::swap(&mut self.dz, &mut self.da);
            }
        }
    }

    /// PyTorch's Adam (`torch.optim.Adam`, no weight decay) at step `t` (from 1).
    fn adam(&mut self, lr: f64, t: i32) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f32 = 1e-8;
        if self.v.len() != self.params.len() {
            self.v = vec![0.0; self.params.len()];
        }
        let step = (lr / (1.0 - B1.powi(t))) as f32;
        let inv_sqrt_bc2 = (1.0 / (1.0 - B2.powi(t)).sqrt()) as f32;
        let (b1, b2) = (B1 as f32, B2 as f32);
        for (((p, &g), m), v) in self
            .params
            .iter_mut()
            .zip(&self.grad)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step * *m / (v.sqrt() * inv_sqrt_bc2 + EPS);
        }
    }

    /// PyTorch's SGD with momentum (no dampening, no Nesterov).
    fn sgd(&mut self, lr: f64, momentum: f64) {
        let (lr, mu) = (lr as f32, momentum as f32);
        if mu > 0.0 {
            let first = !self.has_momentum;
            self.has_momentum = true;
            for ((p, &g), m) in self
                .params
                .iter_mut()
                .zip(&self.grad)
                .zip(self.m.iter_mut())
            {
                *m = if first { g } else { mu * *m + g };
                *p -= lr * *m;
            }
        } else {
            for (p, &g) in self.params.iter_mut().zip(&self.grad) {
                *p -= lr * g;
            }
        }
    }
}

/// Trains MLP classifiers (`widths`, ReLU hidden layers) from `init` (`[runs, P]`) with the zoo's
/// optimizer, batch size and per-run data order (`data_seeds`) for `epochs` epochs, recording
/// every run's parameters before the first step (step 0) and after each step listed in
/// `record_at` (ascending); with `label_maps`, run `r` learns label `label_maps[r][y]` for class
/// `y`. `on_step(step, batch_acc)` is called after every step, with the mean minibatch accuracy
/// every 25 steps and at the last.
///
/// # Errors
/// The first run (its index in the batch) whose minibatch loss became non-finite, and the step.
#[allow(clippy::too_many_arguments)]
pub fn train_runs_fused(
    cfg: &ZooConfig,
    widths: &[usize],
    init: &[f32],
    data_seeds: &[u64],
    label_maps: Option<&[Vec<u8>]>,
    train: &PixelSplit<'_>,
    epochs: usize,
    record_at: &[usize],
    on_step: &mut dyn FnMut(usize, Option<f64>),
) -> Result<FusedOutcome, Divergence> {
    let runs = data_seeds.len();
    let p = init.len() / runs.max(1);
    let n = train.len();
    let offs = offsets(widths);
    let mut states: Vec<RunState> = (0..runs)
        .map(|r| {
            RunState::new(
                &init[r * p..(r + 1) * p],
                data_seeds[r],
                label_maps.map(|m| m[r].clone()),
                widths,
                n,
            )
        })
        .collect();
    let k = record_at.len();
    let mut checkpoints = vec![0.0f32; runs * k * p];
    let mut slot = 0;
    let mut record = |states: &[RunState], slot: usize| {
        for (r, s) in states.iter().enumerate() {
            checkpoints[(r * k + slot) * p..(r * k + slot + 1) * p].copy_from_slice(&s.params);
        }
    };
    if record_at.first() == Some(&0) {
        record(&states, 0);
        slot = 1;
    }
    let bs = cfg.batch_size;
    let steps_per_epoch = n.div_ceil(bs);
    let total = steps_per_epoch * epochs;
    let mut step = 0;
    for _epoch in 0..epochs {
        for s in &mut states {
            s.rng.shuffle(&mut s.perm);
        }
        for sub in 0..steps_per_epoch {
            let lo = sub * bs;
            let hi = (lo + bs).min(n);
            let t = i32::try_from(step + 1).unwrap_or(i32::MAX);
            states.par_iter_mut().for_each(|s| {
                s.gradient(train, widths, &offs, lo, hi);
                if s.loss.is_finite() {
                    match cfg.optimizer {
                        Optimizer::Adam => s.adam(cfg.lr, t),
                        Optimizer::Sgd => s.sgd(cfg.lr, cfg.momentum),
                    }
                }
            });
            if let Some(bad) = states.iter().position(|s| !s.loss.is_finite()) {
                return Err((bad, step));
            }
            step += 1;
            if record_at.get(slot) == Some(&step) {
                record(&states, slot);
                slot += 1;
            }
            let measure = (step - 1) % MEASURE_EVERY == 0 || step == total;
            let batch_acc = measure.then(|| {
                let correct: usize = states.iter().map(|s| s.correct).sum();
                correct as f64 / (runs * (hi - lo)) as f64
            });
            on_step(step, batch_acc);
        }
    }
    let mut params = Vec::with_capacity(runs * p);
    for s in &states {
        params.extend_from_slice(&s.params);
    }
    Ok(FusedOutcome {
        params,
        checkpoints,
    })
}

/// Rows of a split evaluated in one product.
const EVAL_ROWS: usize = 1024;

/// Every run's mean cross-entropy and accuracy on `split` (what [`crate::classifier::evaluate`]
/// measures), from parameters `[runs, P]` in layout order; with `label_maps`, run `r` is scored
/// against `label_maps[r][y]`. The first layer of every run is one product per block of rows
/// (all runs' units side by side, so the kernels work on wide matrices); blocks run in parallel
/// and are summed in order.
pub fn evaluate_fused(
    widths: &[usize],
    params: &[f32],
    split: &Split,
    label_maps: Option<&[Vec<u8>]>,
) -> Vec<(f64, f64)> {
    let offs = offsets(widths);
    let p = offs
        .last()
        .map_or(0, |&(_, bias)| bias + widths[widths.len() - 1]);
    let runs = params.len().checked_div(p).unwrap_or(0);
    let (n, d0, h) = (split.len(), split.dim, widths[1]);
    let classes = widths[widths.len() - 1];
    // Every run's first-layer weights `[runs·h, d0]` and biases.
    let mut w_all = Vec::with_capacity(runs * h * d0);
    let mut b_all = Vec::with_capacity(runs * h);
    for theta in params.chunks_exact(p) {
        w_all.extend_from_slice(&theta[..h * d0]);
        b_all.extend_from_slice(&theta[h * d0..h * d0 + h]);
    }
    let blocks: Vec<usize> = (0..n).step_by(EVAL_ROWS).collect();
    let sums: Vec<Vec<(f64, usize)>> = blocks
        .into_par_iter()
        .map(|lo| {
            let hi = (lo + EVAL_ROWS).min(n);
            let m = hi - lo;
            let mut z = vec![0.0f32; m * runs * h];
            matmul_serial(
                &mut z,
                View::row_major(&split.x[lo * d0..hi * d0], m, d0),
                View::row_major(&w_all, runs * h, d0).t(),
                false,
            );
            let mut eval = RunEval::default();
            (0..runs)
                .map(|r| {
                    let theta = &params[r * p..(r + 1) * p];
                    eval.first.clear();
                    for row in z.chunks_exact(runs * h) {
                        eval.first.extend(
                            row[r * h..(r + 1) * h]
                                .iter()
                                .zip(&b_all[r * h..(r + 1) * h])
                                .map(|(&v, &c)| v + c),
                        );
                    }
                    let logits = eval.rest(widths, &offs, theta, m);
                    let map = label_maps.map(|maps| &maps[r]);
                    let (mut loss, mut correct) = (0.0f64, 0usize);
                    for (row, &y) in logits.chunks_exact(classes).zip(&split.y[lo..hi]) {
                        let t = map.map_or(usize::from(y), |m| usize::from(m[usize::from(y)]));
                        let (best, max) = argmax(row);
                        correct += usize::from(best == t);
                        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
                        loss += f64::from(sum.ln() - (row[t] - max));
                    }
                    (loss, correct)
                })
                .collect()
        })
        .collect();
    let nf = n.max(1) as f64;
    (0..runs)
        .map(|r| {
            let loss: f64 = sums.iter().map(|b| b[r].0).sum();
            let correct: usize = sums.iter().map(|b| b[r].1).sum();
            (loss / nf, correct as f64 / nf)
        })
        .collect()
}

/// Adds `bias` to every row of the row-major `z` (rows of `bias.len()` values).
fn add_to_rows(z: &mut [f32], bias: &[f32]) {
    for row in z.chunks_exact_mut(bias.len()) {
        for (v, &c) in row.iter_mut().zip(bias) {
            *v += c;
        }
    }
}

/// The index and value of a row's largest entry (the first of equals).
fn argmax(row: &[f32]) -> (usize, f32) {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (c, &v) in row.iter().enumerate() {
        if v > max {
            (best, max) = (c, v);
        }
    }
    (best, max)
}

/// Working buffers of one run's evaluation.
#[derive(Default)]
struct RunEval {
    /// The first layer's pre-activations `[m, widths[1]]`.
    first: Vec<f32>,
    a: Vec<f32>,
    z: Vec<f32>,
}

impl RunEval {
    /// The logits `[m, classes]` from the first layer's pre-activations in `first`.
    fn rest(
        &mut self,
        widths: &[usize],
        offs: &[(usize, usize)],
        theta: &[f32],
        m: usize,
    ) -> &[f32] {
        if offs.len() == 1 {
            return &self.first;
        }
        std::mem::swap(&mut self.z, &mut self.first);
        for (l, &(wo, bo)) in offs.iter().enumerate().skip(1) {
            let (fan_in, out) = (widths[l], widths[l + 1]);
            self.a.clear();
            self.a.extend(self.z.iter().map(|&v| v.max(0.0)));
            self.z.resize(m * out, 0.0);
            let w = View::row_major(&theta[wo..bo], out, fan_in);
            matmul_serial(
                &mut self.z,
                View::row_major(&self.a, m, fan_in),
                w.t(),
                false,
            );
            add_to_rows(&mut self.z, &theta[bo..bo + out]);
        }
        std::mem::swap(&mut self.z, &mut self.first);
        &self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    const SCALING: PixelScaling = PixelScaling {
        levels: 16.0,
        mean: 0.0,
        std: 1.0,
    };

    /// `n` inputs of `dim` pixels and labels below `classes`, from a fixed generator.
    fn split(n: usize, dim: usize, classes: u32, seed: u64) -> Split {
        let mut rng = Rng::new(seed, 9);
        Split {
            x: (0..n * dim)
                .map(|_| SCALING.input(rng.below(17) as u8))
                .collect(),
            y: (0..n).map(|_| rng.below(classes) as u8).collect(),
            dim,
        }
    }

    fn init(widths: &[usize], runs: usize, seed: u64) -> Vec<f32> {
        let layout = Arch::Mlp {
            widths: widths.to_vec(),
        }
        .layout();
        let mut out = Vec::new();
        for r in 0..runs {
            layout.init_into(&mut Rng::new(seed + r as u64, 1), &mut out);
        }
        out
    }

    #[test]
    fn offsets_follow_the_layout() {
        assert_eq!(offsets(&[4, 3, 2]), vec![(0, 12), (15, 21)]);
        let layout = Arch::Mlp {
            widths: vec![4, 3, 2],
        }
        .layout();
        assert_eq!(layout.offsets(), vec![0, 12, 15, 21]);
    }

    #[test]
    fn pixels_are_refused_unless_the_scaling_made_the_inputs() {
        let s = split(3, 4, 10, 1);
        assert!(PixelSplit::new(&s, SCALING).is_some());
        let mut off = s.clone();
        off.x[5] += 1e-3;
        assert!(PixelSplit::new(&off, SCALING).is_none());
    }

    /// The hand-written backward pass (with the input scaling folded into the first layer) is
    /// the derivative of the minibatch loss: central differences agree for every parameter.
    #[test]
    fn the_gradient_is_the_derivative_of_the_loss() {
        let widths = [6, 5, 4, 3];
        let s = split(7, 6, 3, 2);
        let scaling = PixelScaling {
            levels: 16.0,
            mean: 0.25,
            std: 0.5,
        };
        let s = Split {
            x: s.x
                .iter()
                .map(|&x| scaling.input(SCALING.pixel(x)))
                .collect(),
            ..s
        };
        let pixels = PixelSplit::new(&s, scaling).unwrap();
        let offs = offsets(&widths);
        let theta = init(&widths, 1, 3);
        let mut run = RunState::new(&theta, 4, Some(vec![2, 0, 1]), &widths, 7);
        run.gradient(&pixels, &widths, &offs, 0, 7);
        let grad = run.grad.clone();
        let h = 1e-3f32;
        for i in 0..theta.len() {
            let loss_at = |run: &mut RunState, v: f32| {
                run.params[i] = v;
                run.gradient(&pixels, &widths, &offs, 0, 7);
                run.loss
            };
            let up = loss_at(&mut run, theta[i] + h);
            let down = loss_at(&mut run, theta[i] - h);
            run.params[i] = theta[i];
            let numeric = (up - down) / (2.0 * f64::from(h));
            assert!(
                (numeric - f64::from(grad[i])).abs() < 2e-3,
                "parameter {i}: numeric {numeric}, analytic {}",
                grad[i]
            );
        }
    }

    /// The fused evaluation measures what burn's batched evaluation measures, label maps
    /// included.
    #[test]
    fn evaluation_matches_the_burn_evaluation() {
        use crate::backend::Cpu;
        let widths = vec![6, 5, 10];
        let arch = Arch::Mlp {
            widths: widths.clone(),
        };
        let layout = arch.layout();
        let runs = 3;
        let theta = init(&widths, runs, 5);
        let s = split(2500, 6, 10, 6);
        let maps: Vec<Vec<u8>> = (0..runs as u8)
            .map(|r| (0..10).map(|c| (c + r) % 10).collect())
            .collect();
        let device = Default::default();
        let blocks = crate::classifier::params_from_flat::<Cpu>(&layout, &theta, runs, &device);
        for m in [None, Some(&maps[..])] {
            let fused = evaluate_fused(&widths, &theta, &s, m);
            let burn = crate::classifier::evaluate(&arch, &blocks, &s.x, &s.y, m, &device).unwrap();
            for ((lf, af), (lb, ab)) in fused.iter().zip(&burn) {
                assert!(
                    (lf - lb).abs() < 1e-5 * lb.abs().max(1.0),
                    "loss {lf} vs {lb}"
                );
                // A near-tie may round to the other class: at most one sample of 2,500.
                assert!((af - ab).abs() <= 1.0 / 2500.0, "accuracy {af} vs {ab}");
            }
        }
    }
}
