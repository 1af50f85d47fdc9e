//! Classifier architectures and their parameter layout table.
//!
//! A classifier's parameters are one flat vector: blocks layer by layer, each layer's weight
//! (row-major `[out, in, …]`) then its bias. The [`Layout`] table names every block with its shape,
//! fan-in and PyTorch-default init bound `1/√fan_in`; it travels with every zoo and model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use nmflow_runtime::Rng;

/// Negative slope of the LeakyReLU used by `cnn-s`.
pub const LEAKY_SLOPE: f64 = 0.01;

/// A classifier architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Arch {
    /// `mlp:IN-H1-…-OUT`: Linear layers with ReLU between them.
    Mlp {
        /// Layer widths, input first, classes last.
        widths: Vec<usize>,
    },
    /// `cnn-s`: the model-zoo CNN for 1×28×28 input: Conv 1→8 k5, MaxPool 2, Conv 8→6 k5,
    /// MaxPool 2, Conv 6→4 k2, Linear 36→20, Linear 20→10, LeakyReLU (slope 0.01) after every conv
    /// and the first Linear; 2,464 parameters.
    CnnS,
}

/// One convolution of a CNN: `in_ch → out_ch`, square kernel, stride 1, no padding; `pool` says
/// whether a 2×2 max pool follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub in_ch: usize,
    /// Output channels.
    pub out_ch: usize,
    /// Kernel side.
    pub kernel: usize,
    /// A 2×2 max pool after the activation.
    pub pool: bool,
}

/// The convolutions of `cnn-s`.
pub const CNN_S_CONVS: [ConvSpec; 3] = [
    ConvSpec {
        in_ch: 1,
        out_ch: 8,
        kernel: 5,
        pool: true,
    },
    ConvSpec {
        in_ch: 8,
        out_ch: 6,
        kernel: 5,
        pool: true,
    },
    ConvSpec {
        in_ch: 6,
        out_ch: 4,
        kernel: 2,
        pool: false,
    },
];

impl Arch {
    /// The architecture whose parameter layout is `layout` (a model directory records the layout,
    /// not the architecture), or `None` for a layout no architecture here has.
    pub fn of_layout(layout: &Layout) -> Option<Self> {
        if Self::CnnS.layout() == *layout {
            return Some(Self::CnnS);
        }
        let weights: Vec<&Block> = layout.blocks.iter().step_by(2).collect();
        let first = weights.first()?;
        let mut widths = vec![*first.shape.get(1)?];
        for w in &weights {
            widths.push(*w.shape.first()?);
        }
        let arch = Self::Mlp { widths };
        (arch.layout() == *layout).then_some(arch)
    }

    /// The convolutions (empty for an MLP).
    pub fn convs(&self) -> &'static [ConvSpec] {
        match self {
            Self::Mlp { .. } => &[],
            Self::CnnS => &CNN_S_CONVS,
        }
    }

    /// Widths of the Linear part, its input first.
    pub fn linear_widths(&self) -> Vec<usize> {
        match self {
            Self::Mlp { widths } => widths.clone(),
            Self::CnnS => vec![36, 20, 10],
        }
    }

    /// Inputs per example (flattened).
    pub fn input_dim(&self) -> usize {
        match self {
            Self::Mlp { widths } => widths.first().copied().unwrap_or(0),
            Self::CnnS => 28 * 28,
        }
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.linear_widths().last().copied().unwrap_or(0)
    }

    /// Checks that the architecture takes inputs of `shape` (`[c, h, w]`) and has `classes` outputs.
    ///
    /// # Errors
    /// [`UsageError`] describing the mismatch.
    pub fn check_input(
        &self,
        shape: [usize; 3],
        classes: usize,
        dataset: &str,
    ) -> Result<(), UsageError> {
        let want = self.input_dim();
        let have = shape.iter().product::<usize>();
        if let Self::CnnS = self
            && shape != [1, 28, 28]
        {
            return Err(UsageError(format!(
                "architecture cnn-s needs 1×28×28 inputs, but dataset {dataset} has {}×{}×{}",
                shape[0], shape[1], shape[2]
            )));
        }
        if want != have {
            return Err(UsageError(format!(
                "architecture {self} takes {want} inputs, but dataset {dataset} has {have} \
                 (use mlp:{have}-…)"
            )));
        }
        if self.num_classes() != classes {
            return Err(UsageError(format!(
                "architecture {self} has {} outputs, but dataset {dataset} has {classes} classes",
                self.num_classes()
            )));
        }
        Ok(())
    }

    /// The parameter layout table.
    pub fn layout(&self) -> Layout {
        let mut blocks = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, fan_in: usize| {
            blocks.push(Block {
                name,
                shape,
                fan_in,
                bound: 1.0 / (fan_in as f64).sqrt(),
            });
        };
        for (i, c) in self.convs().iter().enumerate() {
            let fan_in = c.in_ch * c.kernel * c.kernel;
            push(
                format!("conv{}.weight", i + 1),
                vec![c.out_ch, c.in_ch, c.kernel, c.kernel],
                fan_in,
            );
            push(format!("conv{}.bias", i + 1), vec![c.out_ch], fan_in);
        }
        let w = self.linear_widths();
        for (i, pair) in w.windows(2).enumerate() {
            push(
                format!("fc{}.weight", i + 1),
                vec![pair[1], pair[0]],
                pair[0],
            );
            push(format!("fc{}.bias", i + 1), vec![pair[1]], pair[0]);
        }
        Layout { blocks }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mlp { widths } => {
                let w: Vec<String> = widths.iter().map(ToString::to_string).collect();
                write!(f, "mlp:{}", w.join("-"))
            }
            Self::CnnS => f.write_str("cnn-s"),
        }
    }
}

