//! The fused CPU trainer of the MLP field.
//!
//! burn's autodiff builds a graph and allocates every intermediate tensor on every step, and its
//! Adam runs about ten separate elementwise passes per parameter tensor. For the MLP field, whose
//! forward and backward passes are a handful of matrix products, that overhead is most of a step.
//! This trainer does the same computation by hand on buffers allocated once:
//!
//! * forward: `a₀ = [x, sin(t·f), cos(t·f)]`, `z_l = a_{l−1}·W_l + b_l`, `a_l = silu(z_l)`, and the
//!   last layer linear; loss `mean((v − u)²)`;
//! * backward: `∂z_L = 2(v − u)/(N·P)`, `∂W_l = a_{l−1}ᵀ·∂z_l`, `∂b_l = Σ_rows ∂z_l`,
//!   `∂z_{l−1} = (∂z_l·W_lᵀ) ⊙ silu′(z_{l−1})` with `silu′(z) = σ(z)(1 + z(1 − σ(z)))`;
//! * one fused pass of burn's Adam (the same formula, constants and optional L2 weight decay) per
//!   parameter tensor.
//!
//! Products go through [`crate::linalg::matmul`]; elementwise passes are split into fixed-size
//! chunks on rayon's pool. Neither split depends on the number of threads, so a seed gives the same
//! bytes on every machine with the same kernels. The result is the same network as
//! [`crate::meta::field::VectorField`]'s MLP (converted both ways without loss), trained by the same
//! algorithm; only floating-point rounding differs from the burn path.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::MetaError;
use crate::linalg::{View, matmul};
use crate::meta::field::time_frequencies;
pub use crate::optim::AdamSettings;

/// Elements per parallel task of the elementwise passes.
const CHUNK: usize = 1 << 14;

/// The MLP field `v(x, t)` as plain buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedMlp {
    /// Layer widths: `[P + time_dim, hidden…, P]`.
    widths: Vec<usize>,
    /// Frequencies of the time embedding.
    freqs: Vec<f32>,
    /// Per layer: weight (row-major `[d_in][d_out]`) and bias.
    params: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Adam's state: the step count and both moments of every parameter tensor (weights and biases
/// in layer order).
#[derive(Clone, Debug, PartialEq)]
pub struct FusedAdam {
    settings: AdamSettings,
    time: u32,
    moment_1: Vec<Vec<f32>>,
    moment_2: Vec<Vec<f32>>,
}

/// Activations and gradients of one batch, reused across steps.
#[derive(Debug, Default)]
pub struct Buffers {
    input: Vec<f32>,
    /// Pre-activations of the hidden layers and the output.
    pre: Vec<Vec<f32>>,
    /// Activations of the hidden layers.
    act: Vec<Vec<f32>>,
    /// `∂loss/∂z` of every layer.
    grad_pre: Vec<Vec<f32>>,
    /// Gradients of every layer's weight and bias.
    grad_params: Vec<(Vec<f32>, Vec<f32>)>,
    /// Working memory of the matrix products.
    scratch: Vec<f32>,
}

