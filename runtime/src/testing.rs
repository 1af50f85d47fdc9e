//! Tiny, fully determined models for examples, tests and the no_std proof: classifier
//! `4 → 3 (ReLU) → 2` (23 parameters), a 4-wide time embedding and either an int8 MLP field
//! `27 → 8 (SiLU) → 23` ([`tiny_model_bytes`], RK4 × 4) or an int8 set field of width 8 with one
//! block ([`tiny_set_model_bytes`], Euler × 4; with the step-size input:
//! [`tiny_step_set_model_bytes`]), the latter also with a shift section
//! ([`tiny_shift_model_bytes`]); and latent models of the same classifier
//! ([`tiny_latent_model_bytes`]: a 3-value latent, an MLP field `7 → 8 (SiLU) → 3`, a decoder trunk
//! `3 → 6 (SiLU)` and the units head or a dense head `6 → 23`); and a class-conditioned set
//! field ([`tiny_condition_model_bytes`], with [`TINY_SUPPORT`] as a task's labeled examples);
//! and the MLP field with a per-coordinate term ([`tiny_diagonal_model_bytes`]); and the MLP
//! model with a Gaussian source sampled by the memoryless SDE ([`tiny_sde_model_bytes`]).

use heapless_free::TinyBuffers;
use nmflow_format::{
    Activation, ClassLift, ClassifierLayer, ConditionSection, DecoderHead, FieldLayer, FieldNet,
    FieldWeights, LatentSection, ModelFile, Normalization, SetBlock, SetNet, ShiftSection,
    ShiftStatistic, SolverKind, SourceKind, TimeEmbedding, UnitsHead,
};

/// Capacity of a tiny model file's bytes.
const TINY_FILE: usize = 4096;

/// The bytes of the tiny model file.
#[derive(Clone, Debug)]
pub struct TinyModelBytes {
    buf: [u8; TINY_FILE],
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
        field: FieldNet::Mlp(field),
        solver: SolverKind::Rk4,
        steps: 4,
        shift: None,
        latent: None,
        condition: None,
        step_input: false,
        diagonal: None,
        sde_t0: nmflow_format::DEFAULT_SDE_T0,
    };
    let mut out = TinyModelBytes {
        buf: [0; TINY_FILE],
        len: 0,
    };
    out.len = file.encode_into(&mut out.buf).unwrap_or(0);
    out
}

/// The tiny MLP model's file `base` (its bytes) after `edit`, encoded (empty if either fails).
fn edited<'a>(base: &'a [u8], edit: impl FnOnce(&mut ModelFile<'a>)) -> TinyModelBytes {
    let mut out = TinyModelBytes {
        buf: [0; TINY_FILE],
        len: 0,
    };
    if let Ok(mut file) = ModelFile::decode(base) {
        edit(&mut file);
        out.len = file.encode_into(&mut out.buf).unwrap_or(0);
    }
    out
}

/// [`tiny_model_bytes`] with a per-coordinate term (`ModelFile::diagonal`): an int8 layer
/// `4 → 46` giving `[a | b]` for the 23 state values.
pub fn tiny_diagonal_model_bytes() -> TinyModelBytes {
    let mut q = [0u8; 46 * 4];
    let mut scales = [0u8; 4 * 46];
    let mut bias = [0u8; 4 * 46];
    fill_i8(&mut q, 17);
    fill_f32(&mut scales, |o| 0.01 + 0.0005 * (o % 7) as f32);
    fill_f32(&mut bias, |o| 0.02 * (o % 9) as f32 - 0.08);
    let mlp_bytes = tiny_model_bytes();
    edited(&mlp_bytes, |file| {
        file.model_id = *b"nmflow-tiny-dia1";
        file.diagonal = Some(FieldLayer {
            d_in: 4,
            d_out: 46,
            activation: Activation::Identity,
            weights: FieldWeights::Int8 {
                q: &q,
                scales: &scales,
            },
            bias: &bias,
        });
    })
}

/// [`tiny_model_bytes`] with a Gaussian source and the memoryless SDE sampler (format version 8):
/// 4 steps from `t0 = 0.2`.
pub fn tiny_sde_model_bytes() -> TinyModelBytes {
    let mlp_bytes = tiny_model_bytes();
    edited(&mlp_bytes, |file| {
        file.model_id = *b"nmflow-tiny-sde1";
        file.source = SourceKind::Gaussian { std: 0.3 };
        file.solver = SolverKind::Sde;
        file.sde_t0 = 0.2;
    })
}

