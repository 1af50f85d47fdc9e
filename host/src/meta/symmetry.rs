//! The permutation symmetry of hidden units.
//!
//! Permuting the hidden units of an MLP layer (the rows of its weight and bias, and the columns of
//! the next layer's weight) leaves the network's function unchanged. Applying one random
//! permutation per hidden layer jointly to every point of a training pair (or a whole trajectory)
//! turns one run into `∏ H_l!` equally valid runs: the meta-model can no longer memorize runs by
//! position and must learn a field that respects the symmetry.

use crate::arch::Layout;
use nmflow_runtime::Rng;

/// For each hidden layer of an MLP layout: (weight block, bias block, next weight block, width).
#[derive(Clone, Debug)]
pub struct HiddenLayers {
    layers: Vec<HiddenLayer>,
    num_params: usize,
}

#[derive(Clone, Debug)]
struct HiddenLayer {
    weight_off: usize,
    d_in: usize,
    bias_off: usize,
    next_off: usize,
    next_out: usize,
    width: usize,
}

impl HiddenLayers {
    /// The hidden layers of an MLP layout (`fcN.weight`, `fcN.bias` pairs); `None` for a layout with
    /// convolutions or without hidden layers.
    pub fn of(layout: &Layout) -> Option<Self> {
        if layout.blocks.iter().any(|b| b.shape.len() > 2) {
            return None;
        }
        let off = layout.offsets();
        let n_layers = layout.blocks.len() / 2;
        let layers: Vec<HiddenLayer> = (0..n_layers.saturating_sub(1))
            .map(|l| {
                let w = &layout.blocks[2 * l];
                let next = &layout.blocks[2 * l + 2];
                HiddenLayer {
                    weight_off: off[2 * l],
                    d_in: w.shape[1],
                    bias_off: off[2 * l + 1],
                    next_off: off[2 * l + 2],
                    next_out: next.shape[0],
                    width: w.shape[0],
                }
            })
            .collect();
        (!layers.is_empty()).then(|| Self {
            layers,
            num_params: layout.num_params(),
        })
    }

    /// Draws one permutation per hidden layer.
    pub fn draw(&self, rng: &mut Rng) -> Vec<Vec<usize>> {
        self.layers
            .iter()
            .map(|l| {
                let mut p: Vec<usize> = (0..l.width).collect();
                rng.shuffle(&mut p);
                p
            })
            .collect()
    }

    /// Applies `perms` to every row (`num_params` values) of `rows` in place: new unit `j` of layer
    /// `l` is old unit `perms[l][j]`.
    pub fn apply(&self, perms: &[Vec<usize>], rows: &mut [f32]) {
        let mut old = vec![0.0f32; self.num_params];
        for row in rows.chunks_exact_mut(self.num_params) {
            for (l, perm) in self.layers.iter().zip(perms) {
                // Layers are permuted one after another: layer l+1's rows must see the columns
                // layer l's permutation already moved.
                old.copy_from_slice(row);
                for (j, &src) in perm.iter().enumerate() {
                    let (dst_w, src_w) = (l.weight_off + j * l.d_in, l.weight_off + src * l.d_in);
                    row[dst_w..dst_w + l.d_in].copy_from_slice(&old[src_w..src_w + l.d_in]);
                    row[l.bias_off + j] = old[l.bias_off + src];
                    for o in 0..l.next_out {
                        row[l.next_off + o * l.width + j] = old[l.next_off + o * l.width + src];
                    }
                }
            }
        }
    }

    /// The canonical order of one classifier's hidden units: per hidden layer, its units sorted by
    /// their pre-activation on an all-ones input (`b_j + Σ_i W[j, i]`, ties by position). The key
    /// does not depend on the order of the layer's inputs, so one pass sorts every layer, and two
    /// classifiers that differ by a permutation of hidden units get the same canonical form.
    pub fn canonical_perms(&self, row: &[f32]) -> Vec<Vec<usize>> {
        self.layers
            .iter()
            .map(|l| {
                let key = |j: usize| {
                    let w = &row[l.weight_off + j * l.d_in..l.weight_off + (j + 1) * l.d_in];
                    row[l.bias_off + j] + w.iter().sum::<f32>()
                };
                let mut order: Vec<usize> = (0..l.width).collect();
                order.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
                order
            })
            .collect()
    }

