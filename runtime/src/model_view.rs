//! A validated, zero-copy view of a model file.

use nmflow_format::ModelFile;
pub use nmflow_format::model::le_f32;

use crate::error::{Error, sat_u32};

/// A parsed model: every length and dimension has been checked once, so the kernels that use it
/// cannot fail.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelView<'a> {
    /// The decoded file (tensors borrow the input bytes).
    pub file: ModelFile<'a>,
    num_params: usize,
    max_width: usize,
}

impl<'a> ModelView<'a> {
    /// Parses and validates a model file in place.
    ///
    /// # Errors
    /// [`Error::Format`] for anything malformed; never panics, whatever the bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let file = ModelFile::decode(bytes)?;
        let num_params = file.num_params();
        let max_width = file
            .max_field_width()
            .max(file.max_classifier_width())
            .max(file.time.dim as usize);
        Ok(Self {
            file,
            num_params,
            max_width,
        })
    }

    /// Parameters per synthesized classifier (the ODE state size).
    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// Activation buffer size the model needs.
    pub fn max_width(&self) -> usize {
        self.max_width
    }

    /// Inputs of the classifier.
    pub fn input_dim(&self) -> usize {
        self.file.classifier.first().map_or(0, |l| l.d_in as usize)
    }

    /// Classes of the classifier.
    pub fn num_classes(&self) -> usize {
        self.file.classifier.last().map_or(0, |l| l.d_out as usize)
    }

    /// Multiply-accumulates of one field evaluation.
    pub fn macs_per_evaluation(&self) -> u64 {
        self.file
            .field
            .iter()
            .map(|l| u64::from(l.d_in).saturating_mul(u64::from(l.d_out)))
            .fold(0u64, u64::saturating_add)
    }

    /// Checks that a workspace with capacities `p` (state) and `h` (activations) fits the model.
    ///
    /// # Errors
    /// [`Error::CapacityTooSmall`] with the needed and available sizes.
    pub fn check_capacity(&self, p: usize, h: usize) -> Result<(), Error> {
        if self.num_params > p {
            return Err(Error::CapacityTooSmall {
                needed: sat_u32(self.num_params),
                available: sat_u32(p),
            });
        }
        if self.max_width > h {
            return Err(Error::CapacityTooSmall {
                needed: sat_u32(self.max_width),
                available: sat_u32(h),
            });
        }
        Ok(())
    }
}