impl FusedMlp {
    /// The field from its layers (as [`crate::meta::field::VectorField::mlp_layers`] gives them).
    ///
    /// # Errors
    /// A message if the layers do not chain or the time embedding does not fit `dim`.
    pub fn new(
        dim: usize,
        time_dim: usize,
        params: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Self, String> {
        let mut widths = vec![dim + time_dim];
        for (l, (w, b)) in params.iter().enumerate() {
            let d_in = widths[l];
            if d_in == 0 || w.len() % d_in != 0 || w.len() / d_in != b.len() {
                return Err(format!(
                    "layer {l}: weight of {} values and bias of {} do not fit an input of {d_in}",
                    w.len(),
                    b.len()
                ));
            }
            widths.push(b.len());
        }
        if params.is_empty() || widths.last() != Some(&dim) || !time_dim.is_multiple_of(2) {
            return Err(format!(
                "an MLP field maps {dim} + {time_dim} (even) inputs to {dim} outputs; got widths {widths:?}"
            ));
        }
        Ok(Self {
            widths,
            freqs: time_frequencies(time_dim),
            params,
        })
    }

    /// The layers, as [`crate::meta::field::VectorField::with_mlp_layers`] takes them.
    pub fn layers(&self) -> &[(Vec<f32>, Vec<f32>)] {
        &self.params
    }

    /// Dimension of the state.
    pub fn dim(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    /// Width of the time embedding.
    pub fn time_dim(&self) -> usize {
        self.freqs.len() * 2
    }

    /// Runs the forward pass on `n` rows of `x` (`[n, P]`) and `t` (`[n]`); the output is
    /// `buf.pre.last()`.
    fn forward(&self, x: &[f32], t: &[f32], buf: &mut Buffers) {
        let (n, p, d0) = (t.len(), self.dim(), self.widths[0]);
        assert_eq!(x.len(), n * p, "x must be [n, P]");
        let layers = self.params.len();
        buf.pre.resize_with(layers, Vec::new);
        buf.act.resize_with(layers - 1, Vec::new);
        buf.input.resize(n * d0, 0.0);
        let half = self.freqs.len();
        for ((row, xs), &ts) in buf.input.chunks_exact_mut(d0).zip(x.chunks_exact(p)).zip(t) {
            row[..p].copy_from_slice(xs);
            for (j, &f) in self.freqs.iter().enumerate() {
                let angle = ts * f;
                row[p + j] = angle.sin();
                row[p + half + j] = angle.cos();
            }
        }
        for (l, (w, b)) in self.params.iter().enumerate() {
            let (d_in, d_out) = (self.widths[l], self.widths[l + 1]);
            let z = &mut buf.pre[l];
            z.resize(n * d_out, 0.0);
            // z = b (broadcast) + a·W.
            for row in z.chunks_exact_mut(d_out) {
                row.copy_from_slice(b);
            }
            let a = if l == 0 { &buf.input } else { &buf.act[l - 1] };
            matmul(
                z,
                View::row_major(a, n, d_in),
                View::row_major(w, d_in, d_out),
                true,
                &mut buf.scratch,
            );
            if l + 1 < layers {
                let act = &mut buf.act[l];
                act.resize(n * d_out, 0.0);
                act.par_chunks_mut(CHUNK)
                    .zip(z.par_chunks(CHUNK))
                    .for_each(|(a, z)| {
                        for (a, &z) in a.iter_mut().zip(z) {
                            *a = z / (1.0 + (-z).exp());
                        }
                    });
            }
        }
    }

    /// Sum of squared errors `Σ (v(x, t) − u)²` over `n` rows (f64 accumulation).
    pub fn sum_sq(&self, x: &[f32], t: &[f32], u: &[f32], buf: &mut Buffers) -> f64 {
        self.forward(x, t, buf);
        let v = buf.pre.last().map_or(&[][..], Vec::as_slice);
        v.par_chunks(CHUNK)
            .zip(u.par_chunks(CHUNK))
            .map(|(v, u)| {
                v.iter()
                    .zip(u)
                    .map(|(&v, &u)| f64::from(v - u).powi(2))
                    .sum::<f64>()
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum()
    }

    /// The field's outputs `v(x, t)` (`[n, P]`).
    pub fn predict(&self, x: &[f32], t: &[f32], buf: &mut Buffers) -> Vec<f32> {
        self.forward(x, t, buf);
        buf.pre.last().cloned().unwrap_or_default()
    }

    /// One training step on the mean squared error of `v(x, t)` against `u`: forward, backward and
    /// Adam with learning rate `lr`. Returns the minibatch loss before the update.
    pub fn step(
        &mut self,
        adam: &mut FusedAdam,
        x: &[f32],
        t: &[f32],
        u: &[f32],
        lr: f64,
        buf: &mut Buffers,
    ) -> f64 {
        let n = t.len();
        let layers = self.params.len();
        self.forward(x, t, buf);
        buf.grad_pre.resize_with(layers, Vec::new);
        buf.grad_params.resize_with(layers, Default::default);
        // ∂loss/∂v = 2(v − u)/(N·P), and the loss itself.
        let loss = mse_and_grad(&buf.pre[layers - 1], u, &mut buf.grad_pre[layers - 1]);
        for l in (0..layers).rev() {
            let (d_in, d_out) = (self.widths[l], self.widths[l + 1]);
            let (lower, upper) = buf.grad_pre.split_at_mut(l);
            let gz = &upper[0];
            let (gw, gb) = &mut buf.grad_params[l];
            gw.resize(d_in * d_out, 0.0);
            let a = if l == 0 { &buf.input } else { &buf.act[l - 1] };
            matmul(
                gw,
                View::row_major(a, n, d_in).t(),
                View::row_major(gz, n, d_out),
                false,
                &mut buf.scratch,
            );
            gb.clear();
            gb.resize(d_out, 0.0);
            for row in gz.chunks_exact(d_out) {
                for (s, &g) in gb.iter_mut().zip(row) {
                    *s += g;
                }
            }
            if l > 0 {
                // ∂a_{l−1} = ∂z_l·W_lᵀ, then through the SiLU.
                let gprev = &mut lower[l - 1];
                gprev.resize(n * d_in, 0.0);
                matmul(
                    gprev,
                    View::row_major(gz, n, d_out),
                    View::row_major(&self.params[l].0, d_in, d_out).t(),
                    false,
                    &mut buf.scratch,
                );
                gprev
                    .par_chunks_mut(CHUNK)
                    .zip(buf.pre[l - 1].par_chunks(CHUNK))
                    .for_each(|(g, z)| {
                        for (g, &z) in g.iter_mut().zip(z) {
                            let s = 1.0 / (1.0 + (-z).exp());
                            *g *= s * (1.0 + z * (1.0 - s));
                        }
                    });
            }
        }
        adam.update(&mut self.params, &buf.grad_params, lr);
        loss
    }
}

/// The mean squared error of `v` against `u` (f64 accumulation), and its gradient with respect
/// to `v`, `2(v − u)/len`, written to `grad`.
pub(super) fn mse_and_grad(v: &[f32], u: &[f32], grad: &mut Vec<f32>) -> f64 {
    let len = v.len();
    let scale = 2.0 / len as f32;
    grad.resize(len, 0.0);
    let partial: Vec<f64> = grad
        .par_chunks_mut(CHUNK)
        .zip(v.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .map(|(g, (v, u))| {
            let mut sq = 0.0f64;
            for ((g, &v), &u) in g.iter_mut().zip(v).zip(u) {
                let r = v - u;
                sq += f64::from(r) * f64::from(r);
                *g = scale * r;
            }
            sq
        })
        .collect();
    partial.iter().sum::<f64>() / len as f64
}

impl FusedAdam {
    /// A fresh optimizer for a field with the layers `layers` (weight and bias of each).
    pub fn new(settings: AdamSettings, layers: &[(Vec<f32>, Vec<f32>)]) -> Self {
        let zeros = || -> Vec<Vec<f32>> {
            layers
                .iter()
                .flat_map(|(w, b)| [vec![0.0; w.len()], vec![0.0; b.len()]])
                .collect()
        };
        Self {
            settings,
            time: 0,
            moment_1: zeros(),
            moment_2: zeros(),
        }
    }

    /// One Adam step, burn's formula: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `θ ← θ − lr · m·√(1−β₂ᵗ)/(1−β₁ᵗ) / (√v + ε√(1−β₂ᵗ))`.
    pub(super) fn update(
        &mut self,
        params: &mut [(Vec<f32>, Vec<f32>)],
        grads: &[(Vec<f32>, Vec<f32>)],
        lr: f64,
    ) {
        self.time += 1;
        let (beta_1, beta_2, epsilon, weight_decay) = self.settings.as_f32();
        let time = i32::try_from(self.time).unwrap_or(i32::MAX);
        let bc2 = (1.0 - beta_2.powi(time)).sqrt();
        let factor = bc2 / (1.0 - beta_1.powi(time));
        let eps = epsilon * bc2;
        let lr = lr as f32;
        // All tensors' chunks as one list of tasks: one fork-join per step.
        let mut tasks = Vec::new();
        let tensors = params
            .iter_mut()
            .zip(grads)
            .flat_map(|((w, b), (gw, gb))| [(w, gw), (b, gb)]);
        for ((theta, grad), (m1, m2)) in
            tensors.zip(self.moment_1.iter_mut().zip(&mut self.moment_2))
        {
            tasks.extend(
                theta
                    .chunks_mut(CHUNK)
                    .zip(grad.chunks(CHUNK))
                    .zip(m1.chunks_mut(CHUNK).zip(m2.chunks_mut(CHUNK))),
            );
        }
        tasks.into_par_iter().for_each(|((theta, grad), (m1, m2))| {
            for (((p, &g), m), v) in theta.iter_mut().zip(grad).zip(m1).zip(m2) {
                let g = g + weight_decay * *p;
                *m = beta_1 * *m + (1.0 - beta_1) * g;
                *v = beta_2 * *v + (1.0 - beta_2) * g * g;
                *p -= lr * (*m * factor / (v.sqrt() + eps));
            }
        });
    }

    /// The optimizer state as a safetensors file's bytes (`m.{i}`, `v.{i}`; the step count and
    /// settings in the metadata).
    ///
    /// # Errors
    /// A message from the serializer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let bytes: Vec<(String, Vec<u8>, usize)> = self
            .moment_1
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("m.{i}"), m))
            .chain(
                self.moment_2
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("v.{i}"), v)),
            )
            .map(|(name, values)| {
                let b = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                (name, b, values.len())
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, b, len)| {
                TensorView::new(Dtype::F32, vec![*len], b).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let s = self.settings.as_f32();
        let meta = HashMap::from([
            ("format".to_string(), "nmflow-fused-adam".to_string()),
            ("time".to_string(), self.time.to_string()),
            (
                "settings".to_string(),
                format!("{} {} {} {}", s.0, s.1, s.2, s.3),
            ),
        ]);
        safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
    }

    /// Reads a state written by [`Self::to_bytes`] for a field with the layers `layers`, with
    /// `settings`.
    ///
    /// # Errors
    /// [`MetaError::File`] naming `path` and what does not match.
    pub fn read(
        path: &Path,
        settings: AdamSettings,
        layers: &[(Vec<f32>, Vec<f32>)],
    ) -> Result<Self, MetaError> {
        let bytes = std::fs::read(path).map_err(|e| MetaError::file(path, e))?;
        let bad = |what: String| MetaError::file(path, what);
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let info = meta.metadata().clone().unwrap_or_default();
        let time: u32 = info
            .get("time")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("no step count (`time`) in its metadata".into()))?;
        let mut fresh = Self::new(settings, layers);
        fresh.time = time;
        for (prefix, moments) in [("m", &mut fresh.moment_1), ("v", &mut fresh.moment_2)] {
            for (i, m) in moments.iter_mut().enumerate() {
                let name = format!("{prefix}.{i}");
                let view = st
                    .tensor(&name)
                    .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
                if view.dtype() != Dtype::F32 || view.shape() != [m.len()] {
                    return Err(bad(format!(
                        "tensor `{name}`: expected F32 of shape [{}], found {:?} {:?}",
                        m.len(),
                        view.dtype(),
                        view.shape()
                    )));
                }
                for (x, b) in m.iter_mut().zip(view.data().chunks_exact(4)) {
                    *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuAutodiff;
    use crate::meta::field::{FieldConfig, FieldKind, VectorField};
    use burn::module::AutodiffModule;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::backend::Backend;
    use burn::tensor::{Tensor, TensorData};

    const P: usize = 7;

    fn config() -> FieldConfig {
        FieldConfig {
            kind: FieldKind::Mlp,
            set: None,
            jko: None,
            dim: P,
            hidden: 9,
            depth: 2,
            time_dim: 4,
            step_input: false,
            diagonal: false,
        }
    }

    fn batch(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = nmflow_runtime::Rng::new(seed, 0);
        let mut draw = |len: usize, scale: f32| -> Vec<f32> {
            (0..len).map(|_| scale * (rng.uniform() - 0.5)).collect()
        };
        (
            draw(n * P, 4.0),
            draw(n, 2.0).iter().map(|t| t.abs()).collect(),
            draw(n * P, 2.0),
        )
    }

    fn max_diff(a: &[(Vec<f32>, Vec<f32>)], b: &[(Vec<f32>, Vec<f32>)]) -> f32 {
        a.iter()
            .zip(b)
            .flat_map(|((wa, ba), (wb, bb))| wa.iter().zip(wb).chain(ba.iter().zip(bb)))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Forward, backward and Adam (with weight decay) agree with burn's autodiff and optimizer
    /// over several steps, batches of several row blocks included.
    #[test]
    fn steps_match_burns_autodiff_and_adam() {
        let device = Default::default();
        let _seeded = crate::backend::seed_lock();
        CpuAutodiff::seed(&device, 3);
        let cfg = config();
        let mut field: VectorField<CpuAutodiff> = cfg.init(&device);
        let mut mlp = FusedMlp::new(P, cfg.time_dim, field.mlp_layers().unwrap().unwrap()).unwrap();
        let wd = 0.05;
        let mut optim = AdamConfig::new()
            .with_weight_decay(Some(WeightDecayConfig::new(wd)))
            .init::<CpuAutodiff, VectorField<CpuAutodiff>>();
        let settings = AdamSettings::BURN.with_weight_decay(f64::from(wd));
        let mut adam = FusedAdam::new(settings, mlp.layers());
        let mut buf = Buffers::default();
        let lr = 0.01;
        for (step, n) in [(0, 5), (1, 150), (2, 3), (3, 70)] {
            let (x, t, u) = batch(n, step);
            let xt =
                Tensor::<CpuAutodiff, 2>::from_data(TensorData::new(x.clone(), [n, P]), &device);
            let tt =
                Tensor::<CpuAutodiff, 2>::from_data(TensorData::new(t.clone(), [n, 1]), &device);
            let ut =
                Tensor::<CpuAutodiff, 2>::from_data(TensorData::new(u.clone(), [n, P]), &device);
            let loss = (field.forward(xt, tt) - ut).powi_scalar(2).mean();
            let burn_loss: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &field);
            field = optim.step(lr, field, grads);
            let fused_loss = mlp.step(&mut adam, &x, &t, &u, lr, &mut buf);
            assert!(
                (fused_loss - f64::from(burn_loss)).abs() < 1e-5 * fused_loss.max(1.0),
                "step {step}: loss {fused_loss} vs burn {burn_loss}"
            );
            let diff = max_diff(mlp.layers(), &field.valid().mlp_layers().unwrap().unwrap());
            assert!(diff < 2e-5, "step {step}: weights differ by {diff}");
        }
        // The held-out figure is the same sum of squares as burn's.
        let (x, t, u) = batch(9, 9);
        let v = mlp.predict(&x, &t, &mut buf);
        let want: f64 = v
            .iter()
            .zip(&u)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        assert!((mlp.sum_sq(&x, &t, &u, &mut buf) - want).abs() < 1e-9);
        let burn_v: Vec<f32> = field
            .valid()
            .forward(
                Tensor::from_data(TensorData::new(x, [9, P]), &device),
                Tensor::from_data(TensorData::new(t, [9, 1]), &device),
            )
            .into_data()
            .into_vec()
            .unwrap();
        for (a, b) in v.iter().zip(&burn_v) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn fields_convert_both_ways_without_loss() {
        let device = Default::default();
        let cfg = config();
        let field: VectorField<crate::backend::Cpu> = cfg.init(&device);
        let layers = field.mlp_layers().unwrap().unwrap();
        let mlp = FusedMlp::new(P, cfg.time_dim, layers.clone()).unwrap();
        let back = cfg
            .init::<crate::backend::Cpu>(&device)
            .with_mlp_layers(mlp.layers());
        assert_eq!(back.mlp_layers().unwrap().unwrap(), layers);
    }

    #[test]
    fn layers_that_do_not_chain_are_refused() {
        let ok = || {
            vec![
                (vec![0.0; 11 * 3], vec![0.0; 3]),
                (vec![0.0; 3 * P], vec![0.0; P]),
            ]
        };
        assert!(FusedMlp::new(P, 4, ok()).is_ok());
        let mut bad = ok();
        bad[1].1.pop();
        assert!(FusedMlp::new(P, 4, bad).is_err());
        let mut bad = ok();
        bad[0].0.pop();
        assert!(FusedMlp::new(P, 4, bad).unwrap_err().contains("layer 0"));
        assert!(FusedMlp::new(P, 3, ok()).is_err(), "odd time embedding");
        assert!(FusedMlp::new(P, 4, Vec::new()).is_err());
    }

    #[test]
    fn optimizer_state_round_trips_and_bad_files_are_named() {
        let mlp = FusedMlp::new(
            P,
            4,
            vec![
                (vec![0.5; 11 * 3], vec![0.1; 3]),
                (vec![0.2; 3 * P], vec![0.0; P]),
            ],
        )
        .unwrap();
        let mut adam = FusedAdam::new(AdamSettings::default(), mlp.layers());
        let mut m = mlp.clone();
        let (x, t, u) = batch(4, 1);
        m.step(&mut adam, &x, &t, &u, 0.01, &mut Buffers::default());
        let dir = std::env::temp_dir().join(format!("nmflow-fused-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("optim.safetensors");
        std::fs::write(&path, adam.to_bytes().unwrap()).unwrap();
        let back = FusedAdam::read(&path, AdamSettings::default(), m.layers()).unwrap();
        assert_eq!(back, adam);
        // A state for another field shape is refused with the file and tensor named.
        let other = FusedMlp::new(
            P,
            4,
            vec![
                (vec![0.5; 11 * 2], vec![0.1; 2]),
                (vec![0.2; 2 * P], vec![0.0; P]),
            ],
        )
        .unwrap();
        let err = FusedAdam::read(&path, AdamSettings::default(), other.layers())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("optim.safetensors") && err.contains("m.0"),
            "{err}"
        );
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(FusedAdam::read(&path, AdamSettings::default(), m.layers()).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
