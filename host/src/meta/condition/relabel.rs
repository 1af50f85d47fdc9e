//! Relabelling, the symmetry of a classifier's output layer (`train --relabel`).
//!
//! Permuting the rows of the last layer (its weight rows and biases) by `σ` turns a classifier
//! of a task whose label map is `π` (an image of class `y` has label `π[y]`) into one of the task
//! `σ∘π`, and it does so for the whole training run: the zoo's Kaiming-uniform init is i.i.d.
//! over the rows and Adam acts elementwise, so the relabelled trajectory is as likely a run of
//! `σ∘π` as the run itself is of `π`. Relabelling a training pair (its state, its target velocity
//! and its support set's labels together) shows a conditioned field every labelling of the
//! classes instead of the zoo's few: it has to read the labelling from the support set instead
//! of recognizing a task it has seen. Label maps of unseen tasks are never drawn, so that the
//! tasks measured as unseen stay unseen.

use crate::arch::Layout;
use nmflow_runtime::Rng;

/// Where a layout's output layer lies in the flat parameter vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relabel {
    /// Start of the last weight block (row-major `[classes, fan_in]`).
    weight: usize,
    /// Start of the last bias block (`[classes]`).
    bias: usize,
    /// Values per weight row.
    row: usize,
    /// Classes (output rows).
    classes: usize,
}

/// Redraws of a relabelling that lands on an unseen task before keeping the pair's own task.
const REDRAWS: usize = 16;

impl Relabel {
    /// The output layer of `layout`: its last two blocks, a weight with one row per class and a
    /// bias of as many values (`None` for any other ending).
    pub fn of(layout: &Layout) -> Option<Self> {
        let n = layout.blocks.len();
        if n < 2 {
            return None;
        }
        let (w, b) = (&layout.blocks[n - 2], &layout.blocks[n - 1]);
        let classes = *b.shape.first()?;
        if b.shape.len() != 1 || w.shape.first() != Some(&classes) || classes == 0 {
            return None;
        }
        let offsets = layout.offsets();
        Some(Self {
            weight: offsets[n - 2],
            bias: offsets[n - 1],
            row: w.len() / classes,
            classes,
        })
    }

    /// Classes of the output layer.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Moves output row `c` of the classifier `x` (one flat parameter vector, raw or
    /// standardized per block) to row `sigma[c]`.
    pub fn apply(&self, sigma: &[u8], x: &mut [f32]) {
        let (c, r) = (self.classes, self.row);
        let old_w = x[self.weight..self.weight + c * r].to_vec();
        let old_b = x[self.bias..self.bias + c].to_vec();
        for (from, &to) in sigma.iter().enumerate().take(c) {
            let to = usize::from(to);
            x[self.weight + to * r..self.weight + (to + 1) * r]
                .copy_from_slice(&old_w[from * r..(from + 1) * r]);
            x[self.bias + to] = old_b[from];
        }
    }

    /// A uniformly drawn relabelling `σ` of a task with label map `map`, and the relabelled
    /// task's map `σ∘π`; one whose map is in `avoid` is drawn again, and after a few tries the
    /// identity (the task itself) is kept.
    pub fn draw(&self, map: &[u8], avoid: &[&[u8]], rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
        for _ in 0..REDRAWS {
            let sigma = shuffle(self.classes, rng);
            let relabelled: Vec<u8> = map.iter().map(|&l| sigma[usize::from(l)]).collect();
            if !avoid.contains(&relabelled.as_slice()) {
                return (sigma, relabelled);
            }
        }
        ((0..self.classes as u8).collect(), map.to_vec())
    }
}

/// A Fisher–Yates shuffle of `0..n` (`n` ≤ 256).
fn shuffle(n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut p: Vec<u8> = (0..n).map(|i| i as u8).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u32 + 1) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    /// Logits of a one-hidden-layer ReLU MLP `mlp:d-h-c` with flat parameters `w`.
    fn logits(layout: &Layout, w: &[f32], x: &[f32]) -> Vec<f32> {
        let (h, d) = (layout.blocks[0].shape[0], layout.blocks[0].shape[1]);
        let c = layout.blocks[2].shape[0];
        let (w1, rest) = w.split_at(h * d);
        let (b1, rest) = rest.split_at(h);
        let (w2, b2) = rest.split_at(c * h);
        let hid: Vec<f32> = (0..h)
            .map(|j| (b1[j] + (0..d).map(|i| w1[j * d + i] * x[i]).sum::<f32>()).max(0.0))
            .collect();
        (0..c)
            .map(|k| b2[k] + (0..h).map(|j| w2[k * h + j] * hid[j]).sum::<f32>())
            .collect()
    }

    #[test]
    fn relabelling_moves_each_logit_to_its_new_label() {
        let layout = "mlp:5-4-3".parse::<Arch>().unwrap().layout();
        let r = Relabel::of(&layout).unwrap();
        assert_eq!(r.classes(), 3);
        let mut rng = Rng::new(3, 0);
        let mut w = Vec::new();
        layout.init_into(&mut rng, &mut w);
        let x = [0.3, -0.2, 0.9, 0.1, -0.5];
        let before = logits(&layout, &w, &x);
        let sigma = [2u8, 0, 1];
        let mut moved = w.clone();
        r.apply(&sigma, &mut moved);
        let after = logits(&layout, &moved, &x);
        for (c, &to) in sigma.iter().enumerate() {
            assert_eq!(before[c], after[usize::from(to)]);
        }
        // The hidden layer is untouched.
        assert_eq!(w[..24], moved[..24]);
    }

    #[test]
    fn draws_are_permutations_that_avoid_the_unseen_maps() {
        let layout = "mlp:5-4-3".parse::<Arch>().unwrap().layout();
        let r = Relabel::of(&layout).unwrap();
        let mut rng = Rng::new(4, 0);
        let map = [1u8, 2, 0];
        // Every relabelling but the identity's is unseen: only the task itself remains.
        let all: Vec<Vec<u8>> = vec![
            vec![0, 1, 2],
            vec![0, 2, 1],
            vec![1, 0, 2],
            vec![2, 1, 0],
            vec![2, 0, 1],
        ];
        let avoid: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        for _ in 0..20 {
            let (sigma, new) = r.draw(&map, &avoid, &mut rng);
            assert_eq!(new, map);
            let mut s = sigma.clone();
            s.sort_unstable();
            assert_eq!(s, vec![0, 1, 2]);
            assert_eq!(
                new,
                map.iter()
                    .map(|&l| sigma[usize::from(l)])
                    .collect::<Vec<_>>()
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(r.draw(&map, &[], &mut rng).1);
        }
        assert_eq!(seen.len(), 6, "every labelling is drawn");
        assert!(Relabel::of(&"mlp:5-3".parse::<Arch>().unwrap().layout()).is_some());
    }
}
