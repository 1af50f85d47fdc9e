//! Named dataset views and their pixel scaling.
//!
//! | view | source | input | scaling |
//! |---|---|---|---|
//! | `mnist` | MNIST 60k/10k | 1×28×28 | `(p/255 − 0.1307) / 0.3081` (MNIST train mean/std) |
//! | `fashion` | Fashion-MNIST 60k/10k | 1×28×28 | `(p/255 − 0.2860) / 0.3530` (its train mean/std) |
//! | `mnist8` | MNIST 60k/10k, 8×8 optdigits form | 64 | `v/16` in \[0, 1\] |
//! | `digits` | UCI optdigits, 1,797 (test split only) | 64 | `v/16` in \[0, 1\] |

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::catalog::{self, DataFile};
use super::{digits, idx, mnist8};
use crate::error::{DataError, UsageError};
use crate::io::{read_maybe_gz, sha256_hex};

/// A dataset view a user picks with `--dataset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetView {
    /// MNIST, 28×28, standardized.
    Mnist,
    /// Fashion-MNIST, 28×28, standardized.
    Fashion,
    /// MNIST in optdigits' 8×8 0..16 form, scaled to \[0, 1\].
    Mnist8,
    /// UCI optdigits (evaluation and shift set only), scaled to \[0, 1\].
    Digits,
}

impl DatasetView {
    /// Every view.
    pub const ALL: [Self; 4] = [Self::Mnist, Self::Fashion, Self::Mnist8, Self::Digits];

    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::Fashion => "fashion",
            Self::Mnist8 => "mnist8",
            Self::Digits => "digits",
        }
    }

    /// Input shape `[channels, height, width]`.
    pub fn input_shape(self) -> [usize; 3] {
        match self {
            Self::Mnist | Self::Fashion => [1, 28, 28],
            Self::Mnist8 | Self::Digits => [1, 8, 8],
        }
    }

    /// How a stored pixel `p` (0..=levels) becomes an input value: `(p / levels − mean) / std`,
    /// in f32 in that order (a device that reads raw pixels computes the same bits).
    pub fn pixel_scaling(self) -> PixelScaling {
        match self {
            Self::Mnist => PixelScaling {
                levels: 255.0,
                mean: 0.1307,
                std: 0.3081,
            },
            Self::Fashion => PixelScaling {
                levels: 255.0,
                mean: 0.2860,
                std: 0.3530,
            },
            Self::Mnist8 | Self::Digits => PixelScaling {
                levels: 16.0,
                mean: 0.0,
                std: 1.0,
            },
        }
    }

    /// Whether the view has a training split (digits is for evaluation only).
    pub fn has_train(self) -> bool {
        self != Self::Digits
    }
}

/// A view's pixel scaling (see [`DatasetView::pixel_scaling`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelScaling {
    /// Grey levels of a stored pixel (its largest value).
    pub levels: f32,
    /// Mean subtracted after dividing by `levels`.
    pub mean: f32,
    /// Standard deviation divided by last.
    pub std: f32,
}

impl PixelScaling {
    /// The stored pixel an input value came from.
    pub fn pixel(&self, x: f32) -> u8 {
        ((x * self.std + self.mean) * self.levels)
            .round()
            .clamp(0.0, self.levels) as u8
    }

    /// The input value of a stored pixel: `(p / levels − mean) / std` (what a device computes).
    pub fn input(&self, p: u8) -> f32 {
        (f32::from(p) / self.levels - self.mean) / self.std
    }
}

impl fmt::Display for DatasetView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetView {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                UsageError(format!(
                    "unknown dataset {s:?}; expected one of mnist, fashion, mnist8, digits"
                ))
            })
    }
}

/// One split: `n` samples of `dim` scaled features and their labels.
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// Features, row-major `[n, dim]`.
    pub x: Vec<f32>,
    /// Labels 0..=9.
    pub y: Vec<u8>,
    /// Features per sample.
    pub dim: usize,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The first `n` samples (all if `n` is larger).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            x: self.x[..n * self.dim].to_vec(),
            y: self.y[..n].to_vec(),
            dim: self.dim,
        }
    }
}

/// A loaded dataset view.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Which view.
    pub view: DatasetView,
    /// Training split (empty for `digits`).
    pub train: Split,
    /// Test split.
    pub test: Split,
}

/// Number of classes of every view.
pub const NUM_CLASSES: usize = 10;

