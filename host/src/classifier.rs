//! A batched classifier whose parameters carry a leading run dimension, so that many training runs
//! (or many generated classifiers) advance in one set of tensor operations.
//!
//! Every parameter block of the [`Layout`] is one contiguous tensor `[R, rows, cols]` (see
//! [`block_dims`]): a Linear weight `[out, in]` is stored transposed as `[R, in, out]`, a conv
//! weight `[out, in, kh, kw]` as `[R, out, in·kh·kw]`, a bias as `[R, 1, out]`.
//!
//! Convolutions of different runs are one grouped convolution (`groups = R`) over channels laid out
//! run-major; a shared input (evaluation) uses an ordinary convolution for the first layer.

use burn::tensor::activation::{leaky_relu, log_softmax, relu};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Int, Tensor, TensorData};

use crate::arch::{Arch, LEAKY_SLOPE, Layout};
use crate::backend::{TensorRead, values};

/// How a block is stored as a `[R, rows, cols]` tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockDims {
    /// Rows of the stored matrix.
    pub rows: usize,
    /// Columns of the stored matrix.
    pub cols: usize,
    /// Stored transposed relative to the layout (Linear weights: `[in, out]`, so that the forward
    /// pass is `x · W` without a strided view).
    pub transposed: bool,
}

/// The stored dimensions of every block: Linear weights `[R, in, out]` (transposed), conv weights
/// `[R, out, in·kh·kw]`, biases `[R, 1, out]`.
pub fn block_dims(layout: &Layout) -> Vec<BlockDims> {
    layout
        .blocks
        .iter()
        .map(|b| match b.shape.len() {
            1 => BlockDims {
                rows: 1,
                cols: b.shape[0],
                transposed: false,
            },
            2 => BlockDims {
                rows: b.shape[1],
                cols: b.shape[0],
                transposed: true,
            },
            _ => BlockDims {
                rows: b.shape[0],
                cols: b.shape[1..].iter().product(),
                transposed: false,
            },
        })
        .collect()
}

/// Builds the block tensors from `runs` flat parameter vectors (`flat` is `[runs, num_params]`).
///
/// Every tensor is created contiguous (elementwise optimizer updates on strided views are slow).
///
/// # Shapes
/// `flat.len() == runs * layout.num_params()`; returns one `[runs, rows, cols]` tensor per block
/// (see [`block_dims`]).
pub fn params_from_flat<B: Backend>(
    layout: &Layout,
    flat: &[f32],
    runs: usize,
    device: &B::Device,
) -> Vec<Tensor<B, 3>> {
    let p = layout.num_params();
    block_dims(layout)
        .into_iter()
        .zip(layout.offsets())
        .map(|(d, off)| {
            let len = d.rows * d.cols;
            let mut data = Vec::with_capacity(runs * len);
            for r in 0..runs {
                let src = &flat[r * p + off..r * p + off + len];
                if d.transposed {
                    // layout [cols=out][rows=in] → stored [rows=in][cols=out]
                    for i in 0..d.rows {
                        data.extend((0..d.cols).map(|o| src[o * d.rows + i]));
                    }
                } else {
                    data.extend_from_slice(src);
                }
            }
            Tensor::from_data(TensorData::new(data, [runs, d.rows, d.cols]), device)
        })
        .collect()
}

/// Block tensors from a `[runs, num_params]` tensor (layout order), as tensor operations, so that
/// gradients flow back to the flat vectors (used by the functional loss of meta-model training).
pub fn params_from_tensor<B: Backend>(layout: &Layout, flat: Tensor<B, 2>) -> Vec<Tensor<B, 3>> {
    let runs = flat.dims()[0];
    block_dims(layout)
        .into_iter()
        .zip(layout.offsets())
        .map(|(d, off)| {
            let block = flat.clone().narrow(1, off, d.rows * d.cols);
            if d.transposed {
                block.reshape([runs, d.cols, d.rows]).swap_dims(1, 2)
            } else {
                block.reshape([runs, d.rows, d.cols])
            }
        })
        .collect()
}

