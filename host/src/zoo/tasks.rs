//! Multi-task zoos (`nmflow zoo --tasks SPEC`): the runs of one zoo are spread over a family of
//! related tasks, each run records its task, and some tasks are never seen in meta-model training
//! (the unseen tasks, on which a context-conditioned meta-model is measured).
//!
//! Families:
//!
//! | spec | task `t` | generator |
//! |---|---|---|
//! | `perm:N[:unseen=M]` | the dataset with its labels relabelled by a permutation `π_t` of the classes (an image of class `y` is labelled `π_t(y)`) | `π_t` = the Fisher–Yates shuffle of `0..C` by `nmflow_runtime::Rng::new(derive_seed(zoo seed, t), 4)` |
//! | `pairs:N[:unseen=M]` | the classes merged in pairs into `C/2` labels: an image of class `y` is labelled `⌊π_t(y)/2⌋` (which classes share a label, and which label they share, differ between tasks); labels `C/2..C` are never used | `π_t` as for `perm` |
//!
//! A pairs task uses half of the classifier's outputs; its support sets hold no example of the
//! unused labels, which the conditioned field sees as absent (an all-zero class token).
//!
//! Run `i` trains task `i mod N`; the last `M` tasks (default `N / 8`) are unseen: their runs are
//! recorded in the manifest's `split.unseen`, neither in `split.train` nor in `split.heldout`.
//!
//! Fresh tasks ([`TaskTable::fresh`]) continue the generator past the zoo's last task (`t ≥ N`):
//! tasks of the same family that no run trained, for measuring a conditioned model on more unseen
//! tasks than the zoo holds.

use std::str::FromStr;

use nmflow_runtime::Rng;
use nmflow_runtime::rng::derive_seed;
use serde::{Deserialize, Serialize};

use crate::error::UsageError;

/// PRNG stream of a task's generator.
pub const STREAM_TASK: u64 = 4;

/// A family of tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskFamily {
    /// Label permutations of the dataset.
    Perm,
    /// The classes merged in pairs (`⌊π(y)/2⌋`), half of the labels unused.
    Pairs,
}

impl TaskFamily {
    /// The family's name in messages and `inspect`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Perm => "label-permutation",
            Self::Pairs => "class-pairs",
        }
    }

    /// The spec's prefix (`perm`, `pairs`).
    fn prefix(self) -> &'static str {
        match self {
            Self::Perm => "perm",
            Self::Pairs => "pairs",
        }
    }

    /// Checks task `task`'s label map against the family (`classes` classes).
    ///
    /// # Errors
    /// A message saying what the map should be.
    pub fn check_map(self, task: usize, map: &[u8], classes: usize) -> Result<(), String> {
        let mut sorted = map.to_vec();
        sorted.sort_unstable();
        let expected: Vec<u8> = match self {
            Self::Perm => (0..classes).map(|c| c as u8).collect(),
            Self::Pairs => (0..classes).map(|c| (c / 2) as u8).collect(),
        };
        if sorted == expected {
            return Ok(());
        }
        Err(match self {
            Self::Perm => {
                format!("task {task}'s label map is not a permutation of the {classes} classes")
            }
            Self::Pairs => format!(
                "task {task}'s label map does not merge the {classes} classes in pairs into labels 0 to {}",
                (classes / 2).saturating_sub(1)
            ),
        })
    }
}

/// The tasks of a zoo, as given (`--tasks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The family.
    pub family: TaskFamily,
    /// Number of tasks.
    pub count: usize,
    /// The last this many tasks are never used for meta-model training.
    pub unseen: usize,
}

impl FromStr for TaskSpec {
    type Err = UsageError;

