//! Support sets: `K` labeled examples per class of a task, drawn from a dataset split, with the
//! task's labels (an image of class `y` is labeled `map[y]`). A label without an example is one
//! the task does not use (the pairs family leaves half of the labels unused): the encoder gives
//! it an all-zero prototype and mean input.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use std::path::Path;

use crate::data::DatasetView;
use crate::data::dataset::Split;
use crate::error::{MetaError, UsageError};
use nmflow_runtime::Rng;

/// A dataset split indexed by class, to draw support sets from.
pub struct SupportPool<'a> {
    split: &'a Split,
    by_class: Vec<Vec<usize>>,
}

/// Support sets of several tasks, stacked: `x` `[n, S, d]` row-major, `labels` `[n, S]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Supports {
    /// Inputs.
    pub x: Vec<f32>,
    /// Labels (the tasks' labels, not the dataset's classes).
    pub labels: Vec<u8>,
    /// Examples per support set.
    pub size: usize,
}

impl Supports {
    /// Support sets held.
    pub fn len(&self) -> usize {
        self.labels.len() / self.size.max(1)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The inputs as a tensor `[n, S, d]`.
    pub fn tensor<B: Backend>(&self, d: usize, device: &B::Device) -> Tensor<B, 3> {
        Tensor::from_data(
            TensorData::new(self.x.clone(), [self.len(), self.size, d]),
            device,
        )
    }
}

impl Supports {
    /// Reads one support set from the files `dump-inputs` writes: `PREFIX.images`, the stored
    /// pixels of every example (`view`'s grey levels, `d` bytes each), and `PREFIX.labels`, one
    /// label byte per example (the task's labels, below `classes`). A label without an example
    /// is one the task does not use.
    ///
    /// # Errors
    /// [`MetaError::File`] for a file that cannot be read; [`MetaError::Usage`] naming the file
    /// for a size that is not a whole number of `d`-pixel images, label and image counts that
    /// differ, no example at all, or a label outside the classes.
    pub fn read_files(
        prefix: &Path,
        view: DatasetView,
        d: usize,
        classes: usize,
    ) -> Result<Self, MetaError> {
        let images_path = prefix.with_extension("images");
        let labels_path = prefix.with_extension("labels");
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| {
                MetaError::file(
                    p,
                    format!("{e} (a support set is PREFIX.images and PREFIX.labels, as `nmflow dump-inputs` writes them)"),
                )
            })
        };
        let images = read(&images_path)?;
        let labels = read(&labels_path)?;
        let bad = |p: &Path, what: String| -> MetaError {
            UsageError(format!("{}: {what}", p.display())).into()
        };
        if d == 0 || images.len() % d != 0 {
            return Err(bad(
                &images_path,
                format!(
                    "{} bytes is not a whole number of images of {d} pixels (the model's classifier takes {view} images of {d} pixels)",
                    images.len()
                ),
            ));
        }
        let n = images.len() / d;
        if labels.len() != n {
            return Err(bad(
                &labels_path,
                format!(
                    "{} labels for {n} images in {} (one label byte per image expected)",
                    labels.len(),
                    images_path.display()
                ),
            ));
        }
        if n == 0 {
            return Err(bad(
                &images_path,
                "holds no example (zero shots); a support set needs at least one labeled example of every class the task uses".into(),
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= classes)
        {
            return Err(bad(
                &labels_path,
                format!(
                    "example {i} has label {l}; the model's tasks have labels 0 to {}",
                    classes - 1
                ),
            ));
        }
        let scaling = view.pixel_scaling();
        Ok(Self {
            x: images.iter().map(|&p| scaling.input(p)).collect(),
            labels,
            size: n,
        })
    }
}

impl<'a> SupportPool<'a> {
    /// Indexes `split` by class (`classes` classes).
    ///
    /// # Errors
    /// [`UsageError`] when a class has no example to draw.
    pub fn new(split: &'a Split, classes: usize) -> Result<Self, UsageError> {
        let mut by_class = vec![Vec::new(); classes];
        for (i, &y) in split.y.iter().enumerate() {
            if let Some(c) = by_class.get_mut(usize::from(y)) {
                c.push(i);
            }
        }
        if let Some(c) = by_class.iter().position(Vec::is_empty) {
            return Err(UsageError(format!(
                "the dataset split has no example of class {c} to put in a support set"
            )));
        }
        Ok(Self { split, by_class })
    }

