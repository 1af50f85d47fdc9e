//! The runtime's error type.

use core::fmt;

pub use nmflow_format::FormatError;

/// Why the runtime refused a model or an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The model file is malformed.
    Format(FormatError),
    /// A caller-owned buffer is too small for the model.
    CapacityTooSmall {
        /// Values needed.
        needed: u32,
        /// Values available.
        available: u32,
    },
    /// The ODE state became non-finite at a step.
    NonFiniteState {
        /// The step.
        step: u16,
    },
    /// The model file has no shift section.
    NoShiftSection,
    /// The operation needs a field on the classifier's weights, and the model's flow runs in a
    /// latent space (guided synthesis).
    LatentModel,
    /// A support set was given to a model without a condition section.
    NotConditioned,
    /// A guidance weight that is not finite and ≥ 0.
    BadGuidance,
    /// A support set holds no example.
    EmptySupport,
    /// A support example's label is not one of the classifier's classes.
    SupportLabel {
        /// The example.
        index: u32,
        /// Its label.
        label: u8,
    },
    /// An input has the wrong length.
    InputLength {
        /// Expected length.
        expected: u32,
        /// Given length.
        found: u32,
    },
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Format(e) => write!(f, "{e}"),
            Self::CapacityTooSmall { needed, available } => {
                write!(
                    f,
                    "workspace too small: needs {needed} values, has {available}"
                )
            }
            Self::NoShiftSection => f.write_str(
                "the model file has no shift section (calibrate it with `nmflow shift-calibrate`)",
            ),
            Self::LatentModel => f.write_str(
                "the model's flow runs in a latent space; guidance needs a field on the weights",
            ),
            Self::NotConditioned => f.write_str(
                "the model has no condition section (export a `train --condition classes` model)",
            ),
            Self::BadGuidance => f.write_str("the guidance weight must be finite and ≥ 0"),
            Self::EmptySupport => f.write_str("the support set holds no example"),
            Self::SupportLabel { index, label } => write!(
                f,
                "support example {index} has label {label}, outside the classifier's classes"
            ),
            Self::NonFiniteState { step } => write!(f, "state became non-finite at step {step}"),
            Self::InputLength { expected, found } => {
                write!(
                    f,
                    "input has {found} values, the classifier takes {expected}"
                )
            }
        }
    }
}

impl core::error::Error for Error {}

/// `usize` → `u32`, saturating (for error payloads).
pub(crate) fn sat_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
