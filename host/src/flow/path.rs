//! Probability paths: where a training sample `xt` sits at time `t` and its target velocity `ut`.
//!
//! * [`linear`]: conditional flow matching between two points, `xt = (1−t)·x0 + t·x1 + σ·ε`,
//!   `ut = x1 − x0` (Lipman et al. 2023; Tong et al. 2024, I-CFM).
//! * [`Spline`]: multi-marginal flow matching through every checkpoint of a run: a cubic spline
//!   `S(t)` through `(t_k, θ_k)`, `xt = S(t) + σ·ε`, `ut = S'(t)` (Rohbeck et al., ICLR 2025).
//!   Natural cubic or monotone PCHIP (Fritsch–Carlson), per coordinate.

use serde::{Deserialize, Serialize};

/// `xt` and `ut` of the linear path, written into `xt` and `ut` (all slices of one length).
///
/// `eps` is standard normal noise scaled by `sigma`.
pub fn linear(
    x0: &[f32],
    x1: &[f32],
    eps: &[f32],
    t: f32,
    sigma: f32,
    xt: &mut [f32],
    ut: &mut [f32],
) {
    for i in 0..x0.len() {
        xt[i] = (1.0 - t) * x0[i] + t * x1[i] + sigma * eps[i];
        ut[i] = x1[i] - x0[i];
    }
}

/// Spline kind for multi-marginal paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SplineKind {
    /// Natural cubic spline (C², second derivative zero at the ends).
    Cubic,
    /// Monotone piecewise cubic Hermite (C¹, no overshoot between knots).
    Pchip,
}

/// Per-coordinate cubic Hermite segments through `K+1` knots of a `dim`-dimensional path.
///
/// Stores the knot values and the derivative at every knot; evaluation is Hermite interpolation,
/// which covers both the natural cubic spline (derivatives from the tridiagonal system) and PCHIP.
#[derive(Clone, Debug)]
pub struct Spline {
    times: Vec<f32>,
    values: Vec<f32>,
    slopes: Vec<f32>,
    dim: usize,
}

impl Spline {
    /// Fits a spline through `values` (`[K+1, dim]` row-major) at increasing `times`.
    ///
    /// # Panics
    /// Never for `times.len() ≥ 2` strictly increasing and `values.len() == times.len()·dim`;
    /// callers (the zoo reader) guarantee both.
    pub fn fit(kind: SplineKind, times: &[f32], values: &[f32], dim: usize) -> Self {
        let n = times.len();
        let h: Vec<f64> = times.windows(2).map(|w| f64::from(w[1] - w[0])).collect();
        let mut slopes = vec![0.0f32; n * dim];
        let mut col = vec![0.0f64; n];
        let mut d = vec![0.0f64; n];
        for j in 0..dim {
            for k in 0..n {
                col[k] = f64::from(values[k * dim + j]);
            }
            let delta: Vec<f64> = (0..n - 1).map(|k| (col[k + 1] - col[k]) / h[k]).collect();
            match kind {
                SplineKind::Pchip => pchip_slopes(&h, &delta, &mut d),
                SplineKind::Cubic => natural_slopes(&h, &delta, &mut d),
            }
            for k in 0..n {
                slopes[k * dim + j] = d[k] as f32;
            }
        }
        Self {
            times: times.to_vec(),
            values: values.to_vec(),
            slopes,
            dim,
        }
    }

