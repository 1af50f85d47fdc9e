//! The statistics of a shift test and their calibration: predictive entropy, the two-sample
//! Kolmogorov–Smirnov distance, the threshold at a false-positive rate, TPR, AUROC and the ROC
//! curve. Every score is oriented so that larger means "more shifted".

/// Entropy (nats) of each row of `probs` (`[n, classes]`, rows summing to 1).
pub fn entropies(probs: &[f32], classes: usize) -> Vec<f64> {
    probs
        .chunks_exact(classes)
        .map(|row| {
            row.iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| -f64::from(p) * f64::from(p).ln())
                .sum()
        })
        .collect()
}

/// Softmax of every row of `logits` (`[n, classes]`).
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; logits.len()];
    for (row, o) in logits
        .chunks_exact(classes)
        .zip(out.chunks_exact_mut(classes))
    {
        nmflow_runtime::shift::softmax(row, o);
    }
    out
}

/// The two-sided two-sample Kolmogorov–Smirnov statistic `sup |F_a − F_b|` (0 when either sample
/// is empty).
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let v = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    d
}

/// The decision threshold at false-positive rate `alpha` from `n` null scores: the
/// `⌈(1 − α)(n + 1)⌉`-th smallest (`+∞` when that rank exceeds `n`), and a test flags a shift
/// when its score is `> τ`. The rank is the conformal one: for a new null score exchangeable
/// with the calibration scores, `P(score > τ) ≤ α` without assumptions on the distribution
/// (the plain empirical quantile, rank `⌈(1 − α)n⌉`, undercovers by up to `1/n`).
pub fn threshold(null: &[f64], alpha: f64) -> f64 {
    let n = null.len();
    let rank = ((1.0 - alpha) * (n as f64 + 1.0) - 1e-9).ceil() as usize;
    if n == 0 || rank > n {
        return f64::INFINITY;
    }
    let mut s = null.to_vec();
    s.sort_by(f64::total_cmp);
    s[rank.max(1) - 1]
}

/// The fraction of `scores` strictly above `tau`.
pub fn rate_above(scores: &[f64], tau: f64) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().filter(|&&s| s > tau).count() as f64 / scores.len() as f64
}

/// The area under the ROC curve: `P(alt > null) + ½·P(alt = null)` over all pairs.
pub fn auroc(null: &[f64], alt: &[f64]) -> f64 {
    if null.is_empty() || alt.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for &a in alt {
        for &n in null {
            wins += if a > n {
                1.0
            } else if a == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (null.len() * alt.len()) as f64
}

/// The ROC curve `(fpr, tpr)` over every threshold, from (0, 0) to (1, 1).
pub fn roc_curve(null: &[f64], alt: &[f64]) -> Vec<(f64, f64)> {
    let mut taus: Vec<f64> = null.iter().chain(alt).copied().collect();
    taus.sort_by(f64::total_cmp);
    taus.dedup();
    let mut pts = vec![(0.0, 0.0)];
    for &tau in taus.iter().rev() {
        pts.push((rate_above(null, tau), rate_above(alt, tau)));
    }
    pts.push((1.0, 1.0));
    // Every threshold strictly below the smallest score flags everything.
    pts.dedup();
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_has_the_known_quantile_of_synthetic_scores() {
        // 0..100: rank ⌈0.95 · 101⌉ = 96, τ = 95, the four largest lie above it.
        let null: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(threshold(&null, 0.05), 95.0);
        assert!((rate_above(&null, 95.0) - 0.04).abs() < 1e-12);
        // 19 scores: rank ⌈0.95 · 20⌉ = 19, the largest; 18 scores: no threshold can keep α.
        let few: Vec<f64> = (0..19).map(f64::from).collect();
        assert_eq!(threshold(&few, 0.05), 18.0);
        assert_eq!(threshold(&few[..18], 0.05), f64::INFINITY);
        // Ties: a discrete statistic can only be as liberal as its atoms allow.
        let mut tied = vec![0.0; 90];
        tied.extend(vec![3.0; 10]);
        let tau = threshold(&tied, 0.05);
        assert_eq!(tau, 3.0);
        assert_eq!(rate_above(&tied, tau), 0.0);
        // A uniform null of 10,000 draws: τ near its 95 % quantile.
        let mut rng = nmflow_runtime::Rng::new(7, 0);
        let u: Vec<f64> = (0..10_000).map(|_| f64::from(rng.uniform())).collect();
        let tau = threshold(&u, 0.05);
        assert!((tau - 0.95).abs() < 0.01, "{tau}");
        assert!(rate_above(&u, tau) <= 0.05);
        // Calibrated on 100 draws, the rate on fresh null draws averages 1 − 96/101 = 0.0495 ≤ α
        // (within the simulation's sampling error, about 0.0015).
        let mut fresh = 0.0;
        for round in 0..400 {
            let mut r = nmflow_runtime::Rng::new(round, 1);
            let cal: Vec<f64> = (0..100).map(|_| f64::from(r.uniform())).collect();
            let new: Vec<f64> = (0..100).map(|_| f64::from(r.uniform())).collect();
            fresh += rate_above(&new, threshold(&cal, 0.05));
        }
        let fresh = fresh / 400.0;
        assert!((fresh - (1.0 - 96.0 / 101.0)).abs() < 0.005, "{fresh}");
    }

    #[test]
    fn auroc_and_roc_of_separated_and_identical_samples() {
        let null = [0.0, 1.0, 2.0];
        assert_eq!(auroc(&null, &[3.0, 4.0]), 1.0);
        assert_eq!(auroc(&null, &null), 0.5);
        assert_eq!(auroc(&[5.0], &[1.0]), 0.0);
        let roc = roc_curve(&null, &[3.0, 4.0]);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        assert!(roc.contains(&(0.0, 1.0)));
    }

    #[test]
    fn ks_distance_matches_hand_computed_values() {
        assert_eq!(ks_statistic(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(ks_statistic(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        // F_a jumps to 1/2 at 1; F_b is 0 until 1.5: D = 1/2.
        assert!((ks_statistic(&[1.0, 2.0], &[1.5, 2.5]) - 0.5).abs() < 1e-12);
        assert_eq!(ks_statistic(&[], &[1.0]), 0.0);
    }

    #[test]
    fn entropy_of_uniform_and_certain_rows() {
        let e = entropies(&[0.5, 0.5, 1.0, 0.0], 2);
        assert!((e[0] - 2f64.ln()).abs() < 1e-9);
        assert_eq!(e[1], 0.0);
        let p = softmax_rows(&[0.0, 0.0, 10.0, -10.0], 2);
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] > 0.999);
    }
}