/// Input and output widths of the tiny set field's layers, in `SetNet::layers` order (token
/// width 7 = 4 + 1 + 2, hidden 8, time embedding 4, one block).
const SET_SHAPES: [(usize, usize); 8] = [
    (7, 8),
    (2, 8),
    (4, 8),
    (8, 8),
    (8, 8),
    (8, 8),
    (8, 7),
    (8, 2),
];
/// Bytes of the tiny set field's tensors (weights, scales, biases of every layer).
const SET_ARENA: usize = 2048;

/// The tiny set field with the step-size input: its time input is 8 wide (`[emb(t), emb(h)]`).
const STEP_SET_SHAPES: [(usize, usize); 8] = [
    (7, 8),
    (2, 8),
    (8, 8),
    (8, 8),
    (8, 8),
    (8, 8),
    (8, 7),
    (8, 2),
];

/// Builds the tiny set-field model file (same classifier, source and normalization as
/// [`tiny_model_bytes`]).
pub fn tiny_set_model_bytes() -> TinyModelBytes {
    tiny_set_with(&SET_SHAPES, false)
}

/// [`tiny_set_model_bytes`] with the step-size input (`ModelFile::step_input`).
pub fn tiny_step_set_model_bytes() -> TinyModelBytes {
    tiny_set_with(&STEP_SET_SHAPES, true)
}

fn tiny_set_with(shapes: &[(usize, usize); 8], step_input: bool) -> TinyModelBytes {
    let mut arena = [0u8; SET_ARENA];
    fill_arena(
        &mut arena,
        shapes,
        |i| i.wrapping_mul(7).wrapping_add(5),
        |i, o| 0.02 + 0.003 * small(o.wrapping_add(i), 5),
        |i, o| 0.03 * small(o.wrapping_mul(3).wrapping_add(i), 7) - 0.09,
    );
    let layers = arena_layers(&arena, shapes);
    let [
        embed,
        global_in,
        time_in,
        local,
        pooled,
        mlp,
        token_out,
        global_out,
    ] = layers;
    let mut blocks = heapless::Vec::new();
    let _ = blocks.push(SetBlock { local, pooled, mlp });
    let net = SetNet {
        hidden: 8,
        embed,
        global_in,
        time_in,
        blocks,
        token_out,
        global_out,
    };
    let mlp_bytes = tiny_model_bytes();
    edited(&mlp_bytes, |file| {
        file.model_id = if step_input {
            *b"nmflow-tiny-stp1"
        } else {
            *b"nmflow-tiny-set1"
        };
        file.field = FieldNet::Set(net);
        file.solver = SolverKind::Euler;
        file.step_input = step_input;
    })
}

/// Fills `arena` with int8 layers of `shapes` (`(d_in, d_out)` each, in order): layer `i`'s
/// weights from [`fill_i8`] with `salt(i)`, then its scales `scale(i, o)` and biases `bias(i, o)`.
fn fill_arena(
    arena: &mut [u8],
    shapes: &[(usize, usize)],
    salt: impl Fn(usize) -> usize,
    scale: impl Fn(usize, usize) -> f32,
    bias: impl Fn(usize, usize) -> f32,
) {
    let mut free: &mut [u8] = arena;
    for (i, &(d_in, d_out)) in shapes.iter().enumerate() {
        let (q, rest) = take_mut(free, d_in.saturating_mul(d_out));
        fill_i8(q, salt(i));
        let (scales, rest) = take_mut(rest, d_out.saturating_mul(4));
        fill_f32(scales, |o| scale(i, o));
        let (b, rest) = take_mut(rest, d_out.saturating_mul(4));
        fill_f32(b, |o| bias(i, o));
        free = rest;
    }
}

/// The (at most `N`) affine layers [`fill_arena`] wrote, borrowing `arena`; unused slots are empty.
fn arena_layers<'a, const N: usize>(
    arena: &'a [u8],
    shapes: &[(usize, usize)],
) -> [FieldLayer<'a>; N] {
    let mut layers = [FieldLayer {
        d_in: 0,
        d_out: 0,
        activation: Activation::Identity,
        weights: FieldWeights::F32 { w: &[] },
        bias: &[],
    }; N];
    let mut rest: &[u8] = arena;
    for (layer, &(d_in, d_out)) in layers.iter_mut().zip(shapes.iter()) {
        let (q, r) = take(rest, d_in.saturating_mul(d_out));
        let (scales, r) = take(r, d_out.saturating_mul(4));
        let (bias, r) = take(r, d_out.saturating_mul(4));
        rest = r;
        *layer = FieldLayer {
            d_in: u32::try_from(d_in).unwrap_or(0),
            d_out: u32::try_from(d_out).unwrap_or(0),
            activation: Activation::Identity,
            weights: FieldWeights::Int8 { q, scales },
            bias,
        };
    }
    layers
}