    fn from_str(s: &str) -> Result<Self, UsageError> {
        let bad = || {
            UsageError(format!(
                "--tasks {s:?}: expected FAMILY:N or FAMILY:N:unseen=M, FAMILY perm or pairs (N tasks, the last M never seen in training)"
            ))
        };
        let mut parts = s.split(':');
        let family = match parts.next() {
            Some("perm") => TaskFamily::Perm,
            Some("pairs") => TaskFamily::Pairs,
            _ => return Err(bad()),
        };
        let count: usize = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let unseen = match parts.next() {
            None => count / 8,
            Some(p) => p
                .strip_prefix("unseen=")
                .and_then(|m| m.parse().ok())
                .ok_or_else(bad)?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            family,
            count,
            unseen,
        })
    }
}

impl std::fmt::Display for TaskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:unseen={}",
            self.family.prefix(),
            self.count,
            self.unseen
        )
    }
}

impl TaskSpec {
    /// Checks the spec against the zoo's run count.
    ///
    /// # Errors
    /// [`UsageError`] naming `--tasks`.
    pub fn validate(&self, runs: usize) -> Result<(), UsageError> {
        if self.count < 2 {
            return Err(UsageError(format!(
                "--tasks {self}: a multi-task zoo needs at least 2 tasks"
            )));
        }
        if self.unseen >= self.count {
            return Err(UsageError(format!(
                "--tasks {self}: {} unseen tasks leave none to train on",
                self.unseen
            )));
        }
        if runs < self.count {
            return Err(UsageError(format!(
                "--tasks {self}: {runs} runs cannot cover {} tasks (--runs must be at least the task count)",
                self.count
            )));
        }
        Ok(())
    }

    /// The task of run `run`.
    pub fn task_of(&self, run: usize) -> usize {
        run % self.count.max(1)
    }

    /// Whether task `task` is never seen in meta-model training.
    pub fn is_unseen(&self, task: usize) -> bool {
        task + self.unseen >= self.count
    }

    /// Task `task`'s label map (`map[y]` = the label an image of class `y` gets).
    pub fn label_map(&self, seed: u64, task: usize, classes: usize) -> Vec<u8> {
        let mut map: Vec<u8> = (0..classes).map(|c| c as u8).collect();
        Rng::new(derive_seed(seed, task as u64), STREAM_TASK).shuffle(&mut map);
        if self.family == TaskFamily::Pairs {
            for l in &mut map {
                *l /= 2;
            }
        }
        map
    }

    /// The table recorded in the manifest.
    pub fn table(&self, seed: u64, classes: usize) -> TaskTable {
        TaskTable {
            family: self.family,
            count: self.count,
            unseen: (0..self.count).filter(|&t| self.is_unseen(t)).collect(),
            label_maps: (0..self.count)
                .map(|t| self.label_map(seed, t, classes))
                .collect(),
        }
    }
}

impl TaskTable {
    /// `n` fresh tasks: ids `count, count + 1, …` of the family's generator with the zoo's seed
    /// `seed`, skipping any whose label map equals one of the zoo's or an earlier fresh task's
    /// (no run trained any of them). Fewer than `n` when the family runs out (a few classes have
    /// few labellings): the generator is tried `64·n + 1,024` times at most.
    pub fn fresh(&self, seed: u64, n: usize, classes: usize) -> Vec<(usize, Vec<u8>)> {
        let spec = TaskSpec {
            family: self.family,
            count: self.count,
            unseen: self.unseen.len(),
        };
        let mut out: Vec<(usize, Vec<u8>)> = Vec::with_capacity(n);
        let tries = n.saturating_mul(64).saturating_add(1024);
        for t in self.count..self.count.saturating_add(tries) {
            if out.len() == n {
                break;
            }
            let map = spec.label_map(seed, t, classes);
            let known = self.label_maps.contains(&map) || out.iter().any(|(_, m)| *m == map);
            if !known {
                out.push((t, map));
            }
        }
        out
    }
}