/// Flattens block tensors back to `[runs, num_params]` in layout order.
///
/// # Errors
/// [`TensorRead`] when the backend's values cannot be read back.
pub fn params_to_flat<B: Backend>(
    layout: &Layout,
    params: &[Tensor<B, 3>],
) -> Result<Vec<f32>, TensorRead> {
    let runs = params[0].dims()[0];
    let p = layout.num_params();
    let mut flat = vec![0.0f32; runs * p];
    for ((t, d), off) in params.iter().zip(block_dims(layout)).zip(layout.offsets()) {
        let data = values::<f32>(t.clone().into_data())?;
        let len = d.rows * d.cols;
        for r in 0..runs {
            let src = &data[r * len..(r + 1) * len];
            let dst = &mut flat[r * p + off..r * p + off + len];
            if d.transposed {
                for i in 0..d.rows {
                    for o in 0..d.cols {
                        dst[o * d.rows + i] = src[i * d.cols + o];
                    }
                }
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
    Ok(flat)
}

/// The classifier's input.
pub enum Input<B: Backend> {
    /// Every run sees its own samples: `[R, N, d]`.
    PerRun(Tensor<B, 3>),
    /// All runs see the same samples: `[N, d]`.
    Shared(Tensor<B, 2>),
}

/// Forward pass of `R` classifiers of architecture `arch`.
///
/// # Shapes
/// `params` as from [`params_from_flat`]; returns logits `[R, N, classes]`.
pub fn forward<B: Backend>(arch: &Arch, params: &[Tensor<B, 3>], input: Input<B>) -> Tensor<B, 3> {
    let runs = params[0].dims()[0];
    let convs = arch.convs();
    let act = |h: Tensor<B, 3>| match arch {
        Arch::Mlp { .. } => relu(h),
        Arch::CnnS => leaky_relu(h, LEAKY_SLOPE),
    };
    let linear_params: &[Tensor<B, 3>];
    let mut h: Tensor<B, 3> = if convs.is_empty() {
        let (w, b) = (&params[0], &params[1]);
        linear_params = &params[2..];
        match input {
            Input::PerRun(x) => add_bias(x.matmul(w.clone()), b),
            Input::Shared(x) => {
                let [r, d_in, out] = w.dims();
                let n = x.dims()[0];
                let y = x.matmul(w.clone().swap_dims(0, 1).reshape([d_in, r * out]));
                add_bias(y.reshape([n, r, out]).swap_dims(0, 1), b)
            }
        }
    } else {
        let (mut x, mut shared) = match input {
            Input::PerRun(x) => {
                let [r, n, d] = x.dims();
                let side = (d as f64).sqrt() as usize;
                (x.swap_dims(0, 1).reshape([n, r, side, side]), false)
            }
            Input::Shared(x) => {
                let [n, d] = x.dims();
                let side = (d as f64).sqrt() as usize;
                (x.reshape([n, 1, side, side]), true)
            }
        };
        for (ci, c) in convs.iter().enumerate() {
            let w = params[2 * ci]
                .clone()
                .reshape([runs * c.out_ch, c.in_ch, c.kernel, c.kernel]);
            let b = params[2 * ci + 1].clone().reshape([runs * c.out_ch]);
            let groups = if shared { 1 } else { runs };
            shared = false;
            x = conv2d(
                x,
                w,
                Some(b),
                ConvOptions::new([1, 1], [0, 0], [1, 1], groups),
            );
            x = leaky_relu(x, LEAKY_SLOPE);
            if c.pool {
                x = max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        let [n, rc, hh, ww] = x.dims();
        let features = rc / runs * hh * ww;
        let first = 2 * convs.len();
        let x = x.reshape([n, runs, features]).swap_dims(0, 1);
        let (w, b) = (&params[first], &params[first + 1]);
        linear_params = &params[first + 2..];
        add_bias(x.matmul(w.clone()), b)
    };
    for pair in linear_params.chunks_exact(2) {
        h = add_bias(act(h).matmul(pair[0].clone()), &pair[1]);
    }
    h
}

/// `y + b` for `y` `[R, N, out]` and a bias `b` `[R, 1, out]`.
///
/// The bias is broadcast by a rank-1 product `1 · b` rather than by a broadcasting add: on the CPU
/// backend a broadcasting add (and its reduction in the backward pass) takes a slow strided path,
/// while the product and a same-shape add stay on contiguous kernels.
fn add_bias<B: Backend>(y: Tensor<B, 3>, b: &Tensor<B, 3>) -> Tensor<B, 3> {
    let [r, n, _] = y.dims();
    let ones = Tensor::<B, 3>::ones([r, n, 1], &y.device());
    y + ones.matmul(b.clone())
}

/// Sum over runs of each run's mean cross-entropy, so each run's gradient is that of its own loss.
///
/// # Shapes
/// `logits` `[R, N, C]`, `onehot` `[R, N, C]` or `[1, N, C]`; returns `[1]`.
pub fn cross_entropy_sum<B: Backend>(logits: Tensor<B, 3>, onehot: Tensor<B, 3>) -> Tensor<B, 1> {
    let n = logits.dims()[1] as f64;
    (log_softmax(logits, 2) * onehot).sum().neg() / n
}

/// Per label map, the permutation matrix `M[c][map[c]] = 1` (`[maps, classes, classes]`): a
/// batch of one-hot labels times `M` is the batch relabelled by `map`.
pub fn relabel_matrices<B: Backend, M: AsRef<[u8]>>(
    maps: &[M],
    classes: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    let r = maps.len();
    let mut m = vec![0.0f32; r * classes * classes];
    for (run, map) in maps.iter().enumerate() {
        for (class, &to) in map.as_ref().iter().enumerate().take(classes) {
            m[(run * classes + class) * classes + usize::from(to)] = 1.0;
        }
    }
    Tensor::<B, 3>::from_data(TensorData::new(m, [r, classes, classes]), device)
}

/// One-hot rows for `labels` with `classes` columns.
pub fn one_hot(labels: &[u8], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        out[i * classes + usize::from(l)] = 1.0;
    }
    out
}

/// Per-run `(mean loss, accuracy)` of `R` classifiers on the samples `x` (`[n, d]`) with `labels`
/// (with `label_maps`, one per run, run `r` is scored against `label_maps[r][y]`), evaluated in
/// chunks so that activations stay within a memory budget.
///
/// # Errors
/// [`TensorRead`] when the backend's values cannot be read back.
pub fn evaluate<B: Backend>(
    arch: &Arch,
    params: &[Tensor<B, 3>],
    x: &[f32],
    labels: &[u8],
    label_maps: Option<&[Vec<u8>]>,
    device: &B::Device,
) -> Result<Vec<(f64, f64)>, TensorRead> {
    let runs = params[0].dims()[0];
    let n = labels.len();
    let d = x.len() / n.max(1);
    let classes = arch.num_classes();
    // Largest activation per sample and run: the first conv's output, or the widest hidden layer.
    let per_sample = match arch {
        Arch::CnnS => 8 * 24 * 24,
        Arch::Mlp { widths } => widths.iter().copied().max().unwrap_or(1),
    };
    let budget = 32 * 1024 * 1024; // floats (128 MiB)
    let chunk = (budget / (runs * per_sample).max(1)).clamp(1, 2000);
    let mut loss = vec![0.0f64; runs];
    let mut correct = vec![0.0f64; runs];
    let mut start = 0;
    while start < n {
        let m = chunk.min(n - start);
        let xs = Tensor::<B, 2>::from_data(
            TensorData::new(x[start * d..(start + m) * d].to_vec(), [m, d]),
            device,
        );
        let lab = &labels[start..start + m];
        let logits = forward(arch, params, Input::Shared(xs));
        // Per-run labels (multi-task zoos) or one set shared by every run.
        let (per_run, k): (Vec<u8>, usize) = match label_maps {
            Some(maps) => (
                maps.iter()
                    .flat_map(|map| lab.iter().map(|&y| map[usize::from(y)]))
                    .collect(),
                runs,
            ),
            None => (lab.to_vec(), 1),
        };
        let onehot = Tensor::<B, 3>::from_data(
            TensorData::new(one_hot(&per_run, classes), [k, m, classes]),
            device,
        );
        let l = (log_softmax(logits.clone(), 2) * onehot)
            .sum_dim(2)
            .sum_dim(1)
            .neg();
        let targets = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                per_run.iter().map(|&v| i64::from(v)).collect::<Vec<_>>(),
                [k * m],
            ),
            device,
        )
        .reshape([k, m, 1])
        .expand([runs, m, 1]);
        let c = logits.argmax(2).equal(targets).float().sum_dim(1);
        let l = values::<f64>(l.into_data())?;
        let c = values::<f64>(c.into_data())?;
        for r in 0..runs {
            loss[r] += l[r];
            correct[r] += c[r];
        }
        start += m;
    }
    let nf = n.max(1) as f64;
    Ok(loss
        .iter()
        .zip(&correct)
        .map(|(l, c)| (l / nf, c / nf))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

    #[test]
    fn tensor_blocks_equal_flat_blocks() {
        let arch: Arch = "mlp:5-3-2".parse().unwrap();
        let layout = arch.layout();
        let p = layout.num_params();
        let flat: Vec<f32> = (0..2 * p).map(|i| i as f32 * 0.5 - 3.0).collect();
        let dev = Default::default();
        let a = params_from_flat::<Cpu>(&layout, &flat, 2, &dev);
        let t = Tensor::<Cpu, 2>::from_data(TensorData::new(flat.clone(), [2, p]), &dev);
        let b = params_from_tensor(&layout, t);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.into_iter().zip(b) {
            assert_eq!(x.dims(), y.dims());
            assert_eq!(
                x.into_data().to_vec::<f32>().unwrap(),
                y.into_data().to_vec::<f32>().unwrap()
            );
        }
        assert_eq!(
            params_to_flat(&layout, &params_from_flat::<Cpu>(&layout, &flat, 2, &dev)).unwrap(),
            flat
        );
    }
}