/// `v mod m` as an f32 (`m` small and non-zero).
fn small(v: usize, m: usize) -> f32 {
    f32::from(u8::try_from(v.checked_rem(m).unwrap_or(0)).unwrap_or(0))
}

/// Splits `n` bytes (fewer if short) off the front of `buf`.
fn take(buf: &[u8], n: usize) -> (&[u8], &[u8]) {
    buf.split_at(n.min(buf.len()))
}

/// Splits `n` bytes (fewer if short) off the front of `buf`, mutably.
fn take_mut(buf: &mut [u8], n: usize) -> (&mut [u8], &mut [u8]) {
    let n = n.min(buf.len());
    buf.split_at_mut(n)
}

/// The tiny set model ([`tiny_set_model_bytes`]) with a shift section: windows of 4 inputs, at
/// most 3 members with patience 2, guidance γ = 10, λ = 1, three anchors, the disagreement
/// statistic with threshold 1.5 (a made-up calibration record: the section's own numbers are
/// tested on real data by the host).
pub fn tiny_shift_model_bytes() -> TinyModelBytes {
    let base = tiny_set_model_bytes();
    let mut anchors = [0u8; 3 * 4 * 4];
    fill_f32(&mut anchors, |i| 0.25 * (i % 7) as f32 - 0.5);
    let mut out = TinyModelBytes {
        buf: [0; TINY_FILE],
        len: 0,
    };
    if let Ok(mut file) = ModelFile::decode(&base) {
        file.shift = Some(ShiftSection {
            statistic: ShiftStatistic::Disagreement,
            window: 4,
            members: 3,
            patience: 2,
            base_seed: 1,
            member_seed: 2,
            guidance_scale: 10.0,
            guidance_lambda: 1.0,
            anchors: &anchors,
            threshold: 1.5,
            alpha: 0.05,
            calibration_windows: 19,
            fpr_calibration: 0.0,
            heldout_windows: 10,
            fpr_heldout: 0.1,
        });
        out.len = file.encode_into(&mut out.buf).unwrap_or(0);
    }
    out
}

/// Input and output widths of the tiny latent model's layers: the field (2), the trunk (1), then
/// the units head (5) or the dense head (1).
const LATENT_UNITS: [(usize, usize); 8] = [
    (7, 8),
    (8, 3),
    (3, 6),
    (3, 6),
    (6, 6),
    (6, 6),
    (6, 7),
    (6, 2),
];
const LATENT_DENSE: [(usize, usize); 4] = [(7, 8), (8, 3), (3, 6), (6, 23)];

/// Builds a tiny latent model (same classifier and weight normalization as [`tiny_model_bytes`],
/// an N(0, 1) source, Heun × 3): with the units head when `units`, else with a dense head.
pub fn tiny_latent_model_bytes(units: bool) -> TinyModelBytes {
    let shapes: &[(usize, usize)] = if units { &LATENT_UNITS } else { &LATENT_DENSE };
    let mut arena = [0u8; SET_ARENA];
    fill_arena(
        &mut arena,
        shapes,
        |i| i.wrapping_mul(5).wrapping_add(2),
        |i, o| 0.03 + 0.004 * small(o.wrapping_add(i), 4),
        |i, o| 0.02 * small(o.wrapping_mul(5).wrapping_add(i), 9) - 0.08,
    );
    let mut layers = arena_layers(&arena, shapes);
    // The field's hidden layer and the trunk are followed by SiLU.
    for i in [0, 2] {
        if let Some(l) = layers.get_mut(i) {
            l.activation = Activation::Silu;
        }
    }
    let mut state_mean = [0u8; 4];
    let mut state_std = [0u8; 4];
    fill_f32(&mut state_mean, |_| 0.1);
    fill_f32(&mut state_std, |_| 0.8);
    let mlp_bytes = tiny_model_bytes();
    edited(&mlp_bytes, |file| {
        let [f0, f1, trunk0, h0, h1, h2, h3, h4] = layers;
        let mut field = heapless::Vec::new();
        let _ = field.push(f0);
        let _ = field.push(f1);
        let mut trunk = heapless::Vec::new();
        let _ = trunk.push(trunk0);
        file.model_id = if units {
            *b"nmflow-tiny-lat1"
        } else {
            *b"nmflow-tiny-lat2"
        };
        file.source = SourceKind::Gaussian { std: 1.0 };
        file.field = FieldNet::Mlp(field);
        file.solver = SolverKind::Heun;
        file.steps = 3;
        file.latent = Some(LatentSection {
            dim: 3,
            state: Normalization {
                mean: &state_mean,
                std: &state_std,
            },
            trunk,
            head: if units {
                DecoderHead::Units(UnitsHead {
                    slots: h0,
                    mix: h1,
                    inner: h2,
                    token: h3,
                    bias: h4,
                })
            } else {
                DecoderHead::Dense(h0)
            },
        });
    })
}

