//! A small deterministic PRNG (PCG-XSH-RR 64/32) with independent streams.
//!
//! The same seed and stream give the same bit stream on every target (host, Cortex-M, RISC-V): only
//! wrapping 64-bit integer arithmetic is used. The host uses this generator for every random choice
//! it records (zoo initializations, data order), so a seed written in a manifest reproduces the run.

/// PCG multiplier (O'Neill 2014, the 64-bit LCG constant).
const MULTIPLIER: u64 = 6_364_136_223_846_793_005;

/// A PCG-XSH-RR generator: 64-bit state, 32-bit output, one of 2^63 streams.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rng {
    state: u64,
    increment: u64,
}

impl Rng {
    /// Creates a generator for `seed` on stream `stream` (streams with the same seed are independent).
    ///
    /// # Examples
    /// ```
    /// let mut a = nmflow_runtime::Rng::new(42, 0);
    /// let mut b = nmflow_runtime::Rng::new(42, 0);
    /// assert_eq!(a.next_u32(), b.next_u32());
    /// ```
    pub const fn new(seed: u64, stream: u64) -> Self {
        let increment = (stream << 1) | 1;
        // The reference seeding: step once from zero, add the seed, step again.
        let state = 0u64.wrapping_mul(MULTIPLIER).wrapping_add(increment);
        let state = state.wrapping_add(seed);
        let state = state.wrapping_mul(MULTIPLIER).wrapping_add(increment);
        Self { state, increment }
    }

    /// The next 32 uniformly distributed bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(MULTIPLIER).wrapping_add(self.increment);
        // PCG-XSH-RR keeps the low 32 bits of the xorshifted state by design.
        let xorshifted = low_u32(((old >> 18) ^ old) >> 27);
        let rot = low_u32(old >> 59);
        xorshifted.rotate_right(rot)
    }

    /// The next 64 uniformly distributed bits (two outputs, high word first).
    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        let lo = u64::from(self.next_u32());
        (hi << 32) | lo
    }

    /// A uniform `f32` in \[0, 1) with 24 random bits.
    pub fn uniform(&mut self) -> f32 {
        // 2^-24: every value is exactly representable.
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// A uniform `f32` in \[-bound, bound).
    pub fn uniform_symmetric(&mut self, bound: f32) -> f32 {
        (self.uniform() * 2.0 - 1.0) * bound
    }

    /// A uniform integer in \[0, n) without modulo bias (Lemire's method); returns 0 when `n == 0`.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg().checked_rem(n).unwrap_or(0);
        loop {
            let m = u64::from(self.next_u32()).wrapping_mul(u64::from(n));
            if low_u32(m) >= threshold {
                return low_u32(m >> 32);
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates, from the back).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        let mut i = items.len();
        while i > 1 {
            let j = self.below(u32::try_from(i).unwrap_or(u32::MAX)) as usize;
            i = i.wrapping_sub(1);
            items.swap(i, j);
        }
    }
}

/// The low 32 bits of `v`.
const fn low_u32(v: u64) -> u32 {
    (v & 0xFFFF_FFFF) as u32
}

/// Mixes a seed with an index into a new, well spread 64-bit seed (SplitMix64's finalizer).
///
/// Used to give every training run its own seed from one master seed.
pub const fn derive_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_stream_is_stable() {
        // Pinned values: a change here breaks every recorded seed.
        let mut rng = Rng::new(42, 54);
        let got: [u32; 4] = core::array::from_fn(|_| rng.next_u32());
        let mut again = Rng::new(42, 54);
        let twice: [u32; 4] = core::array::from_fn(|_| again.next_u32());
        assert_eq!(got, twice);
        assert_eq!(got, PINNED);
    }

    // The first outputs of O'Neill's reference `pcg32-demo` for seed 42, stream 54.
    const PINNED: [u32; 4] = [0xa15c_02b7, 0x7b47_f409, 0xba1d_3330, 0x83d2_f293];

    #[test]
    fn streams_differ() {
        let mut a = Rng::new(7, 0);
        let mut b = Rng::new(7, 1);
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn uniform_in_range_and_mean_half() {
        let mut rng = Rng::new(1, 0);
        let n = 100_000;
        let mut sum = 0.0f64;
        for _ in 0..n {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            sum += f64::from(u);
        }
        assert!((sum / f64::from(n) - 0.5).abs() < 0.005);
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut rng = Rng::new(3, 0);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let k = rng.below(7) as usize;
            seen[k] += 1;
        }
        assert!(seen.iter().all(|&c| c > 850 && c < 1150), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn shuffle_is_permutation() {
        let mut rng = Rng::new(5, 0);
        let mut v: [u16; 100] = core::array::from_fn(|i| u16::try_from(i).unwrap());
        rng.shuffle(&mut v);
        let mut sorted = v;
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &x)| usize::from(x) == i));
        assert_ne!(v, sorted);
    }

    #[test]
    fn derived_seeds_are_distinct() {
        let a = derive_seed(0, 0);
        let b = derive_seed(0, 1);
        let c = derive_seed(1, 0);
        assert!(a != b && b != c && a != c);
    }
}
