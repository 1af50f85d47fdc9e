//! Dense f32 matrix products on preallocated buffers, for the fused CPU trainer.
//!
//! [`matmul`] writes `C = A·B` (or `C += A·B`) into a row-major `C`. It splits `C` into at most
//! [`MAX_TASKS`] blocks of at least [`ROWS_PER_TASK`] rows and runs each block as one
//! single-threaded GEMM (the `gemm` crate's kernels, the ones burn-flex uses) on rayon's pool. The split depends on the shapes only, never on
//! the number of threads, so results are the same bytes on any machine with the same kernels; and
//! for the short-and-wide products of a training step (a batch of 128 rows) two independent blocks
//! keep both cores busier than the crate's own threading.

use rayon::prelude::*;

/// Fewest rows of `C` per parallel task.
pub const ROWS_PER_TASK: usize = 64;

/// Fewest columns of `C` per parallel task when a product has too few rows to split.
pub const COLS_PER_TASK: usize = 64;

/// Most parallel tasks per product (each task packs all of `B` again, so more tasks cost more).
pub const MAX_TASKS: usize = 8;

/// A read-only strided matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    ///
    /// # Panics
    /// If `data` is shorter than `rows · cols`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(
            data.len() >= rows * cols,
            "a {rows}×{cols} matrix needs {} values, got {}",
            rows * cols,
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// The block of rows `r0..r0 + rows` and columns `c0..c0 + cols` (no copy).
    fn block(self, r0: usize, rows: usize, c0: usize, cols: usize) -> Self {
        assert!(
            r0 + rows <= self.rows && c0 + cols <= self.cols,
            "block out of the matrix"
        );
        let data = if rows == 0 || cols == 0 {
            &[]
        } else {
            &self.data[r0 * self.row_stride + c0 * self.col_stride..]
        };
        Self {
            data,
            rows,
            cols,
            ..self
        }
    }
}

/// `C = A·B`, or `C += A·B` with `accumulate`; `C` is row-major `A.rows × B.cols`. `scratch` is
/// reused working memory (it holds column blocks when a product has too few rows to split).
///
/// # Panics
/// If the shapes do not match or `c` has the wrong length.
pub fn matmul(c: &mut [f32], a: View<'_>, b: View<'_>, accumulate: bool, scratch: &mut Vec<f32>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(
        b.rows, k,
        "inner dimensions: {}×{} · {}×{}",
        m, k, b.rows, n
    );
    assert_eq!(c.len(), m * n, "output of a {m}×{n} product");
    if m == 0 || n == 0 {
        return;
    }
    if m < 2 * ROWS_PER_TASK && n >= 2 * COLS_PER_TASK {
        // Few rows: split the columns instead, so that each task packs only its part of `B`.
        // Block j (columns start..start + cols) is computed row-major into scratch[m·start..].
        let per = n.div_ceil(MAX_TASKS).max(COLS_PER_TASK);
        scratch.resize(m * n, 0.0);
        scratch
            .par_chunks_mut(m * per)
            .enumerate()
            .for_each(|(block, part)| {
                let (start, cols) = (block * per, part.len() / m);
                if accumulate {
                    for (dst, src) in part.chunks_exact_mut(cols).zip(c.chunks_exact(n)) {
                        dst.copy_from_slice(&src[start..start + cols]);
                    }
                }
                matmul_serial(part, a, b.block(0, k, start, cols), accumulate);
            });
        for (block, part) in scratch.chunks(m * per).enumerate() {
            let (start, cols) = (block * per, part.len() / m);
            for (dst, src) in c.chunks_exact_mut(n).zip(part.chunks_exact(cols)) {
                dst[start..start + cols].copy_from_slice(src);
            }
        }
        return;
    }
    let per = m.div_ceil(MAX_TASKS).max(ROWS_PER_TASK);
    c.par_chunks_mut(per * n)
        .enumerate()
        .for_each(|(block, c_rows)| {
            let rows = c_rows.len() / n;
            matmul_serial(c_rows, a.block(block * per, rows, 0, k), b, accumulate);
        });
}

/// `C = A·B` (or `C += A·B` with `accumulate`) as one single-threaded GEMM into a contiguous
/// row-major `c`, for callers that parallelize over independent products themselves (the only
/// unsafe code of the crate).
///
/// # Panics
/// If `c` has the wrong length or a view reaches past its slice.
#[allow(unsafe_code)]
pub fn matmul_serial(c: &mut [f32], a: View<'_>, b: View<'_>, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(c.len(), m * n, "output of a {m}×{n} product");
    assert_eq!(b.rows, k, "inner dimensions: {m}×{k} · {}×{n}", b.rows);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    // Every element the kernel reads must lie inside the slices.
    let last = |v: &View<'_>| (v.rows - 1) * v.row_stride + (v.cols - 1) * v.col_stride;
    assert!(last(&a) < a.data.len() && last(&b) < b.data.len());
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: `c` is an exclusively borrowed contiguous m×n row-major buffer (length checked), and
    // the largest offsets read through `a` and `b` with their strides are inside their slices
    // (checked above); the three buffers cannot overlap since `c` is `&mut`. With `read_dst` false
    // the kernel does not read `c` (alpha is ignored).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: View<'_>, b: View<'_>) -> Vec<f32> {
        let get = |v: &View<'_>, i: usize, j: usize| v.data[i * v.row_stride + j * v.col_stride];
        let mut c = vec![0.0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols).map(|l| get(&a, i, l) * get(&b, l, j)).sum();
            }
        }
        c
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn products_match_the_definition_for_every_transpose_and_block_split() {
        // m = 150 spans three row blocks (64, 64, 22); m = 600 eight blocks of 75; m = 100
        // splits the columns into blocks of 64 and 36.
        for (m, k, n) in [(150, 37, 23), (600, 9, 5), (100, 13, 100)] {
            check_product(m, k, n);
        }
    }

    fn check_product(m: usize, k: usize, n: usize) {
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let at = values(k * m, 3);
        let bt = values(n * k, 4);
        let cases = [
            (View::row_major(&a, m, k), View::row_major(&b, k, n)),
            (View::row_major(&at, k, m).t(), View::row_major(&b, k, n)),
            (View::row_major(&a, m, k), View::row_major(&bt, n, k).t()),
            (
                View::row_major(&at, k, m).t(),
                View::row_major(&bt, n, k).t(),
            ),
        ];
        for (va, vb) in cases {
            let want = naive(va, vb);
            let mut c = vec![f32::NAN; m * n];
            matmul(&mut c, va, vb, false, &mut Vec::new());
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
            // Accumulating adds the product once more.
            matmul(&mut c, va, vb, true, &mut Vec::new());
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 2e-4, "{x} vs {}", 2.0 * y);
            }
        }
    }

    #[test]
    fn empty_inner_dimension_gives_zeros() {
        let mut c = vec![1.0f32; 6];
        matmul(
            &mut c,
            View::row_major(&[], 2, 0),
            View::row_major(&[], 0, 3),
            false,
            &mut Vec::new(),
        );
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "inner dimensions")]
    fn mismatched_shapes_are_refused() {
        let a = [0.0f32; 6];
        let mut c = [0.0f32; 4];
        matmul(
            &mut c,
            View::row_major(&a, 2, 3),
            View::row_major(&a, 2, 3),
            false,
            &mut Vec::new(),
        );
    }
}
