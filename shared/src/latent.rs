//! The latent section (format version 4): the decoder of a latent meta-model, whose flow runs on
//! `dim` latent values instead of the classifier's weights.
//!
//! The device draws `z₀ ~ N(0, σ²I)` (`ModelFile::source` must be Gaussian: the encoded-Kaiming
//! source would need the encoder on the device), standardizes it with [`LatentSection::state`],
//! integrates the field (an MLP on `[z, emb(t)]` with `dim` outputs), unstandardizes, and decodes:
//! `h = silu(trunk(z))`, then the [`DecoderHead`] writes the classifier's standardized weights
//! (in the VAE's canonical unit order), which `ModelFile::normalization` maps to raw weights.

use serde::{Deserialize, Serialize};

use crate::model::{
    Activation, FieldLayer, MAX_FIELD_LAYERS, Normalization, TokenDims, check_layer, invalid,
    mismatch,
};

/// Error part of the latent section; the index is the layer in [`LatentSection::layers`] order.
pub const LATENT_PART: u8 = 7;

/// A latent model's state standardization and decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LatentSection<'a> {
    /// Latent values `L` (the ODE state's size).
    pub dim: u32,
    /// Standardization of the latent state: one mean and one standard deviation (f32 LE) for
    /// all `L` values.
    #[serde(borrow)]
    pub state: Normalization<'a>,
    /// The decoder's trunk: `L → H`, then `H → H`; every layer is followed by its activation
    /// (SiLU as the host writes it).
    #[serde(borrow)]
    pub trunk: heapless::Vec<FieldLayer<'a>, MAX_FIELD_LAYERS>,
    /// The decoder's head, from the trunk's output `h` (`H` values).
    #[serde(borrow)]
    pub head: DecoderHead<'a>,
}

/// How the decoder turns `h` into the classifier's standardized weights.
// No allocator on the device: the larger variant stays inline (as `FieldNet`'s).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecoderHead<'a> {
    /// One affine layer `H → P`: the whole weight vector in layout order.
    Dense(#[serde(borrow)] FieldLayer<'a>),
    /// The units decoder of a one-hidden-layer classifier (`U` hidden units, tokens of
    /// `T = d_in + 1 + d_out` values): with the slot embedding `e_j = slots.W[:, j] + slots.b`,
    /// hidden unit `j`'s token `[W1[j, :], b1[j], W2[:, j]]` is
    /// `token(silu(inner(silu(mix(h) + e_j))))`, and the output bias is `bias(h)`. Every layer is
    /// affine (its activation is `Identity`); the SiLUs are where this description puts them.
    Units(#[serde(borrow)] UnitsHead<'a>),
}

/// The layers of [`DecoderHead::Units`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnitsHead<'a> {
    /// Slot embeddings, `U → H` (column `j` plus the bias is `e_j`).
    #[serde(borrow)]
    pub slots: FieldLayer<'a>,
    /// `H → H`, applied to `h` once per classifier.
    #[serde(borrow)]
    pub mix: FieldLayer<'a>,
    /// `H → H`, per token.
    #[serde(borrow)]
    pub inner: FieldLayer<'a>,
    /// `H → T`, per token.
    #[serde(borrow)]
    pub token: FieldLayer<'a>,
    /// `H → d_out`: the output bias.
    #[serde(borrow)]
    pub bias: FieldLayer<'a>,
}

impl<'a> UnitsHead<'a> {
    /// The layers in file order: slots, mix, inner, token, bias.
    pub fn layers(&self) -> [&FieldLayer<'a>; 5] {
        [&self.slots, &self.mix, &self.inner, &self.token, &self.bias]
    }
}

impl<'a> LatentSection<'a> {
    /// Width `H` of the trunk's output (0 for an empty trunk, which validation refuses).
    pub fn width(&self) -> usize {
        self.trunk.last().map_or(0, |l| l.d_out as usize)
    }

    /// Widest trunk layer.
    pub fn max_trunk_width(&self) -> usize {
        self.trunk
            .iter()
            .map(|l| l.d_out as usize)
            .max()
            .unwrap_or(0)
    }

    /// Every layer in file order: the trunk's, then the head's (the index of a
    /// [`crate::FormatError`] of part [`LATENT_PART`]).
    pub fn layers(&self) -> impl Iterator<Item = &FieldLayer<'a>> {
        let (dense, units) = match &self.head {
            DecoderHead::Dense(l) => (Some(l), None),
            DecoderHead::Units(u) => (None, Some(u.layers())),
        };
        self.trunk
            .iter()
            .chain(dense)
            .chain(units.into_iter().flatten())
    }

    /// Checks every length and dimension against a classifier of `params` parameters (and its
    /// token shape, for the units head).
    ///
    /// # Errors
    /// [`crate::FormatError`] of part [`LATENT_PART`] (or of part 2 for the state
    /// standardization).
    pub fn validate(
        &self,
        params: u64,
        tokens: Option<TokenDims>,
    ) -> Result<(), crate::FormatError> {
        let p = LATENT_PART;
        if self.dim == 0 {
            return Err(invalid(p, 0));
        }
        let s = &self.state;
        if s.mean.len() != 4 {
            return Err(mismatch(2, 2, 4, s.mean.len() as u64));
        }
        if s.std.len() != 4 {
            return Err(mismatch(2, 3, 4, s.std.len() as u64));
        }
        if !crate::model::all_finite(s.mean, false) || !crate::model::all_finite(s.std, true) {
            return Err(invalid(2, 2));
        }
        if self.trunk.is_empty() {
            return Err(invalid(p, 0));
        }
        let mut expected_in = u64::from(self.dim);
        for (i, l) in self.trunk.iter().enumerate() {
            if u64::from(l.d_in) != expected_in {
                return Err(mismatch(p, i, expected_in, u64::from(l.d_in)));
            }
            check_layer(p, i, l, None)?;
            expected_in = u64::from(l.d_out);
        }
        let h = expected_in;
        let at = self.trunk.len();
        match &self.head {
            DecoderHead::Dense(l) => {
                if u64::from(l.d_in) != h {
                    return Err(mismatch(p, at, h, u64::from(l.d_in)));
                }
                check_layer(p, at, l, Some(params))
            }
            DecoderHead::Units(u) => {
                let dims = tokens.ok_or(invalid(p, at))?;
                let shapes = [
                    (dims.units as u64, h),
                    (h, h),
                    (h, h),
                    (h, dims.token() as u64),
                    (h, dims.d_out as u64),
                ];
                for (k, (l, (d_in, d_out))) in u.layers().into_iter().zip(shapes).enumerate() {
                    if u64::from(l.d_in) != d_in {
                        return Err(mismatch(p, at + k, d_in, u64::from(l.d_in)));
                    }
                    check_layer(p, at + k, l, Some(d_out))?;
                    if l.activation != Activation::Identity {
                        return Err(invalid(p, at + k));
                    }
                }
                Ok(())
            }
        }
    }
}