/// Input and output widths of the tiny class-conditioned model's layers: the set field on the
/// lifted tokens (token width 8 = 4 + 1 + 3, lift width 3, hidden 8, one block), then the
/// condition section's (features 3, embedding 2, pair width 4) in `ConditionSection::layers`
/// order.
const CONDITION_SHAPES: [(usize, usize); 21] = [
    (8, 8),
    (3, 8),
    (4, 8),
    (8, 8),
    (8, 8),
    (8, 8),
    (8, 8),
    (8, 3),
    (4, 3),
    (3, 2),
    (6, 4),
    (1, 4),
    (3, 4),
    (4, 3),
    (4, 3),
    (3, 4),
    (4, 4),
    (4, 1),
    (3, 4),
    (4, 4),
    (4, 1),
];

/// A tiny task's support set for [`tiny_condition_model_bytes`]: four examples of the 4-input
/// classifier, labels in [`TINY_SUPPORT_LABELS`].
pub const TINY_SUPPORT: [f32; 16] = [
    0.5, -0.25, 1.0, 0.0, -0.5, 0.75, 0.25, -1.0, 0.125, 0.5, -0.75, 0.25, 1.0, 0.0, 0.5, -0.5,
];
/// The labels of [`TINY_SUPPORT`]'s examples (both classes).
pub const TINY_SUPPORT_LABELS: [u8; 4] = [1, 0, 1, 0];

/// Builds the tiny class-conditioned model (same classifier, source and normalization as
/// [`tiny_model_bytes`], Euler × 3, guidance 1): a set field on the lifted tokens and a
/// condition section with a made-up null token.
pub fn tiny_condition_model_bytes() -> TinyModelBytes {
    let mut arena = [0u8; 2 * SET_ARENA];
    fill_arena(
        &mut arena,
        &CONDITION_SHAPES,
        |i| i.wrapping_mul(11).wrapping_add(3),
        |i, o| 0.025 + 0.003 * small(o.wrapping_add(i), 6),
        |i, o| 0.02 * small(o.wrapping_mul(3).wrapping_add(i), 8) - 0.07,
    );
    let layers: [FieldLayer<'_>; 21] = arena_layers(&arena, &CONDITION_SHAPES);
    let [
        embed,
        global_in,
        time_in,
        local,
        pooled,
        mlp,
        token_out,
        global_out,
        feature,
        head,
        inject,
        class_in,
        pair_in,
        to_token,
        to_global,
        from_token,
        pair_mix,
        pair_out,
        from_global,
        class_mix,
        bias_out,
    ] = layers;
    let mut null = [0u8; 6 * 4];
    fill_f32(&mut null, |i| 0.1 * small(i, 5) - 0.2);
    let mut blocks = heapless::Vec::new();
    let _ = blocks.push(SetBlock { local, pooled, mlp });
    let mlp_bytes = tiny_model_bytes();
    edited(&mlp_bytes, |file| {
        file.model_id = *b"nmflow-tiny-cnd1";
        file.field = FieldNet::Set(SetNet {
            hidden: 8,
            embed,
            global_in,
            time_in,
            blocks,
            token_out,
            global_out,
        });
        file.solver = SolverKind::Euler;
        file.steps = 3;
        file.condition = Some(ConditionSection {
            shots: 2,
            guidance: 1.0,
            feature,
            head,
            null: &null,
            inject,
            lift: ClassLift {
                class_in,
                pair_in,
                to_token,
                to_global,
                from_token,
                pair_mix,
                pair_out,
                from_global,
                class_mix,
                bias_out,
            },
        });
    })
}
