//! The disagreement ensemble of one shift test and Detectron's rejection rule, shared by both
//! methods: members are added one at a time (trained constrained disagreement classifiers for
//! Detectron, tilted samples for meta-detectron); each removes from the sample the inputs on
//! which it disagrees with the base classifier; the ensemble stops after `max_members`, when no
//! input remains, or when the remaining count has not fallen for `patience` members in a row.

use serde::{Deserialize, Serialize};

use super::stats;

/// When an ensemble stops growing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionRule {
    /// At most this many members besides the base classifier.
    pub max_members: usize,
    /// Stop when the remaining count has not fallen for this many members in a row.
    pub patience: usize,
}

/// One test's ensemble as it grows.
#[derive(Clone, Debug)]
pub struct Ensemble {
    classes: usize,
    /// The base classifier's predictions on the sample.
    pub predicted: Vec<u8>,
    /// Whether each input of the sample is still in it.
    pub remaining: Vec<bool>,
    /// The remaining count: the sample's size, then after each member.
    pub counts: Vec<usize>,
    /// Every member's logits on the whole sample (`[n, classes]`), the base classifier first.
    pub logits: Vec<Vec<f32>>,
    best: usize,
    wait: usize,
    done: bool,
}

impl Ensemble {
    /// An ensemble holding only the base classifier, whose logits on the sample are
    /// `base_logits` (`[n, classes]`).
    pub fn new(base_logits: Vec<f32>, classes: usize) -> Self {
        let predicted = argmax_rows(&base_logits, classes);
        let n = predicted.len();
        Self {
            classes,
            predicted,
            remaining: vec![true; n],
            counts: vec![n],
            logits: vec![base_logits],
            best: n,
            wait: 0,
            done: n == 0,
        }
    }

    /// The current remaining count.
    pub fn count(&self) -> usize {
        self.counts.last().copied().unwrap_or(0)
    }

    /// Whether the ensemble has stopped growing.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Adds a member with logits `logits` (`[n, classes]`) on the whole sample: the remaining
    /// inputs where its prediction differs from the base's are removed; then the rule decides
    /// whether another member follows.
    pub fn add(&mut self, logits: Vec<f32>, rule: RejectionRule) {
        let pred = argmax_rows(&logits, self.classes);
        for ((keep, p), b) in self.remaining.iter_mut().zip(&pred).zip(&self.predicted) {
            if *keep && p != b {
                *keep = false;
            }
        }
        let count = self.remaining.iter().filter(|&&k| k).count();
        self.counts.push(count);
        self.logits.push(logits);
        if count < self.best {
            self.best = count;
            self.wait = 0;
        } else {
            self.wait += 1;
        }
        let members = self.logits.len() - 1;
        self.done = count == 0 || self.wait >= rule.patience || members >= rule.max_members;
    }

    /// The disagreement statistic: how many inputs the members removed (larger: more shifted).
    pub fn disagreement(&self) -> f64 {
        (self.counts[0] - self.count()) as f64
    }

    /// The predictive entropy (nats) of the ensemble's mean probabilities on each input.
    pub fn entropies(&self) -> Vec<f64> {
        let n = self.predicted.len();
        let mut mean = vec![0.0f32; n * self.classes];
        for l in &self.logits {
            for (m, p) in mean.iter_mut().zip(stats::softmax_rows(l, self.classes)) {
                *m += p;
            }
        }
        let k = self.logits.len() as f32;
        for m in &mut mean {
            *m /= k;
        }
        stats::entropies(&mean, self.classes)
    }
}

/// The tests whose ensembles still grow.
pub fn active(ensembles: &[Ensemble]) -> Vec<usize> {
    (0..ensembles.len())
        .filter(|&t| !ensembles[t].done())
        .collect()
}

/// Adds one member to each of the ensembles `tests`, whose logits on its test's sample are the
/// `j`-th `[n, classes]` block of `logits` for `tests[j]`; `on_member(test)` follows each.
pub fn add_members(
    ensembles: &mut [Ensemble],
    tests: &[usize],
    logits: &[f32],
    rule: RejectionRule,
    on_member: &mut dyn FnMut(usize),
) {
    let per = logits.len() / tests.len().max(1);
    for (j, &t) in tests.iter().enumerate() {
        ensembles[t].add(logits[j * per..(j + 1) * per].to_vec(), rule);
        on_member(t);
    }
}

/// The index of the largest value of each row (the first on ties).
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<u8> {
    logits
        .chunks_exact(classes)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits that predict `classes[i]` for input `i` (3 classes).
    fn predicting(classes: &[u8]) -> Vec<f32> {
        classes
            .iter()
            .flat_map(|&c| (0..3).map(move |k| if k == c { 5.0 } else { 0.0 }))
            .collect()
    }

    #[test]
    fn rejection_rule_on_a_constructed_case() {
        let rule = RejectionRule {
            max_members: 5,
            patience: 2,
        };
        let mut e = Ensemble::new(predicting(&[0, 1, 2, 0]), 3);
        // Disagrees on inputs 0 and 1: two removed.
        e.add(predicting(&[1, 2, 2, 0]), rule);
        assert_eq!(e.counts, vec![4, 2]);
        assert!(!e.done());
        // Disagrees only on input 0, already removed: no progress (wait 1).
        e.add(predicting(&[2, 1, 2, 0]), rule);
        assert_eq!(e.count(), 2);
        assert!(!e.done());
        // No progress again: patience 2 ends it.
        e.add(predicting(&[0, 1, 2, 0]), rule);
        assert!(e.done());
        assert_eq!(e.counts, vec![4, 2, 2, 2]);
        assert_eq!(e.disagreement(), 2.0);
        assert_eq!(e.remaining, vec![false, false, true, true]);

        // Progress resets the wait; everything removed ends it at once.
        let mut e = Ensemble::new(predicting(&[0, 0]), 3);
        e.add(predicting(&[0, 0]), rule);
        e.add(predicting(&[1, 0]), rule);
        assert!(!e.done());
        e.add(predicting(&[1, 1]), rule);
        assert!(e.done());
        assert_eq!(e.counts, vec![2, 2, 1, 0]);

        // The member cap.
        let one = RejectionRule {
            max_members: 1,
            patience: 2,
        };
        let mut e = Ensemble::new(predicting(&[0, 0]), 3);
        e.add(predicting(&[1, 0]), one);
        assert!(e.done());
    }

    #[test]
    fn entropy_grows_with_disagreeing_members() {
        let mut e = Ensemble::new(predicting(&[0, 1]), 3);
        let before = e.entropies();
        e.add(
            predicting(&[1, 1]),
            RejectionRule {
                max_members: 5,
                patience: 2,
            },
        );
        let after = e.entropies();
        assert!(after[0] > before[0] + 0.3, "{before:?} {after:?}");
        assert!((after[1] - before[1]).abs() < 1e-9);
    }
}
