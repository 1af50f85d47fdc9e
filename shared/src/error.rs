//! Errors of decoding a model file.

use core::fmt;

/// Why a model file was rejected. Variants carry numbers, not strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FormatError {
    /// The file does not start with the magic bytes `NMFL`.
    BadMagic,
    /// The file has another format version.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Newest version this code reads (it reads every version from
        /// [`crate::MIN_FORMAT_VERSION`] up to this one).
        supported: u16,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// Bytes needed.
        needed: u32,
        /// Bytes available.
        available: u32,
    },
    /// Bytes remain after the payload.
    TrailingBytes {
        /// How many.
        extra: u32,
    },
    /// The payload's CRC-32 does not match the header.
    BadCrc,
    /// The payload is not a valid postcard encoding of the schema.
    Postcard,
    /// A tensor or layer has the wrong size.
    DimensionMismatch {
        /// Which part: 0 classifier, 1 field (MLP), 2 normalization, 3 source, 4 time embedding,
        /// 5 set field (index: the layer in `SetNet::layers` order), 6 shift section, 7 latent
        /// section (index: the layer in `LatentSection::layers` order), 8 condition section
        /// (index: 0 its own values, else 1 + the layer in `ConditionSection::layers` order), 9 the
        /// MLP field's per-coordinate term, 10 the memoryless SDE sampler (index 0 its step count,
        /// 1 its first time).
        part: u8,
        /// Index of the layer or block within the part.
        index: u16,
        /// The expected size.
        expected: u32,
        /// The size found.
        found: u32,
    },
    /// A value is out of its allowed range (a zero dimension, a non-finite scale, zero steps).
    InvalidValue {
        /// Which part (as in [`FormatError::DimensionMismatch`]).
        part: u8,
        /// Index of the layer or block.
        index: u16,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic => f.write_str("not an nmflow model file (bad magic bytes)"),
            Self::UnsupportedVersion { found, supported } => write!(
                f,
                "model format version {found} is not supported (this build reads versions {} to {supported}); re-export the model",
                crate::header::MIN_FORMAT_VERSION
            ),
            Self::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, has {available}")
            }
            Self::TrailingBytes { extra } => write!(f, "{extra} unexpected bytes after the model"),
            Self::BadCrc => f.write_str("payload checksum (CRC-32) mismatch: the file is corrupt"),
            Self::Postcard => f.write_str("malformed payload"),
            Self::DimensionMismatch {
                part,
                index,
                expected,
                found,
            } => write!(
                f,
                "{} {index}: expected size {expected}, found {found}",
                part_name(part)
            ),
            Self::InvalidValue { part, index } => {
                write!(f, "{} {index}: invalid value", part_name(part))
            }
        }
    }
}

fn part_name(part: u8) -> &'static str {
    match part {
        0 => "classifier layer",
        1 => "field layer",
        2 => "normalization block",
        3 => "source",
        4 => "time embedding",
        5 => "set-field layer",
        6 => "shift-section field",
        7 => "latent-decoder layer",
        8 => "condition-section entry",
        9 => "per-coordinate field term",
        10 => "sampler setting",
        _ => "model part",
    }
}

impl core::error::Error for FormatError {}