impl FromStr for Arch {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "cnn-s" {
            return Ok(Self::CnnS);
        }
        let bad = |why: &str| {
            UsageError(format!(
                "unknown architecture {s:?}: {why}; expected `mlp:IN-H…-OUT` (e.g. mlp:784-10-10) or `cnn-s`"
            ))
        };
        let spec = s
            .strip_prefix("mlp:")
            .ok_or_else(|| bad("no such family"))?;
        let widths = spec
            .split('-')
            .map(|w| w.parse::<usize>().ok().filter(|&w| w > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("widths must be positive integers"))?;
        if widths.len() < 2 {
            return Err(bad("an MLP needs at least an input and an output width"));
        }
        // Counted without overflow, so that an absurd width is refused before any allocation.
        let params = widths.windows(2).try_fold(0u128, |acc, w| {
            let (a, b) = (w[0] as u128, w[1] as u128);
            acc.checked_add(a.checked_mul(b)?.checked_add(b)?)
        });
        if params.is_none_or(|p| p > MAX_PARAMS as u128) {
            return Err(UsageError(format!(
                "architecture {s:?} has {} parameters, more than the {MAX_PARAMS} nmflow trains per classifier",
                params.map_or_else(|| "too many".into(), |p| p.to_string())
            )));
        }
        Ok(Self::Mlp { widths })
    }
}

impl From<Arch> for String {
    fn from(a: Arch) -> Self {
        a.to_string()
    }
}

impl TryFrom<String> for Arch {
    type Error = UsageError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The most parameters a classifier may have (a zoo stores every checkpoint of every run).
pub const MAX_PARAMS: usize = 1 << 24;

/// One parameter block of the layout table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// PyTorch-style name, e.g. `fc1.weight`.
    pub name: String,
    /// Shape, `[out, in, kh, kw]` / `[out, in]` for weights, `[out]` for biases.
    pub shape: Vec<usize>,
    /// Fan-in of the layer the block belongs to.
    pub fan_in: usize,
    /// Init bound `1/√fan_in`: parameters start in U(−bound, bound).
    pub bound: f64,
}

impl Block {
    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the block has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The parameter layout table: blocks in flattening order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// The blocks, layer by layer, weight then bias.
    pub blocks: Vec<Block>,
}

