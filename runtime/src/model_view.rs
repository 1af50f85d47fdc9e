//! A validated, zero-copy view of a model file.

pub use nmflow_format::model::le_f32;
use nmflow_format::{FieldNet, ModelFile, SolverKind, TokenDims};

use crate::error::{Error, sat_u32};
use crate::vector_field;

/// A parsed model: every length and dimension has been checked once, so the kernels that use it
/// cannot fail.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelView<'a> {
    /// The decoded file (tensors borrow the input bytes).
    pub file: ModelFile<'a>,
    num_params: usize,
    state_dim: usize,
    tokens: TokenDims,
}

/// Which field network a model holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FieldKind {
    /// An MLP on the flat state.
    Mlp,
    /// The permutation-equivariant set field.
    Set,
}

impl<'a> ModelView<'a> {
    /// Parses and validates a model file in place.
    ///
    /// # Errors
    /// [`Error::Format`] for anything malformed; never panics, whatever the bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let file = ModelFile::decode(bytes)?;
        let num_params = file.num_params();
        let state_dim = file.state_dim();
        let tokens = file.token_dims().unwrap_or(TokenDims {
            units: 0,
            d_in: 0,
            d_out: 0,
        });
        Ok(Self {
            file,
            num_params,
            state_dim,
            tokens,
        })
    }

    /// Parses a model and checks that a workspace of `floats` values (e.g.
    /// `Workspace::<N>::FLOATS`) fits it with its default solver.
    ///
    /// # Errors
    /// As [`Self::parse`], and [`Error::CapacityTooSmall`] with the floats needed.
    pub fn parse_for(bytes: &'a [u8], floats: usize) -> Result<Self, Error> {
        let model = Self::parse(bytes)?;
        model.check_capacity(model.file.solver, floats)?;
        Ok(model)
    }

    /// Parameters per synthesized classifier.
    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// Values of the ODE state: [`Self::num_params`], or a latent model's latent size.
    pub fn state_dim(&self) -> usize {
        self.state_dim
    }

    /// Whether the field runs in a latent space and a decoder makes the weights.
    pub fn is_latent(&self) -> bool {
        self.file.latent.is_some()
    }

    /// Multiply-accumulates of decoding one classifier (0 for a weight-space model).
    pub fn decoder_macs(&self) -> u64 {
        self.file
            .latent
            .as_ref()
            .map_or(0, |l| crate::decoder::macs(l, self.tokens))
    }

    /// The classifier's token shape (set fields; zeros for a classifier without exactly two
    /// layers).
    pub fn tokens(&self) -> TokenDims {
        self.tokens
    }

    /// Whether the model is conditioned on a task's support set (a condition section).
    pub fn is_conditioned(&self) -> bool {
        self.file.condition.is_some()
    }

    /// The field network's kind.
    pub fn field_kind(&self) -> FieldKind {
        match self.file.field {
            FieldNet::Mlp(_) => FieldKind::Mlp,
            FieldNet::Set(_) => FieldKind::Set,
        }
    }

    /// Inputs of the classifier.
    pub fn input_dim(&self) -> usize {
        self.file.classifier.first().map_or(0, |l| l.d_in as usize)
    }

    /// Classes of the classifier.
    pub fn num_classes(&self) -> usize {
        self.file.classifier.last().map_or(0, |l| l.d_out as usize)
    }

    /// Multiply-accumulates of one field evaluation (the set field's per-token layers count once
    /// per token; a conditioned field's lift is included, one guidance branch; an MLP field's
    /// per-coordinate term counts its layer).
    pub fn macs_per_evaluation(&self) -> u64 {
        let macs = |l: &nmflow_format::FieldLayer<'_>| {
            u64::from(l.d_in).saturating_mul(u64::from(l.d_out))
        };
        let sum = |layers: &mut dyn Iterator<Item = &nmflow_format::FieldLayer<'_>>| {
            layers.map(macs).fold(0u64, u64::saturating_add)
        };
        match &self.file.field {
            FieldNet::Mlp(layers) => sum(&mut layers.iter().chain(&self.file.diagonal)),
            FieldNet::Set(net) => {
                let lift = self
                    .file
                    .condition
                    .as_ref()
                    .map_or(0, |c| crate::condition::lift_macs(c, self.tokens));
                let u = self.tokens.units as u64;
                let per_token = sum(&mut [&net.embed, &net.token_out]
                    .into_iter()
                    .chain(net.blocks.iter().flat_map(|b| [&b.local, &b.mlp])));
                let once = sum(&mut [&net.global_in, &net.time_in, &net.global_out]
                    .into_iter()
                    .chain(net.blocks.iter().map(|b| &b.pooled)));
                u.saturating_mul(per_token)
                    .saturating_add(once)
                    .saturating_add(lift)
            }
        }
    }

    /// Floats of workspace a synthesis with `solver` needs: the state, the solver's stages (none
    /// for Euler, which updates the state in place; one state-sized vector, the velocity, for the
    /// memoryless SDE; two for Heun and RK4) and
    /// the field's scratch; for a latent model also the decoded weights (`P`), with the
    /// decoder's scratch reusing the stages' and the field's.
    pub fn workspace_floats(&self, solver: SolverKind) -> usize {
        let stages = match solver {
            SolverKind::Euler => 0,
            SolverKind::Sde => 1,
            SolverKind::Heun | SolverKind::Rk4 => 2,
        };
        let integration = self
            .state_dim
            .saturating_mul(stages)
            .saturating_add(vector_field::scratch_floats(self));
        match &self.file.latent {
            None => self.state_dim.saturating_add(integration),
            Some(latent) => self
                .num_params
                .saturating_add(self.state_dim)
                .saturating_add(integration.max(crate::decoder::scratch_floats(latent))),
        }
    }

    /// Checks that a workspace of `floats` values fits a synthesis with `solver`.
    ///
    /// # Errors
    /// [`Error::CapacityTooSmall`] with the needed and available sizes.
    pub fn check_capacity(&self, solver: SolverKind, floats: usize) -> Result<(), Error> {
        let needed = self.workspace_floats(solver);
        if needed > floats {
            return Err(Error::CapacityTooSmall {
                needed: sat_u32(needed),
                available: sat_u32(floats),
            });
        }
        Ok(())
    }
}