    /// Appends to `out` one support set of the task with label map `map`: `shots` examples of
    /// every class, drawn without replacement (with replacement past a class's size), in class
    /// order.
    pub fn draw_into(&self, map: &[u8], shots: usize, rng: &mut Rng, out: &mut Supports) {
        let d = self.split.dim;
        out.size = shots * self.by_class.len();
        for (class, pool) in self.by_class.iter().enumerate() {
            let mut taken: Vec<usize> = Vec::with_capacity(shots);
            for k in 0..shots {
                let len = u32::try_from(pool.len()).unwrap_or(u32::MAX);
                let mut i = pool[rng.below(len) as usize];
                // Distinct examples while the class has enough (a few redraws at most).
                for _ in 0..8 {
                    if k >= pool.len() || !taken.contains(&i) {
                        break;
                    }
                    i = pool[rng.below(len) as usize];
                }
                taken.push(i);
                out.x.extend_from_slice(&self.split.x[i * d..(i + 1) * d]);
                out.labels
                    .push(map.get(class).copied().unwrap_or(class as u8));
            }
        }
    }

    /// The support set of task `task` (label map `map`) that `nmflow eval`, `sample --task`,
    /// `dump-inputs --shots` and `edge-eval --tasks` draw with `seed`: from
    /// `derive_seed(seed, task)` on the stream [`super::sample::STREAM_EVAL_SUPPORT`].
    pub fn draw_task(&self, map: &[u8], shots: usize, seed: u64, task: usize) -> Supports {
        let mut rng = Rng::new(
            nmflow_runtime::rng::derive_seed(seed, task as u64),
            super::sample::STREAM_EVAL_SUPPORT,
        );
        self.draw(&[map], shots, &mut rng)
    }

    /// Support sets of several tasks with label maps `maps`, `shots` examples of every class each
    /// (see [`Self::draw_into`]).
    pub fn draw<M: AsRef<[u8]>>(&self, maps: &[M], shots: usize, rng: &mut Rng) -> Supports {
        let mut out = Supports::default();
        for map in maps {
            self.draw_into(map.as_ref(), shots, rng, &mut out);
        }
        out
    }

    /// Inputs per example.
    pub fn dim(&self) -> usize {
        self.split.dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_support_set_has_k_examples_of_every_class_with_the_tasks_labels() {
        let split = Split {
            x: (0..40).map(|i| i as f32).collect(),
            y: vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1],
            dim: 2,
        };
        let pool = SupportPool::new(&split, 3).unwrap();
        let map = [2u8, 0, 1];
        let mut rng = Rng::new(1, 0);
        let s = pool.draw(&[map], 2, &mut rng);
        assert_eq!((s.len(), s.size), (1, 6));
        assert_eq!(s.labels, vec![2, 2, 0, 0, 1, 1]);
        for (k, &label) in s.labels.iter().enumerate() {
            // Example k's first feature is 2·i for dataset index i, whose class maps to `label`.
            let i = s.x[2 * k] as usize / 2;
            assert_eq!(map[usize::from(split.y[i])], label);
        }
        // Two different examples per class.
        assert_ne!(s.x[0], s.x[2]);
        assert!(SupportPool::new(&split, 4).is_err());
    }

    #[test]
    fn a_support_set_is_read_from_pixel_and_label_files() {
        let dir = std::env::temp_dir().join(format!("nmflow-support-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, images: &[u8], labels: &[u8]| {
            let prefix = dir.join(name);
            std::fs::write(prefix.with_extension("images"), images).unwrap();
            std::fs::write(prefix.with_extension("labels"), labels).unwrap();
            prefix
        };
        let view = DatasetView::Mnist8;
        let ok = write("ok", &[0, 16, 8, 4, 2, 1], &[1, 0, 1]);
        let s = Supports::read_files(&ok, view, 2, 2).unwrap();
        assert_eq!((s.len(), s.size), (1, 3));
        assert_eq!(s.labels, vec![1, 0, 1]);
        let scaling = view.pixel_scaling();
        for (&x, p) in s.x.iter().zip([0u8, 16, 8, 4, 2, 1]) {
            assert_eq!(scaling.pixel(x), p);
        }
        let err = |prefix: &Path| {
            Supports::read_files(prefix, view, 2, 2)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&write("odd", &[1, 2, 3], &[0])).contains("not a whole number"));
        assert!(err(&write("count", &[1, 2], &[0, 1])).contains("2 labels for 1 images"));
        assert!(err(&write("empty", &[], &[])).contains("zero shots"));
        assert!(err(&write("label", &[1, 2, 3, 4], &[0, 2])).contains("label 2"));
        // Label 1 without an example: a task that does not use it.
        let absent = Supports::read_files(&write("class", &[1, 2, 3, 4], &[0, 0]), view, 2, 2);
        assert_eq!(absent.unwrap().labels, vec![0, 0]);
        assert!(err(&dir.join("missing")).contains("missing.images"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
