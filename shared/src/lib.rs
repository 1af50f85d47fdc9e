//! nmflow-format: the model file shared by the host (which writes it) and the device runtime
//! (which reads it in place).
//!
//! A file is a fixed 16-byte [`header`] followed by a postcard payload holding a [`ModelFile`]:
//! the classifier's layer table, the source law, the normalization statistics, the vector field
//! (an MLP or the permutation-equivariant set field; int8 weights with one f32 scale per output
//! row, or f32 weights; f32 biases), the time
//! embedding, the default solver and step count, an id of the host model, and optionally a
//! calibrated shift detector ([`shift`]), and for a latent model the decoder that turns its latent
//! state into weights ([`latent`]), and for a class-conditioned set field the support-set encoder
//! and class lift ([`condition`]), and for an MLP field fine-tuned with `--diagonal` its
//! per-coordinate term, and the first time of the memoryless SDE sampler. Tensors are borrowed
//! byte slices of the input (zero-copy); nothing needs an allocator to read. See
//! `docs/wire-format.md` for the byte-level description.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod condition;
pub mod crc;
pub mod error;
pub mod header;
pub mod latent;
pub mod model;
pub mod shift;
mod versions;

pub use condition::{ClassLift, ConditionSection};
pub use error::FormatError;
pub use header::{FORMAT_VERSION, HEADER_LEN, Header, MAGIC, MIN_FORMAT_VERSION};
pub use latent::{DecoderHead, LatentSection, UnitsHead};
pub use model::{
    Activation, ClassifierLayer, DEFAULT_SDE_T0, DIAGONAL_PART, FieldLayer, FieldNet, FieldWeights,
    MAX_CLASSIFIER_LAYERS, MAX_FIELD_LAYERS, MAX_SET_BLOCKS, ModelFile, Normalization,
    SAMPLER_PART, SetBlock, SetNet, SolverKind, SourceKind, TimeEmbedding, TokenDims,
};
pub use shift::{ShiftSection, ShiftStatistic};