    /// Puts every row (`num_params` values) of `rows` into its canonical order
    /// ([`Self::canonical_perms`]) in place.
    pub fn canonicalize(&self, rows: &mut [f32]) {
        for row in rows.chunks_exact_mut(self.num_params) {
            let perms = self.canonical_perms(row);
            self.apply(&perms, row);
        }
    }
    /// The L2 distance between classifiers `a` and `b` once `b`'s hidden units are matched to
    /// `a`'s: layer after layer, the minimum-cost assignment of `b`'s units to `a`'s, where a
    /// unit's cost is the squared distance of its incoming weights (columns already in matched
    /// order), bias and outgoing weights. For one hidden layer this is the exact minimum over all
    /// permutations; for deeper MLPs it is layer-wise weight matching, an upper bound. Two runs
    /// that differ only by the order of their units are at distance 0, so this measures what
    /// differs between the functions' parts rather than where they sit (independent training
    /// runs land in unrelated orders, which the plain distance counts as difference).
    pub fn aligned_distance(&self, a: &[f32], b: &[f32]) -> f64 {
        let mut b = b.to_vec();
        let sq = |x: &[f32], y: &[f32]| -> f64 {
            x.iter().zip(y).map(|(u, v)| f64::from(u - v).powi(2)).sum()
        };
        for (li, l) in self.layers.iter().enumerate() {
            let n = l.width;
            let mut cost = vec![0.0f64; n * n];
            for j in 0..n {
                let a_in = &a[l.weight_off + j * l.d_in..l.weight_off + (j + 1) * l.d_in];
                for k in 0..n {
                    let b_in = &b[l.weight_off + k * l.d_in..l.weight_off + (k + 1) * l.d_in];
                    let out: f64 = (0..l.next_out)
                        .map(|o| {
                            f64::from(a[l.next_off + o * n + j] - b[l.next_off + o * n + k]).powi(2)
                        })
                        .sum();
                    cost[j * n + k] = sq(a_in, b_in)
                        + f64::from(a[l.bias_off + j] - b[l.bias_off + k]).powi(2)
                        + out;
                }
            }
            let mut perms: Vec<Vec<usize>> =
                self.layers.iter().map(|l| (0..l.width).collect()).collect();
            perms[li] = crate::flow::assignment::min_cost_assignment(&cost, n);
            self.apply(&perms, &mut b);
        }
        sq(a, &b).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    fn mlp_forward(layout: &Layout, w: &[f32], x: &[f32]) -> Vec<f32> {
        let blocks = layout.unflatten(w).unwrap();
        let mut h = x.to_vec();
        let n_layers = blocks.len() / 2;
        for l in 0..n_layers {
            let (wt, b) = (&blocks[2 * l], &blocks[2 * l + 1]);
            let d_in = h.len();
            let mut y: Vec<f32> = (0..b.len())
                .map(|o| b[o] + (0..d_in).map(|i| wt[o * d_in + i] * h[i]).sum::<f32>())
                .collect();
            if l + 1 < n_layers {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = y;
        }
        h
    }

    #[test]
    fn permuting_hidden_units_keeps_the_function() {
        let layout = "mlp:5-4-3-2".parse::<Arch>().unwrap().layout();
        let mut rng = Rng::new(1, 0);
        let mut w = Vec::new();
        layout.init_into(&mut rng, &mut w);
        let sym = HiddenLayers::of(&layout).unwrap();
        let perms = sym.draw(&mut rng);
        let mut pw = w.clone();
        sym.apply(&perms, &mut pw);
        assert_ne!(pw, w);
        let x = [0.3, -1.0, 0.5, 2.0, 0.1];
        let (a, b) = (mlp_forward(&layout, &w, &x), mlp_forward(&layout, &pw, &x));
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-5);
        }
        // Same multiset of values per block.
        let mut s1 = w.clone();
        let mut s2 = pw.clone();
        s1.sort_by(f32::total_cmp);
        s2.sort_by(f32::total_cmp);
        assert_eq!(s1, s2);
        assert!(HiddenLayers::of(&Arch::CnnS.layout()).is_none());
    }

    #[test]
    fn the_canonical_form_keeps_the_function_and_forgets_the_order() {
        let layout = "mlp:5-4-3-2".parse::<Arch>().unwrap().layout();
        let mut rng = Rng::new(4, 0);
        let mut w = Vec::new();
        layout.init_into(&mut rng, &mut w);
        let sym = HiddenLayers::of(&layout).unwrap();
        let mut pw = w.clone();
        sym.apply(&sym.draw(&mut rng), &mut pw);
        let (mut cw, mut cpw) = (w.clone(), pw.clone());
        sym.canonicalize(&mut cw);
        sym.canonicalize(&mut cpw);
        assert_eq!(cw, cpw, "permuted copies share one canonical form");
        let x = [0.3, -1.0, 0.5, 2.0, 0.1];
        for (u, v) in mlp_forward(&layout, &w, &x)
            .iter()
            .zip(&mlp_forward(&layout, &cw, &x))
        {
            assert!((u - v).abs() < 1e-5);
        }
        // Canonical is a fixed point.
        let mut again = cw.clone();
        sym.canonicalize(&mut again);
        assert_eq!(again, cw);
    }

    /// Brute force over all 4! orders of a 4-unit hidden layer: the aligned distance is the
    /// minimum, 0 for a permuted copy, and never above the plain distance.
    #[test]
    fn the_aligned_distance_is_the_minimum_over_unit_orders() {
        let layout = "mlp:6-4-3".parse::<Arch>().unwrap().layout();
        let sym = HiddenLayers::of(&layout).unwrap();
        let mut rng = Rng::new(9, 0);
        let plain = |x: &[f32], y: &[f32]| -> f64 {
            x.iter()
                .zip(y)
                .map(|(u, v)| f64::from(u - v).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        for _ in 0..20 {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            layout.init_into(&mut rng, &mut a);
            layout.init_into(&mut rng, &mut b);
            let mut best = f64::INFINITY;
            let mut perm = vec![0usize; 4];
            // Every order by its factorial-base code: digit i picks from the units left.
            for code in 0..24usize {
                let mut pool: Vec<usize> = (0..4).collect();
                let mut c = code;
                for (slot, base) in perm.iter_mut().zip([6usize, 2, 1, 1]) {
                    *slot = pool.remove(c / base);
                    c %= base;
                }
                let mut pb = b.clone();
                sym.apply(&[perm.clone()], &mut pb);
                best = best.min(plain(&a, &pb));
            }
            let d = sym.aligned_distance(&a, &b);
            assert!(
                (d - best).abs() < 1e-6 * best.max(1.0),
                "aligned {d} vs brute force {best}"
            );
            assert!(d <= plain(&a, &b) + 1e-9);
            let mut pa = a.clone();
            sym.apply(&sym.draw(&mut rng), &mut pa);
            assert!(sym.aligned_distance(&a, &pa) < 1e-6);
        }
    }
}
