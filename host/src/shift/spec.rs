//! The shifted sample's source: a dataset view and an optional deterministic transform of its
//! test images (`--shift VIEW[:TRANSFORM]`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::DatasetView;
use crate::data::dataset::Split;
use crate::error::UsageError;

/// A deterministic transform of square images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// Rotation by this many degrees (counter-clockwise) about the image centre, bilinear, with
    /// the background (a stored pixel of 0) filling what comes from outside the image.
    Rotate(f32),
    /// Ink scaled by this factor: every pixel moves towards (factor < 1) or away from the
    /// background, `b + factor·(x − b)`.
    Contrast(f32),
}

/// Where the shifted samples come from: a view's test split, optionally transformed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShiftSpec {
    /// The view.
    pub view: DatasetView,
    /// The transform applied to its test images, if any.
    pub transform: Option<Transform>,
}

impl fmt::Display for ShiftSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transform {
            None => write!(f, "{}", self.view),
            Some(Transform::Rotate(d)) => write!(f, "{}:rotate={d}", self.view),
            Some(Transform::Contrast(c)) => write!(f, "{}:contrast={c}", self.view),
        }
    }
}

impl FromStr for ShiftSpec {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (view, transform) = match s.split_once(':') {
            None => (s, None),
            Some((v, t)) => (v, Some(t)),
        };
        let view: DatasetView = view.parse()?;
        let transform = match transform {
            None => None,
            Some(t) => {
                let (name, value) = t.split_once('=').unwrap_or((t, ""));
                let number = |what: &str| -> Result<f32, UsageError> {
                    match value.parse::<f32>() {
                        Ok(v) if v.is_finite() => Ok(v),
                        _ => Err(UsageError(format!(
                            "--shift {s}: {name} takes {what}, e.g. {view}:{name}=30 (got {value:?})"
                        ))),
                    }
                };
                match name {
                    "rotate" => Some(Transform::Rotate(number("degrees")?)),
                    "contrast" => {
                        let c = number("a factor > 0")?;
                        if c <= 0.0 {
                            return Err(UsageError(format!(
                                "--shift {s}: the contrast factor must be > 0"
                            )));
                        }
                        Some(Transform::Contrast(c))
                    }
                    _ => {
                        return Err(UsageError(format!(
                            "--shift {s}: unknown transform {name:?}; expected rotate=DEGREES or contrast=FACTOR"
                        )));
                    }
                }
            }
        };
        Ok(Self { view, transform })
    }
}

impl Transform {
    /// Applies the transform to every image of `split` (square images of `dim` pixels), whose
    /// pixels were scaled so that a stored 0 became `background`.
    pub fn apply(self, split: &Split, background: f32) -> Split {
        let side = (split.dim as f64).sqrt().round() as usize;
        let mut x = Vec::with_capacity(split.x.len());
        for img in split.x.chunks_exact(split.dim.max(1)) {
            match self {
                Self::Rotate(deg) => rotate_into(img, side, deg, background, &mut x),
                Self::Contrast(c) => {
                    x.extend(img.iter().map(|&v| background + c * (v - background)))
                }
            }
        }
        Split {
            x,
            y: split.y.clone(),
            dim: split.dim,
        }
    }
}

/// Appends `img` (`side × side`, row-major) rotated by `deg` degrees counter-clockwise to `out`.
fn rotate_into(img: &[f32], side: usize, deg: f32, background: f32, out: &mut Vec<f32>) {
    let (s, c) = (
        f64::from(deg).to_radians().sin(),
        f64::from(deg).to_radians().cos(),
    );
    let centre = (side as f64 - 1.0) / 2.0;
    let at = |r: isize, col: isize| -> f64 {
        if r < 0 || col < 0 || r >= side as isize || col >= side as isize {
            f64::from(background)
        } else {
            f64::from(img[r as usize * side + col as usize])
        }
    };
    for r in 0..side {
        for col in 0..side {
            // The output pixel (r, col) comes from the source point rotated back by −deg
            // (x to the right, y up).
            let (x, y) = (col as f64 - centre, centre - r as f64);
            let (sx, sy) = (c * x + s * y, -s * x + c * y);
            let (sc, sr) = (sx + centre, centre - sy);
            let (r0, c0) = (sr.floor(), sc.floor());
            let (fr, fc) = (sr - r0, sc - c0);
            let (r0, c0) = (r0 as isize, c0 as isize);
            let v = (1.0 - fr) * ((1.0 - fc) * at(r0, c0) + fc * at(r0, c0 + 1))
                + fr * ((1.0 - fc) * at(r0 + 1, c0) + fc * at(r0 + 1, c0 + 1));
            out.push(v as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_views_and_rotations() {
        let s: ShiftSpec = "digits".parse().unwrap();
        assert_eq!(s.view, DatasetView::Digits);
        assert!(s.transform.is_none());
        let s: ShiftSpec = "mnist:rotate=30".parse().unwrap();
        assert_eq!(s.transform, Some(Transform::Rotate(30.0)));
        assert_eq!(s.to_string(), "mnist:rotate=30");
        let s: ShiftSpec = "mnist8:contrast=0.8".parse().unwrap();
        assert_eq!(s.transform, Some(Transform::Contrast(0.8)));
        let c = Transform::Contrast(0.5).apply(
            &Split {
                x: vec![-1.0, 1.0],
                y: vec![0],
                dim: 2,
            },
            -1.0,
        );
        assert_eq!(c.x, vec![-1.0, 0.0]);
        for bad in [
            "cifar",
            "mnist:rotate",
            "mnist:rotate=x",
            "mnist:blur=2",
            "mnist:rotate=inf",
            "mnist:contrast=0",
        ] {
            assert!(bad.parse::<ShiftSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_by_quarter_turns_permutes_pixels() {
        // A 3×3 image rotated by 90° counter-clockwise: the top row becomes the left column.
        let split = Split {
            x: (1..=9).map(|v| v as f32).collect(),
            y: vec![0],
            dim: 9,
        };
        let r = Transform::Rotate(90.0).apply(&split, 0.0);
        let want = [3.0, 6.0, 9.0, 2.0, 5.0, 8.0, 1.0, 4.0, 7.0];
        for (a, b) in r.x.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{:?}", r.x);
        }
        let same = Transform::Rotate(0.0).apply(&split, -1.0);
        assert_eq!(same.x, split.x);
        // Off-centre content rotated by 45° partly leaves the image: background comes in.
        let corner = Split {
            x: vec![1.0, 1.0, 1.0, 1.0],
            y: vec![0],
            dim: 4,
        };
        let r = Transform::Rotate(45.0).apply(&corner, -0.5);
        assert!(r.x.iter().all(|&v| v < 1.0 && v > -0.5), "{:?}", r.x);
    }
}