/// The tasks of a multi-task zoo, in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTable {
    /// The family.
    pub family: TaskFamily,
    /// Number of tasks.
    pub count: usize,
    /// The unseen tasks.
    pub unseen: Vec<usize>,
    /// Per task, the label of each class (`label_maps[t][y]`).
    pub label_maps: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_print_and_check() {
        let t: TaskSpec = "perm:16".parse().unwrap();
        assert_eq!(t.unseen, 2);
        assert_eq!(t.to_string(), "perm:16:unseen=2");
        assert_eq!(t, t.to_string().parse().unwrap());
        assert_eq!("perm:5:unseen=1".parse::<TaskSpec>().unwrap().unseen, 1);
        let p: TaskSpec = "pairs:16:unseen=3".parse().unwrap();
        assert_eq!((p.family, p.count, p.unseen), (TaskFamily::Pairs, 16, 3));
        assert_eq!(p, p.to_string().parse().unwrap());
        for bad in [
            "pairs",
            "perm:x",
            "rot:4",
            "perm:4:seen=1",
            "perm:4:unseen=1:x",
        ] {
            assert!(bad.parse::<TaskSpec>().is_err(), "{bad}");
        }
        assert!(t.validate(16).is_ok());
        assert!(t.validate(15).is_err());
        assert!("perm:1".parse::<TaskSpec>().unwrap().validate(8).is_err());
        assert!(
            "perm:4:unseen=4"
                .parse::<TaskSpec>()
                .unwrap()
                .validate(8)
                .is_err()
        );
    }

    #[test]
    fn label_maps_are_seeded_permutations() {
        let t: TaskSpec = "perm:8:unseen=2".parse().unwrap();
        let table = t.table(3, 10);
        assert_eq!(table.unseen, vec![6, 7]);
        for m in &table.label_maps {
            let mut s = m.clone();
            s.sort_unstable();
            assert_eq!(s, (0..10).collect::<Vec<u8>>());
        }
        assert_ne!(table.label_maps[0], table.label_maps[1]);
        // Fresh tasks continue the generator: the same maps a larger zoo would have made.
        let larger: TaskSpec = "perm:12:unseen=2".parse().unwrap();
        let fresh = table.fresh(3, 4, 10);
        assert_eq!(
            fresh.iter().map(|f| f.0).collect::<Vec<_>>(),
            [8, 9, 10, 11]
        );
        for (t, m) in &fresh {
            assert_eq!(*m, larger.label_map(3, *t, 10));
            assert!(!table.label_maps.contains(m));
        }
        // Only 2 labellings of 2 classes exist: none is fresh once the zoo holds both.
        let two = TaskTable {
            label_maps: vec![vec![0, 1], vec![1, 0]],
            ..t.table(3, 2)
        };
        assert!(two.fresh(3, 1, 2).is_empty());
        assert_eq!(table, t.table(3, 10));
        assert_ne!(table, t.table(4, 10));
        assert_eq!(t.task_of(9), 1);
    }

    #[test]
    fn pairs_maps_merge_the_classes_two_by_two() {
        let t: TaskSpec = "pairs:8:unseen=2".parse().unwrap();
        let perm: TaskSpec = "perm:8:unseen=2".parse().unwrap();
        let table = t.table(3, 10);
        for (task, m) in table.label_maps.iter().enumerate() {
            // The permutation task's labels, halved.
            let p = perm.label_map(3, task, 10);
            assert_eq!(*m, p.iter().map(|l| l / 2).collect::<Vec<u8>>());
            for label in 0..5u8 {
                assert_eq!(m.iter().filter(|&&l| l == label).count(), 2);
            }
            assert!(TaskFamily::Pairs.check_map(task, m, 10).is_ok());
            assert!(TaskFamily::Perm.check_map(task, m, 10).is_err());
        }
        let bad = TaskFamily::Pairs
            .check_map(4, &[0, 0, 0, 1, 1, 2, 2, 3, 3, 4], 10)
            .unwrap_err();
        assert!(bad.contains("task 4's label map does not merge"), "{bad}");
        let fresh = table.fresh(3, 20, 10);
        assert_eq!(fresh.len(), 20);
        for (_, m) in &fresh {
            assert!(!table.label_maps.contains(m));
        }
    }
}