    /// Writes `S(t)` into `x` and `S'(t)` into `dx` (`t` is clamped to the knot range).
    pub fn eval(&self, t: f32, x: &mut [f32], dx: &mut [f32]) {
        let n = self.times.len();
        let t = t.clamp(self.times[0], self.times[n - 1]);
        let k = self.times[..n - 1]
            .iter()
            .rposition(|&tk| tk <= t)
            .unwrap_or(0);
        let (t0, t1) = (self.times[k], self.times[k + 1]);
        let h = t1 - t0;
        let s = (t - t0) / h;
        let (s2, s3) = (s * s, s * s * s);
        let h00 = 2.0 * s3 - 3.0 * s2 + 1.0;
        let h10 = s3 - 2.0 * s2 + s;
        let h01 = -2.0 * s3 + 3.0 * s2;
        let h11 = s3 - s2;
        let dh00 = (6.0 * s2 - 6.0 * s) / h;
        let dh10 = 3.0 * s2 - 4.0 * s + 1.0;
        let dh01 = (-6.0 * s2 + 6.0 * s) / h;
        let dh11 = 3.0 * s2 - 2.0 * s;
        let (a, b) = (k * self.dim, (k + 1) * self.dim);
        for j in 0..self.dim {
            let (p0, p1) = (self.values[a + j], self.values[b + j]);
            let (m0, m1) = (self.slopes[a + j], self.slopes[b + j]);
            x[j] = h00 * p0 + h10 * h * m0 + h01 * p1 + h11 * h * m1;
            dx[j] = dh00 * p0 + dh10 * m0 + dh01 * p1 + dh11 * m1;
        }
    }
}

/// Fritsch–Carlson monotone slopes (as SciPy's `PchipInterpolator`).
fn pchip_slopes(h: &[f64], delta: &[f64], d: &mut [f64]) {
    let n = d.len();
    if n == 2 {
        d[0] = delta[0];
        d[1] = delta[0];
        return;
    }
    for k in 1..n - 1 {
        if delta[k - 1] * delta[k] <= 0.0 {
            d[k] = 0.0;
        } else {
            let w1 = 2.0 * h[k] + h[k - 1];
            let w2 = h[k] + 2.0 * h[k - 1];
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k]);
        }
    }
    let end = |h0: f64, h1: f64, d0: f64, d1: f64| {
        let mut m = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1);
        if m.signum() != d0.signum() {
            m = 0.0;
        } else if d0.signum() != d1.signum() && m.abs() > (3.0 * d0).abs() {
            m = 3.0 * d0;
        }
        m
    };
    d[0] = end(h[0], h[1], delta[0], delta[1]);
    d[n - 1] = end(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3]);
}

