//! Dot products: int8 or f32 weights × f32 activations, f32 accumulation in eight independent
//! lanes (so the compiler can use SIMD where the target has it), the lanes summed pairwise at the
//! end. The summation order is fixed by this code, so every target computes the same bits.
//!
//! `ChunksExact` iterators are advanced with `next()` rather than zipped: zipping computes
//! `len / chunk_size` in a shared, possibly out-of-line `Zip::new`, whose division-by-zero check
//! would leave a panic path in the binary (the `panic-never` link check catches it).

/// Lanes of the accumulators.
const LANES: usize = 8;

fn reduce(acc: [f32; LANES]) -> f32 {
    let [a, b, c, d, e, f, g, h] = acc;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

/// `Σ q_i · x_i` with `q` read as `i8` (pairs beyond the shorter slice are ignored).
pub fn dot_i8(q: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let n = q.len().min(x.len());
    let (q, x) = (q.get(..n).unwrap_or(&[]), x.get(..n).unwrap_or(&[]));
    let mut xc = x.chunks_exact(LANES);
    let mut qc = q.chunks_exact(LANES);
    while let (Some(cq), Some(cx)) = (qc.next(), xc.next()) {
        for (a, (&w, &v)) in acc.iter_mut().zip(cq.iter().zip(cx)) {
            *a += f32::from(w as i8) * v;
        }
    }
    let tail: f32 = qc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(&w, &v)| f32::from(w as i8) * v)
        .sum();
    reduce(acc) + tail
}

/// `Σ w_i · x_i` with `w` as little-endian f32 bytes (4 per weight).
pub fn dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut weights = w.chunks_exact(4);
    let mut xc = x.chunks_exact(LANES);
    for cx in xc.by_ref() {
        for (a, &v) in acc.iter_mut().zip(cx) {
            *a += f32_le(weights.next().unwrap_or(&[])) * v;
        }
    }
    let mut tail = 0.0f32;
    for &v in xc.remainder() {
        tail += f32_le(weights.next().unwrap_or(&[])) * v;
    }
    reduce(acc) + tail
}

/// `Σ w_i · x_i` over f32 slices.
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let n = w.len().min(x.len());
    let (w, x) = (w.get(..n).unwrap_or(&[]), x.get(..n).unwrap_or(&[]));
    let mut wc = w.chunks_exact(LANES);
    let mut xc = x.chunks_exact(LANES);
    while let (Some(cw), Some(cx)) = (wc.next(), xc.next()) {
        for (a, (&u, &v)) in acc.iter_mut().zip(cw.iter().zip(cx)) {
            *a += u * v;
        }
    }
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(&u, &v)| u * v)
        .sum();
    reduce(acc) + tail
}

/// An f32 from 4 little-endian bytes (0 for a short chunk, which validation rules out).
pub fn f32_le(c: &[u8]) -> f32 {
    <[u8; 4]>::try_from(c).map_or(0.0, f32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_match_a_plain_sum() {
        let x: std::vec::Vec<f32> = (0..21).map(|i| i as f32 * 0.25 - 2.0).collect();
        let q: std::vec::Vec<u8> = (0..21).map(|i| ((i * 37) % 255) as u8).collect();
        let plain: f32 = q
            .iter()
            .zip(&x)
            .map(|(&a, &b)| f32::from(a as i8) * b)
            .sum();
        assert!((dot_i8(&q, &x) - plain).abs() < 1e-3);
        let w: std::vec::Vec<f32> = (0..21).map(|i| (i as f32).sin()).collect();
        let bytes: std::vec::Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let plain: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!((dot_f32_bytes(&bytes, &x) - plain).abs() < 1e-4);
        assert!((dot_f32(&w, &x) - plain).abs() < 1e-4);
        assert_eq!(dot_i8(&[], &[]), 0.0);
    }
}
