//! Distances between sets of classifiers' weights: nearest neighbours, pairwise distances, the
//! sliced Wasserstein-1 distance, and the median that summarizes them. Pure functions on flat
//! `[n, p]` rows.

use super::source::standard_normal;
use super::symmetry::HiddenLayers;
use nmflow_runtime::Rng;

/// The median (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// For each row of `queries`, the index of and L2 distance to its nearest row of `pool`.
pub fn nearest(queries: &[f32], pool: &[f32], p: usize) -> Vec<(usize, f64)> {
    queries
        .chunks_exact(p)
        .map(|q| {
            pool.chunks_exact(p)
                .enumerate()
                .map(|(j, r)| {
                    let d2: f64 = q.iter().zip(r).map(|(a, b)| f64::from(a - b).powi(2)).sum();
                    (j, d2)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or((0, f64::NAN), |(j, d2)| (j, d2.sqrt()))
        })
        .collect()
}

/// Sliced Wasserstein-1 distance between two point sets (`[n, p]`, `[m, p]`), averaged over
/// `directions` random unit directions; 1-D distances by matching 256 quantiles.
pub fn sliced_w1(a: &[f32], b: &[f32], p: usize, directions: usize, rng: &mut Rng) -> f64 {
    let q = 256;
    let mut total = 0.0;
    for _ in 0..directions {
        let mut dir: Vec<f32> = (0..p).map(|_| standard_normal(rng)).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        dir.iter_mut().for_each(|v| *v /= norm);
        let project = |s: &[f32]| {
            let mut v: Vec<f64> = s
                .chunks_exact(p)
                .map(|r| r.iter().zip(&dir).map(|(x, d)| f64::from(x * d)).sum())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (pa, pb) = (project(a), project(b));
        if pa.is_empty() || pb.is_empty() {
            return f64::NAN;
        }
        let quantile = |v: &[f64], u: f64| v[((u * v.len() as f64) as usize).min(v.len() - 1)];
        total += (0..q)
            .map(|j| {
                let u = (j as f64 + 0.5) / q as f64;
                (quantile(&pa, u) - quantile(&pb, u)).abs()
            })
            .sum::<f64>()
            / q as f64;
    }
    total / directions.max(1) as f64
}

/// L2 distances between all pairs of rows (at most the first 200 rows).
pub fn pairwise(rows: &[f32], p: usize) -> Vec<f64> {
    let rows: Vec<&[f32]> = rows.chunks_exact(p).take(200).collect();
    let mut d = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            d.push(
                a.iter()
                    .zip(*b)
                    .map(|(x, y)| f64::from(x - y).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
    }
    d
}

/// [`pairwise`] with each pair's hidden units matched first
/// ([`HiddenLayers::aligned_distance`]), over at most the first `limit` rows: the spread that is
/// left once the order of the units no longer counts.
pub fn pairwise_aligned(rows: &[f32], layers: &HiddenLayers, p: usize, limit: usize) -> Vec<f64> {
    let rows: Vec<&[f32]> = rows.chunks_exact(p).take(limit).collect();
    let mut d = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            d.push(layers.aligned_distance(a, b));
        }
    }
    d
}

/// Fractions of the `m` test inputs on which two classifiers' predictions (`preds`, `m` per
/// classifier, row after row) differ, for all pairs of the first 200 classifiers: diversity in
/// what the classifiers do, which weight distances overstate when many weights never train (for
/// MNIST, the weights of border pixels keep their random initialization).
pub fn pairwise_disagreement(preds: &[i64], m: usize) -> Vec<f64> {
    if m == 0 {
        return Vec::new();
    }
    let rows: Vec<&[i64]> = preds.chunks_exact(m).take(200).collect();
    let mut d = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            let differ = a.iter().zip(*b).filter(|(x, y)| x != y).count();
            d.push(differ as f64 / m as f64);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliced_w1_of_a_shift() {
        // Two 1-D point sets shifted by 2: W1 = 2 along the only direction.
        let a: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let b: Vec<f32> = a.iter().map(|v| v + 2.0).collect();
        let w = sliced_w1(&a, &b, 1, 4, &mut Rng::new(0, 0));
        assert!((w - 2.0).abs() < 1e-6, "{w}");
        assert!(sliced_w1(&a, &a, 1, 4, &mut Rng::new(0, 0)).abs() < 1e-9);
    }

    #[test]
    fn nearest_neighbours() {
        let pool = [0.0, 0.0, 10.0, 0.0];
        let q = [9.0, 0.0, 1.0, 1.0];
        let nn = nearest(&q, &pool, 2);
        assert_eq!(nn[0].0, 1);
        assert!((nn[0].1 - 1.0).abs() < 1e-12);
        assert_eq!(nn[1].0, 0);
        assert!((nn[1].1 - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.5);
        let d = pairwise(&[0.0, 0.0, 3.0, 4.0, 0.0, 1.0], 2);
        assert_eq!(d, vec![5.0, 1.0, 3f64.hypot(3.0)]);
    }

    #[test]
    fn pairwise_disagreement_counts_differing_predictions() {
        // Three classifiers on four inputs.
        let preds = [0, 1, 2, 3, 0, 1, 2, 0, 1, 1, 2, 0];
        assert_eq!(pairwise_disagreement(&preds, 4), vec![0.25, 0.5, 0.25]);
        assert!(pairwise_disagreement(&preds, 0).is_empty());
    }
}
