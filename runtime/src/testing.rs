//! A tiny, fully determined model for examples, tests and the no_std proof: classifier
//! `4 → 3 (ReLU) → 2` (23 parameters), a 4-wide time embedding and an int8 field `27 → 8 (SiLU) → 23`.

use heapless_free::TinyBuffers;
use nmflow_format::{
    Activation, ClassifierLayer, FieldLayer, FieldWeights, ModelFile, Normalization, SolverKind,
    SourceKind, TimeEmbedding,
};

/// The bytes of the tiny model file.
#[derive(Clone, Debug)]
pub struct TinyModelBytes {
    buf: [u8; 2048],
    len: usize,
}

impl core::ops::Deref for TinyModelBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

mod heapless_free {
    /// Backing storage of the tiny model's tensors.
    pub struct TinyBuffers {
        pub q0: [u8; 8 * 27],
        pub s0: [u8; 4 * 8],
        pub b0: [u8; 4 * 8],
        pub q1: [u8; 23 * 8],
        pub s1: [u8; 4 * 23],
        pub b1: [u8; 4 * 23],
        pub mean: [u8; 4 * 4],
        pub std: [u8; 4 * 4],
    }
}

fn fill_f32(dst: &mut [u8], f: impl Fn(usize) -> f32) {
    for (i, c) in dst.chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&f(i).to_le_bytes());
    }
}

fn fill_i8(dst: &mut [u8], salt: usize) {
    for (i, b) in dst.iter_mut().enumerate() {
        let v = i
            .wrapping_mul(37)
            .wrapping_add(salt)
            .checked_rem(61)
            .unwrap_or(0);
        // v in 0..61, so v - 30 is in -30..=30
        *b = u8::try_from(v).unwrap_or(30).wrapping_sub(30);
    }
}

/// Builds the tiny model file.
pub fn tiny_model_bytes() -> TinyModelBytes {
    let mut t = TinyBuffers {
        q0: [0; 8 * 27],
        s0: [0; 32],
        b0: [0; 32],
        q1: [0; 23 * 8],
        s1: [0; 92],
        b1: [0; 92],
        mean: [0; 16],
        std: [0; 16],
    };
    fill_i8(&mut t.q0, 3);
    fill_i8(&mut t.q1, 11);
    fill_f32(&mut t.s0, |i| 0.01 + 0.001 * i as f32);
    fill_f32(&mut t.b0, |i| 0.05 * (i as f32) - 0.2);
    fill_f32(&mut t.s1, |i| 0.005 + 0.0002 * i as f32);
    fill_f32(&mut t.b1, |i| 0.01 * (i as f32 % 5.0) - 0.02);
    fill_f32(&mut t.mean, |i| 0.01 * i as f32);
    fill_f32(&mut t.std, |i| 0.3 + 0.1 * i as f32);
    let mut classifier = heapless::Vec::new();
    let _ = classifier.push(ClassifierLayer {
        d_in: 4,
        d_out: 3,
        activation: Activation::Relu,
        init_bound: 0.5,
    });
    let _ = classifier.push(ClassifierLayer {
        d_in: 3,
        d_out: 2,
        activation: Activation::Identity,
        init_bound: 1.0 / 1.732_050_8,
    });
    let mut field = heapless::Vec::new();
    let _ = field.push(FieldLayer {
        d_in: 27,
        d_out: 8,
        activation: Activation::Silu,
        weights: FieldWeights::Int8 {
            q: &t.q0,
            scales: &t.s0,
        },
        bias: &t.b0,
    });
    let _ = field.push(FieldLayer {
        d_in: 8,
        d_out: 23,
        activation: Activation::Identity,
        weights: FieldWeights::Int8 {
            q: &t.q1,
            scales: &t.s1,
        },
        bias: &t.b1,
    });
    let file = ModelFile {
        model_id: *b"nmflow-tiny-0001",
        classifier,
        source: SourceKind::Kaiming,
        normalization: Normalization {
            mean: &t.mean,
            std: &t.std,
        },
        time: TimeEmbedding {
            dim: 4,
            max_frequency: 10.0,
        },
        field,
        solver: SolverKind::Rk4,
        steps: 4,
    };
    let mut out = TinyModelBytes {
        buf: [0; 2048],
        len: 0,
    };
    out.len = file.encode_into(&mut out.buf).unwrap_or(0);
    out
}