impl Layout {
    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.blocks.iter().map(Block::len).sum()
    }

    /// Start offset of every block in the flat vector.
    pub fn offsets(&self) -> Vec<usize> {
        self.blocks
            .iter()
            .scan(0, |acc, b| {
                let start = *acc;
                *acc += b.len();
                Some(start)
            })
            .collect()
    }

    /// Concatenates per-block tensors (each row-major in its block's shape) into one flat vector.
    ///
    /// # Errors
    /// A message naming the first block whose length is wrong.
    pub fn flatten(&self, blocks: &[Vec<f32>]) -> Result<Vec<f32>, String> {
        if blocks.len() != self.blocks.len() {
            return Err(format!(
                "expected {} blocks, got {}",
                self.blocks.len(),
                blocks.len()
            ));
        }
        let mut flat = Vec::with_capacity(self.num_params());
        for (spec, data) in self.blocks.iter().zip(blocks) {
            if data.len() != spec.len() {
                return Err(format!(
                    "block {} has {} values, expected {}",
                    spec.name,
                    data.len(),
                    spec.len()
                ));
            }
            flat.extend_from_slice(data);
        }
        Ok(flat)
    }

    /// Splits a flat vector into per-block vectors.
    ///
    /// # Errors
    /// A message when the length is not [`Layout::num_params`].
    pub fn unflatten(&self, flat: &[f32]) -> Result<Vec<Vec<f32>>, String> {
        if flat.len() != self.num_params() {
            return Err(format!(
                "flat vector has {} values, layout needs {}",
                flat.len(),
                self.num_params()
            ));
        }
        let mut rest = flat;
        Ok(self
            .blocks
            .iter()
            .map(|b| {
                let (head, tail) = rest.split_at(b.len());
                rest = tail;
                head.to_vec()
            })
            .collect())
    }

    /// Samples PyTorch's default initialization (U(−b, b) per block) into `out`, in layout order.
    pub fn init_into(&self, rng: &mut Rng, out: &mut Vec<f32>) {
        for b in &self.blocks {
            let bound = b.bound as f32;
            out.extend((0..b.len()).map(|_| rng.uniform_symmetric(bound)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_specs() {
        let a: Arch = "mlp:784-10-10".parse().unwrap();
        assert_eq!(a.to_string(), "mlp:784-10-10");
        assert_eq!(a.layout().num_params(), 784 * 10 + 10 + 10 * 10 + 10);
        assert_eq!("cnn-s".parse::<Arch>().unwrap(), Arch::CnnS);
        for bad in [
            "mlp:",
            "mlp:784",
            "mlp:784-0-10",
            "mlp:a-b",
            "resnet18",
            "cnn",
        ] {
            let e = bad.parse::<Arch>().unwrap_err().to_string();
            assert!(e.contains("unknown architecture"), "{bad}: {e}");
        }
    }

    #[test]
    fn cnn_s_has_2464_parameters() {
        let l = Arch::CnnS.layout();
        assert_eq!(l.num_params(), 2464);
        let names: Vec<&str> = l.blocks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names[0], "conv1.weight");
        assert_eq!(l.blocks[0].shape, vec![8, 1, 5, 5]);
        assert_eq!(l.blocks[6].shape, vec![20, 36]);
        assert!((l.blocks[2].bound - 1.0 / (8.0f64 * 25.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn input_checks() {
        let a: Arch = "mlp:784-10-10".parse().unwrap();
        assert!(a.check_input([1, 28, 28], 10, "mnist").is_ok());
        let e = a
            .check_input([1, 8, 8], 10, "mnist8")
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes 784 inputs") && e.contains("64"), "{e}");
        assert!(Arch::CnnS.check_input([1, 8, 8], 10, "mnist8").is_err());
        let b: Arch = "mlp:64-16-3".parse().unwrap();
        assert!(b.check_input([1, 8, 8], 10, "mnist8").is_err());
    }

    #[test]
    fn flatten_unflatten_round_trip() {
        let layout = Arch::CnnS.layout();
        let mut rng = Rng::new(9, 0);
        let mut flat = Vec::new();
        layout.init_into(&mut rng, &mut flat);
        let blocks = layout.unflatten(&flat).unwrap();
        assert_eq!(blocks.len(), 10);
        assert_eq!(layout.flatten(&blocks).unwrap(), flat);
        assert_eq!(layout.offsets()[1], 200);
        assert!(layout.unflatten(&flat[1..]).is_err());
        let mut short = blocks.clone();
        short[3].pop();
        assert!(layout.flatten(&short).unwrap_err().contains("conv2.bias"));
    }

    #[test]
    fn init_bounds_hold_per_block() {
        // Each block is U(-b, b): all values inside, and the variance is b²/3 within sampling error.
        let layout: Layout = "mlp:784-32-10".parse::<Arch>().unwrap().layout();
        let mut rng = Rng::new(11, 0);
        let mut flat = Vec::new();
        for _ in 0..20 {
            layout.init_into(&mut rng, &mut flat);
        }
        let n = layout.num_params();
        for (bi, b) in layout.blocks.iter().enumerate() {
            let start = layout.offsets()[bi];
            let vals: Vec<f64> = (0..20)
                .flat_map(|r| flat[r * n + start..r * n + start + b.len()].iter())
                .map(|&v| f64::from(v))
                .collect();
            let bound32 = f64::from(b.bound as f32);
            assert!(vals.iter().all(|v| v.abs() <= bound32), "{}", b.name);
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            let want = b.bound * b.bound / 3.0;
            // standard error of the variance of a uniform: sqrt(4/45)·b²/√n
            let tol = 5.0 * (4.0f64 / 45.0).sqrt() * b.bound * b.bound / (vals.len() as f64).sqrt();
            assert!(
                (var - want).abs() < tol,
                "{}: var {var} want {want}",
                b.name
            );
            assert!(
                mean.abs() < 5.0 * b.bound / (3.0 * vals.len() as f64).sqrt(),
                "{}",
                b.name
            );
        }
    }
}