/// Slopes of the natural cubic spline (second derivative zero at both ends), from the tridiagonal
/// system in the knot derivatives, solved by the Thomas algorithm.
fn natural_slopes(h: &[f64], delta: &[f64], d: &mut [f64]) {
    let n = d.len();
    // Equations: row 0: 2 d0 + d1 = 3 δ0; row n-1: d_{n-2} + 2 d_{n-1} = 3 δ_{n-2};
    // interior k: h_k d_{k-1} + 2(h_{k-1}+h_k) d_k + h_{k-1} d_{k+1} = 3(h_k δ_{k-1} + h_{k-1} δ_k).
    let mut a = vec![0.0; n]; // sub-diagonal
    let mut b = vec![0.0; n]; // diagonal
    let mut c = vec![0.0; n]; // super-diagonal
    let mut r = vec![0.0; n];
    b[0] = 2.0;
    c[0] = 1.0;
    r[0] = 3.0 * delta[0];
    for k in 1..n - 1 {
        a[k] = h[k];
        b[k] = 2.0 * (h[k - 1] + h[k]);
        c[k] = h[k - 1];
        r[k] = 3.0 * (h[k] * delta[k - 1] + h[k - 1] * delta[k]);
    }
    a[n - 1] = 1.0;
    b[n - 1] = 2.0;
    r[n - 1] = 3.0 * delta[n - 2];
    for k in 1..n {
        let w = a[k] / b[k - 1];
        b[k] -= w * c[k - 1];
        r[k] -= w * r[k - 1];
    }
    d[n - 1] = r[n - 1] / b[n - 1];
    for k in (0..n - 1).rev() {
        d[k] = (r[k] - c[k] * d[k + 1]) / b[k];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_path_endpoints_and_velocity() {
        let x0 = [1.0, -2.0];
        let x1 = [3.0, 2.0];
        let eps = [0.5, -0.5];
        let (mut xt, mut ut) = ([0.0; 2], [0.0; 2]);
        linear(&x0, &x1, &eps, 0.0, 0.0, &mut xt, &mut ut);
        assert_eq!(xt, x0);
        linear(&x0, &x1, &eps, 1.0, 0.0, &mut xt, &mut ut);
        assert_eq!(xt, x1);
        assert_eq!(ut, [2.0, 4.0]);
        // Finite difference of xt in t (fixed eps) equals ut.
        let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
        linear(&x0, &x1, &eps, 0.3, 0.1, &mut a, &mut ut);
        linear(&x0, &x1, &eps, 0.3 + 1e-3, 0.1, &mut b, &mut ut);
        for i in 0..2 {
            assert!(((b[i] - a[i]) / 1e-3 - ut[i]).abs() < 1e-2);
        }
    }

    fn check_interpolates_and_fd(kind: SplineKind) {
        let times = [0.0, 0.2, 0.5, 1.0];
        let values = [0.0, 1.0, 0.8, 2.0, 1.5, 2.5, 1.0, 4.0]; // dim 2
        let s = Spline::fit(kind, &times, &values, 2);
        let (mut x, mut dx) = ([0.0; 2], [0.0; 2]);
        for (k, &t) in times.iter().enumerate() {
            s.eval(t, &mut x, &mut dx);
            assert!((x[0] - values[2 * k]).abs() < 1e-6 && (x[1] - values[2 * k + 1]).abs() < 1e-6);
        }
        for &t in &[0.1f32, 0.33, 0.7, 0.95] {
            let (mut a, mut b, mut d) = ([0.0; 2], [0.0; 2], [0.0; 2]);
            let h = 1e-3;
            s.eval(t - h, &mut a, &mut d);
            s.eval(t + h, &mut b, &mut d);
            s.eval(t, &mut x, &mut dx);
            for j in 0..2 {
                let fd = (b[j] - a[j]) / (2.0 * h);
                assert!(
                    (fd - dx[j]).abs() < 2e-2,
                    "{kind:?} t={t} j={j}: fd {fd} vs {}",
                    dx[j]
                );
            }
        }
    }

    #[test]
    fn splines_interpolate_with_consistent_derivatives() {
        check_interpolates_and_fd(SplineKind::Cubic);
        check_interpolates_and_fd(SplineKind::Pchip);
    }

    #[test]
    fn natural_spline_reproduces_a_line_and_pchip_is_monotone() {
        let times = [0.0, 0.25, 0.5, 1.0];
        let line: Vec<f32> = times.iter().map(|&t| 2.0 * t + 1.0).collect();
        let s = Spline::fit(SplineKind::Cubic, &times, &line, 1);
        let (mut x, mut dx) = ([0.0], [0.0]);
        s.eval(0.7, &mut x, &mut dx);
        assert!((x[0] - 2.4).abs() < 1e-5 && (dx[0] - 2.0).abs() < 1e-4);
        // A step: PCHIP stays within the data range, the cubic overshoots.
        let step = [0.0, 0.0, 1.0, 1.0];
        let p = Spline::fit(SplineKind::Pchip, &times, &step, 1);
        let c = Spline::fit(SplineKind::Cubic, &times, &step, 1);
        let (mut lo, mut hi) = (f32::MAX, f32::MIN);
        let mut overshoot = false;
        for i in 0..=100 {
            let t = i as f32 / 100.0;
            p.eval(t, &mut x, &mut dx);
            lo = lo.min(x[0]);
            hi = hi.max(x[0]);
            c.eval(t, &mut x, &mut dx);
            overshoot |= x[0] < -1e-3 || x[0] > 1.0 + 1e-3;
        }
        assert!(lo >= -1e-6 && hi <= 1.0 + 1e-6);
        assert!(overshoot);
    }
}