impl Dataset {
    /// Loads a view from `data_dir`, verifying every file's checksum.
    ///
    /// # Errors
    /// [`DataError::Missing`] when a file is absent, and any parse or checksum error naming the file.
    pub fn load(view: DatasetView, data_dir: &Path) -> Result<Self, DataError> {
        match view {
            DatasetView::Mnist | DatasetView::Fashion => {
                let set = if view == DatasetView::Mnist {
                    "mnist"
                } else {
                    "fashion-mnist"
                };
                let PixelScaling { levels, mean, std } = view.pixel_scaling();
                let scale = |p: u8| (f32::from(p) / levels - mean) / std;
                let (tr_img, tr_lab) = load_idx_pair(data_dir, set, "train")?;
                let (te_img, te_lab) = load_idx_pair(data_dir, set, "t10k")?;
                Ok(Self {
                    view,
                    train: Split {
                        x: tr_img.iter().map(|&p| scale(p)).collect(),
                        y: tr_lab,
                        dim: 784,
                    },
                    test: Split {
                        x: te_img.iter().map(|&p| scale(p)).collect(),
                        y: te_lab,
                        dim: 784,
                    },
                })
            }
            DatasetView::Mnist8 => {
                let to8 = |images: &[u8]| -> Vec<f32> {
                    images
                        .chunks_exact(784)
                        .flat_map(|im| mnist8::transform(im, 28))
                        .map(|v| f32::from(v) / 16.0)
                        .collect()
                };
                let (tr_img, tr_lab) = load_idx_pair(data_dir, "mnist", "train")?;
                let (te_img, te_lab) = load_idx_pair(data_dir, "mnist", "t10k")?;
                Ok(Self {
                    view,
                    train: Split {
                        x: to8(&tr_img),
                        y: tr_lab,
                        dim: 64,
                    },
                    test: Split {
                        x: to8(&te_img),
                        y: te_lab,
                        dim: 64,
                    },
                })
            }
            DatasetView::Digits => {
                let file = entry("digits", "digits.csv");
                let bytes = read_verified(file, data_dir)?;
                let path = file.path(data_dir);
                let text = String::from_utf8(bytes).map_err(|_| DataError::Csv {
                    path: path.clone(),
                    line: 0,
                    problem: "not UTF-8 text".into(),
                })?;
                let (px, labels) = digits::parse(&text, &path)?;
                Ok(Self {
                    view,
                    train: Split {
                        dim: 64,
                        ..Split::default()
                    },
                    test: Split {
                        x: px.iter().map(|&v| f32::from(v) / 16.0).collect(),
                        y: labels,
                        dim: 64,
                    },
                })
            }
        }
    }
}

fn entry(set: &str, name: &str) -> &'static DataFile {
    // cannot fail: every (set, name) used in this module is in the catalog (tested)
    catalog::file(set, name).unwrap_or(&catalog::FILES[0])
}

/// Reads a catalog file, decompresses it and checks its SHA-256.
///
/// # Errors
/// [`DataError::Missing`], [`DataError::Io`] or [`DataError::Checksum`].
pub fn read_verified(file: &DataFile, data_dir: &Path) -> Result<Vec<u8>, DataError> {
    let path = file.path(data_dir);
    if !path.exists() {
        return Err(DataError::Missing { path });
    }
    let bytes = read_maybe_gz(&path).map_err(|e| DataError::io(&path, e))?;
    let found = sha256_hex(&bytes);
    if found != file.sha256 {
        return Err(DataError::Checksum {
            path,
            expected: file.sha256.into(),
            found,
        });
    }
    Ok(bytes)
}

/// Loads `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` of `set`, checking that
/// images are 28×28 and that both files hold the same number of samples.
fn load_idx_pair(
    data_dir: &Path,
    set: &str,
    prefix: &str,
) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let img_file = entry(set, &format!("{prefix}-images-idx3-ubyte"));
    let lab_file = entry(set, &format!("{prefix}-labels-idx1-ubyte"));
    let img_path = img_file.path(data_dir);
    let lab_path = lab_file.path(data_dir);
    let images = idx::parse(&read_verified(img_file, data_dir)?, 3, &img_path)?;
    let labels = idx::parse(&read_verified(lab_file, data_dir)?, 1, &lab_path)?;
    check_pair(&images, &labels, &img_path, &lab_path)?;
    Ok((images.data, labels.data))
}

/// Checks an (images, labels) IDX pair: 28×28 images, equal counts, labels below 10.
fn check_pair(
    images: &idx::Idx,
    labels: &idx::Idx,
    img_path: &Path,
    lab_path: &Path,
) -> Result<(), DataError> {
    if images.dims[1..] != [28, 28] {
        return Err(DataError::WrongDimensions {
            path: img_path.into(),
            expected: vec![images.dims[0], 28, 28],
            found: images.dims.clone(),
        });
    }
    if labels.dims[0] != images.dims[0] {
        return Err(DataError::Inconsistent {
            path: lab_path.into(),
            problem: format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                img_path.display()
            ),
        });
    }
    if let Some(bad) = labels.data.iter().find(|&&l| usize::from(l) >= NUM_CLASSES) {
        return Err(DataError::Inconsistent {
            path: lab_path.into(),
            problem: format!("label {bad} is not a class 0..=9"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_used_here_is_in_the_catalog() {
        for set in ["mnist", "fashion-mnist"] {
            for p in ["train", "t10k"] {
                for k in ["images-idx3", "labels-idx1"] {
                    assert!(catalog::file(set, &format!("{p}-{k}-ubyte")).is_some());
                }
            }
        }
        assert!(catalog::file("digits", "digits.csv").is_some());
    }

    #[test]
    fn view_names_round_trip() {
        for v in DatasetView::ALL {
            assert_eq!(v.name().parse::<DatasetView>().unwrap(), v);
        }
        assert!("cifar".parse::<DatasetView>().is_err());
    }

    #[test]
    fn pair_checks_catch_mismatches() {
        let img = idx::Idx {
            dims: vec![2, 28, 28],
            data: vec![0; 2 * 784],
        };
        let lab = idx::Idx {
            dims: vec![3],
            data: vec![0; 3],
        };
        let e = check_pair(&img, &lab, Path::new("i"), Path::new("l")).unwrap_err();
        assert!(e.to_string().contains("3 labels for 2 images"), "{e}");
        let small = idx::Idx {
            dims: vec![2, 27, 28],
            data: vec![0; 2 * 27 * 28],
        };
        let lab2 = idx::Idx {
            dims: vec![2],
            data: vec![0, 11],
        };
        assert!(matches!(
            check_pair(&small, &lab2, Path::new("i"), Path::new("l")),
            Err(DataError::WrongDimensions { .. })
        ));
        let e = check_pair(&img, &lab2, Path::new("i"), Path::new("l")).unwrap_err();
        assert!(e.to_string().contains("label 11"), "{e}");
    }
}
