//! Exact minimum-cost assignment (the minibatch optimal-transport coupling of NM-CFM): the
//! shortest-augmenting-path form of the Hungarian method with row and column potentials, O(n³).

/// For a square cost matrix (`n × n`, row-major), the permutation `col[r]` that minimizes
/// `Σ_r cost[r][col[r]]`.
///
/// # Panics
/// When `cost.len()` is not a square number of a row length `n` (`cost.len() == n * n`).
pub fn min_cost_assignment(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "cost must be n × n");
    // 1-based arrays with a virtual column 0, as in the classic formulation.
    let inf = f64::INFINITY;
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut row_of = vec![0usize; n + 1]; // row_of[col] = row assigned to col (1-based; 0 none)
    let mut way = vec![0usize; n + 1];
    for row in 1..=n {
        row_of[0] = row;
        let mut col0 = 0;
        let mut min_to = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[col0] = true;
            let r0 = row_of[col0];
            let mut delta = inf;
            let mut col1 = 0;
            for col in 1..=n {
                if !used[col] {
                    let reduced = cost[(r0 - 1) * n + (col - 1)] - u[r0] - v[col];
                    if reduced < min_to[col] {
                        min_to[col] = reduced;
                        way[col] = col0;
                    }
                    if min_to[col] < delta {
                        delta = min_to[col];
                        col1 = col;
                    }
                }
            }
            for col in 0..=n {
                if used[col] {
                    u[row_of[col]] += delta;
                    v[col] -= delta;
                } else {
                    min_to[col] -= delta;
                }
            }
            col0 = col1;
            if row_of[col0] == 0 {
                break;
            }
        }
        // Augment along the path back to the virtual column.
        loop {
            let prev = way[col0];
            row_of[col0] = row_of[prev];
            col0 = prev;
            if col0 == 0 {
                break;
            }
        }
    }
    let mut col_of = vec![0usize; n];
    for col in 1..=n {
        if row_of[col] > 0 {
            col_of[row_of[col] - 1] = col - 1;
        }
    }
    col_of
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmflow_runtime::Rng;

    fn total(cost: &[f64], n: usize, col: &[usize]) -> f64 {
        (0..n).map(|r| cost[r * n + col[r]]).sum()
    }

    fn brute_force(cost: &[f64], n: usize) -> f64 {
        fn rec(cost: &[f64], n: usize, r: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
            if r == n {
                *best = best.min(acc);
                return;
            }
            for c in 0..n {
                if !used[c] {
                    used[c] = true;
                    rec(cost, n, r + 1, used, acc + cost[r * n + c], best);
                    used[c] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        rec(cost, n, 0, &mut vec![false; n], 0.0, &mut best);
        best
    }

    #[test]
    fn optimal_on_random_matrices() {
        let mut rng = Rng::new(3, 0);
        for n in 1..=7 {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..n * n)
                    .map(|_| f64::from(rng.uniform()) * 10.0)
                    .collect();
                let col = min_cost_assignment(&cost, n);
                let mut seen = col.clone();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "a permutation");
                assert!((total(&cost, n, &col) - brute_force(&cost, n)).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn identity_when_the_diagonal_is_cheapest_and_empty_input() {
        let n = 4;
        let cost: Vec<f64> = (0..n * n)
            .map(|i| if i / n == i % n { 0.0 } else { 1.0 })
            .collect();
        assert_eq!(min_cost_assignment(&cost, n), vec![0, 1, 2, 3]);
        assert!(min_cost_assignment(&[], 0).is_empty());
    }
}
